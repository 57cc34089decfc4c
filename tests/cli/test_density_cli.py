"""lfp density, and pcfe-l0 using a shared density file."""

from __future__ import annotations

import json

import pytest

from lfpcli.artifacts import sha256_file
from lfpcli.cli.app import main


def lfp(capsys, *args):
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return e.value.code, out, err


@pytest.mark.parametrize(
    "kind, params",
    [
        ("kde", ["-p", "bandwidth=0.3"]),
        ("feature-gmm", ["-p", "covariance=diag"]),
        ("knn", ["-p", "k=5"]),
        ("vae", ["-p", "epochs=2", "-p", "latent=8"]),
    ],
)
def test_fit_save_and_use_a_density(digits_model, tmp_path, capsys, kind, params):
    dens = tmp_path / "q.h5"
    code, out, err = lfp(capsys, "density", "--kind", kind, "--in", digits_model, "--out", dens, *params, "--json")
    assert code == 0, err
    s = json.loads(out)
    assert s["space"] == ("feature" if kind.startswith("feature") else "pixel") and s["num_points"] == 1078
    code, out, err = lfp(capsys, "info", dens, "--json")
    assert code == 0 and json.loads(out)["kind"] == "density"
    pc = tmp_path / "pc.h5"
    code, out, err = lfp(
        capsys,
        "perturb",
        "--method",
        "pcfe-l0",
        "--in",
        digits_model,
        "--density",
        dens,
        "--out",
        pc,
        "--limit",
        "16",
        "--steps",
        "20",
        "--search-steps",
        "2",
        "--tau",
        "0.01",
        "--json",
        "-q",
    )
    assert code == 0, err
    code, out, err = lfp(capsys, "info", pc, "--json")
    r = json.loads(out)
    assert r["params"]["density"]["kind"] == kind and r["params"]["density"]["sha256"] == sha256_file(dens)
    assert any(p["role"] == "density" and p["status"] == "ok" for p in r["parents"])


def test_density_errors(digits_model, digits_pgd, tmp_path, capsys):
    code, _, err = lfp(
        capsys,
        "density",
        "--kind",
        "kde",
        "--in",
        digits_model,
        "--out",
        tmp_path / "q.h5",
        "--fit-on",
        "group-balanced",
    )
    assert code == 2 and "groups" in err and not (tmp_path / "q.h5").exists()
    code, _, err = lfp(capsys, "density", "--kind", "parzen", "--in", digits_model, "--out", tmp_path / "q.h5")
    assert code == 2 and "unknown density kind" in err
    code, _, err = lfp(capsys, "density", "--kind", "feature-vae", "--in", digits_model, "--out", tmp_path / "q.h5")
    assert code == 2 and "unknown density kind" in err  # a convolutional VAE needs images, not feature vectors
    code, _, err = lfp(
        capsys, "perturb", "--method", "pgd-l2", "--in", digits_model, "--density", "kde", "--out", tmp_path / "p.h5"
    )
    assert code == 2 and "pcfe-l0 only" in err
    code, _, err = lfp(
        capsys,
        "perturb",
        "--method",
        "pcfe-l0",
        "--in",
        digits_model,
        "--density",
        digits_pgd,
        "--out",
        tmp_path / "p.h5",
    )
    assert code == 2 and "expected density" in err
    assert list(tmp_path.iterdir()) == []


def test_pcfe_defaults_to_the_datas_density_and_its_own_tau(digits_model, tmp_path, capsys):
    pc = tmp_path / "pc.h5"
    code, out, err = lfp(
        capsys,
        "perturb",
        "--method",
        "pcfe-l0",
        "--in",
        digits_model,
        "--out",
        pc,
        "--limit",
        "8",
        "--steps",
        "10",
        "--search-steps",
        "2",
        "--json",
        "-q",
    )
    assert code == 0, err
    s = json.loads(out)
    d = s["density"]
    assert d["kind"] == "kde" and d["space"] == "pixel" and d["chosen_by"] == "default for this data"
    assert s["config"]["tau"] == pytest.approx(d["plausibility_weight"]) and 0 < s["config"]["tau"] < 1
    assert s["log_density_estimator"] == "kde-pixel-v1" and s["log_density"]["median"] is not None
    code, out, err = lfp(
        capsys,
        "perturb",
        "--method",
        "pcfe-l0",
        "--in",
        digits_model,
        "--out",
        pc,
        "--force",
        "--limit",
        "8",
        "--steps",
        "10",
        "--search-steps",
        "2",
        "--density",
        "none",
        "--json",
        "-q",
    )
    assert code == 0, err
    s = json.loads(out)
    assert s["density"] is None and s["config"]["tau"] is None


def test_mask_limits_which_pixels_change(digits_model, tmp_path, capsys):
    import h5py
    import numpy as np

    from lfpcli.artifacts.dataspec import resolve

    mask = np.zeros((1, 8, 8), dtype=np.uint8)
    mask[:, :4, :] = 1  # only the top half may change
    np.save(tmp_path / "top.npy", mask)
    out = tmp_path / "pc.h5"
    code, _, err = lfp(
        capsys,
        "perturb",
        "--method",
        "pcfe-l0",
        "--in",
        digits_model,
        "--mask",
        tmp_path / "top.npy",
        "--out",
        out,
        "--limit",
        "16",
        "--steps",
        "20",
        "--search-steps",
        "2",
        "-q",
        "--json",
    )
    assert code == 0, err
    with h5py.File(out, "r") as f:
        x, index = f["x"][...], f["index"][...]
    clean = resolve("digits").splits["train"].x.numpy()[index]
    changed = np.abs(x - clean) > 0
    assert changed.any() and not changed[:, :, 4:, :].any()
    np.save(tmp_path / "bad.npy", np.ones((3, 8, 8)))
    code, _, err = lfp(
        capsys,
        "perturb",
        "--method",
        "pcfe-l0",
        "--in",
        digits_model,
        "--mask",
        tmp_path / "bad.npy",
        "--out",
        tmp_path / "b.h5",
    )
    assert code == 2 and "does not broadcast" in err
    code, _, err = lfp(
        capsys,
        "perturb",
        "--method",
        "pgd-l2",
        "--in",
        digits_model,
        "--mask",
        tmp_path / "top.npy",
        "--out",
        tmp_path / "b.h5",
    )
    assert code == 2 and "pcfe-l0 only" in err
    assert not (tmp_path / "b.h5").exists()
