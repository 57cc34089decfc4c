"""Full-batch training of one-hidden-layer networks (Kumano et al.'s protocol) with a plateau stop.

Every epoch is one forward and one backward pass over the whole training set, on the device: one batched matmul
(``lfpcli.models.synthetic.one_hidden_forward``), the loss through the scalar-output path every lfp model uses
(``class_logits`` and ``lfpcli.solvers.losses``: ``exponential`` = exp(-s z), Kumano et al.'s and the paper's
setting; ``logistic`` = log(1 + exp(-s z))), the gradient by autograd, and SGD with momentum (``torch.optim.SGD``'s
update: ``buf = momentum * buf + grad``, ``w -= lr * buf``). Only the first layer trains; the second is fixed.

**Stopping rule** (per network). Let ``L_t`` be the mean training loss after ``t`` updates and ``F_t`` the
fraction of training samples classified as their label. Training stops at the first ``t`` where

- ``L_t`` is not finite (diverged), or
- ``t = max_epochs`` (the cap), or
- every training sample is fitted (``F_t = 1``) and either ``L_t <= loss_tol`` (0 turns this off) or the loss has
  plateaued: ``t >= window`` and ``L_t > (1 - rel_tol) * L_{t - window}``, i.e. it fell by less than the fraction
  ``rel_tol`` over the last ``window`` epochs.

``epochs`` is that ``t`` (updates applied); the loss and the fraction fitted are those of the same forward pass.
With the exponential loss on separable data the loss never stops falling (it goes to 0 like ``1/t``), so the rule
ends training once the data is fitted and further epochs only shrink the loss slowly (about ``window / rel_tol``
epochs into that regime). Kumano et al. ran a fixed 100,000 epochs instead. A training set that is never fitted
trains until the cap.

**Side by side.** ``fit`` trains ``G`` networks at once from a ``(G, h, d)`` weight tensor and ``(G, N, d)`` inputs;
each network stops on its own (its update is masked from then on), so it gets the same result as training it
alone. The stop test runs on the device every epoch; the host only looks every ``check_every`` epochs to leave the
loop early, so the result does not depend on ``check_every``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from lfpcli.errors import ConfigError
from lfpcli.models.outputs import class_logits
from lfpcli.models.synthetic import one_hidden_forward
from lfpcli.progress import Progress, no_progress
from lfpcli.solvers.losses import get_loss

__all__ = ["FitConfig", "FitResult", "fit", "TRAIN_LOSSES"]

TRAIN_LOSSES = ("exponential", "logistic")


@dataclass(frozen=True)
class FitConfig:
    """``loss``: ``exponential`` or ``logistic``; ``lr``, ``momentum``: full-batch SGD (Kumano et al.: 0.01, 0.9);
    ``max_epochs``: the cap; ``window``, ``rel_tol``, ``loss_tol``: the stopping rule (module docstring)."""

    loss: str = "exponential"
    lr: float = 0.01
    momentum: float = 0.9
    max_epochs: int = 20_000
    window: int = 100
    rel_tol: float = 0.05
    loss_tol: float = 0.0

    def __post_init__(self):
        if self.loss not in TRAIN_LOSSES:
            raise ConfigError(f"--loss must be one of {', '.join(TRAIN_LOSSES)}, got '{self.loss}'")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--lr must be a positive number, got {self.lr}")
        if not (isinstance(self.momentum, (int, float)) and 0 <= self.momentum < 1):
            raise ConfigError(f"--momentum must be in [0, 1), got {self.momentum}")
        for name in ("max_epochs", "window"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be a whole number of at least 1, got {v}")
        if not (isinstance(self.rel_tol, (int, float)) and 0 <= self.rel_tol < 1):
            raise ConfigError(f"--rel-tol must be in [0, 1), got {self.rel_tol}")
        if not (isinstance(self.loss_tol, (int, float)) and math.isfinite(self.loss_tol) and self.loss_tol >= 0):
            raise ConfigError(f"--loss-tol must be a non-negative number, got {self.loss_tol}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FitResult:
    """``w`` (G, h, d) the trained first layers; per network (G,): ``epochs`` (updates applied), ``loss`` (mean
    training loss at the stop), ``fitted`` (fraction of training samples classified as their label), ``diverged``;
    ``seconds``: wall time of the whole call."""

    w: torch.Tensor
    epochs: torch.Tensor
    loss: torch.Tensor
    fitted: torch.Tensor
    diverged: torch.Tensor
    seconds: float


def fit(
    w0: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    a: torch.Tensor,
    cfg: FitConfig,
    *,
    slope: float = 0.01,
    check_every: int | None = None,
    progress: Progress = no_progress,
    stage: str = "train",
) -> FitResult:
    """Train ``G`` networks side by side: ``w0`` (G, h, d) initial first layers, ``x`` (G, N, d) inputs, ``y`` (G, N)
    class indices {0, 1} (label -1/+1), ``a`` (h,) the fixed second layer; everything on one device.

    ``check_every``: epochs between host checks (default 1 on the CPU, 25 elsewhere). ``progress(stage, t,
    max_epochs, loss=...)`` is called at each check.
    """
    if (
        w0.dim() != 3
        or x.dim() != 3
        or y.dim() != 2
        or x.shape[0] != w0.shape[0]
        or y.shape != x.shape[:2]
        or x.shape[2] != w0.shape[2]
    ):
        raise ValueError(
            f"fit needs w0 (G,h,d), x (G,N,d), y (G,N); got {tuple(w0.shape)}, {tuple(x.shape)}, {tuple(y.shape)}"
        )
    start = time.perf_counter()
    dev = w0.device
    g_count, n = y.shape
    if check_every is None:
        check_every = 1 if dev.type == "cpu" else 25
    loss_fn = get_loss(cfg.loss)
    flat_y = y.reshape(-1)
    w = w0.detach().clone().requires_grad_(True)
    buf = torch.zeros_like(w)
    hist = torch.full((g_count, cfg.window), math.inf, dtype=w.dtype, device=dev)
    stopped = torch.zeros(g_count, dtype=torch.bool, device=dev)
    epochs = torch.zeros(g_count, dtype=torch.long, device=dev)
    final_loss = torch.zeros(g_count, dtype=w.dtype, device=dev)
    fitted = torch.zeros(g_count, dtype=w.dtype, device=dev)
    diverged = torch.zeros(g_count, dtype=torch.bool, device=dev)
    keep = 1.0 - cfg.rel_tol
    for t in range(cfg.max_epochs + 1):
        z = one_hidden_forward(w, x, a, slope)
        logits = class_logits(z.reshape(-1))
        loss = loss_fn(logits, flat_y).view(g_count, n).mean(1)
        with torch.no_grad():
            lv = loss.detach()
            slot = t % cfg.window
            bad = ~torch.isfinite(lv)
            # class 1 iff z > 0: the argmax of class_logits(z) = (-z/2, z/2), ties (z = 0) to class 0
            acc = ((z.detach() > 0) == flat_y.view(g_count, n).bool()).to(w.dtype).mean(1)
            done_ = lv <= cfg.loss_tol
            if t >= cfg.window:
                done_ |= lv > keep * hist[:, slot]
            stop = bad | ((acc == 1) & done_)
            if t == cfg.max_epochs:
                stop = torch.ones_like(stop)
            hist[:, slot] = lv
            new = stop & ~stopped
            epochs = torch.where(new, torch.full_like(epochs, t), epochs)
            final_loss = torch.where(new, lv, final_loss)
            fitted = torch.where(new, acc, fitted)
            diverged |= new & bad
            stopped |= stop
        if t == cfg.max_epochs:
            break
        if t % check_every == 0:
            done = bool(stopped.all())
            progress(stage, t, cfg.max_epochs, loss=float(lv.max()))
            if done:
                break
        (grad,) = torch.autograd.grad(loss.sum(), w)
        with torch.no_grad():
            act = (~stopped).to(w.dtype).view(-1, 1, 1)
            # for an active network this is exactly buf = momentum * buf + grad; w -= lr * buf (a stopped one keeps both)
            buf.mul_(act * cfg.momentum + (1 - act)).add_(grad * act)
            w.sub_(buf * (act * cfg.lr))
    progress(stage, int(epochs.max()), cfg.max_epochs, loss=float(final_loss.max()))
    return FitResult(
        w=w.detach(),
        epochs=epochs.cpu(),
        loss=final_loss.cpu(),
        fitted=fitted.cpu(),
        diverged=diverged.cpu(),
        seconds=time.perf_counter() - start,
    )
