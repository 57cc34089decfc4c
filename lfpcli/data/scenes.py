"""``spurious-scenes``, a WaterBirds-like testbed, and ``scenes-pretrain``, its ImageNet analogue: both generated
offline from one seeded renderer of small objects ("birds") pasted on textured scenes.

The world
    *Species*: a shape with ``k`` lobes, ``r(phi) = 1 + a1 cos(k phi) + a2 cos(2k phi + p)`` in the object's own
    frame, stretched by an aspect ratio, filled with a body colour and a pattern (solid, stripes, spots, rings) of a
    second colour, with a dark eye. A fixed catalogue (:data:`WORLD_SEED`, independent of the data seed) holds the
    target task's species (16 a class) and, disjoint from them, the pretraining source's.
    The two target classes are two families of species: ``landbird`` (class 0): rounded shapes, 1-3 lobes;
    ``waterbird`` (class 1): spiky shapes, 5-7 lobes. Colours and patterns are drawn alike for both classes, so
    only the shape tells the class.
    Each image draws its own pose (rotation), scale (``object_area`` of the image, uniform), position (uniform,
    the object inside the frame), colour and shape jitter around its species.

    *Scenes*: two families of three scene types, each with random texture parameters, filling the image:
    ``land`` (place 0): forest (dark green, brown trunks), field (yellow-green blotches), bamboo (light green
    stripes); ``water`` (place 1): ocean (blue waves), lake (a light-to-dark gradient with ripples), river
    (teal streaks). The family shows in every pixel's colour, so a classifier learns it sooner than the
    object's shape, as it learns WaterBirds' backgrounds sooner than the birds.

``spurious-scenes``
    Two classes; in train the place agrees with the class (landbirds on land, waterbirds on water) for exactly
    ``correlation`` of each class; val and test hold ``val_per_group`` / ``test_per_group`` images of every
    group, the place independent of the class. Groups ``g = 2*y + place`` (WaterBirds' order: landbird/land
    first). Every split carries the object's mask (alpha above one half).

``scenes-pretrain``
    ``classes`` species of the source catalogue (lobes 1 to 8, so shapes of both target families and others),
    each drawn on every scene type with the scene independent of the label: an unbiased many-class task whose
    features know objects and scenes alike. Train a model on it once (``lfp train --data scenes-pretrain``) and
    start ``lfp train`` on ``spurious-scenes`` from it (``--weights FILE``); ``lfp retrain`` then starts the fresh
    model from the same file.

Determinism: every number comes from numpy generators seeded by ``(seed, split, chunk)`` with a fixed chunk size,
and rendering is elementwise numpy arithmetic, so the same spec gives the same bytes on any machine and thread
count.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lfpcli.data.dataset import Dataset, Split, channel_stats
from lfpcli.errors import ConfigError
from lfpcli.progress import Progress, no_progress

SCENES_VERSION = 2
#: Seeds the species catalogue: the same species for every data seed, as WaterBirds has the same 200 species.
WORLD_SEED = 20261205
#: Images rendered (and their random numbers drawn) per chunk; fixed, so the bytes never depend on it.
CHUNK = 500
#: Species per class of the target task.
TARGET_SPECIES = 16
#: Lobe counts of the two target families (class 0 rounded, class 1 spiky) and of the source catalogue.
TARGET_LOBES = ((1, 2, 3), (5, 6, 7))
SOURCE_LOBES = tuple(range(1, 9))
#: The four lobe depths (``a1``) of the source's species grid.
SOURCE_DEPTHS = (0.12, 0.20, 0.28, 0.36)
SCENE_TYPES = ("forest", "field", "bamboo", "ocean", "lake", "river")
#: Scene types 0-2 are land (place 0), 3-5 water (place 1).
PLACES = ("land", "water")
CLASS_NAMES = ("landbird", "waterbird")
GROUP_NAMES = ("landbird/land", "landbird/water", "waterbird/land", "waterbird/water")
#: A pixel belongs to the object (its mask) where the object's opacity is above this.
MASK_ALPHA = 0.5

# Perturbation and training settings used when the user gives none (recorded in every artifact). Fixed with the
# generator, before any perturbation method ran on this data (docs/testbed.md).
SCENES_PERTURB_DEFAULTS = {"pgd-l2": {"eps": 2.0, "steps": 30}, "pgd-linf": {"eps": 0.1, "steps": 30}}
SCENES_TRAIN_DEFAULTS = {
    "epochs": 20,
    "optimizer": "sgd",
    "lr": 1e-3,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "batch_size": 64,
}
PRETRAIN_TRAIN_DEFAULTS = {"epochs": 20, "optimizer": "adam", "lr": 1e-3, "batch_size": 64, "schedule": "cosine"}


# ----------------------------------------------------------------------------------------------------------------
# species


def species_catalogue(kind: str, n: int, lobes: tuple[int, ...]) -> dict[str, np.ndarray]:
    """``n`` species of the catalogue ``kind`` ("landbird", "waterbird" or "source"): arrays of length ``n``.

    Keys: ``k`` lobes, ``a1``/``a2`` the amplitudes of the first and second harmonic, ``p2`` its phase,
    ``aspect`` (>= 1, long axis over short), ``c1``/``c2`` (n, 3) body and pattern colours, ``pattern``
    (0 solid, 1 stripes, 2 spots, 3 rings), ``freq`` the pattern's frequency. Class 1's shapes are spikier
    (larger ``a1``). The two target classes take their colours and patterns from one shared stream (species i of
    either class has the same palette and pattern), so these carry nothing about the class."""
    stream = {"landbird": 1, "waterbird": 2, "source": 3}[kind]
    rng = np.random.default_rng([WORLD_SEED, stream])
    look = rng if kind == "source" else np.random.default_rng([WORLD_SEED, 0])
    spiky = kind == "waterbird"
    if kind == "source":
        # a grid of shapes: species i has 1 + i % 8 lobes and the (i // 8) % 4-th of four lobe depths, so the
        # source's classes span every shape of both target families and the shapes between them
        i = np.arange(n)
        k = np.array(lobes)[i % len(lobes)]
        a1 = np.array(SOURCE_DEPTHS)[(i // len(lobes)) % len(SOURCE_DEPTHS)] + rng.uniform(-0.02, 0.02, n)
    else:  # every lobe count of the family appears, as evenly as n allows
        k = np.resize(np.array(lobes), n)[rng.permutation(n)]
        a1 = rng.uniform(0.28, 0.42, n) if spiky else rng.uniform(0.10, 0.25, n)
    return {
        "k": k.astype(np.float32),
        "a1": a1.astype(np.float32),
        "a2": rng.uniform(0.0, 0.08, n).astype(np.float32),
        "p2": rng.uniform(0, 2 * math.pi, n).astype(np.float32),
        "aspect": rng.uniform(1.0, 1.8, n).astype(np.float32),
        "c1": _hsv(look.uniform(0, 1, n), look.uniform(0.35, 0.9, n), look.uniform(0.55, 1.0, n)),
        "c2": _hsv(look.uniform(0, 1, n), look.uniform(0.2, 0.9, n), look.uniform(0.15, 0.95, n)),
        "pattern": look.integers(0, 4, n),
        "freq": look.uniform(2.0, 4.0, n).astype(np.float32),
        # a source species is its shape and pattern: its colours are drawn afresh for every image, so that
        # telling 32 species apart takes their shapes (as telling ImageNet's classes apart takes more than colour)
        "any_colour": np.full(n, kind == "source"),
    }


def _hsv(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """HSV in [0, 1] to RGB, (n, 3) float32."""
    i = np.floor(h * 6).astype(np.int64) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = np.stack([np.stack(c, -1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    return table[i, np.arange(len(h))].astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------
# rendering (numpy, elementwise: the same bytes everywhere)


def _upsample(grid: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of (n, gh, gw) to (n, size, size), cell centres aligned (a smooth random field)."""
    n, gh, gw = grid.shape

    def axis(g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(size) + 0.5) * g / size - 0.5, 0, g - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, g - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    ylo, yhi, wy = axis(gh)
    xlo, xhi, wx = axis(gw)
    top = grid[:, ylo][:, :, xlo] * (1 - wx) + grid[:, ylo][:, :, xhi] * wx
    bot = grid[:, yhi][:, :, xlo] * (1 - wx) + grid[:, yhi][:, :, xhi] * wx
    return (top * (1 - wy)[None, :, None] + bot * wy[None, :, None]).astype(np.float32)


