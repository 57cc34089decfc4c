"""FISTA against closed forms, scipy and a plain reference loop; the per-sample bisection against a stub."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from lfpcli.errors import ConfigError
from lfpcli.solvers.fista import bisection_search, fista, value_and_grad
from lfpcli.solvers.proxes import penalty_value, prox_box, prox_l0_box, prox_l1_box

DT = torch.float64


def _problem(n: int = 4, d: int = 8, seed: int = 0, cond: float = 10.0):
    """Per-sample SPD A (eigenvalues in [0.5, 0.5 * cond]), b, and x in [0, 1]; f(w) = w'Aw/2 - b'w."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, d, d, generator=g, dtype=DT))
    eig = 0.5 * cond ** torch.rand(n, d, generator=g, dtype=DT)
    eig[:, 0] = 0.5 * cond  # pin the largest eigenvalue so L is known
    a = q @ torch.diag_embed(eig) @ q.transpose(1, 2)
    b = 2.0 * torch.randn(n, d, generator=g, dtype=DT)
    x = torch.rand(n, d, generator=g, dtype=DT)
    return a, b, x, eig.max(dim=1).values


def _smooth(a: torch.Tensor, b: torch.Tensor):
    def f(w: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.einsum("ni,nij,nj->n", w, a, w) - (b * w).sum(dim=1)

    return f


def _scipy_reference(a, b, x, l1: float) -> torch.Tensor:
    """min f(w) + l1 * |w|_1 over -x <= w <= 1 - x with L-BFGS-B, splitting w = u - v (u, v >= 0) for the l1 part."""
    out = []
    for an, bn, xn in zip(a.numpy(), b.numpy(), x.numpy()):
        d = len(bn)

        def fun(z, an=an, bn=bn, d=d):
            w = z[:d] - z[d:]
            gw = an @ w - bn
            return 0.5 * w @ an @ w - bn @ w + l1 * z.sum(), np.concatenate([gw + l1, -gw + l1])

        bounds = [(0.0, 1.0 - xi) for xi in xn] + [(0.0, xi) for xi in xn]
        res = minimize(
            fun,
            np.zeros(2 * d),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"ftol": 1e-16, "gtol": 1e-13, "maxiter": 20000, "maxcor": 30},
        )
        out.append(res.x[:d] - res.x[d:])
    return torch.tensor(np.array(out), dtype=DT)


@pytest.mark.parametrize("l1", [0.0, 0.3])
@pytest.mark.parametrize("schedule", ["fixed", "decay", "anneal", "backtracking"])
def test_fista_quadratic_matches_scipy(schedule, l1):
    a, b, x, lmax = _problem()
    w_star = _scipy_reference(a, b, x, l1)
    prox = partial(prox_l1_box, x=x, lo=0.0, hi=1.0, weight=l1)
    step = {"fixed": 1.0 / lmax, "decay": 1.0 / lmax, "anneal": 1.0 / lmax, "backtracking": 100.0 / lmax}[schedule]
    steps = {"fixed": 150, "decay": 800, "anneal": 300, "backtracking": 200}[schedule]
    res = fista(
        _smooth(a, b),
        lambda v, s: prox(v, step=s),
        torch.zeros_like(x),
        steps=steps,
        step_size=step,
        schedule=schedule,
        penalty=partial(penalty_value, "l1", weight=l1),
    )
    assert (res.w - w_star).abs().max() < 1e-5
    assert torch.all(x + res.w >= -1e-12) and torch.all(x + res.w <= 1 + 1e-12)
    f_star = _smooth(a, b)(w_star) + l1 * w_star.abs().sum(dim=1)
    assert torch.allclose(res.objective, f_star, atol=1e-9)
    assert torch.equal(res.iterations, torch.full((4,), steps))
    assert torch.equal(res.grad_evals, torch.full((4,), steps))
    if schedule == "backtracking":
        # Started 100x too large: every sample shrank, and paid a check per iteration plus the final objective.
        assert torch.all(res.step <= 50.0 / lmax)
        assert torch.equal(res.func_evals, torch.full((4,), steps + 1))
    else:
        assert torch.equal(res.func_evals, torch.ones(4, dtype=torch.long))


