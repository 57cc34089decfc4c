"""Bad input to ``lfp saliency``: one ``error:`` line, exit 2, nothing on stdout, the folders unchanged (no maps
file, no picture, no temporary file). The contract and its helpers come from ``test_errors.py``."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from test_errors import (  # noqa: F401  (fixtures used by name)
    BAD_FILES,
    err_art,
    err_env,
    err_expect_failure,
    err_ws,
)


@pytest.fixture(scope="module")
def sal(err_art, digits_model, tmp_path_factory):
    """Besides the shared artifacts (an mlp on digits, its perturbed set, a digits dataset file, an eval report):
    a small-cnn on digits, and an mlp on 16x16 spurious-digits (other input shape, with masks)."""
    from lfpcli.commands import train

    d = tmp_path_factory.mktemp("sal-err")
    other = d / "other.pt"
    train(other, data="spurious-digits:size=16,train_copies=1", arch="mlp", epochs=1, seed=0, device="cpu")
    return {
        "cnn": digits_model,
        "mlp": err_art.model,
        "pgd": err_art.pgd,
        "dataset": err_art.dataset,
        "report": err_art.report,
        "other": other,
    }


def _sal(*extra, model="cnn", out="out/m.h5"):
    """``lfp saliency --in MODEL --out OUT EXTRA...`` (no ``--out`` when ``out`` is None)."""

    def argv(ws, s):
        return ["saliency", "--in", s[model], *(["--out", ws.root / out] if out else []), *extra]

    return argv


def _npy(arr):
    def write(ws, p):
        np.save(p, arr)

    return write


def _n_test():
    from lfpcli.artifacts.dataspec import resolve

    return len(resolve("digits").splits["test"])


# --------------------------------------------------------------------------------------------- bad models


@pytest.mark.parametrize("bad", list(BAD_FILES))
def test_bad_model_file(err_ws, sal, capsys, bad):
    write, words = BAD_FILES[bad]
    path = err_ws.inp / "thing.pt"
    write(err_ws, path)
    err_expect_failure(
        err_ws, ["saliency", "--in", path, "--out", err_ws.out / "m.h5"], capsys, expect=(path.name, *words)
    )
    assert not (err_ws.root / "SENTINEL").exists(), "unpickling ran code"


@pytest.mark.parametrize("bad", ["missing", "empty", "truncated-pt", "evil-torch-pickle"])
def test_bad_second_model_file(err_ws, sal, capsys, bad):
    write, words = BAD_FILES[bad]
    path = err_ws.inp / "second.pt"
    write(err_ws, path)
    err_expect_failure(
        err_ws,
        ["saliency", "--in", sal["cnn"], "--in", path, "--out", err_ws.out / "m.h5", "--png", err_ws.out / "g.png"],
        capsys,
        expect=(path.name, *words),
    )
    assert not (err_ws.root / "SENTINEL").exists(), "unpickling ran code"


# --------------------------------------------------------------------------------------------- the cases

CASES = {
    # wrong kinds of file
    "perturbed set as --in": (lambda ws, s: ["saliency", "--in", s["pgd"], "--out", ws.out / "m.h5"], ("pgd.h5",)),
    "dataset as --in": (lambda ws, s: ["saliency", "--in", s["dataset"], "--out", ws.out / "m.h5"], ("digits.h5",)),
    "eval report as --in": (lambda ws, s: ["saliency", "--in", s["report"], "--out", ws.out / "m.h5"], ("eval.json",)),
    "checkpoint as --data": (
        lambda ws, s: ["saliency", "--in", s["cnn"], "--data", s["cnn"], "--out", ws.out / "m.h5"],
        ("model.pt",),
    ),
    "eval report as --data": (
        lambda ws, s: ["saliency", "--in", s["cnn"], "--data", s["report"], "--out", ws.out / "m.h5"],
        ("eval.json",),
    ),
    # shapes that do not fit
    "perturbed set of other inputs": (
        lambda ws, s: ["saliency", "--in", s["other"], "--data", s["pgd"], "--out", ws.out / "m.h5"],
        ("shape",),
    ),
    "data of other inputs": (_sal("--data", "spurious-digits:size=16,train_copies=1"), ("shape",)),
    "models of different input shapes": (
        lambda ws, s: ["saliency", "--in", s["cnn"], "--in", s["other"], "--out", ws.out / "m.h5"],
        ("other.pt", "shape"),
    ),
    # targets
    "--target perturbation without a perturbed set": (
        _sal("--target", "perturbation"),
        ("perturbation", "perturbed set"),
    ),
    "--target bogus": (_sal("--target", "bogus"), ("--target", "bogus")),
    "--target 10 of 10 classes": (_sal("--target", "10"), ("--target", "10")),
    "--target -1": (_sal("--target", "-1"), ("--target",)),
    # layers and methods
    "unknown layer": (_sal("--layer", "features.99"), ("features.99", "--list-layers")),
    "layer without a map": (_sal("--layer", "head"), ("head", "not a map")),
    "gradcam on an mlp": (_sal(model="mlp"), ("convolutional",)),
    "--layer with gradient": (_sal("--method", "gradient", "--layer", "features.3"), ("--layer", "gradcam")),
    "--method bogus": (_sal("--method", "bogus"), ("bogus", "gradcam")),
    "--samples with gradcam": (_sal("--samples", "3"), ("--samples", "smoothgrad")),
    "--steps with smoothgrad": (_sal("--method", "smoothgrad", "--steps", "3"), ("--steps", "integrated-gradients")),
    "--samples 0": (_sal("--method", "smoothgrad", "--samples", "0"), ("--samples",)),
    "--noise -1": (_sal("--method", "smoothgrad", "--noise", "-1"), ("--noise",)),
    "--noise nan": (_sal("--method", "smoothgrad", "--noise", "nan"), ("--noise",)),
    "--steps 0": (_sal("--method", "integrated-gradients", "--steps", "0"), ("--steps",)),
    "--baseline white": (_sal("--method", "integrated-gradients", "--baseline", "white"), ("--baseline", "white")),
    # selections
    "--indices out of range": (_sal("--indices", "3,99999"), ("99999", "out of range")),
    "--indices negative": (_sal("--indices", "-1"), ("-1", "out of range")),
    "--indices not numbers": (_sal("--indices", "3,x"), ("--indices",)),
    "--indices empty": (_sal("--indices", ","), ("--indices",)),
    "--indices with --n": (_sal("--indices", "1,2", "--n", "4"), ("--indices", "--n")),
    "--n 0": (_sal("--n", "0"), ("--n",)),
    "--n -3": (_sal("--n", "-3"), ("--n",)),
    "--group without groups": (_sal("--group", "low/land"), ("--group", "no groups")),
    "--group bogus": (
        lambda ws, s: [
            "saliency",
            "--in",
            s["other"],
            "--method",
            "gradient",
            "--group",
            "bogus",
            "--out",
            ws.out / "m.h5",
        ],
        ("--group", "bogus"),
    ),
    "--split bogus": (_sal("--split", "bogus"), ("bogus",)),
    "--split of a perturbed set": (
        lambda ws, s: [
            "saliency",
            "--in",
            s["mlp"],
            "--method",
            "gradient",
            "--data",
            s["pgd"],
            "--split",
            "test",
            "--out",
            ws.out / "m.h5",
        ],
        ("--split",),
    ),
    # output and options
    "missing --out": (_sal(out=None), ("--out",)),
    "missing --in": (lambda ws, s: ["saliency", "--out", ws.out / "m.h5"], ("--in",)),
    "--out without .h5": (_sal(out="out/m.txt"), ("m.txt", ".h5")),
    "--out in a missing folder": (_sal(out="nowhere/m.h5"), ("nowhere",)),
    "--out is a folder": (
        lambda ws, s: ((ws.out / "d.h5").mkdir(), ["saliency", "--in", s["cnn"], "--out", ws.out / "d.h5"])[1],
        ("folder",),
    ),
    "--png without .png": (_sal("--png", "out/g.jpg"), ("g.jpg", ".png")),
    "--png-rows 0": (_sal("--png-rows", "0"), ("--png-rows",)),
    "--batch-size 0": (_sal("--batch-size", "0"), ("--batch-size",)),
    "--seed -1": (_sal("--seed", "-1"), ("--seed",)),
    "--device bogus": (_sal("--device", "bogus"), ("bogus",)),
    "--data bogus": (_sal("--data", "bogus"), ("bogus",)),
    "--bogus option": (_sal("--bogus"), ("--bogus",)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(err_ws, sal, capsys, case):
    argv_of, words = CASES[case]
    err_expect_failure(err_ws, argv_of(err_ws, sal), capsys, expect=words)


# ------------------------------------------------------------------------------------------- bad masks

MASKS = {
    "missing": (None, ("masks.npy", "not exist")),
    "wrong count": (lambda ws, p: np.save(p, np.ones((7, 8, 8), dtype=bool)), ("shape", "(7, 8, 8)")),
    "wrong image size": (lambda ws, p: np.save(p, np.ones((_n_test(), 4, 4), dtype=bool)), ("shape",)),
    "three channels": (lambda ws, p: np.save(p, np.ones((_n_test(), 3, 8, 8), dtype=bool)), ("shape",)),
    "values 0/2": (lambda ws, p: np.save(p, np.full((_n_test(), 8, 8), 2, dtype=np.uint8)), ("0/1",)),
    "fractions": (lambda ws, p: np.save(p, np.full((_n_test(), 8, 8), 0.5, dtype=np.float32)), ("0/1",)),
    "nan": (lambda ws, p: np.save(p, np.full((_n_test(), 8, 8), np.nan, dtype=np.float32)), ("0/1",)),
    "strings": (lambda ws, p: np.save(p, np.full((_n_test(), 8, 8), "a")), ("0/1",)),
    "pickled objects": (
        lambda ws, p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True),
        ("masks.npy", ".npy"),
    ),
    "raw pickle": (lambda ws, p: p.write_bytes(pickle.dumps({"mask": 1})), ("masks.npy",)),
    "text": (lambda ws, p: p.write_text("1 0 1\n"), ("masks.npy",)),
    "empty": (lambda ws, p: p.write_bytes(b""), ("masks.npy",)),
    "folder": (lambda ws, p: p.mkdir(), ("masks.npy", "folder")),
}


@pytest.mark.parametrize("case", list(MASKS))
def test_bad_masks(err_ws, sal, capsys, case):
    write, words = MASKS[case]
    path = err_ws.inp / "masks.npy"
    if write is not None:
        write(err_ws, path)
    err_expect_failure(
        err_ws, ["saliency", "--in", sal["cnn"], "--masks", path, "--out", err_ws.out / "m.h5"], capsys, expect=words
    )


def test_masks_from_a_file_without_masks(err_ws, sal, capsys):
    err_expect_failure(
        err_ws,
        ["saliency", "--in", sal["cnn"], "--masks", sal["dataset"], "--out", err_ws.out / "m.h5"],
        capsys,
        expect=("digits.h5", "no masks"),
    )
    err_expect_failure(
        err_ws,
        ["saliency", "--in", sal["cnn"], "--masks", sal["pgd"], "--out", err_ws.out / "m.h5"],
        capsys,
        expect=("pgd.h5", "dataset"),
    )


# -------------------------------------------------------------------------------------- existing outputs


@pytest.mark.parametrize("which", ["out", "png"])
def test_existing_output_untouched_without_force(err_ws, sal, capsys, which):
    out, png = err_ws.out / "m.h5", err_ws.out / "g.png"
    (out if which == "out" else png).write_bytes(b"precious")
    err_expect_failure(
        err_ws,
        ["saliency", "--in", sal["cnn"], "--out", out, "--png", png],
        capsys,
        expect=((out if which == "out" else png).name, "--force"),
    )
    assert (out if which == "out" else png).read_bytes() == b"precious"


def test_unwritable_output_folder(err_ws, sal, capsys, monkeypatch):
    ro = err_ws.root / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if str(p).startswith(str(ro)) else real(p, mode, **k))
    err_expect_failure(
        err_ws, ["saliency", "--in", sal["cnn"], "--out", ro / "m.h5"], capsys, expect=("m.h5", "writable")
    )
    err_expect_failure(
        err_ws,
        ["saliency", "--in", sal["cnn"], "--out", err_ws.out / "m.h5", "--png", ro / "g.png"],
        capsys,
        expect=("g.png", "writable"),
    )


@pytest.mark.parametrize("fail_at", ["maps", "picture file"])
def test_failure_mid_run_leaves_nothing(err_ws, sal, capsys, monkeypatch, fail_at):
    """A failure after the maps file was opened (the attribution raises, or the picture cannot be written)
    leaves neither the maps file, nor the picture, nor a temporary file."""
    import importlib
    import tempfile

    import lfpcli.artifacts.files as files
    from lfpcli.errors import InputError

    cmd = importlib.import_module("lfpcli.commands.saliency")  # the module (lfpcli.commands.saliency is the function)

    if fail_at == "maps":

        def boom(*a, **k):
            raise InputError("simulated failure while computing maps")

        monkeypatch.setattr(cmd, "attribute", boom)
        words = ("simulated",)
    else:
        real, calls = tempfile.mkstemp, []

        def flaky(*a, **k):
            if ".g.png." in str(k.get("prefix", "")):
                calls.append(1)
                if len(calls) > 1:  # the up-front check passes; writing the picture (after the maps) fails
                    raise PermissionError(13, "Permission denied", os.path.join(k.get("dir", "."), "x.part"))
            return real(*a, **k)

        monkeypatch.setattr(files.tempfile, "mkstemp", flaky)
        words = ("g.png", "permission denied")
    err_expect_failure(
        err_ws,
        ["saliency", "--in", sal["cnn"], "--n", "4", "--out", err_ws.out / "m.h5", "--png", err_ws.out / "g.png"],
        capsys,
        expect=words,
    )
