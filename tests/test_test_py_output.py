"""test.py prints its results table at every verbosity (docs/outputs.md): verbosity 0 hides the rest."""
import json
import re

from tests.conftest import run_dirs, shrink_config, train_in_process, write_config


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
