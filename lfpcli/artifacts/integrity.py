"""Content checksums: a damaged or altered artifact is reported as such, never returned as data.

Schema 2 artifacts carry a sha256 of their own content, computed when they are written and checked when they are
read (schema 1 files, written before, are read as they are):

- checkpoints: ``meta["checksum"]`` over the metadata (without that field) and every tensor's name, dtype, shape
  and bytes;
- JSON reports: a top-level ``checksum`` over the rest of the object;
- HDF5 files: the first 512 bytes (an HDF5 "user block", which HDF5 skips) hold ``LFP-HDF5 sha256=<hex>``, the
  sha256 of every byte after them, checked before HDF5 parses anything: damaged HDF5 metadata can otherwise
  crash the HDF5 library itself. Inside, the root attribute ``lfp_checksum`` covers the record and every
  group's and dataset's name, shape, dtype and attributes, and HDF5's Fletcher-32 filter protects each chunk of
  tensor data.

The checksums detect damage (a flipped bit, a truncation, a removed dataset or attribute) and edits by tools other
than lfp; they are not signatures.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

import torch

#: Name of the checksum field (checkpoints' meta, JSON reports) and root attribute (HDF5 files).
CHECKSUM_KEY = "checksum"
H5_CHECKSUM_ATTR = "lfp_checksum"
#: The HDF5 user block lfp writes in front of its HDF5 files, and how it starts.
USERBLOCK_SIZE = 512
USERBLOCK_MAGIC = b"LFP-HDF5 sha256="
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def is_hdf5(head: bytes) -> bool:
    """Whether a file's first bytes (at least ``USERBLOCK_SIZE + 8`` of them, or all there are) are an HDF5 file's:
    HDF5's signature at the start, or lfp's user block followed by it."""
    return head.startswith(HDF5_MAGIC) or (
        head.startswith(USERBLOCK_MAGIC) and head[USERBLOCK_SIZE:].startswith(HDF5_MAGIC)
    )


def seal_userblock(path: Any) -> None:
    """Write the sha256 of everything after the user block into the user block of a closed HDF5 file."""
    h = hashlib.sha256()
    with open(path, "r+b") as f:
        f.seek(USERBLOCK_SIZE)
        while block := f.read(1 << 20):
            h.update(block)
        f.seek(0)
        f.write((USERBLOCK_MAGIC + h.hexdigest().encode() + b"\n").ljust(USERBLOCK_SIZE, b"\0"))


def userblock_status(path: Any) -> str:
    """``"ok"``: the file starts with lfp's user block and its content matches it; ``"mismatch"``: it starts with
    one and does not; ``"absent"``: no lfp user block (an HDF5 file written by lfp schema 1, or by another tool)."""
    with open(path, "rb") as f:
        head = f.read(USERBLOCK_SIZE)
        if not head.startswith(USERBLOCK_MAGIC):
            return "absent"
        want = head[len(USERBLOCK_MAGIC) :].split(b"\n", 1)[0].decode("ascii", "replace")
        h = hashlib.sha256()
        while block := f.read(1 << 20):
            h.update(block)
    return "ok" if h.hexdigest() == want else "mismatch"


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str, allow_nan=True).encode()


def json_checksum(obj: Mapping[str, Any]) -> str:
    """sha256 of a JSON object without its own ``checksum`` field."""
    return hashlib.sha256(_canonical({k: v for k, v in obj.items() if k != CHECKSUM_KEY})).hexdigest()


def tensor_bytes(t: torch.Tensor) -> bytes:
    """The raw bytes of a tensor's values, in row-major order, whatever its dtype (a bool's byte as stored, so a
    damaged 1 that still reads as True is seen too; an intact bool's bytes are 0 and 1, as before)."""
    flat = t.detach().cpu().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""


def checkpoint_checksum(state_dict: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> str:
    """sha256 over the metadata (without its ``checksum``) and each tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256(_canonical({k: v for k, v in meta.items() if k != CHECKSUM_KEY}))
    for name in sorted(state_dict):
        t = state_dict[name]
        h.update(_canonical([name, str(t.dtype), list(t.shape)]))
        h.update(tensor_bytes(t))
    return h.hexdigest()


def _attr_value(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("latin-1")
    if hasattr(v, "tolist"):
        return v.tolist()
    return v


def h5_structure(f: Any) -> dict[str, Any]:
    """Every group's and dataset's name, attributes, and (datasets) shape and dtype; the root's attributes."""
    import h5py

    items: dict[str, Any] = {}

    def visit(name: str, obj: Any) -> None:
        entry: dict[str, Any] = {"attrs": {k: _attr_value(obj.attrs[k]) for k in sorted(obj.attrs)}}
        if isinstance(obj, h5py.Dataset):
            entry.update(shape=list(obj.shape), dtype=str(obj.dtype), fletcher32=bool(obj.fletcher32))
        items[name] = entry

    f.visititems(visit)
    root = {k: _attr_value(f.attrs[k]) for k in sorted(f.attrs) if k != H5_CHECKSUM_ATTR}
    return {"root": root, "items": items}


def h5_checksum(f: Any) -> str:
    """sha256 of :func:`h5_structure`."""
    return hashlib.sha256(_canonical(h5_structure(f))).hexdigest()


def reseal(path: Any) -> None:
    """Recompute every checksum of an lfp file edited on purpose (tests use it to build files that are well
    sealed but wrong inside, to check that readers still validate what they read); the checksums then vouch
    for the edit, so never use it on a file whose content matters."""
    with open(path, "rb") as f:
        head = f.read(USERBLOCK_SIZE + 8)
    if is_hdf5(head):
        import h5py

        with h5py.File(path, "r+") as f:
            f.attrs[H5_CHECKSUM_ATTR] = h5_checksum(f)
        if head.startswith(USERBLOCK_MAGIC):
            seal_userblock(path)
        return
    if head.lstrip()[:1] == b"{":
        obj = json.loads(open(path).read())
        obj[CHECKSUM_KEY] = json_checksum(obj)
        with open(path, "w") as f:
            f.write(json.dumps(obj, indent=2) + "\n")
        return
    obj = torch.load(path, map_location="cpu", weights_only=True)
    obj["meta"][CHECKSUM_KEY] = checkpoint_checksum(obj["state_dict"], obj["meta"])
    torch.save(obj, path)


__all__ = [
    "reseal",
    "CHECKSUM_KEY",
    "H5_CHECKSUM_ATTR",
    "checkpoint_checksum",
    "h5_checksum",
    "h5_structure",
    "json_checksum",
    "tensor_bytes",
]
