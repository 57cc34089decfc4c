"""WaterBirds (Sagawa et al. 2020) from the user's disk: group_DRO's ``waterbird_complete95_forest2water2/`` or
WILDS' ``waterbirds_v1.0/`` (the same ``metadata.csv`` columns and images).

``waterbirds:root=DIR`` where DIR holds ``metadata.csv`` (or is a folder holding one of the two release folders).
``metadata.csv``: columns ``img_filename`` (path relative to the csv's folder), ``y`` (1 = waterbird), ``split``
(0 train, 1 val, 2 test), ``place`` (0 land, 1 water; the spurious attribute); others (``img_id``,
``place_filename``) are ignored. Groups ``g = 2*y + place`` (group_DRO, SubpopBench). Class 0 ``landbird``,
1 ``waterbird``.

Segmentation masks: where the root carries CUB's segmentations (``segmentations/<NNN.Species>/<stem>.png``, the
CUB-200-2011 ``segmentations.tgz`` beside ``metadata.csv``), or ``masks=DIR`` names such a folder, every split
gets the bird's mask (``Split.mask``): each image's segmentation resized and cropped like the image, thresholded
at 0.5. WaterBirds pastes each bird at its CUB position and size, so CUB's masks fit its images.
"""

from __future__ import annotations

from pathlib import Path

from lfpcli.data.dataset import Dataset
from lfpcli.data.real.common import (
    int_value,
    make_split,
    read_csv,
    relative_file,
)
from lfpcli.data.real.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageFiles,
    MaskFiles,
    check_geometry,
    require_dir,
    scan,
)
from lfpcli.errors import InputError
from lfpcli.hashing import sha256_file
from lfpcli.progress import Progress, no_progress

VERSION = 1
CLASS_NAMES = ["landbird", "waterbird"]
PLACES = ["land", "water"]
GROUP_NAMES = [f"{c}/{p}" for c in CLASS_NAMES for p in PLACES]
RELEASES = (("waterbird_complete95_forest2water2", "group_DRO"), ("waterbirds_v1.0", "WILDS"))
FULL_SIZES = {"train": 4795, "val": 1199, "test": 5794}
FULL_GROUP_COUNTS = {"train": [3498, 184, 56, 1057], "val": [467, 466, 133, 133], "test": [2255, 2255, 642, 642]}
#: The paper's public code at 224 px (PGD l2 eps 3, linf 0.03, 100 steps).
PERTURB_DEFAULTS = {"pgd-l2": {"eps": 3.0, "steps": 100}, "pgd-linf": {"eps": 0.03, "steps": 100}}
#: The paper's text (Yang et al.'s setup); ``--recipe paper-code`` gives its public code's settings.
TRAIN_DEFAULTS = {"optimizer": "sgd", "lr": 1e-5, "momentum": 0.9, "weight_decay": 5e-2, "batch_size": 8, "epochs": 360}
PREPROCESSING = "RGB; resize to {r}x{r} (square, bilinear), center crop {s}x{s}; ImageNet mean/std inside the model; no augmentation"


def find_release(root: Path) -> tuple[Path, str]:
    """The folder holding ``metadata.csv`` and which release it is."""
    require_dir(root, "waterbirds root")
    if (root / "metadata.csv").is_file():
        wilds = root.name == "waterbirds_v1.0" or (root / "RELEASE_v1.0.txt").exists()
        return root, "WILDS" if wilds else "group_DRO"
    for sub, layout in RELEASES:
        if (root / sub / "metadata.csv").is_file():
            return root / sub, layout
    raise InputError(
        f"waterbirds root {root} has no metadata.csv (expected {root / 'metadata.csv'}, or a "
        f"{RELEASES[0][0]}/ or {RELEASES[1][0]}/ folder holding one)"
    )


