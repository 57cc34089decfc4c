"""Peak host memory of ``lfp perturb`` and ``lfp retrain`` against the number of samples: data streamed from an lfp
uint8 cache must keep memory flat, whatever N.

    python benchmarks/bench_memory.py [--sizes 10000,100000] [--side 32] [--steps 2] [--arch mlp] [--dir DIR]
                                      [--preload-mb 0] [--budget-mb 1536]

For each N: a fabricated 2-class, 4-group dataset of N training images (3 x side x side, uint8; 1,000 val and 1,000
test images) is written as an lfp dataset cache (``write_dataset`` streaming a synthetic source, the same path as
``lfp data SPEC --out``). One small-cnn is trained once on the smallest set; then, as separate processes, each
timed with its own peak RSS (``os.wait4``'s ``ru_maxrss``, the process's VmHWM; DataLoader workers, where any,
are children and not included: they hold one batch each):

    lfp perturb --in model.pt --data data-N.h5 --method pgd-l2 --eps 1 --steps S --out p-N.h5
    lfp retrain --in p-N.h5 --epochs 1 --out r-N.pt

``--preload-mb`` sets ``LFP_PRELOAD_MB`` for them (0, the default here: every file streamed, even the small one,
so both sizes take the same path; lfp's own default, 256, loads files under 256 MB whole). ``--arch``: the model
(default mlp: the benchmark measures the data path, and a small model keeps 100,000 samples within minutes on a
CPU). Prints one line per command and size, and the growth from the smallest to the largest N; exits 1 when a
command fails or a peak exceeds ``--budget-mb`` (the fixed budget, whatever N).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def fabricate(path: Path, n_train: int, side: int, seed: int = 0) -> None:
    """The dataset file, written batch by batch from a synthetic source (never all in memory)."""
    import torch

    from lfpcli.artifacts import make_record
    from lfpcli.artifacts.datasets import write_dataset
    from lfpcli.data import Dataset, Split
    from lfpcli.data.lazy import Rows

    class Synthetic(Rows):
        """Row i: background colour by attribute a_i (green/blue, noisy), a bright square whose colour is the label."""

        raw_dtype = np.dtype(np.uint8)

        def __init__(self, y, a, split_seed):
            self.y, self.a, self.seed = y, a, split_seed
            self.shape = (len(y), 3, side, side)
            self.what = "synthetic"

        def read_raw(self, idx):
            out = np.empty((len(idx), 3, side, side), dtype=np.uint8)
            for j, i in enumerate(idx):
                rng = np.random.default_rng([self.seed, int(i)])
                bg = np.array([60, 140, 40] if self.a[i] == 0 else [30, 80, 200], dtype=np.int16)
                img = bg[:, None, None] + rng.integers(-30, 31, size=(3, side, side))
                r, c = rng.integers(0, side // 2, size=2)
                img[:, r : r + side // 3, c : c + side // 3] = np.array(
                    [250, 250, 250] if self.y[i] else [200, 60, 30]
                )[:, None, None]
                out[j] = np.clip(img, 0, 255)
            return out

    splits = {}
    for k, (name, n) in enumerate((("train", n_train), ("val", 1000), ("test", 1000))):
        rng = np.random.default_rng([seed, k])
        y = rng.integers(0, 2, size=n)
        a = np.where(rng.random(n) < (0.9 if name == "train" else 0.5), y, 1 - y)
        splits[name] = Split(
            Synthetic(y, a, 1000 * k + seed), torch.from_numpy(y), torch.from_numpy(2 * y + a), torch.arange(n)
        )
    ds = Dataset(
        spec={"type": "builtin", "name": "bench-synthetic", "params": {"n": n_train, "side": side, "seed": seed}},
        splits=splits,
        num_classes=2,
        class_names=["red", "white"],
        group_names=["red/land", "red/water", "white/land", "white/water"],
        input_shape=(3, side, side),
        mean=[0.5, 0.5, 0.5],
        std=[0.25, 0.25, 0.25],
        description="memory benchmark data",
        train_defaults={"epochs": 1, "optimizer": "adam", "lr": 1e-3, "batch_size": 128},
    )
    write_dataset(path, ds, make_record("dataset", {"n": n_train, "side": side}), force=True)


def run(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Run ``argv``; return (wall seconds, peak RSS in MiB, exit code)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - t0, usage.ru_maxrss / 1024.0, p.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--side", type=int, default=32)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--dir", default=None, help="work folder (default: a temporary one, removed after)")
    ap.add_argument("--preload-mb", default="0")
    ap.add_argument("--arch", default="mlp")
    ap.add_argument(
        "--budget-mb", type=float, default=1536.0, help="the fixed peak-RSS budget every command must stay within"
    )
    ap.add_argument("--make", nargs=2, metavar=("N", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.make:
        fabricate(Path(args.make[1]), int(args.make[0]), args.side)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="lfp-bench-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LFP_PRELOAD_MB": args.preload_mb, "LFP_CACHE_DIR": str(work / "cache")}
    py = sys.executable
    lfp = [py, "-m", "lfpcli"]
    import platform

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, {_cpu_name()}; python {platform.python_version()}"
    )
    print(
        f"work folder {work}; LFP_PRELOAD_MB={args.preload_mb}; images 3x{args.side}x{args.side}; arch {args.arch}; "
        f"pgd-l2 {args.steps} steps; budget {args.budget_mb:.0f} MiB"
    )
    failed = False
    for n in sizes:
        path = work / f"data-{n}.h5"
        if not path.exists():
            t, rss, code = run([py, __file__, "--side", str(args.side), "--make", str(n), str(path)], env)
            print(
                f"fabricate N={n:>7}: {t:7.1f} s  peak RSS {rss:7.0f} MiB  ({path.stat().st_size / 2**20:.0f} MiB file)",
                flush=True,
            )
    model = work / "model.pt"
    if not model.exists():
        t, rss, code = run(
            [
                *lfp,
                "train",
                "--data",
                str(work / f"data-{sizes[0]}.h5"),
                "--arch",
                args.arch,
                "--epochs",
                "1",
                "--out",
                str(model),
                "--device",
                "cpu",
                "--quiet",
                "--force",
            ],
            env,
        )
        print(f"train    N={sizes[0]:>7}: {t:7.1f} s  peak RSS {rss:7.0f} MiB  (exit {code})")
    peaks: dict[str, list[float]] = {"perturb": [], "retrain": []}
    for n in sizes:
        pert = work / f"p-{n}.h5"
        t, rss, code = run(
            [
                *lfp,
                "perturb",
                "--in",
                str(model),
                "--data",
                str(work / f"data-{n}.h5"),
                "--method",
                "pgd-l2",
                "--eps",
                "1",
                "--steps",
                str(args.steps),
                "--out",
                str(pert),
                "--device",
                "cpu",
                "--quiet",
                "--force",
            ],
            env,
        )
        print(f"perturb  N={n:>7}: {t:7.1f} s  peak RSS {rss:7.0f} MiB  (exit {code})", flush=True)
        peaks["perturb"].append(rss)
        failed |= code != 0 or rss > args.budget_mb
        t, rss, code = run(
            [
                *lfp,
                "retrain",
                "--in",
                str(pert),
                "--epochs",
                "1",
                "--out",
                str(work / f"r-{n}.pt"),
                "--device",
                "cpu",
                "--quiet",
                "--force",
            ],
            env,
        )
        print(f"retrain  N={n:>7}: {t:7.1f} s  peak RSS {rss:7.0f} MiB  (exit {code})", flush=True)
        peaks["retrain"].append(rss)
        failed |= code != 0 or rss > args.budget_mb
    for cmd, v in peaks.items():
        if len(v) > 1:
            print(
                f"{cmd}: peak RSS {v[0]:.0f} MiB at N={sizes[0]}, {v[-1]:.0f} MiB at N={sizes[-1]} "
                f"({v[-1] - v[0]:+.0f} MiB for {sizes[-1] // sizes[0]}x the samples)"
            )
    print(
        f"{'FAIL' if failed else 'ok'}: every command {'did not stay' if failed else 'stayed'} within {args.budget_mb:.0f} MiB"
    )
    if not args.dir:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    if failed:
        sys.exit(1)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
