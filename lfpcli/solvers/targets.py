"""Target labels for the perturbations, drawn in one vectorised call (no per-sample Python).

- ``random``: uniform over all K classes; about 1/K of the samples keep their label and are pushed further
  into it. What the paper's public code does on WaterBirds; the original features then carry no
  information about the new labels. The default.
- ``random-other``: uniform over the K-1 other classes (the paper's Definition 4.1, t != y). On a binary
  task every label flips, so the original features become anti-correlated with the new labels.
- ``deterministic``: t = (y + 1) mod K (Ilyas et al.'s D_det).
"""

from __future__ import annotations

import torch

from lfpcli.errors import ConfigError

TARGET_RULES = ("random", "random-other", "deterministic")


def choose_targets(
    y: torch.Tensor, num_classes: int, rule: str, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Targets (N,) int64 for labels ``y`` (N,) under ``rule``; randomness only from ``generator``."""
    if rule not in TARGET_RULES:
        raise ConfigError(f"unknown target rule '{rule}'; choose one of {', '.join(TARGET_RULES)}")
    if num_classes < 2:
        raise ConfigError("targets need at least 2 classes")
    y = y.long()
    if rule == "random":
        return torch.randint(0, num_classes, y.shape, generator=generator, device="cpu").to(y.device)
    if rule == "random-other":
        shift = torch.randint(1, num_classes, y.shape, generator=generator, device="cpu").to(y.device)
        return (y + shift) % num_classes
    return (y + 1) % num_classes
