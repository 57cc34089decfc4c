"""What the CLI promises, checked against independent oracles: retrain inherits the source model's settings and
each flag overrides exactly one; eval's group figures against a hand count; the target rules and their seeds;
``--config`` on every command that takes it; parents' sha256 against ``hashlib``.

Every command runs in-process through ``lfpcli.cli.app.main``; the expected values come from the checkpoint's
plain ``torch.load``, ``h5py``, numpy counts and ``hashlib``, never from lfp's own helpers for the same figure.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from clirun import lfp
from scipy.stats import binom

from lfpcli.cli.app import command, main


def ok(*args, capsys) -> str:
    """Run lfp and return stdout, failing the test with stderr if the command did not succeed."""
    code, out, err = lfp(*args, capsys=capsys)
    assert code == 0, err
    return out


def meta_of(path) -> dict:
    return torch.load(path, weights_only=True)["meta"]


def h5_record(path) -> dict:
    """The provenance record of an lfp HDF5 file, read with plain h5py."""
    with h5py.File(path, "r") as f:
        return json.loads(f.attrs["lfp_record"])


def h5_arrays(path, *names) -> list[np.ndarray]:
    with h5py.File(path, "r") as f:
        return [f[n][...] for n in names]


CPU = ("--device", "cpu")


# ------------------------------------------------------------------- (3) retrain inherits, flags override
SOURCE_FLAGS = [
    "--arch",
    "mlp",
    "--arch-arg",
    "hidden=16",
    "--arch-arg",
    "depth=1",
    "--epochs",
    "2",
    "--optimizer",
    "sgd",
    "--lr",
    "0.05",
    "--momentum",
    "0.5",
    "--batch-size",
    "32",
    "--schedule",
    "cosine",
]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """An mlp trained on digits with non-default architecture options and training settings, and 48 of its
    training digits perturbed (pgd-l2, 2 steps)."""
    d = tmp_path_factory.mktemp("source")
    _run_quiet(["train", "--data", "digits", *SOURCE_FLAGS, "--out", str(d / "src.pt"), "-q", *CPU])
    _run_quiet(
        ["perturb", "--in", str(d / "src.pt"), "--out", str(d / "p.h5"), "--limit", "48", "--steps", "2", "-q", *CPU]
    )
    return d


def _run_quiet(argv: list[str]) -> None:
    """main() outside a test's capsys (module fixtures): must exit 0."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0, f"lfp {' '.join(argv)} failed"


def test_source_checkpoint_records_the_flags_it_was_given(source):
    """The source model's own record holds exactly the settings given on its command line (the baseline the
    retrain tests compare against)."""
    m = meta_of(source / "src.pt")
    assert (
        m["model"]["arch"] == "mlp"
        and m["model"]["arch_args"]["hidden"] == 16
        and m["model"]["arch_args"]["depth"] == 1
    )
    cfg = m["train"]["config"]
    assert (cfg["epochs"], cfg["optimizer"], cfg["lr"], cfg["momentum"], cfg["batch_size"], cfg["schedule"]) == (
        2,
        "sgd",
        0.05,
        0.5,
        32,
        "cosine",
    )


def test_retrain_without_flags_takes_everything_from_the_source(source, capsys):
    """retrain with no setting flags: the retrained checkpoint's architecture, architecture options,
    initialisation and whole training config equal the source model's, read from both checkpoints."""
    out = source / "plain.pt"
    ok("retrain", "--in", source / "p.h5", "--out", out, "-q", "--json", *CPU, capsys=capsys)
    src, new = meta_of(source / "src.pt"), meta_of(out)
    assert new["model"]["arch"] == src["model"]["arch"]
    assert new["model"]["arch_args"] == src["model"]["arch_args"]
    assert new["train"]["config"] == src["train"]["config"]
    assert new["init"]["type"] == src["init"]["type"] == "scratch"
    assert len(new["train"]["history"]) == 2


OVERRIDES = [
    pytest.param(["--epochs", "1"], {"epochs": 1}, None, id="epochs"),
    pytest.param(["--lr", "0.01"], {"lr": 0.01}, None, id="lr"),
    pytest.param(["--batch-size", "16"], {"batch_size": 16}, None, id="batch-size"),
    pytest.param(["--optimizer", "adam"], {"optimizer": "adam"}, None, id="optimizer"),
    pytest.param(["--arch", "small-cnn"], {}, ("small-cnn", None), id="arch"),
    pytest.param(["--arch-arg", "hidden=8"], {}, ("mlp", {"hidden": 8}), id="arch-arg"),
    pytest.param(["--init", "scratch"], {}, None, id="init"),
]


