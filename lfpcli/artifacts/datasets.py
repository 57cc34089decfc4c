"""HDF5 layouts of datasets and perturbed sets (``lfp_kind`` = ``dataset`` / ``perturbed-set``).

Dataset file::

    /<split>/x      (N, C, H, W) float32, pixel space [0, 1]
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
    /metrics/log_density (N,) float32  log q(x' | target) under the data spec's evaluation estimator, named in
                    the dataset's ``estimator`` attribute and described in the record's ``log_density_estimator``

The record holds the dataset metadata under ``dataset`` (and ``source.dataset`` for perturbed sets).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lfpcli.artifacts.h5 import H5Writer, open_h5, read_array
from lfpcli.artifacts.provenance import sha256_file
from lfpcli.data.dataset import Dataset, Split
from lfpcli.errors import ArtifactError, InputError

PERTURBED_METRICS = {
    "success": ("bool", "the source model predicts the target label on the perturbed input"),
    "l0": ("float32", "number of input values changed (|x'-x| > 0)"),
    "l2": ("float32", "l2 norm of x' - x"),
    "linf": ("float32", "largest absolute change of one input value"),
    "loss": ("float32", "final loss of the source model toward the target"),
    "iterations": ("int64", "solver iterations run on this sample"),
    "grad_evals": ("int64", "forward+backward passes spent on this sample"),
    "log_density": ("float32", "log q(x' | target) in nats under the data spec's evaluation estimator (attribute 'estimator')"),
}


def dataset_meta(ds: Dataset) -> dict[str, Any]:
    return {
        **ds.info(),
        "description": ds.description,
        "perturb_defaults": ds.perturb_defaults,
        "train_defaults": ds.train_defaults,
    }


def write_dataset(path: str | os.PathLike, ds: Dataset, record: dict[str, Any], *, force: bool = False) -> None:
    with H5Writer(path, "dataset", force=force) as w:
        for name, s in ds.splits.items():
            w.put(f"{name}/x", s.x.float(), "inputs in pixel space [0, 1], (N, C, H, W)")
            w.put(f"{name}/y", s.y.long(), "class labels")
            w.put(f"{name}/group", s.group.long(), "group index (-1 where the data has no groups)")
            w.put(f"{name}/index", s.index.long(), "position in the source split")
            if s.mask is not None:
                w.put(f"{name}/mask", s.mask.bool(), "foreground mask (N, H, W): the object's pixels")
        w.record = {**record, "dataset": dataset_meta(ds)}


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
        raise ArtifactError(f"{path}: '{name}' inputs have shape {tuple(x.shape[1:])} per sample, but the file's "
                            f"record says {tuple(input_shape)}; the file is damaged")
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
        raise InputError(f"{what} has shape {tuple(arr.shape)}; expected ({n}, {h}, {w}) or ({n}, 1, {h}, {w}): "
                         f"one {h}x{w} mask per sample, in the order of the samples")
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


def _dataset_from_meta(meta: dict[str, Any], splits: dict[str, Split], spec: dict[str, Any]) -> Dataset:
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
        )
    except (KeyError, TypeError, ValueError):
        raise ArtifactError(f"dataset metadata is incomplete ({spec.get('path', spec.get('name'))})") from None


def read_dataset(path: str | os.PathLike, spec: dict[str, Any] | None = None) -> Dataset:
    """Load every split of a ``dataset`` file into memory, validating shapes, ranges and labels."""
    f, record = open_h5(path, ["dataset"])
    with f:
        meta = check_data_meta(path, record.get("dataset"))
        splits = {}
        for name in [k for k in ("train", "val", "test") if k in f] + [k for k in f.keys() if k not in ("train", "val", "test")]:
            x = read_array(f, f"{name}/x", path=path).astype(np.float32, copy=False)
            y = read_array(f, f"{name}/y", path=path).astype(np.int64)
            g = read_array(f, f"{name}/group", path=path).astype(np.int64)
            i = read_array(f, f"{name}/index", path=path).astype(np.int64)
            _check_split(path, name, x, y, g, i, int(meta["num_classes"]), meta["input_shape"])
            mask = read_mask(f, f"{name}/mask", x.shape, path) if f"{name}/mask" in f else None
            splits[name] = Split(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(g), torch.from_numpy(i),
                                 None if mask is None else torch.from_numpy(mask))
    if "train" not in splits:
        raise ArtifactError(f"{path}: dataset file has no 'train' split")
    return _dataset_from_meta(meta, splits, spec or meta.get("spec") or {"type": "file", "path": str(path)})


class PerturbedSetWriter(H5Writer):
    """Stream a perturbed set batch by batch: ``add(x, y, target, group, index, metrics)``."""

    def __init__(self, path, n: int, input_shape: tuple[int, ...], *, force: bool = False):
        super().__init__(path, "perturbed-set", force=force)
        self.n, self.input_shape, self.pos = n, tuple(input_shape), 0

    def __enter__(self):
        super().__enter__()
        self.create("x", (self.n, *self.input_shape), "float32", "perturbed inputs in pixel space [0, 1]")
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
            self.write(f"metrics/{name}", sl, metrics[name])
        self.pos = sl.stop


def read_perturbed_set(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    """Return ``(arrays, metrics, record)`` of a perturbed set, validated."""
    f, record = open_h5(path, ["perturbed-set"])
    with f:
        arrays = {k: read_array(f, k, path=path) for k in ("x", "y", "target", "group", "index")}
        metrics = {k: read_array(f, f"metrics/{k}", path=path) for k in PERTURBED_METRICS if f"metrics/{k}" in f}
    source = record.get("source")
    src = source.get("dataset") if isinstance(source, dict) else None
    if not isinstance(src, dict):
        raise ArtifactError(f"{path}: perturbed set does not record its source dataset; the file is damaged")
    check_data_meta(path, src, "source dataset")
    if not isinstance(record.get("params"), dict):
        raise ArtifactError(f"{path}: perturbed set does not record its parameters; the file is damaged")
    _check_source(path, source)
    x = arrays["x"].astype(np.float32, copy=False)
    _check_split(path, "perturbed", x, arrays["y"], arrays["group"], arrays["index"], int(src["num_classes"]))
    n = x.shape[0]
    for name, arr in metrics.items():
        if arr.shape != (n,):
            raise ArtifactError(f"{path}: dataset 'metrics/{name}' has shape {tuple(arr.shape)}, expected ({n},)")
    t = arrays["target"]
    if t.shape != arrays["y"].shape or (len(t) and (t.min() < 0 or t.max() >= int(src["num_classes"]))):
        raise ArtifactError(f"{path}: targets are malformed or outside 0..{int(src['num_classes']) - 1}")
    if tuple(x.shape[1:]) != tuple(src["input_shape"]):
        raise ArtifactError(f"{path}: inputs have shape {tuple(x.shape[1:])} but the source data has {tuple(src['input_shape'])}")
    arrays["x"] = x
    return arrays, metrics, record


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
            isinstance(init.get(k) or "", str) for k in ("path", "abspath", "sha256")):
        raise ArtifactError(f"{path}: the record's source 'init' is malformed; the file is damaged")
    cfg = (source.get("train") or {}).get("config") or {}
    if not isinstance(cfg, dict):
        raise ArtifactError(f"{path}: the record's source training settings are malformed; the file is damaged")
    try:
        TrainConfig.resolve({}, base=cfg)
    except (InputError, TypeError, ValueError) as e:
        reason = f": {e}" if isinstance(e, InputError) else ""
        raise ArtifactError(f"{path}: the record's source training settings are invalid{reason}; the file is damaged") from None


def load_perturbed_as_dataset(path: str | os.PathLike, record_check=None) -> Dataset:
    """A perturbed set as training data: train = (perturbed x, *target* labels); val/test = the clean source
    data's splits (selection and evaluation always use clean data with true labels)."""
    from lfpcli.data.registry import resolve

    arrays, _, record = read_perturbed_set(path)
    src_meta = record["source"]["dataset"]
    clean_spec = src_meta.get("clean_spec") or src_meta.get("spec")
    if not isinstance(clean_spec, (dict, str)):
        raise ArtifactError(f"{path}: perturbed set does not record the clean data it came from; the file is damaged")
    try:
        clean = resolve(clean_spec)
    except ArtifactError:
        raise
    except InputError as e:
        raise InputError(f"{path}: its clean source data cannot be loaded: {e}") from None
    if tuple(clean.input_shape) != tuple(src_meta["input_shape"]) or clean.num_classes != int(src_meta["num_classes"]):
        raise ArtifactError(f"{path}: its clean source data ({tuple(clean.input_shape)}, {clean.num_classes} classes) does not "
                            f"match the perturbed inputs ({tuple(src_meta['input_shape'])}, {src_meta['num_classes']} classes)")
    index = torch.from_numpy(arrays["index"].astype(np.int64))
    train = Split(
        torch.from_numpy(arrays["x"]),
        torch.from_numpy(arrays["target"].astype(np.int64)),
        torch.from_numpy(arrays["group"].astype(np.int64)),
        index,
        clean_masks(clean, record["params"].get("split"), index),
    )
    splits = {"train": train, **{k: v for k, v in clean.splits.items() if k != "train"}}
    spec = {"type": "file", "path": str(path), "abspath": str(Path(path).resolve()), "sha256": sha256_file(path), "kind": "perturbed-set"}
    ds = _dataset_from_meta({**src_meta, "clean_spec": clean_spec}, splits, spec)
    ds.clean_spec = clean_spec
    return ds


def clean_masks(clean: Dataset, split: Any, index: torch.Tensor) -> torch.Tensor | None:
    """The foreground masks of perturbed samples: the clean source split's masks at their ``index`` (a
    perturbation moves pixels, not the object), or ``None`` where the clean data has none."""
    src = clean.splits.get(split) if isinstance(split, str) else None
    if src is None or src.mask is None or (len(index) and (int(index.min()) < 0 or int(index.max()) >= len(src))):
        return None
    return src.mask[index]


def load_data_file(path: str | os.PathLike, expected_sha256: str | None = None) -> Dataset:
    """Any lfp data file: a dataset or a perturbed set (used as training data with its target labels)."""
    from lfpcli.artifacts.h5 import open_h5 as _open

    f, record = _open(path, ["dataset", "perturbed-set"])
    kind = record.get("kind")
    f.close()
    if kind == "perturbed-set":
        return load_perturbed_as_dataset(path)
    spec = {"type": "file", "path": str(path), "abspath": str(Path(path).resolve()), "sha256": sha256_file(path), "kind": "dataset"}
    return read_dataset(path, spec)
