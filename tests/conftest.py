"""Shared fixtures: a private dataset cache and temporary folder, and one tiny trained model + perturbed set per
session."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _private_temp(tmp_path_factory):
    """The system temporary folder of the tests and every process they start (torchrun's log folders, torch.compile's
    caches, tempfile) lies under pytest's own, which a passing run removes (tmp_path_retention_policy)."""
    tmp = str(tmp_path_factory.mktemp("system-temp"))
    saved = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = tmp, tmp
    yield
    tempfile.tempdir = saved[1]
    if saved[0] is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = saved[0]


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Keep generated datasets out of the user's cache; one cache for the whole run."""
    old = os.environ.get("LFP_CACHE_DIR")
    os.environ["LFP_CACHE_DIR"] = str(tmp_path_factory.mktemp("lfp-cache"))
    # one thread: tiny tensors gain nothing from two, and OpenMP spin-waits badly on a shared 2-core machine
    torch.set_num_threads(1)
    yield
    if old is None:
        os.environ.pop("LFP_CACHE_DIR", None)
    else:
        os.environ["LFP_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory):
    """A small-cnn trained 2 epochs on ``digits`` (1x8x8, 10 classes): path to its checkpoint."""
    from lfpcli.commands import train

    path = tmp_path_factory.mktemp("model") / "model.pt"
    train(path, data="digits", arch="small-cnn", epochs=3, seed=0, device="cpu")
    return path


@pytest.fixture(scope="session")
def digits_pgd(digits_model, tmp_path_factory):
    """A pgd-l2 perturbed set of the first 64 training digits."""
    from lfpcli.commands import perturb

    path = tmp_path_factory.mktemp("pgd") / "pgd.h5"
    perturb(path, model=digits_model, method="pgd-l2", limit=64, params={"eps": 1.0, "steps": 10}, device="cpu")
    return path
