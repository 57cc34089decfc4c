"""Resolve data specs to datasets: built-ins (generated, then cached), real datasets read from the user's disk
(:mod:`lfpcli.data.real`), and lfp HDF5 files (dataset caches, perturbed sets; read lazily)."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lfpcli.data.builtin import BUILTINS
from lfpcli.data.dataset import Dataset
from lfpcli.data.real import REAL
from lfpcli.data.real.common import abs_path
from lfpcli.errors import ConfigError, InputError
from lfpcli.progress import Progress, no_progress


def list_datasets() -> list[str]:
    return sorted(BUILTINS)


def list_real_datasets() -> list[str]:
    """The datasets read from the user's disk (each needs ``root=DIR`` or, for ``folder``, ``csv=FILE``)."""
    return list(REAL)


def catalogue() -> list[dict[str, Any]]:
    """Every data spec lfp knows, for ``lfp data --list``: name, where it comes from (``built-in``: generated offline
    and cached; ``your disk``: read from ``root``/``csv``), a one-line description and each parameter's type and
    default (``required`` for the one a disk dataset needs)."""
    import inspect

    out = []
    for name in list_datasets():
        entry = BUILTINS[name]
        defaults = entry.full_params({})
        out.append(
            {
                "name": name,
                "source": "built-in",
                "description": entry.summary,
                "params": {k: {"type": t.__name__, "default": defaults.get(k)} for k, t in entry.param_types.items()},
                "train_defaults": entry.train_defaults,
                "perturb_defaults": entry.perturb_defaults,
                "example": name,
            }
        )
    for name, entry in REAL.items():
        sig = inspect.signature(entry.builder).parameters
        params = {}
        for k, t in entry.param_types.items():
            d = sig[k].default if k in sig else None
            params[k] = {
                "type": t.__name__,
                "default": "required" if k == entry.required else (None if d is inspect.Parameter.empty else d),
            }
        out.append(
            {
                "name": name,
                "source": "your disk",
                "description": entry.summary,
                "params": params,
                "example": f"{name}:{entry.required}={'FILE.csv' if entry.required == 'csv' else 'DIR'}",
            }
        )
    return out


def _all_names() -> str:
    return ", ".join(list_datasets()) + "; from your disk: " + ", ".join(f"{n}:{REAL[n].required}=..." for n in REAL)


def parse_spec(text: str | dict[str, Any]) -> dict[str, Any]:
    """``"spurious-digits:seed=1,correlation=0.9"`` -> builtin spec dict; a path to an ``.h5`` -> file spec."""
    if isinstance(text, dict):
        return text
    text = str(text).strip()
    if not text:
        raise ConfigError(
            "empty data spec; give a built-in name (" + ", ".join(list_datasets()) + ") or an lfp .h5 file"
        )
    name, _, rest = text.partition(":")
    if name in BUILTINS:
        return {"type": "builtin", "name": name, "params": _key_values(text, name, rest, BUILTINS[name].param_types)}
    if name in REAL:
        return _parse_real(text, name, rest)
    p = Path(text)
    if p.suffix.lower() in (".h5", ".hdf5") or p.exists():
        if p.is_dir():
            raise InputError(
                f"{p} is a folder, not an lfp .h5 data file; for a dataset on your disk name it, e.g. "
                f"waterbirds:root={text} (also {', '.join(n for n in REAL if n not in ('waterbirds', 'folder'))})"
            )
        if not p.is_file():
            raise InputError(f"data file {p} does not exist")
        return {"type": "file", "path": str(p)}
    raise ConfigError(f"unknown dataset '{text}'; choose one of {_all_names()}, or give an lfp .h5 file")


def _key_values(text: str, name: str, rest: str, types: dict[str, type]) -> dict[str, Any]:
    """The ``key=value,...`` after a data spec's name, each value of its key's type. A key the data does not take is
    named, with the closest one it does take (as the CLI does for a misspelled option) and the list of all."""
    takes = f"{name} takes {', '.join(f'{k}=...' for k in types)}"
    params: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = (s.strip() for s in item.partition("="))
        if key not in types:
            close = difflib.get_close_matches(key, types, n=1) or difflib.get_close_matches(key.lower(), types, n=1)
            hint = f" (did you mean {close[0]}=...?)" if close else ""
            raise ConfigError(f"data spec '{text}': {name} has no key '{key}'{hint}; {takes}")
        if not eq:
            raise ConfigError(f"data spec '{text}': '{key}' has no value: write {key}=VALUE ({takes})")
        try:
            params[key] = types[key](value)
        except ValueError:
            kind = "whole number" if types[key] is int else "number" if types[key] is float else types[key].__name__
            raise ConfigError(f"data spec '{text}': {key} must be a {kind}, not '{value}'") from None
    return params


