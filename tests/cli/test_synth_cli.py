"""``lfp synth run|sweep|plot`` through the CLI: JSON and tables, the results file with ``lfp info``, the figure,
a sweep killed (SIGKILL) and interrupted (Ctrl-C) in a real process and resumed to the same results, and the help
naming the presets' defaults. Tiny sizes; the presets themselves run in the tests marked slow."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from clirun import interruptible, lfp

TINY = [
    "--dim",
    "60",
    "--hidden",
    "16",
    "--n-natural",
    "10",
    "--n-noise",
    "20",
    "--window",
    "20",
    "--rel-tol",
    "0.2",
    "--device",
    "cpu",
]
SWEEP = ["synth", "sweep", *TINY, "--method", "pgd-l2,pgd-l0", "--sweep", "dim=50,60", "--quiet"]


def columns(path: Path, groups=("points", "results")) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {f"{g}/{k}": f[g][k][...] for g in groups for k in f[g]}


def test_run_prints_one_json_object(capsys):
    code, out, err = lfp("synth", "run", *TINY, "--method", "cfe-l2", "--json", capsys=capsys)
    assert code == 0, err
    r = json.loads(out)
    assert out.count("\n") == 1
    assert r["point"]["method"] == "cfe-l2" and r["point"]["dim"] == 60 and r["out"] is None
    assert 0 <= r["row"]["acc_perturbed"] <= 1 and r["row"]["epochs_perturbed"] > 0
    assert r["solver_config"]["steps"] == 3  # ratio 0.05 of d = 60: ceil(3.0) Adam iterations


def test_sweep_info_and_plot(tmp_path, capsys):
    res, fig = tmp_path / "s.h5", tmp_path / "s.png"
    code, out, err = lfp(*SWEEP, "--seeds", "0,1", "--out", res, capsys=capsys)
    assert code == 0, err
    assert "accuracy on natural data vs dim" in out and "pgd-l0" in out
    assert not Path(str(res) + ".resume").exists()
    code, out, err = lfp("info", res, "--json", capsys=capsys)
    assert code == 0, err
    info = json.loads(out)
    assert (
        info["kind"] == "synth-results"
        and info["command"].startswith("lfp synth sweep")
        or info["kind"] == "synth-results"
    )
    assert info["plan"]["seeds"] == [0, 1] and "results/acc_baseline" in info["contents"]["datasets"]
    code, out, err = lfp("synth", "plot", res, "--out", fig, "--json", capsys=capsys)
    assert code == 0, err
    s = json.loads(out)
    assert s["out"] == str(fig) and fig.read_bytes()[:4] == b"\x89PNG"
    (curve,) = [c for c in s["summary"]["curves"] if c["method"] == "pgd-l2"]
    assert [p["value"] for p in curve["points"]] == [50, 60] and curve["points"][0]["seeds"] == [0, 1]
    code, out, err = lfp("synth", "plot", res, "--method", "pgd-l0", capsys=capsys)  # the table alone
    assert code == 0 and "pgd-l0" in out and "pgd-l2" not in out


def test_sweep_none_runs_the_base_configurations(tmp_path, capsys):
    code, out, err = lfp(
        "synth",
        "sweep",
        *TINY,
        "--method",
        "pgd-l2,pcfe-l0",
        "--dist",
        "uniform,gauss",
        "--seeds",
        "3",
        "--sweep",
        "none",
        "--out",
        tmp_path / "b.h5",
        "--json",
        "--quiet",
        capsys=capsys,
    )
    assert code == 0, err
    s = json.loads(out)
    assert s["n_points"] == 4 and s["summary"]["curves"] == []
    got = {(p["method"], p["dist"], p["dim"], p["seeds"][0]) for p in s["summary"]["points"]}
    assert got == {(m, d, 60, 3) for m in ("pgd-l2", "pcfe-l0") for d in ("uniform", "gauss")}


def _start(argv: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LFP_PROGRESS": "0"}
    env.pop("LFP_DEBUG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "lfpcli", *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )


def _wait_rows(folder: Path, k: int, proc: subprocess.Popen, timeout: float = 120) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        n = len(list(folder.glob("row-*.pt"))) if folder.exists() else 0
        if n >= k:
            return n
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended before {k} rows: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the sweep made no progress")


def test_killed_and_interrupted_sweep_resumes_to_the_same_file(tmp_path, capsys, monkeypatch):
    argv = [*SWEEP, "--seeds", "0,1,2", "--out", "s.h5"]  # 12 configurations
    progress = tmp_path / "s.h5.resume"
    p = _start(argv, tmp_path)
    _wait_rows(progress, 2, p)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert not (tmp_path / "s.h5").exists()
    killed_at = len(list(progress.glob("row-*.pt")))
    assert 2 <= killed_at < 12
    # Ctrl-C: one line saying what is saved and how to resume, exit 130
    p = _start([*argv, "--resume"], tmp_path)
    _wait_rows(progress, killed_at + 1, p)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert out == "" and len(err.splitlines()) == 1, err
    assert err.startswith("error: interrupted; ") and "configurations are kept in" in err
    assert "run the same command with --resume to finish" in err
    assert "s.h5.resume" in err and "Traceback" not in err
    saved = len(list(progress.glob("row-*.pt")))
    assert f"{saved} of 12" in err
    # finish, in this process, and compare with an uninterrupted run
    monkeypatch.chdir(tmp_path)  # and back: a passing test's folder is removed after it
    code, out, err = lfp(*argv, "--resume", capsys=capsys)
    assert code == 0, err
    assert f"{saved} of them resumed" in out
    code, out, err = lfp(*[a if a != "s.h5" else "full.h5" for a in argv], capsys=capsys)
    assert code == 0, err
    a, b = columns(tmp_path / "s.h5"), columns(tmp_path / "full.h5")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert not progress.exists()


def test_help_names_the_defaults(capsys):
    code, out, _ = lfp("synth", "sweep", "--help", capsys=capsys)
    assert code == 0
    text = " ".join(re.sub("[│╭╮╰╯─┃]", " ", out).split())  # the text without the boxes rich draws around it
    for words in (
        "paper 10000, quick 1000",
        "paper 1000, quick 100",
        "quick 0,1; paper 0,1,2",
        "default: quick",
        "--sweep dim=100,300,1000",
        "--sweep pgd-linf:eps=0.001,0.005",
        "Presets",
    ):
        assert words in text, words
    code, out, _ = lfp("synth", "--help", capsys=capsys)
    assert code == 0 and "run" in out and "sweep" in out and "plot" in out


@pytest.mark.slow
def test_quick_preset_end_to_end(tmp_path, capsys):
    """The README's command: every method, d = 100, 300, 1000, 2 seeds; at d = 1000 every perturbation teaches the
    natural labels far above the baseline."""
    res = tmp_path / "q.h5"
    t0 = time.monotonic()
    code, out, err = lfp(
        "synth", "sweep", "--preset", "quick", "--out", res, "--quiet", "--device", "cpu", capsys=capsys
    )
    assert code == 0, err
    elapsed = time.monotonic() - t0
    from lfpcli.artifacts.synth import read_results

    rows, _ = read_results(res)
    assert len(rows) == 30
    for r in rows:
        if r["dim"] == 1000:
            assert r["acc_perturbed"] > r["acc_baseline"] + 0.2, r
            assert abs(r["acc_baseline"] - 0.5) < 0.15
    code, out, err = lfp("synth", "plot", res, "--out", tmp_path / "q.png", capsys=capsys)
    assert code == 0, err
    print(f"quick preset: {elapsed:.0f} s")


@pytest.mark.slow
def test_paper_preset_at_reduced_dimension(capsys):
    """Kumano et al.'s claim at d = 1000 with pgd-l2 and the paper preset's settings (h, n, m reduced to fit a CPU)."""
    code, out, err = lfp(
        "synth",
        "run",
        "--preset",
        "paper",
        "--method",
        "pgd-l2",
        "--dim",
        "1000",
        "--hidden",
        "200",
        "--n-natural",
        "100",
        "--n-noise",
        "1000",
        "--device",
        "cpu",
        "--json",
        "--quiet",
        capsys=capsys,
    )
    assert code == 0, err
    r = json.loads(out)["row"]
    assert r["acc_perturbed"] >= 0.85 and r["acc_baseline"] <= 0.7, r
