"""SpuCo (Joshi et al. 2023) from the user's disk, in the folders the ``spuco`` package untars:

    <root>/spuco_dogs/{train,val,test}/{small_dogs,big_dogs}/{indoor,outdoor}/<images>
    <root>/spuco_birds/{train,val,test}/{landbirds,waterbirds}/{land,water}/<images>

- ``spuco-dogs:root=DIR``: what the paper calls SpuCoAnimals (big vs small dogs, indoor/outdoor backgrounds);
- ``spuco-birds:root=DIR``: land vs water birds on land/water backgrounds;
- ``spuco-animals:root=DIR``: both, 4 classes (spuco's ``SpuCoAnimals``: birds then dogs).

DIR is the folder holding ``spuco_dogs/`` (and ``spuco_birds/``), or for one subset the subset folder itself.
Images are the files with an image extension in each leaf folder, integer stems in numeric order.

Class numbering (``order=``): ``spuco`` (default) is the spuco package's own: dogs small_dogs = 0, big_dogs = 1;
birds landbirds = 0, waterbirds = 1; animals landbirds, waterbirds, small_dogs, big_dogs = 0..3. ``sorted`` numbers
classes by sorted folder name, as ImageFolder and the public script that matches the paper's SpuCo pipeline do
(dogs: big_dogs = 0, small_dogs = 1). Every artifact records ``class_to_index``.

Groups: (class, background), ``g = 2 * label + background`` with the background numbered within its subset
(indoor 0 / outdoor 1, land 0 / water 1): 4 groups for dogs or birds, the 8 existing pairs for animals (spuco's
16-pair grid has 8 empty ones). spuco's own global background value (land 0, water 1, indoor 2, outdoor 3) is
recorded in ``details``. The full release's sizes (spuco asserts them, lfp only reports them): train 10,000 per
majority group and 500 per minority group, val 500 / 25, test 500 / 500.
"""

from __future__ import annotations

from pathlib import Path

from lfpcli.data.dataset import Dataset
from lfpcli.data.real.common import make_split
from lfpcli.data.real.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageFiles,
    check_geometry,
    image_files,
    require_dir,
    scan,
)
from lfpcli.errors import InputError
from lfpcli.progress import Progress, no_progress

VERSION = 1
#: subset folder -> (class folders in spuco's order, background folders in spuco's order)
SUBSETS = {
    "spuco_birds": (["landbirds", "waterbirds"], ["land", "water"]),
    "spuco_dogs": (["small_dogs", "big_dogs"], ["indoor", "outdoor"]),
}
ORDERS = ("spuco", "sorted")
SPLITS = ("train", "val", "test")
FULL_SIZES = {
    "train": {"majority_group": 10000, "minority_group": 500},
    "val": {"majority_group": 500, "minority_group": 25},
    "test": {"majority_group": 500, "minority_group": 500},
}
PERTURB_DEFAULTS = {"pgd-l2": {"eps": 3.0, "steps": 100}, "pgd-linf": {"eps": 0.03, "steps": 100}}
TRAIN_DEFAULTS = {"optimizer": "sgd", "lr": 1e-5, "momentum": 0.9, "weight_decay": 5e-2, "batch_size": 8, "epochs": 360}


def _subset_dir(root: Path, subset: str, alone: bool) -> Path:
    """``root/subset``, or ``root`` itself when it is that subset's folder (only for a one-subset dataset)."""
    if (root / subset).is_dir():
        return root / subset
    if alone and (root.name == subset or (root / "train").is_dir()):
        return root
    raise InputError(
        f"spuco root {root} has no {subset}/ folder (expected {root / subset}, as the spuco package "
        f"untars {subset}.tar.gz)"
    )