def build_waterbirds(
    root: str = "", size: int = 224, resize: int = 0, masks: str = "auto", *, progress: Progress = no_progress
) -> Dataset:
    if not root:
        raise InputError(
            "waterbirds needs root=DIR: the folder holding metadata.csv (waterbird_complete95_forest2water2/ "
            "or waterbirds_v1.0/)"
        )
    r = check_geometry("waterbirds", size, resize)
    base, layout = find_release(Path(root))
    meta = base / "metadata.csv"
    rows, col = read_csv(meta, ("img_filename", "y", "split", "place"), "waterbirds metadata")
    per: dict[str, tuple[list[str], list[int], list[int]]] = {
        "train": ([], [], []),
        "val": ([], [], []),
        "test": ([], [], []),
    }
    for i, row in enumerate(rows):
        line = i + 2
        y = int_value(row[col["y"]], meta, line, "label y", (0, 1), "0 landbird, 1 waterbird: the classes")
        split = ("train", "val", "test")[
            int_value(row[col["split"]], meta, line, "split", (0, 1, 2), "0 train, 1 val, 2 test")
        ]
        place = int_value(row[col["place"]], meta, line, "place", (0, 1), "0 land, 1 water")
        path = relative_file(base, row[col["img_filename"]], meta, line)
        per[split][0].append(str(path))
        per[split][1].append(y)
        per[split][2].append(2 * y + place)
    if not per["train"][0]:
        raise InputError(f"{meta} lists no training image (split 0)")
    every = [p for s in per.values() for p in s[0]]
    scan(every, "image", f"waterbirds ({base})", progress)
    mask_dir = _mask_dir(base, Path(root), masks)
    mask_paths = None
    if mask_dir is not None:
        mask_paths = {k: [str(_mask_path(mask_dir, base, Path(p))) for p in v[0]] for k, v in per.items()}
        scan([p for v in mask_paths.values() for p in v], "mask", f"waterbirds masks ({mask_dir})", progress)
    splits = {}
    for name, (paths, ys, gs) in per.items():
        if not paths:
            continue
        x = ImageFiles(paths, "RGB", size, r, f"waterbirds '{name}' images")
        m = MaskFiles(mask_paths[name], size, r, f"waterbirds '{name}' masks") if mask_paths else None
        splits[name] = make_split(x, ys, gs, m)
    params = {"root": str(Path(root)), "size": size, "resize": r, "masks": str(mask_dir) if mask_dir else "none"}
    return Dataset(
        spec={
            "type": "real",
            "name": "waterbirds",
            "version": VERSION,
            "params": params,
            "index": {"path": str(meta), "sha256": sha256_file(meta)},
        },
        splits=splits,
        num_classes=2,
        class_names=list(CLASS_NAMES),
        group_names=list(GROUP_NAMES),
        input_shape=(3, size, size),
        mean=list(IMAGENET_MEAN),
        std=list(IMAGENET_STD),
        description=f"WaterBirds ({layout} layout at {base}): landbird vs waterbird, background land/water; "
        f"groups (label, place), g = 2*y + place",
        perturb_defaults=PERTURB_DEFAULTS,
        train_defaults=TRAIN_DEFAULTS,
        details={
            "layout": layout,
            "metadata": str(meta),
            "label_rule": "y = 1: waterbird (metadata.csv)",
            "groups": "g = 2*y + place (group_DRO, SubpopBench)",
            "preprocessing": PREPROCESSING.format(r=r, s=size),
            "masks": f"CUB segmentations from {mask_dir}, resized and cropped like the images, threshold 0.5"
            if mask_dir
            else None,
            "full_release_sizes": FULL_SIZES,
            "full_release_group_counts": FULL_GROUP_COUNTS,
        },
    )


def _mask_dir(base: Path, root: Path, masks: str) -> Path | None:
    if masks in ("none", "no", "off", "false", "0"):
        return None
    if masks in ("auto", ""):
        for cand in (base / "segmentations", root / "segmentations"):
            if cand.is_dir():
                return cand
        return None
    return require_dir(Path(masks), "waterbirds masks folder")


def _mask_path(mask_dir: Path, base: Path, image: Path) -> Path:
    rel = image.relative_to(base) if image.is_relative_to(base) else Path(image.parent.name) / image.name
    return (mask_dir / rel).with_suffix(".png")
