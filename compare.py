"""Compare runs from their own files: python compare.py saved/models/Mnist_LeNet/ (see docs/compare.md).

One row per setting: runs that differ only in seed are one row of mean ± std over n runs, and only the config
keys that differ between the runs shown are columns. No server, no torch: a few hundred runs list in a second.
"""
import argparse
import sys

from runs.entry import run_cli
from runs.table.finding import read_runs
from runs.table.grouping import differing_keys, measure_columns, rows, select, sort_rows
from runs.table.rendering import as_csv, as_text, columns
from runs.table.study import mark_trials
from utils.errors import UserError, print_line


def table(folders, wheres=(), sort="run", style="text", warn=print_line):
    """The table of the runs under `folders` as text; each folder skipped is one `warn` line."""
    runs, skipped = read_runs(folders)
    for line in skipped:
        warn(line)
    mark_trials(runs, warn)  # pruned trials: their study knows it, not their files
    shown = select(runs, wheres)
    if not shown:
        why = "no run matches the --where conditions" if runs else "no readable run folder"
        raise UserError(f"{why} in {', '.join(map(str, folders))}; give run folders or a name folder such "
                        "as saved/models/Mnist_LeNet/")
    setting_keys = differing_keys(shown)
    names = columns(measure_columns(shown), setting_keys)
    ordered = sort_rows(sort_rows(rows(shown, setting_keys), names, "run"), names, sort)  # ties in run order
    return as_csv(ordered, names) if style == "csv" else as_text(ordered, names, markdown=style == "markdown")


def parse_args(argv=None):
    args = argparse.ArgumentParser(description="One table of runs: state, epochs, best, last validation and test "
                                               "values, and the config keys that differ (see docs/compare.md)")
    args.add_argument("folders", nargs="+", metavar="FOLDER",
                      help="run folders, or name folders such as saved/models/Mnist_LeNet/")
    style = args.add_mutually_exclusive_group()
    style.add_argument("--csv", dest="style", action="store_const", const="csv", help="CSV (mean and _std columns)")
    style.add_argument("--markdown", dest="style", action="store_const", const="markdown", help="a Markdown table")
    args.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                      help="only runs with this config value (or run=, state=); repeatable")
    args.add_argument("--sort", default="run", metavar="KEY",
                      help="column to sort by (default: run); --sort=-KEY: descending")
    args.error = lambda message: args.exit(2, f"error: {message}; see python compare.py --help\n")
    return args.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    print(table(args.folders, args.where, args.sort, args.style or "text"))
    sys.stdout.flush()


if __name__ == "__main__":
    run_cli(main)
