"""Proximal operators of sparsity penalties restricted to the pixel box, batched over samples.

Every operator works on the perturbation ``w = x' - x`` and returns

    prox(v) = argmin_w  1/(2*step) * ||w - v||^2 + weight * penalty(w) + indicator(lo <= x + w <= hi)

for a batch ``v, x`` of shape ``(N, ...)`` (``(N, C, H, W)`` images or ``(N, D)`` vectors). ``lo``/``hi`` are
python scalars or tensors broadcastable to ``x``; ``x`` must lie in the box, so ``w = 0`` is always feasible.
``step`` and ``weight`` are python floats or per-sample tensors of shape ``(N,)``, broadcast over the trailing
dimensions. Every operator also takes ``mask`` (bool or 0/1, broadcastable to ``w``): coordinates where the mask
is false/0 are forced to 0, which is the exact prox of the same problem with those coordinates fixed.

Except for the l0 ball, all penalties separate over coordinates, so each operator solves the 1-D problem
``min over w in [a, b] of (w - v)^2 / (2*step) + weight * p(w)`` with ``a = lo - x <= 0 <= b = hi - x``.
Nothing here loops over samples or synchronises with the host, so the operators can sit inside a GPU loop.
"""

from __future__ import annotations

import math
from typing import Callable, Union

import torch
from torch import Tensor

from lfpcli.errors import ConfigError

ScalarOrTensor = Union[float, int, Tensor]
Prox = Callable[..., Tensor]

__all__ = [
    "PROXES",
    "get_prox",
    "k_from_ratio",
    "make_prox",
    "penalty_value",
    "prox_box",
    "prox_l0_ball_box",
    "prox_l0_box",
    "prox_l12_box",
    "prox_l1_box",
]


def _per_sample(a: ScalarOrTensor, ref: Tensor) -> ScalarOrTensor:
    """View a per-sample ``(N,)`` tensor as ``(N, 1, ..., 1)`` so it broadcasts against ``ref`` ``(N, ...)``.

    A 1-D tensor is always read as per-sample, even when ``ref``'s trailing size happens to equal ``N``;
    python numbers and 0-d tensors pass through.
    """
    if isinstance(a, Tensor) and a.dim() == 1 and ref.dim() > 1:
        return a.reshape((-1,) + (1,) * (ref.dim() - 1))
    return a


def _check_nonneg(name: str, a: ScalarOrTensor, *, positive: bool = False) -> None:
    # Only python numbers are checked: testing a tensor would need a host sync inside the caller's loop.
    if isinstance(a, Tensor):
        return
    bad = (a <= 0) if positive else (a < 0)
    if bad or not math.isfinite(a):
        raise ConfigError(f"{name} must be {'positive' if positive else 'non-negative'} and finite, got {a}")


def _bounds(v: Tensor, x: Tensor | None, lo: ScalarOrTensor, hi: ScalarOrTensor) -> tuple[Tensor, Tensor]:
    """Box for ``w``: ``a = lo - x`` and ``b = hi - x`` as tensors broadcast to ``v``'s shape. ``x=None`` means
    ``lo``/``hi`` already are the bounds of ``w`` (``make_prox`` computes them once, not at every iteration)."""
    if x is None:
        return torch.as_tensor(lo).expand_as(v), torch.as_tensor(hi).expand_as(v)
    a = torch.as_tensor(lo, dtype=v.dtype, device=v.device) - x
    b = torch.as_tensor(hi, dtype=v.dtype, device=v.device) - x
    return a.expand_as(v), b.expand_as(v)


def _clamp(v: Tensor, a: Tensor, b: Tensor) -> Tensor:
    return torch.clamp(v, min=a, max=b)  # one pass; a <= b always (x lies in the box)


