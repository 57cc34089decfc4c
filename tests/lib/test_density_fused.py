"""The batched evaluation of every target class at once gives what one product per class gives."""

from __future__ import annotations

import pytest
import torch

from lfpcli.density import fit_density


def _data(k=5, n=400, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    x = torch.randn(n, d, generator=g, dtype=torch.float64) + y[:, None].double()
    return x, y


@pytest.mark.parametrize("kind, params", [("kde", {}), ("gmm", {"components": 3, "covariance": "full"})])
@pytest.mark.parametrize("targets", ["balanced", "skewed", "one-class"])
def test_fused_equals_grouped(kind, params, targets):
    x, y = _data()
    q = fit_density(kind, x[:300], y[:300], 5, seed=0, **params)
    xe = x[300:364].clone()
    if targets == "balanced":
        t = torch.arange(64) % 5
    elif targets == "skewed":  # padding would more than double the rows: the per-class path is used
        t = torch.where(torch.arange(64) < 60, 0, torch.arange(64) % 5)
    else:
        t = torch.full((64,), 3)
    vals, grads = [], []
    for fused in (True, False):
        q.fused = fused
        xv = xe.clone().requires_grad_()
        v = q.log_prob(xv, t.clone())
        (g,) = torch.autograd.grad(v.sum(), xv)
        vals.append(v.detach())
        grads.append(g)
    torch.testing.assert_close(vals[0], vals[1], rtol=1e-10, atol=1e-9)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=1e-9)
    # and both are the per-sample definition: each sample under its own target's density alone
    one = torch.stack([q.log_prob(xe[i : i + 1], t[i : i + 1]) for i in range(0, 64, 7)]).flatten()
    torch.testing.assert_close(vals[0][::7], one, rtol=1e-10, atol=1e-9)
