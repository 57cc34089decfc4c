"""Timings of ``lfp synth``: training against a bare loop, networks side by side, one paper configuration, the quick preset.

    python benchmarks/bench_synth.py [--device cpu|cuda] [--what train,batched,config,quick] [--repeats 5]
        [--dim 10000 --hidden 1000 --n-natural 1000 --n-noise 10000]   # the paper configuration (default on CUDA)

- ``train``: ``lfpcli.synth.train.fit`` for a fixed number of epochs (the stop rule switched off) against a bare
  loop doing the same arithmetic by hand (forward, exponential loss, ``autograd.grad``, SGD with momentum): the
  ratio is what fit's bookkeeping costs per epoch (the on-device stop test, the masked update, the loss through
  ``class_logits``). Runs alternate (fit, bare, fit, bare, ...) and the ratio is the median over pairs.
- ``batched``: G networks trained side by side (one ``(G, h, d)`` weight tensor, ``bmm``) against the same G
  trained one after another, at two sizes: whether batching pays.
- ``config``: one ``--preset paper`` configuration (pgd-l2, uniform) end to end with stage times. On CUDA the
  default is the paper's size (d = 10,000, h = 1,000, n = 1,000, m = 10,000); on a CPU pass smaller sizes.
- ``quick``: the quick preset (``lfp synth sweep --preset quick``), timed, into a temporary file.

Compare ratios within one run; absolute times depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from lfpcli.models.synthetic import init_first_layer, one_hidden_forward, output_signs
from lfpcli.synth import FitConfig, Point, Settings, draw_inputs, draw_labels, fit, run_point
from lfpcli.synth.data import generator


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def clock(fn, dev: torch.device) -> float:
    sync(dev)
    t0 = time.perf_counter()
    fn()
    sync(dev)
    return time.perf_counter() - t0


def data(g: int, n: int, d: int, h: int, dev: torch.device):
    """``g`` training sets of ``n`` uniform inputs with random labels, and ``g`` initial first layers."""
    gen = generator(0)
    x = torch.stack([draw_inputs("uniform", n, d, gen) for _ in range(g)]).to(dev)
    y = torch.stack([draw_labels(n, gen) for _ in range(g)]).to(dev)
    return x, y, init_first_layer((g, h, d), generator(1)).to(dev)


def bare(w0, x, y, a, epochs: int, lr=0.01, momentum=0.9):
    """The least an epoch can cost: forward, exponential loss, gradient of W, SGD with momentum; nothing else."""
    s = (2 * y - 1).to(x.dtype)
    w = w0.clone().requires_grad_(True)
    buf = torch.zeros_like(w)
    for _ in range(epochs):
        z = one_hidden_forward(w, x, a)
        loss = torch.exp(-s * z).mean(1).sum()
        (g,) = torch.autograd.grad(loss, w)
        with torch.no_grad():
            buf.mul_(momentum).add_(g)
            w.sub_(lr * buf)
    return w


def bench_train(dev, sizes, epochs, repeats):
    print(f"\n## fit vs a bare full-batch loop ({epochs} epochs, median of {repeats} pairs)\n")
    print("| n | d | h | bare ms/epoch | fit ms/epoch | fit / bare |")
    print("|---|---|---|---|---|---|")
    for n, d, h in sizes:
        x, y, w0 = data(1, n, d, h, dev)
        a = output_signs(h, device=dev)
        cfg = FitConfig(max_epochs=epochs, window=epochs + 1)  # the stop rule never fires: exactly `epochs` epochs
        bare(w0, x, y, a, 3)
        fit(w0, x, y, a, FitConfig(max_epochs=3))
        ratios, tb, tf = [], [], []
        for _ in range(repeats):
            f = clock(lambda: fit(w0, x, y, a, cfg), dev)
            b = clock(lambda: bare(w0, x, y, a, epochs), dev)
            ratios.append(f / b)
            tb.append(b)
            tf.append(f)
        print(
            f"| {n} | {d} | {h} | {1e3 * statistics.median(tb) / epochs:.2f} | {1e3 * statistics.median(tf) / epochs:.2f} | "
            f"{statistics.median(ratios):.2f} |"
        )


def bench_batched(dev, sizes, groups, epochs, repeats):
    print(f"\n## G networks side by side vs one after another ({epochs} epochs each, median of {repeats} pairs)\n")
    print("| G | n | d | h | sequential s | side by side s | sequential / side by side |")
    print("|---|---|---|---|---|---|---|")
    for n, d, h in sizes:
        x, y, w0 = data(groups, n, d, h, dev)
        a = output_signs(h, device=dev)
        cfg = FitConfig(max_epochs=epochs, window=epochs + 1)
        fit(w0, x, y, a, FitConfig(max_epochs=3))

        def seq():
            for i in range(groups):
                fit(w0[i : i + 1], x[i : i + 1], y[i : i + 1], a, cfg)

        ratios, ts, tb = [], [], []
        for _ in range(repeats):
            s = clock(seq, dev)
            b = clock(lambda: fit(w0, x, y, a, cfg), dev)
            ratios.append(s / b)
            ts.append(s)
            tb.append(b)
        print(
            f"| {groups} | {n} | {d} | {h} | {statistics.median(ts):.2f} | {statistics.median(tb):.2f} | {statistics.median(ratios):.2f} |"
        )


def bench_config(dev, dim, hidden, n_natural, n_noise, method):
    print(
        f"\n## one --preset paper configuration: {method}, uniform, d={dim}, h={hidden}, n={n_natural}, m={n_noise}\n"
    )
    p = Point(
        method,
        "uniform",
        "noise",
        dim,
        hidden,
        n_natural,
        n_noise,
        0.78 if method in ("pgd-l2",) else (0.03 if method == "pgd-linf" else None),
        None if method in ("pgd-l2", "pgd-linf") else 0.05,
        0,
    )
    t0 = time.perf_counter()
    r = run_point(p, Settings(), device=dev)
    sync(dev)
    total = time.perf_counter() - t0
    print("| stage | seconds | epochs |")
    print("|---|---|---|")
    print(f"| natural network | {r['time_natural']:.1f} | {r['epochs_natural']} |")
    print(f"| baseline network | {r['time_baseline']:.1f} | {r['epochs_baseline']} |")
    print(f"| perturb ({method}, {r['solver_iterations']} iterations) | {r['time_perturb']:.1f} | |")
    print(f"| perturbation-trained network | {r['time_perturbed']:.1f} | {r['epochs_perturbed']} |")
    print(f"| total | {total:.1f} | |")
    print(
        f"\naccuracy on natural data: perturbation-trained {r['acc_perturbed']:.3f}, baseline {r['acc_baseline']:.3f}; "
        f"success {r['success']:.3f}, mean l2 {r['l2']:.3f}"
    )


def bench_quick(dev):
    from lfpcli.commands.synth import synth_sweep

    print("\n## the quick preset\n")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        s = synth_sweep(Path(tmp) / "q.h5", preset="quick", device=str(dev))
        total = time.perf_counter() - t0
    print(f"{s['n_points']} configurations in {total:.0f} s on {dev} ({torch.get_num_threads()} threads)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--what", default="train,batched,config,quick")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--epochs", type=int, default=None, help="epochs per timed training (default 200 on CPU, 500 on CUDA)"
    )
    ap.add_argument("--method", default="pgd-l2")
    ap.add_argument("--dim", type=int, default=None)
    ap.add_argument("--hidden", type=int, default=None)
    ap.add_argument("--n-natural", type=int, default=None)
    ap.add_argument("--n-noise", type=int, default=None)
    args = ap.parse_args()
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    what = set(args.what.split(","))
    epochs = args.epochs or (500 if cuda else 200)
    print(
        f"device {dev} ({torch.cuda.get_device_name(dev) if cuda else f'{torch.get_num_threads()} CPU threads'}), torch {torch.__version__}"
    )
    if "train" in what:
        sizes = [(100, 1000, 100), (500, 1000, 100)] + ([(1000, 10000, 1000), (10000, 10000, 1000)] if cuda else [])
        bench_train(dev, sizes, epochs, args.repeats)
    if "batched" in what:
        sizes = [(20, 100, 16), (100, 300, 100), (500, 1000, 100)] + ([(1000, 10000, 1000)] if cuda else [])
        bench_batched(dev, sizes, 4, epochs, max(1, args.repeats // 2))
    if "config" in what:
        dim = args.dim or (10000 if cuda else 1000)
        bench_config(
            dev,
            dim,
            args.hidden or (1000 if cuda else 200),
            args.n_natural or (1000 if cuda else 100),
            args.n_noise or (10000 if cuda else 1000),
            args.method,
        )
    if "quick" in what:
        bench_quick(dev)


if __name__ == "__main__":
    main()
