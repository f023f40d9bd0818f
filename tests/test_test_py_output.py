"""test.py prints its results table at every verbosity (docs/outputs.md): verbosity 0 hides the rest."""
import json
import re

from tests.helpers.cli import train_in_process
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.runs import run_dirs


def test_test_py_prints_the_table_at_verbosity_0(tmp_path, synthetic_data_dir, one_thread, capsys):
    import test as test_script

    config = shrink_config(tmp_path, synthetic_data_dir, epochs=1, verbosity=0)
    train_in_process("-c", write_config(tmp_path, config))
    [run] = run_dirs(tmp_path / "saved")
    capsys.readouterr()

    test_script.main(test_script.parse_args(["-r", str(run / "model_best.pth")]))

    shown = capsys.readouterr().out
    saved = json.loads((run / "model_best.test.json").read_text())
    table = dict(re.findall(r"^ {4}(\w+) *: (\S+)$", shown, flags=re.MULTILINE))
    assert table == {**{key: f"{value:.6f}" for key, value in saved["metrics"].items()},
                     "samples": str(saved["n_samples"])}, shown
    assert "MnistModel(" not in shown  # verbosity 0 still hides the model printout
