"""A plain, one-sample-at-a-time reference implementation of S-CFE (Sadiku et al. 2025), for checking lfp's
batched ``pcfe-l0`` against. It deliberately imports nothing from ``lfpcli``.

Per sample ``x`` with target ``t``, with ``w = x' - x`` and ``x' = x + w`` in the pixel box ``[lo, hi]``::

    minimise  F(w) = ||w||_2^2 + gamma * L(x + w, t) - tau * P(x + w, t) + beta * ||w||_0

    L(x', t) = max(max_{j != t} z_j - z_t + kappa, 0),   z = model(x')      (margin loss)
    P(x', t) = plausibility(x', t)                                        (e.g. log q(x' | t); optional)

FISTA (Beck & Teboulle) on ``f = ||w||^2 + gamma L - tau P`` with the fixed step ``s = 1 / lipschitz``, from
``w_0 = y_0 = 0``, ``t_0 = 1``::

    p       = prox(y_k - s grad f(y_k))
    t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2
    y_{k+1} = p + (t_k - 1) / t_{k+1} (p - w_k),     w_{k+1} = p

The prox of ``beta ||.||_0`` plus the box, ``prox(v) = argmin_u (u - v)^2 / (2 s) + beta [u != 0]`` subject to
``lo - x <= u <= hi - x`` (an interval ``[a, b]`` that contains 0), separates per coordinate. If ``u != 0`` the
best ``u`` is ``c = clamp(v, a, b)``, costing ``(c - v)^2 / (2 s) + beta``; ``u = 0`` costs ``v^2 / (2 s)``. So
``u = c`` iff ``v^2 - (c - v)^2 > 2 s beta``, else 0 (ties to 0).

Outer search over ``gamma`` (``search_steps`` tries, bracket ``[lo_g, hi_g] = [0, inf]``): if the FISTA result is
classified as ``t``, ``hi_g = gamma`` and ``gamma = (lo_g + hi_g) / 2``; otherwise ``lo_g = gamma`` and ``gamma``
is multiplied by ``growth`` while ``hi_g`` is infinite, else bisected. The sparsest successful result is kept
(fewest changed values, then smallest l2; ties keep the earlier); a sample that never succeeds returns its last try.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import Tensor


def margin_loss(z: Tensor, t: int, kappa: float) -> Tensor:
    """max(max_{j != t} z_j - z_t + kappa, 0) for one sample's logits ``z`` of shape (K,)."""
    others = torch.cat([z[:t], z[t + 1 :]])
    return torch.clamp(others.max() - z[t] + kappa, min=0.0)


def prox_l0_box(v: Tensor, a: Tensor, b: Tensor, s: float, beta: float) -> Tensor:
    """Per coordinate argmin_{u in [a, b]} (u - v)^2 / (2 s) + beta [u != 0], with a <= 0 <= b."""
    c = torch.minimum(torch.maximum(v, a), b)
    keep = v * v - (c - v) ** 2 > 2.0 * s * beta
    return torch.where(keep, c, torch.zeros_like(c))


def _fista_one(model, x, t, gamma, *, steps, s, beta, tau, kappa, lo, hi, plausibility, anneal=False) -> Tensor:
    """FISTA with step ``s`` (fixed, or ``s * sqrt(1 - k / steps)`` at iteration ``k`` with ``anneal``) for one
    sample ``x`` (1, ...); returns ``w`` (1, ...)."""
    a = lo - x
    b = hi - x
    t_idx = int(t.item())
    w = torch.zeros_like(x)
    y = w.clone()
    tk = 1.0
    s0 = s
    for k in range(steps):
        if anneal:
            s = s0 * math.sqrt(1.0 - k / steps)
        y = y.detach().requires_grad_(True)
        xp = x + y
        z = model(xp)[0]
        f = (y * y).sum() + gamma * margin_loss(z, t_idx, kappa)
        if plausibility is not None and tau > 0:
            f = f - tau * plausibility(xp, t).reshape(())
        (g,) = torch.autograd.grad(f, y)
        with torch.no_grad():
            p = prox_l0_box(y - s * g, a, b, s, beta)
            t_next = (1.0 + math.sqrt(1.0 + 4.0 * tk * tk)) / 2.0
            y = p + ((tk - 1.0) / t_next) * (p - w)
            w = p
            tk = t_next
    return w.detach()


def reference_scfe(
    model: torch.nn.Module,
    x: Tensor,
    t: Tensor,
    *,
    steps: int,
    search_steps: int,
    gamma: float,
    beta: float,
    tau: float,
    lipschitz: float,
    kappa: float,
    growth: float = 10.0,
    plausibility: Optional[Callable[[Tensor, Tensor], Tensor]] = None,
    lo: float = 0.0,
    hi: float = 1.0,
    anneal: bool = False,
) -> tuple[Tensor, Tensor]:
    """S-CFE one sample at a time: ``x`` (N, ...) in ``[lo, hi]``, ``t`` (N,) -> ``(x_cf (N, ...), success (N,))``.

    ``plausibility(x', t) -> (1,)`` (higher = more plausible) enters as ``-tau * plausibility``. ``success`` is
    whether ``x_cf`` (clamped into the box) is classified as ``t``. The model must already be in eval mode.
    """
    s = 1.0 / lipschitz
    outs, oks = [], []
    for i in range(x.shape[0]):
        xi = x[i : i + 1].detach()
        ti = t[i : i + 1]
        g, g_lo, g_hi = float(gamma), 0.0, math.inf
        best_w, best_key, last_w = None, None, None
        for _ in range(search_steps):
            w = _fista_one(
                model,
                xi,
                ti,
                g,
                steps=steps,
                s=s,
                beta=beta,
                tau=tau,
                kappa=kappa,
                lo=lo,
                hi=hi,
                plausibility=plausibility,
                anneal=anneal,
            )
            with torch.no_grad():
                ok = int(model(xi + w).argmax(1).item()) == int(ti.item())
            last_w = w
            if ok:
                key = (int((w != 0).sum().item()), float(w.norm().item()))
                if best_key is None or key < best_key:
                    best_w, best_key = w, key
                g_hi = g
                g = (g_lo + g_hi) / 2.0
            else:
                g_lo = g
                g = g * growth if math.isinf(g_hi) else (g_lo + g_hi) / 2.0
        w = best_w if best_w is not None else last_w
        x_cf = (xi + w).clamp(lo, hi)
        with torch.no_grad():
            oks.append(bool(model(x_cf).argmax(1).item() == int(ti.item())))
        outs.append(x_cf)
    return torch.cat(outs), torch.tensor(oks)
