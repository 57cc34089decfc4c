"""cfe-l2 (Wachter et al.): the convex optimum on a linear model, Adam's arithmetic, the box, batch invariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lfpcli.errors import ConfigError
from lfpcli.solvers import choose_targets, norms
from lfpcli.solvers.cfe import CFEConfig, cfe


def linear_model(d: int, k: int = 2, scale: float = 0.5, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(d, k))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(k, d, generator=g) * scale)
        model[1].bias.copy_(torch.randn(k, generator=g) * 0.1)
    return model


def small_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 3))


def test_matches_lbfgsb_on_linear_binary_model():
    """With 2 classes and logits W x + b, CE(f(x'), t) + lam ||x' - x||^2 is strongly convex: projected Adam must
    land on the same box-constrained minimiser as scipy's L-BFGS-B, bounds active on many coordinates."""
    from scipy.optimize import minimize

    d, lam = 16, 0.5
    model = linear_model(d)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 1, 4, 4, generator=g)
    x[0] = 0.0
    x[1] = 1.0
    t = torch.tensor([0, 1, 0, 1, 1, 0])
    r = cfe(model, x, t, CFEConfig(lam=lam, step_size=0.02, steps=300))

    w = model[1].weight.detach().double().numpy()
    b = model[1].bias.detach().double().numpy()
    n_at_bound = 0
    for i in range(6):
        xi, ti = x[i].flatten().double().numpy(), int(t[i])

        def f(z):
            z_logits = w @ z + b
            lse = np.logaddexp.reduce(z_logits)
            p = np.exp(z_logits - lse)
            return lse - z_logits[ti] + lam * ((z - xi) ** 2).sum(), w.T @ (p - np.eye(2)[ti]) + 2 * lam * (z - xi)

        ref = minimize(
            f, xi, jac=True, method="L-BFGS-B", bounds=[(0.0, 1.0)] * d, options={"ftol": 1e-15, "gtol": 1e-12}
        )
        np.testing.assert_allclose(r.x[i].flatten().double().numpy(), ref.x, atol=2e-5, rtol=0)
        assert abs(float(r.extras["objective"][i]) - ref.fun) < 1e-6
        n_at_bound += int(((ref.x <= 1e-9) | (ref.x >= 1 - 1e-9)).sum())
    assert n_at_bound >= 10  # the box matters in this problem


def _reference_torch_adam(model, x, t, lam, lr, steps, x0):
    """The paper's loop, per sample: torch.optim.Adam on x', summed objective, clamp after every step."""
    model.eval()
    x_adv = x0.clone().requires_grad_(True)
    opt = torch.optim.Adam([x_adv], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        obj = F.cross_entropy(model(x_adv), t, reduction="none") + lam * (x_adv - x).flatten(1).pow(2).sum(1)
        obj.sum().backward()
        opt.step()
        with torch.no_grad():
            x_adv.clamp_(0, 1)
    return x_adv.detach()


@pytest.mark.parametrize("init", ["zero", "noise"])
def test_same_arithmetic_as_torch_optim_adam(init):
    model = small_cnn(1)
    g = torch.Generator().manual_seed(3)
    x = torch.rand(5, 1, 8, 8, generator=g)
    x[0, 0, :4] = 1.0  # some pixels on the box edge
    t = torch.tensor([0, 1, 2, 0, 1])
    cfg = CFEConfig(lam=0.05, step_size=0.03, steps=15, init=init)
    r = cfe(model, x, t, cfg, generator=torch.Generator().manual_seed(7))
    if init == "noise":
        x0 = (x + 0.01 * torch.rand(x.shape, generator=torch.Generator().manual_seed(7))).clamp(0, 1)
    else:
        x0 = x
    for p in model.parameters():
        p.requires_grad_(False)
    ref = _reference_torch_adam(model, x, t, 0.05, 0.03, 15, x0)
    torch.testing.assert_close(r.x, ref, atol=1e-6, rtol=0)
    assert not torch.equal(r.x, x)


def test_box_counters_and_result_fields():
    model = small_cnn(0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, 1, 8, 8, generator=g)
    x[:3] = 0.0
    x[3:6] = 1.0
    t = torch.randint(0, 3, (12,), generator=g)
    cfg = CFEConfig(lam=0.01, step_size=0.1, steps=20)
    r = cfe(model, x, t, cfg)
    assert r.x.shape == x.shape and r.x.dtype == x.dtype
    assert r.x.min() >= 0 and r.x.max() <= 1
    with torch.no_grad():
        logits = model(r.x)
    assert torch.equal(r.success, logits.argmax(1) == t) and r.success.dtype == torch.bool
    torch.testing.assert_close(r.loss, F.cross_entropy(logits, t, reduction="none"))
    torch.testing.assert_close(r.extras["objective"], r.loss + 0.01 * norms(r.x - x)["l2"] ** 2)
    for c in (r.iterations, r.grad_evals):
        assert c.dtype == torch.int64 and c.shape == (12,) and (c == 20).all()
    # a narrower box is respected too
    r = cfe(model, x.clamp(0.2, 0.8), t, CFEConfig(lam=0.01, step_size=0.1, steps=10, lo=0.2, hi=0.8))
    assert r.x.min() >= 0.2 and r.x.max() <= 0.8


def test_lam_trades_distance_for_loss():
    model = small_cnn(2)
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    t = torch.arange(8) % 3
    strong = cfe(model, x, t, CFEConfig(lam=1.0, step_size=0.05, steps=40))
    weak = cfe(model, x, t, CFEConfig(lam=0.001, step_size=0.05, steps=40))
    assert norms(strong.x - x)["l2"].mean() < norms(weak.x - x)["l2"].mean()
    assert strong.loss.mean() > weak.loss.mean()


def test_batch_invariance_and_no_side_effects():
    """A batch with mixed targets equals per-sample runs; the input is not mutated; mode and grads restored."""
    model = small_cnn(2)
    model.train()
    model[0].bias.requires_grad_(False)  # flags are restored as they were, not all set to True
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    x0 = x.clone()
    t = torch.tensor([0, 1, 2, 0, 1, 2])
    cfg = CFEConfig(lam=0.1, step_size=0.05, steps=10)
    r = cfe(model, x, t, cfg)
    assert torch.equal(x, x0)
    assert model.training
    assert [p.requires_grad for p in model.parameters()] == [True, False, True, True]
    assert all(p.grad is None for p in model.parameters())
    for i in range(6):
        ri = cfe(model, x[i : i + 1], t[i : i + 1], cfg)
        torch.testing.assert_close(ri.x, r.x[i : i + 1], atol=1e-6, rtol=0)
        torch.testing.assert_close(ri.loss, r.loss[i : i + 1], atol=1e-5, rtol=1e-5)


def test_paper_hyperparameters_succeed_on_a_trained_model(digits_model):
    from lfpcli.artifacts.dataspec import resolve
    from lfpcli.commands.common import load_model

    model, _ = load_model(digits_model, torch.device("cpu"))
    ds = resolve("digits")
    x, y = ds.splits["train"].x[:40], ds.splits["train"].y[:40]
    t = choose_targets(y, 10, "random-other", torch.Generator().manual_seed(0))
    r = cfe(model, x, t, CFEConfig(lam=0.1, step_size=0.01, steps=100))
    assert r.success.float().mean() > 0.8
    assert (norms(r.x - x)["l2"] > 0).all()


@pytest.mark.parametrize(
    "bad",
    [
        {"lam": -0.1},
        {"lam": float("nan")},
        {"lam": float("inf")},
        {"step_size": 0},
        {"step_size": -1},
        {"step_size": float("nan")},
        {"steps": 0},
        {"loss": "hinge"},
        {"lo": 1.0, "hi": 0.0},
        {"init": "random"},
    ],
)
def test_bad_config_is_refused(bad):
    with pytest.raises(ConfigError):
        CFEConfig(**bad)


def test_config_record_and_registry():
    cfg = CFEConfig()
    d = cfg.to_dict()
    assert d == {"lam": 0.1, "step_size": 0.01, "steps": 100, "loss": "ce", "lo": 0.0, "hi": 1.0, "init": "zero"}
    from lfpcli.solvers import get_solver, list_solvers, make_config

    assert "cfe-l2" in list_solvers()
    assert get_solver("cfe-l2").fn is cfe
    cfg = make_config("cfe-l2", {"lam": "0.01", "step_size": "0.001", "steps": "7"})
    assert cfg == CFEConfig(lam=0.01, step_size=0.001, steps=7)
    assert make_config("cfe-l2", cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="does not apply"):
        make_config("cfe-l2", {"eps": 1.0})
