"""Pieces every real dataset shares: building a lazy split, CSV reading with named errors, the root folder."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lfpcli.data.dataset import Split
from lfpcli.errors import InputError

SPLIT_CODES = {
    "0": "train",
    "1": "val",
    "2": "test",
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}


def make_split(x, y: Sequence[int], group: Sequence[int] | None, mask=None) -> Split:
    """A split whose inputs ``x`` are read on demand; ``index`` is each sample's position in the split."""
    yt = torch.as_tensor(np.asarray(y, dtype=np.int64))
    g = torch.full_like(yt, -1) if group is None else torch.as_tensor(np.asarray(group, dtype=np.int64))
    return Split(x, yt, g, torch.arange(len(yt)), mask)


def read_csv(
    path: Path, required: Sequence[str], what: str, aliases: dict[str, Sequence[str]] | None = None
) -> tuple[list[dict[str, str]], dict[str, str]]:
    """Rows of a CSV file as dicts, and which header column serves each wanted name (``aliases``: other header
    names accepted for a column). The first required column missing is named; empty files are refused."""
    if not path.exists():
        raise InputError(f"{what} {path} does not exist")
    if not path.is_file():
        raise InputError(f"{what} {path} is not a file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            rows = [dict(r) for r in reader]
    except UnicodeDecodeError:
        raise InputError(f"{what} {path} is not a text CSV file (not UTF-8)") from None
    except csv.Error as e:
        raise InputError(f"{what} {path} is not a readable CSV file ({e})") from None
    if not header:
        raise InputError(f"{what} {path} is empty; it needs a header line with the columns {', '.join(required)}")
    columns: dict[str, str] = {}
    for name in [*required, *((aliases or {}).keys())]:
        for cand in (name, *((aliases or {}).get(name, ()))):
            if cand in header:
                columns[name] = cand
                break
    for name in required:
        if name not in columns:
            alt = (aliases or {}).get(name, ())
            also = f" (or {', '.join(alt)})" if alt else ""
            raise InputError(f"{what} {path} has no column '{name}'{also}; its columns are {', '.join(header)}")
    for i, r in enumerate(rows):
        for name, col in columns.items():
            if r.get(col) is None and name in required:
                raise InputError(f"{what} {path}: line {i + 2} has too few fields (no value for '{col}')")
    return rows, columns


def int_value(value: str | None, path: Path, line: int, column: str, allowed: Iterable[int], meaning: str) -> int:
    """An integer CSV field that must be one of ``allowed``; otherwise one line naming file, line and value."""
    allowed = list(allowed)
    text = (value or "").strip()
    try:
        v = int(float(text)) if text and float(text) == int(float(text)) else None
    except ValueError:
        v = None
    if v is None or v not in allowed:
        raise InputError(
            f"{path}: line {line}: {column} '{text}' is not one of {', '.join(map(str, allowed))} ({meaning})"
        )
    return v


def relative_file(base: Path, rel: str, path: Path, line: int, what: str = "image") -> Path:
    """A path given relative to ``base`` in a CSV; absolute paths and paths that leave nothing are refused."""
    rel = (rel or "").strip()
    if not rel:
        raise InputError(f"{path}: line {line}: the {what} path is empty")
    return (base / rel.lstrip("/")) if not Path(rel).is_absolute() else Path(rel)


def abs_path(text: str) -> str:
    """A user-given path made absolute (so the recorded spec works from any working folder)."""
    return str(Path(text).expanduser().resolve())


def split_counts(splits: dict[str, Split], num_groups: int) -> dict[str, Any]:
    return {k: s.group_counts(num_groups).tolist() for k, s in splits.items()}
