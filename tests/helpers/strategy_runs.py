"""One 2-rank torchrun launch of tests/helpers/ddp_run.py (train, then test.py) under a chosen
trainer.strategy, for tests that compare DDP with FSDP."""
import json
import shutil

from runs.checkpoint_file import load_checkpoint
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.paths import REPO
from tests.helpers.runs import run_dirs
from tests.helpers.torchrun import DDP_RUN, STANDALONE, run_torchrun


def launch(root, data_dir, strategy, loader=None, arch=None, **trainer):
    """Train 2 epochs at 2 ranks in `root`; return {"run": the run folder, "test": test.py's results}.
    LeNet keeps row-major weights under both strategies (FSDP2 shards no other layout), so the float
    rounding of both is the same. `loader` and `arch`: more data_loader and arch args."""
    root.mkdir()
    config = shrink_config(root, data_dir, strategy=strategy, **trainer)
    config["arch"]["args"] = {"channels_last": False, **(arch or {})}
    # 17 and 16 validation samples: 2 batches, 1
    config["data_loader"]["args"].update({"batch_size": 16, "validation_split": 33, **(loader or {})})
    evidence = root / "evidence"
    evidence.mkdir()
    launched = run_torchrun(*STANDALONE, DDP_RUN, write_config(root, config), evidence, timeout=240)
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    (run,) = run_dirs(root / "saved")
    return {"run": run, "test": json.loads((run / "model_best.test.json").read_text()), "evidence": evidence}


def resume_copy(run, copy, strategy, epochs, nproc=2, flags=()):
    """Copy the run folder to `copy` and continue it there at `nproc` ranks under `strategy` up to `epochs`,
    with more train.py `flags`; return its model_latest.pth in the single-file format."""
    shutil.copytree(run, copy)
    launched = run_torchrun("--standalone", f"--nproc_per_node={nproc}", REPO / "train.py", "-r",
                            copy / "model_latest.pth", "-o", f"trainer.epochs={epochs}",
                            "-o", f"trainer.strategy={strategy}", *flags, timeout=240)
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    return load_checkpoint(copy / "model_latest.pth")
