"""The same command with the same seed on the CPU writes the same tensors, byte for byte (records differ only
in their creation time and the output path)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from lfpcli.artifacts.integrity import tensor_bytes


def _h5_tensors(path) -> dict[str, bytes]:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: (
                out.__setitem__(name, np.ascontiguousarray(obj[...]).tobytes())
                if isinstance(obj, h5py.Dataset)
                else None
            )
        )
    return out


def _ckpt_tensors(path) -> dict[str, bytes]:
    sd = torch.load(path, weights_only=True)["state_dict"]
    return {k: tensor_bytes(v) for k, v in sd.items()}


def _twice(tmp_path, make, suffix):
    a, b = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
    make(a)
    make(b)
    read = _ckpt_tensors if suffix == ".pt" else _h5_tensors
    ta, tb = read(a), read(b)
    assert ta.keys() == tb.keys() and ta
    for k in ta:
        assert ta[k] == tb[k], f"{k} differs between two runs with the same seed"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from lfpcli.commands import train

    path = tmp_path_factory.mktemp("det") / "m.pt"
    train(path, data="digits", arch="small-cnn", epochs=1, seed=3, device="cpu")
    return path


def test_train(tmp_path):
    from lfpcli.commands import train

    _twice(tmp_path, lambda p: train(p, data="digits", arch="small-cnn", epochs=2, seed=7, device="cpu"), ".pt")


@pytest.mark.parametrize(
    "method, params",
    [
        ("pgd-l2", {"steps": 3, "random_start": True}),
        ("pgd-linf", {"steps": 3}),
        ("pgd-l0", {"steps": 5}),
        ("cfe-l2", {"steps": 5, "init": "noise"}),
        ("pcfe-l0", {"steps": 5, "search_steps": 2}),
    ],
)
def test_perturb(model, tmp_path, method, params):
    from lfpcli.commands import perturb

    _twice(
        tmp_path,
        lambda p: perturb(p, model=model, method=method, limit=24, batch_size=10, params=params, seed=5, device="cpu"),
        ".h5",
    )


def test_retrain(model, tmp_path):
    from lfpcli.commands import perturb, retrain

    pert = tmp_path / "p.h5"
    perturb(pert, model=model, method="pgd-l2", limit=40, params={"steps": 2}, device="cpu")
    _twice(tmp_path, lambda p: retrain(p, perturbed=pert, epochs=2, seed=2, device="cpu"), ".pt")


@pytest.mark.parametrize(
    "kind, params",
    [
        ("kde", {"max_points": 50}),
        ("gmm", {"components": 2, "covariance": "diag"}),
        ("knn", {"max_points": 50}),
        ("vae", {"epochs": 1}),
        ("feature-kde", {"max_points": 50}),
    ],
)
def test_density(model, tmp_path, kind, params):
    from lfpcli.commands import fit_density_file

    _twice(tmp_path, lambda p: fit_density_file(p, model=model, kind=kind, params=params, seed=4, device="cpu"), ".h5")


def test_data_file(tmp_path):
    from lfpcli.commands import describe_data

    _twice(tmp_path, lambda p: describe_data("spurious-digits:train_copies=1,seed=2", out=p), ".h5")