def _mix(a: np.ndarray, b: np.ndarray, m: np.ndarray) -> np.ndarray:
    """(3,) or (n, 3) colours a, b blended by m (n, H, W) in [0, 1] -> (n, 3, H, W)."""
    a = np.broadcast_to(np.asarray(a, np.float32), (m.shape[0], 3))[:, :, None, None]
    b = np.broadcast_to(np.asarray(b, np.float32), (m.shape[0], 3))[:, :, None, None]
    return a * (1 - m[:, None]) + b * m[:, None]


def render_scenes(scene: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3, size, size) float32 backgrounds, one of :data:`SCENE_TYPES` per image (``scene`` (n,) ints)."""
    n = len(scene)
    yy, xx = np.meshgrid((np.arange(size) + 0.5) / size, (np.arange(size) + 0.5) / size, indexing="ij")
    yy, xx = yy[None].astype(np.float32), xx[None].astype(np.float32)
    # every random number is drawn for every image (the same draws whatever the mix of scene types)
    f = rng.uniform(0, 1, (n, 1, 1)).astype(np.float32)
    phase = rng.uniform(0, 2 * math.pi, (n, 1, 1)).astype(np.float32)
    tilt = rng.uniform(-0.3, 0.3, (n, 1, 1)).astype(np.float32)
    coarse = _upsample(rng.uniform(0, 1, (n, 4, 4)).astype(np.float32), size)
    medium = _upsample(rng.uniform(0, 1, (n, 8, 8)).astype(np.float32), size)
    streak = _upsample(rng.uniform(0, 1, (n, 3, 12)).astype(np.float32), size)
    jitter = rng.normal(0, 0.04, (n, 3, 1, 1)).astype(np.float32)
    bright = rng.uniform(0.85, 1.15, (n, 1, 1, 1)).astype(np.float32)
    out = np.empty((n, 3, size, size), np.float32)
    for t, name in enumerate(SCENE_TYPES):
        sel = np.flatnonzero(scene == t)
        if not len(sel):
            continue
        ft, ph, ti = f[sel], phase[sel], tilt[sel]
        co, me, st = coarse[sel], medium[sel], streak[sel]
        if name == "forest":  # dark green canopy with brown trunks, lighter blotches
            trunks = (np.sin(2 * math.pi * (3 + 4 * ft) * (xx + 0.15 * ti * yy) + ph) > 0.55).astype(np.float32)
            img = _mix((0.12, 0.30, 0.10), (0.25, 0.48, 0.18), co)
            img = (
                img * (1 - trunks[:, None])
                + np.array((0.36, 0.25, 0.14), np.float32)[None, :, None, None] * trunks[:, None]
            )
        elif name == "field":  # yellow-green grass, blotchy
            img = _mix((0.40, 0.50, 0.16), (0.66, 0.64, 0.28), 0.6 * co + 0.4 * me)
        elif name == "bamboo":  # light green stalks on darker green
            stalks = 0.5 + 0.5 * np.sin(2 * math.pi * (6 + 6 * ft) * (xx + 0.1 * ti * yy) + ph)
            img = _mix((0.20, 0.40, 0.15), (0.50, 0.70, 0.30), 0.7 * stalks + 0.3 * me)
        elif name == "ocean":  # deep blue with light wave crests
            waves = 0.5 + 0.5 * np.sin(2 * math.pi * (3 + 5 * ft) * (yy + ti * xx) + ph)
            img = _mix((0.06, 0.20, 0.50), (0.35, 0.60, 0.85), 0.75 * waves**2 + 0.25 * me)
        elif name == "lake":  # light sky reflection fading into darker water, faint ripples
            ripple = 0.5 + 0.5 * np.sin(2 * math.pi * (10 + 6 * ft) * (yy + 0.2 * ti * xx) + ph)
            img = _mix((0.18, 0.38, 0.62), (0.55, 0.72, 0.88), np.clip(1 - yy + 0.15 * ripple - 0.1, 0, 1))
        else:  # river: teal water with streaks along the flow
            img = _mix((0.08, 0.35, 0.45), (0.30, 0.62, 0.70), 0.8 * st + 0.2 * co)
        out[sel] = img
    out = out * bright + jitter
    return out


def render_objects(
    sp: dict[str, np.ndarray], who: np.ndarray, size: int, area: tuple[float, float], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Objects of species ``who`` (n,) indices into ``sp``: returns their colour (n, 3, S, S) and opacity (n, S, S).

    Per image: rotation uniform in [0, 2 pi), area fraction uniform in ``area``, centre uniform with the object
    inside the frame (where it fits), colour and shape jittered around the species' (colours drawn afresh where the
    species has ``any_colour``)."""
    n = len(who)
    k, a1, a2, p2 = sp["k"][who], sp["a1"][who], sp["a2"][who], sp["p2"][who]
    a1 = a1 * rng.uniform(0.9, 1.1, n).astype(np.float32)
    aspect = sp["aspect"][who] * rng.uniform(0.9, 1.1, n).astype(np.float32)
    theta = rng.uniform(0, 2 * math.pi, n).astype(np.float32)
    frac = rng.uniform(area[0], area[1], n).astype(np.float32)
    # area of r(phi)^2/2 over phi is pi * (1 + (a1^2 + a2^2)/2) * s^2; the aspect stretch keeps the area
    s = np.sqrt(frac * size * size / (math.pi * (1 + (a1**2 + a2**2) / 2))).astype(np.float32)
    reach = s * (1 + a1 + a2) * np.sqrt(aspect)
    lo = np.minimum(reach, size / 2)
    cx = (lo + rng.uniform(0, 1, n) * (size - 2 * lo)).astype(np.float32)
    cy = (lo + rng.uniform(0, 1, n) * (size - 2 * lo)).astype(np.float32)
    own = sp["any_colour"][who][:, None]
    free1 = _hsv(rng.uniform(0, 1, n), rng.uniform(0.35, 0.9, n), rng.uniform(0.55, 1.0, n))
    free2 = _hsv(rng.uniform(0, 1, n), rng.uniform(0.2, 0.9, n), rng.uniform(0.15, 0.95, n))
    c1 = np.clip(np.where(own, free1, sp["c1"][who]) + rng.normal(0, 0.05, (n, 3)), 0, 1).astype(np.float32)
    c2 = np.clip(np.where(own, free2, sp["c2"][who]) + rng.normal(0, 0.05, (n, 3)), 0, 1).astype(np.float32)
    pphase = rng.uniform(0, 2 * math.pi, n).astype(np.float32)
    grid = np.arange(size, dtype=np.float32) + 0.5
    dx = grid[None, None, :] - cx[:, None, None]
    dy = grid[None, :, None] - cy[:, None, None]
    ct, st = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    sa = np.sqrt(aspect)[:, None, None]
    ss = s[:, None, None]
    u = (ct * dx + st * dy) / (ss * sa)
    v = (-st * dx + ct * dy) * sa / ss
    r = np.sqrt(u * u + v * v)
    phi = np.arctan2(v, u)
    kk = k[:, None, None]
    edge = 1 + a1[:, None, None] * np.cos(kk * phi) + a2[:, None, None] * np.cos(2 * kk * phi + p2[:, None, None])
    # signed distance to the outline in pixels (first order), one pixel of anti-aliasing
    alpha = np.clip((edge - r) * ss + 0.5, 0, 1).astype(np.float32)
    pat = sp["pattern"][who][:, None, None]
    fr = sp["freq"][who][:, None, None]
    ph = pphase[:, None, None]
    stripes = (np.sin(2 * math.pi * fr * u / 2 + ph) > 0).astype(np.float32)
    spots = ((np.cos(math.pi * fr * u + ph) * np.cos(math.pi * fr * v)) > 0.4).astype(np.float32)
    rings = (np.sin(2 * math.pi * fr * r / 2 + ph) > 0.3).astype(np.float32)
    m = np.where(pat == 1, stripes, np.where(pat == 2, spots, np.where(pat == 3, rings, 0.0))).astype(np.float32)
    colour = _mix(c1, c2, m)
    eye = np.clip((0.16 - np.sqrt((u - 0.55) ** 2 + (v - 0.1) ** 2)) * ss + 0.5, 0, 1).astype(np.float32)
    colour = colour * (1 - 0.9 * eye[:, None])
    return colour, alpha


