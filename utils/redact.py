"""Secrets never leave the command line: a password in a URL (postgresql://user:PASSWORD@host/db,
https://user:TOKEN@mlflow.example) or a password/token parameter is shown and stored as `***`.

Everything that prints or records a URL, a command line or a config passes through `redact` (text)
or `redact_all` (nested lists and dicts of text); the connection itself keeps the real URL.
"""
import re

HIDDEN = "***"
# scheme://user:PASSWORD@  -- the password runs to the last '@' before a space or a quote
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s\"']*:)(?P<secret>[^\s\"']*)@")
# ?password=...  &token=...  password=... (a libpq DSN, a flag)
_PARAMETER = re.compile(r"(?P<head>\b(?:password|passwd|pwd|token|secret|api_?key|access_token)=)"
                        r"(?P<secret>[^&\s\"']*)", re.IGNORECASE)


def redact(text):
    """`text` with every URL password and password/token parameter replaced by ***."""
    if not isinstance(text, str):
        return text
    text = _USERINFO.sub(lambda m: f"{m['head']}{HIDDEN}@" if m["secret"] else m[0], text)
    return _PARAMETER.sub(lambda m: f"{m['head']}{HIDDEN}" if m["secret"] else m[0], text)


def redact_all(value):
    """A copy of `value` (text, or lists, tuples and dicts of it) with every secret redacted."""
    if isinstance(value, dict):
        return {key: redact_all(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_all(item) for item in value)
    return redact(value)
