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
    code, stdout, err = lfp(
        "saliency",
        "--in",
        models / "std.pt",
        "--in",
        models / "pgd.pt",
        "--n",
        "40",
        "--out",
        out,
        "--png",
        png,
        "--png-rows",
        "3",
        "-q",
        capsys=capsys,
    )
    assert code == 0, err
    assert str(png) in stdout  # the CLI names the picture
    for word in ("std", "pgd", "low/water", "high/land", "chance"):
        assert word in stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from lfpcli.artifacts.dataspec import resolve
    from lfpcli.artifacts.saliency import read_saliency
    from lfpcli.commands.common import load_model

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


def test_the_picture_explains_itself(models, tmp_path, monkeypatch):
    """The grid has a colour bar, a caption saying what the number beside each prediction is, and a note when it
    shows fewer images than were explained."""
    import importlib

    saliency_mod = importlib.import_module("lfpcli.commands.saliency")
    drawn = {}
    monkeypatch.setattr(saliency_mod, "write_png", lambda path, fig, force=False: drawn.update(fig=fig))

    from matplotlib.text import Text

    def texts(fig):
        return " ".join(" ".join(t.get_text().split()) for t in fig.findobj(Text))

    saliency_mod.saliency(
        tmp_path / "a.h5",
        models=[models / "std.pt", models / "pgd.pt"],
        n=16,
        png=tmp_path / "g.png",
        png_rows=8,
        device="cpu",
    )
    fig = drawn["fig"]
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 1 and "scaled to each map's maximum" in bars[0].get_ylabel()
    words = texts(fig)
    assert "(0.xx) beside a prediction: the map's attribution share on the object" in words
    assert "the first 8 of 16 images explained" in words and "--png-rows" in words
    saliency_mod.saliency(
        tmp_path / "b.h5",
        models=[models / "std.pt"],
        n=4,
        png=tmp_path / "h.png",
        png_rows=8,
        masks="none",
        device="cpu",
    )
    words = texts(drawn["fig"])
    assert "images explained" not in words and "attribution share" not in words  # all shown; no mask, no share


def test_json_and_info(models, tmp_path, capsys):
    out = tmp_path / "maps.h5"
    code, stdout, err = lfp(
        "saliency",
        "--in",
        models / "std.pt",
        "--method",
        "gradient",
        "--target",
        "label",
        "--group",
        "low/land",
        "--out",
        out,
        "--json",
        capsys=capsys,
    )
    assert code == 0, err
    r = json.loads(stdout)
    assert r["out"] == str(out) and r["png"] is None and r["target"] == "label" and r["method"] == "gradient"
    m = r["models"][0]
    assert (
        set(m["groups"]) == {"low/land"}
        and m["n"] + m["undefined"] == r["n"] == m["groups"]["low/land"]["n"] + m["groups"]["low/land"]["undefined"]
    )
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
    code, stdout, err = lfp(
        "saliency",
        "--in",
        models / "std.pt",
        "--data",
        models / "pgd.h5",
        "--target",
        "perturbation",
        "--indices",
        "5,2,9",
        "--out",
        out,
        "-q",
        capsys=capsys,
    )
    assert code == 0, err
    with h5py.File(models / "pgd.h5") as f:
        want = f["target"][...][[5, 2, 9]]
        src = f["index"][...][[5, 2, 9]]
    with h5py.File(out) as f:
        assert list(f["index"][...]) == [5, 2, 9]  # the order asked for
        assert np.array_equal(f["perturbation_target"][...], want) and np.array_equal(f["models/0/target"][...], want)
        assert np.array_equal(f["source_index"][...], src)
        # the masks of perturbed images are their clean images' masks
        from lfpcli.artifacts.dataspec import resolve

        assert np.array_equal(f["mask"][...], resolve(DATA).splits["train"].mask[torch.from_numpy(src)].numpy())
        rec = json.loads(f.attrs["lfp_record"])
    assert {p["role"] for p in rec["parents"]} == {"model", "data"}


