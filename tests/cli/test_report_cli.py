"""``lfp report`` as a user runs it: a tiny real chain (mlp on ``digits``, two seeds, pgd-l2 under two target rules),
its eval reports aggregated into tables in every format, and the training curves of its checkpoints."""

from __future__ import annotations

import csv
import io
import json
import statistics

import pytest
from clirun import lfp


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Per seed: a standard mlp, pgd-l2 sets under random and random-other targets, the retrained models, and an
    eval report of each (written by ``lfp eval --out``)."""
    from lfpcli.commands import evaluate, perturb, retrain, train

    d = tmp_path_factory.mktemp("report-chain")
    evals, models = [], []
    for s in (0, 1):
        m = d / f"std{s}.pt"
        train(m, data="digits", arch="mlp", epochs=2, seed=s, device="cpu")
        models.append(m)
        evaluate(model=m, device="cpu", out=d / f"e_std{s}.json")
        evals.append(d / f"e_std{s}.json")
        for t in ("random", "random-other"):
            p, r = d / f"p_{t}{s}.h5", d / f"r_{t}{s}.pt"
            perturb(
                p, model=m, method="pgd-l2", targets=t, limit=60, params={"eps": 1.0, "steps": 3}, seed=s, device="cpu"
            )
            retrain(r, perturbed=p, epochs=2, seed=s, device="cpu")
            models.append(r)
            # names that say nothing: grouping must come from the files' provenance
            e = d / f"x{len(evals)}.json"
            evaluate(model=r, device="cpu", out=e)
            evals.append(e)
    return {"dir": d, "evals": evals, "models": models}


def test_tables_to_stdout_and_files(chain, capsys, tmp_path):
    code, out, err = lfp("report", *chain["evals"], capsys=capsys)
    assert code == 0 and err == ""
    assert "| data | split | PGD l2 (random) | PGD l2 (random-other) | Original |" in out
    assert "runs per column: 2 (seeds 0, 1)" in out
    code, out, err = lfp("report", *chain["evals"], "--out", tmp_path / "t.csv", capsys=capsys)
    assert code == 0 and "t.csv" in out
    rows = list(csv.DictReader(io.StringIO((tmp_path / "t.csv").read_text())))
    std_test = next(r for r in rows if r["column"] == "Original" and r["split"] == "test" and r["metric"] == "accuracy")
    # by hand, from the reports themselves
    accs = [json.loads((chain["dir"] / f"e_std{s}.json").read_text())["splits"]["test"]["accuracy"] for s in (0, 1)]
    assert float(std_test["mean"]) == pytest.approx(statistics.mean(accs))
    assert float(std_test["std"]) == pytest.approx(statistics.stdev(accs))
    assert std_test["n"] == "2" and std_test["seeds"] == "0 1"
    # an existing output needs --force
    code, _, err = lfp("report", *chain["evals"], "--out", tmp_path / "t.csv", capsys=capsys)
    assert code == 2 and "--force" in err
    code, _, _ = lfp("report", *chain["evals"], "--out", tmp_path / "t.csv", "--force", capsys=capsys)
    assert code == 0
    for fmt, name in (("tex", "t.tex"), ("md", "t.md"), ("json", "t.json")):
        code, _, _ = lfp("report", *chain["evals"], "--format", fmt, "--out", tmp_path / name, capsys=capsys)
        assert code == 0 and (tmp_path / name).stat().st_size > 0
    assert json.loads((tmp_path / "t.json").read_text())["kind"] == "lfp-report"


def test_json_where_long_and_metrics(chain, capsys):
    code, out, _ = lfp(
        "report",
        *chain["evals"],
        "--json",
        "--where",
        "targets=random",
        "--split",
        "test",
        "--metric",
        "accuracy",
        capsys=capsys,
    )
    assert code == 0
    obj = json.loads(out)
    assert [c["label"] for c in obj["columns"]] == ["PGD l2", "Original"] and "text" not in obj
    assert len(obj["left_out_by_where"]) == 2
    code, out, _ = lfp(
        "report", *chain["evals"], "--layout", "long", "--split", "train,test", "--scale", "fraction", capsys=capsys
    )
    assert code == 0 and "| configuration | runs | train accuracy | test accuracy |" in out


def test_curves(chain, capsys, tmp_path):
    code, out, err = lfp(
        "report", "--curves", *chain["models"], "--out", tmp_path / "c.png", "--title", "digits", capsys=capsys
    )
    assert code == 0 and err == ""
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "3 panels" in out and "Original" in out
    code, out, _ = lfp("report", "--curves", chain["models"][0], "--out", tmp_path / "c.svg", "--json", capsys=capsys)
    assert code == 0 and json.loads(out)["panels"][0]["epochs"] == 2


def test_baseline_pairs_each_column_with_original_by_seed(chain, capsys, tmp_path):
    """--baseline Original: every other column's mean difference (column minus Original, paired by seed) and its
    95% Student-t interval, in csv and json, checked by hand against scipy's t quantile."""
    from scipy import stats

    code, out, err = lfp(
        "report", *chain["evals"], "--baseline", "Original", "--out", tmp_path / "b.csv", capsys=capsys
    )
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO((tmp_path / "b.csv").read_text())))
    row = next(
        r for r in rows if r["column"] == "PGD l2 (random)" and r["split"] == "test" and r["metric"] == "accuracy"
    )
    reports = sorted(chain["dir"].glob("x*.json"))
    by_seed = {}
    for p in reports:
        rep = json.loads(p.read_text())
        if rep["provenance"]["targets"] == "random":
            by_seed[str(rep["provenance"]["seeds"]["retrain"])] = rep["splits"]["test"]["accuracy"]
    base = {
        str(s): json.loads((chain["dir"] / f"e_std{s}.json").read_text())["splits"]["test"]["accuracy"] for s in (0, 1)
    }
    diffs = [by_seed[s] - base[s] for s in ("0", "1")]
    mean, sd = statistics.mean(diffs), statistics.stdev(diffs)
    half = stats.t.ppf(0.975, 1) * sd / 2**0.5
    assert row["baseline"] == "Original" and row["diff_n"] == "2" and row["diff_seeds"] == "0 1"
    assert float(row["diff_mean"]) == pytest.approx(mean, abs=1e-12)
    assert float(row["diff_ci_low"]) == pytest.approx(mean - half, rel=1e-9, abs=1e-12)
    assert float(row["diff_ci_high"]) == pytest.approx(mean + half, rel=1e-9, abs=1e-12)
    # the markdown shows a second table per metric, the baseline column left out of it
    code, out, _ = lfp("report", *chain["evals"], "--baseline", "original", capsys=capsys)
    assert code == 0 and "difference from Original, paired by seed" in out
    diff_table = out.split("difference from Original")[1].split("\n\n")[1]
    assert "| data | split | PGD l2 (random) | PGD l2 (random-other) |" in diff_table
    assert f"{100 * mean:+.2f} [{100 * (mean - half):+.2f}, {100 * (mean + half):+.2f}]" in out
    # json carries the same, per cell
    code, out, _ = lfp("report", *chain["evals"], "--baseline", "Original", "--format", "json", capsys=capsys)
    rep = json.loads(out)
    assert rep["baseline"]["label"] == "Original"
    cells = [c for r in rep["rows"] for c in r["cells"].values() if "vs_baseline" in c]
    assert cells and all(c["vs_baseline"]["n"] == 2 for c in cells)
    # a column that does not exist is one line naming the columns there are
    code, _, err = lfp("report", *chain["evals"], "--baseline", "ERM", capsys=capsys)
    assert code == 2 and "Original" in err and "PGD l2 (random)" in err and len(err.strip().splitlines()) == 1


