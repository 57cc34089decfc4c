"""p-CFE l0: sparse plausible counterfactuals by FISTA (S-CFE, Sadiku et al. 2025), the seed paper's Eq. (2).

For every sample of a batch, with ``w = x' - x`` and ``x'`` in the pixel box ``[lo, hi]``::

    minimise  ||w||_2^2 + gamma * L(x + w, t) - tau * P(x + w, t) + beta * R(w)

- ``L`` is the per-sample classification loss toward the target ``t``: ``margin`` (largest other logit minus the
  target logit plus ``kappa``, clipped at 0, as in the S-CFE reference) or ``ce`` (cross-entropy).
- ``P`` is an optional plausibility score ``plausibility(x', t) -> (N,)``, higher = more plausible: a class
  density's ``log_prob`` (any ``lfpcli.density`` estimator can be passed as is), or minus a per-class VAE
  reconstruction error. Without it the term is absent and ``tau`` is ignored.
- ``R`` is the sparsity penalty of the chosen prox: ``l0`` (the paper), ``l1``, ``l1/2``, ``l0-ball`` (``beta``
  times the l0 count plus the hard constraint ``||w||_0 <= k``), or ``none`` (box only, ``beta`` unused).

The smooth part ``||w||^2 + gamma * L - tau * P`` is minimised by batched FISTA (``lfpcli.solvers.fista``) with the
prox of ``beta * R`` plus the box (``lfpcli.solvers.proxes``), starting from ``w = 0`` with step ``1 / lipschitz``
(fixed, decaying as ``1 / sqrt(k + 1)``, or shrunk per sample by backtracking line search). The weight ``gamma`` is
tuned per sample by ``fista.bisection_search`` over ``search_steps`` outer steps: a sample whose result is classified
as ``t`` lowers its ``gamma`` (bisection), one that is not raises it (x10 until it first succeeds, then bisection).
Over all search steps the sparsest successful result is kept (fewest changed pixels, then smallest l2 change);
a sample that never succeeds returns its last iterate with ``success = False``.

Cost per sample: ``steps * search_steps`` forward+backward passes (``grad_evals``), plus forward-only passes
(``extras["func_evals"]``): one per search step for FISTA's final objective, one per search step for the success
test, one at the end for the reported loss and objective, and, with ``line_search``, one per checked iteration (``line_search_iters``) for the
sufficient-decrease test. No early stopping: every sample runs every iteration (frozen samples would still ride
along in the batched forward, so stopping would save nothing and only make the counts harder to read).
Everything is per sample: results do not depend on the other samples of the batch (for a model without batch
coupling, which ``frozen_eval``'s eval mode guarantees for batch-norm), and the loops never read tensors on the host.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, Callable

import torch
from torch import Tensor

from lfpcli.errors import ConfigError, InputError
from lfpcli.models.outputs import class_logits
from lfpcli.progress import Tick
from lfpcli.solvers.base import SolverResult, frozen_eval, norms
from lfpcli.solvers.fista import bisection_search, fista
from lfpcli.solvers.losses import get_loss, margin
from lfpcli.solvers.proxes import PROXES, k_from_ratio, make_prox, penalty_value

__all__ = ["SCFEConfig", "scfe"]

Plausibility = Callable[[Tensor, Tensor], Tensor]

SCHEDULES = ("fixed", "decay", "anneal")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _finite_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class SCFEConfig:
    """Parameters of ``pcfe-l0``; distances are in pixel units of inputs in ``[lo, hi]`` (normally ``[0, 1]``).

    - ``steps``: FISTA iterations per search step (paper: 100).
    - ``search_steps``: outer bisection steps over ``gamma`` (paper: 4-5).
    - ``gamma``: initial weight of the classification term; multiplied by ``growth`` while a sample has not reached
      its target, then bisected. Trained classifiers on [0, 1] images settle around 0.1-1 with the margin loss.
    - ``beta``: price of one changed pixel, in units of the squared l2 distance (the l0 weight; ``L0`` in the paper's
      code, which uses 1e-3 for 224 px VAE-guided images). With step ``s`` a pixel change survives the prox only if
      it is larger than about ``sqrt(2 s beta)``: 0.1 for the default ``beta = 0.01`` at ``s = 1/2``, so changes
      under ~25 grey levels are not worth a pixel. For ``l1`` / ``l1/2`` it weighs those penalties; ``none`` ignores it.
    - ``tau``: weight of the plausibility score (ignored without a plausibility callable). It must suit the
      score's scale. ``None`` (the default) means 1 here; ``lfp perturb`` replaces it by the density's
      ``plausibility_weight()`` (a KDE's mean ``h^2``, a GMM's variance, 1 for knn gravity and VAE errors) and
      records the value. On spurious-digits with a pixel KDE (h = 0.085, so tau = 0.0072), tau = 0.01 kept
      results sparse (median 122 changed values) and raised the target log-density over cfe-l2's; tau = 0.1
      made them dense (1270 values), tau = 1 denser still (1964).
    - ``lipschitz``: L, the (initial) step is ``1 / L``. The distance term alone has L = 2, so L must be at least 2.
      The problem is not convex (l0), so the step also picks which local solution is found: on spurious-digits
      (small-cnn, pixel KDE, 64 test samples, random-other targets) longer steps reached lower objectives with
      more changed values and more plausibility (L = 2: median 103 changed values, target log-density 1826),
      shorter ones stayed sparser near the start (L = 32: 33 values, 1595; L = 64: 32, 1549; the S-CFE authors'
      code setting, step 0.01 annealed, i.e. L = 100 with ``anneal``: 20, 1518; cfe-l2: 1490); every setting
      reached every target. The default, 32, is sparse and still clearly more plausible than cfe-l2. Line search
      only ever shortens the step from ``1 / L``. The seed paper's values (1e-4 to 1e-5) belong to another scaling
      of the objective and do not transfer.
    - ``line_search``: per-sample backtracking (Beck & Teboulle) from ``1 / L``; one extra forward pass per checked
      iteration. ``line_search_iters``: check only the first that many iterations of each search step, then keep
      each sample's step (default 10: the checks then cost ~3% instead of ~33% of the run; ``None`` checks every
      iteration, the textbook method).
      Without it, ``schedule`` is ``fixed`` (``1 / L``), ``decay`` (``1 / (L sqrt(k + 1))``, k the iteration) or
      ``anneal`` (``sqrt(1 - k / steps) / L``, the S-CFE authors' code without line search).
    - ``restart``: O'Donoghue-Candes adaptive momentum restart (off: plain FISTA).
    - ``prox``: ``l0`` (the paper) | ``l1`` | ``l1/2`` | ``l0-ball`` | ``none`` (box only).
    - ``max_changed``: the l0 ball of ``l0-ball``: a fraction of the pixels when in (0, 1) (rounded up), a pixel
      count when a whole number >= 1 (``1`` and ``1.0`` both mean one pixel; a ball of all pixels is plain ``l0``).
    - ``loss``: ``margin`` (the S-CFE reference) | ``ce`` | ``logistic`` | ``exponential``. ``kappa``: the margin's confidence in logits (``ce``
      ignores it); a small positive value puts the optimum strictly inside the target's region instead of on the
      decision boundary, where ``argmax`` may still pick the old class.
    - ``growth``: factor on ``gamma`` while a sample has not yet reached its target.
    - ``lo``/``hi``: the pixel box; inputs must lie inside it. Either side may be infinite (no bound there).
    """

    steps: int = 100
    search_steps: int = 5
    gamma: float = 1.0
    beta: float = 0.01
    tau: float | None = None
    lipschitz: float = 32.0
    line_search: bool = True
    line_search_iters: int | None = 10
    schedule: str = "fixed"
    restart: bool = False
    prox: str = "l0"
    max_changed: float | None = None
    loss: str = "margin"
    kappa: float = 0.1
    growth: float = 10.0
    lo: float = 0.0
    hi: float = 1.0

    def __post_init__(self):
        for name in ("steps", "search_steps"):
            v = getattr(self, name)
            if not _is_int(v) or v < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be an integer of at least 1, got {v}")
        if not _finite_number(self.gamma) or self.gamma <= 0:
            raise ConfigError(f"--gamma must be a positive number, got {self.gamma}")
        for name in ("beta", "tau", "kappa"):
            v = getattr(self, name)
            if v is None and name == "tau":
                continue
            if not _finite_number(v) or v < 0:
                raise ConfigError(f"--{name} must be a non-negative number, got {v}")
        if not _finite_number(self.lipschitz) or self.lipschitz < 2:
            raise ConfigError(
                f"--lipschitz must be at least 2 (the distance term alone has Lipschitz constant 2), got {self.lipschitz}"
            )
        v = self.line_search_iters
        if v is not None and (not _is_int(v) or v < 1):
            raise ConfigError(f"--line-search-iters must be a whole number >= 1 (or none: every iteration), got {v}")
        for name in ("line_search", "restart"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"--{name.replace('_', '-')} must be true or false, got {getattr(self, name)!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"--schedule must be one of {', '.join(SCHEDULES)}, got '{self.schedule}'")
        if self.line_search and self.schedule != "fixed":
            raise ConfigError("--line-search chooses the step itself; --schedule applies only without it")
        if self.prox not in PROXES:
            raise ConfigError(f"unknown prox '{self.prox}'; choose one of {', '.join(PROXES)}")
        if self.prox == "l0-ball":
            m = self.max_changed
            if m is None:
                raise ConfigError("--prox l0-ball needs --max-changed (a fraction in (0, 1) or a pixel count >= 1)")
            if not _finite_number(m) or m <= 0 or (m >= 1 and float(m) != int(m)):
                raise ConfigError(f"--max-changed must be a fraction in (0, 1) or a whole count >= 1, got {m}")
        elif self.max_changed is not None:
            raise ConfigError(f"--max-changed applies to --prox l0-ball only, not '{self.prox}'")
        get_loss(self.loss)
        if not _finite_number(self.growth) or self.growth <= 1:
            raise ConfigError(f"--growth must be a number above 1, got {self.growth}")
        # an infinite side means no bound there (inputs without a box, e.g. Gaussian data in lfp synth)
        if (
            not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)
                for v in (self.lo, self.hi)
            )
            or not self.lo < self.hi
        ):
            raise ConfigError(f"the box needs lo < hi (either may be infinite), got [{self.lo}, {self.hi}]")

    def k(self, d: int) -> int | None:
        """Size of the l0 ball for ``d`` coordinates per sample (None unless ``prox == "l0-ball"``)."""
        if self.max_changed is None:
            return None
        if self.max_changed < 1:
            return int(k_from_ratio(float(self.max_changed), d))
        return min(int(self.max_changed), d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _loss_fn(cfg: SCFEConfig) -> Callable[[Tensor, Tensor], Tensor]:
    if cfg.loss == "margin":
        return partial(margin, kappa=cfg.kappa)
    return get_loss(cfg.loss)


def scfe(
    model: torch.nn.Module,
    x: Tensor,
    target: Tensor,
    cfg: SCFEConfig,
    *,
    generator: torch.Generator | None = None,
    plausibility: Plausibility | None = None,
    mask: Tensor | None = None,
    progress: Tick | None = None,
    skip: bool = True,
) -> SolverResult:
    """S-CFE on a batch: ``x`` (N, ...) in ``[cfg.lo, cfg.hi]``, ``target`` (N,) -> :class:`SolverResult`.

    ``plausibility(x', t) -> (N,)`` (higher = more plausible; e.g. a fitted ``lfpcli.density`` estimator) enters
    with weight ``-cfg.tau``. A callable with the attribute ``on_features = True`` is called on
    ``model.features(x')`` instead, and the logits come from ``model.head`` of the same features, so a
    feature-space density costs no second pass through the model. ``mask`` (bool or 0/1, broadcastable to ``x``) marks the pixels allowed to change.
    ``generator`` is accepted for a uniform solver signature; the method is deterministic.
    ``skip`` (default on): a sample whose optimum is provably no change is not searched at all (``extras["skipped"]``),
    and the search runs on the other samples alone, so its cost follows the samples that need one. With the margin
    loss, a sample that its target already leads by more than ``kappa`` has zero loss and zero loss gradient near
    ``x``; if, in addition, the first proximal-gradient step from ``w = 0`` at the largest step ``1 / L`` keeps
    every value at 0 (the plausibility pull is too weak to pay for one changed value), then every later step does
    too (steps never grow, and the l0/l1/l1/2 proxes and the box keep less at shorter steps) for every weight of
    the classification term, so S-CFE returns ``x`` itself, with the initial weight. That check costs one
    forward (and, with a plausibility term, one backward) pass on those samples instead of
    ``search_steps * steps`` of them. ``skip=False`` runs the search on every sample (the same result).
    ``progress(done, search_steps * steps, search=..., reached=...)`` is called after every FISTA iteration;
    ``reached`` is ``(count, n)``: the samples that reached their target in an earlier search step, the count a
    0-dim tensor left on the device.

    ``grad_evals`` counts forward+backward passes per sample; ``extras``: ``gamma`` (weight that produced the
    returned result), ``objective`` (Eq. 2 at the result with that weight), ``func_evals`` (forward-only passes),
    ``l0`` (changed pixels) and, with a plausibility callable, ``plausibility`` (its score at the result).
    The model is left in the mode it had, and its parameters receive no gradients.
    """
    del generator
    x = x.detach()
    n = x.shape[0]
    if target.shape != (n,):
        raise InputError(f"target must have shape ({n},), got {tuple(target.shape)}")
    target = target.to(device=x.device, dtype=torch.long)
    if n == 0:
        raise InputError("scfe needs at least one sample")
    # Set-up checks (host syncs here are fine; none happen inside the loops).
    if not bool(((x >= cfg.lo) & (x <= cfg.hi)).all()):
        raise InputError(f"inputs must lie in the box [{cfg.lo}, {cfg.hi}]")
    if mask is not None:
        mask = mask.to(device=x.device)
        if mask.dtype != torch.bool:
            mask = mask != 0
        try:
            torch.broadcast_shapes(mask.shape, x.shape)
        except RuntimeError:
            raise InputError(
                f"mask of shape {tuple(mask.shape)} does not broadcast to inputs {tuple(x.shape)}"
            ) from None
    tau = 1.0 if cfg.tau is None else cfg.tau
    use_plaus = plausibility is not None and tau > 0
    loss_fn = _loss_fn(cfg)
    k = cfg.k(x[0].numel())
    prox = make_prox(cfg.prox, x, cfg.lo, cfg.hi, cfg.beta, k=k, mask=mask)
    penalty = partial(penalty_value, cfg.prox, weight=cfg.beta, k=k)
    schedule = "backtracking" if cfg.line_search else cfg.schedule
    dtype = x.dtype

    # A feature-space score reuses the model's own pass: logits = head(features(x')), score = P(features, t).
    on_features = bool(getattr(plausibility, "on_features", False))
    if on_features and not (hasattr(model, "features") and hasattr(model, "head")):
        raise InputError("a plausibility term with on_features=True needs a model with features() and head()")

    def terms(xp: Tensor, w: Tensor, with_plaus: bool) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
        """Per sample at ``xp = x + w``: squared distance, loss toward the target, plausibility (or None), logits."""
        if on_features:
            feats = model.features(xp)
            logits = class_logits(model.head(feats))
            plaus = plausibility(feats, target).reshape(n) if with_plaus else None
        else:
            logits = class_logits(model(xp))
            plaus = plausibility(xp, target).reshape(n) if with_plaus else None
        wf = w.reshape(n, -1)
        dist = (wf * wf).sum(1)
        return dist, loss_fn(logits, target), plaus, logits

    def smooth_for(gamma: Tensor) -> Callable[[Tensor], Tensor]:
        def smooth(w: Tensor) -> Tensor:
            dist, loss, plaus, _ = terms(x + w, w, use_plaus)
            value = dist + gamma * loss
            return value - tau * plaus if plaus is not None else value

        return smooth

    total_iters = cfg.search_steps * cfg.steps
    searched = [0]
    reached = torch.zeros(n, dtype=torch.bool, device=x.device)

    def tick(k: int, w: Tensor, running: Tensor) -> None:
        progress(
            searched[0] * cfg.steps + k + 1,
            total_iters,
            search=f"{searched[0] + 1}/{cfg.search_steps}",
            reached=(reached.sum(), n),
        )

    def run(c: Tensor):
        nonlocal reached
        gamma = c.to(dtype)
        res = fista(
            smooth_for(gamma),
            prox,
            torch.zeros_like(x),
            steps=cfg.steps,
            step_size=1.0 / cfg.lipschitz,
            schedule=schedule,
            line_search_iters=cfg.line_search_iters,
            restart=cfg.restart,
            penalty=penalty,
            callback=tick if progress is not None else None,
        )
        with torch.no_grad():
            success = class_logits(model(x + res.w)).argmax(1) == target
        reached = reached | success
        searched[0] += 1
        nz = norms(res.w)
        score = nz["l0"].to(torch.float64) + nz["l2"].to(torch.float64) / (nz["l2"].to(torch.float64) + 1)
        stats = {"grad_evals": res.grad_evals, "func_evals": res.func_evals + 1, "iterations": res.iterations}
        return res.w, success, score, stats

    checked = skip and cfg.loss == "margin"  # the check's passes are counted for every sample it ran on
    if checked:
        with frozen_eval(model):
            done = _unmoved(x, target, cfg, terms, prox, use_plaus, tau)
        if bool(done.any()):  # one host read per batch, before the loops
            return _with_skipped(model, x, target, cfg, done, plausibility, mask, progress, terms, tau, use_plaus)

    init = torch.full((n,), float(cfg.gamma), dtype=torch.float64, device=x.device)
    with frozen_eval(model):
        found = bisection_search(run, n, search_steps=cfg.search_steps, init=init, growth=cfg.growth, device=x.device)
        # The prox keeps x + w in the box; the clamp only guards the last ulp, and everything reported is
        # evaluated at exactly the returned inputs.
        x_new = (x + found.w).clamp(cfg.lo, cfg.hi)
        w = x_new - x
        gamma = found.c.to(dtype)
        with torch.no_grad():
            dist, loss, plaus, logits = terms(x_new, w, plausibility is not None)
            objective = dist + gamma * loss + penalty(w)
            if use_plaus:
                objective = objective - tau * plaus
            success = logits.argmax(1) == target
    extras = {
        "gamma": gamma,
        "objective": objective,
        "func_evals": found.totals["func_evals"] + 1 + int(checked),
        "l0": norms(w)["l0"],
        "skipped": torch.zeros(n, dtype=torch.bool, device=x.device),
    }
    if plaus is not None:
        extras["plausibility"] = plaus
    return SolverResult(
        x=x_new.detach(),
        success=success,
        loss=loss,
        iterations=found.totals["iterations"],
        grad_evals=found.totals["grad_evals"] + int(checked and use_plaus),
        extras=extras,
    )


def _unmoved(x: Tensor, target: Tensor, cfg: SCFEConfig, terms, prox, use_plaus: bool, tau: float) -> Tensor:
    """(N,) bool: samples for which S-CFE provably returns ``x`` (see ``scfe``'s ``skip``)."""
    w0 = torch.zeros_like(x)
    if not use_plaus:
        with torch.no_grad():
            _, _, _, logits = terms(x, w0, False)
        return _leads_by_more_than(logits, target, cfg.kappa)
    xp = x.clone().requires_grad_(True)
    _, _, plaus, logits = terms(xp, w0, True)
    (g,) = torch.autograd.grad(plaus.sum(), xp)
    with torch.no_grad():
        lead = _leads_by_more_than(logits.detach(), target, cfg.kappa)
        step = 1.0 / cfg.lipschitz
        # the smooth part's gradient at w = 0 is -tau * grad P there (the distance's is 0, the loss's is 0 where it leads)
        p = prox(step * tau * g, torch.full((x.shape[0],), step, dtype=x.dtype, device=x.device))
        return lead & (p.reshape(x.shape[0], -1) == 0).all(1)


def _leads_by_more_than(logits: Tensor, target: Tensor, kappa: float) -> Tensor:
    others = logits.masked_fill(torch.nn.functional.one_hot(target, logits.shape[1]).bool(), float("-inf"))
    return logits.gather(1, target[:, None]).squeeze(1) - others.max(1).values > kappa


def _with_skipped(model, x, target, cfg, done, plausibility, mask, progress, terms, tau, use_plaus) -> SolverResult:
    """S-CFE on the samples not ``done`` (compacted into a smaller batch), ``x`` itself for the others."""
    n = x.shape[0]
    todo = (~done).nonzero().flatten()
    out_x = x.clone()
    gamma = torch.full((n,), float(cfg.gamma), dtype=x.dtype, device=x.device)
    loss = torch.zeros(n, dtype=x.dtype, device=x.device)
    iterations = torch.zeros(n, dtype=torch.long, device=x.device)
    grad_evals = torch.full((n,), 1 if use_plaus else 0, dtype=torch.long, device=x.device)
    func_evals = torch.ones(n, dtype=torch.long, device=x.device)
    success = torch.ones(n, dtype=torch.bool, device=x.device)
    with torch.no_grad(), frozen_eval(model):
        _, _, plaus, _ = terms(x, torch.zeros_like(x), plausibility is not None)
    objective = -tau * plaus if use_plaus else torch.zeros(n, dtype=x.dtype, device=x.device)
    extras_plaus = plaus.clone() if plaus is not None else None
    if todo.numel():
        sub_mask = mask[todo] if mask is not None and mask.dim() == x.dim() and mask.shape[0] == n and n > 1 else mask
        r = scfe(
            model, x[todo], target[todo], cfg, plausibility=plausibility, mask=sub_mask, progress=progress, skip=False
        )
        out_x[todo] = r.x
        success[todo] = r.success
        loss[todo] = r.loss.to(loss.dtype)
        iterations[todo] = r.iterations
        grad_evals[todo] += r.grad_evals
        func_evals[todo] += r.extras["func_evals"]
        gamma[todo] = r.extras["gamma"].to(gamma.dtype)
        objective[todo] = r.extras["objective"].to(objective.dtype)
        if extras_plaus is not None:
            extras_plaus[todo] = r.extras["plausibility"].to(extras_plaus.dtype)
    elif progress is not None:
        progress(cfg.search_steps * cfg.steps, cfg.search_steps * cfg.steps, reached=(torch.tensor(n), n))
    extras = {
        "gamma": gamma,
        "objective": objective,
        "func_evals": func_evals,
        "l0": norms(out_x - x)["l0"],
        "skipped": done.clone(),
    }
    if extras_plaus is not None:
        extras["plausibility"] = extras_plaus
    return SolverResult(
        x=out_x, success=success, loss=loss, iterations=iterations, grad_evals=grad_evals, extras=extras
    )