def test_fista_scalar_step_and_restart_converge():
    a, b, x, lmax = _problem(seed=1, cond=50.0)
    w_star = _scipy_reference(a, b, x, 0.0)
    prox = lambda v, s: prox_box(v, x, 0.0, 1.0)  # noqa: E731
    res = fista(_smooth(a, b), prox, torch.zeros_like(x), steps=400, step_size=float(1 / lmax.max()), restart=True)
    assert (res.w - w_star).abs().max() < 1e-5


def _reference_fista(a, b, x, l1, step0, steps, schedule):
    """Textbook FISTA for one sample in numpy.

    y_1 = x_0, t_1 = 1; x_k = prox(y_k - s grad f(y_k)); y_{k+1} = x_k + (t_k - 1) / t_{k+1} (x_k - x_{k-1}).
    """
    lo, hi = -x, 1 - x
    w_prev = w = np.zeros_like(b)
    y = w.copy()
    t = 1.0
    for k in range(steps):
        s = {"decay": step0 / math.sqrt(k + 1), "anneal": step0 * math.sqrt(1 - k / steps)}.get(schedule, step0)
        v = y - s * (a @ y - b)
        w_prev, w = w, np.clip(np.sign(v) * np.maximum(np.abs(v) - s * l1, 0.0), lo, hi)
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        y = w + (t - 1) / t_next * (w - w_prev)
        t = t_next
    return w


@pytest.mark.parametrize("schedule", ["fixed", "decay", "anneal"])
def test_fista_trajectory_matches_textbook_loop(schedule):
    a, b, x, lmax = _problem(seed=2)
    for steps in (1, 2, 7, 25):
        res = fista(
            _smooth(a, b),
            lambda v, s: prox_l1_box(v, x, 0.0, 1.0, s, 0.2),
            torch.zeros_like(x),
            steps=steps,
            step_size=1.0 / lmax,
            schedule=schedule,
        )
        for i in range(4):
            ref = _reference_fista(a[i].numpy(), b[i].numpy(), x[i].numpy(), 0.2, float(1 / lmax[i]), steps, schedule)
            assert np.abs(res.w[i].numpy() - ref).max() < 1e-12


def test_momentum_beats_plain_proximal_gradient():
    a, b, x, lmax = _problem(seed=3, cond=200.0)
    f = _smooth(a, b)
    prox = lambda v, s: prox_box(v, x, -100.0, 100.0)  # noqa: E731  (a box that never binds)
    fast = fista(f, prox, torch.zeros_like(x), steps=60, step_size=1.0 / lmax)
    slow = fista(f, prox, torch.zeros_like(x), steps=60, step_size=1.0 / lmax, momentum=False)
    w_star = torch.linalg.solve(a, b)  # closed form: the box is far away
    assert w_star.abs().max() < 100
    gap_fast, gap_slow = fast.objective - f(w_star), slow.objective - f(w_star)
    assert torch.all(gap_fast >= 0) and torch.all(gap_fast < 0.5 * gap_slow)


def test_restart_is_linear_on_strongly_convex():
    a, b, x, lmax = _problem(seed=9, cond=1000.0)
    f = _smooth(a, b)
    w_star = torch.linalg.solve(a, b)
    prox = lambda v, s: prox_box(v, x, -1e4, 1e4)  # noqa: E731
    plain = fista(f, prox, torch.zeros_like(x), steps=300, step_size=1.0 / lmax)
    restarted = fista(f, prox, torch.zeros_like(x), steps=300, step_size=1.0 / lmax, restart=True)
    assert torch.all(restarted.objective - f(w_star) < 0.01 * (plain.objective - f(w_star)))


