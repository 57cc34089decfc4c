"""pgd-l0 (sparse PGD after Kumano et al.): a per-sample reference loop, the coordinate choice, the box edge, l0."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lfpcli.errors import ConfigError
from lfpcli.solvers import choose_targets, norms
from lfpcli.solvers.pgd_l0 import PGDL0Config, pgd_l0


def small_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 3))


def l0(r, x):
    return ((r.x - x).flatten(1) != 0).sum(1)


def reference(model, x, t, steps, step_size, step="max-normalized", max_changed=None, keep="last", lo=0.0, hi=1.0):
    """The documented algorithm written plainly, one sample and one coordinate at a time."""
    budget = steps if max_changed is None else min(steps, max_changed)
    outs, counts = [], []
    for i in range(x.shape[0]):
        xi, ti = x[i : i + 1].clone(), t[i : i + 1]
        chosen: list[int] = []
        best = (float("inf"), xi)
        for _ in range(steps + 1):
            xv = xi.clone().requires_grad_(True)
            loss = F.cross_entropy(model(xv), ti)
            if loss.item() < best[0]:
                best = (loss.item(), xi.clone())
            if len(chosen) == steps:  # the last pass only evaluates the final iterate
                break
            (g,) = torch.autograd.grad(loss, xv)
            g, flat = g.flatten(), xi.flatten()
            if len(chosen) < budget:
                cands = [
                    j
                    for j in range(g.numel())
                    if j not in chosen and ((g[j] > 0 and flat[j] > lo) or (g[j] < 0 and flat[j] < hi))
                ]
                chosen.append(max(cands, key=lambda j: (abs(g[j].item()), -j)) if cands else -1)
            else:
                chosen.append(-1)
            s = torch.zeros_like(g)
            real = [j for j in chosen if j >= 0]
            s[real] = g[real]
            if step == "sign":
                s = s.sign()
            elif step == "max-normalized":
                s = s / s.abs().max().clamp_min(1e-12)
            xi = (xi - step_size * s.view_as(xi)).clamp(lo, hi)
        outs.append(best[1] if keep == "best" else xi)
        counts.append(sum(j >= 0 for j in chosen))
    return torch.cat(outs), torch.tensor(counts)


@pytest.mark.parametrize(
    "kw",
    [
        {"steps": 6, "step_size": 0.3},
        {"steps": 6, "step_size": 0.4, "step": "sign"},
        {"steps": 6, "step_size": 2.0, "step": "raw", "max_changed": 3},
        {"steps": 6, "step_size": 0.7, "step": "sign", "keep": "best"},
    ],
)
def test_matches_a_per_sample_reference_loop(kw):
    model = small_cnn(4).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 1, 8, 8, generator=g)
    x[0] = 0.0
    x[1] = 1.0
    x[2, 0, ::2] = 0.0
    t = torch.tensor([0, 1, 2, 1, 0])
    r = pgd_l0(model, x, t, PGDL0Config(**kw))
    with torch.no_grad():
        for p in model.parameters():
            p.requires_grad_(False)
    ref_x, ref_count = reference(model, x, t, **kw)
    torch.testing.assert_close(r.x, ref_x, atol=1e-6, rtol=0)
    assert torch.equal(r.extras["changed"], ref_count)
    assert (l0(r, x) <= PGDL0Config(**kw).budget).all()


def test_first_coordinate_is_the_largest_gradient():
    model = small_cnn(5)
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 0.8 + 0.1  # inside the box
    t = torch.arange(8) % 3
    r = pgd_l0(model, x, t, PGDL0Config(steps=1, step_size=0.05, step="sign"))
    for i in range(8):
        xv = x[i : i + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(xv), t[i : i + 1]), xv)
        changed = ((r.x[i] - x[i]).flatten() != 0).nonzero().flatten().tolist()
        assert changed == [int(g.abs().flatten().argmax())]
        j = changed[0]
        assert (r.x[i].flatten()[j] - x[i].flatten()[j]).item() == pytest.approx(
            -0.05 * g.flatten()[j].sign().item(), abs=1e-6
        )


def test_coordinates_pinned_at_the_box_edge_take_no_slot():
    """With 2 classes and logits W x, the CE gradient toward t is -(1 - p_t)(w_t - w_o): its direction is fixed, so
    after k steps the changed set is the k largest |w_t - w_o| among coordinates that can move along w_t - w_o."""
    d, k = 64, 5
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(d, 2, bias=False))
    w = model[1].weight.detach()
    t = torch.tensor([0, 1])
    x = torch.full((2, 1, 8, 8), 0.5)
    order = []
    for i in range(2):
        u = w[t[i]] - w[1 - t[i]]
        rank = u.abs().argsort(descending=True)
        flat = x[i].view(-1)
        # the 3 largest point out of the box: pinned; the 4th is on the edge but points inward: movable
        for j in rank[:3]:
            flat[j] = 1.0 if u[j] > 0 else 0.0
        flat[rank[3]] = 0.0 if u[rank[3]] > 0 else 1.0
        order.append(rank[3 : 3 + k].sort().values)
    r = pgd_l0(model, x, t, PGDL0Config(steps=k, step_size=0.1, step="sign"))
    for i in range(2):
        support = ((r.x[i] - x[i]).flatten() != 0).nonzero().flatten()
        assert torch.equal(support, order[i])
    assert (r.extras["changed"] == k).all() and (l0(r, x) == k).all()


def test_all_pinned_changes_nothing():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2, bias=False))
    u = model[1].weight.detach()[1] - model[1].weight.detach()[0]
    x = (u > 0).float().view(1, 1, 4, 4)  # every coordinate already at the edge the target pushes toward
    r = pgd_l0(model, x, torch.tensor([1]), PGDL0Config(steps=4))
    assert torch.equal(r.x, x) and r.extras["changed"].item() == 0
    assert r.grad_evals.item() == 4


@pytest.mark.parametrize(
    "kw", [{"steps": 7}, {"steps": 12, "max_changed": 4}, {"steps": 5, "step": "raw", "step_size": 5.0}]
)
def test_budget_box_and_counters(kw):
    model = small_cnn(0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 8, 8, generator=g)
    x[:4] = 0.0
    x[4:8] = 1.0
    t = torch.randint(0, 3, (16,), generator=g)
    cfg = PGDL0Config(**kw)
    r = pgd_l0(model, x, t, cfg)
    assert r.x.shape == x.shape and r.x.min() >= 0 and r.x.max() <= 1
    assert (l0(r, x) <= r.extras["changed"]).all() and (r.extras["changed"] <= cfg.budget).all()
    assert (norms(r.x - x)["l0"] <= min(kw["steps"], kw.get("max_changed", kw["steps"]))).all()
    with torch.no_grad():
        logits = model(r.x)
    assert torch.equal(r.success, logits.argmax(1) == t)
    torch.testing.assert_close(r.loss, F.cross_entropy(logits, t, reduction="none"))
    for c in (r.iterations, r.grad_evals):
        assert c.dtype == torch.int64 and c.shape == (16,) and (c == kw["steps"]).all()


def test_keep_best_never_worse_than_last_or_start():
    model = small_cnn(3)
    x = torch.rand(10, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    t = torch.arange(10) % 3
    cfg = dict(steps=8, step="sign", step_size=1.0)  # big steps that overshoot
    last = pgd_l0(model, x, t, PGDL0Config(**cfg))
    best = pgd_l0(model, x, t, PGDL0Config(**cfg, keep="best"))
    with torch.no_grad():
        start = F.cross_entropy(model(x), t, reduction="none")
    assert (best.loss <= last.loss + 1e-6).all() and (best.loss <= start + 1e-6).all()
    assert (best.loss < last.loss - 1e-3).any()
    assert (l0(best, x) <= 8).all()


def test_batch_invariance_and_no_side_effects():
    model = small_cnn(2)
    model.train()
    model[3].bias.requires_grad_(False)
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    x0 = x.clone()
    t = torch.tensor([0, 1, 2, 0, 1, 2])
    cfg = PGDL0Config(steps=6, keep="best")
    r = pgd_l0(model, x, t, cfg)
    assert torch.equal(x, x0)
    assert model.training
    assert [p.requires_grad for p in model.parameters()] == [True, True, True, False]
    assert all(p.grad is None for p in model.parameters())
    for i in range(6):
        ri = pgd_l0(model, x[i : i + 1], t[i : i + 1], cfg)
        torch.testing.assert_close(ri.x, r.x[i : i + 1], atol=1e-6, rtol=0)
        assert torch.equal(ri.extras["changed"], r.extras["changed"][i : i + 1])


def test_succeeds_on_a_trained_model(digits_model):
    from lfpcli.artifacts.dataspec import resolve
    from lfpcli.commands.common import load_model

    model, _ = load_model(digits_model, torch.device("cpu"))
    ds = resolve("digits")
    x, y = ds.splits["train"].x[:100], ds.splits["train"].y[:100]
    t = choose_targets(y, 10, "random-other", torch.Generator().manual_seed(0))  # chance: 0 successes
    r = pgd_l0(model, x, t, PGDL0Config(steps=10))
    assert r.success.float().mean() > 0.8
    assert (l0(r, x) <= 10).all()


@pytest.mark.parametrize(
    "bad",
    [
        {"steps": 0},
        {"max_changed": 0},
        {"step_size": 0},
        {"step_size": -1},
        {"step_size": float("nan")},
        {"step_size": float("inf")},
        {"step": "l2"},
        {"keep": "first"},
        {"loss": "hinge"},
        {"lo": 0.5, "hi": 0.5},
    ],
)
def test_bad_config_is_refused(bad):
    with pytest.raises(ConfigError):
        PGDL0Config(**bad)


def test_config_record_and_registry():
    assert PGDL0Config(steps=9).to_dict()["max_changed"] == 9
    assert PGDL0Config(steps=9, max_changed=20).budget == 9
    from lfpcli.solvers import get_solver, list_solvers, make_config

    assert "pgd-l0" in list_solvers()
    assert get_solver("pgd-l0").fn is pgd_l0
    cfg = make_config("pgd-l0", {"steps": "12", "max_changed": "none", "step": "sign"})
    assert cfg == PGDL0Config(steps=12, step="sign")
    assert make_config("pgd-l0", {"max_changed": "5"}).max_changed == 5
    assert make_config("pgd-l0", cfg.to_dict()).budget == cfg.budget
    with pytest.raises(ConfigError, match="does not apply"):
        make_config("pgd-l0", {"eps": 1.0})
