"""The proximal operators against brute force: a fine grid for the separable ones, all subsets for the l0 ball."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from lfpcli.errors import ConfigError
from lfpcli.solvers.proxes import (
    PROXES,
    get_prox,
    k_from_ratio,
    make_prox,
    penalty_value,
    prox_box,
    prox_l0_ball_box,
    prox_l0_box,
    prox_l1_box,
    prox_l12_box,
)

DT = torch.float64
GRID = 20001

PENALTIES = {
    "l0": (prox_l0_box, lambda w: (w != 0).to(DT)),
    "l1": (prox_l1_box, lambda w: w.abs()),
    "l1/2": (prox_l12_box, lambda w: w.abs().sqrt()),
    "none": (prox_box, lambda w: torch.zeros_like(w)),
}


def _cases(m: int, seed: int) -> dict[str, torch.Tensor]:
    """Random one-coordinate problems in the box [0, 1], with edge cases mixed in.

    Returns (m,) tensors v, x, step, weight; each case is one sample with one coordinate.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(m, generator=g, dtype=DT)
    x[: m // 8] = 0.0  # at the lower bound
    x[m // 8 : m // 4] = 1.0  # at the upper bound
    scale = 10 ** (torch.rand(m, generator=g, dtype=DT) * 3 - 2)  # 0.01 .. 10: inside and far outside the box
    v = torch.randn(m, generator=g, dtype=DT) * scale
    v[::11] = 0.0
    step = 10 ** (torch.rand(m, generator=g, dtype=DT) * 4 - 3)  # 1e-3 .. 10
    weight = 10 ** (torch.rand(m, generator=g, dtype=DT) * 10 - 7)  # 1e-7 .. 1e3
    weight[::7] = 0.0
    return {"v": v, "x": x, "step": step, "weight": weight}


def _grid_min(v, x, step, weight, pen, lo=0.0, hi=1.0):
    """Minimum of the 1-D objective over GRID points of [lo - x, hi - x] plus 0 and both endpoints."""
    a, b = lo - x, hi - x
    u = torch.linspace(0, 1, GRID, dtype=DT)
    pts = a[:, None] + (b - a)[:, None] * u[None, :]
    pts = torch.cat([pts, torch.zeros_like(a)[:, None], a[:, None], b[:, None]], dim=1)
    obj = (pts - v[:, None]) ** 2 / (2 * step[:, None]) + weight[:, None] * pen(pts)
    return obj.min(dim=1)


def _objective(w, v, step, weight, pen):
    return (w - v) ** 2 / (2 * step) + weight * pen(w)


@pytest.mark.parametrize("name", ["l0", "l1", "l1/2", "none"])
@pytest.mark.parametrize("seed", [0, 1])
def test_separable_prox_matches_grid_minimum(name, seed):
    prox, pen = PENALTIES[name]
    c = _cases(400, seed)
    # One sample per case: (N, 1) with per-sample (N,) step and weight.
    w = prox(c["v"][:, None], c["x"][:, None], 0.0, 1.0, c["step"], c["weight"])[:, 0]
    assert torch.all(c["x"] + w >= -1e-12) and torch.all(c["x"] + w <= 1 + 1e-12)
    f_prox = _objective(w, c["v"], c["step"], c["weight"], pen)
    f_grid, _ = _grid_min(c["v"], c["x"], c["step"], c["weight"], pen)
    # The prox must be at least as good as every grid point (it is feasible, so it can never be much better).
    excess = f_prox - f_grid
    assert torch.all(excess <= 1e-10 * (1 + f_grid.abs())), (name, excess.max().item())


@pytest.mark.parametrize("name", ["l0", "l1", "l1/2"])
def test_prox_edge_cases(name):
    prox, pen = PENALTIES[name]
    # x on either bound with v pushing out, zero v, tiny and huge weights, tiny step.
    v = torch.tensor([2.0, -2.0, 2.0, -2.0, 0.0, 0.3, 0.3, 0.3, -0.7, 1e-6, 5.0], dtype=DT)
    x = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.2, 0.5, 0.999], dtype=DT)
    step = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1e-4, 1.0, 1.0, 10.0], dtype=DT)
    weight = torch.tensor([1.0, 1.0, 1e-9, 1e-9, 1.0, 1e6, 1e-12, 1.0, 0.05, 0.0, 1e-3], dtype=DT)
    w = prox(v[:, None], x[:, None], 0.0, 1.0, step, weight)[:, 0]
    # Pushing out of the box from the bound it sits on: nothing to gain, so no change.
    assert w[0] == 0 and w[1] == 0
    # Zero input or an overwhelming weight: no change.
    assert w[4] == 0 and w[5] == 0
    f_grid, _ = _grid_min(v, x, step, weight, pen)
    assert torch.all(_objective(w, v, step, weight, pen) <= f_grid + 1e-10 * (1 + f_grid.abs()))


