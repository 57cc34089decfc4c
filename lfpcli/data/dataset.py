"""In-memory datasets in pixel space: a ``Dataset`` is named splits of ``(x, y, group, index)`` plus metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

SPLITS = ("train", "val", "test")


@dataclass
class Split:
    """One split. Shapes: ``x`` (N, C, H, W) float32 in [0, 1]; ``y``, ``group``, ``index`` (N,) int64.

    ``group`` is -1 where the data has no groups; ``index`` is each sample's position in the source split,
    so perturbed and clean samples can be matched. ``mask`` (N, H, W) bool marks each sample's foreground
    (the object a classifier should look at, e.g. a spurious-digits digit); ``None`` where the data has none.
    Saliency measures how much attribution falls inside it.
    """

    x: torch.Tensor
    y: torch.Tensor
    group: torch.Tensor
    index: torch.Tensor
    mask: torch.Tensor | None = None

    def __post_init__(self):
        n = self.x.shape[0]
        if not (self.y.shape == self.group.shape == self.index.shape == (n,)):
            raise ValueError("x, y, group and index must have the same length")
        if self.mask is not None:
            if self.x.ndim != 4 or tuple(self.mask.shape) != (n, *self.x.shape[2:]):
                raise ValueError(f"mask must have shape (N, H, W) = {(n, *self.x.shape[2:])}, got {tuple(self.mask.shape)}")
            if self.mask.dtype != torch.bool:
                self.mask = self.mask.bool()

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def batches(
        self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield ``(x, y, group, index)`` batches; ``shuffle`` draws the order from ``generator``."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else None
        for start in range(0, n, batch_size):
            if order is None:
                sl = slice(start, start + batch_size)
                yield self.x[sl], self.y[sl], self.group[sl], self.index[sl]
            else:
                idx = order[start : start + batch_size]
                yield self.x[idx], self.y[idx], self.group[idx], self.index[idx]

    def group_counts(self, num_groups: int) -> torch.Tensor:
        g = self.group[self.group >= 0]
        return torch.bincount(g, minlength=num_groups) if num_groups else torch.zeros(0, dtype=torch.long)


@dataclass
class Dataset:
    """A resolved data spec: splits plus what a model and the metrics need to know about them.

    ``spec`` is the JSON-able description recorded in artifacts (``lfpcli.data.resolve`` rebuilds the data
    from it); ``clean_spec`` names the clean data behind it (itself, except for a perturbed set).
    """

    spec: dict[str, Any]
    splits: dict[str, Split]
    num_classes: int
    class_names: list[str]
    input_shape: tuple[int, int, int]
    mean: list[float]
    std: list[float]
    group_names: list[str] | None = None
    description: str = ""
    clean_spec: dict[str, Any] | None = None
    perturb_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    train_defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def num_groups(self) -> int:
        return len(self.group_names) if self.group_names else 0

    def split(self, name: str) -> Split:
        from lfpcli.errors import InputError

        if name not in self.splits:
            raise InputError(f"data {spec_label(self.spec)} has no split '{name}' (it has {', '.join(self.splits)})")
        return self.splits[name]

    def info(self) -> dict[str, Any]:
        """JSON-able metadata recorded in every artifact made from this data."""
        return {
            "spec": self.spec,
            "clean_spec": self.clean_spec or self.spec,
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "group_names": self.group_names,
            "input_shape": list(self.input_shape),
            "mean": self.mean,
            "std": self.std,
            "sizes": {k: len(v) for k, v in self.splits.items()},
        }


def spec_label(spec: dict[str, Any]) -> str:
    """Short human name of a data spec."""
    if spec.get("type") == "file":
        return str(spec.get("path"))
    params = spec.get("params") or {}
    from lfpcli.data.builtin import BUILTINS

    entry = BUILTINS.get(spec.get("name", ""))
    defaults = entry.full_params({}) if entry is not None else {}
    extra = ",".join(f"{k}={v}" for k, v in sorted(params.items()) if defaults.get(k, object()) != v)
    return spec.get("name", "?") + (f":{extra}" if extra else "")


def channel_stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of (N, C, H, W) pixels, for the model's built-in normalisation."""
    m = x.mean(dim=(0, 2, 3))
    s = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return [round(float(v), 6) for v in m], [round(float(v), 6) for v in s]
