"""The execution flags on the command line: bad values refused with one line, nothing written."""

from __future__ import annotations

from clirun import lfp


def test_cli_refuses_an_unknown_precision_with_one_line(digits_model, tmp_path, capsys):
    out = tmp_path / "p.h5"
    code, _, err = lfp(
        "perturb", "--in", digits_model, "--out", out, "--precision", "fp64", "--limit", "4", capsys=capsys
    )
    assert code == 2 and "--precision 'fp64'" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    code, _, err = lfp(
        "train", "--data", "digits", "--out", tmp_path / "m.pt", "--channels-last", "maybe", capsys=capsys
    )
    assert code == 2 and "--channels-last" in err and not (tmp_path / "m.pt").exists()


def test_a_diverging_run_writes_no_checkpoint(tmp_path, capsys):
    out = tmp_path / "m.pt"
    code, _, err = lfp(
        "train", "--data", "digits", "--out", out, "--epochs", "3", "--optimizer", "sgd", "--lr", "1e12", capsys=capsys
    )
    assert code == 2 and "training diverged" in err and "--lr" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / "m.pt.resume").exists()
