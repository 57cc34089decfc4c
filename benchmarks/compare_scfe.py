"""lfp's batched pcfe-l0 against a plain one-sample-at-a-time S-CFE reference (benchmarks/reference_scfe.py),
on the same model, samples, targets, iterations, search steps, gamma, beta, kappa and plausibility term.

    python benchmarks/compare_scfe.py [--model PATH] [--n 64] [--steps 100] [--search-steps 5]
        [--device cpu|cuda] [--batch 256] [--density kde|none] [--ref-lipschitz 16] [--split test]
    python benchmarks/compare_scfe.py --self-test

Rows: lfp pcfe-l0 with its defaults (step 1/lipschitz with per-sample line search in the first 10 iterations),
the reference (fixed step 1/ref-lipschitz, no line search), and, unless --no-fixed-check, lfp with the
reference's exact step rule (--no-line-search, lipschitz = ref-lipschitz): that row should match the reference
up to rounding, which isolates implementation differences from the line-search difference.

Validity is the fraction of all n samples classified as their target. l0 (changed values), l2 and the target
log-density (one common evaluator, lfpcli.commands.log_density.evaluation_density) are over the samples valid
for every row. Samples/s is n over the wall time of the solver call (KDE fitting excluded); compare ratios only.
"""

from __future__ import annotations

import argparse
import datetime
import math
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_scfe import prox_l0_box as ref_prox  # noqa: E402
from reference_scfe import reference_scfe  # noqa: E402


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


# ------------------------------------------------------------------------------------------------ self-test
def self_test() -> None:
    """Check the reference on tiny cases: its prox against brute force, and S-CFE on a linear 2-class model."""
    torch.manual_seed(0)
    # 1) prox: brute force over a fine grid of the interval [a, b] (plus the exact candidates 0 and clamp(v)).
    s, beta = 0.5, 0.01
    v = torch.randn(2000, dtype=torch.float64) * 0.3
    x = torch.rand(2000, dtype=torch.float64)
    a, b = -x, 1 - x
    got = ref_prox(v, a, b, s, beta)
    grid = torch.linspace(0, 1, 2001, dtype=torch.float64)
    cand = torch.cat(
        [
            a[:, None] + (b - a)[:, None] * grid[None],
            torch.zeros(2000, 1, dtype=torch.float64),
            torch.minimum(torch.maximum(v, a), b)[:, None],
        ],
        1,
    )
    obj = (cand - v[:, None]) ** 2 / (2 * s) + beta * (cand != 0)
    best = obj.min(1).values
    got_obj = (got - v) ** 2 / (2 * s) + beta * (got != 0)
    assert bool((got_obj <= best + 1e-12).all()), "reference prox is not the minimiser"
    assert bool(((got >= a) & (got <= b)).all()), "reference prox leaves the box"
    print(f"prox: matches brute force on 2000 coordinates ({int((got != 0).sum())} kept)")

    # 2) linear 2-class model, d = 40: 4 coordinates carry most of the weight.
    d, n = 40, 8
    lin = torch.nn.Linear(d, 2).double()
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[1] = 0.2 * torch.randn(d, dtype=torch.float64).sign()
        lin.weight[1, :4] = 5.0
        lin.bias.zero_()
        lin.bias[1] = -3.0
    lin.eval()
    for p in lin.parameters():
        p.requires_grad_(False)
    x = 0.2 + 0.6 * torch.rand(n, d, dtype=torch.float64)
    y = lin(x).argmax(1)
    t = 1 - y
    common = dict(steps=200, search_steps=6, gamma=1.0, tau=0.0, lipschitz=16.0, kappa=0.1)
    rows = {}
    for beta in (1e-9, 1e-1):
        xcf, ok = reference_scfe(lin, x, t, beta=beta, **common)
        l0 = (xcf != x).sum(1)
        rows[beta] = (ok, l0)
        print(f"linear model, beta={beta:g}: valid {int(ok.sum())}/{n}, changed values per sample {l0.tolist()} of {d}")
    ok_small, l0_small = rows[1e-9]
    ok_big, l0_big = rows[1e-1]
    assert bool(ok_small.all()) and bool(ok_big.all()), "reference failed to reach the target on a linear model"
    assert bool((l0_small >= d - 2).all()), "tiny beta should change (almost) every coordinate"
    assert bool((l0_big <= 6).all()), "large beta should change only a few coordinates"

    # 3) the same problem through lfp with the reference's step rule: should agree up to rounding.
    from lfpcli.solvers import get_solver, make_config

    cfg = make_config(
        "pcfe-l0",
        {
            "steps": 200,
            "search_steps": 6,
            "beta": 1e-1,
            "lipschitz": 16.0,
            "line_search": False,
            "kappa": 0.1,
            "gamma": 1.0,
        },
    )
    res = get_solver("pcfe-l0").fn(lin, x, t, cfg)
    xcf_ref, _ = reference_scfe(lin, x, t, beta=1e-1, **common)
    diff = (res.x - xcf_ref).abs().max().item()
    print(
        f"lfp pcfe-l0 (no line search, same L) vs reference on the linear model: max |x_cf difference| {diff:.2e}, "
        f"l0 lfp {(res.x != x).sum(1).tolist()}, reference {(xcf_ref != x).sum(1).tolist()}"
    )
    assert diff < 1e-6, "lfp and the reference disagree on a linear model with the same step rule"
    print("self-test passed")


