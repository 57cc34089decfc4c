"""``lfpcli.report``: eval reports grouped by their provenance and reduced over seeds, checked against means and
standard deviations computed by hand; the chain summary an eval report carries; training curves.

Most cases fabricate eval reports (``save_json_artifact`` with a valid record and a hand-written provenance summary),
so every figure is known; a few use a tiny real chain (mlp on ``digits``) to check what ``lfp eval`` records."""

from __future__ import annotations

import copy
import json
import math

import pytest

from lfpcli.artifacts import load_json_artifact, make_record, save_json_artifact
from lfpcli.errors import ConfigError, InputError
from lfpcli.report import (
    aggregate,
    chain_summary,
    curve_panels,
    load_run,
    load_runs,
    make_figure,
    parse_where,
    render,
)

SD = {
    "type": "builtin",
    "name": "spurious-digits",
    "version": 2,
    "params": {"seed": 0, "correlation": 0.95, "size": 28, "contrast": 1.0, "separation": 0.5, "train_copies": 1},
}
DIGITS = {"type": "builtin", "name": "digits", "version": 1, "params": {"seed": 0}}
TRAIN = {
    "epochs": 10,
    "optimizer": "adam",
    "lr": 0.001,
    "momentum": 0.9,
    "weight_decay": 0.0,
    "nesterov": False,
    "batch_size": 64,
    "schedule": "constant",
    "select": "last",
    "loss": "ce",
}


def _summary(method="pgd-l2", targets="random", seed=0, density=None, data=SD, sha=None, **config):
    cfg = {f"retrain.train.{k}": v for k, v in TRAIN.items()} | {"retrain.arch": "small-cnn", "perturb.steps": 30}
    if method == "original":
        cfg = {f"train.train.{k}": v for k, v in TRAIN.items()} | {"train.arch": "small-cnn"}
        targets = None
    cfg.update(config)
    seeds = {"train": seed} if method == "original" else {"source": seed, "perturb": seed, "retrain": seed}
    return {
        "version": 1,
        "model": {
            "sha256": sha or f"{method}-{targets}-{density}-{seed}-{sorted(config.items())}-{data['name']}",
            "role": "standard" if method == "original" else "retrained",
        },
        "data": data,
        "method": method,
        "targets": targets,
        "density": density,
        "seeds": seeds,
        "config": cfg,
        "missing": [],
    }


def _split(acc, wga, mga=None, twa=None):
    return {
        "accuracy": acc,
        "n": 100,
        "worst_group_accuracy": wga,
        "worst_group": "low/land",
        "mean_group_accuracy": mga,
        "train_weighted_accuracy": twa,
        "groups": None,
    }


def write_eval(path, summary, splits, data=None):
    """An eval report as ``lfp eval --out`` writes it, with the given provenance summary and figures."""
    record = make_record(
        "eval",
        {"model": "model.pt", "data": None, "splits": list(splits), "batch_size": 256, "device": "cpu"},
        parents=[],
        device="cpu",
        argv=["lfp", "eval"],
    )
    body = {
        "model": "model.pt",
        "trained_on": summary["method"],
        "provenance": summary,
        "data": data or summary["data"],
        "splits": splits,
        "group_names": ["low/water", "low/land", "high/water", "high/land"],
        "device": "cpu",
    }
    save_json_artifact(path, record, body)
    return path


def _std(xs):
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


@pytest.fixture
def table_files(tmp_path):
    """Three seeds of pgd-l2 and of pcfe-l0 (random targets) and two of the standard model, figures chosen by hand."""
    files = []
    figs = {
        ("pgd-l2", 0): (0.80, 0.50, 0.70, 0.40),
        ("pgd-l2", 1): (0.70, 0.60, 0.75, 0.35),
        ("pgd-l2", 2): (0.90, 0.40, 0.80, 0.30),
        ("pcfe-l0", 0): (0.60, 0.20, 0.65, 0.25),
        ("pcfe-l0", 1): (0.64, 0.30, 0.61, 0.31),
        ("pcfe-l0", 2): (0.62, 0.25, 0.66, 0.19),
        ("original", 0): (1.00, 0.97, 0.85, 0.55),
        ("original", 1): (0.99, 0.95, 0.87, 0.65),
    }
    for (m, s), (tr, trw, te, tew) in figs.items():
        summ = _summary(m, seed=s, density="kde" if m == "pcfe-l0" else None)
        files.append(
            write_eval(
                tmp_path / f"r{len(files)}.json",
                summ,
                {"train": _split(tr, trw, 0.9, 0.91), "val": _split(0.5, 0.4), "test": _split(te, tew, 0.7, 0.72)},
            )
        )
    return files


