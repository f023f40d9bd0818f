"""Errors a user can cause, and the one-line form they are printed in (utils/entry_points.py runs the entry
points with it)."""
import sys

from utils.redact import redact


class UserError(Exception):
    """A mistake in a config, a flag or an input file: printed as one line, exit code 2, no traceback.
    The message must say what is wrong and how to fix it."""

    exit_code = 2


def print_line(text):
    """One line on stderr in a single write, so that lines of several ranks never run into each other."""
    sys.stderr.write(redact(text).replace("\n", " ") + "\n")  # print() writes the newline separately
    sys.stderr.flush()
