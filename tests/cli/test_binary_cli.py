"""A scalar-output binary model through the whole CLI chain: every method, eval on a perturbed set, retrain."""

from __future__ import annotations

import json

import pytest
import torch
from clirun import lfp

from lfpcli.solvers import list_solvers


@pytest.fixture(scope="module")
def scalar_model(tmp_path_factory):
    from lfpcli.commands import train

    path = tmp_path_factory.mktemp("scalar") / "model.pt"
    train(path, data="spurious-digits", output="scalar", loss="exponential", epochs=1, seed=0, device="cpu")
    return path


def test_scalar_checkpoint_records_its_output_and_loss(scalar_model):
    ck = torch.load(scalar_model, weights_only=True)
    assert ck["meta"]["model"]["output"] == "scalar"
    assert ck["meta"]["train"]["config"]["loss"] == "exponential"
    assert ck["state_dict"]["net.head.weight"].shape[0] == 1
    assert ck["meta"]["metrics"]["train"]["accuracy"] > 0.9  # one epoch: the background is learnt, not yet the digit


PARAMS = {
    "pgd-l2": ["--eps", "4"],
    "pgd-linf": ["--eps", "0.2"],
    "pgd-l0": ["--steps", "200"],
    "cfe-l2": ["--lam", "0.01"],
    "pcfe-l0": ["--steps", "30", "--search-steps", "3", "--density", "none"],
}


@pytest.mark.parametrize("method", list_solvers())
def test_every_method_perturbs_a_scalar_model_and_eval_agrees(method, scalar_model, tmp_path, capsys):
    out = tmp_path / f"{method}.h5"
    code, stdout, err = lfp(
        "perturb",
        "--method",
        method,
        "--in",
        str(scalar_model),
        "--out",
        str(out),
        "--limit",
        "48",
        "--targets",
        "random-other",
        *PARAMS[method],
        "--json",
        "-q",
        capsys=capsys,
    )
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["success_rate"] >= 0.8, summary["success_rate"]
    code, stdout, err = lfp("eval", "--in", str(scalar_model), "--data", str(out), "--json", capsys=capsys)
    assert code == 0, err
    rep = json.loads(stdout)
    assert rep["perturbed"]["agreement_with_stored_success"] == 1.0


def test_retrain_keeps_the_scalar_output(scalar_model, tmp_path, capsys):
    pset = tmp_path / "pgd.h5"
    assert lfp("perturb", "--in", str(scalar_model), "--out", str(pset), "--limit", "256", "-q", capsys=capsys)[0] == 0
    code, _, err = lfp(
        "retrain", "--in", str(pset), "--out", str(tmp_path / "re.pt"), "--epochs", "1", "-q", capsys=capsys
    )
    assert code == 0, err
    meta = torch.load(tmp_path / "re.pt", weights_only=True)["meta"]
    assert meta["model"]["output"] == "scalar" and meta["train"]["config"]["loss"] == "exponential"


def test_scalar_output_on_a_ten_class_task_is_refused(tmp_path, capsys):
    code, _, err = lfp(
        "train", "--data", "digits", "--output", "scalar", "--out", str(tmp_path / "m.pt"), capsys=capsys
    )
    assert code == 2 and "two-class" in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())