def _cell(rep, label, split, metric, data="spurious-digits:train_copies=1"):
    col = next(c for c in rep["columns"] if c["label"] == label)
    row = next(r for r in rep["rows"] if r["split"] == split and r["metric"] == metric and r["data"] == data)
    return row["cells"][col["id"]]


def test_means_and_sample_stds_match_hand_computation(table_files):
    rep = aggregate(load_runs(table_files))
    assert [c["label"] for c in rep["columns"]] == ["PGD l2", "p-CFE l0", "Original"]
    c = _cell(rep, "PGD l2", "test", "worst-group")
    assert c["n"] == 3 and c["mean"] == pytest.approx(0.35) and c["std"] == pytest.approx(0.05)
    c = _cell(rep, "PGD l2", "train", "accuracy")
    assert c["mean"] == pytest.approx(0.8) and c["std"] == pytest.approx(0.1)
    assert (c["min"], c["max"]) == (0.7, 0.9) and c["seeds"] == ["0", "1", "2"]
    c = _cell(rep, "p-CFE l0", "test", "worst-group")
    assert c["mean"] == pytest.approx(0.25) and c["std"] == pytest.approx(_std([0.25, 0.31, 0.19])) == pytest.approx(
        0.06
    )
    c = _cell(rep, "Original", "test", "accuracy")
    assert c["mean"] == pytest.approx(0.86) and c["std"] == pytest.approx(math.sqrt(2) * 0.01)
    md = render(rep, "md")
    assert "| spurious-digits:train_copies=1 | train | 80.00 (10.00) | 62.00 (2.00) | 99.50 (0.71) |" in md
    assert "|  | test | 35.00 (5.00) | 25.00 (6.00) | 60.00 (7.07) |" in md
    assert "ddof=1" in md and "runs per column" in md
    assert "0.350 (0.050)" in render(rep, "md", scale="fraction")


def test_only_the_requested_metrics_and_splits(table_files):
    rep = aggregate(load_runs(table_files), metrics=["mean-group", "train-weighted"], splits=["test"])
    assert {r["metric"] for r in rep["rows"]} == {"mean-group", "train-weighted"} and {
        r["split"] for r in rep["rows"]
    } == {"test"}
    assert _cell(rep, "PGD l2", "test", "train-weighted")["mean"] == pytest.approx(0.72)
    with pytest.raises(ConfigError, match="--metric"):
        aggregate(load_runs(table_files), metrics=["bogus"])
    with pytest.raises(InputError, match="--split"):
        aggregate(load_runs(table_files), splits=["holdout"])


def test_runs_that_differ_in_a_setting_are_not_averaged_and_the_setting_is_named(tmp_path):
    files = [
        write_eval(
            tmp_path / f"b{beta}-{s}.json",
            _summary("pcfe-l0", seed=s, density="kde", **{"perturb.beta": beta}),
            {"test": _split(acc, acc / 2)},
        )
        for beta, s, acc in [(0.01, 0, 0.7), (0.01, 1, 0.8), (0.1, 0, 0.5), (0.1, 1, 0.6)]
    ]
    rep = aggregate(load_runs(files), splits=["test"])
    labels = [c["label"] for c in rep["columns"]]
    assert labels == ["p-CFE l0 [perturb.beta=0.01]", "p-CFE l0 [perturb.beta=0.1]"]
    assert _cell(rep, labels[0], "test", "accuracy")["mean"] == pytest.approx(0.75)
    assert _cell(rep, labels[1], "test", "accuracy")["mean"] == pytest.approx(0.55)
    assert rep["splits_by"][0]["keys"] == ["perturb.beta"]
    assert any("perturb.beta" in n and "not averaged" in n for n in rep["notes"])
    assert "perturb.beta" in render(rep, "md")
    # named in --by, the setting becomes part of the column's name instead
    rep = aggregate(load_runs(files), by=["method", "data", "perturb.beta"], splits=["test"])
    assert [c["label"] for c in rep["columns"]] == ["p-CFE l0 (perturb.beta=0.01)", "p-CFE l0 (perturb.beta=0.1)"]
    assert rep["splits_by"] == []


