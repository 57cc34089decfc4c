"""The chain on real-layout data: train -> perturb -> retrain -> eval on a fabricated WaterBirds root with
``resnet18`` at 64 px, from the root (images decoded on demand) and from its uint8 cache; ``lfp data`` on every
real spec; saliency with the root's CUB segmentations. Kept small (8 images a split, 1 epoch, 3 PGD steps)."""

from __future__ import annotations

import json

import fixtures_data as F
import h5py
import numpy as np
import pytest
import torch

from lfpcli.cli.app import main as lfp_main


def lfp(argv, capsys) -> dict:
    capsys.readouterr()
    try:
        lfp_main([str(a) for a in argv] + ["--json"])
    except SystemExit as e:
        out, err = capsys.readouterr()
        assert e.code in (0, None), f"exit {e.code}\nargv {argv}\nstderr {err}"
        return json.loads(out)
    raise AssertionError("lfp main did not exit")


@pytest.fixture(scope="module")
def wb(tmp_path_factory):
    d = tmp_path_factory.mktemp("wb")
    root, expected = F.make_waterbirds(d / "root", per_cell=2, segmentations=True)
    return {"dir": d, "root": root, "expected": expected, "spec": f"waterbirds:root={root},size=64"}


def test_lfp_data_describes_and_caches(wb, capsys, tmp_path):
    s = lfp(["data", wb["spec"]], capsys)
    assert s["sizes"] == {"train": 8, "val": 8, "test": 8}
    assert s["group_counts"] == wb["expected"]
    assert s["class_to_index"] == {"landbird": 0, "waterbird": 1}
    assert s["input_shape"] == [3, 64, 64] and s["masks"] == {"train": True, "val": True, "test": True}
    s = lfp(["data", wb["spec"], "--out", tmp_path / "wb.h5"], capsys)
    with h5py.File(tmp_path / "wb.h5", "r") as f:
        assert f["test/x"].dtype == np.uint8 and f["test/x"].shape == (8, 3, 64, 64)
        rec = json.loads(f.attrs["lfp_record"])
    assert rec["dataset"]["class_to_index"] == {"landbird": 0, "waterbird": 1}
    assert rec["dataset"]["spec"]["name"] == "waterbirds" and rec["dataset"]["group_names"][2] == "waterbird/land"
    again = lfp(["data", tmp_path / "wb.h5"], capsys)  # the cache describes itself the same way
    assert again["group_counts"] == wb["expected"] and again["class_to_index"] == s["class_to_index"]


