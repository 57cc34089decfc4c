"""``examples/five_methods.sh`` and ``examples/pcfe_ablations.sh`` with a stand-in for ``lfp`` (``LFP=stub``) that
logs each command and writes its ``--out``: every stage runs, each stage reads what the one before wrote, seeds
and target rules go where they should, a rerun skips finished stages, and bad options stop with exit 2. The real
commands these scripts chain are tested on their own; this holds the scripts' plumbing in well under a second.
With ``--data spurious-scenes`` the stand-in also answers ``lfp saliency --json`` and ``lfp report --format json``
(one column per model file), and one slow test runs both scripts with the real lfp on a tiny testbed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STUB = """#!/usr/bin/env bash
echo "$*" >> "$STUB_LOG"
echo "${OMP_NUM_THREADS:-unset}" >> "$STUB_LOG.threads"
if [ -n "${STUB_FAIL:-}" ] && [[ "$*" == *"$STUB_FAIL"* ]]; then echo "stub: failing on purpose" >&2; exit 3; fi
if [ "$1" = saliency ] && [[ " $* " == *" --json "* ]]; then
  # one model's summary: shares 30% (group a) and 50% (group b) of the maps, masks 20% of the images
  echo '{"n": 512, "mask_area": {"mean": 0.2, "groups": {"a": 0.1, "b": 0.3}},'
  echo ' "models": [{"path": "m.pt", "share": 0.4, "groups": {"a": {"share": 0.3}, "b": {"share": 0.5}}}]}'
