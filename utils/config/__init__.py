"""The config's rules: each trainer option's default and check (rules, trainer_options), section checks (check),
`-o` and CLI changes (overrides) and the one key-path walker they all use (dotted)."""
