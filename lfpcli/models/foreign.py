"""A user's own trained model in lfp's pixel space: normalisation stated by the user, applied inside the model.

lfp works on pixels in [0, 1] (perturbation budgets, the box, densities). A model trained on normalised inputs
gets ``--normalize MEAN,STD``: :class:`ForeignModel` (a TorchScript module or an exported program) and
:class:`~lfpcli.models.PixelModel` (a state dict in a registered architecture) compute ``(x - mean) / std`` before
the user's network, so gradients, budgets and boxes stay in pixel units. ``--normalize none``: the model takes
pixels in [0, 1] as they are.

A TorchScript or exported model has no ``features``/``head`` split unless its TorchScript module has callable
``features`` and ``head`` submodules with ``head(features(x)) == forward(x)``: feature-space densities and
Grad-CAM need them, everything else (every perturbation method with a pixel-space or no density, eval, gradient
saliency maps) needs only the forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from lfpcli.errors import ArtifactError, ConfigError, InputError
from lfpcli.models.pixel import PixelModel
from lfpcli.models.registry import arch_defaults, build_model

#: Named normalisations for ``--normalize``.
NAMED_NORMALIZATIONS = {
    "imagenet": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
}
NORMALIZE_HELP = (
    "none (pixels in [0, 1] as they are), MEAN,STD (one value each for every channel, e.g. 0.5,0.5), "
    "M1,...,MC,S1,...,SC (per channel), imagenet, or data (the data's own channel statistics)"
)


def parse_normalize(
    text: str, channels: int, data_mean: Sequence[float], data_std: Sequence[float]
) -> tuple[list[float], list[float], str]:
    """``(mean, std, how)`` for ``--normalize``; ``how`` says it in words for the record."""
    t = str(text).strip().lower()
    if t == "none":
        return [0.0] * channels, [1.0] * channels, "none: the model takes pixels in [0, 1]"
    if t == "data":
        return [float(v) for v in data_mean], [float(v) for v in data_std], "the data's channel statistics"
    if t in NAMED_NORMALIZATIONS:
        mean, std = NAMED_NORMALIZATIONS[t]
        if channels != len(mean):
            raise ConfigError(f"--normalize {t} is for {len(mean)}-channel images; this data has {channels} channel(s)")
        return list(mean), list(std), t
    try:
        values = [float(v) for v in t.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise ConfigError(f"--normalize must be {NORMALIZE_HELP}; got '{text}'") from None
    if len(values) == 2:
        mean, std = [values[0]] * channels, [values[1]] * channels
    elif len(values) == 2 * channels:
        mean, std = values[:channels], values[channels:]
    else:
        per = f" or {2 * channels} (one mean and one std per channel, means first)" if channels > 1 else ""
        raise ConfigError(
            f"--normalize takes 2 numbers (mean,std){per} for this {channels}-channel data, or none, "
            f"imagenet, data; got {len(values)} in '{text}'"
        )
    if not all(math.isfinite(v) for v in values) or min(std) <= 0:
        raise ConfigError(f"--normalize needs finite means and positive standard deviations; got '{text}'")
    return mean, std, f"mean {mean}, std {std}"


class ForeignModel(PixelModel):
    """``forward(x) = module((x - mean) / std)`` for a TorchScript module or an exported program's module.

    ``features``/``head`` exist when ``split`` (see the module docstring). ``fixed_batch``: an exported program
    traced for one batch size runs on chunks of that size (the last chunk padded, then cut). An exported program
    keeps the train/eval mode it was exported in, so :meth:`train` leaves it alone.
    """

    def __init__(
        self,
        module: nn.Module,
        mean: list[float],
        std: list[float],
        *,
        fmt: str,
        path: str,
        split: bool = False,
        fixed_batch: int | None = None,
    ):
        super().__init__(module, mean, std)
        self.fmt, self.path, self.split, self.fixed_batch = fmt, path, split, fixed_batch

    def train(self, mode: bool = True) -> ForeignModel:
        self.training = mode
        if self.fmt != "torch-export":
            self.net.train(mode)
        return self

    def _run(self, fn: Any, z: torch.Tensor) -> torch.Tensor:
        b = self.fixed_batch
        if b is None or z.shape[0] == b:
            return fn(z)
        outs = []
        for s in range(0, z.shape[0], b):
            chunk = z[s : s + b]
            n = chunk.shape[0]
            if n < b:
                chunk = torch.cat([chunk, chunk[-1:].expand(b - n, *chunk.shape[1:])])
            outs.append(fn(chunk)[:n])
        return torch.cat(outs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(self.net, self.normalize(x))

    def _no_split(self) -> InputError:
        return InputError(
            f"{self.path} is a foreign {'TorchScript model' if self.fmt == 'torchscript' else 'torch.export program'} "
            f"without features/head parts, so feature-space densities (feature-kde, feature-gmm, feature-knn) "
            f"and the model's features are not available: use a pixel-space density (--density kde, gmm, knn, "
            f"vae or none), or give the model as a state dict with --arch"
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if not self.split:
            raise self._no_split()
        return self.net.features(self.normalize(x))

    def head(self, features: torch.Tensor) -> torch.Tensor:
        if not self.split:
            raise self._no_split()
        return self.net.head(features)


# ------------------------------------------------------------------------------------------ state dicts into --arch

_PREFIXES = ("module.", "model.", "net.", "_orig_mod.")


def _torchvision_resnet(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """A torchvision ResNet's keys (``conv1.weight`` ... ``fc.bias``) as lfp's ``resnet18``/``resnet50`` name them
    (``features.conv1.weight`` ... ``head.bias``)."""
    if "fc.weight" not in sd:
        return None
    return {("head." + k[3:] if k.startswith("fc.") else "features." + k): v for k, v in sd.items()}


#: Per-architecture renamings of a state dict saved from the architecture's usual source.
KEY_MAPS = {"resnet18": _torchvision_resnet, "resnet50": _torchvision_resnet}


def _variants(sd: dict[str, torch.Tensor], arch: str) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """Readings of a state dict's names: as saved; without a wrapper's prefix (DataParallel's ``module.``, ``model.``,
    lfp's ``net.``; lfp's own ``mean``/``std`` buffers dropped); renamed from the architecture's usual source."""
    out = [("as saved", sd)]
    cur, stripped = sd, []
    for _ in range(3):
        for pre in _PREFIXES:
            if cur and all(k.startswith(pre) or k in ("mean", "std") for k in cur):
                cur = {k[len(pre) :]: v for k, v in cur.items() if k.startswith(pre)}
                stripped.append(pre)
                out.append((f"without the prefix {''.join(stripped)}", cur))
                break
        else:
            break
    mapper = KEY_MAPS.get(arch)
    for how, cand in list(out):
        mapped = mapper(cand) if mapper else None
        if mapped is not None:
            out.append((f"{how}, renamed from torchvision's {arch}", mapped))
    return out


