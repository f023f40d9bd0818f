"""trainer.keep_last prunes old checkpoint-epoch<N>.pth files, newest by epoch number, and
leaves model_best.pth and model_latest.pth alone."""
import torch

from tests.helpers.cli import train_in_process
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.runs import run_dirs
from tests.synthetic_mnist import write_synthetic_mnist


def test_keep_last_two(tmp_path, one_thread):
    data = write_synthetic_mnist(tmp_path / "data", n_train=100, n_test=10)
    # 11 epochs, saved every 2nd and at the end: 2, 4, 6, 8, 10, 11. A name sort would keep 8 and 6.
    config = shrink_config(tmp_path, data, epochs=11, save_period=2, keep_last=2, verbosity=1)
    train_in_process("-c", write_config(tmp_path, config))

    (run,) = run_dirs(tmp_path / "saved")
    assert sorted(p.name for p in run.glob("checkpoint-epoch*.pth")) == ["checkpoint-epoch10.pth",
                                                                          "checkpoint-epoch11.pth"]
    latest = torch.load(run / "model_latest.pth", weights_only=True)
    best = torch.load(run / "model_best.pth", weights_only=True)
    assert latest["epoch"] == 11
    assert best["epoch"] == best["monitor"]["best_epoch"] and best["monitor"]["best"] == latest["monitor"]["best"]
    assert torch.load(run / "checkpoint-epoch10.pth", weights_only=True)["epoch"] == 10
    if best["epoch"] < 10:  # model_best.pth may be older than every kept epoch checkpoint: still there
        assert not (run / f"checkpoint-epoch{best['epoch']}.pth").exists()


def test_keep_all_by_default(tmp_path, one_thread):
    data = write_synthetic_mnist(tmp_path / "data", n_train=100, n_test=10)
    train_in_process("-c", write_config(tmp_path, shrink_config(tmp_path, data, epochs=3, verbosity=1)))
    (run,) = run_dirs(tmp_path / "saved")
    assert sorted(p.name for p in run.glob("checkpoint-epoch*.pth")) == [f"checkpoint-epoch{n}.pth" for n in (1, 2, 3)]
