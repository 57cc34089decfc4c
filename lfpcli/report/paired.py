"""Paired differences over seeds with a Student-t confidence interval: how ``lfp report --baseline`` compares a
method with a baseline run on the same seeds.

For pairs ``(a_s, b_s)`` over the seeds s both have, ``d_s = a_s - b_s``; the interval is
``mean(d) +- t_{1 - alpha/2, n-1} * std(d) / sqrt(n)`` with ``std`` the sample standard deviation (ddof = 1). Pairing
removes what the seeds share (the same standard model, the same data order), so the interval is narrower than
one built from the two columns' spreads whenever the seeds' runs move together.

The t quantile is computed here (no SciPy at run time): the t distribution's CDF through the regularized incomplete
beta function, ``P(T <= t) = 1 - I_{n/(n+t^2)}(n/2, 1/2) / 2`` for t >= 0, evaluated by its continued fraction
(modified Lentz), and inverted by bisection.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

_TINY = 1e-300


def _beta_cf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function I_x(a, b) (converges for x < (a+1)/(a+b+2))."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 500):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + num / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), x in [0, 1]."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_cf(a, b, x) / a
    return 1.0 - front * _beta_cf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (0 < p < 1), to about 1e-12."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-13 * max(1.0, hi):
            break
    return (lo + hi) / 2.0


def paired_difference(
    values: Mapping[str, float], baseline: Mapping[str, float], level: float = 0.95
) -> dict[str, Any]:
    """Mean of ``values[s] - baseline[s]`` over the seeds s both have, its sample std and the ``level`` Student-t
    interval; ``n`` pairs (the interval needs two). ``unpaired``: seeds that only one side has."""
    seeds = [s for s in values if s in baseline]
    diffs = [values[s] - baseline[s] for s in seeds]
    unpaired = sorted(set(values) ^ set(baseline))
    n = len(diffs)
    out: dict[str, Any] = {
        "n": n,
        "mean": None,
        "std": None,
        "ci": None,
        "t": None,
        "level": level,
        "seeds": seeds,
        "differences": diffs,
        "unpaired": unpaired,
    }
    if n == 0:
        return out
    mean = math.fsum(diffs) / n
    out["mean"] = mean
    if n > 1:
        std = math.sqrt(math.fsum((d - mean) ** 2 for d in diffs) / (n - 1))
        t = t_quantile(0.5 + level / 2.0, n - 1)
        half = t * std / math.sqrt(n)
        out.update(std=std, t=t, ci=[mean - half, mean + half])
    return out