def _parse_real(text: str, name: str, rest: str) -> dict[str, Any]:
    """``waterbirds:root=DIR,size=64`` -> ``{"type": "real", "name", "params"}``; path parameters made absolute."""
    entry = REAL[name]
    params = _key_values(text, name, rest, entry.param_types)
    for key in entry.paths:
        if params.get(key) and params[key] not in ("auto", "none"):
            params[key] = abs_path(params[key])
    if not params.get(entry.required):
        what = "FILE" if entry.required == "csv" else "DIR"
        raise ConfigError(f"data spec '{text}': {name} needs {entry.required}={what} ({entry.summary})")
    return {"type": "real", "name": name, "params": params}


def spec_label(spec: dict[str, Any]) -> str:
    """Short human name of a data spec."""
    if spec.get("type") == "file":
        return str(spec.get("path"))
    params = spec.get("params") or {}
    if spec.get("type") == "real":  # the root (or csv) and what differs from the defaults; derived values left out
        shown = {
            k: v
            for k, v in params.items()
            if k in ("root", "csv")
            or (k == "size" and v != 224)
            or (k == "order" and v != "spuco")
            or (k in ("val", "num_classes") and v)
            or (k == "mode" and v != "RGB")
            or (k == "classes" and v)
        }
        return spec.get("name", "?") + ":" + ",".join(f"{k}={v}" for k, v in shown.items())
    entry = BUILTINS.get(spec.get("name", ""))
    defaults = entry.full_params({}) if entry is not None else {}
    extra = ",".join(f"{k}={v}" for k, v in sorted(params.items()) if defaults.get(k, object()) != v)
    return spec.get("name", "?") + (f":{extra}" if extra else "")


def data_key(spec: Any) -> str:
    """A data spec as one comparable string, the same for every record of the same data: a built-in's name and every
    parameter (those a record leaves out at their defaults, so a record written before a parameter existed compares
    equal), or a file's sha256."""
    if not isinstance(spec, Mapping):
        return str(spec)
    if spec.get("type") == "file":
        return f"file:{spec.get('sha256') or spec.get('path')}"
    params = spec.get("params") or {}
    try:
        entry = BUILTINS.get(str(spec.get("name")))
        if entry is not None:
            params = entry.full_params({k: v for k, v in params.items() if k in entry.param_types})
    except (TypeError, ValueError, AttributeError):  # an odd record still compares by what it records
        params = spec.get("params") or {}
    return (
        f"{spec.get('name')}:" + ",".join(f"{k}={params[k]}" for k in sorted(params)) + f"@v{spec.get('version', '?')}"
    )


def cache_dir() -> Path:
    """Where generated built-in datasets are cached: ``$LFP_CACHE_DIR``, else ``$XDG_CACHE_HOME/lfp``."""
    if os.environ.get("LFP_CACHE_DIR"):
        return Path(os.environ["LFP_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lfp"


def builtin_params(spec: dict[str, Any]) -> tuple[str, Any, dict[str, Any]]:
    """``(name, entry, every builder parameter)`` of a parsed built-in spec (the parameters it leaves out at their
    defaults; keys the built-in does not take dropped)."""
    name = spec.get("name")
    if name not in BUILTINS:
        raise ConfigError(f"unknown dataset '{name}'; choose one of {_all_names()}")
    entry = BUILTINS[name]
    return (
        name,
        entry,
        entry.full_params({k: v for k, v in (spec.get("params") or {}).items() if k in entry.param_types}),
    )


def build(spec: str | dict[str, Any], *, progress: Progress = no_progress) -> Dataset:
    """The dataset a built-in spec or a spec of data on the user's disk names, built in memory (a built-in is
    generated afresh; :func:`lfpcli.artifacts.dataspec.resolve` caches it, and reads lfp ``.h5`` files)."""
    spec = parse_spec(spec)
    if spec.get("type") == "builtin":
        _, entry, params = builtin_params(spec)
        return entry.build(params, progress)
    if spec.get("type") == "real":
        return _resolve_real(spec, progress)
    if spec.get("type") == "file":
        raise ConfigError(f"{spec.get('path')} is an lfp data file; read it with lfpcli.artifacts.dataspec.resolve")
    raise ConfigError(f"unrecognised data spec {spec!r}")


def _resolve_real(spec: dict[str, Any], progress: Progress) -> Dataset:
    name = spec.get("name")
    if name not in REAL:
        raise ConfigError(f"unknown dataset '{name}'; choose one of {_all_names()}")
    entry = REAL[name]
    given = spec.get("params") or {}
    if not isinstance(given, dict):
        raise ConfigError(f"malformed data spec {spec!r}")
    params = entry.full_params({k: v for k, v in given.items() if k in entry.param_types})
    return entry.build(params, progress)
