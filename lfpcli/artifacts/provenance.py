"""The provenance record every artifact carries: what it is, how it was made, and from which files.

A record is a JSON-able dict::

    {"kind": "checkpoint", "schema": 1, "command": "lfp train ...", "argv": [...],
     "params": {...every parameter, defaults resolved...}, "seeds": {"seed": 0},
     "versions": {"lfpcli": ..., "torch": ..., "python": ..., "cuda": ...}, "device": "cpu", "threads": 2,
     "created": "2026-11-25T10:00:00+00:00",
     "parents": [{"role": "model", "path": "model.pt", "abspath": "/abs/model.pt",
                  "sha256": "...", "kind": "checkpoint"}]}
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any, Mapping

import torch

from lfpcli import version
from lfpcli.artifacts.files import sha256_file
from lfpcli.errors import ArtifactError

#: 2: every artifact carries a checksum of its content (``lfpcli.artifacts.integrity``); 1: before that.
SCHEMA_VERSION = 2
KINDS = ("checkpoint", "perturbed-set", "dataset", "eval", "density", "saliency-maps", "synth-results")


def jsonable(obj: Any) -> Any:
    """Convert tuples, paths, numpy and torch scalars into plain JSON types (and check it serialises)."""

    def default(o):
        if isinstance(o, Path):
            return str(o)
        if isinstance(o, torch.device):
            return str(o)
        if hasattr(o, "tolist"):
            return o.tolist()
        if hasattr(o, "item"):
            return o.item()
        raise TypeError(f"cannot record {type(o).__name__} in an artifact")

    return json.loads(json.dumps(obj, default=default))


def versions() -> dict[str, str | None]:
    return {
        "lfpcli": version.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.version.cuda,
    }


def command_line(argv: list[str] | None = None) -> tuple[str, list[str]]:
    """The exact command that is running, as a shell-quoted string and as a list."""
    argv = list(sys.argv if argv is None else argv)
    if argv and os.path.basename(argv[0]) in ("lfp", "__main__.py"):
        argv[0] = "lfp"
    return shlex.join(argv), argv


def parent_entry(role: str, path: str | os.PathLike, kind: str | None) -> dict[str, Any]:
    p = Path(path)
    return {"role": role, "path": str(path), "abspath": str(p.resolve()), "sha256": sha256_file(p), "kind": kind}


def make_record(
    kind: str,
    params: Mapping[str, Any],
    *,
    seeds: Mapping[str, Any] | None = None,
    parents: list[dict[str, Any]] | None = None,
    device: str | torch.device | None = None,
    argv: list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Build the provenance record of a new artifact of ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"unknown artifact kind {kind!r}")
    cmd, args = command_line(argv)
    record = {
        "kind": kind,
        "schema": SCHEMA_VERSION,
        "command": cmd,
        "argv": args,
        "params": dict(params),
        "seeds": dict(seeds or {}),
        "versions": versions(),
        "device": str(device) if device is not None else "cpu",
        # CPU results depend on it: another thread count sums in another order, so trained weights differ by
        # rounding (and a training run can drift from there)
        "threads": torch.get_num_threads(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "parents": list(parents or []),
    }
    record.update(extra)
    return jsonable(record)


def locate_parent(entry: Mapping[str, Any], artifact_path: str | os.PathLike | None) -> Path | None:
    """Find a parent file: its absolute path, else its recorded path relative to the artifact's folder."""
    if not isinstance(entry, Mapping):
        return None
    abspath, path = entry.get("abspath") or "", entry.get("path") or ""
    if not isinstance(abspath, str) or not isinstance(path, str):
        return None
    candidates = [Path(abspath), Path(path)]
    if artifact_path is not None:
        candidates.append(Path(artifact_path).resolve().parent / Path(path).name)
    for c in candidates:
        if str(c) not in ("", ".") and c.is_file():
            return c
    return None


def check_parents(record: Mapping[str, Any], artifact_path: str | os.PathLike | None) -> list[dict[str, Any]]:
    """The record's parent entries, checked: a list of objects with string paths and hashes."""
    parents = record.get("parents") or []
    ok = isinstance(parents, list) and all(
        isinstance(e, dict)
        and all(isinstance(e.get(k), str) for k in ("path", "sha256"))
        and all(isinstance(e.get(k, ""), (str, type(None))) for k in ("role", "abspath", "kind"))
        for e in parents
    )
    if not ok:
        raise ArtifactError(
            f"{artifact_path or 'the artifact'}: its record has a malformed 'parents' list; the file is damaged"
        )
    return parents


def parent_status(record: Mapping[str, Any], artifact_path: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """For each recorded parent: the file checked (``found``) and whether its sha256 still matches (``status``
    ok/changed/missing, ``sha256_now``).

    The file checked is the one of the parent's name beside the artifact when there is one (a copied or moved
    folder keeps the original's absolute paths in its records, and the file beside is the copy's own), else the
    one :func:`locate_parent` finds. When both exist and are different files, the other is checked too and
    reported as ``elsewhere``: ``{"path", "status", "sha256_now"}``.
    """
    out = []
    for entry in check_parents(record, artifact_path):
        recorded = locate_parent(entry, artifact_path)
        beside = Path(artifact_path).resolve().parent / Path(entry["path"]).name if artifact_path is not None else None
        found = beside if beside is not None and beside.is_file() else recorded
        row = {**entry, "found": str(found) if found else None, **_hash_status(found, entry)}
        if found is not None and recorded is not None and not os.path.samefile(found, recorded):
            row["elsewhere"] = {"path": str(recorded.resolve()), **_hash_status(recorded, entry)}
        out.append(row)
    return out


def _hash_status(path: Path | None, entry: Mapping[str, Any]) -> dict[str, Any]:
    if path is None:
        return {"status": "missing", "sha256_now": None}
    now = sha256_file(path)
    return {"status": "ok" if now == entry.get("sha256") else "changed", "sha256_now": now}


def parent_warnings(record: Mapping[str, Any], artifact_path: str | os.PathLike | None = None) -> list[str]:
    """Warnings for parents whose content changed since the artifact was made, or that can no longer be found
    (neither is an error: the artifact itself holds what later stages need)."""
    msgs = []
    for p in parent_status(record, artifact_path):
        if p["status"] == "missing":
            msgs.append(
                f"{artifact_path} was made from {p.get('role') or 'parent'} {p['path']} (sha256 {p['sha256'][:12]}), "
                f"which is no longer there: the chain behind it cannot be checked"
            )
        elif p["status"] == "changed":
            msgs.append(
                f"{artifact_path} was made from {p['path']} (sha256 {p['sha256'][:12]}), but {p['found']} now has "
                f"sha256 {p['sha256_now'][:12]}: it changed since, so results may not match the record"
            )
    return msgs
