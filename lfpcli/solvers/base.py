"""What every solver shares: the result type, per-sample norms, and the eval-mode context."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterator

import torch


@dataclass
class SolverResult:
    """``x``: perturbed inputs (N, C, H, W) in the box; ``success`` (N,) bool: the model predicts the target;
    ``loss`` (N,) final loss toward the target; ``iterations`` and ``grad_evals`` (N,) int64: iterations run
    and forward+backward passes spent per sample; ``extras``: solver-specific per-sample tensors."""

    x: torch.Tensor
    success: torch.Tensor
    loss: torch.Tensor
    iterations: torch.Tensor
    grad_evals: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


def norms(delta: torch.Tensor) -> dict[str, torch.Tensor]:
    """l0 (count of non-zero entries), l2 and linf of each sample's change (N, ...) -> (N,) each."""
    flat = delta.flatten(1)
    return {
        "l0": (flat != 0).sum(1).float(),
        "l2": flat.norm(p=2, dim=1),
        "linf": flat.abs().amax(1) if flat.shape[1] else torch.zeros(flat.shape[0], device=flat.device),
    }


@contextlib.contextmanager
def frozen_eval(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Eval mode with parameter gradients off for the duration; both restored afterwards."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)
