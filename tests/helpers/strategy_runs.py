"""One 2-rank torchrun launch of tests/helpers/ddp_run.py (train, then test.py) under a chosen
trainer.strategy, for tests that compare DDP with FSDP."""
import json
import shutil

import torch

from tests.helpers.configs import shrink_config, write_config
from tests.helpers.paths import REPO
from tests.helpers.runs import run_dirs
from tests.helpers.torchrun import DDP_RUN, STANDALONE, run_torchrun


def launch(root, data_dir, strategy, **trainer):
    """Train 2 epochs at 2 ranks in `root`; return {"run": the run folder, "test": test.py's results}.
    LeNet keeps row-major weights under both strategies (FSDP2 shards no other layout), so the float
    rounding of both is the same."""
    root.mkdir()
    config = shrink_config(root, data_dir, strategy=strategy, **trainer)
    config["arch"]["args"] = {"channels_last": False}
    config["data_loader"]["args"].update(batch_size=16, validation_split=33)  # 17 and 16 samples: 2 batches, 1
    evidence = root / "evidence"
    evidence.mkdir()
    launched = run_torchrun(*STANDALONE, DDP_RUN, write_config(root, config), evidence, timeout=240)
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    (run,) = run_dirs(root / "saved")
    return {"run": run, "test": json.loads((run / "model_best.test.json").read_text()), "evidence": evidence}


def resume_copy(run, copy, strategy, epochs):
    """Copy the run folder to `copy` and continue it there at 2 ranks under `strategy` up to `epochs`."""
    shutil.copytree(run, copy)
    launched = run_torchrun(*STANDALONE, REPO / "train.py", "-r", copy / "model_latest.pth",
                            "-o", f"trainer.epochs={epochs}", "-o", f"trainer.strategy={strategy}", timeout=240)
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    return torch.load(copy / "model_latest.pth", weights_only=True)
