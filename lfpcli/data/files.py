"""Glue between data specs and the files that hold data: lfp data files and the built-in cache."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import lfpcli
from lfpcli.artifacts.datasets import load_data_file, read_dataset, write_dataset
from lfpcli.artifacts.provenance import make_record
from lfpcli.data.dataset import Dataset
from lfpcli.errors import LfpError
from lfpcli.progress import Progress, no_progress

__all__ = ["cached_builtin", "load_data_file"]

#: Layout of the cached files; part of the cache key, so a cache written by an older layout is rebuilt, never
#: read. 2: splits carry their foreground ``mask`` where the data has one (spurious-digits).
CACHE_LAYOUT = 2


def cached_builtin(name: str, params: dict[str, Any], entry: Any, cache: Path, progress: Progress = no_progress) -> Dataset:
    """Build a built-in dataset once and keep it as an lfp dataset file under ``cache``.

    The cache key covers the name, every builder parameter, the generator version, lfp's version and the cache
    layout (``CACHE_LAYOUT``), so changing any of them rebuilds. Any problem with the cache (unwritable, corrupt) falls back to building in memory.
    """
    # lfp's own version is in the key too: the cached file also holds metadata (defaults, names) from the code
    key = hashlib.sha256(json.dumps([name, entry.version, lfpcli.__version__, CACHE_LAYOUT, sorted(params.items())]).encode()).hexdigest()[:16]
    path = cache / f"{name}-{key}.h5"
    if path.is_file():
        try:
            ds = read_dataset(path)
            if ds.spec.get("name") == name and ds.spec.get("version") == entry.version and ds.spec.get("params") == params:
                return ds
        except (LfpError, OSError):
            pass
    ds = entry.build(params, progress)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        record = make_record("dataset", {"name": name, **params}, seeds={"seed": params.get("seed", 0)}, argv=["lfp", "(cache)"])
        write_dataset(path, ds, record, force=True)
    except (OSError, LfpError):
        pass
    return ds
