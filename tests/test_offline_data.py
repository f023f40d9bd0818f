"""Offline first: a failed MNIST download says so, says how to place the files, and leaves no empty folder."""
import json

import pytest

from tests.helpers.cli import run_script, train_in_process
from tests.helpers.configs import shrink_config, write_config

# urllib honours these: every download goes to a closed local port and fails at once, with or without internet
NO_NETWORK = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
              "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "", "NO_PROXY": ""}


@pytest.mark.slow
def test_failed_download_is_one_line_and_leaves_no_empty_folder(tmp_path, synthetic_data_dir):
    data_dir = tmp_path / "data"
    config = shrink_config(tmp_path, data_dir, epochs=1)
    config["data_loader"]["args"]["download"] = True
    result = run_script("train.py", "-c", write_config(tmp_path, config), env=NO_NETWORK, timeout=120)

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    raw = data_dir / "MNIST" / "raw"
    for part in ("MNIST files missing in", str(raw), "download failed: ", "Put them there or link a folder"):
        assert part in line, f"{part!r} missing from: {line}"
    assert not data_dir.exists(), "the failed download left folders behind"

    # the obvious fix now works: link the files' folder to data/MNIST, switch the download off
    data_dir.mkdir()
    (data_dir / "MNIST").symlink_to(synthetic_data_dir / "MNIST", target_is_directory=True)
    config["data_loader"]["args"]["download"] = False
    train_in_process("-c", write_config(tmp_path, config))
    assert json.loads((next((tmp_path / "saved" / "models").glob("*/*")) / "config.json").read_text())
