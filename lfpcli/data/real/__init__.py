"""The paper's real datasets, and users' own images, read from the user's disk (the loaders never fetch anything;
``lfp data SPEC --download``, :mod:`lfpcli.data.download`, puts the paper's datasets there).

Data specs (the same grammar as the built-ins: ``NAME:key=value,...``):

===================  ==============================================  =======================================
spec                 reads                                           parameters (default)
===================  ==============================================  =======================================
``waterbirds``       ``metadata.csv`` + images (group_DRO, WILDS)    root, size (224), resize (256), masks (auto)
``spuco-dogs``       ``spuco_dogs/{train,val,test}/...``             root, size, resize, order (spuco|sorted)
``spuco-birds``      ``spuco_birds/...``                             root, size, resize, order
``spuco-animals``    both subsets, 4 classes                         root, size, resize, order
``mnist``            ``MNIST/raw/*-ubyte[.gz]``                      root, val (0), seed (0)
``fmnist``           ``FashionMNIST/raw/*-ubyte[.gz]``               root, val, seed
``cifar10``          ``cifar-10-batches-{bin,py}/``                  root, val, seed
``folder``           a CSV of path, label, split [, group | a]       csv, mode (RGB), size, resize, classes, num_classes
===================  ==============================================  =======================================

Paths (``root``, ``csv``, ``masks``) are made absolute when the spec is parsed, so an artifact's recorded spec
finds the data from any working folder. Every split reads its images on demand (:mod:`lfpcli.data.lazy`);
``lfp data SPEC --out cache.h5`` decodes them once into a uint8 HDF5 cache that every command reads lazily.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lfpcli.data.dataset import Dataset
from lfpcli.progress import Progress, no_progress


@dataclass(frozen=True)
class RealData:
    """A dataset read from the user's disk: its builder, parameter types, which parameters are paths."""

    builder: Callable[..., Dataset]
    param_types: dict[str, type]
    paths: tuple[str, ...]
    required: str
    summary: str

    def full_params(self, params: dict[str, Any]) -> dict[str, Any]:
        sig = inspect.signature(self.builder)
        return {k: params.get(k, p.default) for k, p in sig.parameters.items() if p.kind != p.KEYWORD_ONLY}

    def build(self, params: dict[str, Any], progress: Progress = no_progress) -> Dataset:
        return self.builder(**params, progress=progress)


def _registry() -> dict[str, RealData]:
    from lfpcli.data.real.cifar import build_cifar10
    from lfpcli.data.real.folder import build_folder
    from lfpcli.data.real.idx import build_fmnist, build_mnist
    from lfpcli.data.real.spuco import (
        build_spuco_animals,
        build_spuco_birds,
        build_spuco_dogs,
    )
    from lfpcli.data.real.waterbirds import build_waterbirds

    img = {"size": int, "resize": int}
    split = {"val": int, "seed": int}
    return {
        "waterbirds": RealData(
            build_waterbirds,
            {"root": str, **img, "masks": str},
            ("root", "masks"),
            "root",
            "WaterBirds (group_DRO or WILDS layout)",
        ),
        "spuco-dogs": RealData(
            build_spuco_dogs,
            {"root": str, **img, "order": str},
            ("root",),
            "root",
            "SpuCo dogs: small vs big dogs, indoor/outdoor (the paper's SpuCoAnimals)",
        ),
        "spuco-birds": RealData(
            build_spuco_birds,
            {"root": str, **img, "order": str},
            ("root",),
            "root",
            "SpuCo birds: land vs water birds, land/water backgrounds",
        ),
        "spuco-animals": RealData(
            build_spuco_animals,
            {"root": str, **img, "order": str},
            ("root",),
            "root",
            "SpuCo animals: both subsets, 4 classes",
        ),
        "mnist": RealData(build_mnist, {"root": str, **split}, ("root",), "root", "MNIST (torchvision's raw files)"),
        "fmnist": RealData(
            build_fmnist, {"root": str, **split}, ("root",), "root", "Fashion-MNIST (torchvision's raw files)"
        ),
        "cifar10": RealData(
            build_cifar10, {"root": str, **split}, ("root",), "root", "CIFAR-10 (binary or python version)"
        ),
        "folder": RealData(
            build_folder,
            {"csv": str, "mode": str, **img, "classes": str, "num_classes": int},
            ("csv",),
            "csv",
            "your images, listed in a CSV (path, label, split [, group | a])",
        ),
    }


REAL: dict[str, RealData] = _registry()

__all__ = ["REAL", "RealData"]