def test_masks_file_and_data_without_masks(models, digits_model, tmp_path, capsys):
    ones = tmp_path / "ones.npy"
    np.save(ones, np.ones((360, 1, 16, 16), dtype=np.uint8))
    code, stdout, err = lfp(
        "saliency",
        "--in",
        models / "std.pt",
        "--masks",
        ones,
        "--n",
        "10",
        "--out",
        tmp_path / "a.h5",
        "--json",
        capsys=capsys,
    )
    assert code == 0, err
    r = json.loads(stdout)
    assert (
        r["models"][0]["share"] == pytest.approx(1.0)
        and r["mask_area"]["mean"] == 1.0
        and r["mask_source"].startswith("file")
    )
    code, stdout, err = lfp(
        "saliency",
        "--in",
        digits_model,
        "--n",
        "8",
        "--out",
        tmp_path / "b.h5",
        "--png",
        tmp_path / "b.png",
        "-q",
        capsys=capsys,
    )
    assert code == 0, err
    assert "no foreground masks" in stdout and str(tmp_path / "b.png") in stdout
    with h5py.File(tmp_path / "b.h5") as f:
        assert "mask" not in f and "share" not in f["models/0"]


@pytest.mark.parametrize("method", ["input-x-gradient", "smoothgrad", "integrated-gradients"])
def test_other_methods(models, tmp_path, method, capsys):
    extra = {"smoothgrad": ["--samples", "3"], "integrated-gradients": ["--steps", "4", "--baseline", "mean"]}.get(
        method, []
    )
    code, stdout, err = lfp(
        "saliency",
        "--in",
        models / "std.pt",
        "-m",
        method,
        *extra,
        "--misclassified",
        "--n",
        "6",
        "--out",
        tmp_path / "m.h5",
        "--json",
        capsys=capsys,
    )
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

    r = lfpcli.saliency(
        tmp_path / "m.h5", models=[models / "std.pt"], indices=[0, 1, 2], layer="features.3", device="cpu"
    )
    assert r["n"] == 3 and r["models"][0]["layer"] == "features.3"


def test_batch_size_default_recorded_and_maps_do_not_depend_on_it(models, tmp_path):
    """Without --batch-size a CPU run takes 256 and says so; a given size is recorded as given, and the maps,
    predictions and shares are those of any other batch size."""
    import lfpcli
    from lfpcli.artifacts.saliency import read_saliency

    lfpcli.saliency(tmp_path / "a.h5", models=[models / "std.pt"], n=20, device="cpu")
    lfpcli.saliency(tmp_path / "b.h5", models=[models / "std.pt"], n=20, batch_size=7, device="cpu")
    (_, ma, ra), (_, mb, rb) = read_saliency(tmp_path / "a.h5"), read_saliency(tmp_path / "b.h5")
    assert (ra["params"]["batch_size"], ra["params"]["batch_size_from"]) == (256, "default on CPU")
    assert (rb["params"]["batch_size"], rb["params"]["batch_size_from"]) == (7, "--batch-size")
    np.testing.assert_allclose(ma[0]["map"], mb[0]["map"], rtol=1e-5, atol=1e-6)
    assert np.array_equal(ma[0]["pred"], mb[0]["pred"])
    np.testing.assert_allclose(ma[0]["share"], mb[0]["share"], rtol=1e-5, atol=1e-6)


def test_cuda_batch_size_is_the_smallest_that_every_model_fits(monkeypatch):
    """On CUDA each model's largest batch is probed (its forward and backward to the input) and the smallest
    wins, capped at the number of images; no GPU is needed to check that rule."""
    import importlib

    cmd = importlib.import_module("lfpcli.commands.saliency")

    fits = {"a": 300, "b": 120}
    calls = []

    def probe(net, shape, device):
        return net

    def largest(step, *, device, limit, **_):
        calls.append((step, limit))
        return min(fits[step], limit)

    monkeypatch.setattr(cmd, "input_gradient_step", probe)
    monkeypatch.setattr(cmd, "auto_batch_size", largest)
    assert cmd.saliency_batch_size(["a", "b"], (3, 16, 16), torch.device("cuda"), 1000) == 120
    assert calls == [("a", 1000), ("b", 1000)]
    assert cmd.saliency_batch_size(["a", "b"], (3, 16, 16), torch.device("cuda"), 50) == 50
    assert cmd.saliency_batch_size(["a"], (3, 16, 16), torch.device("cpu"), 10) == cmd.CPU_BATCH
