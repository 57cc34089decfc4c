"""HDF5 artifacts (``.h5``): datasets and perturbed sets.

Layout: the root carries the attributes ``lfp_kind``, ``lfp_schema`` and ``lfp_record`` (the provenance
record as JSON text, never a pickle). Tensors are chunked, gzip-compressed datasets, written batch by batch
so memory stays bounded by the batch; each dataset carries a ``description`` attribute.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

import h5py
import numpy as np

from lfpcli.artifacts.files import atomic_output
from lfpcli.artifacts.integrity import (
    H5_CHECKSUM_ATTR,
    USERBLOCK_SIZE,
    h5_checksum,
    is_hdf5,
    seal_userblock,
    userblock_status,
)
from lfpcli.artifacts.provenance import SCHEMA_VERSION, check_parents, jsonable
from lfpcli.errors import ArtifactError, InputError

#: The kinds of artifact stored as HDF5 (``lfp_kind``).
H5_KINDS = ("dataset", "perturbed-set", "density", "saliency-maps", "synth-results")


class H5Writer:
    """Create an HDF5 artifact under a temporary name; it appears under ``path`` only when ``close`` succeeds.

    Use as a context manager::

        with H5Writer(path, "perturbed-set", force=False) as w:
            w.create("x", (n, 3, 28, 28), "float32", "perturbed inputs")
            w.write("x", slice(0, 64), batch)
            w.record = record
    """

    def __init__(self, path: str | os.PathLike, kind: str, *, force: bool = False):
        self.path, self.kind, self.force = Path(path), kind, force
        self.record: dict[str, Any] | None = None
        self._ctx = None

    def __enter__(self) -> "H5Writer":
        self._ctx = atomic_output(self.path, self.force)
        tmp = self._tmp = self._ctx.__enter__()
        try:
            self.file = h5py.File(tmp, "w", userblock_size=USERBLOCK_SIZE)
        except BaseException:
            self._ctx.__exit__(*__import__("sys").exc_info())
            raise
        return self

    def create(
        self,
        name: str,
        shape: tuple[int, ...],
        dtype: str,
        description: str,
        *,
        compress: bool = True,
        chunk_bytes: int | None = None,
    ) -> None:
        """A chunked dataset (rows of ~1 MB per chunk; ``chunk_bytes``: at most that many bytes per chunk, at least
        one row, for data read by rows in random order: a shuffled batch then decompresses only what it uses)."""
        chunks = None
        if len(shape) and shape[0] > 0:
            per_row = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            if chunk_bytes is not None:
                rows = max(1, min(shape[0], chunk_bytes // max(per_row * np.dtype(dtype).itemsize, 1)))
            else:
                rows = max(1, min(shape[0], (1 << 18) // max(per_row, 1)))  # ~1 MB chunks of float32
            chunks = (rows, *shape[1:])
        kw = dict(compression="gzip", compression_opts=4, shuffle=True) if compress and chunks else {}
        if chunks:
            kw["fletcher32"] = True  # a chunk whose bytes changed fails to read instead of returning them
        ds = self.file.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks, **kw)
        ds.attrs["description"] = description

    def write(self, name: str, where: slice, values: Any) -> None:
        self.file[name][where] = _numpy(values)

    def set_attr(self, name: str, key: str, value: str) -> None:
        """A text attribute on an existing dataset (e.g. which estimator produced it)."""
        self.file[name].attrs[key] = value

    def put(self, name: str, values: Any, description: str) -> None:
        """Create and fill a whole dataset at once."""
        arr = _numpy(values)
        self.create(name, arr.shape, arr.dtype.str, description)
        self.file[name][...] = arr

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None:
                if self.record is None:
                    raise RuntimeError("H5Writer closed without a record")
                rec = jsonable(self.record)
                self.file.attrs["lfp_kind"] = self.kind
                self.file.attrs["lfp_schema"] = SCHEMA_VERSION
                self.file.attrs["lfp_record"] = json.dumps(rec)
                self.file.attrs[H5_CHECKSUM_ATTR] = h5_checksum(self.file)
        except BaseException:
            self.file.close()
            self._ctx.__exit__(*__import__("sys").exc_info())
            raise
        self.file.close()
        if exc_type is None:
            try:
                seal_userblock(self._tmp)
            except BaseException:
                self._ctx.__exit__(*__import__("sys").exc_info())
                raise
        return bool(self._ctx.__exit__(exc_type, exc, tb))


def _numpy(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def open_h5(path: str | os.PathLike, kinds: Iterable[str] | None = None) -> tuple[h5py.File, dict[str, Any]]:
    """Open an lfp HDF5 artifact read-only and return ``(file, record)``; check kind and schema first."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"file {p} does not exist")
    if p.is_dir():
        raise InputError(f"{p} is a folder, not an HDF5 file")
    if p.stat().st_size == 0:
        raise ArtifactError(f"{p} is empty, not an lfp HDF5 file")
    # before HDF5 parses a byte: damaged HDF5 metadata can crash the HDF5 library itself
    sealed = userblock_status(p)
    if sealed == "mismatch":
        raise ArtifactError(
            f"{p} does not match the checksum it was written with (truncated, damaged or edited); write it again"
        )
    try:
        f = h5py.File(p, "r")
    except Exception:
        raise ArtifactError(f"{p} {_not_hdf5(p)}") from None
    try:
        kind = f.attrs.get("lfp_kind")
        raw = f.attrs.get("lfp_record")
        if kind is None or raw is None:
            raise ArtifactError(f"{p} is an HDF5 file but not one written by lfp (no lfp_kind/lfp_record attributes)")
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        try:
            record = json.loads(raw)
        except (TypeError, ValueError):
            raise ArtifactError(f"{p} has an unreadable lfp_record attribute (not JSON); the file is damaged") from None
        if not isinstance(record, dict):
            raise ArtifactError(f"{p} has a malformed lfp_record attribute (not a JSON object); the file is damaged")
        try:
            schema = int(f.attrs.get("lfp_schema", -1))
        except (TypeError, ValueError):
            raise ArtifactError(f"{p} has an unreadable lfp_schema attribute; the file is damaged") from None
        if schema > SCHEMA_VERSION:
            raise ArtifactError(f"{p} has schema {schema}; this lfp reads schema 1..{SCHEMA_VERSION}: upgrade lfp")
        if schema < 1:
            raise ArtifactError(
                f"{p} has an invalid schema {schema} (this lfp reads schema 1..{SCHEMA_VERSION}); the file is damaged"
            )
        if kind not in H5_KINDS:
            raise ArtifactError(
                f"{p} has an unknown lfp_kind '{kind}' (this lfp knows {', '.join(H5_KINDS)}); "
                f"it was written by another lfp version, or is damaged"
            )
        if record.get("kind", kind) != kind:
            raise ArtifactError(
                f"{p} says it is a {kind} file but its record says {record.get('kind')!r}; the file is damaged"
            )
        kinds = tuple(kinds or ())
        if kinds and kind not in kinds:
            raise ArtifactError(f"{p} is a {kind} file; expected {' or '.join(kinds)}")
        check_parents(record, p)
        # last, so that a file with a specific fault is named for it; a damaged one that passed is caught here
        if schema >= 2 and sealed != "ok":
            raise ArtifactError(
                f"{p} has lost the checksum lfp writes in front of its HDF5 files; the file is damaged "
                f"or was rewritten by another tool"
            )
        if schema >= 2:
            stored = f.attrs.get(H5_CHECKSUM_ATTR)
            stored = stored.decode() if isinstance(stored, bytes) else stored
            if stored is None:
                raise ArtifactError(f"{p} has lost its {H5_CHECKSUM_ATTR} attribute; the file is damaged or was edited")
            if stored != h5_checksum(f):
                raise ArtifactError(
                    f"{p} does not match the checksum it was written with (a group, dataset or attribute "
                    f"was changed, added or removed); the file is damaged or was edited"
                )
        return f, record
    except BaseException:
        f.close()
        raise


