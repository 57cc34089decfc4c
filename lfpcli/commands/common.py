"""Helpers every command shares: devices, seeds, loading parents, warnings and the model record."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lfpcli.artifacts import load_checkpoint, parent_entry, parent_warnings, sha256_file
from lfpcli.artifacts.dataspec import resolve
from lfpcli.artifacts.foreign_model import FOREIGN_FORMATS, sniff_model_file
from lfpcli.artifacts.provenance import locate_parent
from lfpcli.commands.foreign import load_foreign_model
from lfpcli.data import Dataset
from lfpcli.errors import ArtifactError, ConfigError, InputError
from lfpcli.metrics import predict, split_metrics
from lfpcli.models import PixelModel, model_from_meta
from lfpcli.progress import Progress, no_progress


class LfpWarning(UserWarning):
    """A problem worth telling the user that does not stop the command (the CLI prints one line)."""


def warn(message: str) -> None:
    warnings.warn(message, LfpWarning, stacklevel=2)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is an input error."""
    d = str(device)
    if d == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(d)
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown device '{d}'; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"--device {d} was asked for, but this machine has no usable CUDA GPU (devices here: cpu); "
                f"use --device cpu or auto"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            there = ", ".join(["cpu"] + [f"cuda:{i}" for i in range(count)])
            raise ConfigError(
                f"--device {d} was asked for, but this machine has {count} CUDA device"
                f"{'s' if count != 1 else ''} (devices here: {there})"
            )
    elif dev.type != "cpu":
        raise ConfigError(f"unsupported device '{d}'; use auto, cpu, cuda or cuda:N")
    return dev


def check_positive_int(name: str, value: int, minimum: int = 1) -> None:
    if value is None or value < minimum:
        raise ConfigError(f"--{name} must be at least {minimum}, got {value}")


def check_seed(seed: int) -> None:
    if seed is None or seed < 0 or seed >= 2**63:
        raise ConfigError(f"--seed must be a non-negative integer, got {seed}")


@dataclass(frozen=True)
class ForeignOptions:
    """How to read a model file lfp did not write (``lfpcli.commands.foreign``): the data it runs on (``--data``,
    required: the file records none), the normalisation it expects (``--normalize``, required) and, for a state
    dict, its registered architecture (``--arch``, ``--arch-arg``)."""

    data: str | None = None
    normalize: str | None = None
    arch: str | None = None
    arch_args: dict[str, Any] | None = None

    def flags(self) -> list[str]:
        """The foreign-model flags given (``--data`` is not one: it has a meaning for lfp checkpoints too)."""
        return [
            f for f, v in (("--normalize", self.normalize), ("--arch", self.arch), ("--arch-arg", self.arch_args)) if v
        ]


def load_model(
    path: str | Path, device: torch.device, foreign: ForeignOptions | None = None
) -> tuple[PixelModel, dict[str, Any]]:
    """Load a checkpoint into a ready model (eval mode, on ``device``); warn if its parents changed.

    A model file lfp did not write (TorchScript, a torch.export program, a state dict) is read as ``foreign``
    says (:func:`lfpcli.commands.foreign.load_foreign_model`); its ``meta`` has the shape of a checkpoint's
    (``model``, ``data``, ``params``, ...) plus ``foreign``: how it was read. The foreign-model flags given with
    an lfp checkpoint are an error (it records its own architecture and normalisation)."""
    opts = foreign or ForeignOptions()
    found = sniff_model_file(path)
    if found.kind in FOREIGN_FORMATS:
        return load_foreign_model(path, device, found, opts)
    if opts.flags():
        if found.kind == "checkpoint":
            raise ConfigError(
                f"{path} is an lfp checkpoint, which records its own architecture and normalisation: leave out "
                f"{', '.join(opts.flags())} (they describe a model file lfp did not write: TorchScript, a "
                f"torch.export program or a state dict)"
            )
        if found.kind == "other":
            raise ArtifactError(
                f"{path} is {found.what}: not a model lfp can read (an lfp checkpoint, TorchScript, a "
                f"torch.export program (.pt2) or a state dict)"
            )
    sd, meta = load_checkpoint(path)
    for msg in parent_warnings(meta, path):
        warn(msg)
    try:
        model = model_from_meta(meta)
    except (KeyError, TypeError, ValueError):
        raise ArtifactError(f"{path}: checkpoint metadata does not describe a model") from None
    except InputError as e:  # e.g. an architecture this lfp does not know, or an option it does not take
        raise ArtifactError(f"{path}: checkpoint metadata names a model this lfp cannot build: {e}") from None
    try:
        model.load_state_dict(sd)
    except RuntimeError:
        raise ArtifactError(f"{path}: its weights do not fit the architecture its metadata names") from None
    for name, t in sd.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ArtifactError(f"{path}: weight '{name}' contains NaN or infinite values")
    return model.to(device).eval(), meta


