"""Training mechanics on CPU: bf16/fp16 autocast, gradient clipping, torch.compile,
per-batch lr schedules and seeded, deterministic runs."""
import math

import pandas as pd
import pytest
import torch
import torch.nn as nn
import torch.nn.modules.module as module_hooks
import torch.optim.optimizer as optimizer_hooks

from model.model import MnistModel
from tests.helpers.cli import train_in_process
from tests.helpers.configs import shrink_config, write_config
from tests.synthetic_mnist import write_synthetic_mnist

# 200 samples, validation_split 0.1: 180 to train, 3 batches of 64 per epoch
N_TRAIN, BATCHES_PER_EPOCH = 200, 3


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_synthetic_mnist(tmp_path_factory.mktemp("mnist200"), n_train=N_TRAIN, n_test=40)


def tiny_config(tmp_path, data_dir, **trainer):
    return shrink_config(tmp_path, data_dir, **{"epochs": 1, "verbosity": 0, **trainer})


def train(tmp_path, config, *extra):
    """Train in this process; return (run folder, latest checkpoint)."""
    parsed = train_in_process("-c", write_config(tmp_path, config), *extra)
    return parsed.save_dir, torch.load(parsed.save_dir / "model_latest.pth", weights_only=True)


@pytest.fixture
def step_grad_norms():
    """Total gradient norm at every optimizer.step, i.e. what the optimizer actually uses."""
    norms = []

    def record(optimizer, args, kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())

    handle = optimizer_hooks.register_optimizer_step_pre_hook(record)
    yield norms
    handle.remove()


def test_bf16_autocast_trains_on_cpu(tmp_path, tiny_data):
    output_dtypes = set()

    def record(module, args, output):
        if module.training and isinstance(module, nn.Conv2d | nn.Linear):
            output_dtypes.add(output.dtype)

    handle = module_hooks.register_module_forward_hook(record)
    try:
        run, checkpoint = train(tmp_path, tiny_config(tmp_path, tiny_data, amp="bf16"))
    finally:
        handle.remove()
    assert output_dtypes == {torch.bfloat16}  # autocast was on for every layer in training
    history = pd.read_csv(run / "metrics.csv")
    assert all(math.isfinite(history[key].iloc[0]) for key in ("loss", "val_loss"))
    assert checkpoint["epoch"] == 1 and checkpoint["grad_scaler"] is None  # bf16 needs no loss scaling
    assert all(value.dtype == torch.float32 for value in checkpoint["state_dict"].values())  # fp32 master weights


def test_clip_grad_norm_bounds_what_the_optimizer_sees(tmp_path, tiny_data, step_grad_norms):
    clip = 0.05
    train(tmp_path, tiny_config(tmp_path, tiny_data, clip_grad_norm=clip))
    assert len(step_grad_norms) == BATCHES_PER_EPOCH
    assert max(step_grad_norms) <= clip * (1 + 1e-5)
    # a fresh LeNet's gradients are far larger than 0.05, so each step was clipped to the bound
    assert min(step_grad_norms) >= clip * (1 - 1e-3)


@pytest.mark.slow
def test_fp16_scaler_is_checkpointed_and_clipping_happens_after_unscaling(tmp_path, tiny_data, step_grad_norms):
    # fp16 convolutions are slow on CPU: two batches per epoch
    clip = 0.05
    config = tiny_config(tmp_path, tiny_data, amp="fp16", clip_grad_norm=clip, len_epoch=2)
    run, checkpoint = train(tmp_path, config)
    scaler = checkpoint["grad_scaler"]
    assert scaler["scale"] > 1 and scaler["_growth_tracker"] == 2  # two steps without overflow
    # clipped after unscale_: the optimizer sees true gradients at the bound, not bound / scale
    assert len(step_grad_norms) == 2
    assert all(clip * (1 - 1e-3) <= norm <= clip * (1 + 1e-3) for norm in step_grad_norms)

    train_in_process("-r", run / "model_latest.pth", "-o", "trainer.epochs=2")
    resumed = torch.load(run / "model_latest.pth", weights_only=True)["grad_scaler"]
    assert resumed["_growth_tracker"] == 4  # counts on from the restored scaler, not from a fresh one
    assert resumed["scale"] == scaler["scale"]


def test_compiled_model_checkpoint_loads_into_plain_model(tmp_path, tiny_data, monkeypatch):
    # inductor needs a C compiler and ~50 s of cold compiling here; aot_eager runs the same
    # dynamo + AOTAutograd wrapping (OptimizedModule, `_orig_mod.` keys) in seconds
    compiled = []
    real_compile = torch.compile

    def compile_recording(model, **kwargs):
        compiled.append(type(model).__name__)
        return real_compile(model, **{"backend": "aot_eager", **kwargs})

    monkeypatch.setattr(torch, "compile", compile_recording)
    try:
        run, checkpoint = train(tmp_path, tiny_config(tmp_path, tiny_data, compile=True))
    finally:
        torch._dynamo.reset()
    assert compiled == ["MnistModel"]
    assert not [key for key in checkpoint["state_dict"] if "_orig_mod" in key or key.startswith("module.")]
    plain = MnistModel()
    plain.load_state_dict(checkpoint["state_dict"])  # strict: every key matches
    assert checkpoint["arch"] == "MnistModel"
    assert math.isfinite(pd.read_csv(run / "metrics.csv")["val_loss"].iloc[0])


def test_per_batch_one_cycle_steps_once_per_optimizer_step(tmp_path, tiny_data):
    epochs, accumulate = 2, 2
    steps = epochs * math.ceil(BATCHES_PER_EPOCH / accumulate)  # the last micro-batch of an epoch steps too
    config = tiny_config(tmp_path, tiny_data, accumulate_steps=accumulate, epochs=epochs)
    config["lr_scheduler"] = {"type": "OneCycleLR", "args": {"max_lr": 0.01, "total_steps": steps},
                              "step": "batch"}
    lrs_used = []
    handle = optimizer_hooks.register_optimizer_step_pre_hook(
        lambda optimizer, args, kwargs: lrs_used.append(optimizer.param_groups[0]["lr"]))
    try:
        _, checkpoint = train(tmp_path, config)
    finally:
        handle.remove()
    assert lrs_used == pytest.approx(hand_stepped_one_cycle(steps, max_lr=0.01), rel=1e-12)
    assert checkpoint["lr_scheduler"]["last_epoch"] == steps


def hand_stepped_one_cycle(steps, **args):
    optimizer = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=0.001, amsgrad=True)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, total_steps=steps, **args)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


@pytest.fixture
def restore_determinism(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


def test_seed_and_deterministic_reproduce_weights(tmp_path, tiny_data, restore_determinism):
    config = tiny_config(tmp_path, tiny_data, deterministic=True)
    config["seed"] = 5
    runs = [train(tmp_path, config, *extra)[1]["state_dict"] for extra in ((), (), ("-o", "seed=6"))]
    assert torch.are_deterministic_algorithms_enabled()
    first, again, other = runs
    assert all(torch.equal(first[key], again[key]) for key in first)  # dropout included
    assert any(not torch.equal(first[key], other[key]) for key in first)
