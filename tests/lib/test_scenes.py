"""The spurious-scenes testbed and its pretraining source: what a study on them relies on."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from lfpcli.artifacts.dataspec import resolve
from lfpcli.data.scenes import (
    CHUNK,
    GROUP_NAMES,
    MASK_ALPHA,
    SOURCE_LOBES,
    TARGET_LOBES,
    TARGET_SPECIES,
    build_scenes_pretrain,
    build_spurious_scenes,
    render_scenes,
    render_seeds,
    species_catalogue,
    split_plan,
)
from lfpcli.errors import ConfigError

SMALL = dict(train_size=200, val_per_group=6, test_per_group=10)


@pytest.fixture(scope="module")
def small():
    return build_spurious_scenes(**SMALL)


def _digest(ds) -> str:
    h = hashlib.sha256()
    for name in ("train", "val", "test"):
        sp = ds.splits[name]
        for t in (sp.x, sp.y, sp.group, sp.mask):
            h.update(t.numpy().tobytes())
    return h.hexdigest()


def test_same_spec_same_bytes_and_the_seed_changes_them(small):
    assert _digest(build_spurious_scenes(**SMALL)) == _digest(small)
    assert _digest(build_spurious_scenes(seed=1, **SMALL)) != _digest(small)
    # the thread count does not enter: rendering is elementwise numpy
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert _digest(build_spurious_scenes(**SMALL)) == _digest(small)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("correlation,train_size", [(0.95, 200), (0.8, 130), (0.5, 64), (1.0, 40)])
def test_group_counts_and_correlation_are_exact(correlation, train_size):
    ds = build_spurious_scenes(correlation=correlation, train_size=train_size, val_per_group=3, test_per_group=5)
    tr = ds.splits["train"]
    half = train_size // 2
    minor = round((1 - correlation) * half)
    assert tr.group_counts(4).tolist() == [half - minor, minor, minor, half - minor]
    # group = 2*y + place, place 0 = land: class 0 (landbird) on land is the first group, as in WaterBirds
    place = tr.group - 2 * tr.y
    assert set(place.tolist()) <= {0, 1}
    for c in (0, 1):
        agree = (place[tr.y == c] == c).float().mean().item()
        assert agree == pytest.approx((half - minor) / half)
    for name, per in (("val", 3), ("test", 5)):
        assert ds.splits[name].group_counts(4).tolist() == [per] * 4
    assert ds.group_names == list(GROUP_NAMES) and GROUP_NAMES[0] == "landbird/land"


def test_images_are_rgb_in_the_unit_box_with_a_mask_each(small):
    for sp in small.splits.values():
        assert sp.x.shape[1:] == (3, 32, 32) and sp.x.dtype == torch.float32
        assert float(sp.x.min()) >= 0.0 and float(sp.x.max()) <= 1.0
        assert sp.mask.shape == (len(sp), 32, 32) and sp.mask.dtype == torch.bool


def test_the_object_is_small_and_the_mask_holds_all_of_it_and_nothing_else(small):
    """Outside the mask (widened by the one-pixel anti-aliased rim) every pixel is the scene alone, up to the
    pixel noise; the mask's area is the object's drawn share of the image (10-30% by default)."""
    for k, name in enumerate(("train", "val", "test")):
        sp = small.splits[name]
        per = None if name == "train" else SMALL[f"{name}_per_group"]
        _, _, _, scene = split_plan(0, k, name, SMALL["train_size"], per, 0.95)
        for c, start in enumerate(range(0, len(sp), CHUNK)):
            rng = np.random.default_rng([*render_seeds(0, k), c])
            bg = torch.from_numpy(np.clip(render_scenes(scene[start : start + CHUNK], 32, rng), 0, 1))
            m = sp.mask[start : start + CHUNK]
            wide = torch.nn.functional.max_pool2d(m.float()[:, None], 3, 1, 1)[:, 0] > 0
            diff = (sp.x[start : start + CHUNK] - bg).abs().amax(1)
            assert float(diff[~wide].max()) < 0.06  # 6 sigma of the 0.01 pixel noise
            # inside, the object shows: most mask pixels differ from the scene by more than the noise
            assert float((diff[m] > 0.06).float().mean()) > 0.5
        area = sp.mask.flatten(1).float().mean(1)
        assert float(area.min()) > 0.07 and float(area.max()) < 0.35
        assert 0.15 < float(area.mean()) < 0.25


def test_splits_share_no_image(small):
    seen = {}
    for name, sp in small.splits.items():
        for i in range(len(sp)):
            key = hashlib.sha256(sp.x[i].numpy().tobytes()).hexdigest()
            assert key not in seen, f"{name}[{i}] repeats {seen.get(key)}"
            seen[key] = f"{name}[{i}]"


def test_the_two_classes_differ_by_shape_alone():
    land = species_catalogue("landbird", TARGET_SPECIES, TARGET_LOBES[0])
    water = species_catalogue("waterbird", TARGET_SPECIES, TARGET_LOBES[1])
    assert set(land["k"].astype(int)) == {1, 2, 3} and set(water["k"].astype(int)) == {5, 6, 7}
    assert float(land["a1"].max()) < float(water["a1"].min())  # rounded vs spiky
    for key in ("c1", "c2", "pattern", "freq"):  # colours and patterns carry nothing about the class
        assert np.array_equal(land[key], water[key])
    source = species_catalogue("source", 64, SOURCE_LOBES)
    target_shapes = {(float(k), float(a)) for sp in (land, water) for k, a in zip(sp["k"], sp["a1"])}
    assert not target_shapes & {(float(k), float(a)) for k, a in zip(source["k"], source["a1"])}
    assert set(source["k"].astype(int)) == set(SOURCE_LOBES)


def test_pretraining_source_is_unbiased_and_many_class():
    ds = build_scenes_pretrain(classes=12, per_class=40)
    tr = ds.splits["train"]
    assert ds.num_classes == 12 and tr.y.bincount().tolist() == [40] * 12
    assert len(ds.splits["val"]) == len(ds.splits["test"]) == 12 * 10
    assert ds.group_names is None and bool((tr.group == -1).all())
    # the scene family is independent of the label: every class is drawn on land and on water
    land_share = []
    for c in range(12):
        xs = tr.x[tr.y == c]
        bluish = (xs[:, 2] > xs[:, 1]).flatten(1).float().mean(1) > 0.5
        land_share.append(float((~bluish).float().mean()))
    assert 0.3 < float(np.mean(land_share)) < 0.7 and min(land_share) > 0.05


@pytest.mark.parametrize(
    "spec",
    [
        "spurious-scenes:size=16",
        "spurious-scenes:correlation=0.4",
        "spurious-scenes:train_size=7",
        "spurious-scenes:object_min=0.3,object_max=0.2",
        "scenes-pretrain:classes=1",
    ],
)
def test_bad_parameters_are_refused(spec):
    with pytest.raises(ConfigError):
        resolve(spec, use_cache=False)


def test_the_spec_resolves_cached_and_records_every_parameter():
    ds = resolve("spurious-scenes:train_size=40,val_per_group=2,test_per_group=2")
    assert ds.spec["name"] == "spurious-scenes" and ds.spec["params"]["object_max"] == 0.30
    again = resolve("spurious-scenes:train_size=40,val_per_group=2,test_per_group=2")
    assert torch.equal(again.splits["test"].x, ds.splits["test"].x)
    assert torch.equal(again.splits["test"].mask, ds.splits["test"].mask)
    assert MASK_ALPHA == 0.5
