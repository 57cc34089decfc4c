"""`lfp perturb --method pcfe-l0` against an earlier revision of lfp, side by side in one run.

    python benchmarks/bench_pcfe_release.py --against REV [--limit 128] [--repeats 3] [--threads 1]
                                            [--targets random] [--model FILE.pt]

REV is any git revision of this repository (a tag, a commit). Its ``lfpcli`` is exported with ``git archive`` into a
temporary folder and both versions run the same command, as separate processes with the same environment:

    python -m lfpcli perturb --in MODEL --method pcfe-l0 --targets TARGETS --limit N --seed 0 --out OUT --quiet

with every solver and density setting left at the version's default (pixel KDE, 5 x 100 iterations, L = 32, ...).
The two run alternately (old, new, old, new, ...); the speed-up is the median over pairs of old time / new time
and samples/s is N / wall time (process start and imports included: a second or two of each run). The script also
reports, from the two perturbed sets, how many samples reached their target, the mean number of changed values,
the mean grad_evals per sample, and on how many samples the two versions' counterfactuals agree to 1e-4.

Without ``--model`` a small-cnn is trained for 3 epochs on spurious-digits:train_copies=1 by the old revision
(newer versions read older checkpoints; the reverse is not promised).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def export(rev: str, dest: Path) -> str:
    """Unpack ``lfpcli`` as of ``rev`` under ``dest``; return the full commit id."""
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"],
        check=False,
        capture_output=True,
        text=True,
    )
    if commit.returncode != 0:
        sys.exit(f"bench_pcfe_release.py: {rev!r} is not a revision of {REPO}")
    blob = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", rev, "lfpcli"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(dest, filter="data")
    return commit.stdout.strip()


def lfp(tree: Path, args: list[str], threads: int, cwd: Path) -> float:
    # cwd: `python -m` puts the working folder first on sys.path, so it must hold no lfpcli of its own
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "lfpcli", *args], check=False, env=env, cwd=cwd, capture_output=True, text=True
    )
    took = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"bench_pcfe_release.py: lfp from {tree} failed:\n{done.stderr}")
    return took


def summary(path: Path) -> dict[str, float | np.ndarray]:
    with h5py.File(path, "r") as f:
        return {
            "x": f["x"][...],
            "success": float(np.mean(f["metrics/success"][...])),
            "l0": float(np.mean(f["metrics/l0"][...])),
            "grad_evals": float(np.mean(f["metrics/grad_evals"][...])),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--against", required=True, help="the earlier revision (tag or commit)")
    ap.add_argument("--limit", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--targets", default="random")
    ap.add_argument("--model", type=Path)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        old = tmp / "old"
        old.mkdir()
        commit = export(a.against, old)
        new = REPO
        model = a.model
        if model is None:
            model = tmp / "model.pt"
            lfp(
                old,
                [
                    "train",
                    "--data",
                    "spurious-digits:train_copies=1",
                    "--arch",
                    "small-cnn",
                    "--epochs",
                    "3",
                    "--seed",
                    "0",
                    "--out",
                    str(model),
                    "--quiet",
                ],
                a.threads,
                tmp,
            )

        def run(tree: Path, out: Path) -> float:
            return lfp(
                tree,
                [
                    "perturb",
                    "--in",
                    str(model),
                    "--method",
                    "pcfe-l0",
                    "--targets",
                    a.targets,
                    "--limit",
                    str(a.limit),
                    "--seed",
                    "0",
                    "--out",
                    str(out),
                    "--force",
                    "--quiet",
                ],
                a.threads,
                tmp,
            )

        times: dict[str, list[float]] = {"old": [], "new": []}
        for _ in range(a.repeats):
            times["old"].append(run(old, tmp / "old.h5"))
            times["new"].append(run(new, tmp / "new.h5"))
        so, sn = summary(tmp / "old.h5"), summary(tmp / "new.h5")
        per_sample = np.abs(so["x"] - sn["x"]).reshape(len(so["x"]), -1).max(1)
        diff = float(per_sample.max())
        same = int((per_sample <= 1e-4).sum())
        speedup = statistics.median(o / n for o, n in zip(times["old"], times["new"]))
        print(
            f"pcfe-l0, {a.limit} samples, --targets {a.targets}, {a.threads} thread(s), median of {a.repeats} pairs; "
            f"old = {a.against} ({commit[:10]})"
        )
        print("| version | samples/s | reached target | changed values (mean) | grad evals per sample (mean) |")
        print("|---|---|---|---|---|")
        for name, s in (("old", so), ("new", sn)):
            rate = a.limit / statistics.median(times[name])
            print(f"| {name} | {rate:.3f} | {s['success']:.3f} | {s['l0']:.1f} | {s['grad_evals']:.1f} |")
        print(
            f"speed-up new / old: {speedup:.2f}x; counterfactuals equal to 1e-4: {same} of {len(per_sample)} "
            f"(largest difference {diff:.2e})"
        )


if __name__ == "__main__":
    main()