def _render(
    sp: dict[str, np.ndarray],
    who: np.ndarray,
    scene: np.ndarray,
    size: int,
    area: tuple[float, float],
    seeds: list[int],
    progress: Progress,
    stage: str,
    done: int,
    total: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite objects over scenes chunk by chunk: (n, 3, S, S) float32 in [0, 1] and masks (n, S, S) bool."""
    n = len(who)
    x = np.empty((n, 3, size, size), np.float32)
    mask = np.empty((n, size, size), bool)
    for c, start in enumerate(range(0, n, CHUNK)):
        sl = slice(start, min(start + CHUNK, n))
        rng = np.random.default_rng([*seeds, c])
        bg = render_scenes(scene[sl], size, rng)
        colour, alpha = render_objects(sp, who[sl], size, area, rng)
        img = alpha[:, None] * colour + (1 - alpha[:, None]) * bg
        img += rng.normal(0, 0.01, img.shape).astype(np.float32)
        x[sl] = np.clip(img, 0, 1)
        mask[sl] = alpha > MASK_ALPHA
        progress(stage, done + sl.stop, total, unit="image")
    return torch.from_numpy(x), torch.from_numpy(mask)


# ----------------------------------------------------------------------------------------------------------------
# the two datasets


def _check_common(name: str, size: int, object_min: float, object_max: float) -> tuple[float, float]:
    if not 32 <= size <= 256:
        raise ConfigError(f"{name} size must be in [32, 256], got {size}")
    if not 0.01 <= object_min <= object_max <= 0.5:
        raise ConfigError(
            f"{name} needs 0.01 <= object_min <= object_max <= 0.5 (fractions of the image area), "
            f"got {object_min} and {object_max}"
        )
    return object_min, object_max


def build_spurious_scenes(
    seed: int = 0,
    correlation: float = 0.95,
    size: int = 32,
    train_size: int = 4800,
    val_per_group: int = 300,
    test_per_group: int = 1000,
    object_min: float = 0.10,
    object_max: float = 0.30,
    *,
    progress: Progress = no_progress,
) -> Dataset:
    """The testbed (module docstring). Train: ``train_size / 2`` images a class, exactly
    ``round((1 - correlation) * train_size / 2)`` of them on the other class's place."""
    if not 0.5 <= correlation <= 1.0:
        raise ConfigError(f"spurious-scenes correlation must be in [0.5, 1], got {correlation}")
    if train_size < 8 or train_size % 2:
        raise ConfigError(f"spurious-scenes train_size must be an even number >= 8, got {train_size}")
    if val_per_group < 1 or test_per_group < 1:
        raise ConfigError("spurious-scenes val_per_group and test_per_group must be at least 1")
    area = _check_common("spurious-scenes", size, object_min, object_max)
    species = [species_catalogue(c, TARGET_SPECIES, TARGET_LOBES[i]) for i, c in enumerate(CLASS_NAMES)]
    sp = {key: np.concatenate([species[0][key], species[1][key]]) for key in species[0]}
    plan = {"train": None, "val": val_per_group, "test": test_per_group}
    sizes = {"train": train_size, "val": 4 * val_per_group, "test": 4 * test_per_group}
    total, done = sum(sizes.values()), 0
    stage = "generating spurious-scenes (once)"
    progress(stage, 0, total, unit="image")
    splits = {}
    for k, (name, per_group) in enumerate(plan.items()):
        y, place, who, scene = split_plan(seed, k, name, train_size, per_group, correlation)
        x, mask = _render(sp, who, scene, size, area, render_seeds(seed, k), progress, stage, done, total)
        done += len(y)
        yt = torch.from_numpy(y)
        splits[name] = Split(x, yt, torch.from_numpy(2 * y + place), torch.arange(len(y)), mask)
    mean, std = channel_stats(splits["train"].x)
    params = {
        "seed": seed,
        "correlation": correlation,
        "size": size,
        "train_size": train_size,
        "val_per_group": val_per_group,
        "test_per_group": test_per_group,
        "object_min": object_min,
        "object_max": object_max,
    }
    return Dataset(
        spec={"type": "builtin", "name": "spurious-scenes", "version": SCENES_VERSION, "params": params},
        splits=splits,
        num_classes=2,
        class_names=list(CLASS_NAMES),
        group_names=list(GROUP_NAMES),
        input_shape=(3, size, size),
        mean=mean,
        std=std,
        description=(
            f"WaterBirds-like testbed: small rounded (landbird) or spiky (waterbird) objects, 16 species a "
            f"class, on land or water scenes; the place agrees with the class in {correlation:.0%} of train "
            f"images, independent in val/test; groups 2*y + place. Start from scenes-pretrain (docs/testbed.md)"
        ),
        perturb_defaults=SCENES_PERTURB_DEFAULTS,
        train_defaults=SCENES_TRAIN_DEFAULTS,
        details={
            "species_per_class": TARGET_SPECIES,
            "lobes": [list(v) for v in TARGET_LOBES],
            "scene_types": {"land": list(SCENE_TYPES[:3]), "water": list(SCENE_TYPES[3:])},
            "mask": f"object opacity above {MASK_ALPHA}",
            "generator_version": SCENES_VERSION,
        },
    )


def render_seeds(seed: int, split: int) -> list[int]:
    """The seed of split number ``split``'s rendering (chunk c draws from ``default_rng([*render_seeds, c])``)."""
    return [seed, split, 15485863]


def split_plan(
    seed: int, split: int, name: str, train_size: int, per_group: int | None, correlation: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What split number ``split`` (0 train, 1 val, 2 test) holds, image by image: label, place, species (an index
    into both classes' catalogues, class 0's first) and scene type."""
    rng = np.random.default_rng([seed, split, 104729])
    y, place = _labels_and_places(name, train_size, per_group, correlation, rng)
    who = y * TARGET_SPECIES + rng.integers(0, TARGET_SPECIES, len(y))
    scene = place * 3 + rng.integers(0, 3, len(y))
    return y, place, who, scene


def _labels_and_places(
    split: str, train_size: int, per_group: int | None, correlation: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and places in a shuffled order. Train: half a class each, exactly ``round((1 - correlation) * n_y)``
    of class y on place ``1 - y`` (the rest on place y); val/test: ``per_group`` of every (y, place)."""
    if split == "train":
        half = train_size // 2
        minor = int(round((1 - correlation) * half))
        counts = {(0, 0): half - minor, (0, 1): minor, (1, 0): minor, (1, 1): half - minor}
    else:
        counts = {(y, p): per_group for y in (0, 1) for p in (0, 1)}
    y = np.concatenate([np.full(c, yy, np.int64) for (yy, _), c in counts.items()])
    place = np.concatenate([np.full(c, pp, np.int64) for (_, pp), c in counts.items()])
    order = rng.permutation(len(y))
    return y[order], place[order]


def build_scenes_pretrain(
    seed: int = 0,
    classes: int = 32,
    per_class: int = 400,
    size: int = 32,
    object_min: float = 0.10,
    object_max: float = 0.30,
    *,
    progress: Progress = no_progress,
) -> Dataset:
    """The pretraining source (module docstring): ``classes`` source species, ``per_class`` training images of
    each and a quarter of that in val and in test, every scene type equally likely whatever the label. No
    groups; the species share no parameters with the target task's."""
    if not 2 <= classes <= 1000:
        raise ConfigError(f"scenes-pretrain classes must be in 2..1000, got {classes}")
    if per_class < 4:
        raise ConfigError(f"scenes-pretrain per_class must be at least 4, got {per_class}")
    area = _check_common("scenes-pretrain", size, object_min, object_max)
    sp = species_catalogue("source", classes, SOURCE_LOBES)
    counts = {"train": per_class, "val": max(1, per_class // 4), "test": max(1, per_class // 4)}
    total, done = classes * sum(counts.values()), 0
    stage = "generating scenes-pretrain (once)"
    progress(stage, 0, total, unit="image")
    splits = {}
    for k, (name, per) in enumerate(counts.items()):
        rng = np.random.default_rng([seed, k, 7727])
        y = rng.permutation(np.repeat(np.arange(classes, dtype=np.int64), per))
        scene = rng.integers(0, len(SCENE_TYPES), len(y))
        x, mask = _render(sp, y, scene, size, area, [seed, k, 9973], progress, stage, done, total)  # own streams
        done += len(y)
        yt = torch.from_numpy(y)
        splits[name] = Split(x, yt, torch.full_like(yt, -1), torch.arange(len(y)), mask)
    mean, std = channel_stats(splits["train"].x)
    params = {
        "seed": seed,
        "classes": classes,
        "per_class": per_class,
        "size": size,
        "object_min": object_min,
        "object_max": object_max,
    }
    return Dataset(
        spec={"type": "builtin", "name": "scenes-pretrain", "version": SCENES_VERSION, "params": params},
        splits=splits,
        num_classes=classes,
        class_names=[f"species-{i:03d}" for i in range(classes)],
        input_shape=(3, size, size),
        mean=mean,
        std=std,
        description=(
            f"pretraining source for spurious-scenes (its ImageNet): {classes} object species (1-8 lobes, none "
            f"of the testbed's), each on every land and water scene type, no label-scene correlation"
        ),
        train_defaults=PRETRAIN_TRAIN_DEFAULTS,
        details={"lobes": list(SOURCE_LOBES), "scene_types": list(SCENE_TYPES), "generator_version": SCENES_VERSION},
    )
