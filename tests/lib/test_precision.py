"""Execution settings: reduced precision keeps everything but the model in float32, channels-last changes nothing
but the layout, the batch-size search finds the largest batch that fits, and every choice is recorded."""

from __future__ import annotations

import json

import h5py
import pytest
import torch
from torch import nn

from lfpcli.errors import ConfigError
from lfpcli.precision import (
    AutocastModel,
    Execution,
    auto_batch_size,
    inner_model,
    prepare_model,
    resolve_execution,
)
from lfpcli.solvers import get_solver, make_config

CPU = torch.device("cpu")


def conv_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 64, 3),
    ).eval()


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_keeps_inputs_and_gradients_float32(precision):
    net = conv_net()
    run = prepare_model(net, resolve_execution(CPU, precision))
    x = torch.rand(4, 1, 8, 8, requires_grad=True)
    out = run(x)
    (g,) = torch.autograd.grad(out.sum(), x)
    assert out.dtype == torch.float32 and g.dtype == torch.float32
    # the model really ran in the lower precision: its outputs are those of the rounded computation, close to fp32
    ref = net(x)
    assert not torch.equal(out, ref)
    torch.testing.assert_close(out, ref, atol=0.05, rtol=0.05)
    assert inner_model(run) is net


def test_fp32_is_the_model_itself():
    net = conv_net()
    assert prepare_model(net, resolve_execution(CPU, "fp32")) is net


def test_pgd_in_bf16_reaches_targets_within_budget_like_fp32():
    net = conv_net()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 1, 8, 8, generator=g)
    t = torch.randint(0, 3, (32,), generator=g)
    cfg = make_config("pgd-l2", {"eps": 3.0, "steps": 20})
    spec = get_solver("pgd-l2")
    full = spec.fn(net, x, t, cfg, generator=torch.Generator().manual_seed(1))
    half = spec.fn(
        prepare_model(net, resolve_execution(CPU, "bf16")), x, t, cfg, generator=torch.Generator().manual_seed(1)
    )
    assert half.x.dtype == torch.float32
    assert float((half.x - x).flatten(1).norm(dim=1).max()) <= 3.0 + 1e-4
    assert half.x.min() >= 0 and half.x.max() <= 1
    # success judged by the fp32 model: reduced precision finds perturbations that work in full precision too
    ok = (net(half.x).argmax(1) == t).float().mean()
    assert ok >= full.success.float().mean() - 0.1


def test_channels_last_changes_layout_not_values():
    net = conv_net()
    x = torch.rand(5, 1, 8, 8)
    ref = net(x)
    ex = resolve_execution(CPU, "fp32", channels_last="on", model=net)
    assert ex.channels_last
    run = prepare_model(conv_net(), ex)
    assert isinstance(run, AutocastModel)
    assert inner_model(run)[0].weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(run(x), ref, atol=1e-5, rtol=1e-5)
    # auto: on only for a convolutional model on CUDA
    assert not resolve_execution(CPU, "fp32", "auto", model=net).channels_last
    assert not resolve_execution(torch.device("cuda"), "fp32", "auto", model=nn.Linear(3, 2)).channels_last


def test_compile_wraps_the_model(monkeypatch):
    seen = []
    monkeypatch.setattr(torch, "compile", lambda m: seen.append(m) or m)
    net = conv_net()
    run = prepare_model(net, resolve_execution(CPU, "bf16", compile=True))
    assert len(seen) == 1 and inner_model(seen[0]) is net and run is seen[0]


@pytest.mark.parametrize("bad", [{"precision": "fp64"}, {"channels_last": "yes"}])
def test_unknown_settings_are_refused(bad):
    with pytest.raises(ConfigError, match="choose one of"):
        resolve_execution(CPU, **bad)


@pytest.mark.parametrize("fits, limit, want", [(100, 10_000, 80), (1000, 300, 300), (64, 10_000, 51), (5, 10_000, 4)])
def test_auto_batch_size_doubles_until_out_of_memory(fits, limit, want):
    tried = []

    def step(b):
        tried.append(b)
        if b > fits:
            raise torch.OutOfMemoryError("fake")

    assert auto_batch_size(step, start=1, limit=limit, device=CPU) == want
    assert len(tried) <= 20


def test_auto_batch_size_when_nothing_fits():
    def step(b):
        raise torch.OutOfMemoryError("fake")

    with pytest.raises(ConfigError, match="does not fit"):
        auto_batch_size(step, start=1, device=CPU)


def test_execution_records_and_scaler():
    assert Execution("cpu", "fp16").grad_scaler() is None  # CPU has no fp16 gradient underflow to guard
    assert Execution("cpu", "bf16").to_dict() == {"precision": "bf16", "channels_last": False, "compile": False}


def test_train_and_perturb_record_precision(tmp_path):
    from lfpcli.commands import perturb, train

    ckpt = tmp_path / "m.pt"
    s = train(ckpt, data="digits", arch="small-cnn", epochs=1, seed=0, device="cpu", precision="bf16")
    assert s["history"][0]["train_loss"] == s["history"][0]["train_loss"]  # finite, not NaN
    meta = torch.load(ckpt, weights_only=True)["meta"]
    assert meta["params"]["execution"] == {"precision": "bf16", "channels_last": False, "compile": False}
    out = tmp_path / "p.h5"
    r = perturb(out, model=ckpt, method="pgd-l2", limit=40, params={"steps": 5}, device="cpu", precision="bf16")
    assert r["n"] == 40
    with h5py.File(out) as f:
        rec = json.loads(f.attrs["lfp_record"])
        skipped = f["metrics/skipped"][:]
    assert rec["params"]["execution"]["precision"] == "bf16"
    assert rec["params"]["batch_size"] == 256 and rec["params"]["batch_size_from"] == "default on CPU"
    assert skipped.dtype == bool and not skipped.any()  # pgd-l2 never skips a sample
