"""Per-iteration cost of every solver as a ratio of the floor, side by side in one run.

The floor is one forward+backward pass of the same model on the same batch (gradient w.r.t. the input only): the
least a first-order method can spend per iteration. Each solver's time is divided by the forward+backward passes
it spent per sample (``grad_evals``), so the ratio is its cost per gradient evaluation including everything else
it does (projections, proxes, line-search forwards, success tests, the plausibility term).

    python benchmarks/bench_solvers.py [--device cpu|cuda] [--batch 256] [--steps 30] [--repeats 5] [--model FILE.pt]

Floor and solver runs alternate (floor, solver, floor, solver, ...) and the ratio is taken per pair, then the
median over pairs: a machine whose speed drifts during the run moves both sides of a pair alike.

pcfe-l0 runs with its defaults, 100 iterations and one search step (so its line search checks 10 of 100
iterations, as in a default run; every further search step costs the same again), with three plausibility
terms: none, the pixel KDE that ``lfp perturb --method pcfe-l0`` fits on data of this size (300 points per
class) and a KDE in the model's feature space (sharing the model's forward pass). Compare ratios only:
absolute times vary with the machine and its load.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lfpcli.artifacts.dataspec import resolve
from lfpcli.commands.density import ON_THE_FLY_MAX_POINTS
from lfpcli.density import fit_density
from lfpcli.models import build_model
from lfpcli.solvers import choose_targets, get_solver, make_config


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def clock(fn, device):
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=30, help="iterations of pgd-*, cfe-l2 (pcfe-l0: --pcfe-steps)")
    ap.add_argument("--pcfe-steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--model", default=None, help="an lfp checkpoint (default: an untrained small-cnn)")
    ap.add_argument("--methods", default="pgd-l2,pgd-linf,pgd-l0,cfe-l2,pcfe-l0")
    args = ap.parse_args()
    dev = torch.device(args.device)
    ds = resolve("spurious-digits")
    if args.model:
        from lfpcli.commands.common import load_model

        model, _ = load_model(args.model, dev)
    else:
        torch.manual_seed(0)
        model = build_model("small-cnn", ds.num_classes, ds.input_shape, ds.mean, ds.std)
    model = model.to(dev).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    tr = ds.splits["train"]
    x = tr.x[: args.batch].to(dev)
    t = choose_targets(tr.y[: args.batch], 2, "random-other", torch.Generator().manual_seed(0)).to(dev)

    def floor(n):
        for _ in range(n):
            xv = x.clone().requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(model(xv), t, reduction="sum")
            (g,) = torch.autograd.grad(loss, xv)
        return g

    pixel_kde = fit_density("kde", tr.x.flatten(1), tr.y, ds.num_classes, max_points=ON_THE_FLY_MAX_POINTS).to(dev)
    with torch.no_grad():
        feats = torch.cat([model.features(tr.x[s : s + 512].to(dev)) for s in range(0, len(tr), 512)])
    feature_kde = fit_density("kde", feats, tr.y.to(dev), ds.num_classes, max_points=ON_THE_FLY_MAX_POINTS).to(dev)

    def on_features(f, tt):
        return feature_kde.log_prob(f, tt)

    on_features.on_features = True  # as `lfp perturb --density feature-kde` builds it: one shared model pass
    plaus = {
        "none": None,
        "pixel kde": lambda xp, tt: pixel_kde.log_prob(xp.flatten(1), tt),
        "feature kde": on_features,
    }
    taus = {"pixel kde": pixel_kde.plausibility_weight(), "feature kde": feature_kde.plausibility_weight()}

    print(
        f"device {dev}, small-cnn {'(' + args.model + ')' if args.model else '(untrained)'} on spurious-digits, "
        f"batch {args.batch}, torch {torch.__version__}, {args.repeats} alternating floor/solver pairs"
    )
    print(
        "| method | plausibility | grad evals / sample | ms / grad eval | floor ms | x floor (median of pairs) | success |"
    )
    print("|---|---|---|---|---|---|---|")
    for method in args.methods.split(","):
        variants = plaus if method == "pcfe-l0" else {"-": None}
        for name, fn in variants.items():
            p = {"steps": args.pcfe_steps, "search_steps": 1} if method == "pcfe-l0" else {"steps": args.steps}
            if name in taus:
                p["tau"] = taus[name]
            cfg = make_config(method, p)
            solver = get_solver(method).fn
            kw = {"plausibility": fn} if fn is not None else {}

            def run():
                return solver(model, x, t, cfg, generator=torch.Generator().manual_seed(0), **kw)

            _, res = clock(run, dev)  # warm-up, and the pass count
            evals = float(res.grad_evals.float().mean())
            floor(2)
            ratios, per_evals, per_floors = [], [], []
            for _ in range(args.repeats):
                tf, _ = clock(lambda: floor(round(evals)), dev)
                ts, res = clock(run, dev)
                per_evals.append(ts / evals)
                per_floors.append(tf / round(evals))
                ratios.append(per_evals[-1] / per_floors[-1])
            print(
                f"| {method} | {name} | {evals:.0f} | {statistics.median(per_evals) * 1e3:.2f} | "
                f"{statistics.median(per_floors) * 1e3:.2f} | {statistics.median(ratios):.3f} | "
                f"{res.success.float().mean().item():.3f} |"
            )


if __name__ == "__main__":
    main()