def _apply_mask(w: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return w
    return torch.where(mask.to(device=w.device, dtype=torch.bool), w, torch.zeros((), dtype=w.dtype, device=w.device))


def prox_box(
    v: Tensor,
    x: Tensor,
    lo: ScalarOrTensor,
    hi: ScalarOrTensor,
    step: ScalarOrTensor = 1.0,
    weight: ScalarOrTensor = 0.0,
    *,
    mask: Tensor | None = None,
) -> Tensor:
    """Projection onto the box: ``clamp(v, lo - x, hi - x)``; ``step`` and ``weight`` are ignored.

    Shapes: ``v, x`` (N, ...) -> ``w`` (N, ...).
    """
    a, b = _bounds(v, x, lo, hi)
    return _apply_mask(_clamp(v, a, b), mask)


def prox_l0_box(
    v: Tensor,
    x: Tensor,
    lo: ScalarOrTensor,
    hi: ScalarOrTensor,
    step: ScalarOrTensor,
    weight: ScalarOrTensor,
    *,
    mask: Tensor | None = None,
) -> Tensor:
    """Prox of ``weight * ||w||_0`` plus the box (the S-CFE prox, hard thresholding with clamping).

    Per coordinate the only candidates are 0 and ``c = clamp(v, lo - x, hi - x)``. Keeping ``c`` costs
    ``(c - v)^2 / (2 step) + weight`` against ``v^2 / (2 step)`` for 0, so ``c`` is kept iff
    ``v^2 - (c - v)^2 > 2 * step * weight`` (ties go to 0, the sparser choice).
    Shapes: ``v, x`` (N, ...); ``step, weight`` float or (N,) -> ``w`` (N, ...).
    """
    _check_nonneg("step", step, positive=True)
    _check_nonneg("weight", weight)
    a, b = _bounds(v, x, lo, hi)
    c = _clamp(v, a, b)
    gain = (2 * v - c).mul_(c)  # = v^2 - (c - v)^2, in two passes
    drop = gain <= 2 * _per_sample(step, v) * _per_sample(weight, v)
    return _apply_mask(c.masked_fill_(drop, 0.0), mask)


def prox_l1_box(
    v: Tensor,
    x: Tensor,
    lo: ScalarOrTensor,
    hi: ScalarOrTensor,
    step: ScalarOrTensor,
    weight: ScalarOrTensor,
    *,
    mask: Tensor | None = None,
) -> Tensor:
    """Prox of ``weight * ||w||_1`` plus the box: soft threshold by ``step * weight``, then clamp.

    The 1-D problem is convex, so clamping its unconstrained minimiser to the interval is exact.
    Shapes: ``v, x`` (N, ...); ``step, weight`` float or (N,) -> ``w`` (N, ...).
    """
    _check_nonneg("step", step, positive=True)
    _check_nonneg("weight", weight)
    a, b = _bounds(v, x, lo, hi)
    thr = _per_sample(step, v) * _per_sample(weight, v)
    soft = torch.sign(v) * torch.clamp(v.abs() - thr, min=0.0)
    return _apply_mask(_clamp(soft, a, b), mask)


def _half_threshold(v: Tensor, mu: ScalarOrTensor) -> Tensor:
    """Global minimiser of ``(w - v)^2 + mu * |w|^(1/2)`` (Xu et al. 2012, half thresholding).

    ``w = 2/3 v (1 + cos(2 pi / 3 - 2/3 phi))`` with ``phi = arccos(mu / 8 * (|v| / 3)^(-3/2))`` when
    ``|v| > 54^(1/3) / 4 * mu^(2/3)``, else 0.
    """
    mu_t = torch.as_tensor(mu, dtype=v.dtype, device=v.device)
    av = v.abs()
    thr = (54.0 ** (1.0 / 3.0) / 4.0) * mu_t ** (2.0 / 3.0)
    big = av > thr
    # Evaluate the formula on a safe |v| so that the discarded branch never produces NaN/inf gradients or values.
    safe = torch.where(big, av, torch.ones_like(av))
    arg = torch.clamp(mu_t / 8.0 * (safe / 3.0) ** -1.5, -1.0, 1.0)
    phi = torch.arccos(arg)
    w = (2.0 / 3.0) * v * (1.0 + torch.cos(2.0 * math.pi / 3.0 - (2.0 / 3.0) * phi))
    return torch.where(big, w, torch.zeros_like(w))


def prox_l12_box(
    v: Tensor,
    x: Tensor,
    lo: ScalarOrTensor,
    hi: ScalarOrTensor,
    step: ScalarOrTensor,
    weight: ScalarOrTensor,
    *,
    mask: Tensor | None = None,
) -> Tensor:
    """Prox of ``weight * sum_i |w_i|^(1/2)`` plus the box.

    The 1-D objective ``(w - v)^2 / (2 step) + weight |w|^(1/2)`` equals ``(w - v)^2 + mu |w|^(1/2)`` up to the
    factor ``1/(2 step)``, with ``mu = 2 step weight``. It is non-convex, so clamping the unconstrained minimiser is
    not enough on its own; on the side of ``v`` it has at most one interior local minimum (the half-threshold root)
    and it decreases towards 0 on the other side. The exact minimiser over ``[lo - x, hi - x]`` is therefore the best
    of: 0, the clamped half-threshold value, and the box endpoint on the side of ``v``. Ties go to 0.
    Shapes: ``v, x`` (N, ...); ``step, weight`` float or (N,) -> ``w`` (N, ...).
    """
    _check_nonneg("step", step, positive=True)
    _check_nonneg("weight", weight)
    a, b = _bounds(v, x, lo, hi)
    s = _per_sample(step, v)
    lam = _per_sample(weight, v)

    def obj(w: Tensor) -> Tensor:
        return (w - v) ** 2 / (2 * s) + lam * w.abs().sqrt()

    best = torch.zeros_like(v)
    best_obj = obj(best)
    for cand in (_clamp(_half_threshold(v, 2 * s * lam), a, b), torch.where(v >= 0, b, a)):
        f = obj(cand)
        better = f < best_obj
        best = torch.where(better, cand, best)
        best_obj = torch.where(better, f, best_obj)
    return _apply_mask(best, mask)


def k_from_ratio(ratio: ScalarOrTensor, d: int) -> int | Tensor:
    """Number of coordinates ``k = ceil(ratio * d)`` (at least 1) for an l0 ball given as a fraction of ``d``.

    ``ratio`` is a float in (0, 1] or an (N,) tensor of such (-> (N,) long tensor); ``d`` is the number of
    coordinates per sample (e.g. ``C * H * W``).
    """
    if d < 1:
        raise ConfigError(f"the number of coordinates must be positive, got {d}")
    if isinstance(ratio, Tensor):
        # Set-up time, not inside the iteration loop, so one host sync for the check is fine.
        if bool(((ratio <= 0) | (ratio > 1) | torch.isnan(ratio)).any()):
            raise ConfigError("every l0-ball ratio must lie in (0, 1]")
        # Relative slack so that a float32 0.1 (0.100000001...) times 10 gives 1, not 2.
        return torch.clamp(torch.ceil(ratio.double() * d * (1 - 1e-6)), min=1, max=d).long()
    if not (0 < ratio <= 1):
        raise ConfigError(f"the l0-ball ratio must lie in (0, 1], got {ratio}")
    # Relative slack so that 0.3 * 10 = 3.0000000000000004 gives 3, not 4.
    return int(min(d, max(1, math.ceil(ratio * d * (1 - 1e-12)))))


def prox_l0_ball_box(
    v: Tensor,
    x: Tensor,
    lo: ScalarOrTensor,
    hi: ScalarOrTensor,
    step: ScalarOrTensor = 1.0,
    weight: ScalarOrTensor = 0.0,
    *,
    k: int | Tensor,
    mask: Tensor | None = None,
) -> Tensor:
    """Prox of ``weight * ||w||_0`` plus the box plus the l0 ball ``||w||_0 <= k`` (per sample).

    Per coordinate ``c = clamp(v, lo - x, hi - x)`` and ``gain = v^2 - (c - v)^2`` (how much keeping ``c`` instead
    of 0 lowers ``||w - v||^2``). The objective of keeping a set S is ``sum_{i in S} (weight - gain_i / (2 step))``
    plus a constant, so the exact answer keeps the (at most) ``k`` largest gains that exceed ``2 step weight``.
    With ``weight = 0`` (the default) this is the projection onto ball and box: the ``min(k, #positive gains)``
    largest gains are kept. Ties in gain are broken by coordinate index (the lowest first), so never more than ``k``.
    An integer ``k`` finds the k-th largest gain with ``topk`` (O(d log k) per sample) instead of sorting all ``d``.
    Shapes: ``v, x`` (N, ...); ``step, weight`` float or (N,); ``k`` int or (N,) int tensor -> ``w`` (N, ...).
    """
    _check_nonneg("step", step, positive=True)
    _check_nonneg("weight", weight)
    if not isinstance(k, Tensor) and k < 0:
        raise ConfigError(f"the l0-ball size k must be non-negative, got {k}")
    a, b = _bounds(v, x, lo, hi)
    c = _apply_mask(_clamp(v, a, b), mask)
    gain = v * v - (c - v) ** 2
    eligible = gain > 2 * _per_sample(step, v) * _per_sample(weight, v)
    n = v.shape[0]
    flat_gain = torch.where(eligible, gain, torch.full_like(gain, -math.inf)).reshape(n, -1)
    d = flat_gain.shape[1]
    if not isinstance(k, Tensor):
        if k >= d:
            return torch.where(eligible, c, torch.zeros_like(c))
        if k == 0:
            return torch.zeros_like(c)
        # the k largest gains without sorting all d of them: everything above the k-th largest, then as many of the
        # gains equal to it as fit, lowest coordinate first (the stable sort's tie-break, bit for bit)
        kth = torch.topk(flat_gain, k, dim=1, sorted=False).values.amin(1, keepdim=True)
        above = flat_gain > kth
        tie = flat_gain == kth
        room = k - above.sum(1, keepdim=True)
        keep = (above | (tie & (torch.cumsum(tie, dim=1) <= room))).reshape(v.shape) & eligible
        return torch.where(keep, c, torch.zeros_like(c))
    order = torch.sort(flat_gain, dim=1, descending=True, stable=True).indices
    # rank[n, i] = position of coordinate i in the descending order of gains.
    positions = torch.arange(d, device=v.device).expand(n, -1)
    rank = torch.empty_like(order).scatter_(1, order, positions)
    keep = (rank < k.to(v.device).reshape(-1, 1)).reshape(v.shape) & eligible
    return torch.where(keep, c, torch.zeros_like(c))


PROXES: dict[str, Prox] = {
    "l0": prox_l0_box,
    "l1": prox_l1_box,
    "l1/2": prox_l12_box,
    "l0-ball": prox_l0_ball_box,
    "none": prox_box,
}


def get_prox(name: str) -> Prox:
    """The prox registered under ``name`` (one of ``PROXES``); an unknown name raises ``ConfigError``."""
    try:
        return PROXES[name]
    except KeyError:
        raise ConfigError(f"unknown prox {name!r}; choose one of {', '.join(PROXES)}") from None


def make_prox(
    name: str,
    x: Tensor,
    lo: ScalarOrTensor,
    hi: ScalarOrTensor,
    weight: ScalarOrTensor = 0.0,
    *,
    k: int | Tensor | None = None,
    mask: Tensor | None = None,
) -> Callable[[Tensor, ScalarOrTensor], Tensor]:
    """Bind a registered prox to ``x``, the box, ``weight`` (and ``k`` for "l0-ball"): ``prox(v, step) -> w``.

    This is the form ``fista`` expects. ``k`` is required for "l0-ball" and rejected otherwise.
    """
    fn = get_prox(name)
    # x is fixed for the whole run: the box of w is computed once here instead of at every iteration
    a = torch.as_tensor(lo, dtype=x.dtype, device=x.device) - x
    b = torch.as_tensor(hi, dtype=x.dtype, device=x.device) - x
    if name == "l0-ball":
        if k is None:
            raise ConfigError("the l0-ball prox needs k (the number of coordinates allowed to change)")

        def bound(v: Tensor, step: ScalarOrTensor) -> Tensor:
            return fn(v, None, a, b, step, weight, k=k, mask=mask)

        return bound
    if k is not None:
        raise ConfigError(f"k only applies to the l0-ball prox, not {name!r}")

    def bound(v: Tensor, step: ScalarOrTensor) -> Tensor:
        return fn(v, None, a, b, step, weight, mask=mask)

    return bound


def penalty_value(
    name: str,
    w: Tensor,
    weight: ScalarOrTensor = 1.0,
    *,
    k: int | Tensor | None = None,
) -> Tensor:
    """Nonsmooth part ``weight * penalty(w)`` per sample, shape (N,), for objective reports and line searches.

    "l0": ``weight * #{w_i != 0}``; "l1": ``weight * sum |w_i|``; "l1/2": ``weight * sum |w_i|^(1/2)``;
    "l0-ball": ``weight * #{w_i != 0}`` (the prox's l0 price), ``+inf`` where more than ``k`` coordinates are
    nonzero; "none": 0. The box indicator is not included: prox outputs are always inside the box.
    ``weight`` is a float or an (N,) tensor.
    """
    get_prox(name)
    flat = w.reshape(w.shape[0], -1)
    wt = torch.as_tensor(weight, dtype=w.dtype, device=w.device)
    if name == "none":
        return torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
    if name == "l1":
        return wt * flat.abs().sum(dim=1)
    if name == "l1/2":
        return wt * flat.abs().sqrt().sum(dim=1)
    count = (flat != 0).sum(dim=1).to(w.dtype)
    value = wt * count
    if name == "l0-ball":
        if k is None:
            raise ConfigError("the l0-ball penalty needs k")
        k_t = torch.as_tensor(k, device=w.device)
        value = torch.where(count > k_t, torch.full_like(value, math.inf), value)
    return value
