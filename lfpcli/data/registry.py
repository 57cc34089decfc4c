"""Resolve data specs to datasets: built-ins (generated, then cached) and lfp HDF5 files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lfpcli.data.builtin import BUILTINS
from lfpcli.data.dataset import Dataset
from lfpcli.errors import ConfigError, InputError
from lfpcli.progress import Progress, no_progress


def list_datasets() -> list[str]:
    return sorted(BUILTINS)


def parse_spec(text: str | dict[str, Any]) -> dict[str, Any]:
    """``"spurious-digits:seed=1,correlation=0.9"`` -> builtin spec dict; a path to an ``.h5`` -> file spec."""
    if isinstance(text, dict):
        return text
    text = str(text).strip()
    if not text:
        raise ConfigError("empty data spec; give a built-in name (" + ", ".join(list_datasets()) + ") or an lfp .h5 file")
    name, _, rest = text.partition(":")
    if name in BUILTINS:
        types = BUILTINS[name].param_types
        params: dict[str, Any] = {}
        for item in filter(None, rest.split(",")):
            key, eq, value = item.partition("=")
            if not eq or key not in types:
                raise ConfigError(f"data spec '{text}': {name} takes {', '.join(f'{k}=...' for k in types)}")
            try:
                params[key] = types[key](value)
            except ValueError:
                raise ConfigError(f"data spec '{text}': {key} must be a {types[key].__name__}") from None
        return {"type": "builtin", "name": name, "params": params}
    p = Path(text)
    if p.suffix.lower() in (".h5", ".hdf5") or p.exists():
        if p.is_dir():
            raise InputError(f"{p} is a folder, not an lfp .h5 data file")
        if not p.is_file():
            raise InputError(f"data file {p} does not exist")
        return {"type": "file", "path": str(p)}
    raise ConfigError(f"unknown dataset '{text}'; choose one of {', '.join(list_datasets())}, or give an lfp .h5 file")


def cache_dir() -> Path:
    """Where generated built-in datasets are cached: ``$LFP_CACHE_DIR``, else ``$XDG_CACHE_HOME/lfp``."""
    if os.environ.get("LFP_CACHE_DIR"):
        return Path(os.environ["LFP_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lfp"


def resolve(spec: str | dict[str, Any], *, use_cache: bool = True, progress: Progress = no_progress) -> Dataset:
    """Build or load the dataset a spec names; ``progress`` hears about a built-in being generated."""
    spec = parse_spec(spec)
    if spec.get("type") == "builtin":
        name = spec.get("name")
        if name not in BUILTINS:
            raise ConfigError(f"unknown dataset '{name}'; choose one of {', '.join(list_datasets())}")
        entry = BUILTINS[name]
        params = entry.full_params({k: v for k, v in (spec.get("params") or {}).items() if k in entry.param_types})
        if use_cache:
            from lfpcli.data.files import cached_builtin

            return cached_builtin(name, params, entry, cache_dir(), progress)
        return entry.build(params, progress)
    if spec.get("type") == "file":
        from lfpcli.data.files import load_data_file

        return load_data_file(spec["path"], expected_sha256=spec.get("sha256"))
    raise ConfigError(f"unrecognised data spec {spec!r}")
