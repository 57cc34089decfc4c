"""HDF5 layout of saliency maps (``lfp_kind`` = ``saliency-maps``), the PNG grid, and foreground mask files.

Saliency maps file (N images, M models, H x W inputs)::

    /index               (N,) int64   row of each image in the split (or in the perturbed set)
    /source_index        (N,) int64   the data's own ``index`` of the image (position in its source split)
    /y                   (N,) int64   true label
    /group               (N,) int64   group (-1 where the data has none)
    /perturbation_target (N,) int64   target of the perturbation (only for a perturbed set)
    /mask                (N, H, W) bool  foreground mask (only where masks were available)
    /mask_area           (N,) float32 fraction of the image inside the mask: a uniform map's share (chance level)
    /models/<k>/map      (N, H, W) float32  the map at input resolution (attribute ``definition`` says what it is)
    /models/<k>/layer_map (N, h, w) float32 Grad-CAM at the layer's resolution, before upsampling (gradcam only)
    /models/<k>/pred     (N,) int64   the model's prediction on the image
    /models/<k>/target   (N,) int64   the class the map explains
    /models/<k>/logit    (N,) float32 that class's logit
    /models/<k>/share    (N,) float32 share of the map's positive mass inside the mask (NaN: map without positive mass)
    /models/<k>/pointing (N,) int8    pointing game: 1 the map's maximum is on the mask, 0 not, -1 undefined

``k`` = 0, 1, ... in the order the models were given; each ``models/<k>`` group has the attributes ``name`` and
``path``. The record holds, under ``saliency``, the method and its parameters, what the maps and the share
count, and per model its name, path, sha256, architecture and Grad-CAM layer; under ``summary`` the figures
per model, overall and per group.

Mask files (``--masks``): a ``.npy`` array (read without pickles) or an lfp dataset file (``<split>/mask``), of
shape (N, H, W) or (N, 1, H, W) with 0/1 or bool values, one mask per sample of the split in its order.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lfpcli.artifacts.datasets import check_mask
from lfpcli.artifacts.files import atomic_output, check_output
from lfpcli.artifacts.h5 import H5Writer, open_h5, read_array
from lfpcli.errors import ArtifactError, InputError

KIND = "saliency-maps"

_PER_MODEL = {
    "map": ("float32", "saliency map at input resolution (N, H, W)"),
    "pred": ("int64", "the model's predicted class"),
    "target": ("int64", "the class the map explains"),
    "logit": ("float32", "the explained class's logit"),
}
_MASKED = {
    "share": ("float32", "share of the map's positive mass inside the mask (NaN where the map has no positive mass)"),
    "pointing": ("int8", "pointing game: 1 the map's maximum lies on the mask, 0 not, -1 the map has no positive mass"),
}


class SaliencyWriter(H5Writer):
    """Stream a saliency maps file: ``add_images`` once per batch of images, ``add_maps`` per model and batch.

    ``models``: per model ``(name, path, layer_hw)`` with ``layer_hw`` the Grad-CAM layer's (h, w) or ``None``."""

    def __init__(
        self,
        path,
        n: int,
        hw: tuple[int, int],
        models: Sequence[tuple[str, str, tuple[int, int] | None]],
        *,
        definition: str,
        masks: bool,
        perturbation_target: bool,
        force: bool = False,
    ):
        super().__init__(path, KIND, force=force)
        self.n, self.hw, self.models = n, tuple(hw), list(models)
        self.definition, self.masks, self.ptarget = definition, masks, perturbation_target

    def __enter__(self):
        super().__enter__()
        n, (h, w) = self.n, self.hw
        self.create("index", (n,), "int64", "row of the image in the split (or in the perturbed set)")
        self.create("source_index", (n,), "int64", "the data's own index of the image (position in its source split)")
        self.create("y", (n,), "int64", "true label")
        self.create("group", (n,), "int64", "group (-1 where the data has none)")
        if self.ptarget:
            self.create("perturbation_target", (n,), "int64", "target label of the perturbation")
        if self.masks:
            self.create("mask", (n, h, w), "bool", "foreground mask: the object's pixels")
            self.create("mask_area", (n,), "float32", "fraction of the image inside the mask (a uniform map's share)")
        for k, (name, path, layer_hw) in enumerate(self.models):
            grp = self.file.create_group(f"models/{k}")
            grp.attrs["name"], grp.attrs["path"] = name, str(path)
            for key, (dtype, desc) in _PER_MODEL.items():
                shape = (n, h, w) if key == "map" else (n,)
                self.create(f"models/{k}/{key}", shape, dtype, desc)
            self.set_attr(f"models/{k}/map", "definition", self.definition)
            if layer_hw is not None:
                self.create(
                    f"models/{k}/layer_map",
                    (n, *layer_hw),
                    "float32",
                    "Grad-CAM at the layer's resolution, before upsampling",
                )
            if self.masks:
                for key, (dtype, desc) in _MASKED.items():
                    self.create(f"models/{k}/{key}", (n,), dtype, desc)
        return self

    def add_images(
        self, sl: slice, *, index, source_index, y, group, mask=None, mask_area=None, perturbation_target=None
    ) -> None:
        for key, v in (("index", index), ("source_index", source_index), ("y", y), ("group", group)):
            self.write(key, sl, v)
        if self.ptarget:
            self.write("perturbation_target", sl, perturbation_target)
        if self.masks:
            self.write("mask", sl, mask)
            self.write("mask_area", sl, mask_area)

    def add_maps(self, k: int, sl: slice, values: dict[str, Any]) -> None:
        for key, v in values.items():
            if v is not None:
                self.write(f"models/{k}/{key}", sl, v)