def test_chain_on_waterbirds_root_resnet18(wb, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = ["--device", "cpu", "--quiet"]
    t = lfp(
        [
            "train",
            "--data",
            wb["spec"],
            "--arch",
            "resnet18",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--optimizer",
            "adam",
            "--lr",
            "1e-3",
            "--out",
            "m.pt",
            *common,
        ],
        capsys,
    )
    assert t["metrics"]["test"]["n"] == 8 and set(t["metrics"]["test"]["groups"]) == {
        "landbird/land",
        "landbird/water",
        "waterbird/land",
        "waterbird/water",
    }
    p = lfp(
        ["perturb", "--in", "m.pt", "--method", "pgd-l2", "--eps", "1", "--steps", "3", "--out", "p.h5", *common],
        capsys,
    )
    assert p["n"] == 8
    with h5py.File("p.h5", "r") as f:
        x = f["x"][...]
        assert x.shape == (8, 3, 64, 64) and 0 <= x.min() and x.max() <= 1
        rec = json.loads(f.attrs["lfp_record"])
    assert rec["source"]["dataset"]["class_to_index"] == {"landbird": 0, "waterbird": 1}
    r = lfp(["retrain", "--in", "p.h5", "--epochs", "1", "--out", "r.pt", *common], capsys)
    assert r["arch"] == "resnet18" and r["metrics"]["val"]["n"] == 8
    e = lfp(["eval", "--in", "r.pt", "--out", "e.json", *common], capsys)
    assert set(e["splits"]) == {"train", "val", "test"} and e["group_names"][0] == "landbird/land"
    assert e["splits"]["test"]["worst_group"] in e["group_names"]
    meta = torch.load("r.pt", weights_only=True)["meta"]
    assert meta["data"]["class_to_index"] == {"landbird": 0, "waterbird": 1}


def test_training_from_the_cache_equals_training_from_the_root(wb, capsys, tmp_path, monkeypatch):
    """The cache holds exactly the decoded images: the same seed gives the same weights from either."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LFP_PRELOAD_MB", "0")  # stream the (small) cache
    lfp(["data", wb["spec"], "--out", "wb.h5"], capsys)
    common = ["--arch", "small-cnn", "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--quiet"]
    lfp(["train", "--data", wb["spec"], "--out", "a.pt", *common], capsys)
    lfp(["train", "--data", "wb.h5", "--out", "b.pt", *common], capsys)
    a, b = (torch.load(p, weights_only=True)["state_dict"] for p in ("a.pt", "b.pt"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # saliency on the root: its CUB segmentations are the masks (and the cache kept them)
    for data in (wb["spec"], "wb.h5"):
        s = lfp(
            [
                "saliency",
                "--in",
                "a.pt",
                "--data",
                data,
                "--n",
                "4",
                "--out",
                "maps.h5",
                "--force",
                "--device",
                "cpu",
                "--quiet",
            ],
            capsys,
        )
        assert s["mask_source"] == "the data" and s["n"] == 4


@pytest.mark.parametrize(
    "maker,spec",
    [
        (lambda d: F.make_spuco(d, per_leaf=1)[0], "spuco-dogs:root={},size=32,order=sorted"),
        (lambda d: F.make_mnist(d, n_train=20, n_test=10)[0], "mnist:root={},val=4"),
        (lambda d: F.make_cifar(d, "py", per_batch=2)[0], "cifar10:root={}"),
    ],
)
def test_lfp_data_on_each_layout(tmp_path, capsys, maker, spec):
    s = lfp(["data", spec.format(maker(tmp_path / "r"))], capsys)
    assert s["class_to_index"] and sum(s["sizes"].values()) > 0


def test_eval_on_mnist_without_val(tmp_path, capsys, monkeypatch):
    """MNIST has no val split: eval reports the splits there are."""
    monkeypatch.chdir(tmp_path)
    root, _ = F.make_mnist(tmp_path / "r", n_train=20, n_test=10)
    lfp(
        [
            "train",
            "--data",
            f"mnist:root={root}",
            "--arch",
            "mlp",
            "--epochs",
            "1",
            "--out",
            "m.pt",
            "--device",
            "cpu",
            "--quiet",
        ],
        capsys,
    )
    e = lfp(["eval", "--in", "m.pt", "--device", "cpu", "--quiet"], capsys)
    assert set(e["splits"]) == {"train", "test"} and e["splits"]["test"]["n"] == 10


def test_a_streamed_perturbed_set_retrains_and_scores_as_one_in_memory(tmp_path, capsys, monkeypatch):
    """A perturbed set read row by row (LFP_PRELOAD_MB=0) gives the same retrained weights and the same eval figures as
    one loaded whole."""
    from lfpcli.artifacts.dataspec import load_perturbed_as_dataset
    from lfpcli.data.lazy import H5Rows

    monkeypatch.chdir(tmp_path)
    common = ["--device", "cpu", "--quiet"]
    lfp(["train", "--data", "digits", "--arch", "mlp", "--epochs", "1", "--out", "m.pt", *common], capsys)
    lfp(
        [
            "perturb",
            "--in",
            "m.pt",
            "--method",
            "pgd-l2",
            "--eps",
            "1",
            "--steps",
            "2",
            "--limit",
            "128",
            "--out",
            "p.h5",
            *common,
        ],
        capsys,
    )
    results = {}
    for preload in ("0", "256"):
        monkeypatch.setenv("LFP_PRELOAD_MB", preload)
        ds = load_perturbed_as_dataset("p.h5")
        assert isinstance(ds.splits["train"].x, H5Rows) == (preload == "0")
        lfp(["retrain", "--in", "p.h5", "--epochs", "1", "--out", f"r{preload}.pt", *common], capsys)
        e = lfp(["eval", "--in", "m.pt", "--data", "p.h5", *common], capsys)
        results[preload] = (torch.load(f"r{preload}.pt", weights_only=True)["state_dict"], e["perturbed"]["accuracy"])
    (a, acc_a), (b, acc_b) = results["0"], results["256"]
    assert all(torch.equal(a[k], b[k]) for k in a) and acc_a == acc_b
