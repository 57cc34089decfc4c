"""HDF5 layouts of datasets and perturbed sets (``lfp_kind`` = ``dataset`` / ``perturbed-set``).

Dataset file::

    /<split>/x      (N, C, H, W) float32, pixel space [0, 1]; or uint8 (0..255, read as value / 255) where the
                    source is 8-bit images (every real dataset: ``lfp data SPEC --out cache.h5``), chunked by a
                    few rows (``ROW_CHUNK_BYTES``) so that rows read in any order decompress only their chunks
    /<split>/y      (N,) int64 labels
    /<split>/group  (N,) int64 group (-1 where none)
    /<split>/index  (N,) int64 position in the source split
    /<split>/mask   (N, H, W) bool foreground mask (the object's pixels), only where the data has one

Perturbed set::

    /x              (N, C, H, W) float32 perturbed inputs, pixel space
    /y              (N,) int64 original labels
    /target         (N,) int64 target labels (what a retrained model is taught)
    /group          (N,) int64 group of the original sample (-1 where none)
    /index          (N,) int64 position of the source sample in its split
    /metrics/success (N,) bool    prediction of the source model equals the target
    /metrics/l0, l2, linf (N,) float32  norms of x' - x (the norms, not squares; l0 counts changed values)
    /metrics/loss   (N,) float32  final loss toward the target
    /metrics/iterations, grad_evals (N,) int64  solver iterations and forward+backward passes spent
    /metrics/skipped (N,) bool    not searched: the optimum is provably no change (absent from files written
                    before it existed)
    /metrics/log_density (N,) float32  log q(x' | target) under the data spec's evaluation estimator, named in
                    the dataset's ``estimator`` attribute and described in the record's ``log_density_estimator``

The record holds the dataset metadata under ``dataset`` (and ``source.dataset`` for perturbed sets).

Reading: :func:`read_dataset` loads every split into memory (built-in caches, small files);
:func:`read_dataset` with ``lazy=True`` (what a data spec naming a file gets) and :func:`open_perturbed_set` check
the structure (shapes, dtypes, labels, record) when they open the file and read the inputs row by row later
(:class:`lfpcli.data.lazy.H5Rows`), each float row checked (finite, in [0, 1]) when it is read, so memory does not
grow with the number of samples.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lfpcli.artifacts.h5 import H5Writer, open_h5, read_array
from lfpcli.data.dataset import Dataset, Split
from lfpcli.data.lazy import (
    H5MaskRows,
    H5Rows,
    batch_positions,
    iter_batches,
    release_free_memory,
)
from lfpcli.errors import ArtifactError, InputError
from lfpcli.progress import Progress, no_progress

#: Bytes per chunk of inputs that are read by rows (dataset caches, perturbed sets): at least one row, so a
#: shuffled batch decompresses little more than its own rows (one 224x224 image a chunk, a few small ones).
ROW_CHUNK_BYTES = 1 << 14
#: Rows written per step when a split is streamed into a file.
WRITE_BATCH = 256

PERTURBED_METRICS = {
    "success": ("bool", "the source model predicts the target label on the perturbed input"),
    "l0": ("float32", "number of input values changed (|x'-x| > 0)"),
    "l2": ("float32", "l2 norm of x' - x"),
    "linf": ("float32", "largest absolute change of one input value"),
    "loss": ("float32", "final loss of the source model toward the target"),
    "iterations": ("int64", "solver iterations run on this sample"),
    "grad_evals": ("int64", "forward+backward passes spent on this sample"),
    "log_density": (
        "float32",
        "log q(x' | target) in nats under the data spec's evaluation estimator (attribute 'estimator')",
    ),
    "skipped": (
        "bool",
        "not searched: the solver proved the optimum is no change (pcfe-l0: already classified as its target)",
    ),
}


def dataset_meta(ds: Dataset) -> dict[str, Any]:
    return {
        **ds.info(),
        "description": ds.description,
        "perturb_defaults": ds.perturb_defaults,
        "train_defaults": ds.train_defaults,
    }


def write_dataset(
    path: str | os.PathLike,
    ds: Dataset,
    record: dict[str, Any],
    *,
    force: bool = False,
    progress: Progress = no_progress,
) -> None:
    """Write every split of ``ds``. Splits in memory are written whole (float32, as always); splits read on
    demand are streamed batch by batch in their stored type (uint8 images stay uint8: a cache), decoded by
    DataLoader workers where the source decodes images, so memory stays bounded by a batch."""
    total = sum(len(s) for s in ds.splits.values() if not s.in_memory)
    done = 0
    stage = f"writing {total} images" if total else ""
    if total:
        progress(stage, 0, total, unit="image")
    with H5Writer(path, "dataset", force=force) as w:
        for name, s in ds.splits.items():
            if s.in_memory:
                w.put(f"{name}/x", s.x.float(), "inputs in pixel space [0, 1], (N, C, H, W)")
            else:
                done = _stream_split(w, name, s, stage, done, total, progress)
            w.put(f"{name}/y", s.y.long(), "class labels")
            w.put(f"{name}/group", s.group.long(), "group index (-1 where the data has no groups)")
            w.put(f"{name}/index", s.index.long(), "position in the source split")
            if s.mask is not None:
                if isinstance(s.mask, torch.Tensor):
                    w.put(f"{name}/mask", s.mask.bool(), "foreground mask (N, H, W): the object's pixels")
                else:
                    _stream_rows(w, f"{name}/mask", s.mask, "foreground mask (N, H, W): the object's pixels")
        w.record = {**record, "dataset": dataset_meta(ds)}


def _stream_split(w: H5Writer, name: str, s: Split, stage: str, done: int, total: int, progress: Progress) -> int:
    rows = s.x
    uint8 = rows.raw_dtype == np.uint8
    desc = (
        "8-bit inputs (N, C, H, W): pixel value = stored value / 255"
        if uint8
        else "inputs in pixel space [0, 1], (N, C, H, W)"
    )
    dtype = "uint8" if uint8 else "float32"
    w.create(f"{name}/x", tuple(rows.shape), dtype, desc, chunk_bytes=ROW_CHUNK_BYTES)
    pos = batch_positions(len(rows), WRITE_BATCH)
    for idx, values in zip(pos, iter_batches(rows, pos, raw=True)):
        if not uint8:
            values = np.ascontiguousarray(values, dtype=np.float32)
            rows.check_values(values)
        w.write(f"{name}/x", slice(int(idx[0]), int(idx[-1]) + 1), values)
        done += len(idx)
        progress(stage, done, total, unit="image", split=name)
    return done


def _stream_rows(w: H5Writer, name: str, rows: Any, description: str) -> None:
    w.create(
        name,
        tuple(rows.shape),
        rows.raw_dtype.str if rows.raw_dtype != np.dtype(bool) else "bool",
        description,
        chunk_bytes=ROW_CHUNK_BYTES,
    )
    pos = batch_positions(len(rows), WRITE_BATCH)
    for idx, values in zip(pos, iter_batches(rows, pos, raw=True)):
        w.write(name, slice(int(idx[0]), int(idx[-1]) + 1), values)


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and bool(np.isfinite(v))


def check_data_meta(path: str | os.PathLike, meta: Any, what: str = "dataset") -> dict[str, Any]:
    """The dataset metadata a data file records (classes, input shape, normalisation) must be well formed:
    everything downstream (models, targets, checks) trusts it."""
    if not isinstance(meta, dict):
        raise ArtifactError(f"{path}: the record lacks its {what} metadata; the file is damaged")
    bad = None
    k, shape, mean, std = meta.get("num_classes"), meta.get("input_shape"), meta.get("mean"), meta.get("std")
    names = meta.get("class_names")
    if not _is_int(k) or k < 2:
        bad = f"num_classes {k!r} (expected an integer >= 2)"
    elif not isinstance(shape, (list, tuple)) or len(shape) != 3 or not all(_is_int(v) and v > 0 for v in shape):
        bad = f"input_shape {shape!r} (expected [C, H, W])"
    elif not isinstance(mean, (list, tuple)) or len(mean) != shape[0] or not all(_is_number(v) for v in mean):
        bad = f"mean {mean!r} (expected {shape[0]} numbers)"
    elif not isinstance(std, (list, tuple)) or len(std) != shape[0] or not all(_is_number(v) and v > 0 for v in std):
        bad = f"std {std!r} (expected {shape[0]} positive numbers)"
    elif names is not None and (not isinstance(names, list) or len(names) != k):
        bad = f"class_names (expected {k} names)"
    if bad:
        raise ArtifactError(f"{path}: the {what} metadata has an invalid {bad}; the file is damaged")
    return meta


def _check_split(path, name, x, y, group, index, num_classes, input_shape=None) -> None:
    n = x.shape[0]
    if x.ndim != 4:
        raise ArtifactError(f"{path}: '{name}' inputs have shape {tuple(x.shape)}, expected (N, C, H, W)")
    if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
        raise ArtifactError(
            f"{path}: '{name}' inputs have shape {tuple(x.shape[1:])} per sample, but the file's "
            f"record says {tuple(input_shape)}; the file is damaged"
        )
    for label, arr in (("y", y), ("group", group), ("index", index)):
        if arr.shape != (n,):
            raise ArtifactError(f"{path}: '{name}' {label} has shape {tuple(arr.shape)}, expected ({n},)")
    if not np.isfinite(x).all():
        raise ArtifactError(f"{path}: '{name}' inputs contain NaN or infinite values")
    if n and (x.min() < -1e-6 or x.max() > 1 + 1e-6):
        raise ArtifactError(f"{path}: '{name}' inputs leave the pixel range [0, 1]")
    if n and (y.min() < 0 or y.max() >= num_classes):
        raise ArtifactError(f"{path}: '{name}' labels are outside 0..{num_classes - 1}")


def check_mask(arr: np.ndarray, x_shape: tuple[int, ...], what: str) -> np.ndarray:
    """A foreground mask for inputs of shape ``x_shape`` (N, C, H, W): (N, H, W) or (N, 1, H, W) of 0/1 or
    bool values; returned as (N, H, W) bool. ``what`` names the mask in the error message."""
    n, h, w = x_shape[0], x_shape[2], x_shape[3]
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if tuple(arr.shape) != (n, h, w):
        raise InputError(
            f"{what} has shape {tuple(arr.shape)}; expected ({n}, {h}, {w}) or ({n}, 1, {h}, {w}): "
            f"one {h}x{w} mask per sample, in the order of the samples"
        )
    if arr.dtype.kind not in "biuf" or (arr.dtype.kind != "b" and not np.isin(arr, (0, 1)).all()):
        raise InputError(f"{what} must hold only 0/1 or True/False values")
    return arr.astype(bool)


def read_mask(f, name: str, x_shape: tuple[int, ...], path: str | os.PathLike) -> np.ndarray:
    """The foreground mask dataset ``name`` of an open lfp file, checked against inputs of shape ``x_shape``."""
    arr = read_array(f, name, path=path)
    try:
        return check_mask(arr, x_shape, f"{path}: dataset '{name}'")
    except InputError as e:
        raise ArtifactError(f"{e}; the file is damaged") from None


def dataset_from_meta(meta: dict[str, Any], splits: dict[str, Split], spec: dict[str, Any]) -> Dataset:
    try:
        return Dataset(
            spec=spec,
            splits=splits,
            num_classes=int(meta["num_classes"]),
            class_names=list(meta["class_names"]),
            input_shape=tuple(meta["input_shape"]),
            mean=list(meta["mean"]),
            std=list(meta["std"]),
            group_names=meta.get("group_names"),
            description=meta.get("description", ""),
            clean_spec=meta.get("clean_spec") if meta.get("clean_spec") != meta.get("spec") else None,
            perturb_defaults=meta.get("perturb_defaults") or {},
            train_defaults=meta.get("train_defaults") or {},
            details=meta.get("details") if isinstance(meta.get("details"), dict) else {},
        )
    except (KeyError, TypeError, ValueError):
        raise ArtifactError(f"dataset metadata is incomplete ({spec.get('path', spec.get('name'))})") from None


def _split_names(f) -> list[str]:
    return [k for k in ("train", "val", "test") if k in f] + [k for k in f if k not in ("train", "val", "test")]


def _input_dataset(f, name: str, path, input_shape=None):
    """The HDF5 dataset of inputs ``name``: present, numeric (uint8 or float), 4-d, of the recorded shape."""
    import h5py

    if name not in f:
        raise ArtifactError(f"{path} has no dataset '{name}'")
    d = f[name]
    if not isinstance(d, h5py.Dataset):
        raise ArtifactError(f"{path}: '{name}' is not a dataset; the file is damaged")
    if d.dtype.kind not in "uf" or (d.dtype.kind == "u" and d.dtype != np.uint8):
        raise ArtifactError(
            f"{path}: dataset '{name}' holds {d.dtype} values, not pixels (uint8 or float); the file is damaged"
        )
    if d.ndim != 4:
        raise ArtifactError(
            f"{path}: '{name.rsplit('/', 1)[0] or name}' inputs have shape {tuple(d.shape)}, expected (N, C, H, W)"
        )
    if input_shape is not None and tuple(d.shape[1:]) != tuple(input_shape):
        raise ArtifactError(
            f"{path}: '{name}' inputs have shape {tuple(d.shape[1:])} per sample, but the file's "
            f"record says {tuple(input_shape)}; the file is damaged"
        )
    return d


def read_dataset(
    path: str | os.PathLike,
    spec: dict[str, Any] | None = None,
    *,
    lazy: bool | None = False,
    only: Sequence[str] | None = None,
) -> Dataset:
    """A ``dataset`` file, validated: shapes, ranges, labels. ``lazy=False`` loads every split into memory;
    ``lazy=True`` keeps labels, groups and indices in memory and reads inputs (and masks) row by row when asked
    for (:class:`lfpcli.data.lazy.H5Rows`), float inputs checked as they are read; ``lazy=None`` decides by size
    (loaded when every split's inputs together fit :func:`preload_limit`). ``only``: read just these splits (the
    others are left out of the dataset)."""
    f, record = open_h5(path, ["dataset"])
    with f:
        meta = check_data_meta(path, record.get("dataset"))
        splits = {}
        k = int(meta["num_classes"])
        if lazy is None:
            sizes = [f[f"{n}/x"].shape for n in _split_names(f) if f"{n}/x" in f and hasattr(f[f"{n}/x"], "shape")]
            lazy = not _small((sum(int(np.prod(sh)) for sh in sizes),))
        if "train" not in f:
            raise ArtifactError(f"{path}: dataset file has no 'train' split")
        if only is not None and not set(only) <= set(_split_names(f)):
            only = None  # a split it does not have: every split is read, so that the error names those it has
        for name in _split_names(f):
            if only is not None and name not in only:
                continue
            d = _input_dataset(f, f"{name}/x", path, meta["input_shape"])
            y = read_array(f, f"{name}/y", path=path).astype(np.int64)
            g = read_array(f, f"{name}/group", path=path).astype(np.int64)
            i = read_array(f, f"{name}/index", path=path).astype(np.int64)
            if lazy:
                x: Any = H5Rows(path, f"{name}/x", d.shape, d.dtype, f"{path}: '{name}'")
                _check_labels(path, name, d.shape, y, g, i, k)
                mask = None
                if f"{name}/mask" in f:
                    m = f[f"{name}/mask"]
                    if (
                        getattr(m, "dtype", None) is None
                        or m.dtype.kind not in "biuf"
                        or tuple(m.shape) not in ((d.shape[0], *d.shape[2:]), (d.shape[0], 1, *d.shape[2:]))
                    ):
                        raise ArtifactError(
                            f"{path}: dataset '{name}/mask' has shape {tuple(getattr(m, 'shape', ()))}; "
                            f"expected ({d.shape[0]}, {d.shape[2]}, {d.shape[3]}); the file is damaged"
                        )
                    mask = H5MaskRows(path, f"{name}/mask", m.shape, m.dtype, f"{path}: '{name}' masks")
                splits[name] = Split(x, torch.from_numpy(y), torch.from_numpy(g), torch.from_numpy(i), mask)
                continue
            raw = read_array(f, f"{name}/x", path=path)
            x = raw.astype(np.float32) / 255.0 if raw.dtype == np.uint8 else raw.astype(np.float32, copy=False)
            _check_split(path, name, x, y, g, i, k, meta["input_shape"])
            mask = read_mask(f, f"{name}/mask", x.shape, path) if f"{name}/mask" in f else None
            splits[name] = Split(
                torch.from_numpy(x),
                torch.from_numpy(y),
                torch.from_numpy(g),
                torch.from_numpy(i),
                None if mask is None else torch.from_numpy(mask),
            )
    return dataset_from_meta(meta, splits, spec or meta.get("spec") or {"type": "file", "path": str(path)})


def _check_labels(path, name, x_shape, y, group, index, num_classes) -> None:
    """What :func:`_check_split` checks, without reading the inputs (their values are checked as they are read)."""
    n = x_shape[0]
    for label, arr in (("y", y), ("group", group), ("index", index)):
        if arr.shape != (n,):
            raise ArtifactError(f"{path}: '{name}' {label} has shape {tuple(arr.shape)}, expected ({n},)")
    if n and (y.min() < 0 or y.max() >= num_classes):
        raise ArtifactError(f"{path}: '{name}' labels are outside 0..{num_classes - 1}")


class PerturbedSetWriter(H5Writer):
    """Stream a perturbed set batch by batch: ``add(x, y, target, group, index, metrics)``."""

    def __init__(self, path, n: int, input_shape: tuple[int, ...], *, force: bool = False):
        super().__init__(path, "perturbed-set", force=force)
        self.n, self.input_shape, self.pos = n, tuple(input_shape), 0

    def __enter__(self):
        super().__enter__()
        self.create(
            "x",
            (self.n, *self.input_shape),
            "float32",
            "perturbed inputs in pixel space [0, 1]",
            chunk_bytes=ROW_CHUNK_BYTES,
        )
        self.create("y", (self.n,), "int64", "original labels")
        self.create("target", (self.n,), "int64", "target labels the perturbation pushes toward")
        self.create("group", (self.n,), "int64", "group of the original sample (-1 where none)")
        self.create("index", (self.n,), "int64", "position of the source sample in its split")
        for name, (dtype, desc) in PERTURBED_METRICS.items():
            self.create(f"metrics/{name}", (self.n,), dtype, desc)
        return self

    def add(self, x, y, target, group, index, metrics: dict[str, torch.Tensor]) -> None:
        sl = slice(self.pos, self.pos + x.shape[0])
        self.write("x", sl, x.float())
        self.write("y", sl, y)
        self.write("target", sl, target)
        self.write("group", sl, group)
        self.write("index", sl, index)
        for name in PERTURBED_METRICS:
            # 'skipped' is optional for writers that never skip (all False)
            value = metrics[name] if name != "skipped" or name in metrics else torch.zeros(x.shape[0], dtype=torch.bool)
            self.write(f"metrics/{name}", sl, value)
        self.pos = sl.stop
        release_free_memory()  # a long run's memory stays flat (see the function)


@dataclass
class PerturbedSet:
    """A perturbed set opened for reading: everything but the inputs in memory, the inputs ``x`` read by rows
    (an :class:`lfpcli.data.lazy.H5Rows`; values checked as they are read) or, for a small file, in memory."""

    path: str
    record: dict[str, Any]
    x: Any
    y: np.ndarray
    target: np.ndarray
    group: np.ndarray
    index: np.ndarray
    metrics: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.y)

    @property
    def source_dataset(self) -> dict[str, Any]:
        return self.record["source"]["dataset"]


def preload_limit() -> int:
    """Inputs of a file read lazily are loaded whole when they take at most this many bytes as float32
    (``$LFP_PRELOAD_MB``, default 256): small files then train as fast as before, and memory stays within a fixed
    budget whatever the number of samples; 0 streams every file."""
    try:
        return int(float(os.environ.get("LFP_PRELOAD_MB", "256")) * (1 << 20))
    except ValueError:
        raise InputError(
            f"LFP_PRELOAD_MB must be a number of megabytes, got '{os.environ.get('LFP_PRELOAD_MB')}'"
        ) from None


def _small(shape: tuple[int, ...]) -> bool:
    return int(np.prod(shape)) * 4 <= preload_limit()


def open_perturbed_set(path: str | os.PathLike, *, lazy: bool | None = None) -> PerturbedSet:
    """Open a perturbed set and validate everything but the input values (shapes, labels, targets, metrics, the
    record). ``lazy``: read the inputs by rows (True), load them now (False, every value checked), or decide by
    size (None: load when they fit :func:`preload_limit`)."""
    f, record = open_h5(path, ["perturbed-set"])
    with f:
        d = _input_dataset(f, "x", path)
        shape, dtype = tuple(d.shape), d.dtype
        arrays = {k: read_array(f, k, path=path) for k in ("y", "target", "group", "index")}
        metrics = {k: read_array(f, f"metrics/{k}", path=path) for k in PERTURBED_METRICS if f"metrics/{k}" in f}
        load = (not lazy) if lazy is not None else _small(shape)
        raw = read_array(f, "x", path=path) if load else None
    source = record.get("source")
    src = source.get("dataset") if isinstance(source, dict) else None
    if not isinstance(src, dict):
        raise ArtifactError(f"{path}: perturbed set does not record its source dataset; the file is damaged")
    check_data_meta(path, src, "source dataset")
    if not isinstance(record.get("params"), dict):
        raise ArtifactError(f"{path}: perturbed set does not record its parameters; the file is damaged")
    _check_source(path, source)
    k = int(src["num_classes"])
    if raw is not None:
        x: Any = raw.astype(np.float32) / 255.0 if raw.dtype == np.uint8 else raw.astype(np.float32, copy=False)
        _check_split(path, "perturbed", x, arrays["y"], arrays["group"], arrays["index"], k)
    else:
        x = H5Rows(path, "x", shape, dtype, f"{path}: 'perturbed'")
        _check_labels(path, "perturbed", shape, arrays["y"], arrays["group"], arrays["index"], k)
    n = shape[0]
    for name, arr in metrics.items():
        if arr.shape != (n,):
            raise ArtifactError(f"{path}: dataset 'metrics/{name}' has shape {tuple(arr.shape)}, expected ({n},)")
    t = arrays["target"]
    if t.shape != arrays["y"].shape or (len(t) and (t.min() < 0 or t.max() >= k)):
        raise ArtifactError(f"{path}: targets are malformed or outside 0..{k - 1}")
    if tuple(shape[1:]) != tuple(src["input_shape"]):
        raise ArtifactError(
            f"{path}: inputs have shape {tuple(shape[1:])} but the source data has {tuple(src['input_shape'])}"
        )
    return PerturbedSet(str(path), record, x, arrays["y"], arrays["target"], arrays["group"], arrays["index"], metrics)


def read_perturbed_set(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    """Return ``(arrays, metrics, record)`` of a perturbed set, validated, every array in memory (the inputs
    too: for small sets and tests; commands use :func:`open_perturbed_set`)."""
    ps = open_perturbed_set(path, lazy=False)
    arrays = {"x": ps.x, "y": ps.y, "target": ps.target, "group": ps.group, "index": ps.index}
    return arrays, ps.metrics, ps.record


def _check_source(path: str | os.PathLike, source: dict[str, Any]) -> None:
    """What a perturbed set records about its source model (retrain's defaults) must be well formed."""
    from lfpcli.training.config import TrainConfig

    for key in ("model", "init", "train", "model_params"):
        if not isinstance(source.get(key) or {}, dict):
            raise ArtifactError(f"{path}: the record's source '{key}' is malformed; the file is damaged")
    model = source.get("model") or {}
    if not isinstance(model.get("arch", ""), str) or not isinstance(model.get("arch_args") or {}, dict):
        raise ArtifactError(f"{path}: the record's source model is malformed; the file is damaged")
    init = source.get("init") or {}
    if not isinstance(init.get("type", "scratch"), str) or not all(
        isinstance(init.get(k) or "", str) for k in ("path", "abspath", "sha256")
    ):
        raise ArtifactError(f"{path}: the record's source 'init' is malformed; the file is damaged")
    cfg = (source.get("train") or {}).get("config") or {}
    if not isinstance(cfg, dict):
        raise ArtifactError(f"{path}: the record's source training settings are malformed; the file is damaged")
    try:
        TrainConfig.resolve({}, base=cfg)
    except (InputError, TypeError, ValueError) as e:
        reason = f": {e}" if isinstance(e, InputError) else ""
        raise ArtifactError(
            f"{path}: the record's source training settings are invalid{reason}; the file is damaged"
        ) from None


def clean_masks(clean: Dataset, split: Any, index: torch.Tensor):
    """The foreground masks of perturbed samples: the clean source split's masks at their ``index`` (a
    perturbation moves pixels, not the object), or ``None`` where the clean data has none. Masks read on demand
    stay so (a view; nothing is read here)."""
    src = clean.splits.get(split) if isinstance(split, str) else None
    if src is None or src.mask is None or (len(index) and (int(index.min()) < 0 or int(index.max()) >= len(src))):
        return None
    if isinstance(src.mask, torch.Tensor):
        return src.mask[index]
    return src.mask.subset(index)
