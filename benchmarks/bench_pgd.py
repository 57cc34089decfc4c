"""PGD cost per iteration, side by side in one run: lfp's pgd-l2 / pgd-linf against the floor (one
forward+backward pass of the same model on the same batch, gradient w.r.t. the input only) and against
torchattacks' PGD / PGDL2 with the same model, budget, steps and batch.

    python benchmarks/bench_pgd.py [--device cpu|cuda] [--batch 256] [--steps 30] [--repeats 5]

Prints one line per method: seconds per iteration (median of repeats), ratio to the floor, ratio to
torchattacks, and success rates. Compare ratios only: absolute times vary with the machine and its load.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lfpcli.artifacts.dataspec import resolve
from lfpcli.models import build_model
from lfpcli.solvers import choose_targets, get_solver, make_config


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--arch", default="small-cnn")
    args = ap.parse_args()
    dev = torch.device(args.device)
    ds = resolve("spurious-digits")
    torch.manual_seed(0)
    model = build_model(args.arch, ds.num_classes, ds.input_shape, ds.mean, ds.std).to(dev).eval()
    x = ds.splits["train"].x[: args.batch].to(dev)
    t = choose_targets(ds.splits["train"].y[: args.batch], 2, "random-other", torch.Generator().manual_seed(0)).to(dev)
    for p in model.parameters():
        p.requires_grad_(False)

    def floor():
        for _ in range(args.steps):
            xv = x.clone().requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(model(xv), t, reduction="sum")
            (g,) = torch.autograd.grad(loss, xv)
        return g

    t_floor, _ = timed(floor, dev, args.repeats)
    print(f"device {dev}, arch {args.arch}, batch {args.batch}, steps {args.steps}, torch {torch.__version__}")
    print(f"floor (forward+backward w.r.t. input): {t_floor / args.steps * 1e3:.3f} ms/iteration")
    try:
        import torchattacks
    except ImportError:
        torchattacks = None
    for method, eps, ta_cls in (("pgd-l2", 2.0, "PGDL2"), ("pgd-linf", 0.1, "PGD")):
        cfg = make_config(method, {"eps": eps, "steps": args.steps})
        solver = get_solver(method).fn
        t_ours, res = timed(lambda: solver(model, x, t, cfg), dev, args.repeats)
        line = (
            f"{method}: {t_ours / args.steps * 1e3:.3f} ms/iteration, {t_ours / t_floor:.3f}x floor, "
            f"success {res.success.float().mean().item():.3f}"
        )
        if torchattacks is not None:
            atk = getattr(torchattacks, ta_cls)(model, eps=eps, alpha=cfg.alpha, steps=args.steps, random_start=False)
            atk.set_mode_targeted_by_label(quiet=True)
            t_ta, x_ta = timed(lambda: atk(x, t), dev, args.repeats)
            with torch.no_grad():
                s_ta = (model(x_ta).argmax(1) == t).float().mean().item()
            line += f"; torchattacks {ta_cls}: {t_ta / args.steps * 1e3:.3f} ms/iteration, ours/theirs {t_ours / t_ta:.3f}, success {s_ta:.3f}"
        print(line)


if __name__ == "__main__":
    main()
