"""Bad input to ``lfp report``: one ``error:`` line, exit 2, nothing on stdout, the folders unchanged (no table, no
figure, no temporary file). The contract and its helpers come from ``test_errors.py``."""

# ruff: noqa: F811  (pytest fixtures imported from test_errors and used by name)
from __future__ import annotations

import json

import pytest
from test_errors import (  # noqa: F401  (fixtures used by name)
    BAD_FILES,
    _run_many,
    _unprivileged_prefix,
    err_art,
    err_assert_one_line,
    err_env,
    err_expect_failure,
    err_snapshot,
    err_ws,
)


@pytest.fixture(scope="module")
def rep(err_art, tmp_path_factory):
    """Besides the shared artifacts (an mlp on digits with its eval report, a perturbed set, a dataset file): a second
    seed's eval report on digits, an eval report on another data set (spurious-digits, 16 px), one on a perturbed set,
    and an old-style report (no provenance summary) whose model is gone."""
    from lfpcli.artifacts import load_json_artifact, save_json_artifact
    from lfpcli.commands import evaluate, train

    d = tmp_path_factory.mktemp("report-err")
    m1, other = d / "m1.pt", d / "other.pt"
    train(m1, data="digits", arch="mlp", epochs=1, seed=1, device="cpu")
    evaluate(model=m1, device="cpu", splits=("test",), out=d / "seed1.json")
    train(other, data="spurious-digits:size=16,train_copies=1", arch="mlp", epochs=1, seed=0, device="cpu")
    evaluate(model=other, device="cpu", splits=("test",), out=d / "other.json")
    evaluate(model=err_art.model, data=str(err_art.pgd), device="cpu", out=d / "on_pgd.json")
    gone = d / "gone.pt"
    train(gone, data="digits", arch="mlp", epochs=1, seed=2, device="cpu")
    evaluate(model=gone, device="cpu", splits=("test",), out=d / "new.json")
    obj = load_json_artifact(d / "new.json")
    body = {k: obj.pop(k) for k in ("model", "trained_on", "data", "splits", "group_names")}
    obj.pop("provenance")
    save_json_artifact(d / "old.json", obj, body)
    gone.unlink()
    return {
        "report": err_art.report,
        "seed1": d / "seed1.json",
        "other": d / "other.json",
        "on_pgd": d / "on_pgd.json",
        "old": d / "old.json",
        "model": err_art.model,
        "pgd": err_art.pgd,
        "dataset": err_art.dataset,
    }


@pytest.mark.parametrize("bad", list(BAD_FILES))
def test_bad_report_file(err_ws, rep, capsys, bad):
    write, words = BAD_FILES[bad]
    path = err_ws.inp / "thing.json"
    write(err_ws, path)
    err_expect_failure(
        err_ws, ["report", rep["report"], path, "--out", err_ws.out / "t.md"], capsys, expect=(path.name, *words)
    )
    assert not (err_ws.root / "SENTINEL").exists(), "unpickling ran code"


@pytest.mark.parametrize("bad", list(BAD_FILES))
def test_bad_curves_file(err_ws, rep, capsys, bad):
    write, words = BAD_FILES[bad]
    path = err_ws.inp / "thing.pt"
    write(err_ws, path)
    err_expect_failure(
        err_ws,
        ["report", "--curves", rep["model"], path, "--out", err_ws.out / "c.png"],
        capsys,
        expect=(path.name, *words),
    )
    assert not (err_ws.root / "SENTINEL").exists(), "unpickling ran code"