@pytest.mark.parametrize("flags,config_change,arch_change", OVERRIDES)
def test_each_retrain_flag_overrides_exactly_its_setting(
    source, digits_model, tmp_path, capsys, flags, config_change, arch_change
):
    """One flag on retrain changes that setting in the retrained checkpoint and nothing else: the training
    config is the source's with that key replaced, the architecture and its options are the source's unless the
    flag names them (--arch small-cnn: small-cnn with its own defaults, as a default small-cnn records them)."""
    out = tmp_path / "r.pt"
    ok("retrain", "--in", source / "p.h5", "--out", out, *flags, "-q", *CPU, capsys=capsys)
    src, new = meta_of(source / "src.pt"), meta_of(out)
    assert new["train"]["config"] == {**src["train"]["config"], **config_change}
    if arch_change is None:
        assert new["model"]["arch"] == src["model"]["arch"]
        assert new["model"]["arch_args"] == src["model"]["arch_args"]
    elif arch_change[1] is None:  # another architecture: its own defaults, never the source's options
        assert new["model"]["arch"] == arch_change[0]
        assert new["model"]["arch_args"] == meta_of(digits_model)["model"]["arch_args"]
    else:
        assert new["model"]["arch"] == arch_change[0]
        assert new["model"]["arch_args"] == {**src["model"]["arch_args"], **arch_change[1]}
    assert new["init"]["type"] == "scratch"
    if flags[0] == "--init":
        assert new["params"]["init"] == "scratch"


# ----------------------------------------------------------------------- (4) eval figures by hand count
@pytest.fixture(scope="module")
def grouped_model(tmp_path_factory):
    """An mlp trained one epoch on spurious-digits with one copy per training digit (groups, 1,078 images)."""
    path = tmp_path_factory.mktemp("grouped") / "m.pt"
    _run_quiet(
        [
            "train",
            "--data",
            "spurious-digits:train_copies=1",
            "--arch",
            "mlp",
            "--arch-arg",
            "hidden=32",
            "--epochs",
            "1",
            "--out",
            str(path),
            "-q",
            *CPU,
        ]
    )
    return path


def hand_count(pred: np.ndarray, y: np.ndarray, group: np.ndarray, names: list[str], train_group: np.ndarray) -> dict:
    """The README's eval figures, counted with plain Python over numpy arrays."""
    correct = pred == y
    out = {"n": len(y), "accuracy": int(correct.sum()) / len(y), "groups": {}}
    for g, name in enumerate(names):
        sel = group == g
        out["groups"][name] = {"n": int(sel.sum()), "accuracy": int(correct[sel].sum()) / int(sel.sum())}
    accs = [out["groups"][nm]["accuracy"] for nm in names]
    worst = min(range(len(names)), key=lambda g: (accs[g], g))  # the first group on a tie
    out["worst_group"], out["worst_group_accuracy"] = names[worst], accs[worst]
    out["mean_group_accuracy"] = sum(accs) / len(accs)
    props = [int((train_group == g).sum()) / len(train_group) for g in range(len(names))]
    out["train_weighted_accuracy"] = sum(a * p for a, p in zip(accs, props)) / sum(props)
    return out


def test_eval_group_figures_equal_a_hand_count(grouped_model, capsys):
    """lfp eval --json on spurious-digits: accuracy, every group's accuracy and n, the worst group and its
    accuracy, the mean group accuracy and the accuracy weighted by training group proportions all equal a hand
    count over predictions made here from the checkpoint and the data spec, on train, val and test."""
    from lfpcli.artifacts.dataspec import resolve
    from lfpcli.commands.common import load_model

    report = json.loads(ok("eval", "--in", grouped_model, "--json", *CPU, capsys=capsys))
    net, meta = load_model(grouped_model, torch.device("cpu"))
    ds = resolve(meta["data"]["spec"])
    names = list(ds.group_names)
    assert names == ["low/water", "low/land", "high/water", "high/land"]
    train_group = ds.split("train").group.numpy()
    for split in ("train", "val", "test"):
        sp = ds.split(split)
        with torch.no_grad():
            pred = torch.cat([net(sp.x[s : s + 200]).argmax(1) for s in range(0, len(sp), 200)]).numpy()
        want = hand_count(pred, sp.y.numpy(), sp.group.numpy(), names, train_group)
        got = report["splits"][split]
        assert got["n"] == want["n"] and got["accuracy"] == want["accuracy"]
        assert got["groups"] == want["groups"]
        assert got["worst_group"] == want["worst_group"]
        assert got["worst_group_accuracy"] == want["worst_group_accuracy"]
        assert got["mean_group_accuracy"] == pytest.approx(want["mean_group_accuracy"], rel=1e-12, abs=0)
        assert got["train_weighted_accuracy"] == pytest.approx(want["train_weighted_accuracy"], rel=1e-12, abs=0)
    # the spurious setting is visible in the figures: train groups are unbalanced, test groups are not
    assert [report["splits"]["test"]["groups"][g]["n"] for g in names] == [90, 90, 90, 90]
    assert (
        report["splits"]["train"]["groups"]["low/land"]["n"]
        < report["splits"]["train"]["groups"]["low/water"]["n"] / 10
    )


