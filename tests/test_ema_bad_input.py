"""trainer.ema's mistakes: one line on stderr, exit 2, no traceback, no run folder, nothing changed."""
import pytest
import torch

from tests.helpers.cli import run_cli, train_in_process
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.errors import check_refused
from tests.helpers.runs import run_dirs
from tests.helpers.snapshots import snapshot_bytes_and_mtimes

# trainer.ema -> what the one error line must hold
CASES = {
    "decay-1": ({"decay": 1.0}, ["trainer.ema.decay must be a number in (0, 1)", "got 1.0"]),
    "decay-0": ({"decay": 0}, ["trainer.ema.decay must be a number in (0, 1)", "got 0"]),
    "decay-text": ({"decay": "0.9"}, ["trainer.ema.decay must be a number in (0, 1)", "'0.9'"]),
    "every-0": ({"every": 0}, ["trainer.ema.every must be a positive integer", "got 0"]),
    "start-negative": ({"start": -1}, ["trainer.ema.start must be a non-negative integer", "got -1"]),
    "validate-text": ({"validate": "yes"}, ["trainer.ema.validate must be true or false"]),
    "key-typo": ({"decya": 0.9}, ["unknown key trainer.ema.decya", "did you mean trainer.ema.decay?"]),
    "key-unknown": ({"beta": 0.9}, ["unknown key trainer.ema.beta", "known keys: decay, every, start, validate"]),
    "not-an-object": (0.999, ["trainer.ema must be null or an object", '{"decay": 0.999']),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_ema_setting_is_refused(case, tmp_path, synthetic_data_dir, monkeypatch, capsys):
    value, expected = CASES[case]
    config = write_config(tmp_path, shrink_config(tmp_path, synthetic_data_dir, ema=value))
    before = snapshot_bytes_and_mtimes(tmp_path)
    check_refused(run_cli("train", ["-c", config], monkeypatch, capsys), expected, before, tmp_path)


def test_an_average_that_does_not_fit_the_model_is_refused(tmp_path, synthetic_data_dir, monkeypatch, capsys,
                                                            one_thread):
    config = shrink_config(tmp_path, synthetic_data_dir, epochs=1, verbosity=0, ema={"decay": 0.9})
    config["data_loader"]["args"]["validation_split"] = 0.5  # fewer training batches: a faster run
    train_in_process("-c", write_config(tmp_path, config))
    (run,) = run_dirs(tmp_path / "saved")
    checkpoint = torch.load(run / "model_latest.pth", weights_only=True)
    checkpoint["ema"]["weights"]["fc2.weight"] = torch.zeros(5, 50)  # another head: 5 classes
    torch.save(checkpoint, run / "model_latest.pth")

    before = snapshot_bytes_and_mtimes(tmp_path)
    result = run_cli("train", ["-r", run / "model_latest.pth", "-o", "trainer.epochs=2"], monkeypatch, capsys)
    check_refused(result, ["averaged weights (ema) do not fit this model", "fc2.weight (5, 50) vs (10, 50)",
                           "-o trainer.ema=null"], before, tmp_path)