def _problems(cand: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> tuple[list[str], list[str], list[str]]:
    nbt = "num_batches_tracked"
    missing = sorted(k for k in want if k not in cand and not k.endswith(nbt))
    unexpected = sorted(k for k in cand if k not in want and not k.endswith(nbt))
    shapes = sorted(
        f"{k}: file {list(cand[k].shape)}, arch {list(want[k].shape)}"
        for k in want
        if k in cand and tuple(cand[k].shape) != tuple(want[k].shape)
    )
    return missing, unexpected, shapes


def _listed(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (", ..." if len(items) > n else "")


def state_dict_model(
    sd: dict[str, torch.Tensor],
    *,
    path: str,
    arch: str,
    arch_args: dict[str, Any],
    num_classes: int,
    input_shape: tuple[int, int, int],
    mean: list[float],
    std: list[float],
) -> tuple[PixelModel, dict[str, Any]]:
    """Build ``arch`` and load ``sd`` into its network. The output is ``num_classes`` logits, or for a two-class task
    one scalar logit when that is what the weights have. Returns the model and how the names were read."""
    for k, v in sd.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise ArtifactError(f"{path}: weight '{k}' contains NaN or infinite values")
    outputs = ["logits", "scalar"] if num_classes == 2 else ["logits"]
    best = None
    for output in outputs:
        model = build_model(arch, num_classes, input_shape, mean, std, output=output, **arch_args)
        want = model.net.state_dict()
        for how, cand in _variants(sd, arch):
            missing, unexpected, shapes = _problems(cand, want)
            score = len(missing) + len(unexpected) + len(shapes)
            if score == 0:
                try:
                    model.net.load_state_dict({k: v for k, v in cand.items() if k in want}, strict=False)
                except RuntimeError as e:  # pragma: no cover - keys and shapes were checked
                    raise ArtifactError(f"{path} does not fit --arch {arch}: {str(e).splitlines()[0][:200]}") from None
                return model, {"keys": how, "output": output}
            if best is None or score < best[0]:
                best = (score, missing, unexpected, shapes, output)
    assert best is not None
    _, missing, unexpected, shapes, output = best
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing ({_listed(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({_listed(unexpected)})")
    if shapes:
        parts.append(f"{len(shapes)} of another shape ({_listed(shapes, 2)})")
    given = ", ".join(f"{k}={v}" for k, v in arch_args.items())
    raise ArtifactError(
        f"{path} does not fit --arch {arch}{f' ({given})' if given else ''} with {num_classes} classes on "
        f"{'x'.join(map(str, input_shape))} inputs: its weights have {'; '.join(parts)}"
    )


def recorded_arch_args(arch: str, arch_args: dict[str, Any]) -> dict[str, Any]:
    """The architecture options as a checkpoint records them (every default, no weights file)."""
    return {**arch_defaults(arch), **arch_args, "weights": None}


__all__ = [
    "KEY_MAPS",
    "NAMED_NORMALIZATIONS",
    "NORMALIZE_HELP",
    "ForeignModel",
    "parse_normalize",
    "recorded_arch_args",
    "state_dict_model",
]
