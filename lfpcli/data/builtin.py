"""Datasets that ship with lfp by construction, built offline from the real handwritten digits in scikit-learn.

- ``digits``: the 1,797 real 8x8 digits (scikit-learn's copy of the UCI optdigits test set), 10 classes,
  one grey channel, a seeded stratified 60/20/20 train/val/test split.
- ``spurious-digits``: a WaterBirds analogue. Label ``y = [digit >= 5]``; each digit is drawn, 28x28 RGB, on a
  background from one of two families (the spurious attribute ``a``: 0 = "water", smooth blue waves; 1 =
  "land", green-brown blotches). In train ``a = y`` for ``correlation`` of each class (exactly), in val/test
  ``a`` is independent of ``y`` and balanced, as in WaterBirds. Groups ``g = 2*y + a``. Each training digit
  is drawn ``train_copies`` times on fresh backgrounds of its family (5 by default: 5,390 training images),
  ``separation`` sets how visible the background family is, ``contrast`` how visible the digit.
  With the defaults a standard ``small-cnn`` reaches about 0.85 test accuracy but only about 0.6 test
  worst-group accuracy: the background misleads it.
  Every split carries a foreground ``mask`` (N, H, W): the digit's pixels, i.e. where the upscaled digit's ink
  is above ``MASK_INK_THRESHOLD`` (0.1 of full ink, so the stroke and its anti-aliased rim, whatever ``contrast``);
  about 28% of each 28x28 image. Saliency reports the share of attribution that falls inside it.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from lfpcli.data import scenes
from lfpcli.data.dataset import Dataset, Split, channel_stats
from lfpcli.errors import ConfigError
from lfpcli.progress import Progress, no_progress

DIGITS_VERSION = 1
SPURIOUS_VERSION = 2

#: Per data spec, the method parameters and training settings that apply when the user gives none (shown in
#: ``--help`` and recorded in every artifact made with them).
DIGITS_PERTURB_DEFAULTS = {"pgd-l2": {"eps": 1.0, "steps": 30}, "pgd-linf": {"eps": 0.15, "steps": 30}}
DIGITS_TRAIN_DEFAULTS = {"epochs": 30, "optimizer": "adam", "lr": 1e-3, "batch_size": 64}
SPURIOUS_PERTURB_DEFAULTS = {"pgd-l2": {"eps": 2.0, "steps": 30}, "pgd-linf": {"eps": 0.1, "steps": 30}}
SPURIOUS_TRAIN_DEFAULTS = {"epochs": 10, "optimizer": "adam", "lr": 1e-3, "batch_size": 64}
#: A spurious-digits pixel belongs to the digit (its foreground ``mask``) where the upscaled digit's ink, before
#: ``contrast``, is above this: the stroke and its anti-aliased rim.
MASK_INK_THRESHOLD = 0.1


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


def _stratified_split(labels: np.ndarray, seed: int, fractions=(0.6, 0.2, 0.2)) -> dict[str, np.ndarray]:
    """Indices per split, stratified by ``labels``, each split sorted (a fixed function of ``seed``)."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_tr = int(round(fractions[0] * len(idx)))
        n_va = int(round(fractions[1] * len(idx)))
        parts["train"].append(idx[:n_tr])
        parts["val"].append(idx[n_tr : n_tr + n_va])
        parts["test"].append(idx[n_tr + n_va :])
    return {k: np.sort(np.concatenate(v)) for k, v in parts.items()}


def build_digits(seed: int = 0) -> Dataset:
    images, labels = _load_digits()
    parts = _stratified_split(labels, seed)
    splits = {}
    for name, idx in parts.items():
        x = torch.from_numpy(images[idx]).unsqueeze(1)
        y = torch.from_numpy(labels[idx])
        splits[name] = Split(x, y, torch.full_like(y, -1), torch.arange(len(idx)))
    mean, std = channel_stats(splits["train"].x)
    return Dataset(
        spec={"type": "builtin", "name": "digits", "version": DIGITS_VERSION, "params": {"seed": seed}},
        splits=splits,
        num_classes=10,
        class_names=[str(i) for i in range(10)],
        input_shape=(1, 8, 8),
        mean=mean,
        std=std,
        description="scikit-learn's 1,797 real 8x8 handwritten digits, 10 classes",
        perturb_defaults=DIGITS_PERTURB_DEFAULTS,
        train_defaults=DIGITS_TRAIN_DEFAULTS,
    )


