"""How an entry point runs (train.py, test.py, tune.py, export.py, repeat.py, compare.py): a user error is one line
and an exit code, the run folders it holds are let go, and the process group is left."""
import os
import sys

from runs import lock as run_lock
from utils.errors import UserError, print_line
from utils.signals import TrainingInterrupted


def run_cli(main):
    """Run `main()`; a UserError is one line on stderr and exit 2 (or its own code). Under torchrun, a rank whose
    peer has failed (its collective breaks off) exits with one line too: the peer's own line says why."""
    try:
        main()
    except UserError as err:
        print_line(f"error: {err}")
        sys.exit(err.exit_code)
    except Exception as err:
        if not _peer_failed(err):
            raise
        print_line(f"error: rank {os.environ.get('RANK')} stopped: another process of this job failed (its own "
                   "line says why)")
        sys.exit(1)
    finally:
        run_lock.release_all()  # the process may go on (a test, a notebook): the run is free again


def run_entry(main):
    """An entry point's `main()` (train.py, test.py, tune.py): run_cli, then a saved stop exits with its signal's
    code, and the process group is left either way."""
    from utils import distributed as dist  # torch: not for compare.py, which needs only run_cli

    try:
        run_cli(main)
    except TrainingInterrupted as stop:
        sys.exit(stop.exit_code)
    except KeyboardInterrupt:
        # a Ctrl-C before training starts, or a second one while the first is being handled
        print("Aborted by Ctrl-C; the last completed checkpoint is intact.", file=sys.stderr)
        sys.exit(130)
    finally:
        dist.cleanup()


def _peer_failed(err):
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and (isinstance(err, dist.DistError) or any(
        text in str(err) for text in ("Connection closed by peer", "Connection reset by peer", "Broken pipe")))
