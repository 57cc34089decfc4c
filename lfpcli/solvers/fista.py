"""Batched FISTA (Beck & Teboulle 2009) with per-sample state, and the per-sample bisection over a loss weight.

``fista`` minimises ``F(w) = f(w) + g(w)`` for every sample of a batch at once: ``f`` is smooth and given as
``smooth(w) -> (N,)`` per-sample values, ``g`` enters only through its prox ``prox(v, step) -> w`` (see
``lfpcli.solvers.proxes``). Gradients come from ``torch.autograd.grad`` of ``smooth(w).sum()``, so each sample's
gradient is its own as long as ``smooth`` treats samples independently (a model in eval mode does; batch-norm in
train mode does not).

All per-sample bookkeeping (step sizes, momentum, which samples still run, counters) lives in tensors on ``w``'s
device and is updated with ``torch.where``: the iteration loop never reads a tensor value on the host, so on CUDA
it queues work without a device sync per iteration. The price is that frozen samples are still carried through
every forward/backward of the batch; their values simply stop changing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Literal, Union

import torch
from torch import Tensor

from lfpcli.errors import ConfigError

__all__ = ["FistaResult", "SearchResult", "bisection_search", "fista", "value_and_grad"]

Schedule = Literal["fixed", "decay", "anneal", "backtracking"]
SCHEDULES = ("fixed", "decay", "anneal", "backtracking")


@dataclass
class FistaResult:
    """Outcome of ``fista``; every field but ``w`` has shape (N,).

    ``objective`` is ``smooth(w) + penalty(w)`` at the returned ``w`` (just ``smooth(w)`` without ``penalty``),
    ``smooth`` its smooth part. ``iterations`` counts the iterations each sample took part in (rejected backtracking
    trials included), ``grad_evals`` its forward+backward passes, ``func_evals`` its extra forward-only passes
    (backtracking checks and the final objective). ``step`` is the last step size used, ``stopped`` marks samples
    frozen by the ``stop`` callable.
    """

    w: Tensor
    objective: Tensor
    smooth: Tensor
    iterations: Tensor
    grad_evals: Tensor
    func_evals: Tensor
    step: Tensor
    stopped: Tensor


def value_and_grad(smooth: Callable[[Tensor], Tensor], w: Tensor) -> tuple[Tensor, Tensor]:
    """``(f(w), grad f(w))`` with ``f = smooth``: values (N,) and gradient shaped like ``w``, both detached.

    The gradient is taken of the sum over samples, which gives each sample its own gradient when ``smooth`` does
    not mix samples. Runs under ``enable_grad`` so that callers inside ``no_grad`` still get a gradient.
    """
    with torch.enable_grad():
        wv = w.detach().requires_grad_(True)
        values = smooth(wv)
        (grad,) = torch.autograd.grad(values.sum(), wv)
    return values.detach(), grad.detach()


def _per_sample(a: Tensor, ref: Tensor) -> Tensor:
    return a.reshape((-1,) + (1,) * (ref.dim() - 1))


def _batch_dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).reshape(a.shape[0], -1).sum(dim=1)


def _initial_step(step_size: float | Tensor, n: int, like: Tensor) -> Tensor:
    if isinstance(step_size, Tensor):
        if step_size.dim() == 0:
            step_size = step_size.expand(n)
        if step_size.shape != (n,):
            raise ConfigError(f"step_size must be a float or an ({n},) tensor, got shape {tuple(step_size.shape)}")
        return step_size.to(dtype=like.dtype, device=like.device).clone()
    if not (step_size > 0 and math.isfinite(step_size)):
        raise ConfigError(f"step_size must be positive and finite, got {step_size}")
    return torch.full((n,), float(step_size), dtype=like.dtype, device=like.device)


def fista(
    smooth: Callable[[Tensor], Tensor],
    prox: Callable[[Tensor, Tensor], Tensor],
    w0: Tensor,
    *,
    steps: int,
    step_size: float | Tensor,
    schedule: Schedule = "fixed",
    momentum: bool = True,
    restart: bool = False,
    active: Tensor | None = None,
    stop: Callable[[Tensor], Tensor] | None = None,
    penalty: Callable[[Tensor], Tensor] | None = None,
    backtrack_factor: float = 0.5,
    max_backtracks: int = 0,
    line_search_iters: int | None = None,
    callback: Callable[[int, Tensor, Tensor], None] | None = None,
) -> FistaResult:
    """Run ``steps`` FISTA iterations on every sample of ``w0`` (N, ...), each with its own state.

    Iteration (per sample, ``s`` its step size, ``t_0 = 1``, ``y_0 = w_0``)::

        p       = prox(y_k - s * grad f(y_k), s)
        t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2
        y_{k+1} = p + (t_k - 1) / t_{k+1} * (p - w_k)        (y_{k+1} = p when momentum=False)
        w_{k+1} = p

    Step-size schedules (``step_size`` = s_0, a float or (N,) tensor, normally 1/L):

    - ``"fixed"``: ``s_k = s_0``.
    - ``"decay"``: ``s_k = s_0 / sqrt(k + 1)`` with k the iteration index (0-based).
    - ``"anneal"``: ``s_k = s_0 * sqrt(1 - k / steps)``, from ``s_0`` down to ``s_0 / sqrt(steps)`` at the last
      iteration: the schedule of the S-CFE authors' public code when it runs without line search.
    - ``"backtracking"``: accept ``p`` only if ``f(p) <= f(y) + <grad f(y), p - y> + ||p - y||^2 / (2 s)``
      (Beck & Teboulle's sufficient decrease, with a few ulps of slack for rounding). A sample that fails
      multiplies its own step by ``backtrack_factor``, recomputes ``p`` and checks again, up to ``max_backtracks``
      times inside the iteration; if it still fails it rejects the step, keeps ``w``, ``y`` and ``t`` and retries
      from the same ``y`` with the smaller step at the next iteration. Steps never grow, so a sample rejects at
      most ``log(s_0 L) / log(1 / backtrack_factor)`` iterations in the whole run. Each check is a forward pass
      of the batch, counted in ``func_evals`` for the samples that needed it. ``max_backtracks=0`` (the default)
      costs one forward per iteration and wastes one iteration per shrink; larger values shrink faster but pay
      the extra forwards every iteration, because without host syncs the loop cannot skip them.
      ``line_search_iters=K`` backtracks in the first ``K`` iterations only and then keeps each sample's step:
      after a few checks the step sits below ``1 / L`` of the region the iterates move in, and the remaining
      iterations run at the cost of ``"fixed"`` (``None``: check every iteration).

    ``restart=True`` adds the gradient-based adaptive restart of O'Donoghue & Candes (2015): when
    ``<y_k - p, p - w_k> > 0`` the momentum of that sample is reset (``t = 1``, ``y = p``). It damps the
    oscillations of plain FISTA on strongly convex or non-convex (l0) problems and costs nothing extra.

    ``active`` (N,) bool marks the samples that run (default: all); the others keep ``w0``. ``stop(w) -> (N,)``
    bool, called under ``no_grad`` after every iteration, freezes the samples it flags from then on. Frozen
    samples keep their value and state; since all updates are per sample, they never change the trajectory of
    the others. It is not called on ``w0``: pass ``active`` for samples that are done before the first step.
    ``penalty(w) -> (N,)`` (e.g. ``partial(penalty_value, "l0", weight=beta)``) is added to the reported
    objective. ``callback(k, w, running)`` is called after every iteration; anything it does on the host is on
    the caller.
    """
    if steps < 0:
        raise ConfigError(f"steps must be non-negative, got {steps}")
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown step-size schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if not (0 < backtrack_factor < 1):
        raise ConfigError(f"backtrack_factor must lie in (0, 1), got {backtrack_factor}")
    if max_backtracks < 0:
        raise ConfigError(f"max_backtracks must be non-negative, got {max_backtracks}")
    if line_search_iters is not None and line_search_iters < 0:
        raise ConfigError(f"line_search_iters must be non-negative, got {line_search_iters}")

    n = w0.shape[0]
    device = w0.device
    w = w0.detach().clone()
    y = w.clone()
    t = torch.ones(n, dtype=w.dtype, device=device)
    step = _initial_step(step_size, n, w)
    last_step = step.clone()
    running = (
        torch.ones(n, dtype=torch.bool, device=device)
        if active is None
        else active.to(device=device, dtype=torch.bool).reshape(n).clone()
    )
    stopped = torch.zeros(n, dtype=torch.bool, device=device)
    iterations = torch.zeros(n, dtype=torch.long, device=device)
    grad_evals = torch.zeros(n, dtype=torch.long, device=device)
    func_evals = torch.zeros(n, dtype=torch.long, device=device)
    every_sample_steps = active is None and stop is None
    # Rounding slack for the sufficient-decrease test: near convergence f(p) - f(y) is pure round-off.
    slack = 16 * torch.finfo(w.dtype).eps

    for k in range(steps):
        f_y, g = value_and_grad(smooth, y)
        iterations += running
        grad_evals += running

        if schedule == "decay":
            s = step / math.sqrt(k + 1)
        elif schedule == "anneal":
            s = step * math.sqrt(1 - k / steps)
        else:
            s = step
        p = prox(torch.addcmul(y, _per_sample(s, y), g, value=-1.0), s)

        if schedule == "backtracking" and (line_search_iters is None or k < line_search_iters):
            ok = torch.zeros(n, dtype=torch.bool, device=device)
            for attempt in range(max_backtracks + 1):
                if attempt > 0:
                    # Only samples still failing shrink; the rest keep their accepted p and step.
                    shrink = running & ~ok
                    s = torch.where(shrink, s * backtrack_factor, s)
                    p = torch.where(_per_sample(shrink, y), prox(y - _per_sample(s, y) * g, s), p)
                pending = running & ~ok
                with torch.no_grad():
                    f_p = smooth(p).detach()
                func_evals += pending
                d = p - y
                bound = f_y + _batch_dot(g, d) + _batch_dot(d, d) / (2 * s)
                ok = ok | (f_p <= bound + slack * (f_y.abs() + f_p.abs() + 1.0))
            # A sample still failing shrinks once more for its retry at the next iteration.
            step = torch.where(running & ~ok, s * backtrack_factor, s)
            accept = running & ok
        else:
            accept = running
        last_step = torch.where(running, s, last_step)

        if momentum:
            t_next = (1 + torch.sqrt(1 + 4 * t * t)) / 2
            if restart:
                reset = _batch_dot(y - p, p - w) > 0
                t_next = torch.where(reset, torch.ones_like(t_next), t_next)
                beta = torch.where(reset, torch.zeros_like(t), (t - 1) / t_next)
            else:
                beta = (t - 1) / t_next
            y_next = (p - w).mul_(_per_sample(beta, p)).add_(p)
        else:
            t_next = t
            y_next = p

        if every_sample_steps and accept is running:
            # nobody is frozen or rejected: skip the three selections (a fifth of the elementwise work)
            w, y, t = p, y_next, t_next
        else:
            acc = _per_sample(accept, w)
            w = torch.where(acc, p, w)
            y = torch.where(acc, y_next, y)
            t = torch.where(accept, t_next, t)

        if stop is not None:
            # no_grad: a stop test that runs the model must not build a graph through its parameters.
            with torch.no_grad():
                newly = stop(w).to(device=device, dtype=torch.bool).reshape(n) & running
            stopped = stopped | newly
            running = running & ~newly
        if callback is not None:
            callback(k, w, running)

    with torch.no_grad():
        f_w = smooth(w).detach()
        objective = f_w + penalty(w).detach() if penalty is not None else f_w.clone()
    func_evals += 1
    return FistaResult(
        w=w,
        objective=objective,
        smooth=f_w,
        iterations=iterations,
        grad_evals=grad_evals,
        func_evals=func_evals,
        step=last_step,
        stopped=stopped,
    )


@dataclass
class SearchResult:
    """Outcome of ``bisection_search``; ``w`` is (N, ...), the rest (N,) unless noted.

    ``w``: the best-scoring successful perturbation, or the last one tried where no try succeeded. ``success``:
    whether any try succeeded. ``c``: the weight that produced ``w``. ``score``: its score (``+inf`` where no try
    succeeded). ``lo``/``hi``: the final bracket. ``c_history``: (search_steps, N) weights tried.
    ``totals``: per-sample sums over the tries of the stats ``run`` returned (e.g. grad_evals).
    """

    w: Tensor
    success: Tensor
    c: Tensor
    score: Tensor
    lo: Tensor
    hi: Tensor
    c_history: Tensor
    totals: dict[str, Tensor] = field(default_factory=dict)


RunOutput = Union[tuple[Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]]


def bisection_search(
    run: Callable[[Tensor], RunOutput],
    n: int,
    *,
    search_steps: int,
    init: float | Tensor,
    lo: float = 0.0,
    hi: float = math.inf,
    device: torch.device | str | None = None,
    growth: float = 10.0,
) -> SearchResult:
    """Per-sample bisection over the weight ``c`` of the classification term (the S-CFE outer loop).

    ``run(c)`` with ``c`` (N,) returns ``(w (N, ...), success (N,) bool, score (N,))`` and optionally a dict of
    (N,) per-sample stats to total; smaller score is better (e.g. ``l0 count + l2 / (l2 + 1)`` to rank by l0
    then l2). Per sample and try: on success, keep ``w`` if its score is strictly below the best successful
    score so far (ties keep the earlier one), then ``hi = c`` and ``c = (lo + hi) / 2``; on failure ``lo = c``
    and ``c = c * growth`` while ``hi`` is infinite, else ``(lo + hi) / 2``. Every sample takes part in every
    try (one batched ``run`` call per try). ``init`` is a float in (lo, hi) or an (N,) tensor.
    """
    if search_steps < 1:
        raise ConfigError(f"search_steps must be at least 1, got {search_steps}")
    if growth <= 1:
        raise ConfigError(f"growth must exceed 1, got {growth}")
    if lo < 0 or not (hi > lo):
        raise ConfigError(f"need 0 <= lo < hi for the search bracket, got lo={lo}, hi={hi}")
    if not isinstance(init, Tensor) and not (lo < init < hi):
        raise ConfigError(f"init must lie in ({lo}, {hi}), got {init}")
    if isinstance(init, Tensor):
        device = init.device if device is None else device
    dtype = torch.float64 if isinstance(init, Tensor) and init.dtype == torch.float64 else torch.float32
    c = torch.as_tensor(init, dtype=dtype, device=device).expand(n).clone()
    lo_t = torch.full((n,), float(lo), dtype=dtype, device=device)
    hi_t = torch.full((n,), float(hi), dtype=dtype, device=device)

    best_w: Tensor | None = None
    best_score = torch.full((n,), math.inf, dtype=dtype, device=device)
    best_c = c.clone()
    ever = torch.zeros(n, dtype=torch.bool, device=device)
    totals: dict[str, Tensor] = {}
    history = []

    for _ in range(search_steps):
        history.append(c)
        out = run(c)
        w, success, score = out[0], out[1], out[2]
        if len(out) > 3:
            for key, value in out[3].items():
                totals[key] = totals[key] + value if key in totals else value.clone()
        success = success.to(device=device, dtype=torch.bool).reshape(n)
        score = score.to(device=device, dtype=dtype).reshape(n)

        improved = success & (score < best_score)
        if best_w is None:
            best_w = w.detach().clone()
        # Samples that never succeeded fall back to the latest try; successful ones keep their best.
        take = improved | ~(ever | success)
        best_w = torch.where(_per_sample(take, w), w.detach(), best_w)
        best_c = torch.where(take, c, best_c)
        best_score = torch.where(improved, score, best_score)
        ever = ever | success

        hi_t = torch.where(success, c, hi_t)
        lo_t = torch.where(success, lo_t, c)
        mid = (lo_t + hi_t) / 2
        c = torch.where(success | torch.isfinite(hi_t), mid, c * growth)

    assert best_w is not None
    return SearchResult(
        w=best_w,
        success=ever,
        c=best_c,
        score=best_score,
        lo=lo_t,
        hi=hi_t,
        c_history=torch.stack(history),
        totals=totals,
    )
