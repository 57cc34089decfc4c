"""Architecture registry: name -> builder ``(num_classes, input_shape, **arch_args) -> nn.Module``.

A builder returns a module with ``features(x) -> (N, F)`` and ``head(f) -> (N, K)`` (``K = 1`` for a scalar-output
binary model).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from torch import nn

from lfpcli.errors import ConfigError
from lfpcli.models.outputs import OUTPUTS
from lfpcli.models.pixel import PixelModel

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return deco


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def arch_defaults(arch: str) -> dict[str, Any]:
    """The builder's keyword arguments and their defaults (recorded in checkpoints)."""
    sig = inspect.signature(_builder(arch))
    return {k: p.default for k, p in sig.parameters.items() if p.kind == p.KEYWORD_ONLY}


def _builder(arch: str) -> Callable[..., nn.Module]:
    if arch not in _REGISTRY:
        raise ConfigError(f"unknown architecture '{arch}'; choose one of: {', '.join(list_models())}")
    return _REGISTRY[arch]


def build_model(
    arch: str,
    num_classes: int,
    input_shape: tuple[int, int, int],
    mean: list[float],
    std: list[float],
    output: str = "logits",
    **arch_args: Any,
) -> PixelModel:
    """``output="logits"``: a head of ``num_classes`` logits; ``"scalar"``: one logit for a two-class task (labels
    read as -1/+1, class 1 when it is positive; see ``lfpcli.models.outputs``)."""
    builder = _builder(arch)
    if output not in OUTPUTS:
        raise ConfigError(f"--output must be one of {', '.join(OUTPUTS)}, got '{output}'")
    if output == "scalar" and num_classes != 2:
        raise ConfigError(f"--output scalar needs a two-class task; this data has {num_classes} classes")
    allowed = arch_defaults(arch)
    unknown = set(arch_args) - set(allowed)
    if unknown:
        raise ConfigError(f"architecture '{arch}' has no option {', '.join(sorted(unknown))} (it takes: {', '.join(allowed) or 'none'})")
    if len(mean) != input_shape[0] or len(std) != input_shape[0]:
        raise ConfigError(f"normalisation has {len(mean)} channels but inputs have {input_shape[0]}")
    net = builder(1 if output == "scalar" else num_classes, tuple(input_shape), **arch_args)
    return PixelModel(net, mean, std)


def model_from_meta(meta: dict[str, Any]) -> PixelModel:
    """Rebuild the (untrained) model a checkpoint's metadata describes; load the state dict afterwards."""
    m = meta["model"]
    args = {k: v for k, v in m.get("arch_args", {}).items() if k != "weights"}
    return build_model(m["arch"], m["num_classes"], tuple(m["input_shape"]), m["mean"], m["std"],
                       output=m.get("output", "logits"), **args)
