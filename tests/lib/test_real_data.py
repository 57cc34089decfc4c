"""The real datasets' loaders on fabricated copies of each on-disk layout (tests/fixtures_data.py), the lazy
split, and the uint8 HDF5 cache.

Every expectation comes from the fabrication (counts per split and group, pixel values, class names), or from an
independent implementation (torchvision's transforms for the preprocessing), never from the loader itself.
"""

from __future__ import annotations

import re
from pathlib import Path

import fixtures_data as F
import h5py
import numpy as np
import pytest
import torch

from lfpcli.artifacts.dataspec import resolve
from lfpcli.data import Split
from lfpcli.data.lazy import ArrayRows, H5Rows, iter_batches
from lfpcli.errors import ArtifactError, InputError


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    d = tmp_path_factory.mktemp("roots")
    wb, wb_expected = F.make_waterbirds(d / "wb", per_cell={"train": 3, "val": 1, "test": 2}, segmentations=True)
    wilds, _ = F.make_waterbirds(d / "wilds", per_cell=1, release="WILDS", nested=False)
    spuco, spuco_expected = F.make_spuco(d / "spuco", subsets=("spuco_birds", "spuco_dogs"), per_leaf=2)
    return {
        "dir": d,
        "wb": wb,
        "wb_expected": wb_expected,
        "wilds": wilds,
        "spuco": spuco,
        "spuco_expected": spuco_expected,
    }


def counts(ds):
    return {k: s.group_counts(ds.num_groups).tolist() for k, s in ds.splits.items()}


