"""The one rule for names that become run folders: train.py's --run_id, and tune.py's study (--study,
tune.study or the config's name), whose trial k is the run <study>-trial<k>."""
import argparse
import re

from utils.errors import UserError

MAX_RUN_NAME = 100
# a study's runs are <study>-trial<k>: its name leaves room for the suffix of a million trials
MAX_STUDY_NAME = MAX_RUN_NAME - len("-trial999999")
# safe in a path and in a shell, unquoted; never hidden (.), never read as an option or a sign (+ -)
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")


def name_problem(text, limit=MAX_RUN_NAME):
    """None when `text` can name a run (at most `limit` characters); else the start of a line saying why not."""
    if isinstance(text, str) and NAME.fullmatch(text) and len(text) <= limit:
        return None
    shown = f"{text[:40]!r}{'...' if len(text) > 40 else ''}" if isinstance(text, str) else repr(text)
    return f"{shown} is not a run name: use at most {limit} letters, digits and _ . + - (not starting with . + -)"


def run_name(text):
    """The argparse type of --run_id."""
    problem = name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"{problem}, e.g. --run_id job1234")
    return text


def study_name(text):
    """The argparse type of tune.py's --study."""
    problem = name_problem(text, MAX_STUDY_NAME)
    if problem:
        raise argparse.ArgumentTypeError(f"{problem}, so that its trials' runs <study>-trial<k> are too, "
                                         "e.g. --study lr_sweep")
    return text


def check_study_name(name, where):
    """A UserError before any study exists when `name` (from `where`) cannot name the trials' runs."""
    problem = name_problem(name, MAX_STUDY_NAME)
    if problem:
        raise UserError(f"study name from {where}: {problem}, so that its trials' runs <study>-trial<k> are too; "
                        "set another with \"tune\": {\"study\": \"lr_sweep\"} or --study lr_sweep")
