"""``lfp info``: what an artifact is, how it was made, and whether its parents are unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lfpcli.artifacts import parent_status, read_record, sha256_file


def info(path: str | Path) -> dict[str, Any]:
    """The record of any lfp artifact, plus its own sha256, its contents, and each parent's status
    (``ok``: hash matches; ``changed``: the file at that path differs now; ``missing``: not found)."""
    record, contents = read_record(path)
    return {
        **record,
        "path": str(path),
        "sha256": sha256_file(path),
        "size_bytes": Path(path).stat().st_size,
        "contents": contents,
        "parents": parent_status(record, path),
    }