def _not_hdf5(p: Path) -> str:
    """Why ``p`` cannot be opened as HDF5, in words (the end of a sentence that starts with its name)."""
    with open(p, "rb") as f:
        head = f.read(USERBLOCK_SIZE + 8)
    if is_hdf5(head):
        return "is a damaged or truncated HDF5 file; write it again"
    if head.startswith(b"PK"):
        return (
            "is a PyTorch checkpoint (a zip archive), not an lfp .h5 file: a checkpoint is the --in of lfp perturb, "
            "eval, density and saliency; here a perturbed set, dataset or density file (.h5) is wanted"
        )
    if head.lstrip()[:1] == b"{":
        return "is a JSON file, not an HDF5 file: this option wants an lfp .h5 file"
    try:
        head.decode("utf-8")
        return "is a text file, not an HDF5 file: this option wants an lfp .h5 file"
    except UnicodeDecodeError:
        return "is not an HDF5 file (another format): this option wants an lfp .h5 file"


def read_array(f: h5py.File, name: str, *, path: str | os.PathLike = "", ndim: int | None = None) -> np.ndarray:
    """Read a whole dataset, with a clear error if it is missing, unreadable or of the wrong rank."""
    if name not in f:
        raise ArtifactError(f"{path or f.filename} has no dataset '{name}'")
    try:
        arr = f[name][...]
    except Exception:
        raise ArtifactError(
            f"{path or f.filename}: dataset '{name}' cannot be read (file truncated or corrupt)"
        ) from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        dtype = getattr(arr, "dtype", type(arr).__name__)
        raise ArtifactError(
            f"{path or f.filename}: dataset '{name}' holds {dtype} values, not numbers; the file is damaged"
        )
    if ndim is not None and arr.ndim != ndim:
        raise ArtifactError(f"{path or f.filename}: dataset '{name}' has {arr.ndim} dimensions, expected {ndim}")
    return arr


def dataset_summary(f: h5py.File) -> dict[str, dict[str, Any]]:
    """Name -> shape, dtype and description of every dataset in the file (for ``lfp info``)."""
    out: dict[str, dict[str, Any]] = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out[name] = {
                "shape": list(obj.shape),
                "dtype": str(obj.dtype),
                "description": str(obj.attrs.get("description", "")),
            }

    f.visititems(visit)
    return out
