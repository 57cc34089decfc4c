"""WideResNet-28-10 (Zagoruyko & Komodakis 2016) as Kumano et al. use it on CIFAR-10: ``WideResNet(28, 10, 0.3, 10)``.

Registered as ``wrn-28-10``; ``depth`` (6n + 4), ``width`` (the widening factor k) and ``dropout`` are architecture
options (``--arch-arg depth=16 --arch-arg width=4``), ``conv_bias`` chooses between Kumano's convolutions with
biases (the default) and the WRN paper's without. Layout (Kumano et al.'s code; 32x32 input):

- stem: 3x3 conv, C -> 16
- three groups of n = (depth - 4) / 6 pre-activation blocks of width 16k, 32k, 64k; the first block of groups 2
  and 3 has stride 2 (maps 32x32, 16x16, 8x8)
- a block: BN -> ReLU -> 3x3 conv -> dropout -> BN -> ReLU -> 3x3 conv, plus a shortcut: identity, or a 1x1 conv
  of the block's input (before its BN/ReLU) when the width or the stride changes
- head: BN (momentum 0.9, as Kumano's code has it) -> ReLU -> global average pool (8x8 at 32 px) -> linear 64k -> K

Kumano's variant (after meliketoy/wide-resnet.pytorch) puts the block's stride on its *second* 3x3 conv and on the
shortcut, and gives every convolution a bias: 36,489,290 parameters for WRN-28-10 on CIFAR-10 (36,479,194
without conv biases, the WRN paper's "36.5M"). Weights start from PyTorch's default initialisation.

``features(x)`` is the pooled 64k values after the final BN-ReLU, ``head`` the linear layer. The attribute names
(``conv1``, ``layer1..3``, each block's ``bn1 conv1 dropout bn2 conv2 shortcut``, ``bn1``, ``linear``) are those
of Kumano's code, so a state dict saved from it loads with ``--arch wrn-28-10`` unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from lfpcli.errors import ConfigError
from lfpcli.models.registry import register_model


class WideBasic(nn.Module):
    """One pre-activation block; the stride sits on ``conv2`` and on the 1x1 shortcut (Kumano's variant)."""

    def __init__(self, in_planes: int, planes: int, dropout: float, stride: int, bias: bool):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, padding=1, bias=bias)
        self.dropout = nn.Dropout(p=dropout)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=bias)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(self.conv1(self.relu1(self.bn1(x))))
        out = self.conv2(self.relu2(self.bn2(out)))
        return out + self.shortcut(x)


class WideResNet(nn.Module):
    """WRN-depth-width; ``features`` and ``head`` are methods, so the state dict keys are Kumano's."""

    def __init__(self, depth: int, width: int, dropout: float, in_channels: int, num_classes: int, bias: bool = True):
        super().__init__()
        n = (depth - 4) // 6
        stages = [16, 16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(in_channels, stages[0], 3, padding=1, bias=bias)
        planes = stages[0]
        groups = []
        for stage, stride in zip(stages[1:], (1, 2, 2)):
            blocks = []
            for k in range(n):
                blocks.append(WideBasic(planes, stage, dropout, stride if k == 0 else 1, bias))
                planes = stage
            groups.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = groups
        self.bn1 = nn.BatchNorm2d(stages[3], momentum=0.9)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(stages[3], num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        return self.pool(self.relu(self.bn1(out))).flatten(1)

    def head(self, f: torch.Tensor) -> torch.Tensor:
        return self.linear(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_model("wrn-28-10")
def wrn_28_10(
    num_classes, input_shape, *, depth: int = 28, width: int = 10, dropout: float = 0.3, conv_bias: bool = True
) -> nn.Module:
    """WideResNet-28-10 as Kumano et al. train it on CIFAR-10 (dropout 0.3, conv biases, 36,489,290 parameters);
    ``depth`` = 6n + 4 and ``width`` (k) give other WRNs, ``conv_bias false`` the WRN paper's convolutions."""
    for name, v in (("depth", depth), ("width", width)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"wrn-28-10 needs an integer {name} >= 1, got {v!r}")
    if depth < 10 or (depth - 4) % 6:
        raise ConfigError(f"wrn-28-10 needs depth = 6n + 4 with n >= 1 (10, 16, 22, 28, 34, 40, ...), got {depth}")
    try:
        dropout = float(dropout)
    except (TypeError, ValueError):
        raise ConfigError(f"wrn-28-10 needs a dropout probability in [0, 1), got {dropout!r}") from None
    if not 0 <= dropout < 1:
        raise ConfigError(f"wrn-28-10 needs a dropout probability in [0, 1), got {dropout}")
    c, h, w = input_shape
    if min(h, w) < 4:
        raise ConfigError(f"wrn-28-10 needs inputs of at least 4x4 pixels (two stride-2 stages), got {h}x{w}")
    return WideResNet(depth, width, dropout, c, num_classes, bias=bool(conv_bias))
