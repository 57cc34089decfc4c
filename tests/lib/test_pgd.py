"""PGD: budgets, the box, a closed form on a linear model, and torchattacks on the same inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lfpcli.solvers import choose_targets, get_solver, list_solvers, make_config, norms


class Linear(nn.Module):
    def __init__(self, d: int, k: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fc = nn.Linear(d, k)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(k, d, generator=g))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(x.flatten(1))


def small_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 3))


@pytest.mark.parametrize("method", ["pgd-l2", "pgd-linf"])
@pytest.mark.parametrize("extra", [{}, {"random_start": True}])
def test_budget_and_box(method, extra):
    model = small_cnn()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 8, 8, generator=g)
    x[:4] = 0.0  # samples on the box corner: any push outward must be clamped
    x[4:8] = 1.0
    t = torch.randint(0, 3, (16,), generator=g)
    eps = 0.7 if method == "pgd-l2" else 0.1
    cfg = make_config(method, {"eps": eps, "steps": 15, **extra})
    r = get_solver(method).fn(model, x, t, cfg, generator=torch.Generator().manual_seed(1))
    assert r.x.min() >= 0 and r.x.max() <= 1
    n = norms(r.x - x)
    key = "l2" if method == "pgd-l2" else "linf"
    assert (n[key] <= eps * (1 + 1e-5)).all()
    assert r.x.shape == x.shape and r.success.shape == (16,)
    assert torch.equal(r.success, model(r.x).argmax(1) == t)


def test_l2_closed_form_on_linear_binary_model():
    """For logits W x with 2 classes, the CE gradient toward t points along -(w_t - w_o) everywhere, so
    targeted l2 PGD ends at x + eps * (w_t - w_o)/||w_t - w_o|| when the box is not active."""
    d = 20
    model = Linear(d, 2)
    x = torch.full((3, d), 0.5)
    t = torch.tensor([0, 1, 1])
    eps = 0.3
    cfg = make_config("pgd-l2", {"eps": eps, "steps": 10, "step_size": 0.05})
    r = get_solver("pgd-l2").fn(model, x, t, cfg)
    w = model.fc.weight.detach()
    direction = w[t] - w[1 - t]
    expected = x + eps * direction / direction.norm(dim=1, keepdim=True)
    torch.testing.assert_close(r.x, expected, atol=1e-5, rtol=0)


def test_matches_torchattacks_linf_and_l2():
    torchattacks = pytest.importorskip("torchattacks")
    model = small_cnn(3).eval()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(12, 1, 8, 8, generator=g)
    t = torch.randint(0, 3, (12,), generator=g)
    ours = get_solver("pgd-linf").fn(model, x, t, make_config("pgd-linf", {"eps": 0.1, "steps": 10, "step_size": 0.02}))
    atk = torchattacks.PGD(model, eps=0.1, alpha=0.02, steps=10, random_start=False)
    atk.set_mode_targeted_by_label(quiet=True)
    theirs = atk(x, t)
    torch.testing.assert_close(ours.x, theirs, atol=1e-6, rtol=0)
    ours = get_solver("pgd-l2").fn(model, x, t, make_config("pgd-l2", {"eps": 0.8, "steps": 10, "step_size": 0.15}))
    atk = torchattacks.PGDL2(model, eps=0.8, alpha=0.15, steps=10, random_start=False)
    atk.set_mode_targeted_by_label(quiet=True)
    theirs = atk(x, t)
    torch.testing.assert_close(ours.x, theirs, atol=1e-5, rtol=0)


def test_linf_paper_code_variants():
    model = small_cnn(1)
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(4)) * 0.5 + 0.25
    t = torch.arange(8) % 3
    cfg = make_config("pgd-linf", {"eps": 0.05, "steps": 5, "step": "max-normalized", "projection": "rescale"})
    r = get_solver("pgd-linf").fn(model, x, t, cfg)
    delta = (r.x - x).flatten(1)
    assert (delta.abs().amax(1) <= 0.05 + 1e-6).all()
    # rescale keeps the direction: the perturbation is not clipped per pixel, so most pixels differ in size
    assert (delta.abs() < 0.05 - 1e-4).float().mean() > 0.5


def test_batch_invariance_and_no_side_effects():
    """A batch with mixed targets equals per-sample runs; the input is not mutated; mode and grads restored."""
    model = small_cnn(2)
    model.train()
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    x0 = x.clone()
    t = torch.tensor([0, 1, 2, 0, 1, 2])
    cfg = make_config("pgd-l2", {"eps": 0.5, "steps": 5})
    r = get_solver("pgd-l2").fn(model, x, t, cfg)
    assert torch.equal(x, x0)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())
    for i in range(6):
        ri = get_solver("pgd-l2").fn(model, x[i : i + 1], t[i : i + 1], cfg)
        torch.testing.assert_close(ri.x, r.x[i : i + 1], atol=1e-6, rtol=0)


def test_every_method_succeeds_on_a_trained_model(digits_model):
    from lfpcli.artifacts.dataspec import resolve
    from lfpcli.commands.common import load_model

    model, _ = load_model(digits_model, torch.device("cpu"))
    ds = resolve("digits")
    x, y = ds.splits["train"].x[:100], ds.splits["train"].y[:100]
    t = choose_targets(y, 10, "random-other", torch.Generator().manual_seed(0))
    per_method = {
        "pgd-l2": {"eps": 3.0, "steps": 30},
        "pgd-linf": {"eps": 0.3, "steps": 30},
        "pgd-l0": {"steps": 10},
        "pcfe-l0": {"steps": 30},
    }
    for method in list_solvers():
        params = per_method.get(method, {})
        r = get_solver(method).fn(model, x, t, make_config(method, params))
        assert r.success.float().mean() > 0.8, method


@pytest.mark.parametrize(
    "bad", [{"eps": -1}, {"eps": 0}, {"eps": float("nan")}, {"steps": 0}, {"step_size": -0.1}, {"loss": "hinge"}]
)
def test_bad_config_is_refused(bad):
    from lfpcli.errors import ConfigError

    with pytest.raises(ConfigError):
        make_config("pgd-l2", bad)


def test_unknown_parameter_names_the_valid_ones():
    from lfpcli.errors import ConfigError

    with pytest.raises(ConfigError, match="does not apply to --method pgd-l2"):
        make_config("pgd-l2", {"lam": 0.1})
    with pytest.raises(ConfigError, match="--step"):
        make_config("pgd-l2", {"step": "max-normalized"})
    cfg = make_config("pgd-linf", {"eps": "0.2", "steps": "7", "random_start": "true"})
    assert cfg.eps == 0.2 and cfg.steps == 7 and cfg.random_start is True