def test_l0_prox_keeps_clamped_value_exactly():
    v = torch.tensor([[0.9, -0.4, 0.05, 3.0]], dtype=DT)
    x = torch.tensor([[0.5, 0.5, 0.5, 0.5]], dtype=DT)
    w = prox_l0_box(v, x, 0.0, 1.0, 1.0, 0.01)
    # 0.9 -> clamp 0.5: gain 0.81 - 0.16 > 0.02; -0.4 kept; 0.05: 0.0025 < 0.02 dropped; 3.0 -> 0.5.
    assert torch.equal(w, torch.tensor([[0.5, -0.4, 0.0, 0.5]], dtype=DT))


def test_l12_prox_without_box_is_half_thresholding_root():
    # Inside a huge box the answer must be a stationary point of (w - v)^2/(2s) + lam sqrt|w| or exactly 0.
    v = torch.linspace(-3, 3, 601, dtype=DT)[:, None]
    w = prox_l12_box(v, torch.zeros_like(v), -100.0, 100.0, 0.5, 0.7)
    nz = w != 0
    stationary = (w - v) / 0.5 + 0.7 * torch.sign(w) / (2 * w.abs().clamp_min(1e-300).sqrt())
    assert torch.all(stationary[nz].abs() < 1e-9)
    assert nz.any() and (~nz).any()


def test_nd_broadcasting_per_sample_and_tensor_box():
    g = torch.Generator().manual_seed(3)
    n, ch, h, wd = 3, 2, 4, 5
    v = torch.randn(n, ch, h, wd, generator=g, dtype=DT)
    x = torch.rand(n, ch, h, wd, generator=g, dtype=DT)
    lo = torch.tensor([0.0, -0.5], dtype=DT).reshape(ch, 1, 1)
    hi = torch.tensor([1.0, 1.5], dtype=DT).reshape(ch, 1, 1)
    x = torch.maximum(torch.minimum(x, hi), lo)
    step = torch.tensor([0.1, 1.0, 3.0], dtype=DT)
    weight = torch.tensor([0.5, 0.01, 0.2], dtype=DT)
    for name in ["l0", "l1", "l1/2", "none"]:
        prox = PROXES[name]
        batched = prox(v, x, lo, hi, step, weight)
        assert torch.all(x + batched >= lo - 1e-12) and torch.all(x + batched <= hi + 1e-12)
        for i in range(n):
            alone = prox(v[i : i + 1], x[i : i + 1], lo, hi, float(step[i]), float(weight[i]))
            assert torch.equal(batched[i : i + 1], alone), name


@pytest.mark.parametrize("name", ["l0", "l1", "l1/2", "none", "l0-ball"])
def test_mask_forces_zero_outside_and_changes_nothing_inside(name):
    g = torch.Generator().manual_seed(4)
    v = torch.randn(4, 3, 6, generator=g, dtype=DT)
    x = torch.rand(4, 3, 6, generator=g, dtype=DT)
    mask = torch.rand(4, 1, 6, generator=g) > 0.4  # broadcast over the channel dimension
    kwargs = {"k": 100} if name == "l0-ball" else {}  # a ball that never binds keeps the comparison separable
    prox = PROXES[name]
    masked = prox(v, x, 0.0, 1.0, 0.5, 0.01, mask=mask, **kwargs)
    plain = prox(v, x, 0.0, 1.0, 0.5, 0.01, **kwargs)
    full = mask.expand_as(v)
    assert torch.all(masked[~full] == 0)
    assert torch.equal(masked[full], plain[full])
    # 0/1 masks work like bool ones.
    assert torch.equal(prox(v, x, 0.0, 1.0, 0.5, 0.01, mask=mask.to(DT), **kwargs), masked)


def _ball_brute_force(v, x, step, weight, k):
    """Best objective over all subsets S with |S| <= k of keeping clamp(v) on S and 0 elsewhere (one sample)."""
    c = v.clamp(-x, 1 - x)
    best = math.inf
    d = v.numel()
    for size in range(0, k + 1):
        for subset in itertools.combinations(range(d), size):
            w = torch.zeros_like(v)
            w[list(subset)] = c[list(subset)]
            f = float(((w - v) ** 2).sum() / (2 * step) + weight * size)
            best = min(best, f)
    return best