def test_backtracking_without_momentum_is_a_descent_method():
    a, b, x, lmax = _problem(seed=10)
    f = _smooth(a, b)
    penalty = partial(penalty_value, "l1", weight=0.2)
    trace = []
    res = fista(
        f,
        lambda v, s: prox_l1_box(v, x, 0.0, 1.0, s, 0.2),
        torch.zeros_like(x),
        steps=40,
        step_size=100.0 / lmax,
        schedule="backtracking",
        momentum=False,
        penalty=penalty,
        callback=lambda k, w, running: trace.append(f(w) + penalty(w)),
    )
    trace = torch.stack(trace)
    # Sufficient decrease on every accepted step: F never goes up (rejected steps leave w unchanged).
    assert torch.all(trace[1:] <= trace[:-1] + 1e-12)
    assert torch.all(trace[-1] < trace[0])
    assert torch.allclose(res.objective, trace[-1])


def _reference_backtracking(a, b, x, l1, step0, eta, n_accept):
    """Textbook FISTA with backtracking (Beck & Teboulle 2009) for one sample: its first n_accept iterates."""
    f = lambda w: 0.5 * w @ a @ w - b @ w  # noqa: E731
    w_prev = w = np.zeros_like(b)
    y, t, s, out = w.copy(), 1.0, step0, []
    while len(out) < n_accept:
        g = a @ y - b
        while True:
            v = y - s * g
            p = np.clip(np.sign(v) * np.maximum(np.abs(v) - s * l1, 0.0), -x, 1 - x)
            d = p - y
            if f(p) <= f(y) + g @ d + d @ d / (2 * s):
                break
            s *= eta
        w_prev, w = w, p
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        y = w + (t - 1) / t_next * (w - w_prev)
        t = t_next
        out.append(w)
    return out


@pytest.mark.parametrize("max_backtracks", [0, 2])
def test_backtracking_trajectory_matches_textbook(max_backtracks):
    # Rejected trials leave w unchanged, so the distinct iterates must be exactly the textbook ones.
    a, b, x, lmax = _problem(seed=12)
    trace = []
    fista(
        _smooth(a, b),
        lambda v, s: prox_l1_box(v, x, 0.0, 1.0, s, 0.1),
        torch.zeros_like(x),
        steps=30,
        step_size=64.0 / lmax,
        schedule="backtracking",
        max_backtracks=max_backtracks,
        callback=lambda k, w, running: trace.append(w.clone()),
    )
    trace = torch.stack(trace)
    for i in range(4):
        changed = [k for k in range(1, len(trace)) if not torch.equal(trace[k, i], trace[k - 1, i])]
        seq = [trace[0, i]] + [trace[k, i] for k in changed]
        if torch.all(seq[0] == 0):
            seq = seq[1:]  # the first iteration was a rejection
        ref = _reference_backtracking(a[i].numpy(), b[i].numpy(), x[i].numpy(), 0.1, float(64 / lmax[i]), 0.5, len(seq))
        assert len(seq) >= 15
        for got, want in zip(seq, ref):
            assert np.abs(got.numpy() - want).max() < 1e-10


def test_backtracking_counts_each_samples_own_forward_passes():
    a, b, x, lmax = _problem(seed=11)
    step = 100.0 / lmax
    step[0] = 0.5 / lmax[0]  # always sufficient: sample 0 never backtracks
    res = fista(
        _smooth(a, b),
        lambda v, s: prox_l1_box(v, x, 0.0, 1.0, s, 0.1),
        torch.zeros_like(x),
        steps=20,
        step_size=step,
        schedule="backtracking",
        max_backtracks=3,
    )
    assert torch.equal(res.grad_evals, torch.full((4,), 20))
    assert res.func_evals[0] == 21 and res.step[0] == step[0]
    assert torch.all(res.func_evals[1:] > 21) and torch.all(res.func_evals <= 20 * 4 + 1)
    assert torch.all(res.step[1:] < step[1:])


