"""Per-sample losses toward a target, never batch-averaged: each sample's gradient, and any per-sample
weight applied to it, must not depend on which other samples share the batch.

All take ``logits`` (N, K) and ``target`` (N,) and return (N,); smaller means closer to the target. A scalar-output
binary model's ``z`` enters as the two logits ``(-z/2, z/2)`` (``lfpcli.models.outputs.class_logits``); with
``s = +1`` for target 1 and ``-1`` for target 0 the losses then read ``ce = logistic = log(1 + exp(-s z))``,
``exponential = exp(-s z)`` and ``margin = max(kappa - s z, 0)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lfpcli.errors import ConfigError


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-log softmax(logits)[target]."""
    return F.cross_entropy(logits, target, reduction="none")


def margin(logits: torch.Tensor, target: torch.Tensor, kappa: float = 0.0) -> torch.Tensor:
    """max(max_{j != t} z_j - z_t + kappa, 0): zero once the target leads every other class by ``kappa``."""
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(target, logits.shape[1]).bool(), float("-inf"))
    return (others.max(1).values - z_t + kappa).clamp_min(0)


def exponential(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """sum_{j != t} exp(z_j - z_t): the multi-class exponential loss; ``exp(-s z)`` for a scalar-output model."""
    diff = logits - logits.gather(1, target[:, None])
    return diff.masked_fill(F.one_hot(target, logits.shape[1]).bool(), float("-inf")).exp().sum(1)


#: ``logistic`` is cross-entropy under its binary name (identical on two classes, softmax regression on K).
LOSSES = {"ce": cross_entropy, "logistic": cross_entropy, "exponential": exponential, "margin": margin}


def get_loss(name: str):
    if name not in LOSSES:
        raise ConfigError(f"unknown loss '{name}'; choose one of {', '.join(LOSSES)}")
    return LOSSES[name]
