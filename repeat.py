"""Train one config over several seeds: python repeat.py -c config.json --seeds 3 (see docs/compare.md).

Seed k is the named run NAME-seed<k> with `seed: k`, trained by train.py's own code: the same command run
again (after a kill, a requeue) continues the unfinished seed runs and leaves finished ones alone. At the end
it prints the runs' table, one row of mean ± std, and the compare.py command that shows it again.
"""
import argparse
import os
from pathlib import Path

import train
from compare import table
from parse_config import ConfigParser
from runs.entry import run_entry
from runs.files import HISTORY, RUN_CONFIG
from runs.folder import quote
from runs.start import StartRequest, decide_start
from runs.table.reading import BadRun, read_run
from utils.config.overrides import with_known_keys
from utils.errors import UserError
from utils.run_names import MAX_RUN_NAME, name_problem, run_name
from utils.util import read_json


def main(argv=None):
    args = parse_args(argv)
    config = seed_free_config(args.config)
    name = args.run_id or default_name(args.config, config)
    run_ids = seed_run_ids(name, args.seeds)
    folders = [train_seed(config, run_id, seed, args) for seed, run_id in run_ids.items()]
    print(table(folders), flush=True)
    print(f"Compare again: python compare.py {quote(folders[0].parent)}/{name}-seed*", flush=True)


def seed_free_config(path):
    """The config to repeat; a search trial's config.json is no longer a trial of its study."""
    if not Path(path).is_file():
        raise UserError(f"config file {path} does not exist; give a config, or a run's {RUN_CONFIG} such as "
                        f"saved/models/<name>/<run>/{RUN_CONFIG}")
    config = read_json(path)
    if not isinstance(config, dict):
        raise UserError(f"{path} is not a config (a JSON object); give a config such as config.json")
    return {key: value for key, value in config.items() if key != "tune"}


def default_name(path, config):
    """A run's own config.json repeats under that run's name (a search's best trial: S-trial7-seed1, ...);
    any other config under its stem (config-seed1, ...)."""
    path = Path(path)
    return path.parent.name if (path.parent / HISTORY).is_file() else path.stem


def seed_run_ids(name, seeds):
    """{seed: NAME-seed<seed>}, each checked before any run starts: the suffix can make a valid NAME too long."""
    run_ids = {seed: f"{name}-seed{seed}" for seed in range(1, seeds + 1)}
    if name_problem(run_ids[seeds]):
        raise UserError(f"run name {name!r} is too long or not a run name once -seed{seeds} is added; give a "
                        f"--run_id of at most {MAX_RUN_NAME - len(f'-seed{seeds}')} letters, digits and _ . + -")
    return run_ids


def train_seed(config, run_id, seed, args):
    """Train (or continue) the run of one seed; a finished one is not trained again. Returns its folder."""
    # decided as train.py --run_id decides it, with train.py's -o rules
    overrides = with_known_keys(args.override)
    start = decide_start(StartRequest(given={**config, "seed": seed}, overrides=overrides, run_id=run_id))
    parsed = ConfigParser(start.config, start.resume, plan=start)
    done, finished = progress(parsed.save_dir, parsed.config["trainer"]["epochs"])
    if finished:
        print(f"{run_id}: finished after epoch {done}; not trained again", flush=True)
        return parsed.save_dir
    print(f"{run_id}: {f'continues after epoch {done}' if done else 'starts'} (seed {seed})", flush=True)
    train.main(parsed)
    return parsed.save_dir


def progress(folder, wanted):
    """(epochs done, whether the run is finished: all `wanted` epochs, or an early stop); (0, False) for a new
    run or one that cannot be read (train.py then says what is wrong with it)."""
    try:
        run = read_run(folder)
    except BadRun:
        return 0, False
    return run["epochs"], run["epochs"] >= wanted or run["stopped_early"]


def parse_args(argv=None):
    args = argparse.ArgumentParser(description="Train a config over N seeds as named runs NAME-seed<k>, then "
                                               "compare them (see docs/compare.md)")
    args.add_argument("-c", "--config", required=True, help=f"config file, or a run's {RUN_CONFIG}")
    args.add_argument("--seeds", required=True, type=train.positive_int, help="how many seeds: 1 .. N")
    args.add_argument("--run_id", type=run_name, help="NAME of the runs (default: the config's run or stem)")
    args.add_argument("-o", "--override", action="append", default=[], metavar="KEY.PATH=VALUE",
                      help="change the config, as train.py's -o (repeatable)")
    args.add_argument("-d", "--device", default=None, help="indices of GPUs to enable (default: all)")
    args.error = lambda message: args.exit(2, f"error: {message}; see python repeat.py --help\n")
    parsed = args.parse_args(argv)
    if parsed.device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = parsed.device
    return parsed


if __name__ == "__main__":
    run_entry(main)