@pytest.mark.parametrize("schedule", ["fixed", "backtracking"])
def test_batch_equals_each_sample_alone(schedule):
    a, b, x, lmax = _problem(seed=4)
    step = 30.0 / lmax if schedule == "backtracking" else 1.0 / lmax
    kw = dict(steps=40, schedule=schedule, restart=True, max_backtracks=2)
    batch = fista(
        _smooth(a, b), lambda v, s: prox_l0_box(v, x, 0.0, 1.0, s, 0.05), torch.zeros_like(x), step_size=step, **kw
    )
    for i in range(4):
        sl = slice(i, i + 1)
        alone = fista(
            _smooth(a[sl], b[sl]),
            lambda v, s: prox_l0_box(v, x[sl], 0.0, 1.0, s, 0.05),
            torch.zeros_like(x[sl]),
            step_size=step[sl],
            **kw,
        )
        assert torch.allclose(batch.w[sl], alone.w, rtol=0, atol=1e-12)
        assert torch.equal(batch.grad_evals[sl], alone.grad_evals)
        assert torch.equal(batch.func_evals[sl], alone.func_evals)
        assert torch.equal(batch.step[sl], alone.step)


def test_freezing_leaves_the_others_alone():
    a, b, x, lmax = _problem(seed=5)
    f = _smooth(a, b)
    prox = lambda v, s: prox_l1_box(v, x, 0.0, 1.0, s, 0.1)  # noqa: E731
    w0 = 0.01 * torch.ones_like(x)
    kw = dict(step_size=20.0 / lmax, schedule="backtracking")
    full = fista(f, prox, w0, steps=30, **kw)
    one = fista(f, prox, w0, steps=1, **kw)
    flags = torch.tensor([True, False, True, False])
    stopped = fista(f, prox, w0, steps=30, stop=lambda w: flags, **kw)
    assert torch.equal(stopped.w[~flags], full.w[~flags])
    assert torch.equal(stopped.w[flags], one.w[flags])
    assert torch.equal(stopped.stopped, flags)
    assert torch.equal(stopped.iterations, torch.tensor([1, 30, 1, 30]))
    assert torch.equal(stopped.grad_evals, stopped.iterations)

    active = torch.tensor([False, True, True, False])
    part = fista(f, prox, w0, steps=30, active=active, **kw)
    assert torch.equal(part.w[active], full.w[active])
    assert torch.equal(part.w[~active], w0[~active])
    assert torch.equal(part.iterations, torch.tensor([0, 30, 30, 0]))


def test_stop_on_a_value_condition():
    a, b, x, lmax = _problem(seed=6)
    f = _smooth(a, b)
    prox = lambda v, s: prox_box(v, x, 0.0, 1.0)  # noqa: E731
    w0 = torch.zeros_like(x)
    target = f(w0) - 0.5  # stop once the objective dropped by 0.5
    res = fista(f, prox, w0, steps=50, step_size=1.0 / lmax, stop=lambda w: f(w) < target)
    assert torch.all(res.stopped)
    # Each sample stopped at the first iterate below the target: one iteration fewer is still above it.
    for i in range(4):
        k = int(res.iterations[i])
        before = fista(f, prox, w0, steps=k - 1, step_size=1.0 / lmax)
        assert before.smooth[i] >= target[i]
        assert res.smooth[i] < target[i]


def test_no_host_sync_inside_the_loop(monkeypatch):
    a, b, x, lmax = _problem(seed=7)
    f = _smooth(a, b)
    prox = lambda v, s: prox_l0_box(v, x, 0.0, 1.0, s, 0.05)  # noqa: E731
    expected = fista(
        f,
        prox,
        torch.zeros_like(x),
        steps=5,
        step_size=10.0 / lmax,
        schedule="backtracking",
        restart=True,
        max_backtracks=1,
        stop=lambda w: w.abs().sum(dim=1) > 1.0,
    )

    def forbidden(*args, **kwargs):
        raise AssertionError("host sync inside the FISTA loop")

    for name in ("__bool__", "item", "cpu", "tolist", "numpy", "__float__", "__int__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    got = fista(
        f,
        prox,
        torch.zeros_like(x),
        steps=5,
        step_size=10.0 / lmax,
        schedule="backtracking",
        restart=True,
        max_backtracks=1,
        stop=lambda w: w.abs().sum(dim=1) > 1.0,
    )
    monkeypatch.undo()
    assert torch.equal(got.w, expected.w)


