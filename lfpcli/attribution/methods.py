"""Saliency maps of a batch, one call per batch, on Captum's attribution methods.

Every method explains, for each sample, the logit of one class (its *target*: a label, the prediction, a
perturbation's target, or a fixed class; different targets within one batch). Scalar-output binary models go
through :func:`lfpcli.models.outputs.class_logits`, so targets 0/1 mean the same for both kinds of model.

The maps, at input resolution (N, H, W):

- ``gradcam``: Grad-CAM (Selvaraju et al. 2017) on one layer (``lfpcli.attribution.layers``): ReLU of the
  activations weighted by the spatial mean of their gradients (Captum ``LayerGradCam``), upsampled bilinearly
  to the input size (``LayerAttribution.interpolate``). Non-negative. The layer-resolution map is kept too.
- ``gradient``: |d logit / d x| summed over channels (Captum ``Saliency``, Simonyan et al. 2014). Non-negative.
- ``input-x-gradient``: x * d logit / d x summed over channels (Captum ``InputXGradient``). Signed.
- ``smoothgrad``: the mean over ``samples`` noisy copies x + N(0, noise^2) (pixel units) of ``gradient``'s
  |gradient| (Smilkov et al. 2017), each copy on Captum ``Saliency``. The noise of a sample is drawn from a
  generator seeded by (seed, the sample's key), so a map does not depend on the batch it was computed in
  (Captum's ``NoiseTunnel`` draws from the global generator per batch, which would tie maps to batching).
- ``integrated-gradients``: Captum ``IntegratedGradients`` from a ``black`` (zeros) or ``mean`` (the data's
  per-channel mean) baseline, ``steps`` Gauss-Legendre points, summed over channels. Signed.

Cost per batch: gradcam, gradient and input-x-gradient run one forward and one backward pass (the prediction
comes out of the same forward pass); smoothgrad ``samples`` of each plus one forward without gradient;
integrated-gradients ``steps`` plus one forward without gradient.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch
from torch import nn

from lfpcli.attribution.layers import LayerInfo, hooks_released, resolve_layer
from lfpcli.errors import ConfigError
from lfpcli.models.outputs import class_logits

METHODS = ("gradcam", "gradient", "input-x-gradient", "smoothgrad", "integrated-gradients")
BASELINES = ("black", "mean")

#: What each method's stored map is, and which part of it the attribution share counts (recorded in artifacts).
MAP_DEFINITIONS = {
    "gradcam": "Grad-CAM: ReLU(sum_k mean_ij(dS/dA^k_ij) A^k) on the layer, bilinearly upsampled to the input; "
    "non-negative; share counts all of it",
    "gradient": "sum over channels of |dS/dx|; non-negative; share counts all of it",
    "input-x-gradient": "sum over channels of x * dS/dx; signed; share counts its positive part",
    "smoothgrad": "mean over noisy copies x + N(0, noise^2) of sum over channels |dS/dx|; non-negative; share counts all of it",
    "integrated-gradients": "sum over channels of integrated gradients from the baseline; signed; share counts its positive part",
}


@dataclass(frozen=True)
class SaliencyConfig:
    """``method`` (one of ``METHODS``); ``layer``: Grad-CAM's layer name (``None``: the default layer);
    ``samples`` and ``noise`` (std in pixel units): smoothgrad; ``steps`` and ``baseline``: integrated-gradients."""

    method: str = "gradcam"
    layer: str | None = None
    samples: int = 25
    noise: float = 0.15
    steps: int = 32
    baseline: str = "black"

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"unknown saliency method '{self.method}'; choose one of {', '.join(METHODS)}")
        if self.layer is not None and self.method != "gradcam":
            raise ConfigError(f"--layer applies to --method gradcam only, not {self.method}")
        if not isinstance(self.samples, int) or self.samples < 1:
            raise ConfigError(f"--samples must be at least 1, got {self.samples}")
        if not (isinstance(self.noise, (int, float)) and math.isfinite(self.noise) and self.noise >= 0):
            raise ConfigError(f"--noise must be a finite number >= 0 (pixel units), got {self.noise}")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError(f"--steps must be at least 1, got {self.steps}")
        if self.baseline not in BASELINES:
            raise ConfigError(f"--baseline must be one of {', '.join(BASELINES)}, got '{self.baseline}'")

    def to_dict(self) -> dict[str, Any]:
        """The parameters that apply to the method (what artifacts record)."""
        d = asdict(self)
        keep = {
            "gradcam": ("layer",),
            "smoothgrad": ("samples", "noise"),
            "integrated-gradients": ("steps", "baseline"),
        }
        return {"method": self.method, **{k: d[k] for k in keep.get(self.method, ())}}


@dataclass
class Maps:
    """One batch of maps: ``maps`` (N, H, W) float32 at input resolution; ``layer_maps`` (N, h, w) for Grad-CAM
    (before upsampling), else ``None``; ``logits`` (N, K) on the clean inputs; ``pred`` (N,); ``target`` (N,):
    the class each map explains."""

    maps: torch.Tensor
    layer_maps: torch.Tensor | None
    logits: torch.Tensor
    pred: torch.Tensor
    target: torch.Tensor


class _TargetLogit(nn.Module):
    """``forward(x)`` -> the logit of each sample's target class (N,), or every class logit (N, K) when
    ``select`` is off. ``target=None`` means the class the same pass predicts; the pass's logits are kept."""

    def __init__(self, model: nn.Module, target: torch.Tensor | None, select: bool = True):
        super().__init__()
        self.model, self.target, self.select = model, target, select
        self.logits: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = class_logits(self.model(x))
        if not self.select:
            return z
        self.logits = z.detach()
        _check_target(self.target, z.shape[0], z.shape[1])
        t = self.logits.argmax(1) if self.target is None else self.target
        return z.gather(1, t.view(-1, 1)).squeeze(1)