def _backgrounds(attr: np.ndarray, size: int, rng: np.random.Generator, separation: float) -> torch.Tensor:
    """(N, 3, size, size) backgrounds: smooth blue waves ("water", a = 0) or green-brown blotches ("land", a = 1).

    Each background is ``(1 + s)/2 * own family + (1 - s)/2 * other family`` with ``s = separation``: at 1 the
    families are pure, at 0 every background is the same mixture and the attribute is invisible."""
    n = len(attr)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    # water: horizontal waves of random phase/frequency/tilt on a blue base
    freq = torch.from_numpy(rng.uniform(3.0, 6.0, n)).float().view(n, 1, 1)
    phase = torch.from_numpy(rng.uniform(0, 2 * math.pi, n)).float().view(n, 1, 1)
    tilt = torch.from_numpy(rng.uniform(-0.5, 0.5, n)).float().view(n, 1, 1)
    wave = 0.5 + 0.5 * torch.sin(2 * math.pi * freq * (yy + tilt * xx) + phase)
    base_w = (
        torch.tensor([0.10, 0.35, 0.75]).view(1, 3, 1, 1) + torch.from_numpy(rng.normal(0, 0.04, (n, 3, 1, 1))).float()
    )
    water = base_w + 0.18 * wave.unsqueeze(1) * torch.tensor([0.3, 0.6, 1.0]).view(1, 3, 1, 1)
    # land: low-frequency random blotches between green and brown
    coarse = torch.from_numpy(rng.uniform(0, 1, (n, 1, 5, 5))).float()
    blot = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    green = torch.tensor([0.30, 0.55, 0.15]).view(1, 3, 1, 1)
    brown = torch.tensor([0.55, 0.40, 0.20]).view(1, 3, 1, 1)
    land = green * blot + brown * (1 - blot) + torch.from_numpy(rng.normal(0, 0.04, (n, 3, 1, 1))).float()
    a = torch.from_numpy(attr).view(n, 1, 1, 1).bool()
    own, other = torch.where(a, land, water), torch.where(a, water, land)
    return (1 + separation) / 2 * own + (1 - separation) / 2 * other