# ------------------------------------------------------------------------ (5) target rules and seeds
def _targets(digits_model, out: Path, rule: str, seed: int, limit: int, capsys) -> tuple[np.ndarray, np.ndarray, dict]:
    s = json.loads(
        ok(
            "perturb",
            "--in",
            digits_model,
            "--out",
            out,
            "--targets",
            rule,
            "--seed",
            seed,
            "--limit",
            limit,
            "--steps",
            "1",
            "--json",
            "-q",
            *CPU,
            capsys=capsys,
        )
    )
    y, t = h5_arrays(out, "y", "target")
    return y, t, s


def test_deterministic_targets_are_the_next_class(digits_model, tmp_path, capsys):
    """--targets deterministic: every stored target is (y + 1) mod 10, and the summary's kept-label rate is 0."""
    y, t, s = _targets(digits_model, tmp_path / "d.h5", "deterministic", 0, 300, capsys)
    assert len(t) == 300 and np.array_equal(t, (y + 1) % 10)
    assert s["target_kept_label_rate"] == 0.0


def test_random_targets_follow_the_seed_and_keep_about_one_label_in_k(digits_model, tmp_path, capsys):
    """--targets random: the same --seed gives identical targets in two runs, another seed different ones; about
    1/K of the samples keep their label (within the binomial 1e-6 tails for n = 600, p = 1/10), and the
    summary's kept-label rate and per-class target counts are that hand count."""
    y, t0, s0 = _targets(digits_model, tmp_path / "a.h5", "random", 7, 600, capsys)
    _, t0b, _ = _targets(digits_model, tmp_path / "b.h5", "random", 7, 600, capsys)
    _, t1, _ = _targets(digits_model, tmp_path / "c.h5", "random", 8, 600, capsys)
    assert np.array_equal(t0, t0b)
    assert not np.array_equal(t0, t1) and (t0 != t1).mean() > 0.5
    kept = int((t0 == y).sum())
    lo, hi = binom.ppf(1e-6, 600, 0.1), binom.isf(1e-6, 600, 0.1)
    assert lo <= kept <= hi, (kept, lo, hi)
    assert s0["target_kept_label_rate"] == kept / 600
    assert s0["target_counts"] == np.bincount(t0, minlength=10).tolist()
    assert set(np.unique(t0)) == set(range(10))


def test_random_other_targets_never_keep_the_label(digits_model, tmp_path, capsys):
    """--targets random-other: no stored target equals its label, and every other class is drawn."""
    y, t, s = _targets(digits_model, tmp_path / "o.h5", "random-other", 3, 600, capsys)
    assert not (t == y).any() and s["target_kept_label_rate"] == 0.0
    assert set(np.unique(t)) == set(range(10))


# -------------------------------------------------------------------------------- (6) --config everywhere
def commands_with_config() -> list[str]:
    """Every lfp (sub)command that has a --config option, read from the CLI itself."""
    found = []

    def walk(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, path + [name])
        elif any("--config" in p.opts for p in cmd.params):
            found.append(" ".join(path))

    walk(command(), [])
    return sorted(found)


CONFIG_CASES = [
    "density",
    "eval",
    "perturb",
    "perturb pcfe-l0",
    "retrain",
    "saliency",
    "synth run",
    "synth sweep",
    "train",
]


def test_the_config_cases_cover_every_command_with_config():
    """The --config cases below cover exactly the commands that take --config (a new one fails here)."""
    assert commands_with_config() == sorted({c.split(" pcfe")[0] for c in CONFIG_CASES})


