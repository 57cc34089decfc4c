"""pcfe-l0 samples/s with and without skipping the samples whose optimum is provably no change.

    python benchmarks/bench_pcfe_skip.py --model model.pt [--n 128] [--repeats 3] [--targets random] [--steps 100]

Under ``--targets random`` about 1/K of the samples keep their label (half on a binary task); a sample its target
already leads by more than kappa, and whose first proximal step from w = 0 keeps nothing, is returned at once
(``lfpcli.solvers.scfe``, ``skip``) and the search runs on the others alone. Both runs use perturb's defaults for
the data (the pixel KDE fitted on the spot, 300 points per class, tau = its mean h^2), the same samples and targets;
they alternate, and the figures are medians over the repeats. The script also checks that both give the same
counterfactuals.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lfpcli.commands.common import load_model, resolve_recorded_data
from lfpcli.commands.density import plausibility_from
from lfpcli.solvers import choose_targets, make_config
from lfpcli.solvers.scfe import scfe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--targets", default="random")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dev = torch.device("cpu")
    model, meta = load_model(a.model, dev)
    ds = resolve_recorded_data(meta["data"]["spec"], a.model)
    sp = ds.split("train")
    x, y = sp.x[: a.n], sp.y[: a.n]
    t = choose_targets(y, ds.num_classes, a.targets, torch.Generator().manual_seed(0))
    fn, info, _ = plausibility_from("kde", model, meta, a.model, dev, 0)
    cfg = make_config("pcfe-l0", {"steps": a.steps, "tau": info["plausibility_weight"]})
    times = {True: [], False: []}
    results = {}
    for _ in range(a.repeats):
        for skip in (False, True):
            t0 = time.perf_counter()
            results[skip] = scfe(model, x, t, cfg, plausibility=fn, skip=skip)
            times[skip].append(time.perf_counter() - t0)
    full, fast = results[False], results[True]
    skipped = int(fast.extras["skipped"].sum())
    same = torch.allclose(full.x, fast.x, rtol=0, atol=1e-6) and torch.equal(full.success, fast.success)
    s_full, s_fast = statistics.median(times[False]), statistics.median(times[True])
    print(f"{a.n} samples, targets {a.targets}, {cfg.search_steps} x {cfg.steps} iterations, {a.threads} thread(s)")
    print(f"target kept the label: {int((t == y).sum())}; skipped: {skipped}")
    print(
        f"without skipping: {a.n / s_full:.2f} samples/s ({s_full:.1f} s); with: {a.n / s_fast:.2f} samples/s "
        f"({s_fast:.1f} s); speed-up {s_full / s_fast:.2f}x; same counterfactuals: {same}"
    )
    print(
        f"grad evals per sample, mean: {full.grad_evals.double().mean():.1f} -> {fast.grad_evals.double().mean():.1f}"
    )


if __name__ == "__main__":
    main()