fi
args=("$@")
out=""
while [ $# -gt 0 ]; do if [ "$1" = --out ]; then out="$2"; fi; shift; done
if [ "${args[0]}" = report ] && [[ " ${args[*]} " == *" --format json "* ]]; then
  # a column per eval report's name (eval_std.json of every seed together), its seed from the folder sS
  python3 - "$out" "${args[@]:1}" <<'PY'
import json, re, sys
out, cols = sys.argv[1], {}
for a in sys.argv[2:]:
    if a.endswith(".json") and a != out:
        cols.setdefault(a.rsplit("/", 1)[1], []).append((re.search(r"/s([0-9]+)/", a).group(1), a))
columns = [{"id": f"c{i}", "label": f"column {name}"} for i, name in enumerate(cols)]
cells = {f"c{i}": {"seeds": [s for s, _ in v], "reports": [p for _, p in v]} for i, v in enumerate(cols.values())}
json.dump({"columns": columns, "rows": [{"cells": cells}]}, open(out, "w"))
PY
elif [ -n "$out" ]; then echo stub > "$out"; fi
"""


def _run(script, tmp_path, *args, env_extra=None, timeout=60):
    stub = tmp_path / "lfp-stub"
    stub.write_text(STUB)
    stub.chmod(0o755)
    log = tmp_path / "calls.log"
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env.update({"LFP": str(stub), "STUB_LOG": str(log), **(env_extra or {})})
    p = subprocess.run(
        ["bash", str(ROOT / "examples" / script), *map(str, args)],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return p, calls


def test_five_methods_chains_every_stage(tmp_path):
    out = tmp_path / "fm"
    args = ("--quick", "--seeds", "1", "--methods", "pgd-l2,pcfe-l0", "--out", out)
    p, calls = _run("five_methods.sh", tmp_path, *args)
    assert p.returncode == 0, p.stderr
    trains = [c for c in calls if c.startswith("train ")]
    assert len(trains) == 1 and "--data spurious-digits:train_copies=1" in trains[0]
    assert "--seed 1" in trains[0] and f"{out}/s1/std.pt" in trains[0]
    perturbs = [c for c in calls if c.startswith("perturb ")]
    assert len(perturbs) == 2 * 2  # target rules x methods
    assert f"perturb --method pcfe-l0 --targets random-other --in {out}/s1/std.pt --seed 1" in "\n".join(perturbs)
    assert f"retrain --in {out}/s1/random-other/pgd-l2.h5 --seed 1 --out {out}/s1/random-other/pgd-l2.pt" in "\n".join(
        calls
    )
    evals = [c for c in calls if c.startswith("eval ")]
    assert len(evals) == 1 + 4
    reports = [c for c in calls if c.startswith("report ")]
    tables = next(c for c in reports if c.endswith(f"--out {out}/tables.md --force"))
    assert tables.count(".json") == 5 and f"{out}/s1/eval_std.json" in tables
    assert any("--where targets=random-other" in c for c in reports)
    assert any(c.startswith("report --curves") and "curves_random.png" in c for c in reports)
    assert (out / "times.tsv").read_text().count("\n") == len(calls) - len(reports)
    # spurious-digits: none of the testbed's stages (pretrained start, balanced reference, saliency, baseline)
    text = "\n".join(calls)
    assert not any(w in text for w in ("--weights", "--balance", "--init", "saliency", "--baseline", "--format json"))
    # a rerun skips what exists and only remakes the tables
    p, calls2 = _run("five_methods.sh", tmp_path, *args)
    assert p.returncode == 0 and all(c.startswith("report ") for c in calls2[len(calls) :])
    # --limit: a smaller experiment beside the full one, on the same standard model
    p, calls3 = _run("five_methods.sh", tmp_path, *args, "--limit", "50", "--targets", "random")
    new = "\n".join(calls3[len(calls2) :])
    assert p.returncode == 0 and not any(c.startswith("train ") for c in calls3[len(calls2) :])
    assert f"--out {out}/s1/random-limit50/pcfe-l0.h5 --resume --quiet --limit 50" in new
    assert f"eval --in {out}/s1/random-limit50/pgd-l2.pt" in new and (out / "tables_random-limit50.md").exists()


def _serial_then_jobs(script, tmp_path, *args):
    """The script run serially, then with --jobs 2 (one thread each) in another folder: the jobs run's process,
    its calls, the serial run's work (every call but the tables) as the jobs run would name it, and its folder."""
    serial_dir, jobs_dir = tmp_path / "serial", tmp_path / "jobs"
    serial_dir.mkdir()
    jobs_dir.mkdir()
    p, serial = _run(script, serial_dir, *args, "--out", serial_dir / "fm")
    assert p.returncode == 0, p.stderr
    out = jobs_dir / "fm"
    p, calls = _run(script, jobs_dir, *args, "--out", out, "--jobs", "2", env_extra={"OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr
    expected = [c.replace(str(serial_dir), str(jobs_dir)) for c in serial if not c.startswith("report ")]
    return p, calls, expected, out


def test_five_methods_jobs_runs_seeds_side_by_side_then_one_table(tmp_path):
    """--jobs 2 runs the stages a serial run runs, each once, one process per seed with the threads it was
    given, then the tables once over every seed."""
    args = ("--quick", "--seeds", "0,1,2", "--methods", "pgd-l2,pcfe-l0", "--targets", "random")
    p, calls, expected, out = _serial_then_jobs("five_methods.sh", tmp_path, *args)
    jobs_dir = tmp_path / "jobs"
    work = [c for c in calls if not c.startswith("report ")]
    assert sorted(work) == sorted(expected)
    threads = (jobs_dir / "calls.log.threads").read_text().split()
    assert set(threads[: len(work)]) == {"1"}
    reports = [c for c in calls if c.startswith("report ")]
    tables = [c for c in reports if c.endswith(f"--out {out}/tables.md --force")]
    assert len(tables) == 1 and tables[0].count(".json") == 3 * (1 + 2)  # once, over every seed
    assert calls[: len(work)] == work  # the tables come after every seed's stages
    assert {f"seed{s}.log" for s in range(3)} <= {f.name for f in (out / "logs").iterdir()}
    # then one job per (method, rule, seed) arm, the longest method first, each with its own log
    started = [ln.split(":")[0] for ln in p.stdout.splitlines() if ln.endswith("thread(s))")]
    arms = [f"seed {s}, random, {m}" for m in ("pcfe-l0", "pgd-l2") for s in range(3)]
    assert started == [f"seed {s}" for s in range(3)] + arms
    assert {f"seed{s}-random-{m}.log" for s in range(3) for m in ("pcfe-l0", "pgd-l2")} <= {
        f.name for f in (out / "logs").iterdir()
    }
    assert (out / "times.tsv").read_text().count("\n") == len(work)
    # without OMP_NUM_THREADS each seed gets its share of the cores (at least one)
    p, _ = _run("five_methods.sh", jobs_dir, *args, "--out", jobs_dir / "fm2", "--jobs", "3")
    n = max(1, len(os.sched_getaffinity(0)) // 3)  # what nproc counts
    assert p.returncode == 0 and f"{n} thread(s)" in p.stdout


def test_five_methods_jobs_reports_a_failed_seed(tmp_path):
    p, calls = _run(
        "five_methods.sh",
        tmp_path,
        "--quick",
        "--seeds",
        "0,1",
        "--methods",
        "pgd-l2",
        "--targets",
        "random",
        "--out",
        tmp_path / "fm",
        "--jobs",
        "2",
        env_extra={"STUB_FAIL": "--seed 1 "},
    )
    assert p.returncode == 1 and "seed 1 failed" in p.stderr and "seed 0 failed" not in p.stderr
    assert not any(c.startswith("report ") for c in calls)
    # the other seed's arms still ran; none of the failed seed's did
    assert any(c.startswith("eval ") and "/s0/random/" in c for c in calls)
    assert not any(c.startswith("perturb ") and "--seed 1 " in c for c in calls)


def test_five_methods_jobs_runs_every_other_arm_when_one_fails(tmp_path):
    out = tmp_path / "fm"
    args = ("--quick", "--seeds", "0,1", "--methods", "pgd-l2,pcfe-l0", "--targets", "random", "--jobs", "2")
    p, calls = _run("five_methods.sh", tmp_path, *args, "--out", out, env_extra={"STUB_FAIL": "--method pgd-l2 "})
    assert p.returncode == 1
    failed = sorted(ln for ln in p.stderr.splitlines() if "failed" in ln)
    assert failed == [f"seed {s}, random, pgd-l2 failed; see {out}/logs/seed{s}-random-pgd-l2.log" for s in (0, 1)]
    assert sum(c.startswith("eval ") and "pcfe-l0" in c for c in calls) == 2
    assert not any(c.startswith("report ") for c in calls)


def test_ablations_run_rows_in_order_on_the_default_arms(tmp_path):
    out = tmp_path / "fm"
    p, calls = _run(
        "pcfe_ablations.sh",
        tmp_path,
        "--quick",
        "--seeds",
        "0,1",
        "--rows",
        "no-density,gb-kde,select-wga",
        "--out",
        out,
    )
    assert p.returncode == 0, p.stderr
    text = "\n".join(calls)
    assert (
        f"perturb --method pcfe-l0 --targets random --in {out}/s0/std.pt --seed 0 --out {out}/s0/ablations/no-density.h5"
        in text
    )
    assert f"--density {out}/s1/ablations/density-gb-kde.h5" in text and "--fit-on group-balanced" in text
    assert f"retrain --in {out}/s1/random/pcfe-l0.h5 --seed 1 --out {out}/s1/ablations/pcfe-l0-select-wga.pt" in text
    assert "--select val-worst-group" in text and "--beta" not in text and "vae" not in text
    rows = [c.split("/ablations/")[1].split(".")[0] for c in calls if c.startswith("perturb ") and "/ablations/" in c]
    assert rows == ["no-density", "no-density", "gb-kde", "gb-kde"]  # a row for every seed before the next row
    assert any(c.startswith("report ") and "--layout long" in c for c in calls)
    assert not any(w in text for w in ("--weights", "--init", "saliency", "--baseline", "pretrain"))
    # --limit: the rows on the first N images, against the default arms of five_methods.sh --limit N
    p, calls = _run(
        "pcfe_ablations.sh", tmp_path, "--quick", "--seeds", "0", "--rows", "select-wga", "--limit", "40", "--out", out
    )
    text = "\n".join(calls)
    assert p.returncode == 0 and f"--out {out}/s0/random-limit40/pcfe-l0.h5 --resume --quiet --limit 40" in text
    assert (
        f"retrain --in {out}/s0/random-limit40/pcfe-l0.h5 --seed 0 --out {out}/s0/ablations-limit40/pcfe-l0-select-wga.pt"
        in text
    )


def test_ablations_jobs_run_the_serial_stages_once_then_one_table(tmp_path):
    """--jobs 2: every stage of the serial run, once, the seeds' models before any row, each (row, seed) its own
    process; a failed (row, seed) is named and the others still run."""
    args = ("--quick", "--seeds", "0,1", "--rows", "gb-kde,epochs30")
    p, calls, expected, out = _serial_then_jobs("pcfe_ablations.sh", tmp_path, *args)
    work = [c for c in calls if not c.startswith("report ")]
    assert sorted(work) == sorted(expected)
    assert calls[: len(work)] == work and sum(c.endswith(f"--out {out}/ablations.md --force") for c in calls) == 1
    started = [ln.split(":")[0] for ln in p.stdout.splitlines() if ln.endswith("thread(s))")]
    assert started == ["seed 0", "seed 1", "seed 0, gb-kde", "seed 1, gb-kde", "seed 0, epochs30", "seed 1, epochs30"]
    in_rows = ["/ablations/" in c for c in work]
    assert in_rows == sorted(in_rows) and in_rows.count(False) == 2 * (2 + 2 * 3)  # models first, then the rows
    p, calls = _run(
        "pcfe_ablations.sh",
        tmp_path,
        *args,
        "--out",
        tmp_path / "f2",
        "--jobs",
        "2",
        env_extra={"STUB_FAIL": "--fit-on"},
    )
    assert p.returncode == 1 and sorted(ln for ln in p.stderr.splitlines() if "failed" in ln) == [
        f"seed {s}, gb-kde failed; see {tmp_path}/f2/logs/ablations-seed{s}-gb-kde.log" for s in (0, 1)
    ]
    assert sum("std-epochs30.pt" in c and c.startswith("train ") for c in calls) == 2
    assert not any(c.startswith("report ") for c in calls)


@pytest.mark.parametrize(
    "script,args",
    [
        ("pcfe_ablations.sh", ["--jobs", "x"]),
        ("five_methods.sh", ["--bogus"]),
        ("five_methods.sh", ["--limit", "x"]),
        ("five_methods.sh", ["--jobs", "0"]),
        ("pcfe_ablations.sh", ["--rows", "colour"]),
        ("five_methods.sh", ["--data", "cifar10"]),
        ("five_methods.sh", ["--data", "spurious-scenes:train_size=8", "--quick"]),
        ("pcfe_ablations.sh", ["--data", "waterbirds:root=x"]),
    ],
)
def test_bad_options_stop_with_exit_2(tmp_path, script, args):
    p, calls = _run(script, tmp_path, *args)
    assert p.returncode == 2 and calls == [] and len(p.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.glob("five-methods*"))


# ------------------------------------------------------------------------------------------------ spurious-scenes


def test_five_methods_on_scenes_pretrains_once_then_every_model_starts_from_it(tmp_path):
    """--data spurious-scenes: the pretrained network is made once (before the seeds, under --jobs), every standard
    and balanced model starts from it, every retrained model from the same file; every model is explained on the
    test split; the tables pair each column with the standard model's and the attribution table has every column."""
    out = tmp_path / "fm"
    args = ("--data", "spurious-scenes", "--seeds", "0,1", "--methods", "pgd-l2,pcfe-l0", "--targets", "random")
    p, calls = _run("five_methods.sh", tmp_path, *args, "--out", out, "--jobs", "2", env_extra={"OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr
    pre = f"train --data scenes-pretrain --seed 0 --out {out}/pretrain.pt"
    assert calls[0].startswith(pre) and sum("scenes-pretrain" in c for c in calls) == 1
    trains = [c for c in calls if c.startswith("train ")][1:]
    assert sorted(trains) == sorted(
        f"train --data spurious-scenes --weights {out}/pretrain.pt{extra} --seed {s} --out {out}/s{s}/{name}.pt "
        "--resume --quiet"
        for s in (0, 1)
        for name, extra in (("std", ""), ("balanced", " --balance groups"))
    )
    retrains = [c for c in calls if c.startswith("retrain ")]
    assert len(retrains) == 2 * 2 and all(" --init pretrained " in c for c in retrains)
    evals = [c for c in calls if c.startswith("eval ")]
    assert {f"eval --in {out}/s{s}/balanced.pt --out {out}/s{s}/eval_balanced.json --quiet" for s in (0, 1)} <= set(
        evals
    )
    saliency = [c for c in calls if c.startswith("saliency ")]
    assert len(saliency) == 2 * (2 + 2)  # seeds x (standard, balanced, two arms)
    assert (
        f"saliency --in {out}/s1/random/pcfe-l0.pt --data spurious-scenes --split test --n 512 --seed 1"
        in "\n".join(saliency)
    )
    assert (out / "s1" / "random" / "saliency_pcfe-l0.json").exists() and (
        out / "s0" / "saliency_balanced.json"
    ).exists()
    # the tables: every one pairs its columns with the standard model's, found by its eval reports
    tables = [c for c in calls if c.startswith("report ") and "--curves" not in c and "--format json" not in c]
    assert len(tables) == 3 and all("--baseline column eval_std.json" in c for c in tables)
    assert all(f"{out}/s1/eval_balanced.json" in c for c in tables)
    curves = next(c for c in calls if c.startswith("report --curves"))
    assert f"{out}/s0/balanced.pt" in curves
    table = (out / "attribution_random.md").read_text()
    for col in ("eval_std.json", "eval_balanced.json", "eval_pgd-l2.json", "eval_pcfe-l0.json"):
        assert f"column {col}" in table
    # the stand-in's maps: 40% on the object overall, 30% in the worst group (a), chance 20% and 10%
    assert "| share on the object, all images | 40.00 (0.00) |" in table
    assert "| chance (mask area), that group | 10.00 (0.00) |" in table
    # a rerun skips every stage and only remakes the tables
    p, again = _run("five_methods.sh", tmp_path, *args, "--out", out)
    assert p.returncode == 0 and all(c.startswith("report ") for c in again[len(calls) :])


def test_five_methods_on_scenes_quick_and_a_smaller_pretraining(tmp_path):
    p, calls = _run(
        "five_methods.sh",
        tmp_path,
        "--data",
        "spurious-scenes",
        "--quick",
        "--seeds",
        "3",
        "--methods",
        "pgd-l2",
        "--targets",
        "random-other",
        env_extra={"PRETRAIN_DATA": "scenes-pretrain:classes=6"},
    )
    assert p.returncode == 0, p.stderr
    out = "five-methods-scenes-quick"
    assert calls[0].startswith(f"train --data scenes-pretrain:classes=6 --seed 0 --out {out}/pretrain.pt")
    assert calls[1].startswith(f"train --data spurious-scenes:train_size=1200 --weights {out}/pretrain.pt --seed 3")
    assert (tmp_path / out / "attribution_random-other.md").exists()
    assert (tmp_path / out / "tables_random-other.md").exists()


def test_ablations_on_scenes_start_from_the_pretrained_network(tmp_path):
    out = tmp_path / "fm"
    args = "--data spurious-scenes --seeds 0 --rows no-density,epochs30 --out".split()
    p, calls = _run("pcfe_ablations.sh", tmp_path, *args, out)
    assert p.returncode == 0, p.stderr
    text = "\n".join(calls)
    assert calls[0].startswith(f"train --data scenes-pretrain --seed 0 --out {out}/pretrain.pt")
    assert (
        f"train --data spurious-scenes --weights {out}/pretrain.pt --seed 0 --out {out}/s0/ablations/std-epochs30.pt "
        "--resume --quiet --epochs 30" in text
    )
    retrains = [c for c in calls if c.startswith("retrain ")]
    assert len(retrains) == 2 + 1 + 2 and all(" --init pretrained " in c for c in retrains)
    explained = {c.split(" --in ")[1].split()[0] for c in calls if c.startswith("saliency ")}
    trained = {c.split(" --out ")[1].split()[0] for c in calls if c.startswith(("train ", "retrain "))}
    assert explained == trained - {f"{out}/pretrain.pt"}  # every model but the pretrained one
    tables = [c for c in calls if c.startswith("report ") and "--format json" not in c]
    assert len(tables) == 2 and all("--layout long" in c and "--baseline column eval_std.json" in c for c in tables)
    table = (out / "attribution_ablations.md").read_text()
    assert "column eval_no-density.json" in table and "column eval_std-epochs30.json" in table
    assert "Left out" not in table


def _tables(*args):
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / "study_tables.py"), *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_attribution_table_averages_over_seeds_and_takes_each_seeds_worst_group(tmp_path):
    report = {
        "columns": [{"id": "c0", "label": "PGD l2"}, {"id": "c1", "label": "Original [x=1]"}],
        "rows": [
            {
                "cells": {
                    "c0": {"seeds": ["0", "1"], "reports": ["s0/e_pgd.json", "s1/e_pgd.json"]},
                    "c1": {"seeds": ["0"], "reports": ["s0/e_std.json"]},
                }
            }
        ],
    }
    (tmp_path / "r.json").write_text(json.dumps(report))

    def summary(share, a, b):
        m = {"path": "m.pt", "share": share, "groups": {"a": {"share": a}, "b": {"share": b}}}
        return {"n": 4, "mask_area": {"mean": 0.25, "groups": {"a": 0.2, "b": 0.3}}, "models": [m]}

    for name, s in (("p0", summary(0.5, 0.4, 0.6)), ("p1", summary(0.7, 0.9, 0.5)), ("o0", summary(0.3, 0.1, 0.5))):
        (tmp_path / f"{name}.json").write_text(json.dumps(s))
    p = _tables("column", tmp_path / "r.json", "s0/e_std.json")
    assert p.returncode == 0 and p.stdout.strip() == "Original [x=1]"
    p = _tables("column", tmp_path / "r.json", "s2/e_std.json")
    assert p.returncode != 0 and "in no column" in p.stderr
    pairs = ["s0/e_pgd.json", tmp_path / "p0.json", "s1/e_pgd.json", tmp_path / "p1.json"]
    pairs += ["s0/e_std.json", tmp_path / "o0.json", "s1/e_std.json", tmp_path / "gone.json"]
    args = ["attribution", tmp_path / "r.json", "--out", tmp_path / "a.md"]
    for i in range(0, len(pairs), 2):
        args += ["--pair", pairs[i], pairs[i + 1]]
    p = _tables(*args)
    assert p.returncode == 0, p.stderr
    lines = (tmp_path / "a.md").read_text().splitlines()
    assert "| figure | PGD l2 | Original [x=1] |" in lines
    # PGD l2: shares 50 and 70 -> 60.00 (14.14); worst groups a (40, chance 20) and b (50, chance 30)
    assert "| share on the object, all images | 60.00 (14.14) | 30.00 |" in lines
    assert "| share on the object, worst group | 45.00 (7.07) | 10.00 |" in lines
    assert "| chance (mask area), that group | 25.00 (7.07) | 20.00 |" in lines
    assert "| worst group, by seed | 0: a, 1: b | 0: a |" in lines
    assert any(ln.startswith("Left out") and "gone.json" in ln for ln in lines)


@pytest.mark.slow
def test_both_scripts_on_a_tiny_testbed_with_the_real_lfp(tmp_path):
    """About two minutes: the scenes stages chain as lfp needs them (the balanced model is its own column, the
    tables pair with the standard model, the fresh models start from the shared pretrained file)."""
    from lfpcli.artifacts import load_checkpoint, sha256_file

    wrapper = tmp_path / "lfp"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m lfpcli "$@"\n')
    wrapper.chmod(0o755)
    env = {
        "LFP": str(wrapper),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "PRETRAIN_DATA": "scenes-pretrain:classes=6,per_class=8",
        "OMP_NUM_THREADS": "1",
    }
    out = tmp_path / "fm"
    data = ["--data", "spurious-scenes:train_size=48,val_per_group=4,test_per_group=4", "--limit", "8"]
    for script, extra in (
        ("five_methods.sh", ["--methods", "pgd-l2", "--targets", "random", "--jobs", "2"]),
        ("pcfe_ablations.sh", ["--rows", "no-density", "--jobs", "2"]),
    ):
        p, _ = _run(script, tmp_path, *data, "--seeds", "0,1", "--out", out, *extra, env_extra=env, timeout=600)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    stages = [ln.split("\t")[0] for ln in (out / "times.tsv").read_text().splitlines()]
    assert stages.count("pretrain") == 1
    tables = (out / "tables_random-limit8.md").read_text()
    # The balanced reference is its own column, and the differences pair with the standard model.
    assert "| PGD l2 | Original | Group-balanced |" in tables
    assert "difference from Original, paired by seed" in tables
    attribution = (out / "attribution_random-limit8.md").read_text()
    header = next(ln for ln in attribution.splitlines() if ln.startswith("| figure |"))
    assert sorted(c.strip() for c in header.strip("|").split("|")[1:]) == ["Group-balanced", "Original", "PGD l2"]
    assert "Left out" not in attribution
    ablations = (out / "ablations-limit8.md").read_text()
    assert "p-CFE l0 (none)" in ablations and "difference from Original, paired by seed" in ablations
    assert "p-CFE l0 (none)" in (out / "attribution_ablations-limit8.md").read_text()
    pre = sha256_file(out / "pretrain.pt")
    for model in ("s0/std.pt", "s1/balanced.pt", "s1/random-limit8/pgd-l2.pt", "s0/ablations-limit8/no-density.pt"):
        _, meta = load_checkpoint(out / model)
        assert meta["init"]["type"] == "pretrained" and meta["init"]["sha256"] == pre, model
