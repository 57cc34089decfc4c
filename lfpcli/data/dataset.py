"""Datasets in pixel space: a ``Dataset`` is named splits of ``(x, y, group, index)`` plus metadata; a split's
inputs are a tensor in memory or read on demand (:mod:`lfpcli.data.lazy`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from lfpcli.errors import InputError

SPLITS = ("train", "val", "test")


@dataclass
class Split:
    """One split. Shapes: ``x`` (N, C, H, W) float32 in [0, 1]; ``y``, ``group``, ``index`` (N,) int64.

    ``group`` is -1 where the data has no groups; ``index`` is each sample's position in the source split,
    so perturbed and clean samples can be matched. ``mask`` (N, H, W) bool marks each sample's foreground
    (the object a classifier should look at, e.g. a spurious-digits digit); ``None`` where the data has none.
    Saliency measures how much attribution falls inside it.

    ``x`` (and ``mask``) is either a tensor in memory (built-in data) or a :class:`lfpcli.data.lazy.Rows` that
    reads samples on demand (an HDF5 cache, image files, a perturbed set): indexing either (``x[a:b]``,
    ``x[indices]``) gives the same tensors, and :meth:`batches`, :meth:`take` and :meth:`subset` work on both,
    so a split need not fit in memory. Labels, groups and indices (small integer arrays) are always in memory.
    """

    x: Any
    y: torch.Tensor
    group: torch.Tensor
    index: torch.Tensor
    mask: Any = None

    def __post_init__(self):
        n = self.x.shape[0]
        if not (self.y.shape == self.group.shape == self.index.shape == (n,)):
            raise ValueError("x, y, group and index must have the same length")
        if self.mask is not None:
            if len(self.x.shape) != 4 or tuple(self.mask.shape) != (n, *self.x.shape[2:]):
                raise ValueError(
                    f"mask must have shape (N, H, W) = {(n, *self.x.shape[2:])}, got {tuple(self.mask.shape)}"
                )
            if isinstance(self.mask, torch.Tensor) and self.mask.dtype != torch.bool:
                self.mask = self.mask.bool()

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def in_memory(self) -> bool:
        """Whether the inputs are a tensor in memory (else they are read on demand)."""
        return isinstance(self.x, torch.Tensor)

    def take(self, idx: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """The inputs of rows ``idx`` (in that order) as one float32 tensor."""
        if self.in_memory:
            return self.x[torch.as_tensor(idx, dtype=torch.long)]
        return self.x.read(idx)

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """The inputs of rows ``start:stop``."""
        return self.x[start:stop]

    def take_mask(self, idx: torch.Tensor | Sequence[int]) -> torch.Tensor | None:
        if self.mask is None:
            return None
        if isinstance(self.mask, torch.Tensor):
            return self.mask[torch.as_tensor(idx, dtype=torch.long)]
        return self.mask.read(idx)

    def subset(self, idx: torch.Tensor | Sequence[int]) -> Split:
        """Rows ``idx`` as a split of their own; lazily read inputs stay lazy (nothing is read here)."""
        i = torch.as_tensor(idx, dtype=torch.long)
        x = self.x[i] if self.in_memory else self.x.subset(i)
        mask = (
            None
            if self.mask is None
            else (self.mask[i] if isinstance(self.mask, torch.Tensor) else self.mask.subset(i))
        )
        return Split(x, self.y[i], self.group[i], self.index[i], mask)

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        workers: int | None = None,
        order: torch.Tensor | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield ``(x, y, group, index)`` batches; ``shuffle`` draws the order from ``generator``; ``order`` (M,)
        gives it instead (row numbers, repeats allowed: a resampled epoch).

        Lazily read inputs are read batch by batch (by ``workers`` DataLoader processes where the source
        decodes images; default: the source's setting), in the same order as an in-memory split would give."""
        if order is None:
            order = torch.randperm(len(self), generator=generator) if shuffle else None
        n = len(self) if order is None else len(order)
        if not self.in_memory:
            from lfpcli.data.lazy import batch_positions, iter_batches

            pos = batch_positions(n, batch_size, order)
            for idx, x in zip(pos, iter_batches(self.x, pos, workers)):
                i = torch.from_numpy(idx)
                yield x, self.y[i], self.group[i], self.index[i]
            return
        for start in range(0, n, batch_size):
            if order is None:
                sl = slice(start, start + batch_size)
                yield self.x[sl], self.y[sl], self.group[sl], self.index[sl]
            else:
                idx = order[start : start + batch_size]
                yield self.x[idx], self.y[idx], self.group[idx], self.index[idx]

    def read_ahead(self, batch_numbers: Sequence[int], batch_size: int, n: int | None = None) -> Iterator[torch.Tensor]:
        """The inputs of batches ``batch_numbers`` (batch b: rows ``b*batch_size`` to ``min((b+1)*batch_size, n)``),
        in that order; rows read on demand are read ahead by the source's workers."""
        n = len(self) if n is None else n
        bounds = [(b * batch_size, min((b + 1) * batch_size, n)) for b in batch_numbers]
        if self.in_memory:
            return (self.x[a:z] for a, z in bounds)
        import numpy as np

        from lfpcli.data.lazy import iter_batches

        return iter_batches(self.x, [np.arange(a, z, dtype=np.int64) for a, z in bounds])

    def mask_batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """The foreground masks in order, batch by batch (``mask`` must be set)."""
        n = len(self)
        if isinstance(self.mask, torch.Tensor):
            for start in range(0, n, batch_size):
                yield self.mask[start : start + batch_size]
            return
        from lfpcli.data.lazy import batch_positions, iter_batches

        yield from iter_batches(self.mask, batch_positions(n, batch_size))

    def group_counts(self, num_groups: int) -> torch.Tensor:
        g = self.group[self.group >= 0]
        return torch.bincount(g, minlength=num_groups) if num_groups else torch.zeros(0, dtype=torch.long)


@dataclass
class Dataset:
    """A resolved data spec: splits plus what a model and the metrics need to know about them.

    ``spec`` is the JSON-able description recorded in artifacts (``lfpcli.artifacts.dataspec.resolve`` rebuilds the data
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
    #: Facts about the source recorded with the data (real datasets: the layout read, the label order, the
    #: preprocessing, the sizes of the full public release); JSON-able.
    details: dict[str, Any] = field(default_factory=dict)
    #: A perturbed set used as data: the clean dataset behind it, resolved once (not recorded).
    clean_data: Any = field(default=None, repr=False, compare=False)

    @property
    def class_to_index(self) -> dict[str, int]:
        """Each class name's label index (recorded in every artifact beside ``class_names``)."""
        return {name: i for i, name in enumerate(self.class_names)}

    @property
    def num_groups(self) -> int:
        return len(self.group_names) if self.group_names else 0

    def split(self, name: str) -> Split:
        if name not in self.splits:
            where = self.spec.get("name") or self.spec.get("path") or "?"
            raise InputError(f"data {where} has no split '{name}' (it has {', '.join(self.splits)})")
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
            "class_to_index": self.class_to_index,
            **({"details": self.details} if self.details else {}),
        }


def channel_stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of (N, C, H, W) pixels, for the model's built-in normalisation."""
    m = x.mean(dim=(0, 2, 3))
    s = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return [round(float(v), 6) for v in m], [round(float(v), 6) for v in s]
