"""A data spec resolved to a :class:`~lfpcli.data.Dataset`, wherever its data lives: the one place where data and
lfp's files meet (:mod:`lfpcli.data` itself builds and reads datasets in memory and never writes a file).

- A built-in (:mod:`lfpcli.data.builtin`) is generated once and kept as an lfp dataset file in the cache folder
  (:func:`lfpcli.data.registry.cache_dir`), then read back from there.
- A dataset on the user's disk (:mod:`lfpcli.data.real`) is read from its files.
- An lfp ``.h5`` file is a dataset (e.g. a cache from ``lfp data --out``) or a perturbed set, which trains on its
  perturbed inputs with their *target* labels and keeps the clean source data's val and test splits.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lfpcli import version
from lfpcli.artifacts.datasets import clean_masks, dataset_from_meta, open_perturbed_set, read_dataset, write_dataset
from lfpcli.artifacts.h5 import open_h5
from lfpcli.artifacts.provenance import make_record, sha256_file
from lfpcli.data.dataset import Dataset, Split
from lfpcli.data.registry import build, builtin_params, cache_dir, parse_spec
from lfpcli.errors import ArtifactError, InputError, LfpError
from lfpcli.progress import Progress, no_progress

__all__ = ["CACHE_LAYOUT", "cached_builtin", "load_data_file", "load_perturbed_as_dataset", "resolve"]


def resolve(
    spec: str | dict[str, Any],
    *,
    use_cache: bool = True,
    splits: Sequence[str] | None = None,
    progress: Progress = no_progress,
) -> Dataset:
    """Build or load the dataset a spec names (a spec string or dict, see :func:`lfpcli.data.registry.parse_spec`);
    ``progress`` hears about a built-in being generated. ``use_cache=False`` builds a built-in in memory.
    ``splits``: the splits the caller uses; a cached built-in reads only those (other data reads rows on demand)."""
    spec = parse_spec(spec)
    if spec.get("type") == "builtin" and use_cache:
        name, entry, params = builtin_params(spec)
        return cached_builtin(name, params, entry, cache_dir(), progress, splits=splits)
    if spec.get("type") == "file":
        return load_data_file(spec["path"], expected_sha256=spec.get("sha256"))
    return build(spec, progress=progress)


#: Layout of the cached files; part of the cache key, so a cache written by an older layout is rebuilt, never
#: read. 2: splits carry their foreground ``mask`` where the data has one (spurious-digits).
CACHE_LAYOUT = 2


def cached_builtin(
    name: str,
    params: dict[str, Any],
    entry: Any,
    cache: Path,
    progress: Progress = no_progress,
    *,
    splits: Sequence[str] | None = None,
) -> Dataset:
    """Build a built-in dataset once and keep it as an lfp dataset file under ``cache``; read back, only the
    ``splits`` asked for (every split when None; a fresh build has them all).

    The cache key covers the name, every builder parameter, the generator version, lfp's version and the cache
    layout (``CACHE_LAYOUT``), so changing any of them rebuilds. Any problem with the cache (unwritable, corrupt) falls back to building in memory.
    """
    # lfp's own version is in the key too: the cached file also holds metadata (defaults, names) from the code
    key = hashlib.sha256(
        json.dumps([name, entry.version, version.__version__, CACHE_LAYOUT, sorted(params.items())]).encode()
    ).hexdigest()[:16]
    path = cache / f"{name}-{key}.h5"
    if path.is_file():
        try:
            ds = read_dataset(path, only=splits)
            if (
                ds.spec.get("name") == name
                and ds.spec.get("version") == entry.version
                and ds.spec.get("params") == params
            ):
                return ds
        except (LfpError, OSError):
            pass
    ds = entry.build(params, progress)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        record = make_record(
            "dataset", {"name": name, **params}, seeds={"seed": params.get("seed", 0)}, argv=["lfp", "(cache)"]
        )
        write_dataset(path, ds, record, force=True)
    except (OSError, LfpError):
        pass
    return ds


def load_perturbed_as_dataset(
    path: str | os.PathLike, record_check=None, *, lazy: bool | None = None, progress: Progress = no_progress
) -> Dataset:
    """A perturbed set as training data: train = (perturbed x, *target* labels); val/test = the clean source
    data's splits (selection and evaluation always use clean data with true labels). The perturbed inputs are
    read by rows unless small (``lazy``, see :func:`open_perturbed_set`); the clean data is resolved once and
    kept as ``ds.clean_data``."""
    ps = open_perturbed_set(path, lazy=lazy)
    record = ps.record
    src_meta = record["source"]["dataset"]
    clean_spec = src_meta.get("clean_spec") or src_meta.get("spec")
    if not isinstance(clean_spec, (dict, str)):
        raise ArtifactError(f"{path}: perturbed set does not record the clean data it came from; the file is damaged")
    try:
        clean = resolve(clean_spec, progress=progress)
    except ArtifactError:
        raise
    except InputError as e:
        raise InputError(f"{path}: its clean source data cannot be loaded: {e}") from None
    if tuple(clean.input_shape) != tuple(src_meta["input_shape"]) or clean.num_classes != int(src_meta["num_classes"]):
        raise ArtifactError(
            f"{path}: its clean source data ({tuple(clean.input_shape)}, {clean.num_classes} classes) does not "
            f"match the perturbed inputs ({tuple(src_meta['input_shape'])}, {src_meta['num_classes']} classes)"
        )
    index = torch.from_numpy(ps.index.astype(np.int64))
    x = torch.from_numpy(ps.x) if isinstance(ps.x, np.ndarray) else ps.x
    train = Split(
        x,
        torch.from_numpy(ps.target.astype(np.int64)),
        torch.from_numpy(ps.group.astype(np.int64)),
        index,
        clean_masks(clean, record["params"].get("split"), index),
    )
    splits = {"train": train, **{k: v for k, v in clean.splits.items() if k != "train"}}
    spec = {
        "type": "file",
        "path": str(path),
        "abspath": str(Path(path).resolve()),
        "sha256": sha256_file(path),
        "kind": "perturbed-set",
    }
    ds = dataset_from_meta({**src_meta, "clean_spec": clean_spec}, splits, spec)
    ds.clean_spec = clean_spec
    ds.clean_data = clean
    return ds


def load_data_file(path: str | os.PathLike, expected_sha256: str | None = None) -> Dataset:
    """Any lfp data file: a dataset or a perturbed set (used as training data with its target labels)."""
    f, record = open_h5(path, ["dataset", "perturbed-set"])
    kind = record.get("kind")
    f.close()
    if kind == "perturbed-set":
        return load_perturbed_as_dataset(path)
    spec = {
        "type": "file",
        "path": str(path),
        "abspath": str(Path(path).resolve()),
        "sha256": sha256_file(path),
        "kind": "dataset",
    }
    return read_dataset(path, spec, lazy=None)
