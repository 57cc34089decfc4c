"""Per-iteration cost of every solver as a ratio of the floor, side by side in one run.

The floor is one forward+backward pass of the same model on the same batch (gradient w.r.t. the input only): the
least a first-order method can spend per iteration. Each solver's time is divided by the forward+backward passes
it spent per sample (``grad_evals``, e.g. ``steps * search_steps`` for pcfe-l0), so the ratio is its cost per
gradient evaluation, including everything else it does (projections, proxes, line-search forwards, success tests,
the plausibility term).

    python benchmarks/bench_solvers.py [--device cpu|cuda] [--batch 256] [--steps 30] [--repeats 3] [--model FILE.pt]

pcfe-l0 runs with its defaults (line search in the first 10 iterations of each search step) and with three
plausibility terms: none, the default pixel KDE (300 points per class, what ``lfp perturb --method pcfe-l0`` fits
on data of this size) and a KDE in the model's feature space. Compare ratios only: absolute times vary with the
machine and its load.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from lfpcli.commands.density import ON_THE_FLY_MAX_POINTS
from lfpcli.data import resolve
from lfpcli.density import fit_density
from lfpcli.models import build_model
from lfpcli.solvers import choose_targets, get_solver, make_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pgd import timed  # noqa: E402  (one timing rule for every benchmark)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=30, help="iterations of every solver (pcfe-l0: per search step)")
    ap.add_argument("--search-steps", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
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

    def floor():
        for _ in range(args.steps):
            xv = x.clone().requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(model(xv), t, reduction="sum")
            (g,) = torch.autograd.grad(loss, xv)
        return g

    t_floor, _ = timed(floor, dev, args.repeats)
    per_floor = t_floor / args.steps
    print(f"device {dev}, small-cnn {'(' + args.model + ')' if args.model else '(untrained)'}, batch {args.batch}, "
          f"steps {args.steps}, torch {torch.__version__}")
    print(f"floor (forward+backward w.r.t. input): {per_floor * 1e3:.2f} ms")
    print("| method | plausibility | ms / grad eval | x floor | grad evals / sample | success |")
    print("|---|---|---|---|---|---|")

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
    taus = {"none": None, "pixel kde": pixel_kde.plausibility_weight(), "feature kde": feature_kde.plausibility_weight()}
    for method in args.methods.split(","):
        params = {"steps": args.steps}
        if method == "pcfe-l0":
            params["search_steps"] = args.search_steps
        variants = plaus if method == "pcfe-l0" else {"-": None}
        for name, fn in variants.items():
            p = dict(params)
            if method == "pcfe-l0" and taus.get(name) is not None:
                p["tau"] = taus[name]
            cfg = make_config(method, p)
            solver = get_solver(method).fn
            kw = {"plausibility": fn} if fn is not None else {}
            secs, res = timed(lambda: solver(model, x, t, cfg, generator=torch.Generator().manual_seed(0), **kw), dev, args.repeats)
            evals = float(res.grad_evals.float().mean())
            per = secs / evals
            print(f"| {method} | {name} | {per * 1e3:.2f} | {per / per_floor:.3f} | {evals:.0f} | "
                  f"{res.success.float().mean().item():.3f} |")


if __name__ == "__main__":
    main()