TINY_SYNTH = {"dim": 40, "hidden": 8, "n-natural": 10, "n-noise": 20, "window": 20, "rel-tol": 0.2, "device": "cpu"}


def _yaml(mapping: dict) -> str:
    import yaml

    return yaml.safe_dump(mapping, sort_keys=False)


def checkpoint_values(path) -> dict:
    m = meta_of(path)
    return {"arch": m["model"]["arch"], **m["model"]["arch_args"], **m["train"]["config"], "seed": m["seeds"]["seed"]}


def perturbed_values(path) -> dict:
    r = h5_record(path)["params"]
    return {**r["config"], **{k: r[k] for k in ("method", "targets", "limit", "seed")}}


def eval_values(path) -> dict:
    r = json.loads(Path(path).read_text())
    return {"batch_size": r["params"]["batch_size"], "splits": r["params"]["splits"], "reported": sorted(r["splits"])}


def density_values(path) -> dict:
    r = h5_record(path)
    return {**{k: r["params"][k] for k in ("kind", "fit_on", "params", "seed")}, "k": r["density"]["params"]["k"]}


def saliency_values(path) -> dict:
    r = h5_record(path)["params"]
    return {"method": r["config"]["method"], **{k: r[k] for k in ("split", "n", "seed")}}


def synth_values(path) -> dict:
    r = h5_record(path)["params"]
    return {**{k: r["plan"][k] for k in ("methods", "seeds", "dim", "hidden", "curves")}, **r["settings"]}


def config_case(name: str, digits_model: Path, digits_pgd: Path) -> tuple[dict, list[str], str, object, dict]:
    """(config file contents, command line, output name, reader of the recorded values, expected values). The
    command line gives one option that the file also sets; the expected value is the command line's."""
    model, pgd = str(digits_model), str(digits_pgd)
    cases = {
        "train": (
            {
                "data": "digits",
                "arch": "mlp",
                "arch-arg": {"hidden": 8},
                "epochs": 1,
                "lr": 0.01,
                "batch-size": 128,
                "seed": 4,
                "device": "cpu",
            },
            ["train", "--lr", "0.02"],
            "m.pt",
            checkpoint_values,
            {"arch": "mlp", "hidden": 8, "epochs": 1, "lr": 0.02, "batch_size": 128, "seed": 4},
        ),
        "perturb": (
            {
                "in": model,
                "method": "pgd-l2",
                "eps": 0.5,
                "steps": 3,
                "param": {"step_size": 0.2},
                "targets": "deterministic",
                "limit": 8,
                "seed": 3,
                "device": "cpu",
            },
            ["perturb", "--eps", "0.7"],
            "p.h5",
            perturbed_values,
            {
                "method": "pgd-l2",
                "eps": 0.7,
                "steps": 3,
                "step_size": 0.2,
                "targets": "deterministic",
                "limit": 8,
                "seed": 3,
            },
        ),
        "perturb pcfe-l0": (
            {
                "in": model,
                "method": "pcfe-l0",
                "density": "none",
                "steps": 3,
                "search-steps": 1,
                "beta": 0.02,
                "gamma": 0.5,
                "param": {"kappa": 0.3},
                "limit": 4,
                "device": "cpu",
            },
            ["perturb", "--beta", "0.03"],
            "pc.h5",
            perturbed_values,
            {"method": "pcfe-l0", "steps": 3, "search_steps": 1, "beta": 0.03, "gamma": 0.5, "kappa": 0.3, "limit": 4},
        ),
        "retrain": (
            {"in": pgd, "epochs": 1, "lr": 0.003, "batch-size": 16, "seed": 2, "device": "cpu"},
            ["retrain", "--batch-size", "8"],
            "r.pt",
            checkpoint_values,
            {"epochs": 1, "lr": 0.003, "batch_size": 8, "seed": 2},
        ),
        "eval": (
            {"in": [model], "split": ["test"], "batch-size": 7, "device": "cpu"},
            ["eval", "--batch-size", "9"],
            "e.json",
            eval_values,
            {"batch_size": 9, "splits": ["test"], "reported": ["test"]},
        ),
        "density": (
            {
                "in": model,
                "kind": "knn",
                "fit-on": "val",
                "param": {"k": 3, "max_points": 20},
                "seed": 5,
                "device": "cpu",
            },
            ["density", "--seed", "6"],
            "q.h5",
            density_values,
            {"kind": "knn", "fit_on": "val", "params": {"k": 3, "max_points": 20}, "seed": 6, "k": 3},
        ),
        "saliency": (
            {"in": [model], "method": "gradient", "split": "val", "n": 4, "seed": 3, "device": "cpu"},
            ["saliency", "--n", "5"],
            "s.h5",
            saliency_values,
            {"method": "gradient", "split": "val", "n": 5, "seed": 3},
        ),
        "synth run": (
            {"method": "cfe-l2", **TINY_SYNTH, "seed": 2, "lr": 0.02},
            ["synth", "run", "--dim", "30"],
            "sr.h5",
            synth_values,
            {"methods": ["cfe-l2"], "dim": 30, "seeds": [2], "hidden": 8, "lr": 0.02, "window": 20},
        ),
        "synth sweep": (
            {"method": "cfe-l2", "seeds": "1", **TINY_SYNTH, "lr": 0.02},
            ["synth", "sweep", "--sweep", "none", "--hidden", "6"],
            "ss.h5",
            synth_values,
            {"methods": ["cfe-l2"], "dim": 40, "seeds": [1], "hidden": 6, "lr": 0.02, "curves": []},
        ),
    }
    return cases[name]


