"""Run folders made by writing their files (config.json, metrics.csv, run.json, a test result) as training
and test.py write them: compare.py's tests and benchmark need many runs, not trained ones."""
import json
from pathlib import Path

from tests.helpers.paths import REPO

HEADER = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "epoch_time", "samples_per_sec"]


def fabricate_run(name_folder, run_id, *, seed=1, lr=0.001, batch_size=128, epochs=3, done=None,
                  val_losses=None, test_accuracy=None, tune=None):
    """A run `run_id` in `name_folder` set to `epochs`, with `done` epochs in metrics.csv (all by default);
    val_loss per epoch from `val_losses`, or falling with the epoch and rising with lr. Returns its folder."""
    config = json.loads((REPO / "config.json").read_text())
    config.update(seed=seed)
    config["optimizer"]["args"]["lr"] = lr
    config["data_loader"]["args"]["batch_size"] = batch_size
    config["trainer"].update(epochs=epochs, early_stop=0, save_dir=str(Path(name_folder).parent.parent))
    if tune is not None:  # a trial of tune.py: {"study": S, "trial": k}
        config["tune"] = tune
    folder = Path(name_folder) / run_id
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config, indent=4) + "\n")
    (folder / "run.json").write_text(json.dumps({"origin": None}) + "\n")
    done = epochs if done is None else done
    losses = val_losses or [1.0 / epoch + lr * 10 + seed * 0.001 for epoch in range(1, done + 1)]
    lines = [",".join(HEADER)] + [",".join(str(v) for v in (epoch, loss * 1.1, 0.5, loss, 1 - loss / 4, lr, 0.1, 5000))
                                  for epoch, loss in enumerate(losses, start=1)]
    if done:
        (folder / "metrics.csv").write_text("\n".join(lines) + "\n")
    if test_accuracy is not None:
        result = {"metrics": {"loss": 0.1, "accuracy": test_accuracy}, "n_samples": 200,
                  "checkpoint": str(folder / "model_best.pth")}
        (folder / "model_best.test.json").write_text(json.dumps(result))
    return folder
