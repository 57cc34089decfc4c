"""Image files read on demand: decode with PIL, convert, resize, center-crop, as the paper's pipeline does.

Preprocessing (the same for every image-file dataset; WaterBirds' and SpuCo's standard, datasets.md 1.3 and 2.3):
decode -> RGB (or L) -> resize to ``resize x resize`` (square, bilinear, as torchvision's ``Resize((r, r))`` on a
PIL image: the aspect ratio is not kept) -> center crop ``size x size`` (torchvision's rounding) -> uint8 (C, H, W).
With the defaults ``size=224``, ``resize=256``. Pixels are in [0, 1] once read (uint8 / 255); the mean/std
normalisation happens inside the model. No training-time augmentation (SubpopBench and the paper's code use none).

Accepted image modes: for RGB data ``RGB``, ``L`` (grey photos, replicated into the three channels as
torchvision's ``convert("RGB")`` does) and ``P`` (a palette without transparency); for grey data ``L`` only.
Anything else (an alpha channel, CMYK, 16-bit or float pixels, bilevel) is refused with the file's name:
converting it would guess.

When the dataset is resolved every file is checked to exist (a ``stat`` each; on a slow or network disk opening
tens of thousands of headers first would cost minutes). A file is opened when its row is read, by the DataLoader
workers where there are any: one that PIL does not recognise, of a mode not accepted, or that fails to decode
(truncated) stops the command then, with one line naming it; outputs are written atomically, so nothing is left.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lfpcli.data.lazy import Rows, default_workers
from lfpcli.errors import InputError
from lfpcli.progress import Progress, no_progress

#: File name endings read as images (torchvision's ImageFolder list), case-insensitive.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
#: Modes accepted per target mode.
ACCEPTED_MODES = {"RGB": ("RGB", "L", "P"), "L": ("L",)}
#: ImageNet statistics (the normalisation inside the model for natural photos).
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def default_resize(size: int) -> int:
    """The side images are resized to before the center crop: ``size * 256 / 224`` (256 for 224)."""
    return round(size * 256 / 224)


def check_geometry(name: str, size: int, resize: int | None) -> int:
    """Validate ``size`` (the crop) and ``resize``; return the resize side."""
    if not isinstance(size, int) or not 8 <= size <= 1024:
        raise InputError(f"{name}: size must be a whole number of pixels in 8..1024, got {size}")
    r = default_resize(size) if resize in (None, 0) else resize
    if not isinstance(r, int) or r < size or r > 4096:
        raise InputError(f"{name}: resize must be at least size ({size}) and at most 4096, got {r}")
    return r


def _reason(e: BaseException) -> str:
    text = str(e).strip().rstrip(".") or type(e).__name__
    return " ".join(text.split())


def _open(path: str):
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(path)
    except FileNotFoundError:
        raise InputError(f"image {path} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"image {path} is a folder, not an image file") from None
    except UnidentifiedImageError:
        raise InputError(
            f"image {path} cannot be read: not an image file PIL recognises (empty, damaged, or another format)"
        ) from None
    except (OSError, ValueError, SyntaxError) as e:
        raise InputError(f"image {path} cannot be read ({_reason(e)})") from None


def check_mode(im, path: str, mode: str) -> None:
    ok = ACCEPTED_MODES[mode]
    if im.mode not in ok or (im.mode == "P" and "transparency" in im.info):
        what = f"{im.mode} with transparency" if im.mode == "P" else im.mode
        raise InputError(
            f"image {path} has mode {what}; this data reads {' or '.join(ok)} images as {mode} "
            f"(convert it, e.g. PIL's Image.open(p).convert('{mode}').save(p))"
        )


def _resize_crop(im, size: int, resize: int):
    from PIL import Image

    if im.size != (resize, resize):
        im = im.resize((resize, resize), Image.BILINEAR)
    if resize != size:
        top = round((resize - size) / 2.0)
        im = im.crop((top, top, top + size, top + size))
    return im


def decode(path: str, mode: str, size: int, resize: int) -> np.ndarray:
    """One image as uint8 (C, size, size)."""
    im = _open(path)
    try:
        check_mode(im, path, mode)
        try:
            im.load()
            out = _resize_crop(im.convert(mode), size, resize)
            arr = np.asarray(out, dtype=np.uint8)
        except (OSError, ValueError, SyntaxError) as e:
            raise InputError(
                f"image {path} cannot be decoded ({_reason(e)}); the file is truncated or damaged"
            ) from None
    finally:
        im.close()
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def decode_mask(path: str, size: int, resize: int) -> np.ndarray:
    """A segmentation (grey or 0/255 PNG) as a bool (size, size) mask: resized like its image (bilinear, which
    averages the area when shrinking), thresholded at 0.5, the same center crop."""
    im = _open(path)
    try:
        try:
            im.load()
            grey = im.convert("L")
        except (OSError, ValueError, SyntaxError) as e:
            raise InputError(
                f"mask {path} cannot be decoded ({_reason(e)}); the file is truncated or damaged"
            ) from None
        out = _resize_crop(grey, size, resize)
        return np.asarray(out, dtype=np.uint8) >= 128
    finally:
        im.close()


def scan(paths: Sequence[str], kind: str, what: str, progress: Progress = no_progress) -> None:
    """Check that every file (``kind``: ``image`` or ``mask``) is there before any work starts; its content is
    checked when it is read (:func:`decode`, :func:`decode_mask`)."""
    n = len(paths)
    stage = f"checking {n} {kind} files of {what}"
    step = max(1, n // 100)
    progress(stage, 0, n, unit="file")
    for i, p in enumerate(paths):
        if not os.path.isfile(p):
            if not os.path.lexists(p):
                raise InputError(f"{kind} {p} does not exist")
            raise InputError(
                f"{kind} {p} is {'a folder' if os.path.isdir(p) else 'not a regular file'}, not an {kind} file"
                if kind == "image"
                else f"{kind} {p} is not a file"
            )
        if (i + 1) % step == 0 or i + 1 == n:
            progress(stage, i + 1, n, unit="file")


class ImageFiles(Rows):
    """Image files as uint8 (N, C, size, size) rows, decoded on demand; read by DataLoader workers when iterated
    (``$LFP_WORKERS``, default one per core but one)."""

    raw_dtype = np.dtype(np.uint8)

    def __init__(self, paths: Sequence[str], mode: str, size: int, resize: int, what: str, workers: int | None = None):
        self.paths = list(paths)
        self.mode, self.size_, self.resize = mode, size, resize
        self.shape = (len(self.paths), 1 if mode == "L" else 3, size, size)
        self.what = what
        self.workers = default_workers() if workers is None else workers

    def read_raw(self, idx: np.ndarray) -> np.ndarray:
        out = np.empty((len(idx), *self.shape[1:]), dtype=np.uint8)
        for j, i in enumerate(idx):
            out[j] = decode(self.paths[int(i)], self.mode, self.size_, self.resize)
        return out


class MaskFiles(Rows):
    """Segmentation files as bool (N, size, size) masks, decoded on demand like their images."""

    raw_dtype = np.dtype(bool)

    def __init__(self, paths: Sequence[str], size: int, resize: int, what: str, workers: int | None = None):
        self.paths = list(paths)
        self.size_, self.resize = size, resize
        self.shape = (len(self.paths), size, size)
        self.what = what
        self.workers = default_workers() if workers is None else workers

    def read_raw(self, idx: np.ndarray) -> np.ndarray:
        out = np.empty((len(idx), *self.shape[1:]), dtype=bool)
        for j, i in enumerate(idx):
            out[j] = decode_mask(self.paths[int(i)], self.size_, self.resize)
        return out


def natural_key(p: Path) -> tuple[Any, ...]:
    """Sort key: integer stems in numeric order (SpuCo's ``0.jpg, 1.jpg, ..., 10.jpg``), then by name."""
    stem = p.stem
    return (0, int(stem), p.name) if stem.isdigit() else (1, 0, p.name)


def image_files(folder: Path) -> list[Path]:
    """The image files directly in ``folder`` (by extension), in natural order."""
    return sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()), key=natural_key
    )


def require_dir(path: Path, what: str) -> Path:
    if not path.exists():
        raise InputError(f"{what} {path} does not exist")
    if not path.is_dir():
        raise InputError(f"{what} {path} is not a folder")
    return path


__all__ = [
    "ACCEPTED_MODES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "ImageFiles",
    "MaskFiles",
    "check_geometry",
    "decode",
    "decode_mask",
    "default_resize",
    "image_files",
    "natural_key",
    "require_dir",
    "scan",
]
