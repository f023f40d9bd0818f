"""The README's trainer table and utils/config/rules.py, the one table, list the same options with the
same defaults: a new option or a changed default shows up in the README or this test fails."""
import json
import re

from tests.helpers.paths import REPO
from utils.config.rules import REQUIRED, RULES, TRAINER_OPTIONS


def readme_rows():
    """{option: default as written} from the README's 'Trainer options' table."""
    text = (REPO / "README.md").read_text()
    table = text[text.index("## Trainer options"):text.index("## Command-line options")]
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^\| `(\w+)` \| ([^|]+) \|", table, re.M)}


def shown(default):
    """A default as the table writes it: JSON, strings in backticks, 'required'."""
    if default is REQUIRED:
        return "required"
    text = json.dumps(default)
    return f"`{text}`" if isinstance(default, (str, list)) else text


def test_the_readme_table_lists_every_trainer_option_with_its_default():
    rows = readme_rows()
    assert sorted(rows) == sorted(TRAINER_OPTIONS)
    for name in TRAINER_OPTIONS:
        assert rows[name].split(" (")[0] == shown(RULES[f"trainer.{name}"].default), name