def test_an_ablation_names_each_row_by_what_it_changed(tmp_path):
    rows = {
        "default": {},
        "beta": {"perturb.beta": 0.1},
        "long": {"retrain.train.epochs": 30, "retrain.train.lr": 0.01},
    }
    files = []
    for name, change in rows.items():
        for s in (0, 1):
            summ = _summary("pcfe-l0", seed=s, density="kde", **{"perturb.beta": 0.01, **change})
            files.append(write_eval(tmp_path / f"{name}{s}.json", summ, {"test": _split(0.7 + 0.1 * s, 0.5)}))
    rep = aggregate(load_runs(files), splits=["test"])
    assert [c["label"] for c in rep["columns"]] == [
        "p-CFE l0",
        "p-CFE l0 [retrain.train.epochs=30, lr=0.01]",
        "p-CFE l0 [perturb.beta=0.1]",
    ]
    assert rep["columns"][0]["variant"] == {"perturb.beta": 0.01, "retrain.train.epochs": 10, "retrain.train.lr": 0.001}
    assert all(_cell(rep, c["label"], "test", "accuracy")["mean"] == pytest.approx(0.75) for c in rep["columns"])
    assert "| p-CFE l0 [perturb.beta=0.1] | 2 | 75.00 (7.07) | 50.00 (0.00) |" in render(rep, "md", layout="long")


def test_target_rules_and_densities_are_columns_and_the_standard_model_is_original(tmp_path):
    specs = [
        ("pgd-l2", "random", None),
        ("pgd-l2", "random-other", None),
        ("pcfe-l0", "random", "kde"),
        ("pcfe-l0", "random", "vae"),
        ("original", None, None),
    ]
    files = []
    for m, t, d in specs:
        for s in (0, 1):
            files.append(
                write_eval(
                    tmp_path / f"{len(files)}.json",
                    _summary(m, targets=t, seed=s, density=d),
                    {"train": _split(0.9, 0.8), "test": _split(0.8, 0.5 + 0.1 * s)},
                )
            )
    rep = aggregate(load_runs(files))
    assert [c["label"] for c in rep["columns"]] == [
        "PGD l2 (random)",
        "PGD l2 (random-other)",
        "p-CFE l0 (random, kde)",
        "p-CFE l0 (random, vae)",
        "Original",
    ]
    assert _cell(rep, "Original", "test", "worst-group")["std"] == pytest.approx(_std([0.5, 0.6]))
    # --where keeps runs the key does not apply to (the standard model has no target rule)
    rep = aggregate(load_runs(files), where=parse_where(["targets=random-other"]))
    assert [c["label"] for c in rep["columns"]] == ["PGD l2", "Original"]
    rep = aggregate(load_runs(files), where=parse_where(["density=vae"]))
    assert "p-CFE l0 (random, kde)" not in [c["label"] for c in rep["columns"]]
    with pytest.raises(InputError, match="no run has it"):
        aggregate(load_runs(files), where=parse_where(["targets=deterministic"]))
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_where(["targets"])


def test_data_sets_get_rows_and_are_never_mixed(tmp_path):
    files = [
        write_eval(tmp_path / f"{d['name']}{s}.json", _summary("pgd-l2", seed=s, data=d), {"test": _split(acc, acc)})
        for d, accs in ((SD, (0.7, 0.9)), (DIGITS, (0.5, 0.6)))
        for s, acc in enumerate(accs)
    ]
    rep = aggregate(load_runs(files), splits=["test"])
    assert [r["data"] for r in rep["rows"] if r["metric"] == "accuracy"] == ["digits", "spurious-digits:train_copies=1"]
    assert _cell(rep, "PGD l2", "test", "accuracy", data="digits")["mean"] == pytest.approx(0.55)
    assert _cell(rep, "PGD l2", "test", "accuracy")["mean"] == pytest.approx(0.8)
    with pytest.raises(InputError, match="mixed data sets"):
        aggregate(load_runs(files), by=["method"], splits=["test"])
    with pytest.raises(ConfigError, match="--by bogus"):
        aggregate(load_runs(files), by=["method", "bogus"])


def test_the_same_model_twice_is_refused(tmp_path):
    s = _summary("pgd-l2", seed=0)
    a = write_eval(tmp_path / "a.json", s, {"test": _split(0.8, 0.5)})
    b = write_eval(tmp_path / "b.json", copy.deepcopy(s), {"test": _split(0.8, 0.5)})
    with pytest.raises(InputError, match="count one seed twice"):
        load_runs([a, b])