@pytest.mark.parametrize("name", CONFIG_CASES)
def test_config_file_values_are_recorded_and_flags_win(name, digits_model, digits_pgd, tmp_path, capsys):
    """lfp CMD --config FILE.yaml: the file's values (options, method parameters, a `param:` mapping) reach the
    written artifact's recorded parameters, and the one option also given on the command line takes the command
    line's value."""
    cfg, argv, out, read, want = config_case(name, digits_model, digits_pgd)
    path = tmp_path / "cfg.yaml"
    path.write_text(_yaml(cfg))
    ok(*argv, "--config", path, "--out", tmp_path / out, "-q", "--json", capsys=capsys)
    got = read(tmp_path / out)
    assert {k: got.get(k) for k in want} == want


@pytest.mark.parametrize(
    "argv,entry,read,want",
    [
        pytest.param(
            ["synth", "run", "--method", "cfe-l2"],
            {"set": {"cfe_lam": 0.002}},
            lambda r: r["params"]["settings"]["cfe_lam"],
            0.002,
            id="synth run: set",
        ),
        pytest.param(
            ["synth", "sweep", "--method", "cfe-l2", "--seeds", "0"],
            {"sweep": ["none"]},
            lambda r: r["params"]["plan"]["curves"],
            [],
            id="synth sweep: sweep",
        ),
    ],
)
def test_config_file_reaches_options_named_like_python_keywords(argv, entry, read, want, tmp_path, capsys):
    """A config file may set every option the command lists, --set and --sweep included."""
    path = tmp_path / "cfg.yaml"
    path.write_text(_yaml({**TINY_SYNTH, **entry}))
    ok(*argv, "--config", path, "--out", tmp_path / "s.h5", "-q", capsys=capsys)
    assert read(h5_record(tmp_path / "s.h5")) == want


def test_a_flag_wins_over_the_same_parameter_in_the_config_files_param_mapping(digits_model, tmp_path, capsys):
    """A `param: {steps: 3}` entry in the config file and --steps 5 on the command line: steps is 5."""
    path = tmp_path / "cfg.yaml"
    path.write_text(_yaml({"param": {"steps": 3}, "limit": 4, "device": "cpu"}))
    ok(
        "perturb",
        "--in",
        digits_model,
        "--out",
        tmp_path / "p.h5",
        "--config",
        path,
        "--steps",
        "5",
        "-q",
        capsys=capsys,
    )
    assert h5_record(tmp_path / "p.h5")["params"]["config"]["steps"] == 5


def test_a_param_flag_wins_over_the_same_option_in_the_config_file(digits_model, tmp_path, capsys):
    """`steps: 3` in the config file and -p steps=5 on the command line: steps is 5."""
    path = tmp_path / "cfg.yaml"
    path.write_text(_yaml({"steps": 3, "limit": 4, "device": "cpu"}))
    ok(
        "perturb",
        "--in",
        digits_model,
        "--out",
        tmp_path / "p.h5",
        "--config",
        path,
        "-p",
        "steps=5",
        "-q",
        capsys=capsys,
    )
    assert h5_record(tmp_path / "p.h5")["params"]["config"]["steps"] == 5


