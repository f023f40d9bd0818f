"""-c partial.json -r: the file's keys change the checkpoint's config key by key, and the log says which."""
import json

from tests.helpers.cli import train_in_process
from tests.helpers.configs import shrink_config, write_config


def test_a_partial_trainer_section_changes_only_its_keys(tmp_path, synthetic_data_dir):
    config = shrink_config(tmp_path, synthetic_data_dir, epochs=1, monitor="min val_loss", tensorboard=True)
    first = train_in_process("-c", write_config(tmp_path, config))
    partial = write_config(tmp_path, {"trainer": {"epochs": 2}, "optimizer": {"args": {"lr": 0.0005}}},
                           "partial.json")

    tuned = train_in_process("-c", partial, "-r", first.save_dir / "model_best.pth")

    saved = json.loads((tuned.save_dir / "config.json").read_text())
    assert tuned.save_dir.parent == first.save_dir.parent  # save_dir kept: the new run sits beside the first
    assert saved["trainer"] == {**config["trainer"], "epochs": 2}
    assert saved["optimizer"] == {"type": "Adam", "args": {**config["optimizer"]["args"], "lr": 0.0005}}
    assert (tuned.save_dir / "model_best.pth").is_file()  # monitor still on
    assert list(tuned.log_dir.glob("events.out.tfevents.*"))  # TensorBoard still on
    log = (tuned.log_dir / "info.log").read_text()
    [line] = [line for line in log.splitlines() if "Config changed from the checkpoint's: " in line]
    assert sorted(line.split("checkpoint's: ")[1].split("; ")) == [
        "optimizer.args.lr: 0.001 -> 0.0005", "trainer.epochs: 1 -> 2"]


def test_a_section_of_another_type_replaces_the_old_one(tmp_path, synthetic_data_dir):
    config = shrink_config(tmp_path, synthetic_data_dir, epochs=1)
    first = train_in_process("-c", write_config(tmp_path, config))
    partial = write_config(tmp_path, {"trainer": {"epochs": 2}, "optimizer": {"type": "SGD", "args": {"lr": 0.01}}},
                           "partial.json")
    tuned = train_in_process("-c", partial, "-r", first.save_dir / "model_latest.pth")
    assert tuned["optimizer"] == {"type": "SGD", "args": {"lr": 0.01}}  # Adam's amsgrad would break SGD