def test_formats_carry_the_figures(table_files):
    rep = aggregate(load_runs(table_files))
    csv_text = render(rep, "csv")
    header, *lines = csv_text.splitlines()
    assert header.startswith("data,split,metric,column,method,targets,density,variant,n,runs,mean,std")
    row = next(line for line in lines if ",test,worst-group,PGD l2," in line)
    fields = row.split(",")
    assert float(fields[10]) == pytest.approx(0.35) and float(fields[11]) == pytest.approx(0.05)
    tex = render(rep, "tex")
    assert r"\toprule" in tex and r"PGD $\ell_2$" in tex and "80.00 (10.00)" in tex and r"p-CFE $\ell_0$" in tex
    obj = json.loads(render(rep, "json"))
    assert obj["std"].startswith("std: sample standard deviation")
    long_md = render(rep, "md", layout="long")
    assert "| PGD l2 | 3 | 80.00 (10.00) | 75.00 (5.00) | 50.00 (10.00) | 35.00 (5.00) |" in long_md
    with pytest.raises(ConfigError, match="--format"):
        render(rep, "html")


def test_a_single_run_has_no_std_and_missing_figures_are_counted(tmp_path):
    a = write_eval(
        tmp_path / "a.json", _summary("pgd-l2", seed=0), {"train": _split(0.8, 0.5), "test": _split(0.7, 0.4)}
    )
    b = write_eval(tmp_path / "b.json", _summary("pgd-l2", seed=1), {"test": _split(0.9, 0.6)})
    rep = aggregate(load_runs([a, b]))
    c = _cell(rep, "PGD l2", "train", "accuracy")
    assert c["n"] == 1 and c["runs"] == 2 and c["std"] is None
    assert "80.00 (-) [n=1 of 2]" in render(rep, "md")


def test_foreign_and_perturbed_eval_reports_are_refused(tmp_path, digits_model, digits_pgd):
    from lfpcli.commands import evaluate

    (tmp_path / "x.json").write_text('{"hello": 1}')
    with pytest.raises(InputError, match="not an lfp artifact"):
        load_run(tmp_path / "x.json")
    with pytest.raises(InputError, match="checkpoint"):
        load_run(digits_model)
    with pytest.raises(InputError, match="perturbed-set"):
        load_run(digits_pgd)
    evaluate(model=digits_model, data=str(digits_pgd), device="cpu", out=tmp_path / "p.json")
    with pytest.raises(InputError, match="perturbed set"):
        load_run(tmp_path / "p.json")


# ------------------------------------------------------------------------------------- real chains


def test_eval_reports_carry_the_chain_and_old_ones_are_traced_through_parents(tmp_path, digits_model, digits_pgd):
    from lfpcli.commands import evaluate, retrain

    r = tmp_path / "r.pt"
    retrain(r, perturbed=digits_pgd, epochs=1, seed=3, device="cpu")
    evaluate(model=r, device="cpu", out=tmp_path / "r.json", splits=("test",))
    evaluate(model=digits_model, device="cpu", out=tmp_path / "m.json", splits=("test",))
    rep = load_json_artifact(tmp_path / "r.json")
    p = rep["provenance"]
    assert (p["method"], p["targets"], p["density"]) == ("pgd-l2", "random", None)
    assert p["seeds"] == {"source": 0, "perturb": 0, "retrain": 3}
    assert (
        p["config"]["perturb.eps"] == 1.0 and p["config"]["perturb.steps"] == 10 and p["config"]["perturb.limit"] == 64
    )
    assert p["config"]["retrain.train.epochs"] == 1 and p["config"]["source.train.epochs"] == 3
    assert p["data"]["name"] == "digits" and p["missing"] == []
    std = load_json_artifact(tmp_path / "m.json")["provenance"]
    assert std["method"] == "original" and std["seeds"] == {"train": 0}
    # an eval report written before the summary existed: rebuilt from its parents, to the same result
    record = {k: v for k, v in rep.items() if k not in ("provenance", "checksum")}
    body = {k: record.pop(k) for k in ("model", "trained_on", "data", "splits", "group_names", "device")}
    save_json_artifact(tmp_path / "old.json", record, body)
    old = load_run(tmp_path / "old.json")
    assert old.provenance_from == "parents"
    assert {k: v for k, v in old.summary.items()} == p
    # and refused when that model is gone
    r.rename(tmp_path / "elsewhere.pt")
    with pytest.raises(InputError, match="is gone"):
        load_run(tmp_path / "old.json")
    assert load_run(tmp_path / "r.json").summary == p  # the summary it carries needs no parent