def build_spuco(
    subsets: list[str], name: str, root: str, size: int, resize: int, order: str, progress: Progress
) -> Dataset:
    if not root:
        raise InputError(f"{name} needs root=DIR: the folder holding {'/ and '.join(subsets)}/")
    if order not in ORDERS:
        raise InputError(
            f"{name}: order must be spuco (the spuco package's class numbering) or sorted (by folder "
            f"name, as ImageFolder), got '{order}'"
        )
    r = check_geometry(name, size, resize)
    base = require_dir(Path(root), f"{name} root")
    dirs = {s: _subset_dir(base, s, len(subsets) == 1) for s in subsets}
    # classes in spuco's order: subsets in order (birds before dogs), then each subset's classes
    classes: list[tuple[str, str]] = [(s, c) for s in subsets for c in SUBSETS[s][0]]
    if order == "sorted":
        classes = sorted(classes, key=lambda sc: sc[1])
    class_names = [c for _, c in classes]
    group_names = []
    for s, c in classes:
        group_names += [f"{c}/{b}" for b in SUBSETS[s][1]]
    per = {sp: ([], [], []) for sp in SPLITS}
    spuco_background: dict[str, int] = {}
    offset = 0
    for s in subsets:
        for b in SUBSETS[s][1]:
            spuco_background[b] = offset + SUBSETS[s][1].index(b)
        offset += 2
    for sp in SPLITS:
        for label, (s, c) in enumerate(classes):
            for a, b in enumerate(SUBSETS[s][1]):
                folder = require_dir(dirs[s] / sp / c / b, f"{name} folder")
                files = image_files(folder)
                per[sp][0].extend(str(p) for p in files)
                per[sp][1].extend([label] * len(files))
                per[sp][2].extend([2 * label + a] * len(files))
    if not per["train"][0]:
        raise InputError(f"{name}: no image files in any train/ folder under {base}")
    scan([p for v in per.values() for p in v[0]], "image", f"{name} ({base})", progress)
    splits = {
        sp: make_split(ImageFiles(paths, "RGB", size, r, f"{name} '{sp}' images"), ys, gs)
        for sp, (paths, ys, gs) in per.items()
        if paths
    }
    params = {"root": str(base), "size": size, "resize": r, "order": order}
    return Dataset(
        spec={"type": "real", "name": name, "version": VERSION, "params": params},
        splits=splits,
        num_classes=len(class_names),
        class_names=class_names,
        group_names=group_names,
        input_shape=(3, size, size),
        mean=list(IMAGENET_MEAN),
        std=list(IMAGENET_STD),
        description=f"SpuCo {' + '.join(subsets)} at {base}: {', '.join(class_names)}; groups (class, background)",
        perturb_defaults=PERTURB_DEFAULTS,
        train_defaults=TRAIN_DEFAULTS,
        details={
            "layout": "spuco: <subset>/{train,val,test}/<class>/<background>/<images>",
            "folders": {s: str(d) for s, d in dirs.items()},
            "label_order": order,
            "label_order_note": (
                "spuco's own numbering"
                if order == "spuco"
                else "sorted folder names (ImageFolder; the public script matching the paper's SpuCo pipeline)"
            ),
            "other_order": "sorted" if order == "spuco" else "spuco",
            "groups": "g = 2 * label + background, the background numbered within its subset",
            "spuco_background_index": spuco_background,
            "preprocessing": f"RGB; resize to {r}x{r} (square, bilinear), center crop {size}x{size}; ImageNet mean/std "
            f"inside the model; no augmentation",
            "full_release_group_sizes": FULL_SIZES,
        },
    )


def build_spuco_dogs(
    root: str = "", size: int = 224, resize: int = 0, order: str = "spuco", *, progress: Progress = no_progress
) -> Dataset:
    return build_spuco(["spuco_dogs"], "spuco-dogs", root, size, resize, order, progress)


def build_spuco_birds(
    root: str = "", size: int = 224, resize: int = 0, order: str = "spuco", *, progress: Progress = no_progress
) -> Dataset:
    return build_spuco(["spuco_birds"], "spuco-birds", root, size, resize, order, progress)


def build_spuco_animals(
    root: str = "", size: int = 224, resize: int = 0, order: str = "spuco", *, progress: Progress = no_progress
) -> Dataset:
    return build_spuco(["spuco_birds", "spuco_dogs"], "spuco-animals", root, size, resize, order, progress)
