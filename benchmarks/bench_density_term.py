"""The cost of pcfe-l0's plausibility term against one forward+backward of the model, as its own ratio.

    python benchmarks/bench_density_term.py [--arch mlp] [--data digits] [--batch 256] [--repeats 50] [--threads 1]

Per solver iteration pcfe-l0 evaluates the model's loss and the density term ``-tau log q(x' | t)`` and their
gradients with respect to ``x'``. This script times, on one batch of training images with wrong-class targets:

- floor: the model's forward and backward with respect to the inputs (what every solver iteration needs);
- each density kind's ``log_prob`` and its backward, in two ways where the estimator has both: every target class
  in one batched product (``fused``, lfp's default) and one product per target class (``grouped``, a Python loop
  over classes, what lfp did before);

and prints each term's time as a ratio to the floor. The runs alternate and the figures are medians. The script
checks that both ways give the same values and gradients.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lfpcli.artifacts.dataspec import resolve
from lfpcli.density import fit_density
from lfpcli.models import build_model
from lfpcli.models.outputs import class_logits
from lfpcli.solvers import choose_targets


def timed(fn, dev) -> float:
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="mlp")
    ap.add_argument("--data", default="digits")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--kinds", default="gmm-full,gmm-diag,kde")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    ds = resolve(a.data)
    tr = ds.split("train")
    model = build_model(a.arch, ds.num_classes, ds.input_shape, ds.mean, ds.std).to(dev).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = tr.x[: a.batch].to(dev)
    t = choose_targets(tr.y[: a.batch], ds.num_classes, "random-other", torch.Generator().manual_seed(0)).to(dev)
    flat_all, y_all = tr.x.flatten(1), tr.y

    def floor() -> None:
        xv = x.clone().requires_grad_()
        torch.autograd.grad(class_logits(model(xv)).gather(1, t[:, None]).sum(), xv)

    terms = {}
    for kind in a.kinds.split(","):
        if kind.startswith("gmm"):
            q = fit_density(
                "gmm", flat_all, y_all, ds.num_classes, seed=0, components=10, covariance=kind.split("-")[1]
            ).to(dev)
        else:
            q = fit_density(kind, flat_all, y_all, ds.num_classes, seed=0).to(dev)
        for mode in ("fused", "grouped"):
            if mode == "grouped" and kind not in ("gmm-full", "kde"):  # the estimators with both ways
                continue

            def term(q=q, mode=mode) -> torch.Tensor:
                q.fused = mode == "fused"
                xv = x.clone().requires_grad_()
                v = q.log_prob(xv.flatten(1), t)
                (g,) = torch.autograd.grad(v.sum(), xv)
                return v.detach(), g

            terms[f"{kind} {mode}"] = term
    # the two ways must agree before their speed means anything
    for kind in a.kinds.split(","):
        if f"{kind} grouped" in terms:
            (v1, g1), (v2, g2) = terms[f"{kind} fused"](), terms[f"{kind} grouped"]()
            assert torch.allclose(v1, v2, rtol=1e-4, atol=1e-3), f"{kind}: fused and grouped values differ"
            assert torch.allclose(g1, g2, rtol=1e-3, atol=1e-3 * float(g2.abs().max())), f"{kind}: gradients differ"
    for fn in [floor, *terms.values()]:  # warm-up
        fn()
    times: dict[str, list[float]] = {"floor": [], **{k: [] for k in terms}}
    for _ in range(a.repeats):
        times["floor"].append(timed(floor, dev))
        for k, fn in terms.items():
            times[k].append(timed(fn, dev))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"{a.arch} on {a.data}, batch {a.batch}, input dimension {x[0].numel()}, {ds.num_classes} classes, "
        f"{a.device}, {a.threads} thread(s), median of {a.repeats}"
    )
    print(f"{'':22s} {'ms':>8s} {'x floor':>8s}")
    for k, v in med.items():
        print(f"{k:22s} {1e3 * v:8.3f} {v / med['floor']:8.2f}")
    for kind in a.kinds.split(","):
        if f"{kind} grouped" in med:
            print(f"{kind}: fused is {med[f'{kind} grouped'] / med[f'{kind} fused']:.2f}x faster than grouped")


if __name__ == "__main__":
    main()
