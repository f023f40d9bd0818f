"""Build objects by the names a config gives, reaching only a module's public API."""
import difflib
import inspect

from utils.errors import UserError

TYPO = 0.75  # a key this close to a known one is a misspelling of it (farther ones may be the user's own)
HINT = 0.6  # a name that is wrong anyway: suggest what is this close


def did_you_mean(name, known, cutoff=HINT, n=1):
    """The known names closest to `name`, best first; [] when none is within `cutoff` (difflib's ratio)."""
    known = list(known)
    everyone = max(1, len(known))  # all close ones, so that the tie-break below sees them
    close = difflib.get_close_matches(str(name), known, n=everyone, cutoff=cutoff)
    if not close:  # "clipgrad" for clip_grad_norm: the underscores left out
        squashed = {str(k).replace("_", ""): k for k in known}
        found = difflib.get_close_matches(str(name).replace("_", ""), squashed, n=everyone, cutoff=cutoff)
        close = [squashed[k] for k in found]
    return sorted(close, key=lambda k: _closeness(name, k))[:n]


def _closeness(name, known):
    """Sort key, best first: difflib's ratio, and on a tie the same letters swapped ("stpe" is "step" typed
    fast, though its ratio to "type" is as high)."""
    same_letters = sorted(str(name)) == sorted(str(known))
    return -round(difflib.SequenceMatcher(None, str(name), str(known)).ratio(), 6), not same_letters


def public_names(module):
    """The public classes and functions a config may name in `module`: those defined in it or its submodules
    (torch.optim.adam's Adam), or listed in its `__all__`; nothing it merely imported (nn, F, torch, BaseModel)."""
    prefix = module.__name__
    homes = {name: str(getattr(obj, "__module__", "")) for name, obj in vars(module).items()}
    defined = [name for name, home in homes.items() if home == prefix or home.startswith(prefix + ".")]
    candidates = {name: getattr(module, name, None) for name in {*defined, *getattr(module, "__all__", ())}
                  if not name.startswith("_")}
    return sorted(name for name, obj in candidates.items()
                  if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj))


def find_by_name(module, name, what):
    """`module.<name>` if the module offers it publicly, else a UserError with near misses."""
    offered = public_names(module)
    if isinstance(name, str) and name in offered:
        return getattr(module, name)
    hint = did_you_mean(name, offered)
    suggestion = f"did you mean '{hint[0]}'? " if hint else ""
    raise UserError(f"unknown {what} '{name}' in {module.__name__}; {suggestion}available: {', '.join(offered)}")


def check_arguments(target, args, kwargs, what):
    """Refuse arguments that `target` does not accept, naming the bad one."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # some builtins have no signature to check
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as err:
        accepted = [p for p in signature.parameters if p not in ("self", "args", "kwargs")]
        raise UserError(f"{what}: {err}; it accepts: {', '.join(accepted)}") from None


def accepts_keyword(target, name):
    """Whether `target` can be called with the keyword argument `name`."""
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
