"""How a model's forward and backward run: numeric precision, memory format, compilation, batch size.

``--precision fp32|bf16|fp16`` runs the model's own layers under :func:`torch.autocast`; everything around the
model (perturbations, their gradients, optimizer state, density terms, losses) stays float32, because the model's
output is cast back to float32 before any loss sees it. fp16 training uses a gradient scaler on CUDA. On a
device without the requested type, or for fp32, the same code runs in float32.

``channels_last`` stores a convolutional model's weights and inputs NHWC, which tensor cores prefer; ``compile``
wraps the model with :func:`torch.compile`. Neither changes what is computed beyond float rounding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
CHANNELS_LAST = ("auto", "on", "off")


@dataclass(frozen=True)
class Execution:
    """Resolved execution settings for one device (what artifacts record under ``execution``)."""

    device: str
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self.precision]

    @property
    def device_type(self) -> str:
        return torch.device(self.device).type

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context the model's forward runs in (a no-op for fp32)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> Any:
        """A gradient scaler for fp16 training on CUDA (fp16 gradients underflow without one), else ``None``."""
        if self.precision == "fp16" and self.device_type == "cuda":
            return torch.amp.GradScaler("cuda")
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"precision": self.precision, "channels_last": self.channels_last, "compile": self.compile}


def has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def resolve_execution(
    device: torch.device,
    precision: str = "fp32",
    channels_last: str = "auto",
    compile: bool = False,
    model: nn.Module | None = None,
) -> Execution:
    """Check the options and resolve ``channels_last="auto"`` (on for a convolutional model on CUDA)."""
    from lfpcli.errors import ConfigError

    if precision not in PRECISIONS:
        raise ConfigError(f"unknown --precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
    if channels_last not in CHANNELS_LAST:
        raise ConfigError(f"unknown --channels-last '{channels_last}'; choose one of {', '.join(CHANNELS_LAST)}")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("--precision bf16 needs a GPU with bfloat16 support (Ampere or newer); use fp16 or fp32")
    conv = model is not None and has_conv(model)
    cl = channels_last == "on" or (channels_last == "auto" and conv and device.type == "cuda")
    return Execution(str(device), precision, bool(cl), bool(compile))


class AutocastModel(nn.Module):
    """``model`` run under the execution's autocast (and memory format), returning float32 outputs.

    What the solvers call: gradients with respect to a float32 input come back float32, so the perturbation and
    every term beside the model's loss are computed in full precision. ``inner`` is the wrapped model (its layer
    names are unchanged, for hooks)."""

    def __init__(self, model: nn.Module, execution: Execution):
        super().__init__()
        self.inner = model
        self.execution = execution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.execution.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.execution.autocast():
            out = self.inner(x)
        return out.float()


def prepare_model(model: nn.Module, execution: Execution) -> nn.Module:
    """The model as solvers and saliency should call it: converted to channels-last if asked, wrapped to run
    under autocast when the precision is not fp32, compiled if asked. The original module is changed only in its
    memory format (its state dict keys and values are the same)."""
    if execution.channels_last:
        model = model.to(memory_format=torch.channels_last)
    wrapped: nn.Module = model
    if execution.precision != "fp32" or execution.channels_last:
        wrapped = AutocastModel(model, execution)
    if execution.compile:
        wrapped = torch.compile(wrapped)
    return wrapped


def inner_model(model: nn.Module) -> nn.Module:
    """The model behind :func:`prepare_model`'s wrappers."""
    model = getattr(model, "_orig_mod", model)
    return model.inner if isinstance(model, AutocastModel) else model


def input_gradient_step(
    model: nn.Module, input_shape: tuple[int, ...], device: torch.device, parameters: bool = False
) -> Callable[[int], None]:
    """A probe for :func:`auto_batch_size`: one forward and backward of ``model`` on ``b`` random inputs, with
    respect to the inputs (solvers, saliency) or also the parameters (training)."""

    def step(b: int) -> None:
        x = torch.rand((b, *input_shape), device=device, requires_grad=True)
        try:
            if parameters:
                model(x).float().sum().backward()
            else:
                torch.autograd.grad(model(x).float().sum(), x)
        finally:
            model.zero_grad(set_to_none=True)

    return step


def auto_batch_size(
    step: Callable[[int], Any], *, start: int = 64, limit: int = 1 << 16, device: torch.device, headroom: float = 0.8
) -> int:
    """The largest batch that fits: ``step(b)`` runs one forward+backward on ``b`` samples and raises
    ``torch.OutOfMemoryError`` when it does not fit. Doubles from ``start`` until a size fails, then bisects
    between the last size that ran and the first that failed (to within 1/16). Returns ``headroom`` of the largest
    size that ran (at least 1), or ``limit`` (e.g. the number of samples) when that runs. Only meaningful on CUDA,
    where memory is the bound; callers keep their fixed default elsewhere."""

    def fits(b: int) -> bool:
        try:
            step(b)
            return True
        except torch.OutOfMemoryError:
            if device.type == "cuda":
                torch.cuda.empty_cache()
            return False

    good, bad = 0, None
    b = max(1, min(start, limit))
    while bad is None:
        if not fits(b):
            bad = b
        elif b >= limit:
            return limit
        else:
            good, b = b, min(2 * b, limit)
    if good == 0:
        from lfpcli.errors import ConfigError

        raise ConfigError(
            f"one batch of {bad} sample{'s' if bad != 1 else ''}'s forward and backward does not fit "
            f"in {device}'s memory; use a smaller model or input size, or --device cpu"
        )
    while bad - good > max(1, good // 16):
        mid = (good + bad) // 2
        if fits(mid):
            good = mid
        else:
            bad = mid
    return max(1, int(good * headroom))
