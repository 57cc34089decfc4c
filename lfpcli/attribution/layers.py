"""The layers of a model as Grad-CAM sees them: names, output shapes, and the default layer.

Layers are named as in ``model.net.named_modules()`` for an lfp :class:`~lfpcli.models.PixelModel` (e.g.
``features.4`` of a small-cnn, ``features.layer4`` of a ResNet), as in ``model.named_modules()`` for any other
module. A name that is not found is also tried under ``features.`` (so ``layer4`` finds ``features.layer4``).

**Default Grad-CAM layer**: the module that *finishes last* in the forward pass among those whose output is a
4-D map (N, C, H, W) with more than one spatial position, leaving out layers that only sub-sample, reshape or
pass the map on (pooling, identity, dropout, flatten). That is the output of the last convolutional block, where
Grad-CAM (Selvaraju et al. 2017) is meant to look: the last ReLU before the final pooling of a small-cnn
(``features.4`` at 28x28, 14x14 maps), ``layer4`` of a ResNet (it finishes after its own blocks).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Any, Iterator

import torch
from torch import nn

from lfpcli.errors import ConfigError

#: Layer types that only sub-sample, reshape or pass a map on: never the default Grad-CAM layer.
PASS_ON = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.LPPool1d,
    nn.LPPool2d,
    nn.FractionalMaxPool2d,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.Flatten,
    nn.Unflatten,
)


@dataclass(frozen=True)
class LayerInfo:
    """One named module: ``output_shape`` per sample (without N) of its last call on one input, ``None`` when
    it is not called; ``calls`` per forward pass; ``spatial``: a (C, H, W) map with H*W > 1 (Grad-CAM can use it);
    ``default``: the default Grad-CAM layer; ``order``: when its last call finished (0 first)."""

    name: str
    type: str
    output_shape: tuple[int, ...] | None
    calls: int
    spatial: bool
    default: bool = False
    order: int = -1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["output_shape"] = list(self.output_shape) if self.output_shape is not None else None
        return d


def root_module(model: nn.Module) -> nn.Module:
    """The module whose ``named_modules()`` names the layers: ``model.net`` of a PixelModel, else ``model``."""
    from lfpcli.models import PixelModel

    return model.net if isinstance(model, PixelModel) else model


@contextlib.contextmanager
def hooks_released(model: nn.Module) -> Iterator[nn.Module]:
    """Inside: ``model`` in eval mode with parameters that need no gradient (attribution differentiates
    inputs and activations only). On exit, even on error: every hook added inside on any submodule is removed,
    and the mode and ``requires_grad`` flags are restored."""
    kinds = (
        "_forward_hooks",
        "_forward_pre_hooks",
        "_backward_hooks",
        "_backward_pre_hooks",
        "_forward_hooks_with_kwargs",
        "_forward_pre_hooks_with_kwargs",
        "_forward_hooks_always_called",
    )
    mods = list(model.modules())
    before = [{k: set(getattr(m, k, {}) or {}) for k in kinds} for m in mods]
    training = [(m, m.training) for m in mods]
    grads = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in grads:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for m, keep in zip(mods, before):
            for k in kinds:
                d = getattr(m, k, None)
                if d:
                    for key in [key for key in d if key not in keep[k]]:
                        del d[key]
        for m, was in training:
            m.training = was
        for p, was in grads:
            p.requires_grad_(was)


def layer_table(
    model: nn.Module, input_shape: tuple[int, ...], device: torch.device | str | None = None
) -> list[LayerInfo]:
    """Every named module of ``model`` with its output shape for one input of ``input_shape`` (C, H, W), in
    ``named_modules`` order; the default Grad-CAM layer (module docstring) is marked."""
    root = root_module(model)
    named = [(n, m) for n, m in root.named_modules() if n]
    seen: dict[str, dict[str, Any]] = {n: {"calls": 0, "shape": None, "order": -1} for n, _ in named}
    counter = [0]

    def hook(name):
        def fn(module, inp, out):
            s = seen[name]
            s["calls"] += 1
            s["shape"] = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else None
            s["order"] = counter[0]
            counter[0] += 1

        return fn

    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else "cpu"
    with hooks_released(model):
        for n, m in named:
            m.register_forward_hook(hook(n))
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    rows = []
    for n, m in named:
        s = seen[n]
        shape = s["shape"]
        spatial = shape is not None and len(shape) == 3 and shape[1] * shape[2] > 1
        rows.append(LayerInfo(n, type(m).__name__, shape, s["calls"], spatial, False, s["order"]))
    candidates = [r for r, (_, m) in zip(rows, named) if r.spatial and not isinstance(m, PASS_ON)]
    if candidates:
        best = max(candidates, key=lambda r: r.order).name
        rows = [LayerInfo(r.name, r.type, r.output_shape, r.calls, r.spatial, r.name == best, r.order) for r in rows]
    return rows


def default_layer(table: list[LayerInfo]) -> LayerInfo | None:
    return next((r for r in table if r.default), None)


def resolve_layer(
    model: nn.Module,
    name: str | None,
    input_shape: tuple[int, ...],
    *,
    what: str = "the model",
    device: torch.device | str | None = None,
) -> tuple[nn.Module, LayerInfo]:
    """The module Grad-CAM attributes to: ``name`` (see the module docstring), or the default layer.

    Raises ``ConfigError`` for an unknown name, a layer without a spatial (C, H, W) output, or a model with no
    such layer at all (e.g. an mlp)."""
    table = layer_table(model, input_shape, device)
    root = root_module(model)
    if name is None:
        info = default_layer(table)
        if info is None:
            raise ConfigError(
                f"{what} has no convolutional layer with a spatial output (C, H, W) for Grad-CAM "
                f"(architecture without convolutions?); use --method gradient, input-x-gradient, "
                f"smoothgrad or integrated-gradients"
            )
    else:
        by_name = {r.name: r for r in table}
        info = by_name.get(name) or by_name.get(f"features.{name}")
        if info is None:
            spatial = [r.name for r in table if r.spatial]
            hint = f" (layers with a spatial output: {', '.join(spatial[-6:])})" if spatial else ""
            raise ConfigError(f"{what} has no layer '{name}'{hint}; 'lfp saliency --list-layers --in MODEL' lists them")
        if info.calls == 0:
            raise ConfigError(f"layer '{info.name}' of {what} is not used in the forward pass")
        if not info.spatial:
            raise ConfigError(
                f"layer '{info.name}' of {what} outputs {_shape(info.output_shape)} per sample, not a map "
                f"(C, H, W) with more than one position; Grad-CAM needs a convolutional layer"
            )
    return root.get_submodule(info.name), info


def _shape(shape) -> str:
    return "nothing" if shape is None else "(" + ", ".join(str(s) for s in shape) + ")"


__all__ = ["LayerInfo", "PASS_ON", "default_layer", "hooks_released", "layer_table", "resolve_layer", "root_module"]