def read_saliency(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], list[dict[str, Any]], dict[str, Any]]:
    """``(images, models, record)``: the per-image arrays, per model ``{"name", "path", <arrays>}``, the record;
    shapes checked."""
    f, record = open_h5(path, [KIND])
    with f:
        images = {
            k: read_array(f, k, path=path)
            for k in ("index", "source_index", "y", "group", "perturbation_target", "mask", "mask_area")
            if k in f
        }
        for k in ("index", "y", "group"):
            if k not in images:
                raise ArtifactError(f"{path} has no dataset '{k}'; the file is damaged")
        n = images["index"].shape[0]
        for k, v in images.items():
            if v.shape[:1] != (n,):
                raise ArtifactError(f"{path}: dataset '{k}' has {v.shape[:1]} rows, expected {n}; the file is damaged")
        models = []
        group = f.get("models")
        keys = sorted(group.keys(), key=lambda s: int(s) if s.isdigit() else -1) if group is not None else []
        if not keys or not all(s.isdigit() for s in keys):
            raise ArtifactError(f"{path} has no per-model maps (models/0, models/1, ...); the file is damaged")
        for key in keys:
            g = group[key]
            entry: dict[str, Any] = {"name": str(g.attrs.get("name", key)), "path": str(g.attrs.get("path", ""))}
            for name in g.keys():
                entry[name] = read_array(f, f"models/{key}/{name}", path=path)
                if entry[name].shape[:1] != (n,):
                    raise ArtifactError(
                        f"{path}: dataset 'models/{key}/{name}' has {entry[name].shape[:1]} rows, expected {n}"
                    )
            if "map" not in entry or entry["map"].ndim != 3:
                raise ArtifactError(f"{path}: models/{key} has no (N, H, W) map; the file is damaged")
            models.append(entry)
    return images, models, record


def read_mask_file(path: str | os.PathLike, x_shape: tuple[int, ...], split: str | None = None) -> np.ndarray:
    """Foreground masks for inputs of shape ``x_shape`` (N, C, H, W) from ``path``: a ``.npy`` array (no pickles)
    or an lfp dataset file (its ``<split>/mask``). Returns (N, H, W) bool; wrong shapes or values: ``InputError``."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"mask file {p} does not exist")
    if p.is_dir():
        raise InputError(f"mask file {p} is a folder; give a .npy or lfp .h5 file")
    if _hdf5(p):
        f, record = open_h5(p, ["dataset"])
        with f:
            name = f"{split}/mask"
            if split is None or name not in f:
                raise InputError(f"mask file {p} has no masks for split '{split}' (no dataset '{name}')")
            arr = read_array(f, name, path=p)
    else:
        try:
            arr = np.load(p, allow_pickle=False)
        except (ValueError, OSError, EOFError):
            raise InputError(f"mask file {p} is not a .npy array (numpy.save) or an lfp dataset file") from None
        if not isinstance(arr, np.ndarray):
            raise InputError(f"mask file {p} holds several arrays (.npz); give one (N, H, W) array as .npy")
    return check_mask(arr, x_shape, f"mask file {p}")


def _hdf5(path: Path) -> bool:
    import h5py

    try:
        return bool(h5py.is_hdf5(str(path)))  # finds the signature after a user block too
    except (OSError, ValueError):
        return False


def h5_kind(path: str | os.PathLike | None) -> str | None:
    """The ``lfp_kind`` of an lfp HDF5 file (checked as :func:`open_h5` checks it), ``None`` for anything that
    is not an HDF5 file (a data spec name, a missing path, another format)."""
    if path is None or not Path(path).is_file() or not _hdf5(Path(path)):
        return None
    f, record = open_h5(path)
    f.close()
    return str(record.get("kind"))


def check_png_output(path: str | os.PathLike, force: bool = False) -> Path:
    """A PNG output name, checked before any work (extension ``.png``, writable, not there unless ``force``)."""
    return check_output(path, force, (".png",))


def write_png(path: str | os.PathLike, figure: Any, *, force: bool = False, dpi: int = 150) -> None:
    """Save a matplotlib ``Figure`` (drawn on the Agg canvas, never a display) as PNG, atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    with atomic_output(path, force) as tmp:
        figure.savefig(tmp, format="png", dpi=dpi, facecolor="white")


__all__ = ["KIND", "SaliencyWriter", "check_png_output", "h5_kind", "read_mask_file", "read_saliency", "write_png"]
