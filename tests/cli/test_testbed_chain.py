"""The spurious-scenes testbed end to end, as docs/testbed.md runs it, on a small variant: pretrain on
scenes-pretrain, fine-tune from it, perturb, retrain (from the same pretrained file), evaluate, saliency on the masks;
then lfp data --list finds the spec."""

from __future__ import annotations

import json

from clirun import lfp

from lfpcli.artifacts import load_checkpoint, sha256_file

PRE = "scenes-pretrain:classes=6,per_class=8"
DATA = "spurious-scenes:train_size=48,val_per_group=4,test_per_group=4"
SMALL = ["--arch-arg", "width=8", "--arch-arg", "hidden=16"]


def test_whole_chain_from_the_pretrained_start(tmp_path, capsys):
    pre, std, pcfe, ret = (tmp_path / n for n in ("pre.pt", "std.pt", "pcfe.h5", "ret.pt"))
    assert lfp("train", "--data", PRE, *SMALL, "--epochs", "1", "--out", pre, "-q", capsys=capsys)[0] == 0
    code, _, err = lfp("train", "--data", DATA, "--weights", pre, "--epochs", "1", "--out", std, "-q", capsys=capsys)
    assert code == 0, err
    code, _, err = lfp(
        "perturb",
        "--in",
        std,
        "--method",
        "pcfe-l0",
        "--limit",
        "8",
        "-p",
        "steps=5",
        "-p",
        "search_steps=1",
        "--out",
        pcfe,
        "-q",
        capsys=capsys,
    )
    assert code == 0, err
    code, out, err = lfp("retrain", "--in", pcfe, "--epochs", "1", "--out", ret, "-q", "--json", capsys=capsys)
    assert code == 0, err
    # the fresh model starts from the same pretrained file as the standard model (the paper's code does so)
    _, meta = load_checkpoint(ret)
    assert meta["init"]["type"] == "pretrained" and meta["init"]["sha256"] == sha256_file(pre)
    code, out, err = lfp("eval", "--in", ret, "--json", "-q", capsys=capsys)
    assert code == 0, err
    figures = json.loads(out)
    assert list(figures["splits"]["test"]["groups"]) == [
        "landbird/land",
        "landbird/water",
        "waterbird/land",
        "waterbird/water",
    ]
    code, out, err = lfp(
        "saliency", "--in", std, "--in", ret, "--n", "8", "--out", tmp_path / "maps.h5", "--json", "-q", capsys=capsys
    )
    assert code == 0, err
    share = json.loads(out)
    assert "share" in json.dumps(share)  # attribution share on the object: the masks are there


def test_data_list_finds_the_testbed(capsys):
    code, out, err = lfp("data", "--list", "--json", capsys=capsys)
    assert code == 0, err
    specs = {d["name"]: d for d in json.loads(out)["datasets"]}
    tb = specs["spurious-scenes"]
    assert tb["source"] == "built-in" and "WaterBirds" in tb["description"]
    assert tb["params"]["correlation"]["default"] == 0.95 and tb["params"]["train_size"]["default"] == 4800
    assert "scenes-pretrain" in specs and specs["waterbirds"]["params"]["root"]["default"] == "required"
    code, out, _ = lfp("data", "--list", capsys=capsys)
    assert code == 0 and "spurious-scenes (built-in)" in out and "spurious-digits (built-in)" in out
