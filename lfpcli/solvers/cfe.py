"""Counterfactual explanations in l2 (Wachter et al. 2017): regularised cross-entropy minimised with Adam.

For every sample of the batch at once, minimise over x' in the box [lo, hi]

    J(x') = L(f(x'), t) + lam * ||x' - x||_2^2          (L: ``ce`` by default, or ``margin``)

with Adam of learning rate ``lr`` (the paper's lambda_CF) for ``steps`` iterations, clamping x' to the box after
every step (projected Adam). The output is the final iterate, as in Wachter et al. and the paper's public code;
there is no early stop and no "best iterate" bookkeeping, so every sample spends exactly ``steps`` gradient
evaluations.

Per-sample independence: the objective is summed over samples before ``autograd.grad`` (so each sample gets its
own gradient) and the Adam update below is written out elementwise on x' (first/second moments per input value,
bias correction from the shared step count), so one sample's trajectory never depends on the others in its
batch. The update is the same arithmetic as ``torch.optim.Adam`` with its defaults (betas 0.9/0.999, eps 1e-8,
no weight decay). The paper's public code averages the loss over the batch instead of summing; Adam is
invariant to that 1/N scaling of the gradient up to its eps, so the two agree to within that.

``init="zero"`` starts at x' = x; ``init="noise"`` starts at clamp(x + 0.01 * U[0, 1)), what the paper's
public code does (the noise comes from ``generator``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from lfpcli.errors import ConfigError
from lfpcli.models.outputs import class_logits
from lfpcli.progress import Tick
from lfpcli.solvers.base import SolverResult, frozen_eval
from lfpcli.solvers.losses import get_loss

__all__ = ["ADAM_BETAS", "ADAM_EPS", "CFEConfig", "INITS", "NOISE_SCALE", "cfe", "wachter_objective"]

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
NOISE_SCALE = 0.01
INITS = ("zero", "noise")


def _finite_positive(v: float) -> bool:
    return v > 0 and v != float("inf")


@dataclass(frozen=True)
class CFEConfig:
    """``lam``: weight of the squared l2 distance (Wachter's lambda; the paper uses 0.1 or 0.01); ``step_size``:
    Adam's step size (its learning rate; the paper's lambda_CF: 0.01 or 0.001); ``steps``: Adam iterations (the paper: 100);
    ``loss``: ``ce`` or ``margin``; ``lo``/``hi``: the pixel box; ``init``: ``zero`` (start at x) or ``noise``
    (x + 0.01 * U[0, 1), as the paper's public code)."""

    lam: float = 0.1
    step_size: float = 0.01
    steps: int = 100
    loss: str = "ce"
    lo: float = 0.0
    hi: float = 1.0
    init: str = "zero"

    def __post_init__(self):
        if not (self.lam >= 0) or self.lam == float("inf"):
            raise ConfigError(f"--lam must be a non-negative number, got {self.lam}")
        if not _finite_positive(self.step_size):
            raise ConfigError(f"--step-size must be a positive number, got {self.step_size}")
        if self.steps < 1:
            raise ConfigError(f"--steps must be at least 1, got {self.steps}")
        get_loss(self.loss)
        if not self.lo < self.hi:
            raise ConfigError(f"the box needs lo < hi, got [{self.lo}, {self.hi}]")
        if self.init not in INITS:
            raise ConfigError(f"--init must be one of {', '.join(INITS)}, got '{self.init}'")

    def to_dict(self) -> dict[str, Any]:
        """The fields, so that ``make_config("cfe-l2", to_dict())`` rebuilds the config; Adam's betas and eps are
        the module constants ``ADAM_BETAS`` and ``ADAM_EPS``."""
        return asdict(self)


def wachter_objective(
    logits: torch.Tensor, target: torch.Tensor, x_cf: torch.Tensor, x: torch.Tensor, cfg: CFEConfig
) -> torch.Tensor:
    """Per-sample J = L(logits, t) + lam * ||x_cf - x||_2^2, shape (N,)."""
    return get_loss(cfg.loss)(logits, target) + cfg.lam * (x_cf - x).flatten(1).pow(2).sum(1)


def cfe(
    model: torch.nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    cfg: CFEConfig,
    *,
    generator: torch.Generator | None = None,
    progress: Tick | None = None,
) -> SolverResult:
    """Wachter counterfactuals for a batch: ``x`` (N, C, H, W) in the box, ``target`` (N,) -> :class:`SolverResult`.

    ``extras["objective"]`` holds J at the returned x'. The loop keeps everything on the device (no host sync per
    step); the model is left in the mode it had, and its parameters receive no gradients. ``progress(k, steps)``
    is called after every step.
    """
    loss_fn = get_loss(cfg.loss)
    x = x.detach()
    n = x.shape[0]
    b1, b2 = ADAM_BETAS
    with frozen_eval(model):
        if cfg.init == "noise":
            r = torch.rand(x.shape, generator=generator, device="cpu").to(device=x.device, dtype=x.dtype)
            xc = (x + NOISE_SCALE * r).clamp(cfg.lo, cfg.hi)
        else:
            xc = x.clone()
        m = torch.zeros_like(x)
        v = torch.zeros_like(x)
        for k in range(1, cfg.steps + 1):
            xv = xc.requires_grad_(True)
            (g,) = torch.autograd.grad(wachter_objective(class_logits(model(xv)), target, xv, x, cfg).sum(), xv)
            with torch.no_grad():
                # Adam, elementwise (same arithmetic as torch.optim.Adam's single-tensor path)
                m.lerp_(g, 1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = (v.sqrt() / math.sqrt(1 - b2**k)).add_(ADAM_EPS)
                xc = torch.addcdiv(xc.detach(), m, denom, value=-cfg.step_size / (1 - b1**k)).clamp_(cfg.lo, cfg.hi)
            if progress is not None:
                progress(k, cfg.steps)
        with torch.no_grad():
            logits = class_logits(model(xc))
            final_loss = loss_fn(logits, target)
            objective = wachter_objective(logits, target, xc, x, cfg)
            success = logits.argmax(1) == target
    steps = torch.full((n,), cfg.steps, dtype=torch.long, device=x.device)
    return SolverResult(
        x=xc.detach(),
        success=success,
        loss=final_loss,
        iterations=steps,
        grad_evals=steps.clone(),
        extras={"objective": objective},
    )