def _check_target(target: torch.Tensor | None, n: int, k: int) -> None:
    if target is None:
        return
    if target.shape != (n,):
        raise ValueError(f"target must have shape ({n},), got {tuple(target.shape)}")
    if n and (int(target.min()) < 0 or int(target.max()) >= k):
        raise ConfigError(f"target classes must be in 0..{k - 1}")


def _sample_noise(shape: tuple[int, ...], keys: torch.Tensor, seed: int, samples: int, device) -> torch.Tensor:
    """(samples, N, *shape) standard normal noise; sample i's noise depends only on (seed, keys[i])."""
    out = torch.empty(samples, len(keys), *shape)
    g = torch.Generator()
    for i, key in enumerate(keys.tolist()):
        g.manual_seed((int(seed) * 1_000_003 + int(key)) % (2**63))
        out[:, i] = torch.randn(samples, *shape, generator=g)
    return out.to(device)


def attribute(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor | None,
    config: SaliencyConfig,
    *,
    layer: nn.Module | None = None,
    keys: torch.Tensor | None = None,
    seed: int = 0,
) -> Maps:
    """Maps of ``x`` (N, C, H, W, pixel space) under ``config.method``; ``target`` (N,) classes to explain, or
    ``None`` for each sample's predicted class. ``layer``: the Grad-CAM module (see ``resolve_layer``).
    ``keys`` (N,) identify samples for smoothgrad's noise (default: their position in ``x``).

    The model is left as found: mode, ``requires_grad`` flags and hooks (:func:`hooks_released`)."""
    from captum.attr import InputXGradient, IntegratedGradients, LayerAttribution, LayerGradCam, Saliency

    n, _, h, w = x.shape
    with hooks_released(model):
        x = x.detach().clone()
        m = config.method
        if m in ("gradcam", "gradient", "input-x-gradient"):
            fn = _TargetLogit(model, target)
            if m == "gradcam":
                if layer is None:
                    raise ValueError("gradcam needs the layer module (lfpcli.attribution.resolve_layer)")
                cam = LayerGradCam(fn, layer).attribute(x, target=None, relu_attributions=True)
                if cam.ndim != 4:
                    raise ConfigError(f"the Grad-CAM layer's output has shape {tuple(cam.shape)}, not (N, C, H, W)")
                layer_maps = cam[:, 0].detach()
                maps = LayerAttribution.interpolate(cam, (h, w), interpolate_mode="bilinear")[:, 0]
            elif m == "gradient":
                layer_maps, maps = None, Saliency(fn).attribute(x.requires_grad_(), target=None, abs=True).sum(1)
            else:
                layer_maps, maps = None, InputXGradient(fn).attribute(x.requires_grad_(), target=None).sum(1)
            logits = fn.logits
            assert logits is not None
        else:
            with torch.no_grad():
                logits = class_logits(model(x))
            _check_target(target, n, logits.shape[1])
            t = logits.argmax(1) if target is None else target
            full = _TargetLogit(model, None, select=False)
            layer_maps = None
            if m == "smoothgrad":
                keys = torch.arange(n) if keys is None else keys
                noise = _sample_noise(tuple(x.shape[1:]), keys.cpu(), seed, config.samples, x.device)
                sal = Saliency(full)
                acc = torch.zeros_like(x)
                for s in range(config.samples):
                    acc += sal.attribute((x + config.noise * noise[s]).requires_grad_(), target=t, abs=True)
                maps = (acc / config.samples).sum(1)
            else:
                if config.baseline == "mean" and hasattr(model, "mean"):
                    base = model.mean.to(x).expand_as(x).contiguous()
                else:
                    base = torch.zeros_like(x)
                ig = IntegratedGradients(full)
                maps = ig.attribute(
                    x.requires_grad_(),
                    baselines=base,
                    target=t,
                    n_steps=config.steps,
                    method="gausslegendre",
                    internal_batch_size=max(n, 1),
                ).sum(1)
        pred = logits.argmax(1)
        tgt = pred if target is None else target
        return Maps(
            maps.detach().float(),
            None if layer_maps is None else layer_maps.float(),
            logits.detach(),
            pred.detach(),
            tgt.detach(),
        )


def batched_maps(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor | None,
    config: SaliencyConfig,
    *,
    input_shape: Sequence[int] | None = None,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> tuple[Maps, LayerInfo | None]:
    """Maps for every sample of ``x`` (on the CPU), ``batch_size`` at a time on ``device``; for Grad-CAM, also
    the resolved layer. A convenience over :func:`attribute` for Python users and tests."""
    layer, info = (None, None)
    if config.method == "gradcam":
        layer, info = resolve_layer(model, config.layer, tuple(input_shape or x.shape[1:]), device=device)
    parts: list[Maps] = []
    for s in range(0, len(x), batch_size):
        sl = slice(s, s + batch_size)
        t = None if target is None else target[sl].to(device)
        parts.append(
            attribute(model, x[sl].to(device), t, config, layer=layer, keys=torch.arange(len(x))[sl], seed=seed)
        )

    def cat(k: str) -> torch.Tensor | None:
        return torch.cat([getattr(p, k).cpu() for p in parts]) if parts and getattr(parts[0], k) is not None else None

    return Maps(cat("maps"), cat("layer_maps"), cat("logits"), cat("pred"), cat("target")), info


__all__ = ["BASELINES", "MAP_DEFINITIONS", "METHODS", "Maps", "SaliencyConfig", "attribute", "batched_maps"]
