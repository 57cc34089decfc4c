"""Kumano et al.'s small ConvNet for MNIST and Fashion-MNIST (ICLR 2024, ``utils/classifiers/conv.py``), as the
seed paper's Appendix B uses it.

Registered as ``kumano-cnn``. On a 1x28x28 input:

=======  ================================================================  ===========
layer    operation                                                         output
=======  ================================================================  ===========
conv1    3x3, C -> 16, stride 2, no padding, ReLU                           16x13x13
conv2    3x3, 16 -> 128, no padding, ReLU                                   128x11x11
conv3    3x3, 128 -> 128, padding 1, ReLU, added to its input (residual)    128x11x11
conv4    3x3, 128 -> 256, no padding, ReLU                                  256x9x9
conv5    3x3, 256 -> 256, padding 1, ReLU, residual add                     256x9x9
head     global average pool (the 9x9 map) -> linear 256 -> K               K
=======  ================================================================  ===========

No BatchNorm, no dropout: 1,054,122 parameters for K = 10 on one input channel. ``features(x)`` is the pooled 256
values, ``head`` the linear layer. Other input sizes work too (the pool is global: on 28x28 it is exactly Kumano's
9x9 average pool). The parameter names (``conv1`` ... ``conv5``, ``linear``) follow the layer names above, so a
state dict of this network loads with ``--arch kumano-cnn`` (see ``lfpcli.artifacts.foreign_model``).
"""

from __future__ import annotations

import torch
from torch import nn

from lfpcli.errors import ConfigError
from lfpcli.models.registry import register_model


class _Residual(nn.Module):
    """``x + relu(conv(x))``: a 3x3 convolution with padding 1 whose ReLU output is added to its input."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.relu(self.conv(x))


class KumanoCNN(nn.Module):
    """The network of the table in the module docstring; ``features`` and ``head`` are methods, so the state dict
    keys are the layers' own (``conv1.weight`` ... ``linear.bias``)."""

    def __init__(self, in_channels: int, num_classes: int, widths: tuple[int, int, int] = (16, 128, 256)):
        super().__init__()
        w1, w2, w3 = widths
        self.conv1 = nn.Conv2d(in_channels, w1, 3, stride=2)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(w1, w2, 3)
        self.relu2 = nn.ReLU()
        self.conv3 = _Residual(w2)
        self.conv4 = nn.Conv2d(w2, w3, 3)
        self.relu4 = nn.ReLU()
        self.conv5 = _Residual(w3)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(w3, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        x = self.conv5(self.relu4(self.conv4(self.conv3(x))))
        return self.pool(x).flatten(1)

    def head(self, f: torch.Tensor) -> torch.Tensor:
        return self.linear(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_model("kumano-cnn")
def kumano_cnn(num_classes, input_shape, *, width: int = 1) -> nn.Module:
    """Kumano et al.'s MNIST/FMNIST ConvNet (5 conv layers, two residual, global average pool, linear head;
    1,054,122 parameters at 1x28x28 and 10 classes). ``width`` multiplies the channel counts (16, 128, 256): 1 is
    the paper's network. Needs inputs of at least 11x11 pixels."""
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise ConfigError(f"kumano-cnn needs width >= 1 (a multiplier of its 16, 128, 256 channels), got {width}")
    c, h, w = input_shape
    if min(h, w) < 11:
        raise ConfigError(
            f"kumano-cnn needs inputs of at least 11x11 pixels (three unpadded 3x3 convolutions, the "
            f"first of stride 2), got {h}x{w}; use small-cnn or mlp for smaller images"
        )
    return KumanoCNN(c, num_classes, (16 * width, 128 * width, 256 * width))