# --------------------------------------------------------------------------- (7) parents' sha256 by hashlib
@pytest.fixture(scope="module")
def provenance_chain(digits_model, digits_pgd, tmp_path_factory):
    """Artifacts of every kind that records parents: a perturbed set (the session's), a retrained checkpoint, a
    density file, two eval reports (clean data; the perturbed set) and a saliency maps file."""
    d = tmp_path_factory.mktemp("prov")
    _run_quiet(["retrain", "--in", str(digits_pgd), "--out", str(d / "r.pt"), "--epochs", "1", "-q", *CPU])
    _run_quiet(
        [
            "density",
            "--in",
            str(digits_model),
            "--out",
            str(d / "q.h5"),
            "--kind",
            "kde",
            "-p",
            "max_points=20",
            "-q",
            *CPU,
        ]
    )
    _run_quiet(["eval", "--in", str(d / "r.pt"), "--split", "test", "--out", str(d / "e.json"), "-q", *CPU])
    _run_quiet(["eval", "--in", str(digits_model), "--data", str(digits_pgd), "--out", str(d / "ep.json"), "-q", *CPU])
    _run_quiet(
        [
            "saliency",
            "--in",
            str(digits_model),
            "--in",
            str(d / "r.pt"),
            "--n",
            "3",
            "--method",
            "gradient",
            "--out",
            str(d / "s.h5"),
            "-q",
            *CPU,
        ]
    )
    return {
        "perturbed-set": (h5_record(digits_pgd), {"model": digits_model}),
        "retrained checkpoint": (meta_of(d / "r.pt"), {"perturbed": digits_pgd}),
        "density": (h5_record(d / "q.h5"), {"model": digits_model}),
        "eval report": (json.loads((d / "e.json").read_text()), {"model": d / "r.pt"}),
        "eval report on a perturbed set": (
            json.loads((d / "ep.json").read_text()),
            {"model": digits_model, "data": digits_pgd},
        ),
        "saliency maps": (h5_record(d / "s.h5"), {"model": [digits_model, d / "r.pt"]}),
    }


@pytest.mark.parametrize(
    "kind",
    [
        "perturbed-set",
        "retrained checkpoint",
        "density",
        "eval report",
        "eval report on a perturbed set",
        "saliency maps",
    ],
)
def test_every_parent_sha256_is_the_files_hashlib_digest(provenance_chain, kind):
    """Every parent entry's sha256 equals hashlib.sha256 of that file's bytes (read here, not with lfp's helper),
    and the parents are exactly the files the artifact was made from."""
    record, expected = provenance_chain[kind]
    parents = record["parents"]
    assert parents
    for p in parents:
        digest = hashlib.sha256(Path(p["abspath"]).read_bytes()).hexdigest()
        assert p["sha256"] == digest, p
        assert hashlib.sha256(Path(p["path"]).read_bytes()).hexdigest() == digest
    by_role: dict[str, list[Path]] = {}
    for p in parents:
        by_role.setdefault(p["role"], []).append(Path(p["abspath"]).resolve())
    want = {role: [Path(f).resolve() for f in (v if isinstance(v, list) else [v])] for role, v in expected.items()}
    assert by_role == want


def test_the_config_files_param_mapping_merges_under_the_command_lines(digits_model, tmp_path, capsys):
    """`param: {step_size: 0.2}` in the file and `-p random_start=true` on the command line: both apply."""
    path = tmp_path / "cfg.yaml"
    path.write_text(_yaml({"param": {"step_size": 0.2, "steps": 2}, "limit": 4, "device": "cpu"}))
    ok(
        "perturb",
        "--in",
        digits_model,
        "--out",
        tmp_path / "p.h5",
        "--config",
        path,
        "-p",
        "random_start=true",
        "-p",
        "steps=3",
        "-q",
        capsys=capsys,
    )
    cfg = h5_record(tmp_path / "p.h5")["params"]["config"]
    assert cfg["step_size"] == 0.2 and cfg["random_start"] is True and cfg["steps"] == 3


def test_the_same_parameter_twice_in_one_place_is_refused(digits_model, tmp_path, capsys):
    from lfpcli.cli.app import main

    path = tmp_path / "cfg.yaml"
    path.write_text(_yaml({"param": {"steps": 3}, "steps": 4}))
    for argv in (["--steps", "5", "-p", "steps=6"], ["--config", str(path)]):
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            main(["perturb", "--in", str(digits_model), "--out", str(tmp_path / "x.h5"), *argv])
        err = capsys.readouterr().err
        assert e.value.code == 2 and "given both" in err and err.count("\n") == 1