def test_records_written_before_a_data_parameter_existed_group_with_newer_ones(
    tmp_path, digits_model, digits_pgd, monkeypatch
):
    """A perturbed set and its source model recorded before a built-in data spec gained a parameter (here: digits
    without its ``seed``) mean the same data as records that carry the parameter's default: the chain summary,
    which ``lfp report`` groups runs by, is the same, not split off by a ``perturb.data`` / ``source.data`` key."""
    from lfpcli.artifacts import load_checkpoint
    from lfpcli.commands import retrain
    from lfpcli.report import provenance

    r = tmp_path / "r.pt"
    retrain(r, perturbed=digits_pgd, epochs=1, seed=3, device="cpu")
    _, meta = load_checkpoint(r)
    now = chain_summary(meta, r)

    def older(spec):
        return {**spec, "params": {k: v for k, v in spec["params"].items() if k != "seed"}}

    real_open, real_load = provenance.open_h5, provenance.load_checkpoint

    def open_old(path, kinds=None):
        f, rec = real_open(path, kinds)
        if rec.get("kind") == "perturbed-set":
            rec = copy.deepcopy(rec)
            rec["params"]["data"] = older(rec["params"]["data"])
        return f, rec

    def load_old(path):
        sd, m = real_load(path)
        m = copy.deepcopy(m)
        m["data"] = {
            **m["data"],
            "spec": older(m["data"]["spec"]),
            "clean_spec": older(m["data"].get("clean_spec") or m["data"]["spec"]),
        }
        return sd, m

    monkeypatch.setattr(provenance, "open_h5", open_old)
    monkeypatch.setattr(provenance, "load_checkpoint", load_old)
    then = chain_summary(meta, r)
    assert "perturb.data" not in then["config"] and "source.data" not in then["config"]
    assert then == now


def test_fitted_density_scale_is_not_a_setting():
    from lfpcli.report.provenance import _perturb_config

    params = {"config": {"tau": 0.0123, "beta": 0.01}, "split": "train", "limit": None, "batch_size": 256}
    fitted = _perturb_config(params, {"kind": "kde", "tau_from": "the density's plausibility_weight (no --tau given)"})
    given = _perturb_config(params, {"kind": "kde"})
    assert fitted["perturb.tau"] == "density scale" and given["perturb.tau"] == 0.0123
    assert chain_summary  # the public entry point exists


def test_curves_group_seeds_and_draw(tmp_path, digits_model):
    from lfpcli.commands import train

    other = tmp_path / "m1.pt"
    train(other, data="digits", arch="small-cnn", epochs=3, seed=1, device="cpu")
    panels = curve_panels([digits_model, other])
    assert len(panels) == 1 and len(panels[0]["checkpoints"]) == 2
    s = panels[0]["series"]["val_accuracy"]
    assert s["epoch"] == [1, 2, 3] and s["n"] == [2, 2, 2] and s["min"][0] <= s["mean"][0] <= s["max"][0]
    assert "train_accuracy" in panels[0]["series"]
    fig = make_figure(panels, title="t")
    assert len([a for a in fig.axes if a.get_visible()]) == 1
    with pytest.raises(InputError, match="same model"):
        curve_panels([digits_model, digits_model])


def test_curve_titles_name_only_the_settings_that_split_a_method(monkeypatch):
    from lfpcli.report import curves

    def fake(path):
        method, beta, seed = path.split(":")
        s = _summary(
            method,
            seed=int(seed),
            density="kde" if method == "pcfe-l0" else None,
            **({"perturb.beta": float(beta)} if method == "pcfe-l0" else {}),
        )
        hist = [{"epoch": e, "train_accuracy": 0.5 + 0.1 * e, "val_accuracy": 0.6} for e in (1, 2)]
        return {
            "path": path,
            "history": hist,
            "summary": s,
            "data_key": "sd",
            "data_label": "sd",
            "selected_epoch": None,
        }

    monkeypatch.setattr(curves, "load_curve", fake)
    panels = curve_panels(["original:0:0", "original:0:1", "pgd-l2:0:0", "pcfe-l0:0.01:0", "pcfe-l0:0.1:0"])
    assert [p["title"] for p in panels] == [
        "PGD l2 (random targets)",
        "p-CFE l0 (random targets, kde) [perturb.beta=0.01]",
        "p-CFE l0 (random targets, kde) [perturb.beta=0.1]",
        "Original",
    ]
    assert panels[-1]["series"]["train_accuracy"]["mean"] == pytest.approx([0.6, 0.7])
