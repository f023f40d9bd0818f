"""Stop a run in this process and compare its checkpoint with an unstopped run's, bit for bit
(tests/test_exact_resume.py and tests/test_ema.py)."""
import signal

import torch

import trainer.trainer as trainer_module


def assert_identical(a, b, where="checkpoint"):
    """Equal structure, equal plain values, torch.equal tensors (bit for bit)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"  # NaN equals NaN here


def stop_by_sigterm_at(monkeypatch, batch_number):
    """Raise SIGTERM in this process while the `batch_number`-th batch (counted over epochs) runs."""
    run_batch, calls = trainer_module.Trainer._run_batch, [0]

    def run_batch_then_signal(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == batch_number:
            signal.raise_signal(signal.SIGTERM)  # the trainer's handler records it; the batch finishes
        return run_batch(self, *args, **kwargs)
    monkeypatch.setattr(trainer_module.Trainer, "_run_batch", run_batch_then_signal)