@pytest.mark.parametrize("weight", [0.0, 0.05])
def test_l0_ball_matches_subset_brute_force(weight):
    g = torch.Generator().manual_seed(5)
    n, d = 40, 6
    v = torch.randn(n, d, generator=g, dtype=DT)
    x = torch.rand(n, d, generator=g, dtype=DT)
    x[::5, :2] = 1.0  # upper bound: positive v gains nothing there
    k = torch.randint(0, d + 1, (n,), generator=g)
    step = 0.7
    w = prox_l0_ball_box(v, x, 0.0, 1.0, step, weight, k=k)
    c = torch.maximum(torch.minimum(v, 1 - x), -x)
    gain = v**2 - (c - v) ** 2
    for i in range(n):
        kept = int((w[i] != 0).sum())
        ki = int(k[i])
        assert kept <= ki
        if weight == 0.0:
            assert kept == min(ki, int((gain[i] > 0).sum()))
        assert torch.all((w[i] == 0) | (w[i] == c[i]))
        f = float(((w[i] - v[i]) ** 2).sum() / (2 * step) + weight * kept)
        assert f <= _ball_brute_force(v[i], x[i], step, weight, ki) + 1e-12


def test_l0_ball_int_k_and_images():
    g = torch.Generator().manual_seed(6)
    v = torch.randn(5, 3, 4, 4, generator=g, dtype=DT)
    x = torch.rand(5, 3, 4, 4, generator=g, dtype=DT)
    w = prox_l0_ball_box(v, x, 0.0, 1.0, k=7)
    assert torch.all((w != 0).reshape(5, -1).sum(dim=1) == 7)
    # The kept coordinates have the largest gains: every kept gain >= every dropped gain.
    c = torch.maximum(torch.minimum(v, 1 - x), -x)
    gain = (v**2 - (c - v) ** 2).reshape(5, -1)
    keep = (w != 0).reshape(5, -1)
    for i in range(5):
        assert gain[i][keep[i]].min() >= gain[i][~keep[i]].max()
    assert torch.equal(prox_l0_ball_box(v, x, 0.0, 1.0, k=0), torch.zeros_like(v))


def test_k_from_ratio():
    assert k_from_ratio(1.0, 784) == 784
    assert k_from_ratio(0.3, 10) == 3
    assert k_from_ratio(1e-6, 10) == 1
    assert torch.equal(k_from_ratio(torch.tensor([0.1, 0.5, 1.0]), 10), torch.tensor([1, 5, 10]))
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ConfigError):
            k_from_ratio(bad, 10)
    with pytest.raises(ConfigError):
        k_from_ratio(torch.tensor([0.5, 0.0]), 10)


def test_penalty_value_per_sample():
    w = torch.tensor([[0.0, 0.25, -1.0], [0.0, 0.0, 0.0], [4.0, 0.0, 0.0]], dtype=DT)
    assert torch.equal(penalty_value("l0", w, 2.0), torch.tensor([4.0, 0.0, 2.0], dtype=DT))
    assert torch.equal(penalty_value("l1", w), torch.tensor([1.25, 0.0, 4.0], dtype=DT))
    assert torch.equal(penalty_value("l1/2", w), torch.tensor([1.5, 0.0, 2.0], dtype=DT))
    assert torch.equal(penalty_value("none", w), torch.zeros(3, dtype=DT))
    per_sample = penalty_value("l0", w, torch.tensor([1.0, 2.0, 3.0], dtype=DT))
    assert torch.equal(per_sample, torch.tensor([2.0, 0.0, 3.0], dtype=DT))
    ball = penalty_value("l0-ball", w, 0.0, k=1)
    assert ball[0] == math.inf and ball[1] == 0 and ball[2] == 0


def test_registry_and_config_errors():
    assert set(PROXES) == {"l0", "l1", "l1/2", "l0-ball", "none"}
    v = torch.zeros(2, 3, dtype=DT)
    with pytest.raises(ConfigError):
        get_prox("l2")
    with pytest.raises(ConfigError):
        penalty_value("l3", v)
    with pytest.raises(ConfigError):
        prox_l0_box(v, v, 0.0, 1.0, 1.0, -1.0)
    with pytest.raises(ConfigError):
        prox_l1_box(v, v, 0.0, 1.0, 0.0, 1.0)
    with pytest.raises(ConfigError):
        prox_l0_ball_box(v, v, 0.0, 1.0, k=-1)
    with pytest.raises(ConfigError):
        make_prox("l0-ball", v, 0.0, 1.0)
    with pytest.raises(ConfigError):
        make_prox("l1", v, 0.0, 1.0, 0.1, k=3)
    bound = make_prox("l0-ball", v, 0.0, 1.0, k=1)
    kept = bound(torch.tensor([[0.1, 0.5, 0.2]] * 2, dtype=DT), 1.0)
    assert torch.equal(kept[0], torch.tensor([0, 0.5, 0], dtype=DT))
