"""``examples/five_methods.sh`` and ``examples/pcfe_ablations.sh`` with a stand-in for ``lfp`` (``LFP=stub``) that
logs each command and writes its ``--out``: every stage runs, each stage reads what the one before wrote, seeds
and target rules go where they should, a rerun skips finished stages, and bad options stop with exit 2. The real
commands these scripts chain are tested on their own; this holds the scripts' plumbing in well under a second."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STUB = """#!/usr/bin/env bash
echo "$*" >> "$STUB_LOG"
echo "${OMP_NUM_THREADS:-unset}" >> "$STUB_LOG.threads"
if [ -n "${STUB_FAIL:-}" ] && [[ "$*" == *"$STUB_FAIL"* ]]; then echo "stub: failing on purpose" >&2; exit 3; fi
out=""
while [ $# -gt 0 ]; do if [ "$1" = --out ]; then out="$2"; fi; shift; done
if [ -n "$out" ]; then echo stub > "$out"; fi
"""


def _run(script, tmp_path, *args, env_extra=None):
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
        timeout=60,
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
    # a rerun skips what exists and only remakes the tables
    p, calls2 = _run("five_methods.sh", tmp_path, *args)
    assert p.returncode == 0 and all(c.startswith("report ") for c in calls2[len(calls) :])
    # --limit: a smaller experiment beside the full one, on the same standard model
    p, calls3 = _run("five_methods.sh", tmp_path, *args, "--limit", "50", "--targets", "random")
    new = "\n".join(calls3[len(calls2) :])
    assert p.returncode == 0 and not any(c.startswith("train ") for c in calls3[len(calls2) :])
    assert f"--out {out}/s1/random-limit50/pcfe-l0.h5 --resume --quiet --limit 50" in new
    assert f"eval --in {out}/s1/random-limit50/pgd-l2.pt" in new and (out / "tables_random-limit50.md").exists()


def test_five_methods_jobs_runs_seeds_side_by_side_then_one_table(tmp_path):
    """--jobs 2 runs the stages a serial run runs, each once, one process per seed with the threads it was
    given, then the tables once over every seed."""
    args = ("--quick", "--seeds", "0,1,2", "--methods", "pgd-l2,pcfe-l0", "--targets", "random")
    serial_dir, jobs_dir = tmp_path / "serial", tmp_path / "jobs"
    serial_dir.mkdir()
    jobs_dir.mkdir()
    p, serial = _run("five_methods.sh", serial_dir, *args, "--out", serial_dir / "fm")
    assert p.returncode == 0, p.stderr
    out = jobs_dir / "fm"
    p, calls = _run("five_methods.sh", jobs_dir, *args, "--out", out, "--jobs", "2", env_extra={"OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr
    work = [c for c in calls if not c.startswith("report ")]
    assert sorted(work) == sorted(
        c.replace(str(serial_dir), str(jobs_dir)) for c in serial if not c.startswith("report ")
    )
    threads = (jobs_dir / "calls.log.threads").read_text().split()
    assert set(threads[: len(work)]) == {"1"}
    reports = [c for c in calls if c.startswith("report ")]
    tables = [c for c in reports if c.endswith(f"--out {out}/tables.md --force")]
    assert len(tables) == 1 and tables[0].count(".json") == 3 * (1 + 2)  # once, over every seed
    assert calls[: len(work)] == work  # the tables come after every seed's stages
    assert {f"seed{s}.log" for s in range(3)} <= {f.name for f in (out / "logs").iterdir()}
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


@pytest.mark.parametrize(
    "script,args",
    [
        ("five_methods.sh", ["--bogus"]),
        ("five_methods.sh", ["--limit", "x"]),
        ("five_methods.sh", ["--jobs", "0"]),
        ("pcfe_ablations.sh", ["--rows", "colour"]),
    ],
)
def test_bad_options_stop_with_exit_2(tmp_path, script, args):
    p, calls = _run(script, tmp_path, *args)
    assert p.returncode == 2 and calls == [] and len(p.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.glob("five-methods*"))
