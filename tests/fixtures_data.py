"""Tiny fabricated copies of the real datasets' on-disk layouts (shared/reference/datasets.md), for tests and the
memory benchmark: the real file and column names, a few small images each (JPEG/PNG via PIL, of varied sizes so
resize and crop are exercised), nothing downloaded.

Each maker returns what a data spec names (the root) and what the loader should find (counts), so a test compares
the loader against the fabrication, not against the loader.
"""

from __future__ import annotations

import csv
import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

#: group_DRO's header, exactly.
WB_HEADER = ["img_id", "img_filename", "y", "split", "place", "place_filename"]
WB_SPECIES = {
    0: ["010.Red_winged_Blackbird", "029.American_Crow"],
    1: ["001.Black_footed_Albatross", "059.California_Gull"],
}
PLACE_COLOURS = {0: (60, 140, 40), 1: (30, 80, 200)}  # land: green, water: blue
BIRD_COLOURS = {0: (200, 120, 40), 1: (250, 250, 250)}  # landbird: brown, waterbird: white
SIZES = [(40, 30), (33, 47), (52, 52), (29, 35)]


def scene(
    size: tuple[int, int],
    background: tuple[int, int, int],
    obj: tuple[int, int, int] | None = None,
    mode: str = "RGB",
    seed: int = 0,
) -> Image.Image:
    """A background colour with a little noise and, optionally, a centred square 'object' of another colour."""
    w, h = size
    rng = np.random.default_rng(seed)
    arr = np.empty((h, w, 3), dtype=np.int16)
    arr[:] = background
    arr += rng.integers(-12, 13, size=arr.shape)
    if obj is not None:
        arr[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = obj
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    return img.convert(mode) if mode != "RGB" else img


def object_mask(size: tuple[int, int]) -> Image.Image:
    """The segmentation of :func:`scene`'s object (CUB style: 0 background, 255 object, grey L PNG)."""
    w, h = size
    arr = np.zeros((h, w), dtype=np.uint8)
    arr[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 255
    return Image.fromarray(arr, "L")


def make_waterbirds(
    base: Path,
    per_cell: dict[str, int] | int = 2,
    *,
    release: str = "group_DRO",
    segmentations: bool = False,
    nested: bool = True,
) -> tuple[Path, dict]:
    """A WaterBirds release: ``metadata.csv`` (group_DRO's header; 1-based img_id) and JPEGs under CUB species
    folders, ``per_cell`` images per (split, y, place) (an int, or per split name). ``release``: ``group_DRO``
    (``waterbird_complete95_forest2water2/``) or ``WILDS`` (``waterbirds_v1.0/`` with ``RELEASE_v1.0.txt``).
    ``nested``: the root to give is ``base`` (holding the release folder); else the release folder itself.
    Returns ``(root, expected)`` with ``expected[split] = [count of group 0, 1, 2, 3]``."""
    folder = base / ("waterbird_complete95_forest2water2" if release == "group_DRO" else "waterbirds_v1.0")
    folder.mkdir(parents=True)
    if release == "WILDS":
        (folder / "RELEASE_v1.0.txt").write_text("v1.0\n")
    rows, expected, img_id, k = [], {}, 1, 0
    for split_code, split in enumerate(("train", "val", "test")):
        n = per_cell[split] if isinstance(per_cell, dict) else per_cell
        expected[split] = [0, 0, 0, 0]
        for y in (0, 1):
            for place in (0, 1):
                for j in range(n):
                    species = WB_SPECIES[y][j % 2]
                    name = f"{species.split('.', 1)[1]}_{img_id:04d}_{100 + img_id}.jpg"
                    rel = f"{species}/{name}"
                    (folder / species).mkdir(exist_ok=True)
                    size = SIZES[k % len(SIZES)]
                    scene(size, PLACE_COLOURS[place], BIRD_COLOURS[y], seed=img_id).save(folder / rel, quality=95)
                    if segmentations:
                        (folder / "segmentations" / species).mkdir(parents=True, exist_ok=True)
                        object_mask(size).save(folder / "segmentations" / species / name.replace(".jpg", ".png"))
                    rows.append(
                        [
                            img_id,
                            rel,
                            y,
                            split_code,
                            place,
                            f"/{'o/ocean' if place else 'b/bamboo_forest'}/x_{img_id}.jpg",
                        ]
                    )
                    expected[split][2 * y + place] += 1
                    img_id += 1
                    k += 1
    with open(folder / "metadata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(WB_HEADER)
        w.writerows(rows)
    return (base if nested else folder), expected


SPUCO = {
    "spuco_dogs": (["small_dogs", "big_dogs"], ["indoor", "outdoor"]),
    "spuco_birds": (["landbirds", "waterbirds"], ["land", "water"]),
}


def make_spuco(base: Path, subsets=("spuco_dogs",), per_leaf: int = 2, ext: str = ".jpg") -> tuple[Path, dict]:
    """spuco's untarred tree with ``per_leaf`` images (integer stems) per (split, class, background) folder, plus
    a ``spuco_animals_masks.pkl`` (a pickle lfp must never load). Returns ``(root, expected)`` where
    ``expected[subset][split][(class_folder, background_folder)] = count``."""
    expected: dict = {}
    k = 0
    for subset in subsets:
        classes, backgrounds = SPUCO[subset]
        expected[subset] = {}
        for split in ("train", "val", "test"):
            expected[subset][split] = {}
            for ci, c in enumerate(classes):
                for bi, b in enumerate(backgrounds):
                    folder = base / subset / split / c / b
                    folder.mkdir(parents=True)
                    for j in range(per_leaf):
                        size = SIZES[k % len(SIZES)]
                        scene(size, PLACE_COLOURS[bi], BIRD_COLOURS[ci], seed=k).save(folder / f"{j * 7}{ext}")
                        k += 1
                    (folder / ".DS_Store").write_bytes(b"junk")  # not an image: ignored
                    expected[subset][split][(c, b)] = per_leaf
    (base / "spuco_animals_masks.pkl").write_bytes(pickle.dumps({"never": "loaded"}))
    return base, expected


def idx_bytes(arr: np.ndarray, magic: int) -> bytes:
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in arr.shape) + arr.astype(np.uint8).tobytes()


def make_mnist(
    base: Path, sub: str = "MNIST", n_train: int = 20, n_test: int = 10, gz: bool = False
) -> tuple[Path, dict]:
    """torchvision's raw IDX files under ``base/sub/raw/``; labels cycle 0..9; image i has pixel value i at [0, 0].
    ``gz``: only the ``.gz`` copies exist."""
    folder = base / sub / "raw"
    folder.mkdir(parents=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = np.zeros((n, 28, 28), dtype=np.uint8)
        x[:, 0, 0] = np.arange(n) % 256
        x[:, 10:18, 10:18] = 200
        y = (np.arange(n) % 10).astype(np.uint8)
        for name, data in (
            (f"{prefix}-images-idx3-ubyte", idx_bytes(x, 2051)),
            (f"{prefix}-labels-idx1-ubyte", idx_bytes(y, 2049)),
        ):
            if gz:
                with gzip.open(folder / (name + ".gz"), "wb") as f:
                    f.write(data)
            else:
                (folder / name).write_bytes(data)
        out["train" if prefix == "train" else "test"] = (x, y)
    return base, out


def make_cifar(base: Path, fmt: str = "bin", per_batch: int = 4) -> tuple[Path, dict]:
    """``cifar-10-batches-bin/`` (fixed records) or ``cifar-10-batches-py/`` (pickled dicts, protocol 4, bytes
    keys as the real Python-2 files have) with ``per_batch`` images in each of the 6 batches."""
    folder = base / ("cifar-10-batches-bin" if fmt == "bin" else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    out = {"train": ([], []), "test": ([], [])}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = (rng.integers(0, 10, size=per_batch)).astype(np.int64)
        split = "test" if name == "test_batch" else "train"
        out[split][0].append(data.reshape(-1, 3, 32, 32))
        out[split][1].append(labels)
        if fmt == "bin":
            rec = np.concatenate([labels.astype(np.uint8)[:, None], data], axis=1)
            (folder / f"{name}.bin").write_bytes(rec.tobytes())
        else:
            d = {
                b"batch_label": name.encode(),
                b"labels": labels.tolist(),
                b"data": data,
                b"filenames": [f"img_{i}.png".encode() for i in range(per_batch)],
            }
            (folder / name).write_bytes(pickle.dumps(d, protocol=4))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    if fmt == "bin":
        (folder / "batches.meta.txt").write_text("\n".join(names) + "\n\n")
    else:
        (folder / "batches.meta").write_bytes(
            pickle.dumps(
                {b"label_names": [n.encode() for n in names], b"num_cases_per_batch": per_batch, b"num_vis": 3072},
                protocol=4,
            )
        )
    return base, {k: (np.concatenate(v[0]), np.concatenate(v[1])) for k, v in out.items()}


def make_folder_csv(
    base: Path,
    *,
    labels=("cat", "dog"),
    attrs=("indoor", "outdoor"),
    per_cell: int = 2,
    mode: str = "RGB",
    header=("path", "label", "split", "a"),
) -> tuple[Path, dict]:
    """Images under ``base/images/`` and ``base/metadata.csv`` listing them (columns ``header``); labels by name.
    Returns ``(csv_path, expected)`` with ``expected[split] = count``."""
    (base / "images").mkdir(parents=True)
    rows, expected, k = [], {}, 0
    for split in ("train", "val", "test"):
        expected[split] = 0
        for yi, lab in enumerate(labels):
            for ai, at in enumerate(attrs):
                for j in range(per_cell):
                    rel = f"images/{split}_{lab}_{at}_{j}.png"
                    scene(SIZES[k % len(SIZES)], PLACE_COLOURS[ai], BIRD_COLOURS[yi], mode=mode, seed=k).save(
                        base / rel
                    )
                    rows.append([rel, lab, split, at][: len(header)])
                    expected[split] += 1
                    k += 1
    path = base / "metadata.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(header))
        w.writerows(rows)
    return path, expected


class Evil:
    """Unpickling this runs ``touch PATH``."""

    def __init__(self, sentinel: str):
        self.sentinel = sentinel

    def __reduce__(self):
        import os

        return (os.system, (f"touch '{self.sentinel}'",))


def make_evil_cifar(base: Path, sentinel: Path) -> Path:
    """A cifar-10-batches-py folder whose first batch, unpickled naively, runs ``touch SENTINEL``."""
    root, _ = make_cifar(base, "py", per_batch=2)
    folder = root / "cifar-10-batches-py"
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": Evil(str(sentinel)), b"labels": [0, 1]}, protocol=2))
    return root
