"""Recognise any lfp artifact by content, whatever its extension, and return its record."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lfpcli.artifacts.checkpoint import load_checkpoint
from lfpcli.artifacts.h5 import dataset_summary, open_h5
from lfpcli.artifacts.integrity import USERBLOCK_SIZE, is_hdf5
from lfpcli.artifacts.jsonfile import load_json_artifact
from lfpcli.artifacts.whatfile import describe_non_checkpoint
from lfpcli.errors import ArtifactError, InputError

#: What the files that carry an lfp record are, for a message about one that does not.
WHAT_IS_ONE = (
    "lfp writes checkpoints (.pt), HDF5 files (.h5) and eval reports (.json), each with the record of how it was made"
)


def read_record(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return ``(record, contents)`` for a checkpoint, HDF5 or JSON artifact.

    ``contents`` summarises what the file holds: tensor names and shapes.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"file {p} does not exist")
    if p.is_dir():
        raise InputError(f"{p} is a folder, not an lfp artifact")
    with open(p, "rb") as f:
        head = f.read(USERBLOCK_SIZE + 8)
    if not head:
        raise ArtifactError(f"{p} is empty, not an lfp artifact")
    if is_hdf5(head):
        f, record = open_h5(p)
        with f:
            return record, {"datasets": dataset_summary(f)}
    stranger = None if head.lstrip()[:1] == b"{" else describe_non_checkpoint(p)
    if stranger:
        raise ArtifactError(f"{p} is {stranger}, not an lfp artifact ({WHAT_IS_ONE})")
    if head[:2] == b"PK" or p.suffix in (".pt", ".pth", ".ckpt"):
        sd, meta = load_checkpoint(p)
        return meta, {"state_dict": {k: list(v.shape) for k, v in sd.items()}}
    if head.lstrip()[:1] == b"{":
        return load_json_artifact(p), {}
    raise ArtifactError(f"{p} is not an lfp artifact ({WHAT_IS_ONE})")
