"""The pixel-space wrapper: normalisation is part of the model, so perturbations and boxes live in [0, 1]."""

from __future__ import annotations

import torch
from torch import nn


class PixelModel(nn.Module):
    """``logits = net.head(net.features((x - mean) / std))`` for x of shape (N, C, H, W) in [0, 1].

    ``features(x)`` returns the penultimate representation (N, F), used by feature-space densities and
    saliency; ``forward(x)`` the logits (N, K).
    """

    def __init__(self, net: nn.Module, mean: list[float], std: list[float]):
        super().__init__()
        self.net = net
        c = len(mean)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, c, 1, 1))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(self.normalize(x))

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from ``features(x)``'s output: ``forward(x) == head(features(x))``."""
        return self.net.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.head(self.net.features(self.normalize(x)))