# ------------------------------------------------------------------------------------------------- WaterBirds
def test_waterbirds_counts_classes_shapes(roots):
    ds = resolve(f"waterbirds:root={roots['wb']},size=32")
    assert counts(ds) == roots["wb_expected"]
    assert ds.class_names == ["landbird", "waterbird"] and ds.class_to_index == {"landbird": 0, "waterbird": 1}
    assert ds.group_names == ["landbird/land", "landbird/water", "waterbird/land", "waterbird/water"]
    assert ds.input_shape == (3, 32, 32) and ds.mean == [0.485, 0.456, 0.406] and ds.std == [0.229, 0.224, 0.225]
    info = ds.info()
    assert info["class_to_index"] == {"landbird": 0, "waterbird": 1} and info["details"]["layout"] == "group_DRO"
    assert ds.spec["params"]["root"] == str(roots["wb"]) and ds.spec["params"]["resize"] == 37  # round(32 * 256 / 224)
    tr = ds.splits["train"]
    assert not tr.in_memory  # read on demand
    x = tr.x[:5]
    assert x.shape == (5, 3, 32, 32) and x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1
    # labels as the csv says: group 2*y + place, y = group // 2
    assert torch.equal(tr.y, tr.group // 2) and torch.equal(tr.index, torch.arange(len(tr)))


def test_waterbirds_preprocessing_matches_torchvision(roots):
    """resize (r, r) then center crop, as torchvision's Resize((r, r)) + CenterCrop + ToTensor on the PIL image."""
    from PIL import Image
    from torchvision import transforms as T

    ds = resolve(f"waterbirds:root={roots['wb']},size=24")
    sp = ds.splits["test"]
    ref = T.Compose([T.Resize((27, 27)), T.CenterCrop(24), T.ToTensor()])
    for i in range(len(sp)):
        want = ref(Image.open(sp.x.paths[i]).convert("RGB"))
        assert torch.equal(sp.x[i], want), i
    # the default geometry is the paper's 256 -> 224
    big = resolve(f"waterbirds:root={roots['wb']}")
    assert big.input_shape == (3, 224, 224) and big.spec["params"]["resize"] == 256
    assert tuple(big.splits["val"].x[:1].shape) == (1, 3, 224, 224)


def test_waterbirds_segmentation_masks(roots):
    ds = resolve(f"waterbirds:root={roots['wb']},size=32")
    sp = ds.splits["val"]
    m = sp.mask[:]
    assert m.shape == (len(sp), 32, 32) and m.dtype == torch.bool
    # the fabricated object is the centre half of every side: after resize and crop, a centred block of ~16/37 * 37
    assert bool(m[:, 16, 16].all()) and not bool(m[:, 0, 0].any())
    assert 0.15 < float(m.float().mean()) < 0.4
    none = resolve(f"waterbirds:root={roots['wb']},size=32,masks=none")
    assert none.splits["val"].mask is None


def test_waterbirds_wilds_variant_and_roots(roots):
    for root in (roots["wilds"], roots["wilds"].parent):
        ds = resolve(f"waterbirds:root={root},size=16")
        assert counts(ds) == {k: [1, 1, 1, 1] for k in ("train", "val", "test")}
        assert ds.details["layout"] == "WILDS"


# ------------------------------------------------------------------------------------------------- SpuCo
@pytest.mark.parametrize(
    "order,dogs", [("spuco", {"small_dogs": 0, "big_dogs": 1}), ("sorted", {"big_dogs": 0, "small_dogs": 1})]
)
def test_spuco_dogs_class_order(roots, order, dogs):
    ds = resolve(f"spuco-dogs:root={roots['spuco']},size=16,order={order}")
    assert ds.class_to_index == dogs
    assert counts(ds) == {k: [2, 2, 2, 2] for k in ("train", "val", "test")}
    # every image of a class folder has that class's label (paths tell)
    sp = ds.splits["train"]
    for p, y, g in zip(sp.x.paths, sp.y.tolist(), sp.group.tolist()):
        cls, bg = Path(p).parts[-3], Path(p).parts[-2]
        assert ds.class_names[y] == cls and ds.group_names[g] == f"{cls}/{bg}"
    assert ds.details["label_order"] == order


def test_spuco_animals_and_birds(roots):
    ds = resolve(f"spuco-animals:root={roots['spuco']},size=16")
    assert ds.class_to_index == {"landbirds": 0, "waterbirds": 1, "small_dogs": 2, "big_dogs": 3}
    assert len(ds.group_names) == 8 and counts(ds)["test"] == [2] * 8
    assert ds.details["spuco_background_index"] == {"land": 0, "water": 1, "indoor": 2, "outdoor": 3}
    birds = resolve(f"spuco-birds:root={roots['spuco'] / 'spuco_birds'},size=16")  # the subset folder itself
    assert birds.class_names == ["landbirds", "waterbirds"] and len(birds.splits["val"]) == 8


# ------------------------------------------------------------------------------------------------- MNIST, CIFAR-10
@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx(tmp_path, gz):
    root, want = F.make_mnist(tmp_path, n_train=30, n_test=12, gz=gz)
    ds = resolve(f"mnist:root={root}")
    assert ds.info()["sizes"] == {"train": 30, "test": 12} and ds.input_shape == (1, 28, 28)
    for split in ("train", "test"):
        x = ds.splits[split].x[:]
        assert torch.equal((x[:, 0] * 255).round().to(torch.uint8), torch.from_numpy(want[split][0]))
        assert ds.splits[split].y.tolist() == want[split][1].tolist()
    held = resolve(f"mnist:root={root},val=10,seed=3")
    assert held.info()["sizes"] == {"train": 20, "val": 10, "test": 12}
    fm_root, _ = F.make_mnist(tmp_path / "f", sub="FashionMNIST", n_train=10, n_test=10)
    fm = resolve(f"fmnist:root={fm_root}")
    assert fm.class_names[0] == "T-shirt/top" and fm.mean == [0.2860]


@pytest.mark.parametrize("fmt", ["bin", "py"])
def test_cifar10(tmp_path, fmt):
    root, want = F.make_cifar(tmp_path, fmt, per_batch=3)
    ds = resolve(f"cifar10:root={root}")
    assert ds.info()["sizes"] == {"train": 15, "test": 3} and ds.class_names[0] == "airplane"
    for split in ("train", "test"):
        x = ds.splits[split].x[:]
        assert torch.equal((x * 255).round().to(torch.uint8), torch.from_numpy(want[split][0]))
        assert ds.splits[split].y.tolist() == want[split][1].tolist()


def test_cifar_evil_pickle_never_runs(tmp_path):
    sentinel = tmp_path / "SENTINEL"
    root = F.make_evil_cifar(tmp_path / "c", sentinel)
    with pytest.raises(InputError, match="refused global"):
        resolve(f"cifar10:root={root}")
    assert not sentinel.exists()
    import pickle  # the crafted file is live: a plain unpickler runs it

    pickle.loads((root / "cifar-10-batches-py" / "data_batch_1").read_bytes())
    assert sentinel.exists()


# ------------------------------------------------------------------------------------------------- folder CSV
def test_folder_csv_attribute_groups(tmp_path):
    csv_path, want = F.make_folder_csv(tmp_path, labels=("dog", "cat"), per_cell=1)
    ds = resolve(f"folder:csv={csv_path},size=16")
    assert ds.class_to_index == {"cat": 0, "dog": 1}  # names sorted
    assert ds.group_names == ["cat/indoor", "cat/outdoor", "dog/indoor", "dog/outdoor"]
    assert {k: len(s) for k, s in ds.splits.items()} == want and counts(ds)["train"] == [1, 1, 1, 1]


def test_folder_csv_classes_file_and_grey(tmp_path):
    csv_path, _ = F.make_folder_csv(
        tmp_path, labels=("b", "a"), per_cell=1, mode="L", header=("filename", "y", "split")
    )
    (tmp_path / "classes.txt").write_text("b\na\n")
    ds = resolve(f"folder:csv={csv_path},mode=L,size=8,resize=8")
    assert ds.class_to_index == {"b": 0, "a": 1} and ds.group_names is None and ds.input_shape == (1, 8, 8)
    assert tuple(ds.splits["train"].x[:2].shape) == (2, 1, 8, 8)


def test_image_files_are_opened_when_read_not_when_resolved(tmp_path, monkeypatch):
    """Resolving an image-file dataset only checks that each file is there (no header is opened: on a slow disk that
    alone took minutes); a file of a refused mode is named, in one line, when its row is read."""
    import PIL.Image

    csv_path, _ = F.make_folder_csv(tmp_path, per_cell=1)
    bad = sorted((tmp_path / "images").glob("test_*.png"))[0]
    PIL.Image.open(bad).convert("RGBA").save(bad)
    real_open, opened = PIL.Image.open, []
    monkeypatch.setattr(PIL.Image, "open", lambda p, *a, **k: (opened.append(str(p)), real_open(p, *a, **k))[1])
    ds = resolve(f"folder:csv={csv_path},size=16")
    assert opened == []
    assert ds.splits["train"].x[:].shape == (4, 3, 16, 16) and len(opened) == 4
    with pytest.raises(InputError, match=rf"^image {re.escape(str(bad))} has mode RGBA; "):
        ds.splits["test"].x[:]


# ------------------------------------------------------------------------------------------------- lazy reading
def test_lazy_split_batches_equal_in_memory(roots):
    ds = resolve(f"waterbirds:root={roots['wb']},size=16")
    lazy = ds.splits["train"]
    eager = Split(lazy.x[:], lazy.y, lazy.group, lazy.index)
    for workers in (0, 1):
        a = list(lazy.batches(5, shuffle=True, generator=torch.Generator().manual_seed(7), workers=workers))
        b = list(eager.batches(5, shuffle=True, generator=torch.Generator().manual_seed(7)))
        assert len(a) == len(b)
        for u, v in zip(a, b):
            assert all(torch.equal(p, q) for p, q in zip(u, v))
    sub = lazy.subset([3, 1])
    assert not sub.in_memory and torch.equal(sub.x[:], eager.x[[3, 1]]) and sub.y.tolist() == eager.y[[3, 1]].tolist()
    assert torch.equal(lazy.take([2, 0]), eager.x[[2, 0]])


def test_a_decoding_split_never_holds_every_image(roots, monkeypatch):
    """Reading batch by batch decodes each image once per pass, never the whole split at once."""
    ds = resolve(f"waterbirds:root={roots['wb']},size=16")
    sp = ds.splits["train"]
    sizes = []
    real = type(sp.x).read_raw
    monkeypatch.setattr(type(sp.x), "read_raw", lambda self, idx: (sizes.append(len(idx)), real(self, idx))[1])
    for _ in sp.batches(4, workers=0):
        pass
    assert sizes and max(sizes) <= 4 and sum(sizes) == len(sp)


def test_worker_errors_arrive_as_one_line(tmp_path):
    class Bad(ArrayRows):
        def read_raw(self, idx):
            if 5 in idx:
                raise InputError("image /x/5.jpg cannot be decoded (truncated)")
            return super().read_raw(idx)

    rows = Bad(np.zeros((10, 1, 2, 2), dtype=np.uint8))
    pos = [np.arange(0, 3), np.arange(3, 6), np.arange(6, 10)]
    with pytest.raises(InputError) as e:
        list(iter_batches(rows, pos, workers=1))
    assert str(e.value) == "image /x/5.jpg cannot be decoded (truncated)"


# ------------------------------------------------------------------------------------------------- the cache
def test_cache_round_trip(roots, tmp_path, monkeypatch):
    from lfpcli.commands import describe_data

    spec = f"waterbirds:root={roots['wb']},size=16"
    ds = resolve(spec)
    out = tmp_path / "wb.h5"
    summary = describe_data(spec, out=out)
    assert summary["class_to_index"] == {"landbird": 0, "waterbird": 1}
    with h5py.File(out, "r") as f:
        assert f["train/x"].dtype == np.uint8 and np.prod(f["train/x"].chunks) <= 1 << 16  # a few rows a chunk
        assert f["train/mask"].dtype == bool
    monkeypatch.setenv("LFP_PRELOAD_MB", "0")  # stream even this small file
    back = resolve(str(out))
    assert back.info()["class_to_index"] == ds.class_to_index and back.group_names == ds.group_names
    assert back.spec["type"] == "file" and back.details["layout"] == "group_DRO"
    for k, s in ds.splits.items():
        b = back.splits[k]
        assert isinstance(b.x, H5Rows)
        assert torch.equal(b.x[:], s.x[:]) and torch.equal(b.y, s.y) and torch.equal(b.group, s.group)
        assert torch.equal(b.mask[:], s.mask[:])
    # the record keeps the source spec (root, geometry) and its clean spec is the source itself
    from lfpcli.artifacts import read_record

    record, _ = read_record(out)
    assert record["dataset"]["spec"]["params"]["root"] == str(roots["wb"])
    # loaded whole (the default for small files): the same values
    monkeypatch.setenv("LFP_PRELOAD_MB", "256")
    eager = resolve(str(out))
    assert eager.splits["train"].in_memory and torch.equal(eager.splits["train"].x, ds.splits["train"].x[:])


def test_lazy_file_values_are_checked_when_read(tmp_path, monkeypatch):
    """A float dataset file read lazily: a NaN is found when its row is read, named with the file."""
    from lfpcli.artifacts import make_record
    from lfpcli.artifacts.datasets import write_dataset
    from lfpcli.artifacts.integrity import reseal

    ds = resolve("digits")
    p = tmp_path / "d.h5"
    write_dataset(p, ds, make_record("dataset", {"data": ds.spec}))
    with h5py.File(p, "r+") as f:
        a = f["train/x"][...]
        a[7, 0, 3, 3] = np.nan
        del f["train/x"]
        f.create_dataset("train/x", data=a, chunks=(4, 1, 8, 8))
    reseal(p)
    monkeypatch.setenv("LFP_PRELOAD_MB", "0")
    back = resolve(str(p))
    assert torch.equal(back.splits["train"].x[:7], ds.splits["train"].x[:7])
    with pytest.raises(ArtifactError, match="d.h5.*NaN"):
        back.splits["train"].x[5:9]


def test_log_density_estimator_reads_only_its_points(tmp_path, monkeypatch):
    """The evaluation estimator fitted on a file read lazily equals the one fitted on the same data in memory."""
    from lfpcli.artifacts import make_record
    from lfpcli.artifacts.datasets import write_dataset
    from lfpcli.commands.log_density import evaluation_density

    ds = resolve("digits")
    p = tmp_path / "d.h5"
    write_dataset(p, ds, make_record("dataset", {"data": ds.spec}))
    monkeypatch.setenv("LFP_PRELOAD_MB", "0")
    monkeypatch.setenv("LFP_CACHE_DIR", str(tmp_path / "cache"))
    lazy = resolve(str(p))
    _, a = evaluation_density(ds, torch.device("cpu"))
    _, b = evaluation_density(lazy, torch.device("cpu"))
    assert a["bandwidth_per_class"] == b["bandwidth_per_class"] and a["points_per_class"] == b["points_per_class"]
