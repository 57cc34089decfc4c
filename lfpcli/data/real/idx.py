"""MNIST and Fashion-MNIST from the files torchvision reads (``<root>/MNIST/raw/``, ``<root>/FashionMNIST/raw/``),
parsed here (IDX format; never torchvision's dataset classes, never a download).

``mnist:root=DIR`` / ``fmnist:root=DIR``: DIR holds ``MNIST/raw/`` (``FashionMNIST/raw/``), or is that ``MNIST``
folder or its ``raw`` folder. Files: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``; each may instead be its ``.gz`` (read with gzip). An
uncompressed images file is memory-mapped (read where indexed); a ``.gz`` one is decompressed into memory
(47 MB for MNIST's training images).

Splits: ``train`` (60,000) and ``test`` (10,000), 1x28x28 grey, 10 classes, no groups. ``val=N`` holds out N
training images as a ``val`` split (a seeded random choice, ``seed=``; default 0: none, as torchvision and
Kumano et al.). Normalisation inside the model: Kumano et al.'s mean/std (MNIST 0.1307/0.3081, FMNIST
0.2860/0.3530).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from lfpcli.data.dataset import Dataset
from lfpcli.data.lazy import ArrayRows
from lfpcli.data.real.common import make_split
from lfpcli.data.real.images import require_dir
from lfpcli.errors import InputError
from lfpcli.progress import Progress, no_progress

VERSION = 1
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FMNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
SETS = {
    "mnist": ("MNIST", [str(i) for i in range(10)], [0.1307], [0.3081]),
    "fmnist": ("FashionMNIST", FMNIST_CLASSES, [0.2860], [0.3530]),
}
#: Appendix B of the paper / Kumano et al.: PGD l2 eps 2, linf 0.3; Kumano's training settings (100 / 200 epochs).
PERTURB_DEFAULTS = {"pgd-l2": {"eps": 2.0, "steps": 100}, "pgd-linf": {"eps": 0.3, "steps": 100}}
TRAIN_DEFAULTS = {
    "mnist": {
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 5e-4,
        "batch_size": 128,
        "epochs": 100,
    },
    "fmnist": {
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 5e-4,
        "batch_size": 128,
        "epochs": 200,
    },
}


def raw_folder(root: Path, sub: str) -> Path:
    require_dir(root, f"{sub} root")
    for cand in (root / sub / "raw", root / "raw", root):
        if (cand / FILES["train"][0]).exists() or (cand / (FILES["train"][0] + ".gz")).exists():
            return cand
    if (root / sub).is_dir():
        return root / sub / "raw"
    return root / sub / "raw"


def _file(folder: Path, name: str) -> Path:
    for p in (folder / name, folder / (name + ".gz")):
        if p.is_file():
            return p
    raise InputError(
        f"{folder / name} does not exist (nor {name}.gz beside it): the {folder.parent.name or 'MNIST'} "
        f"files torchvision reads are expected in {folder}"
    )


def read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    """An IDX file of uint8 values: header checked (magic, dimensions, file length); memory-mapped if plain."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
            head = data[: 4 + 4 * ndim]
        else:
            with open(path, "rb") as f:
                head = f.read(4 + 4 * ndim)
            data = None
    except (OSError, EOFError) as e:
        raise InputError(f"{path} cannot be read ({e}); expected an IDX file") from None
    if len(head) < 4 + 4 * ndim:
        raise InputError(f"{path} is too short to be an IDX file")
    got = int.from_bytes(head[:4], "big")
    if got != magic:
        raise InputError(
            f"{path} is not an IDX file of {ndim}-d uint8 values (magic {got:#010x}, expected {magic:#010x})"
        )
    dims = [int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    size = 4 + 4 * ndim + int(np.prod(dims))
    length = len(data) if data is not None else path.stat().st_size
    if length != size:
        raise InputError(
            f"{path} has {length} bytes; its header ({' x '.join(map(str, dims))}) says {size}: the file "
            f"is truncated or damaged"
        )
    if data is not None:
        return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
    return np.memmap(path, dtype=np.uint8, mode="r", offset=4 + 4 * ndim, shape=tuple(dims))


def build_idx(name: str, root: str, val: int, seed: int, progress: Progress) -> Dataset:
    sub, class_names, mean, std = SETS[name]
    if not root:
        raise InputError(f"{name} needs root=DIR: the folder holding {sub}/raw/ (torchvision's layout)")
    if val < 0:
        raise InputError(f"{name}: val must be a number of training images >= 0, got {val}")
    folder = raw_folder(Path(root), sub)
    arrays = {}
    for split, (images, labels) in FILES.items():
        ip, lp = _file(folder, images), _file(folder, labels)
        x = read_idx(ip, 0x00000803, 3)
        y = read_idx(lp, 0x00000801, 1)
        if x.shape[0] != y.shape[0]:
            raise InputError(f"{ip} holds {x.shape[0]} images but {lp} {y.shape[0]} labels")
        if x.shape[1:] != (28, 28):
            raise InputError(f"{ip} holds {x.shape[1]}x{x.shape[2]} images; expected 28x28")
        if len(y) and int(np.asarray(y).max()) > 9:
            bad = int(np.flatnonzero(np.asarray(y) > 9)[0])
            raise InputError(f"{lp}: label {int(y[bad])} of image {bad} is outside the classes 0..9")
        arrays[split] = (x, np.asarray(y, dtype=np.int64))
    splits = {}
    xtr, ytr = arrays["train"]
    if val >= len(ytr):
        raise InputError(f"{name}: val={val} leaves no training image (the training files hold {len(ytr)})")
    if val:
        perm = np.random.default_rng(seed).permutation(len(ytr))
        keep = {"train": np.sort(perm[val:]), "val": np.sort(perm[:val])}
        for k, idx in keep.items():
            rows = ArrayRows(xtr, f"{name} '{k}' images").subset(idx)
            splits[k] = make_split(_channel(rows), ytr[idx], None)
    else:
        splits["train"] = make_split(_channel(ArrayRows(xtr, f"{name} 'train' images")), ytr, None)
    xte, yte = arrays["test"]
    splits["test"] = make_split(_channel(ArrayRows(xte, f"{name} 'test' images")), yte, None)
    progress(f"reading {name}", 1, 1, unit="file")
    return Dataset(
        spec={
            "type": "real",
            "name": name,
            "version": VERSION,
            "params": {"root": str(Path(root)), "val": val, "seed": seed},
        },
        splits=splits,
        num_classes=10,
        class_names=list(class_names),
        input_shape=(1, 28, 28),
        mean=list(mean),
        std=list(std),
        description=f"{sub} from {folder} (torchvision's raw IDX files): 10 classes, 1x28x28",
        perturb_defaults=PERTURB_DEFAULTS,
        train_defaults=TRAIN_DEFAULTS[name],
        details={
            "layout": "torchvision: <root>/" + sub + "/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]",
            "folder": str(folder),
            "val": f"{val} training images held out, seeded by seed={seed}" if val else "none",
            "preprocessing": "L, 28x28 as stored; mean/std inside the model; no augmentation",
        },
    )


class _Channel(ArrayRows):
    """(N, 28, 28) rows seen as (N, 1, 28, 28)."""

    def __init__(self, inner):
        self.inner = inner
        self.shape = (inner.shape[0], 1, *inner.shape[1:])
        self.raw_dtype, self.what, self.workers = inner.raw_dtype, inner.what, 0

    def read_raw(self, idx):
        return self.inner.read_raw(idx)[:, None]


def _channel(rows) -> _Channel:
    return _Channel(rows)


def build_mnist(root: str = "", val: int = 0, seed: int = 0, *, progress: Progress = no_progress) -> Dataset:
    return build_idx("mnist", root, val, seed, progress)


def build_fmnist(root: str = "", val: int = 0, seed: int = 0, *, progress: Progress = no_progress) -> Dataset:
    return build_idx("fmnist", root, val, seed, progress)