def _render(
    images: np.ndarray, attr: np.ndarray, size: int, rng: np.random.Generator, contrast: float, separation: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite each upscaled digit (a white stroke, opacity = ink) over its background; add pixel noise.

    Returns the images (N, 3, size, size) and the digit's foreground mask (N, size, size) bool: ink above
    ``MASK_INK_THRESHOLD``. The mask draws no random numbers, so the images are those of earlier versions."""
    n = len(images)
    inner = size - 8
    ink = F.interpolate(
        torch.from_numpy(images).unsqueeze(1), size=(inner, inner), mode="bilinear", align_corners=False
    )
    alpha = torch.zeros(n, 1, size, size)
    # a random shift of up to 2 pixels so position carries no information
    shifts = rng.integers(-2, 3, size=(n, 2))
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            m = torch.from_numpy((shifts[:, 0] == dy) & (shifts[:, 1] == dx))
            if m.any():
                alpha[m, :, 4 + dy : 4 + dy + inner, 4 + dx : 4 + dx + inner] = ink[m]
    mask = alpha[:, 0] > MASK_INK_THRESHOLD
    alpha = (contrast * alpha).clamp(0, 1)
    bg = _backgrounds(attr, size, rng, separation)
    fg = torch.ones(n, 3, 1, 1)
    x = alpha * fg + (1 - alpha) * bg
    x = x + torch.from_numpy(rng.normal(0, 0.01, x.shape)).float()
    return x.clamp(0, 1).contiguous(), mask


def _spurious_attribute(y: np.ndarray, split: str, correlation: float, rng: np.random.Generator) -> np.ndarray:
    """Train: exactly ``round((1 - correlation) * n_y)`` samples of class y get a != y; val/test: a balanced and
    independent of y (half of each class on each background)."""
    a = np.empty_like(y)
    for c in (0, 1):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_minor = int(round((1 - correlation) * len(idx))) if split == "train" else len(idx) // 2
        a[idx[:n_minor]] = 1 - c
        a[idx[n_minor:]] = c
    return a


def build_spurious_digits(
    seed: int = 0,
    correlation: float = 0.95,
    size: int = 28,
    contrast: float = 1.0,
    separation: float = 0.5,
    train_copies: int = 5,
    *,
    progress: Progress = no_progress,
) -> Dataset:
    if not 0.5 <= correlation <= 1.0:
        raise ConfigError(f"spurious-digits correlation must be in [0.5, 1], got {correlation}")
    if not 0.0 <= separation <= 1.0:
        raise ConfigError(f"spurious-digits separation must be in [0, 1], got {separation}")
    if not 1 <= train_copies <= 20:
        raise ConfigError(f"spurious-digits train_copies must be in 1..20, got {train_copies}")
    if not 0.0 < contrast <= 1.0:
        raise ConfigError(f"spurious-digits contrast must be in (0, 1], got {contrast}")
    if not 16 <= size <= 256:
        raise ConfigError(f"spurious-digits size must be in [16, 256], got {size}")
    images, digits = _load_digits()
    parts = _stratified_split(digits, seed)
    splits = {}
    sizes = {name: len(idx) * (train_copies if name == "train" else 1) for name, idx in parts.items()}
    total, done = sum(sizes.values()), 0
    stage = "generating spurious-digits (once)"
    progress(stage, 0, total, unit="image")
    for k, (name, idx) in enumerate(parts.items()):
        rng = np.random.default_rng([seed, k, 7919])
        y = (digits[idx] >= 5).astype(np.int64)
        a = _spurious_attribute(y, name, correlation, rng)
        if name == "train" and train_copies > 1:
            # each training digit is drawn train_copies times on fresh backgrounds of the *same* family, so the
            # correlation holds per digit and the minority groups stay as few distinct digits as in WaterBirds
            idx, y, a = (np.tile(v, train_copies) for v in (idx, y, a))
        x, mask = _render(images[idx], a, size, rng, contrast, separation)
        yt = torch.from_numpy(y)
        splits[name] = Split(x, yt, torch.from_numpy(2 * y + a), torch.arange(len(idx)), mask)
        done += sizes[name]
        progress(stage, done, total, unit="image")
    mean, std = channel_stats(splits["train"].x)
    params = {
        "seed": seed,
        "correlation": correlation,
        "size": size,
        "contrast": contrast,
        "separation": separation,
        "train_copies": train_copies,
    }
    return Dataset(
        spec={"type": "builtin", "name": "spurious-digits", "version": SPURIOUS_VERSION, "params": params},
        splits=splits,
        num_classes=2,
        class_names=["low", "high"],
        group_names=["low/water", "low/land", "high/water", "high/land"],
        input_shape=(3, size, size),
        mean=mean,
        std=std,
        description=(
            "WaterBirds analogue from real digits: label digit>=5 ('high'), background water/land agrees with "
            f"the label in {correlation:.0%} of train images, independent in val/test; groups (label, background)"
        ),
        perturb_defaults=SPURIOUS_PERTURB_DEFAULTS,
        train_defaults=SPURIOUS_TRAIN_DEFAULTS,
    )


@dataclass(frozen=True)
class Builtin:
    """A built-in dataset: its builder, the types of its spec parameters, and its generator version."""

    builder: Callable[..., Dataset]
    param_types: dict[str, type]
    version: int
    perturb_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    train_defaults: dict[str, Any] = field(default_factory=dict)
    #: One line for ``lfp data --list``.
    summary: str = ""

    def full_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """The given parameters with the builder's defaults filled in (what artifacts record); keyword-only
        arguments (such as ``progress``) are run settings, not part of the data."""
        sig = inspect.signature(self.builder)
        return {k: params.get(k, p.default) for k, p in sig.parameters.items() if p.kind != p.KEYWORD_ONLY}

    def build(self, params: dict[str, Any], progress: Progress = no_progress) -> Dataset:
        """Run the builder; a builder that reports progress itself is given ``progress``."""
        if "progress" in inspect.signature(self.builder).parameters:
            return self.builder(**params, progress=progress)
        return self.builder(**params)


BUILTINS: dict[str, Builtin] = {
    "digits": Builtin(
        build_digits,
        {"seed": int},
        DIGITS_VERSION,
        DIGITS_PERTURB_DEFAULTS,
        DIGITS_TRAIN_DEFAULTS,
        "scikit-learn's 1,797 real 8x8 handwritten digits, 10 classes (60/20/20 split)",
    ),
    "spurious-digits": Builtin(
        build_spurious_digits,
        {"seed": int, "correlation": float, "size": int, "contrast": float, "separation": float, "train_copies": int},
        SPURIOUS_VERSION,
        SPURIOUS_PERTURB_DEFAULTS,
        SPURIOUS_TRAIN_DEFAULTS,
        "digits >= 5 vs < 5 drawn on water/land backgrounds that agree with the label in 95% of train; groups "
        "2*y + background; 28x28 RGB, digit masks",
    ),
    "spurious-scenes": Builtin(
        scenes.build_spurious_scenes,
        {
            "seed": int,
            "correlation": float,
            "size": int,
            "train_size": int,
            "val_per_group": int,
            "test_per_group": int,
            "object_min": float,
            "object_max": float,
        },
        scenes.SCENES_VERSION,
        scenes.SCENES_PERTURB_DEFAULTS,
        scenes.SCENES_TRAIN_DEFAULTS,
        "the WaterBirds-like testbed: small rounded (landbird) or spiky (waterbird) objects, 16 species a class, on "
        "land or water scenes agreeing with the class in 95% of train; groups 2*y + place; 32x32 RGB, object masks; "
        "start from a scenes-pretrain model (docs/testbed.md)",
    ),
    "scenes-pretrain": Builtin(
        scenes.build_scenes_pretrain,
        {"seed": int, "classes": int, "per_class": int, "size": int, "object_min": float, "object_max": float},
        scenes.SCENES_VERSION,
        {},
        scenes.PRETRAIN_TRAIN_DEFAULTS,
        "spurious-scenes' pretraining source (its ImageNet): 32 other object species on every scene type, no "
        "label-scene correlation",
    ),
}
