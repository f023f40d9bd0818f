"""Errors a user can cause, and how the entry points report them."""
import sys


class UserError(Exception):
    """A mistake in a config, a flag or an input file.

    The entry points print its message as one line on stderr and exit with
    code 2, without a traceback: the message must say what is wrong and how
    to fix it.
    """

    exit_code = 2


def run_cli(main):
    """Run `main()`; turn a UserError into one line on stderr and exit 2."""
    try:
        main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
