"""``lfp saliency`` through the CLI, at tiny size: the maps file, the picture, the shares, targets, selections."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from clirun import lfp

DATA = "spurious-digits:size=16,train_copies=1"



@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A small-cnn on 16x16 spurious-digits (1 epoch), a pgd-l2 set of 48 of its training images, and a model
    retrained on that set (another model with the same inputs, trained on other data)."""
    from lfpcli.commands import perturb, retrain, train

    d = tmp_path_factory.mktemp("saliency")
    train(d / "std.pt", data=DATA, arch="small-cnn", epochs=1, seed=0, device="cpu")
    perturb(d / "pgd.h5", model=d / "std.pt", method="pgd-l2", limit=48, params={"eps": 1.0, "steps": 3}, device="cpu")
    retrain(d / "pgd.pt", perturbed=d / "pgd.h5", epochs=1, device="cpu")
    return d


def test_two_models_side_by_side(models, tmp_path, capsys):
    out, png = tmp_path / "maps.h5", tmp_path / "grid.png"
    code, stdout, err = lfp("saliency", "--in", models / "std.pt", "--in", models / "pgd.pt", "--n", "40", "--out", out,
                            "--png", png, "--png-rows", "3", "-q", capsys=capsys)
    assert code == 0, err
    assert str(png) in stdout  # the CLI names the picture
    for word in ("std", "pgd", "low/water", "high/land", "chance"):
        assert word in stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from lfpcli.artifacts.saliency import read_saliency
    from lfpcli.commands.common import load_model
    from lfpcli.data import resolve

    images, maps, record = read_saliency(out)
    assert record["kind"] == "saliency-maps" and [m["name"] for m in maps] == ["std", "pgd"]
    assert {p["role"] for p in record["parents"]} == {"model"} and len(record["parents"]) == 2
    n = 40
    assert images["index"].shape == (n,) and np.all(np.diff(images["index"]) > 0)
    test = resolve(DATA).splits["test"]
    rows = torch.from_numpy(images["index"])
    assert np.array_equal(images["y"], test.y[rows].numpy()) and np.array_equal(images["mask"], test.mask[rows].numpy())
    for m, path in zip(maps, ("std.pt", "pgd.pt")):
        net, _ = load_model(models / path, torch.device("cpu"))
        with torch.no_grad():
            pred = net(test.x[rows]).argmax(1).numpy()
        assert np.array_equal(m["pred"], pred) and np.array_equal(m["target"], pred)  # default target: pred
        assert m["map"].shape == (n, 16, 16) and m["layer_map"].shape == (n, 8, 8) and (m["map"] >= 0).all()
        ok = np.isfinite(m["share"])
        assert ((m["share"][ok] >= 0) & (m["share"][ok] <= 1)).all() and set(np.unique(m["pointing"])) <= {-1, 0, 1}
    s = record["summary"]
    assert s["n"] == n and s["models"][0]["layer"] == "features.4"
    assert set(s["models"][1]["groups"]) <= {"low/water", "low/land", "high/water", "high/land"}
    assert 0 < s["mask_area"]["mean"] < 1


def test_json_and_info(models, tmp_path, capsys):
    out = tmp_path / "maps.h5"
    code, stdout, err = lfp("saliency", "--in", models / "std.pt", "--method", "gradient", "--target", "label",
                            "--group", "low/land", "--out", out, "--json", capsys=capsys)
    assert code == 0, err
    r = json.loads(stdout)
    assert r["out"] == str(out) and r["png"] is None and r["target"] == "label" and r["method"] == "gradient"
    m = r["models"][0]
    assert set(m["groups"]) == {"low/land"} and m["n"] + m["undefined"] == r["n"] == m["groups"]["low/land"]["n"] + m["groups"]["low/land"]["undefined"]
    assert 0 <= m["share"] <= 1 and 0 <= m["pointing"] <= 1
    with h5py.File(out) as f:
        assert (f["group"][...] == 1).all() and np.array_equal(f["models/0/target"][...], f["y"][...])
    code, stdout, err = lfp("info", out, "--json", capsys=capsys)
    assert code == 0, err
    info = json.loads(stdout)
    assert info["kind"] == "saliency-maps" and info["parents"][0]["status"] == "ok"
    assert "models/0/map" in info["contents"]["datasets"]