def foreign_options_for(
    paths: list[str | Path],
    data: str | None,
    normalize: str | None = None,
    arch: str | None = None,
    arch_args: dict[str, Any] | None = None,
) -> list[ForeignOptions]:
    """Per model of several (``eval``, ``saliency``): the foreign-model flags go to each file that is not an lfp
    checkpoint; given when every file is one, they are an error."""
    full = ForeignOptions(data, normalize, arch, arch_args or None)
    if not full.flags():
        return [full for _ in paths]
    kinds = [sniff_model_file(p).kind for p in paths]
    if all(k == "checkpoint" for k in kinds):
        raise ConfigError(
            f"{', '.join(full.flags())} describe{'s' if len(full.flags()) == 1 else ''} a model file lfp did not "
            f"write (TorchScript, a torch.export program or a state dict), but every --in is an lfp checkpoint, "
            f"which records its own architecture and normalisation"
        )
    return [ForeignOptions(data) if k == "checkpoint" else full for k in kinds]


def model_parent(path: str | Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The parent entry of the model an artifact was made with: an lfp checkpoint, or a foreign model file (kind
    ``foreign-model``, with its format and how lfp read it)."""
    f = meta.get("foreign")
    if not f:
        return parent_entry("model", path, "checkpoint")
    return {**parent_entry("model", path, "foreign-model"), "format": f["format"], "loaded_with": f["loaded_with"]}


def data_parent(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Parent entries for a file-backed data spec (built-ins have no file to hash)."""
    if spec.get("type") != "file":
        return []
    return [parent_entry("data", spec["path"], spec.get("kind"))]


def resolve_recorded_data(
    spec: dict[str, Any],
    artifact: str | Path,
    progress: Progress = no_progress,
    *,
    splits: tuple[str, ...] | None = None,
) -> Dataset:
    """Resolve a data spec recorded in an artifact, finding a recorded file from another working folder too,
    and warning when the file's content changed since. ``splits``: the ones the caller uses (see
    :func:`lfpcli.artifacts.dataspec.resolve`)."""
    if spec.get("type") == "file":
        found = locate_parent(spec, artifact)
        if found is None:
            raise InputError(
                f"{artifact} was made from data file {spec.get('path')}, which is no longer there; give --data"
            )
        if spec.get("sha256") and sha256_file(found) != spec["sha256"]:
            warn(f"data file {found} changed since {artifact} was made from it (sha256 differs)")
        spec = {**spec, "path": str(found)}
    return resolve(spec, progress=progress, splits=splits)


def check_compatible(meta: dict[str, Any], ds: Dataset, what: str) -> None:
    """The model's input shape and class count must match the data's."""
    m = meta["model"]
    if tuple(m["input_shape"]) != tuple(ds.input_shape):
        raise InputError(
            f"{what}: the model takes inputs of shape {tuple(m['input_shape'])}, the data has {tuple(ds.input_shape)}"
        )
    if int(m["num_classes"]) != ds.num_classes:
        raise InputError(f"{what}: the model has {m['num_classes']} classes, the data has {ds.num_classes}")


def clean_metrics(
    model: torch.nn.Module,
    ds: Dataset,
    device: torch.device,
    splits=("train", "val", "test"),
    batch_size: int = 256,
    progress: Progress = no_progress,
) -> dict[str, Any]:
    """Clean accuracy figures (see :mod:`lfpcli.metrics`) on each split of ``ds`` that exists."""
    train_counts = ds.splits["train"].group_counts(ds.num_groups) if ds.group_names and "train" in ds.splits else None
    out = {}
    for name in splits:
        if name in ds.splits:
            s = ds.splits[name]
            pred = predict(model, s, device, batch_size, progress, f"scoring the clean '{name}' split")
            out[name] = split_metrics(pred, s.y, s.group, ds.group_names, train_counts)
    return out


def model_meta(model_info: dict[str, Any]) -> dict[str, Any]:
    return {"output": "logits", **model_info, "pixel_range": [0.0, 1.0], "normalization": "inside the model"}


def summarize(values: torch.Tensor) -> dict[str, float | None]:
    v = values.float()
    v = v[torch.isfinite(v)]
    if v.numel() == 0:
        return {"mean": None, "median": None, "min": None, "max": None}
    return {"mean": float(v.mean()), "median": float(v.median()), "min": float(v.min()), "max": float(v.max())}


def fmt(x: float | None, digits: int = 3) -> str:
    """A figure for a table: fixed decimals, ``-`` when absent, never ``-0.000``."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text