# ------------------------------------------------------------------------------------------------ comparison
def stats(x: torch.Tensor, x_cf: torch.Tensor) -> dict[str, torch.Tensor]:
    dw = (x_cf - x).flatten(1)
    return {"l0": (dw != 0).sum(1).double(), "l2": dw.norm(dim=1).double()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="an lfp checkpoint (default: train a small-cnn on spurious-digits)")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--search-steps", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=None, help="lfp's batch size (default min(256, n))")
    ap.add_argument("--density", choices=("kde", "none"), default="kde")
    ap.add_argument("--ref-lipschitz", type=float, default=16.0, help="L of the reference's fixed step 1/L")
    ap.add_argument(
        "--ref-anneal",
        action="store_true",
        help="the reference's step decays as sqrt(1 - k/steps) / L (the S-CFE authors' code without line search)",
    )
    ap.add_argument("--split", default="test", help="split the explained samples come from (the KDE is fit on train)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-fixed-check", action="store_true", help="skip the lfp row with the reference's step rule")
    ap.add_argument("--self-test", action="store_true", help="only run the reference's sanity checks")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.self_test:
        self_test()
        return

    from lfpcli.commands import train
    from lfpcli.commands.common import load_model, resolve_recorded_data
    from lfpcli.commands.density import ON_THE_FLY_MAX_POINTS
    from lfpcli.commands.log_density import evaluation_density
    from lfpcli.density import fit_density
    from lfpcli.solvers import choose_targets, get_solver, make_config

    dev = torch.device(args.device)
    path = args.model
    if path is None:
        path = str(Path(tempfile.mkdtemp(prefix="compare_scfe_")) / "model.pt")
        print(f"training small-cnn on spurious-digits -> {path}", file=sys.stderr)
        train(path, data="spurious-digits", epochs=10, device=args.device)
    net, meta = load_model(path, dev)
    for p in net.parameters():
        p.requires_grad_(False)
    ds = resolve_recorded_data(meta["data"]["spec"], path)
    tr = ds.split("train")
    sp = ds.split(args.split)
    x = sp.x[: args.n].to(dev)
    y = sp.y[: args.n].to(dev)
    n = x.shape[0]
    t = choose_targets(y.cpu(), ds.num_classes, "random-other", torch.Generator().manual_seed(0)).to(dev)

    params = {"steps": args.steps, "search_steps": args.search_steps}
    plaus, tau = None, 0.0
    if args.density == "kde":
        q = fit_density("kde", tr.x.flatten(1), tr.y, ds.num_classes, seed=0, max_points=ON_THE_FLY_MAX_POINTS).to(dev)
        tau = q.plausibility_weight()
        params["tau"] = tau
        plaus = lambda xp, tt: q.log_prob(xp.flatten(1), tt)  # noqa: E731

    cfg = make_config("pcfe-l0", params)
    c = cfg.to_dict()
    solver = get_solver("pcfe-l0").fn
    batch = args.batch or min(256, n)

    def run_lfp(cfg_):
        out = []
        for i in range(0, n, batch):
            out.append(solver(net, x[i : i + batch], t[i : i + batch], cfg_, plausibility=plaus).x)
        return torch.cat(out)

    ref_rule = "annealed" if args.ref_anneal else "fixed"

    def run_ref():
        return reference_scfe(
            net,
            x,
            t,
            steps=args.steps,
            search_steps=args.search_steps,
            gamma=c["gamma"],
            beta=c["beta"],
            tau=tau,
            lipschitz=args.ref_lipschitz,
            kappa=c["kappa"],
            growth=c["growth"],
            plausibility=plaus,
            lo=c["lo"],
            hi=c["hi"],
            anneal=args.ref_anneal,
        )[0]

    runs = [
        (
            "lfp pcfe-l0 (defaults)",
            f"L={c['lipschitz']:g}, line search first {c['line_search_iters']} it.",
            lambda: run_lfp(cfg),
        ),
        ("reference", f"L={args.ref_lipschitz:g}, {ref_rule} step", run_ref),
    ]
    if not args.no_fixed_check:
        cfg_fixed = make_config(
            "pcfe-l0",
            {
                **params,
                "line_search": False,
                "lipschitz": args.ref_lipschitz,
                "schedule": "anneal" if args.ref_anneal else "fixed",
            },
        )
        runs.append(
            (
                "lfp pcfe-l0, reference's step",
                f"L={args.ref_lipschitz:g}, {ref_rule} step (--no-line-search)",
                lambda: run_lfp(cfg_fixed),
            )
        )

    with torch.no_grad():
        net(x[:2])  # warm-up
    results = []
    for name, step_desc, fn in runs:
        sync(dev)
        t0 = time.perf_counter()
        x_cf = fn()
        sync(dev)
        secs = time.perf_counter() - t0
        with torch.no_grad():
            valid = net(x_cf).argmax(1) == t
        results.append((name, step_desc, x_cf, valid, secs))
        print(f"{name}: {secs:.1f} s", file=sys.stderr)

    evaluator, edesc = evaluation_density(ds, dev)
    both = torch.stack([r[3] for r in results]).all(0)
    m = int(both.sum())
    rows = []
    for name, step_desc, x_cf, valid, secs in results:
        st = stats(x[both], x_cf[both])
        ld = evaluator(x_cf[both], t[both]).double() if m else torch.zeros(0)
        rows.append(
            {
                "name": name,
                "step": step_desc,
                "validity": valid.double().mean().item(),
                "l0_med": st["l0"].median().item() if m else math.nan,
                "l0_mean": st["l0"].mean().item() if m else math.nan,
                "l2_med": st["l2"].median().item() if m else math.nan,
                "logq": ld.mean().item() if m else math.nan,
                "sps": n / secs,
            }
        )
    lfp, ref = rows[0], rows[1]

    argv = "python benchmarks/compare_scfe.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    dname = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} thread(s)"
    print()
    print(f"{datetime.date.today()}, {dname}, torch {torch.__version__}, `{argv.strip()}`")
    print(
        f"model {path} ({meta['model'].get('arch', '?')} on {ds.spec.get('name')}), {n} samples of split "
        f"'{args.split}', targets random-other (seed 0), {args.steps} iterations x {args.search_steps} search steps."
    )
    print(
        f"Shared: gamma0 {c['gamma']:g} (growth {c['growth']:g}), beta {c['beta']:g}, kappa {c['kappa']:g}, "
        f"margin loss, box [{c['lo']:g}, {c['hi']:g}], plausibility "
        + (
            f"pixel KDE (max_points {ON_THE_FLY_MAX_POINTS}, seed 0), tau {tau:.5g}"
            if plaus is not None
            else "none (tau 0)"
        )
        + "."
    )
    print(
        f"l0 / l2 / log-density over the {m} samples valid for every row; log-density: "
        f"{edesc.get('name', 'evaluation KDE')} (pooled pixel KDE, fit on train)."
    )
    print()
    print("| method | step | validity | l0 median | l0 mean | l2 median | mean log q(x'|t) | samples/s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['name']} | {r['step']} | {r['validity']:.3f} | {r['l0_med']:.0f} | {r['l0_mean']:.1f} | "
            f"{r['l2_med']:.3f} | {r['logq']:.1f} | {r['sps']:.2f} |"
        )
    print()
    print(
        f"lfp / reference: l0 median {lfp['l0_med'] / ref['l0_med']:.2f}, l0 mean {lfp['l0_mean'] / ref['l0_mean']:.2f}, "
        f"samples/s {lfp['sps'] / ref['sps']:.2f}"
    )
    if len(rows) > 2:
        fx = rows[2]
        diff = (results[2][2] - results[1][2]).abs().flatten(1).max(1).values
        print(
            f"lfp (reference's step) / reference: l0 median {fx['l0_med'] / ref['l0_med']:.2f}, "
            f"samples/s {fx['sps'] / ref['sps']:.2f}; x_cf identical (max |diff| < 1e-4) on "
            f"{int((diff < 1e-4).sum())}/{n} samples"
        )


if __name__ == "__main__":
    main()