def test_group_balanced_training_is_its_own_column(tmp_path, capsys):
    """A standard model trained with --balance groups is the column Group-balanced, beside Original (not a second
    Original told apart by a setting), so --baseline Original stays one column; a report written before the
    distinction (its summary says original) is named the same way."""
    data = "spurious-scenes:train_size=48,val_per_group=4,test_per_group=4"
    evals = []
    for s in (0, 1):
        for kind, extra in (("std", []), ("bal", ["--balance", "groups"])):
            m, e = tmp_path / f"{kind}{s}.pt", tmp_path / f"e_{kind}{s}.json"
            args = ["--arch-arg", "width=4", "--arch-arg", "hidden=8", "--epochs", "1", "--seed", s, *extra]
            assert lfp("train", "--data", data, *args, "--out", m, "-q", capsys=capsys)[0] == 0
            assert lfp("eval", "--in", m, "--out", e, "-q", capsys=capsys)[0] == 0
            evals.append(e)
    code, out, err = lfp("report", *evals, "--baseline", "Original", "--json", capsys=capsys)
    assert code == 0, err
    rep = json.loads(out)
    assert [c["label"] for c in rep["columns"]] == ["Original", "Group-balanced"]
    cid = rep["columns"][1]["id"]
    cells = [r["cells"][cid] for r in rep["rows"] if cid in r["cells"]]
    assert cells and all(c["vs_baseline"]["n"] == 2 for c in cells)
    code, out, _ = lfp("report", *evals, "--where", "method=group-balanced", "--json", capsys=capsys)
    assert code == 0 and [c["label"] for c in json.loads(out)["columns"]] == ["Group-balanced"]

    from lfpcli.artifacts.jsonfile import save_json_artifact

    old = tmp_path / "old.json"
    rep = json.loads((tmp_path / "e_bal1.json").read_text())
    assert rep["provenance"]["method"] == "group-balanced"
    rep["provenance"]["method"] = "original"
    save_json_artifact(old, rep, {})  # as an earlier lfp wrote it: a valid report whose summary says original
    code, out, err = lfp("report", evals[0], evals[1], evals[2], old, "--json", capsys=capsys)
    assert code == 0, err
    assert [c["label"] for c in json.loads(out)["columns"]] == ["Original", "Group-balanced"]
