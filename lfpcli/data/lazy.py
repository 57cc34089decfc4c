"""Samples read on demand: a split whose inputs need not fit in memory.

A :class:`Rows` is ``N`` samples of one fixed shape that are read when asked for. Indexing one (``rows[a:b]``,
``rows[tensor_of_indices]``, ``rows.read(indices)``) returns a float32 tensor in pixel space [0, 1] (or a bool
tensor for masks), exactly as the in-memory tensor of a built-in split would; nothing is cached beyond what
the source itself keeps (HDF5's chunk cache, the operating system's page cache).

Sources:

- :class:`H5Rows`: one dataset of an lfp HDF5 file (a dataset cache ``<split>/x`` of uint8 or float32 values,
  a perturbed set's ``x``, masks); float values are checked (finite, inside [0, 1]) on every read, since the
  file is no longer checked as a whole when it is opened;
- :class:`ArrayRows`: a numpy array or memory map (MNIST's idx files, CIFAR's batches);
- :class:`View`: the rows of another source at given positions (a subset, a perturbed set's clean masks);
- the image-file sources of :mod:`lfpcli.data.real.images`, which decode, resize and crop on demand.

Iterating batches (:func:`iter_batches`) runs the reads in ``workers`` DataLoader worker processes when the
source asks for them (decoding JPEGs), in order, so a shuffled epoch is the same whatever the worker count.
An lfp error raised inside a worker reaches the caller as the same one-line error, never as a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from lfpcli.errors import ArtifactError, InputError, LfpError

#: Decoded HDF5 chunks kept per open dataset (bytes; ``$LFP_H5_CACHE_MB``, default 4): lfp writes inputs in
#: chunks of a few rows, so a cache only has to hold the chunks of one batch; a fixed budget whatever the file.
H5_CHUNK_CACHE = int(float(os.environ.get("LFP_H5_CACHE_MB", "4")) * (1 << 20))


_LIBC: Any = None


def release_free_memory() -> None:
    """Hand the C heap's free pages back to the operating system (glibc's ``malloc_trim(0)``; a no-op elsewhere).

    Streaming allocates and frees batch-sized buffers (tensors, decoded chunks) between the small long-lived
    allocations of HDF5 and PyTorch; glibc then keeps the freed pages in a fragmented heap, and a process's
    resident memory grows with the number of batches even though what it holds does not (measured: perturb on
    100,000 samples grew to 3.8 GB). Called once per batch read or written, it keeps peak memory flat; it costs
    well under a millisecond against a batch's work."""
    global _LIBC
    if _LIBC is None:
        _LIBC = False
        try:
            import ctypes
            import ctypes.util

            name = ctypes.util.find_library("c")
            lib = ctypes.CDLL(name) if name else None
            if lib is not None and hasattr(lib, "malloc_trim"):
                lib.malloc_trim.argtypes, lib.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
                _LIBC = lib
        except OSError:
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


def default_workers() -> int:
    """DataLoader worker processes for sources that decode (image files): ``$LFP_WORKERS``, else one per CPU
    core but one, at most 8 (0 reads in the main process)."""
    env = os.environ.get("LFP_WORKERS")
    if env is not None and env.strip():
        try:
            return max(0, int(env))
        except ValueError:
            raise InputError(f"LFP_WORKERS must be a whole number of worker processes, got '{env}'") from None
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def as_index(key: Any, n: int) -> tuple[np.ndarray, bool]:
    """``(int64 positions, is_scalar)`` for an index key: an int, a slice, a bool mask, or a sequence / array /
    tensor of ints (negative values count from the end, as for tensors)."""
    if isinstance(key, torch.Tensor):
        key = key.detach().cpu().numpy()
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        i = int(key)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of range for {n} rows")
        return np.array([i % n if n else i], dtype=np.int64), True
    if isinstance(key, slice):
        return np.arange(n, dtype=np.int64)[key], False
    arr = np.asarray(key)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise IndexError(f"a boolean index must have shape ({n},), got {arr.shape}")
        return np.flatnonzero(arr).astype(np.int64), False
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64), False
    if arr.dtype.kind not in "iu" or arr.ndim != 1:
        raise IndexError(f"rows are indexed by an int, a slice, or a 1-d sequence of ints, got {arr.dtype} {arr.shape}")
    arr = arr.astype(np.int64)
    if arr.min() < -n or arr.max() >= n:
        raise IndexError(f"index out of range for {n} rows")
    return np.where(arr < 0, arr + n, arr), False