def test_perturbation_targets_on_a_perturbed_set(models, tmp_path, capsys):
    out = tmp_path / "maps.h5"
    code, stdout, err = lfp("saliency", "--in", models / "std.pt", "--data", models / "pgd.h5", "--target", "perturbation",
                            "--indices", "5,2,9", "--out", out, "-q", capsys=capsys)
    assert code == 0, err
    with h5py.File(models / "pgd.h5") as f:
        want = f["target"][...][[5, 2, 9]]
        src = f["index"][...][[5, 2, 9]]
    with h5py.File(out) as f:
        assert list(f["index"][...]) == [5, 2, 9]  # the order asked for
        assert np.array_equal(f["perturbation_target"][...], want) and np.array_equal(f["models/0/target"][...], want)
        assert np.array_equal(f["source_index"][...], src)
        # the masks of perturbed images are their clean images' masks
        from lfpcli.data import resolve

        assert np.array_equal(f["mask"][...], resolve(DATA).splits["train"].mask[torch.from_numpy(src)].numpy())
        rec = json.loads(f.attrs["lfp_record"])
    assert {p["role"] for p in rec["parents"]} == {"model", "data"}


def test_masks_file_and_data_without_masks(models, digits_model, tmp_path, capsys):
    ones = tmp_path / "ones.npy"
    np.save(ones, np.ones((360, 1, 16, 16), dtype=np.uint8))
    code, stdout, err = lfp("saliency", "--in", models / "std.pt", "--masks", ones, "--n", "10", "--out", tmp_path / "a.h5",
                            "--json", capsys=capsys)
    assert code == 0, err
    r = json.loads(stdout)
    assert r["models"][0]["share"] == pytest.approx(1.0) and r["mask_area"]["mean"] == 1.0 and r["mask_source"].startswith("file")
    code, stdout, err = lfp("saliency", "--in", digits_model, "--n", "8", "--out", tmp_path / "b.h5", "--png", tmp_path / "b.png",
                            "-q", capsys=capsys)
    assert code == 0, err
    assert "no foreground masks" in stdout and str(tmp_path / "b.png") in stdout
    with h5py.File(tmp_path / "b.h5") as f:
        assert "mask" not in f and "share" not in f["models/0"]


@pytest.mark.parametrize("method", ["input-x-gradient", "smoothgrad", "integrated-gradients"])
def test_other_methods(models, tmp_path, method, capsys):
    extra = {"smoothgrad": ["--samples", "3"], "integrated-gradients": ["--steps", "4", "--baseline", "mean"]}.get(method, [])
    code, stdout, err = lfp("saliency", "--in", models / "std.pt", "-m", method, *extra, "--misclassified", "--n", "6",
                            "--out", tmp_path / "m.h5", "--json", capsys=capsys)
    assert code == 0, err
    r = json.loads(stdout)
    assert r["n"] == 6 and r["models"][0]["accuracy"] == 0.0  # only images the model gets wrong
    assert r["config"]["method"] == method and r["models"][0]["layer"] is None


def test_list_layers(models, capsys):
    code, stdout, err = lfp("saliency", "--list-layers", "--in", models / "std.pt", "--json", capsys=capsys)
    assert code == 0, err
    r = json.loads(stdout)["models"][0]
    assert r["default"] == "features.4" and r["input_shape"] == [3, 16, 16]
    by = {x["name"]: x for x in r["layers"]}
    assert by["features.3"]["type"] == "Conv2d" and by["features.3"]["output_shape"] == [64, 8, 8]
    code, stdout, err = lfp("saliency", "--list-layers", "--in", models / "std.pt", capsys=capsys)
    assert code == 0 and "features.4" in stdout and "default Grad-CAM layer" in stdout


def test_python_api_matches(models, tmp_path):
    import lfpcli

    r = lfpcli.saliency(tmp_path / "m.h5", models=[models / "std.pt"], indices=[0, 1, 2], layer="features.3", device="cpu")
    assert r["n"] == 3 and r["models"][0]["layer"] == "features.3"
