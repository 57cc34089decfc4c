"""Targeted sparse (l0) PGD after Kumano et al. (2024): grow a set of changed coordinates one per step.

A *coordinate* is one input value: one channel of one pixel (an entry of the flattened (C, H, W) input). For every
sample of the batch at once, each of the ``steps`` iterations

1. computes g = grad_x' L(f(x'), t) at the current iterate;
2. adds to the sample's changed set S the coordinate with the largest |g| among those not in S that can still
   move in the descent direction -g (g > 0 and x' > lo, or g < 0 and x' < hi): a coordinate pinned at the box
   edge, or one with g = 0, would not change and does not take a slot. Nothing is added once |S| reaches
   ``max_changed`` (default: ``steps``) or when no coordinate qualifies. Ties go to the lowest index;
3. steps on S only:  x' <- clamp(x' - alpha * s, lo, hi)  with s = g * 1_S normalised by ``step``:
   ``max-normalized`` (default; divide by max_i |g_i| over S, so the largest entry moves by exactly alpha, as
   the paper's public code), ``sign`` (alpha * sign(g) on S) or ``raw`` (alpha * g on S).

Coordinates outside S never change, so ||x' - x||_0 <= |S| <= min(steps, max_changed). S only grows: a coordinate
that has entered it stays in it (and keeps its slot) even if it later returns to its original value.

``keep="last"`` returns the final iterate (as ``pgd``); ``keep="best"`` returns, per sample, the iterate of lowest
loss among x, the ``steps - 1`` intermediate iterates and the final one (first one on ties), as the paper's
public code does. Either way each sample spends exactly ``steps`` gradient evaluations (plus one forward-only
pass at the end).

Differences from the public code, which defines S as the coordinates where x' != x: there, a coordinate chosen
at the box edge is clamped back, stays "unchanged" and is chosen again on the next step (wasting it), and a
coordinate that returns to its original value drops out of S.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from lfpcli.errors import ConfigError
from lfpcli.models.outputs import class_logits
from lfpcli.progress import Tick
from lfpcli.solvers.base import SolverResult, frozen_eval
from lfpcli.solvers.losses import get_loss

__all__ = ["KEEP", "PGDL0Config", "STEPS", "pgd_l0"]

STEPS = ("max-normalized", "sign", "raw")
KEEP = ("last", "best")


@dataclass(frozen=True)
class PGDL0Config:
    """``steps``: iterations, each adding at most one coordinate to the changed set; ``max_changed``: cap on
    the changed set (None: ``steps``); ``step_size``: alpha; ``step``: ``max-normalized``, ``sign`` or ``raw``
    (see the module docstring); ``keep``: ``last`` or ``best`` iterate; ``loss``: ``ce`` or ``margin``;
    ``lo``/``hi``: the pixel box. Defaults are the paper's public code on MNIST (100 steps, alpha 0.3,
    max-normalised steps), except ``keep``."""

    steps: int = 100
    max_changed: int | None = None
    step_size: float = 0.3
    step: str = "max-normalized"
    keep: str = "last"
    loss: str = "ce"
    lo: float = 0.0
    hi: float = 1.0

    def __post_init__(self):
        if self.steps < 1:
            raise ConfigError(f"--steps must be at least 1, got {self.steps}")
        if self.max_changed is not None and self.max_changed < 1:
            raise ConfigError(f"--max-changed must be at least 1, got {self.max_changed}")
        if not (self.step_size > 0) or self.step_size == float("inf"):
            raise ConfigError(f"--step-size must be a positive number, got {self.step_size}")
        if self.step not in STEPS:
            raise ConfigError(f"--step must be one of {', '.join(STEPS)}, got '{self.step}'")
        if self.keep not in KEEP:
            raise ConfigError(f"--keep must be one of {', '.join(KEEP)}, got '{self.keep}'")
        get_loss(self.loss)
        if not self.lo < self.hi:
            raise ConfigError(f"the box needs lo < hi, got [{self.lo}, {self.hi}]")

    @property
    def budget(self) -> int:
        """The most coordinates a sample may change: min(steps, max_changed)."""
        return self.steps if self.max_changed is None else min(self.steps, self.max_changed)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "max_changed": self.budget}


def _direction(gm: torch.Tensor, step: str) -> torch.Tensor:
    """The step direction (N, D) from the gradient restricted to the changed set."""
    if step == "sign":
        return gm.sign()
    if step == "max-normalized":
        return gm / gm.abs().amax(1, keepdim=True).clamp_min(1e-12)
    return gm


def pgd_l0(
    model: torch.nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    cfg: PGDL0Config,
    *,
    generator: torch.Generator | None = None,
    progress: Tick | None = None,
) -> SolverResult:
    """Targeted sparse PGD on a batch: ``x`` (N, C, H, W) in the box, ``target`` (N,) -> :class:`SolverResult`.

    ``extras["changed"]`` (N,) int64 is the size of each sample's changed set (>= its l0). Deterministic:
    ``generator`` is accepted for the common signature and unused. The loop keeps all bookkeeping on the device
    (no host sync per step); the model is left in the mode it had, and its parameters receive no gradients.
    ``progress(k, steps)`` is called after every step.
    """
    loss_fn = get_loss(cfg.loss)
    x = x.detach()
    n = x.shape[0]
    budget = cfg.budget
    alpha = cfg.step_size
    keep_best = cfg.keep == "best"
    with frozen_eval(model):
        xa = x.clone()
        changed = torch.zeros((n, x[0].numel()), dtype=torch.bool, device=x.device)
        count = torch.zeros(n, dtype=torch.long, device=x.device)
        if keep_best:
            best_x = x.clone()
            best_loss = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
            best_logits = None
        for k in range(cfg.steps):
            xa.requires_grad_(True)
            logits = class_logits(model(xa))
            loss = loss_fn(logits, target)
            (g,) = torch.autograd.grad(loss.sum(), xa)
            with torch.no_grad():
                xa = xa.detach()
                if keep_best:
                    better = loss.detach() < best_loss
                    best_loss = torch.where(better, loss.detach(), best_loss)
                    best_x = torch.where(better.view(-1, *([1] * (x.dim() - 1))), xa, best_x)
                    lg = logits.detach()
                    best_logits = lg if best_logits is None else torch.where(better[:, None], lg, best_logits)
                gf = g.flatten(1)
                xf = xa.flatten(1)
                movable = ((gf > 0) & (xf > cfg.lo)) | ((gf < 0) & (xf < cfg.hi))
                score = torch.where(movable & ~changed, gf.abs(), torch.full_like(gf, -1.0))
                top, idx = score.max(1)
                add = (top > 0) & (count < budget)
                changed |= torch.zeros_like(changed).scatter_(1, idx[:, None], add[:, None])
                count += add.long()
                d = _direction(gf * changed, cfg.step)
                xa = (xa - alpha * d.view_as(xa)).clamp(cfg.lo, cfg.hi)
            if progress is not None:
                progress(k + 1, cfg.steps)
        with torch.no_grad():
            logits = class_logits(model(xa))
            final_loss = loss_fn(logits, target)
            if keep_best:
                better = final_loss < best_loss
                final_loss = torch.where(better, final_loss, best_loss)
                xa = torch.where(better.view(-1, *([1] * (x.dim() - 1))), xa, best_x)
                logits = torch.where(better[:, None], logits, best_logits)
            success = logits.argmax(1) == target
    steps = torch.full((n,), cfg.steps, dtype=torch.long, device=x.device)
    return SolverResult(
        x=xa.detach(),
        success=success,
        loss=final_loss,
        iterations=steps,
        grad_evals=steps.clone(),
        extras={"changed": count},
    )