class Rows:
    """``N`` samples of one shape, read on demand (see the module's docstring).

    Subclasses set ``shape`` (``(N, *sample_shape)``) and ``raw_dtype`` and implement :meth:`read_raw`; the
    default conversion turns uint8 into float32 / 255, float into float32 (checked), bool into bool.
    ``workers``: DataLoader worker processes :func:`iter_batches` uses (0: read in this process).
    """

    shape: tuple[int, ...] = (0,)
    raw_dtype: np.dtype = np.dtype("float32")
    workers: int = 0
    what: str = "rows"

    # -------------------------------------------------------------------------------------------- interface
    def read_raw(self, idx: np.ndarray) -> np.ndarray:
        """The stored values of rows ``idx`` (int64, any order, repeats allowed), in that order."""
        raise NotImplementedError

    def convert(self, raw: np.ndarray) -> torch.Tensor:
        """Stored values -> what indexing returns: float32 pixels in [0, 1], or bool masks."""
        if raw.dtype == np.uint8:
            return torch.from_numpy(np.ascontiguousarray(raw)).float().div_(255.0)
        if raw.dtype == bool:
            return torch.from_numpy(np.ascontiguousarray(raw))
        arr = np.ascontiguousarray(raw, dtype=np.float32)
        self.check_values(arr)
        return torch.from_numpy(arr)

    def check_values(self, arr: np.ndarray) -> None:
        """Float pixels must be finite and inside [0, 1] (what every reader of a whole file checked before)."""
        if arr.size == 0:
            return
        if not np.isfinite(arr).all():
            raise ArtifactError(f"{self.what}: inputs contain NaN or infinite values")
        if arr.min() < -1e-6 or arr.max() > 1 + 1e-6:
            raise ArtifactError(f"{self.what}: inputs leave the pixel range [0, 1]")

    # -------------------------------------------------------------------------------------------- tensor-like
    def __len__(self) -> int:
        return int(self.shape[0])

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def dtype(self) -> torch.dtype:
        return torch.bool if self.raw_dtype == np.dtype(bool) else torch.float32

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    def read(self, idx: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        pos, _ = as_index(idx, len(self))
        return self.convert(self.read_raw(pos))

    def __getitem__(self, key: Any) -> torch.Tensor:
        if isinstance(key, tuple):
            first, rest = key[0], key[1:]
            return self[first][(slice(None), *rest)] if not isinstance(first, (int, np.integer)) else self[first][rest]
        pos, scalar = as_index(key, len(self))
        out = self.convert(self.read_raw(pos))
        return out[0] if scalar else out

    def subset(self, idx: Sequence[int] | np.ndarray | torch.Tensor) -> Rows:
        """The rows at positions ``idx`` as a new lazy source (nothing is read)."""
        pos, _ = as_index(idx, len(self))
        return View(self, pos)

    def numpy(self) -> np.ndarray:
        """Every row at once (only for sources known to be small)."""
        return self[:].numpy()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.what}, shape={tuple(self.shape)}, stored as {self.raw_dtype})"

    def __array__(self, dtype=None, copy=None):  # numpy conversions read everything, as for a tensor
        arr = self.numpy()
        return arr if dtype is None else arr.astype(dtype)


