"""The study's sampler and pruner, built by name from the `tune` section (tune.py).

A seeded sampler is built afresh for each trial with seed + trial number: one worker repeats
its sequence of parameters exactly, while workers sharing a study (each asks other trial
numbers) never draw the same ones, as copies of one seeded sampler would. Only for samplers whose
state lives in the study (TPE, random): others, such as GridSampler or QMCSampler, fix an order
or a sequence from the seed when built, so they keep one seed.
"""
import optuna

from utils.errors import UserError
from utils.lookup import check_arguments, find_by_name

RESEEDABLE = ("TPESampler", "RandomSampler")


def build_sampler(spec, space=None):
    """The sampler `{"type": ..., "args": {...}}` names; None: Optuna's default (TPE)."""
    if spec is None:
        return optuna.samplers.TPESampler()
    cls = find_by_name(optuna.samplers, spec["type"], "tune.sampler type")
    args = spec.get("args", {})
    if cls is optuna.samplers.GridSampler and space is not None:
        _check_grid(args.get("search_space"), space)
    _build(cls, args, "sampler")  # refuses bad arguments now, not at the first trial
    if args.get("seed") is None or cls.__name__ not in RESEEDABLE:
        return _build(cls, args, "sampler")
    return TrialSeededSampler(cls, args)


def _check_grid(grid, space):
    """A grid must give values for exactly the space's keys: Optuna fails the first trial otherwise."""
    if not isinstance(grid, dict):
        raise UserError("tune.sampler (GridSampler) needs args.search_space: {space key: [values]}")
    missing, extra = sorted(set(space) - set(grid)), sorted(set(grid) - set(space))
    if missing or extra:
        what = f"has no values for {', '.join(missing)}" if missing else f"has {', '.join(extra)}, not in tune.space"
        raise UserError(f"tune.sampler.args.search_space (GridSampler) {what}; give it exactly the keys of "
                        "tune.space")


def build_pruner(spec):
    """The pruner `{"type": ..., "args": {...}}` names; None: no pruning."""
    if spec is None:
        return optuna.pruners.NopPruner()
    return _build(find_by_name(optuna.pruners, spec["type"], "tune.pruner type"), spec.get("args", {}), "pruner")


def _build(cls, args, what):
    check_arguments(cls, (), args, f"tune.{what} ({cls.__name__})")
    try:
        return cls(**args)
    except (TypeError, ValueError) as err:
        raise UserError(f"tune.{what} ({cls.__name__}): {err}; fix tune.{what}.args") from None


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """`cls(**args)` with args["seed"] + trial.number as its seed, made for each trial."""

    def __init__(self, cls, args):
        self._cls, self._args = cls, dict(args)
        self._number, self._sampler = None, None

    def _for(self, trial):
        if trial.number != self._number:
            self._number = trial.number
            self._sampler = self._cls(**{**self._args, "seed": self._args["seed"] + trial.number})
        return self._sampler

    def infer_relative_search_space(self, study, trial):
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial):
        self._for(trial).before_trial(study, trial)

    def after_trial(self, study, trial, state, values):
        self._for(trial).after_trial(study, trial, state, values)
