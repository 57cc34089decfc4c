"""CIFAR-10 from the files torchvision reads, parsed here: the binary version (``cifar-10-batches-bin/``,
preferred) or the python version (``cifar-10-batches-py/``) through lfp's own data-only pickle reader.

``cifar10:root=DIR``: DIR holds ``cifar-10-batches-bin/`` or ``cifar-10-batches-py/`` (or is one of them).

- binary: ``data_batch_1.bin`` ... ``data_batch_5.bin``, ``test_batch.bin``: records of 1 label byte + 3072 pixel
  bytes (R, G, B planes, 32x32 row-major); memory-mapped, read where indexed. Class names from
  ``batches.meta.txt`` when present.
- python: ``data_batch_1`` ... ``data_batch_5``, ``test_batch`` (+ ``batches.meta``): pickled dicts read by
  :func:`lfpcli.data.real.pickle_data.loads`, which interprets the opcodes itself (no :mod:`pickle`) and builds
  dicts, lists, strings, bytes, numbers and plain numpy arrays; any other global (``os.system``,
  ``builtins.eval``, ...) is refused where it is met and nothing named in the file is ever called. Held in memory
  (150 MB for the training batches).

Splits ``train`` (50,000), ``test`` (10,000), 3x32x32, 10 classes, no groups; ``val=N``, ``seed=`` as for MNIST.
Normalisation inside the model: Kumano et al.'s CIFAR-10 mean/std. No augmentation (Kumano's random crop and flip
are not applied; lfp trains on the stored images).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lfpcli.data.dataset import Dataset
from lfpcli.data.lazy import ArrayRows, Rows
from lfpcli.data.real.common import make_split
from lfpcli.data.real.images import require_dir
from lfpcli.data.real.pickle_data import PickleDataError, loads
from lfpcli.errors import InputError
from lfpcli.progress import Progress, no_progress

VERSION = 1
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MEAN, STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]
RECORD = 3073
PERTURB_DEFAULTS = {"pgd-l2": {"eps": 0.5, "steps": 100}, "pgd-linf": {"eps": 0.1, "steps": 100}}
TRAIN_DEFAULTS = {
    "optimizer": "sgd",
    "lr": 0.1,
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 5e-4,
    "batch_size": 128,
    "epochs": 200,
}


def load_batch(path: Path) -> dict[str, object]:
    """One python-version batch file as a dict with str keys, through lfp's data-only pickle reader."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path} cannot be read ({e.strerror or e})") from None
    try:
        obj = loads(raw)
    except PickleDataError as e:
        raise InputError(
            f"{path} is not a CIFAR-10 batch lfp can read ({e}; lfp reads pickled data only, never code): use the "
            f"binary version (cifar-10-batches-bin) or the original files"
        ) from None
    if not isinstance(obj, dict):
        raise InputError(f"{path} is not a CIFAR-10 batch (it holds a {type(obj).__name__}, not a dict)")
    return {(k.decode("latin-1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _py_split(folder: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for name in names:
        p = folder / name
        if not p.is_file():
            raise InputError(f"{p} does not exist: the CIFAR-10 python batches are expected in {folder}")
        d = load_batch(p)
        data, labels = d.get("data"), d.get("labels")
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise InputError(f"{p}: 'data' is not a (N, 3072) uint8 array")
        if not isinstance(labels, (list, np.ndarray)) or len(labels) != data.shape[0]:
            raise InputError(f"{p}: 'labels' does not hold one label per image")
        y = np.asarray(labels, dtype=np.int64)
        if len(y) and (y.min() < 0 or y.max() > 9):
            raise InputError(f"{p}: a label is outside the classes 0..9")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


class _BinRows(Rows):
    """Memory-mapped CIFAR binary records of several files as (N, 3, 32, 32) uint8 rows."""

    raw_dtype = np.dtype(np.uint8)

    def __init__(self, maps: list[np.ndarray], what: str):
        self.maps, self.what = maps, what
        self.starts = np.cumsum([0] + [len(m) for m in maps])
        self.shape = (int(self.starts[-1]), 3, 32, 32)

    def read_raw(self, idx: np.ndarray) -> np.ndarray:
        out = np.empty((len(idx), 3072), dtype=np.uint8)
        f = np.searchsorted(self.starts, idx, side="right") - 1
        for k in np.unique(f):
            sel = f == k
            out[sel] = self.maps[k][idx[sel] - self.starts[k], 1:]
        return out.reshape(-1, 3, 32, 32)


def _bin_split(folder: Path, names: list[str], what: str) -> tuple[Rows, np.ndarray]:
    maps, ys = [], []
    for name in names:
        p = folder / f"{name}.bin"
        if not p.is_file():
            raise InputError(f"{p} does not exist: the CIFAR-10 binary batches are expected in {folder}")
        size = p.stat().st_size
        if size == 0 or size % RECORD:
            raise InputError(f"{p} has {size} bytes, not a whole number of {RECORD}-byte records: truncated or damaged")
        m = np.memmap(p, dtype=np.uint8, mode="r").reshape(-1, RECORD)
        y = np.asarray(m[:, 0], dtype=np.int64)
        if y.max() > 9:
            raise InputError(
                f"{p}: record {int(np.flatnonzero(y > 9)[0])} has label {int(y.max())}, outside the classes 0..9"
            )
        maps.append(m)
        ys.append(y)
    return _BinRows(maps, what), np.concatenate(ys)


def find_folder(root: Path) -> tuple[Path, str]:
    require_dir(root, "cifar10 root")
    for cand, fmt in ((root / "cifar-10-batches-bin", "bin"), (root / "cifar-10-batches-py", "py")):
        if cand.is_dir():
            return cand, fmt
    if root.name == "cifar-10-batches-bin" or (root / "data_batch_1.bin").exists():
        return root, "bin"
    if root.name == "cifar-10-batches-py" or (root / "data_batch_1").exists():
        return root, "py"
    raise InputError(
        f"cifar10 root {root} has no cifar-10-batches-bin/ or cifar-10-batches-py/ folder (expected "
        f"{root / 'cifar-10-batches-bin' / 'data_batch_1.bin'} or {root / 'cifar-10-batches-py' / 'data_batch_1'})"
    )


def build_cifar10(root: str = "", val: int = 0, seed: int = 0, *, progress: Progress = no_progress) -> Dataset:
    if not root:
        raise InputError("cifar10 needs root=DIR: the folder holding cifar-10-batches-bin/ or cifar-10-batches-py/")
    if val < 0:
        raise InputError(f"cifar10: val must be a number of training images >= 0, got {val}")
    folder, fmt = find_folder(Path(root))
    classes = list(CLASSES)
    if fmt == "bin":
        xtr, ytr = _bin_split(folder, TRAIN_FILES, "cifar10 'train' images")
        xte, yte = _bin_split(folder, TEST_FILES, "cifar10 'test' images")
        meta = folder / "batches.meta.txt"
        if meta.is_file():
            names = [ln.strip() for ln in meta.read_text(errors="replace").splitlines() if ln.strip()]
            if len(names) == 10:
                classes = names
    else:
        a, ytr = _py_split(folder, TRAIN_FILES)
        b, yte = _py_split(folder, TEST_FILES)
        xtr, xte = ArrayRows(a, "cifar10 'train' images"), ArrayRows(b, "cifar10 'test' images")
        meta = folder / "batches.meta"
        if meta.is_file():
            names = load_batch(meta).get("label_names")
            if isinstance(names, list) and len(names) == 10:
                classes = [n.decode("latin-1") if isinstance(n, bytes) else str(n) for n in names]
    if val >= len(ytr):
        raise InputError(f"cifar10: val={val} leaves no training image (the training batches hold {len(ytr)})")
    splits = {}
    if val:
        perm = np.random.default_rng(seed).permutation(len(ytr))
        for k, idx in (("train", np.sort(perm[val:])), ("val", np.sort(perm[:val]))):
            splits[k] = make_split(xtr.subset(idx), ytr[idx], None)
    else:
        splits["train"] = make_split(xtr, ytr, None)
    splits["test"] = make_split(xte, yte, None)
    progress("reading cifar10", 1, 1, unit="file")
    return Dataset(
        spec={
            "type": "real",
            "name": "cifar10",
            "version": VERSION,
            "params": {"root": str(Path(root)), "val": val, "seed": seed},
        },
        splits=splits,
        num_classes=10,
        class_names=classes,
        input_shape=(3, 32, 32),
        mean=list(MEAN),
        std=list(STD),
        description=f"CIFAR-10 ({'binary' if fmt == 'bin' else 'python'} version at {folder}): 10 classes, 3x32x32",
        perturb_defaults=PERTURB_DEFAULTS,
        train_defaults=TRAIN_DEFAULTS,
        details={
            "layout": f"cifar-10-batches-{fmt}",
            "folder": str(folder),
            "reader": "binary records, memory-mapped"
            if fmt == "bin"
            else "lfp's data-only pickle reader (plain numpy arrays, never code)",
            "val": f"{val} training images held out, seeded by seed={seed}" if val else "none",
            "preprocessing": "RGB 32x32 as stored; mean/std inside the model; no augmentation",
        },
    )