class View(Rows):
    """Rows ``pos`` of another source, read only when asked for."""

    def __init__(self, base: Rows, pos: np.ndarray):
        self.base, self.pos = base, np.asarray(pos, dtype=np.int64)
        self.shape = (len(self.pos), *base.shape[1:])
        self.raw_dtype, self.workers, self.what = base.raw_dtype, base.workers, base.what

    def read_raw(self, idx: np.ndarray) -> np.ndarray:
        return self.base.read_raw(self.pos[idx])

    def convert(self, raw: np.ndarray) -> torch.Tensor:
        return self.base.convert(raw)

    def subset(self, idx) -> Rows:
        pos, _ = as_index(idx, len(self))
        return View(self.base, self.pos[pos])


class ArrayRows(Rows):
    """Rows of a numpy array or memory map of shape ``(N, *sample_shape)``; a memory map is read only where
    indexed (the operating system caches it)."""

    def __init__(self, array: np.ndarray, what: str = "rows"):
        self.array, self.what = array, what
        self.shape = tuple(int(v) for v in array.shape)
        self.raw_dtype = np.dtype(array.dtype)

    def read_raw(self, idx: np.ndarray) -> np.ndarray:
        if len(idx) and np.all(np.diff(idx) == 1):  # a contiguous block: one slice, no gather
            return np.array(self.array[int(idx[0]) : int(idx[-1]) + 1])  # a copy: a memory map's slice is read-only
        return np.array(self.array[idx])


