"""Targeted projected gradient descent (Madry et al. 2018) in pixel space, l2 and linf balls.

Minimise L(f(x'), t) subject to ||x' - x||_p <= eps and x' in the box [lo, hi], for every sample at once:

- l2:   x' <- x' - alpha * g / ||g||_2, then delta <- delta * min(1, eps / ||delta||_2)
- linf: x' <- x' - alpha * sign(g) (``step="sign"``) or alpha * g / max|g| (``"max-normalized"``, as the
  paper's public code), then clip each pixel to [-eps, eps] (``projection="clip"``) or scale the whole
  perturbation into the ball (``"rescale"``, as the paper's public code);

followed by clamping to the box. ``alpha`` defaults to 2.5 * eps / steps (Madry et al.'s rule).
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


@dataclass(frozen=True)
class PGDConfig:
    """``eps``: radius of the ball (pixel units); ``steps``: iterations; ``step_size``: alpha (None: 2.5 *
    eps / steps); ``random_start``: start from a uniform point in the ball; ``loss``: ``ce`` or ``margin``;
    ``step``/``projection``: linf variants (see the module docstring); ``lo``/``hi``: the pixel box."""

    norm: str = "l2"
    eps: float = 1.0
    steps: int = 30
    step_size: float | None = None
    random_start: bool = False
    loss: str = "ce"
    step: str = "sign"
    projection: str = "clip"
    lo: float = 0.0
    hi: float = 1.0

    def __post_init__(self):
        if self.norm not in ("l2", "linf"):
            raise ConfigError(f"PGD norm must be l2 or linf, got '{self.norm}'")
        if not (self.eps > 0) or self.eps == float("inf"):
            raise ConfigError(f"--eps must be a positive number, got {self.eps}")
        if self.steps < 1:
            raise ConfigError(f"--steps must be at least 1, got {self.steps}")
        if self.step_size is not None and (not (self.step_size > 0) or self.step_size == float("inf")):
            raise ConfigError(f"--step-size must be a positive number, got {self.step_size}")
        get_loss(self.loss)
        if self.step not in ("sign", "max-normalized"):
            raise ConfigError(f"--step must be sign or max-normalized, got '{self.step}'")
        if self.projection not in ("clip", "rescale"):
            raise ConfigError(f"--projection must be clip or rescale, got '{self.projection}'")
        if self.norm == "l2" and (self.step != "sign" or self.projection != "clip"):
            raise ConfigError("--step and --projection apply to pgd-linf only")
        if not self.lo < self.hi:
            raise ConfigError(f"the box needs lo < hi, got [{self.lo}, {self.hi}]")

    @property
    def alpha(self) -> float:
        return self.step_size if self.step_size is not None else 2.5 * self.eps / self.steps

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "step_size": self.alpha}


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


def project_(delta: torch.Tensor, cfg: PGDConfig) -> torch.Tensor:
    """Project perturbations (N, ...) onto the eps-ball of ``cfg.norm``, in place (the box is the caller's)."""
    flat = delta.flatten(1)
    if cfg.norm == "l2":
        return delta.mul_(_bcast((cfg.eps / flat.norm(p=2, dim=1).clamp_min(1e-12)).clamp_(max=1.0), delta))
    if cfg.projection == "rescale":
        return delta.mul_(_bcast((cfg.eps / flat.abs().amax(1).clamp_min(1e-12)).clamp_(max=1.0), delta))
    return delta.clamp_(-cfg.eps, cfg.eps)


def pgd(
    model: torch.nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    cfg: PGDConfig,
    *,
    generator: torch.Generator | None = None,
    progress: Tick | None = None,
) -> SolverResult:
    """Targeted PGD on a batch: ``x`` (N, C, H, W) in the box, ``target`` (N,) -> :class:`SolverResult`.

    The loop keeps all bookkeeping on the device (no host sync per step); the model is left in the mode it
    had, and its parameters receive no gradients. ``progress(k, steps)`` is called after every step.
    """
    loss_fn = get_loss(cfg.loss)
    x = x.detach()
    n = x.shape[0]
    alpha = cfg.alpha
    with frozen_eval(model):
        if cfg.random_start:
            r = torch.rand(x.shape, generator=generator, device="cpu").to(x.device)
            if cfg.norm == "linf":
                delta = (2 * r - 1) * cfg.eps
            else:
                g = torch.randn(x.shape, generator=generator, device="cpu").to(x.device)
                radius = torch.rand(n, generator=generator, device="cpu").to(x.device) ** (1.0 / x[0].numel())
                delta = g / _bcast(g.flatten(1).norm(dim=1).clamp_min(1e-12), g) * _bcast(radius * cfg.eps, g)
            delta = (x + delta).clamp(cfg.lo, cfg.hi) - x
        else:
            delta = torch.zeros_like(x)
        # iterate on x' itself with in-place updates: on small models the elementwise passes, not the model,
        # are what separates a PGD step from one forward+backward pass
        xa = (x + delta).clamp(cfg.lo, cfg.hi)
        for k in range(cfg.steps):
            xa.requires_grad_(True)
            loss = loss_fn(class_logits(model(xa)), target)
            (grad,) = torch.autograd.grad(loss.sum(), xa)
            with torch.no_grad():
                xa = xa.detach()
                if cfg.norm == "l2":
                    grad.div_(_bcast(grad.flatten(1).norm(dim=1).clamp_min_(1e-12), grad))
                elif cfg.step == "sign":
                    grad.sign_()
                else:
                    grad.div_(_bcast(grad.flatten(1).abs().amax(1).clamp_min_(1e-12), grad))
                delta = xa.sub_(grad, alpha=alpha).sub_(x)  # xa's storage now holds the new delta
                delta = project_(delta, cfg)
                xa = delta.add_(x).clamp_(cfg.lo, cfg.hi)
            if progress is not None:
                progress(k + 1, cfg.steps)
        with torch.no_grad():
            x_adv = xa.detach()
            logits = class_logits(model(x_adv))
            final_loss = loss_fn(logits, target)
            success = logits.argmax(1) == target
    steps = torch.full((n,), cfg.steps, dtype=torch.long, device=x.device)
    return SolverResult(x=x_adv.detach(), success=success, loss=final_loss, iterations=steps, grad_evals=steps.clone())