def test_value_and_grad_under_no_grad():
    a, b, x, _ = _problem(seed=8)
    w = torch.rand_like(x)
    with torch.no_grad():
        val, grad = value_and_grad(_smooth(a, b), w)
    assert torch.allclose(grad, torch.einsum("nij,nj->ni", a, w) - b)
    assert torch.allclose(val, _smooth(a, b)(w))


def test_fista_config_errors():
    x = torch.zeros(2, 3)
    f = lambda w: (w**2).sum(dim=1)  # noqa: E731
    prox = lambda v, s: v  # noqa: E731
    for kw in (
        dict(schedule="armijo"),
        dict(step_size=0.0),
        dict(step_size=-1.0),
        dict(steps=-1),
        dict(backtrack_factor=1.0),
        dict(step_size=torch.ones(3)),
    ):
        args = dict(steps=3, step_size=0.1) | kw
        with pytest.raises(ConfigError):
            fista(f, prox, x, **args)


# --- bisection ---------------------------------------------------------------------------------------------


def _simulate(c_star: float, init: float, steps: int, growth: float) -> list[float]:
    """The c sequence the bisection rule must produce for success = (c >= c_star)."""
    lo, hi, c, seq = 0.0, math.inf, init, []
    for _ in range(steps):
        seq.append(c)
        if c >= c_star:
            hi = c
            c = (lo + hi) / 2
        else:
            lo = c
            c = c * growth if math.isinf(hi) else (lo + hi) / 2
    return seq


def test_bisection_brackets_and_keeps_the_sparsest_success():
    c_star = torch.tensor([0.05, 3.0, 700.0, math.inf], dtype=DT)
    calls = []

    def run(c):
        calls.append(c.clone())
        success = c >= c_star
        w = c[:, None].repeat(1, 2)  # w encodes the c it came from
        return w, success, c.clone(), {"grad_evals": torch.full((4,), 5)}  # larger weight, less sparse

    res = bisection_search(run, 4, search_steps=8, init=torch.ones(4, dtype=DT), growth=10.0)
    hist = res.c_history
    assert hist.shape == (8, 4)
    for i in range(3):
        assert hist[:, i].tolist() == pytest.approx(_simulate(float(c_star[i]), 1.0, 8, 10.0), rel=1e-12)
        tried_ok = hist[:, i][hist[:, i] >= c_star[i]]
        assert res.w[i, 0] == tried_ok.min() and res.c[i] == tried_ok.min() and res.score[i] == tried_ok.min()
        assert res.lo[i] < c_star[i] <= res.hi[i]
    assert res.success.tolist() == [True, True, True, False]
    # Never succeeded: falls back to the last try, and the bracket only grew.
    assert res.w[3, 0] == hist[-1, 3] == 1e7 and res.c[3] == hist[-1, 3]
    assert math.isinf(res.hi[3]) and res.score[3] == math.inf
    assert torch.equal(res.totals["grad_evals"], torch.full((4,), 40))


def test_bisection_takes_best_score_not_last_success():
    # Scores unrelated to c: the result is the best-scoring successful try (earliest on ties).
    scores = torch.tensor([[3.0, 1.0], [2.0, 1.0], [1.0, 5.0], [0.5, 1.0], [7.0, 1.0]])
    succ = torch.tensor([[True, False], [True, True], [True, True], [False, False], [True, True]])
    it = iter(range(5))

    def run(c):
        k = next(it)
        return torch.full((2, 3), float(k)), succ[k], scores[k]

    res = bisection_search(run, 2, search_steps=5, init=1.0)
    assert res.w[:, 0].tolist() == [2.0, 1.0]
    assert res.score.tolist() == [1.0, 1.0]
    assert res.success.tolist() == [True, True]


def test_bisection_config_errors():
    run = lambda c: (c[:, None], c > 0, c)  # noqa: E731
    for kw in (dict(search_steps=0), dict(init=0.0), dict(growth=1.0), dict(lo=-1.0)):
        args = dict(search_steps=2, init=1.0) | kw
        with pytest.raises(ConfigError):
            bisection_search(run, 3, **args)
