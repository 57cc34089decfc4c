"""The standard chain through the CLI, at tiny size: artifacts, provenance, JSON shapes, config files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from lfpcli.cli.app import main


def lfp(*args: str, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out, err = capsys.readouterr()
    return e.value.code, out, err


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """train (digits, 2 epochs) -> perturb (pgd-l2, 120 samples, random-other) -> retrain -> eval, via main()."""
    d = tmp_path_factory.mktemp("chain")
    runs = [
        [
            "train",
            "--data",
            "digits",
            "--arch",
            "small-cnn",
            "--epochs",
            "2",
            "--out",
            str(d / "model.pt"),
            "--json",
            "-q",
        ],
        [
            "perturb",
            "--method",
            "pgd-l2",
            "--in",
            str(d / "model.pt"),
            "--out",
            str(d / "pgd.h5"),
            "--limit",
            "120",
            "--targets",
            "random-other",
            "--steps",
            "10",
            "--json",
            "-q",
        ],
        ["retrain", "--in", str(d / "pgd.h5"), "--out", str(d / "model_pgd.pt"), "--json", "-q"],
        ["eval", "--in", str(d / "model_pgd.pt"), "--out", str(d / "eval.json"), "--json"],
    ]
    outputs = []
    for argv in runs:
        r = subprocess.run([sys.executable, "-m", "lfpcli", *argv], capture_output=True, text=True, cwd=d)
        assert r.returncode == 0, r.stderr
        outputs.append(json.loads(r.stdout))
    return d, outputs


def test_chain_outputs_and_json_summaries(chain):
    d, (train, perturb, retrain, ev) = chain
    assert train["kind"] == "checkpoint" and set(train["metrics"]) == {"train", "val", "test"}
    assert perturb["n"] == 120 and perturb["targets"] == "random-other"
    assert perturb["target_kept_label_rate"] == 0.0
    assert perturb["config"]["eps"] == 1.0  # the data spec's default for pgd-l2 on digits
    assert retrain["method"] == "pgd-l2"
    for split in ("train", "val", "test"):
        s = ev["splits"][split]
        assert set(s) >= {
            "accuracy",
            "worst_group_accuracy",
            "mean_group_accuracy",
            "train_weighted_accuracy",
            "groups",
        }
        assert s["worst_group_accuracy"] is None and s["groups"] is None  # digits has no groups
    assert json.loads((d / "eval.json").read_text())["kind"] == "eval"


def test_info_names_parents_with_matching_hashes(chain, capsys):
    d, _ = chain
    expected = {
        "pgd.h5": ("model", "model.pt"),
        "model_pgd.pt": ("perturbed", "pgd.h5"),
        "eval.json": ("model", "model_pgd.pt"),
    }
    for name, (role, parent) in expected.items():
        code, out, err = lfp("info", str(d / name), "--json", capsys=capsys)
        assert code == 0, err
        r = json.loads(out)
        assert {"kind", "schema", "command", "params", "parents", "seeds", "versions", "created"} <= set(r)
        p = next(p for p in r["parents"] if p["role"] == role)
        assert p["path"].endswith(parent) and p["status"] == "ok"
        from lfpcli.artifacts import sha256_file

        assert p["sha256"] == sha256_file(d / parent)
    code, out, _ = lfp("info", str(d / "pgd.h5"), capsys=capsys)
    assert code == 0 and "pgd-l2" in out and "random-other" in out


def _bare_keys(tree_text: str) -> list[str]:
    """Lines of a printed tree that name a key with neither a value nor anything below them."""
    import re

    lines = tree_text.splitlines()
    depth = [len(re.match(r"^[│ ]*[├└]?─*\s*", ln).group(0)) for ln in lines]
    return [
        ln
        for k, ln in enumerate(lines)
        if re.search(r"[├└]── [\w-]+$", ln) and not (k + 1 < len(lines) and depth[k + 1] > depth[k])
    ]


@pytest.mark.parametrize("name", ["eval.json", "pgd.h5", "model_pgd.pt"])
def test_info_shows_a_value_or_contents_for_every_key(chain, capsys, name):
    d, _ = chain
    code, out, err = lfp("info", str(d / name), capsys=capsys)
    assert code == 0, err
    assert not _bare_keys(out), _bare_keys(out)
    if name == "eval.json":
        assert "── model: model_pgd.pt" in out.replace(str(d) + "/", "")  # the model the report is about, by name
        assert "── seeds: none" in out


def test_retrained_model_records_its_origin_and_fresh_init(chain):
    d, _ = chain
    meta = torch.load(d / "model_pgd.pt", weights_only=True)["meta"]
    assert meta["init"]["type"] == "scratch"
    assert meta["perturbation"]["method"] == "pgd-l2" and meta["perturbation"]["targets"] == "random-other"
    assert meta["data"]["spec"]["kind"] == "perturbed-set"
    assert meta["data"]["clean_spec"]["name"] == "digits"
    assert meta["params"]["settings_from"] == "source model"
    src = torch.load(d / "model.pt", weights_only=True)
    assert meta["train"]["config"] == src["meta"]["train"]["config"]
    assert not torch.equal(
        src["state_dict"]["net.head.weight"],
        torch.load(d / "model_pgd.pt", weights_only=True)["state_dict"]["net.head.weight"],
    )


def test_eval_on_perturbed_set_agrees_with_stored_success(chain, capsys):
    d, _ = chain
    code, out, err = lfp("eval", "--in", str(d / "model.pt"), "--data", str(d / "pgd.h5"), "--json", capsys=capsys)
    assert code == 0, err
    p = json.loads(out)["perturbed"]
    assert p["agreement_with_stored_success"] == 1.0
    assert p["accuracy"] == pytest.approx(p["stored_success_rate"])


def test_changed_parent_warns(chain, tmp_path, capsys):
    d, _ = chain
    import shutil

    for name in ("model.pt", "pgd.h5"):
        shutil.copy(d / name, tmp_path / name)
    code, out, err = lfp(
        "perturb",
        "--in",
        str(tmp_path / "model.pt"),
        "--out",
        str(tmp_path / "p2.h5"),
        "--limit",
        "4",
        "--steps",
        "2",
        "-q",
        "--json",
        capsys=capsys,
    )
    assert code == 0
    torch.save(torch.load(tmp_path / "model.pt", weights_only=True) | {"extra": 1}, tmp_path / "model.pt")
    code, out, err = lfp(
        "retrain",
        "--in",
        str(tmp_path / "p2.h5"),
        "--out",
        str(tmp_path / "r.pt"),
        "--epochs",
        "1",
        "-q",
        "--json",
        capsys=capsys,
    )
    assert code == 0
    assert "warning:" in err and "changed" in err and "model.pt" in err


def test_config_file_supplies_options_and_flags_win(tmp_path, capsys):
    cfg = tmp_path / "train.yaml"
    cfg.write_text("data: digits\narch: mlp\nepochs: 1\nlr: 0.01\narch-arg:\n  hidden: 16\n")
    code, out, err = lfp(
        "train", "--config", str(cfg), "--lr", "0.02", "--out", str(tmp_path / "m.pt"), "--json", "-q", capsys=capsys
    )
    assert code == 0, err
    meta = torch.load(tmp_path / "m.pt", weights_only=True)["meta"]
    assert meta["params"]["arch"] == "mlp" and meta["params"]["epochs"] == 1
    assert meta["params"]["lr"] == 0.02 and meta["model"]["arch_args"]["hidden"] == 16


def test_select_best_validation_epoch_is_recorded(tmp_path, capsys):
    code, out, err = lfp(
        "train",
        "--data",
        "digits",
        "--arch",
        "mlp",
        "--epochs",
        "3",
        "--select",
        "val-accuracy",
        "--out",
        str(tmp_path / "m.pt"),
        "--json",
        "-q",
        capsys=capsys,
    )
    assert code == 0, err
    s = json.loads(out)
    best = max(range(3), key=lambda i: (s["history"][i]["val_accuracy"], -i))
    assert s["selected_epoch"] == best + 1
    assert s["metrics"]["val"]["accuracy"] == pytest.approx(s["history"][best]["val_accuracy"])


def test_recipes_fill_training_settings(tmp_path, capsys):
    code, out, err = lfp(
        "train",
        "--data",
        "digits",
        "--arch",
        "mlp",
        "--recipe",
        "paper-code",
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "m.pt"),
        "--json",
        "-q",
        capsys=capsys,
    )
    assert code == 0, err
    cfg = torch.load(tmp_path / "m.pt", weights_only=True)["meta"]["train"]
    assert cfg["recipe"] == "paper-code"
    assert cfg["config"] | {"epochs": 113} == {
        **cfg["config"],
        "optimizer": "sgd",
        "lr": 1e-3,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "batch_size": 108,
        "epochs": 113,
    }


def test_installed_entry_point_runs():
    import shutil

    exe = shutil.which("lfp") or str(__import__("pathlib").Path(sys.executable).with_name("lfp"))
    r = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("lfp ")
    r = subprocess.run([exe, "perturb", "--help"], capture_output=True, text=True, env={"COLUMNS": "200", "PATH": ""})
    assert r.returncode == 0 and "--targets" in r.stdout and "random-other" in r.stdout


def test_a_parameter_given_twice_is_refused(digits_model, tmp_path, capsys):
    code, out, err = lfp(
        "perturb",
        "--in",
        str(digits_model),
        "--out",
        str(tmp_path / "p.h5"),
        "--eps",
        "2",
        "-p",
        "eps=3",
        capsys=capsys,
    )
    assert code == 2 and "give it once" in err and not (tmp_path / "p.h5").exists()
