"""The one-hidden-layer network of Kumano et al. (ICLR 2024) for the synthetic experiments (``lfp synth``).

``z(x) = sum_j a_j * leaky_relu(<w_j, x>)`` for a flattened input ``x`` of ``d`` values: ``h`` hidden units, a
trainable first layer ``W`` (h, d) without bias, and a *fixed* second layer ``a`` with ``a_j = +1/sqrt(h)`` on the
first ``h // 2`` units and ``-1/sqrt(h)`` on the others (a buffer: never trained, saved with the weights). One
scalar output: a binary model in lfp's scalar convention (class 1 when ``z > 0``; see
:mod:`lfpcli.models.outputs`). As in Kumano et al.'s public code: leaky-ReLU slope 0.01 (``F.leaky_relu``'s
default) and the first layer initialised as ``nn.Linear`` does, ``U(-1/sqrt(d), 1/sqrt(d))``.

Registered as architecture ``one-hidden``: ``lfp train --arch one-hidden --output scalar`` builds it, and the
solvers, ``eval`` and ``lfp synth`` use it like any other model (``features(x)`` is the hidden layer after the
activation, ``head`` the fixed sum). :func:`one_hidden_forward` is the same map for ``G`` networks side by side
(a ``(G, h, d)`` weight tensor), used by :mod:`lfpcli.synth.train`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lfpcli.errors import ConfigError
from lfpcli.models.registry import register_model

__all__ = ["FixedSignHead", "OneHiddenNet", "init_first_layer", "one_hidden", "one_hidden_forward", "output_signs"]


def output_signs(
    hidden: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> torch.Tensor:
    """The fixed second layer ``a`` (h,): ``+1/sqrt(h)`` on the first ``h // 2`` units, ``-1/sqrt(h)`` on the rest."""
    a = torch.full((hidden,), -1.0 / math.sqrt(hidden), dtype=dtype, device=device)
    a[: hidden // 2] = 1.0 / math.sqrt(hidden)
    return a


def init_first_layer(shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
    """First-layer weights of shape ``(..., h, d)`` drawn from ``U(-1/sqrt(d), 1/sqrt(d))`` (``nn.Linear``'s
    default, which Kumano et al.'s code uses), on the CPU from ``generator`` so every device gets the same draw."""
    d = shape[-1]
    bound = 1.0 / math.sqrt(d)
    return (torch.rand(shape, generator=generator, dtype=torch.float32) * 2 - 1) * bound


def one_hidden_forward(w: torch.Tensor, x: torch.Tensor, a: torch.Tensor, slope: float = 0.01) -> torch.Tensor:
    """Outputs ``z`` of ``G`` networks at once: ``w`` (G, h, d), ``x`` (G, N, d), ``a`` (h,) -> (G, N).

    The same arithmetic as :class:`OneHiddenNet` (one batched matmul, the activation, one matrix-vector product).
    """
    return F.leaky_relu(torch.bmm(x, w.transpose(1, 2)), slope) @ a


class FixedSignHead(nn.Module):
    """``z = features @ a`` with the fixed ``a`` of :func:`output_signs` as a buffer; output (N, 1)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.register_buffer("weight", output_signs(hidden))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return (f @ self.weight).unsqueeze(1)


class OneHiddenNet(nn.Module):
    """``features``: flatten, ``Linear(d, h, bias=False)``, leaky ReLU; ``head``: :class:`FixedSignHead`."""

    def __init__(self, dim: int, hidden: int, slope: float):
        super().__init__()
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(dim, hidden, bias=False), nn.LeakyReLU(slope))
        self.head = FixedSignHead(hidden)

    @property
    def first_layer(self) -> nn.Linear:
        return self.features[1]


@register_model("one-hidden")
def one_hidden(num_classes, input_shape, *, hidden: int = 1000, slope: float = 0.01) -> nn.Module:
    """Kumano et al.'s one-hidden-layer network: trainable first layer (no bias), leaky ReLU, fixed +-1/sqrt(h)
    second layer, one scalar output; needs ``--output scalar`` (a two-class task)."""
    if num_classes != 1:
        raise ConfigError(
            "architecture 'one-hidden' has a single scalar output: use it with --output scalar on a two-class task"
        )
    if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden < 2:
        raise ConfigError(
            f"one-hidden needs hidden >= 2 units (half of them +1/sqrt(h), half -1/sqrt(h)), got {hidden}"
        )
    if not (isinstance(slope, (int, float)) and math.isfinite(slope) and 0 <= slope < 1):
        raise ConfigError(f"one-hidden needs a leaky-ReLU slope in [0, 1), got {slope}")
    return OneHiddenNet(math.prod(input_shape), hidden, float(slope))
