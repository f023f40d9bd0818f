"""What makes a study's values comparable (tune.py): every trial trains the same base config, changed only at
the space's keys, and is judged by the same monitored metric. The first worker records both in the study's
user attrs; a worker reusing the study with another base config or metric is refused before any trial."""
from runs.checks import MAY_CHANGE
from search.storage import retry_races
from utils.config.dotted import differences, dotted, key_path
from utils.errors import UserError

BASE, MONITOR = "base_config", "monitor"


def check_same_base(study, shown_url, base, monitor, space):
    """Record `base` and `monitor` in a new study; refuse (UserError, one line) when a reused study holds others."""
    recorded = study.user_attrs
    if BASE not in recorded:  # a new study (or one made before this record): the first worker's config is its own
        retry_races(lambda: study.set_user_attr(BASE, base), f"record the base config of study {study.study_name}")
        retry_races(lambda: study.set_user_attr(MONITOR, monitor), f"record the monitor of study {study.study_name}")
        recorded = study.user_attrs  # read back: of two workers recording at once, the last one's stands
    where = f"study {study.study_name} in {shown_url}"
    if recorded.get(MONITOR, monitor) != monitor:
        raise UserError(f"{where} is judged by trainer.monitor \"{recorded[MONITOR]}\", but this config has "
                        f"\"{monitor}\"; its values would not compare; name another study with --study")
    differing = _differing(recorded[BASE], base, [tuple(key_path(key)) for key in space])
    if differing:
        raise UserError(f"{where} was made with another base config ({', '.join(differing[:4])} differ); its "
                        "trials would not compare: give its config, or name another study with --study")


def _differing(saved, given, searched):
    """Dotted keys whose values differ, leaving out those a run may change and those the space sets."""
    found = []
    for path, _, _ in differences(saved, given):
        if any(path[:n] in MAY_CHANGE for n in range(1, len(path) + 1)):
            continue
        if any(path[:len(key)] == key for key in searched):
            continue
        found.append(dotted(path))
    return sorted(found)