def _truncated(ws, s):
    p = ws.inp / "half.json"
    text = s["report"].read_text()
    p.write_text(text[: len(text) // 2])
    return ["report", p, "--out", ws.out / "t.md"]


def _damaged(ws, s):
    p = ws.inp / "edited.json"
    obj = json.loads(s["report"].read_text())
    obj["splits"]["test"]["accuracy"] = 0.99  # a figure changed by hand: the checksum no longer matches
    p.write_text(json.dumps(obj))
    return ["report", p, "--out", ws.out / "t.md"]


def _bad_summary(ws, s):
    from lfpcli.artifacts import load_json_artifact, save_json_artifact

    obj = load_json_artifact(s["report"])
    obj["provenance"] = {"version": 1, "method": 3}
    p = ws.inp / "odd.json"
    save_json_artifact(p, obj, {})
    return ["report", p, "--out", ws.out / "t.md"]


def _bad_figure(ws, s):
    from lfpcli.artifacts import load_json_artifact, save_json_artifact

    obj = load_json_artifact(s["report"])
    obj["splits"]["test"]["accuracy"] = 7.5
    p = ws.inp / "figure.json"
    save_json_artifact(p, obj, {})
    return ["report", p, "--out", ws.out / "t.md"]


def _out(ws, s, name, *extra):
    return ["report", s["report"], s["seed1"], "--out", ws.out / name if "/" not in name else ws.root / name, *extra]


CASES = {
    # files that are not (clean) eval reports
    "checkpoint as a report": (
        lambda ws, s: ["report", s["report"], s["model"]],
        ("model.pt", "checkpoint", "lfp eval"),
    ),
    "perturbed set as a report": (lambda ws, s: ["report", s["pgd"]], ("pgd.h5", "perturbed-set")),
    "dataset as a report": (lambda ws, s: ["report", s["dataset"]], ("digits.h5", "dataset")),
    "eval report on a perturbed set": (lambda ws, s: ["report", s["on_pgd"]], ("on_pgd.json", "perturbed set")),
    "truncated report": (_truncated, ("half.json", "not valid JSON")),
    "damaged report": (_damaged, ("edited.json", "checksum")),
    "malformed provenance summary": (_bad_summary, ("odd.json", "provenance")),
    "accuracy out of range": (_bad_figure, ("figure.json", "accuracy")),
    "old report whose model is gone": (lambda ws, s: ["report", s["old"]], ("old.json", "gone.pt", "is gone")),
    "the same report twice": (lambda ws, s: ["report", s["report"], s["report"]], ("eval.json", "once")),
    # grouping
    "mixed data sets": (
        lambda ws, s: ["report", s["report"], s["other"], "--by", "method"],
        ("mixed data sets", "--by"),
    ),
    "--by unknown key": (lambda ws, s: ["report", s["report"], "--by", "method,colour"], ("--by", "colour")),
    "--by empty": (lambda ws, s: ["report", s["report"], "--by", ","], ("--by",)),
    "--by twice": (lambda ws, s: ["report", s["report"], "--by", "method,method"], ("--by", "twice")),
    "--where malformed": (lambda ws, s: ["report", s["report"], "--where", "targets"], ("--where", "KEY=VALUE")),
    "--where unknown key": (lambda ws, s: ["report", s["report"], "--where", "colour=red"], ("--where", "colour")),
    "--where matching nothing": (
        lambda ws, s: ["report", s["report"], "--where", "method=pgd-l2"],
        ("--where", "no run"),
    ),
    "--metric unknown": (lambda ws, s: ["report", s["report"], "--metric", "f1"], ("--metric", "f1")),
    "--split absent": (lambda ws, s: ["report", s["report"], "--split", "holdout"], ("--split", "holdout")),
    "--format unknown": (lambda ws, s: ["report", s["report"], "--format", "html"], ("--format", "html")),
    "--layout unknown": (lambda ws, s: ["report", s["report"], "--layout", "wide"], ("--layout", "wide")),
    "--scale unknown": (lambda ws, s: ["report", s["report"], "--scale", "permille"], ("--scale", "permille")),
    "--title without --curves": (lambda ws, s: ["report", s["report"], "--title", "x"], ("--title", "--curves")),
    # outputs
    "--out in a missing folder": (lambda ws, s: _out(ws, s, "nowhere/t.md"), ("t.md", "does not exist")),
    "--out is a folder": (lambda ws, s: ["report", s["report"], "--out", ws.out, "--format", "md"], ("folder",)),
    "--out extension unknown": (lambda ws, s: _out(ws, s, "t.html"), ("t.html", "--format")),
    "--out extension against --format": (lambda ws, s: _out(ws, s, "t.md", "--format", "csv"), ("t.md", "csv")),
    # curves
    "--curves with an eval report": (
        lambda ws, s: ["report", "--curves", s["report"], "--out", ws.out / "c.png"],
        ("eval.json", "checkpoint"),
    ),
    "--curves with a perturbed set": (
        lambda ws, s: ["report", "--curves", s["pgd"], "--out", ws.out / "c.png"],
        ("pgd.h5", "checkpoint"),
    ),
    "--curves without --out": (lambda ws, s: ["report", "--curves", s["model"]], ("--curves", "--out")),
    "--curves to a .md": (lambda ws, s: ["report", "--curves", s["model"], "--out", ws.out / "c.md"], ("c.md", ".png")),
    "--curves with --by": (
        lambda ws, s: ["report", "--curves", s["model"], "--by", "method", "--out", ws.out / "c.png"],
        ("--by",),
    ),
    "--curves the same model twice": (
        lambda ws, s: ["report", "--curves", s["model"], s["model"], "--out", ws.out / "c.png"],
        ("same model",),
    ),
    "no files": (lambda ws, s: ["report", "--out", ws.out / "t.md"], ("FILE",)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_report_errors(err_ws, rep, capsys, case):
    argv_of, words = CASES[case]
    err_expect_failure(err_ws, argv_of(err_ws, rep), capsys, expect=words)


def test_existing_output_is_kept(err_ws, rep, capsys):
    out = err_ws.out / "t.md"
    out.write_text("mine\n")
    err_expect_failure(err_ws, ["report", rep["report"], "--out", out], capsys, expect=("t.md", "--force"))
    assert out.read_text() == "mine\n"
    fig = err_ws.out / "c.png"
    fig.write_text("mine\n")
    err_expect_failure(err_ws, ["report", "--curves", rep["model"], "--out", fig], capsys, expect=("c.png", "--force"))
    assert fig.read_text() == "mine\n"


def test_read_only_output_folder(err_ws, rep):
    """chmod 555 output folder (as root: without the capabilities that ignore permissions), with the
    up-front check as is and with os.access fooled into saying yes: one line naming the output, nothing written."""
    ro = err_ws.root / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        pre = _unprivileged_prefix(ro)
        cmds = [
            (argv, fool)
            for fool in (False, True)
            for argv in (
                ["report", str(rep["report"]), "--out", str(ro / "t.md")],
                ["report", "--curves", str(rep["model"]), "--out", str(ro / "c.png")],
            )
        ]
        before = err_snapshot(err_ws.root)
        for (argv, fool), (code, out, err) in zip(cmds, _run_many(cmds, cwd=err_ws.root, pre=pre)):
            name = argv[-1].rsplit("/", 1)[-1]
            err_assert_one_line(
                code, out, err, expect=(name, "permission" if fool else "writ"), argv=argv, hide=err_ws.root
            )
        assert err_snapshot(err_ws.root) == before
    finally:
        ro.chmod(0o755)