def coalesce(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Sorted unique positions, where each requested row lands among them, and their contiguous runs
    ``(start, stop)``: a shuffled batch becomes a few slice reads."""
    uniq, inverse = np.unique(idx, return_inverse=True)
    if len(uniq) == 0:
        return uniq, inverse, []
    breaks = np.flatnonzero(np.diff(uniq) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(uniq)]])
    return uniq, inverse, [(int(uniq[a]), int(uniq[b - 1]) + 1) for a, b in zip(starts, stops)]


class H5Rows(Rows):
    """One dataset of an lfp HDF5 file, read by rows.

    The file is opened read-only when first read (again in each DataLoader worker process, never sharing a
    handle across a fork) with a chunk cache of ``H5_CHUNK_CACHE`` bytes. The file's structure and checksums
    were checked by :func:`lfpcli.artifacts.h5.open_h5` before this source is made; every chunk read here is
    checked by its Fletcher-32 filter, and float values by :meth:`Rows.check_values`."""

    def __init__(self, path: str | os.PathLike, name: str, shape: tuple[int, ...], dtype: Any, what: str):
        self.path, self.name, self.what = str(path), name, what
        self.shape = tuple(int(v) for v in shape)
        self.raw_dtype = np.dtype(dtype)
        self._pid: int | None = None
        self._file = self._ds = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_pid=None, _file=None, _ds=None)
        return state

    def _dataset(self):
        if self._pid != os.getpid() or self._ds is None:
            import h5py

            try:
                f = h5py.File(self.path, "r", rdcc_nbytes=H5_CHUNK_CACHE, rdcc_nslots=10_007)
            except OSError:
                raise ArtifactError(
                    f"{self.path} can no longer be opened; it was moved or damaged while lfp read it"
                ) from None
            self._file, self._ds, self._pid = f, f[self.name], os.getpid()
        return self._ds

    def read_raw(self, idx: np.ndarray) -> np.ndarray:
        ds = self._dataset()
        uniq, inverse, runs = coalesce(np.asarray(idx, dtype=np.int64))
        out = np.empty((len(uniq), *self.shape[1:]), dtype=self.raw_dtype)
        pos = 0
        try:
            for a, b in runs:
                ds.read_direct(out, np.s_[a:b], np.s_[pos : pos + b - a])
                pos += b - a
        except (OSError, ValueError, TypeError):
            raise ArtifactError(f"{self.what}: rows cannot be read (file truncated or corrupt)") from None
        return out if len(uniq) == len(idx) and np.array_equal(uniq, idx) else out[inverse]

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = self._ds = None


class H5MaskRows(H5Rows):
    """A stored foreground mask, (N, H, W) or (N, 1, H, W) of 0/1 or bool values, read as (N, H, W) bool."""

    def __init__(self, path: str | os.PathLike, name: str, shape: tuple[int, ...], dtype: Any, what: str):
        super().__init__(path, name, shape, dtype, what)
        self.stored_shape, self.stored_dtype = tuple(int(v) for v in shape), np.dtype(dtype)
        self.shape = (self.stored_shape[0], *self.stored_shape[-2:])
        self.raw_dtype = np.dtype(bool)

    def read_raw(self, idx: np.ndarray) -> np.ndarray:
        ds = self._dataset()
        uniq, inverse, runs = coalesce(np.asarray(idx, dtype=np.int64))
        try:
            parts = [ds[a:b] for a, b in runs]
        except (OSError, ValueError, TypeError):
            raise ArtifactError(f"{self.what}: rows cannot be read (file truncated or corrupt)") from None
        arr = np.concatenate(parts) if parts else np.zeros((0, *self.stored_shape[1:]), dtype=self.stored_dtype)
        if arr.ndim == 4:
            arr = arr[:, 0]
        if arr.dtype.kind != "b" and not np.isin(arr, (0, 1)).all():
            raise ArtifactError(f"{self.what} must hold only 0/1 or True/False values; the file is damaged")
        arr = arr.astype(bool)
        return arr if len(uniq) == len(idx) and np.array_equal(uniq, idx) else arr[inverse]


# ------------------------------------------------------------------------------------------------ iterating
class _Failure:
    """An lfp error raised in a worker process, carried back as a value (its type and its one line)."""

    def __init__(self, exc: BaseException):
        self.type = type(exc) if isinstance(exc, LfpError) else InputError
        self.message = str(exc) if isinstance(exc, LfpError) else f"reading data failed: {type(exc).__name__}: {exc}"

    def raise_(self):
        raise self.type(self.message)


class _Batches(torch.utils.data.Dataset):
    def __init__(self, rows: Rows, batches: Sequence[np.ndarray]):
        self.rows, self.batches = rows, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, b: int):
        try:
            return self.rows.read_raw(self.batches[b])
        except (LfpError, OSError, ValueError) as e:
            return _Failure(e)


def _identity(x):
    return x


def _worker_init(_):
    torch.set_num_threads(1)


def iter_batches(
    rows: Rows, batches: Sequence[np.ndarray], workers: int | None = None, *, raw: bool = False
) -> Iterator[Any]:
    """The rows of each index array in ``batches``, in order, converted (float32 pixels or bool masks; ``raw``:
    the stored numpy values); read by ``workers`` worker processes (default: the source's own setting), at most
    two batches ahead each."""
    workers = rows.workers if workers is None else workers
    workers = min(workers, max(0, len(batches) - 1))  # one batch: reading it here is as fast
    if workers <= 0:
        for idx in batches:
            values = rows.read_raw(idx)
            yield values if raw else rows.convert(values)
            release_free_memory()
        return
    loader = torch.utils.data.DataLoader(
        _Batches(rows, list(batches)),
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        collate_fn=_identity,
        worker_init_fn=_worker_init,
        prefetch_factor=2,
        persistent_workers=False,
    )
    for values in loader:
        if isinstance(values, _Failure):
            values.raise_()
        yield values if raw else rows.convert(values)
        release_free_memory()


def batch_positions(n: int, batch_size: int, order: torch.Tensor | None = None) -> list[np.ndarray]:
    """Positions of each batch of ``batch_size`` over ``n`` rows, in ``order`` (default: 0..n-1)."""
    if order is None:
        return [np.arange(s, min(s + batch_size, n), dtype=np.int64) for s in range(0, n, batch_size)]
    o = order.numpy().astype(np.int64)
    return [o[s : s + batch_size] for s in range(0, n, batch_size)]


__all__ = [
    "ArrayRows",
    "H5MaskRows",
    "H5Rows",
    "Rows",
    "View",
    "as_index",
    "batch_positions",
    "coalesce",
    "default_workers",
    "iter_batches",
    "release_free_memory",
]
