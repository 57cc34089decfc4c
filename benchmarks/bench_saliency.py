"""Cost of saliency maps for a whole split as a ratio of one forward+backward pass per batch, side by side in one run.

The floor: for every batch of the split, one forward pass and one backward pass of the same model to the input
(the gradient of the target logits w.r.t. the input, parameters frozen): the least any gradient-based map can
cost. Each method then computes its maps for the same split, batch by batch, with the same targets:

- ``maps``: the library call (``lfpcli.attribution.attribute`` per batch: Captum, predictions, the upsampled
  map), everything a map needs;
- ``command`` (with ``--command``): ``lfpcli.saliency`` end to end, which also loads the model and data,
  computes attribution share and pointing game, and writes the HDF5 file.

gradcam, gradient and input-x-gradient should cost about one floor; smoothgrad and integrated-gradients run
``samples`` / ``steps`` passes per image, so their ratio is also shown per pass (``ratio / passes``).

Floor and method runs alternate (floor, method, floor, method, ...) and the ratio is taken per pair, then the
median over pairs: a machine whose speed drifts during the run moves both sides of a pair alike. Compare ratios
only; absolute times vary with the machine and its load.

    python benchmarks/bench_saliency.py [--device cpu|cuda] [--split test] [--batch 256] [--repeats 5]
                                        [--model FILE.pt] [--methods gradcam,gradient,...] [--command]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from lfpcli.artifacts.dataspec import resolve
from lfpcli.attribution import SaliencyConfig, attribute, resolve_layer
from lfpcli.models import build_model
from lfpcli.models.outputs import class_logits


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def clock(fn, device):
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--split", default="test")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--model", default=None, help="an lfp checkpoint (default: an untrained small-cnn on spurious-digits)"
    )
    ap.add_argument("--methods", default="gradcam,gradient,input-x-gradient,smoothgrad,integrated-gradients")
    ap.add_argument("--samples", type=int, default=25, help="smoothgrad noisy copies")
    ap.add_argument("--steps", type=int, default=32, help="integrated-gradients steps")
    ap.add_argument("--command", action="store_true", help="also time lfpcli.saliency end to end (needs --model)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    if args.model:
        from lfpcli.commands.common import load_model

        model, meta = load_model(args.model, dev)
        info = meta["data"]
        ds = resolve(info.get("clean_spec") or info["spec"])
    else:
        ds = resolve("spurious-digits")
        torch.manual_seed(0)
        model = build_model("small-cnn", ds.num_classes, ds.input_shape, ds.mean, ds.std)
    model = model.to(dev).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    sp = ds.split(args.split)
    xs = [sp.x[s : s + args.batch].to(dev) for s in range(0, len(sp), args.batch)]
    ys = [sp.y[s : s + args.batch].to(dev) for s in range(0, len(sp), args.batch)]

    def floor():
        for x, y in zip(xs, ys):
            xv = x.clone().requires_grad_(True)
            score = class_logits(model(xv)).gather(1, y.view(-1, 1)).sum()
            torch.autograd.grad(score, xv)

    print(
        f"{len(sp)} images of {args.split} ({tuple(ds.input_shape)}), batch {args.batch}, {len(xs)} batches, "
        f"device {dev}, {torch.get_num_threads()} threads, {args.repeats} alternating pairs"
    )
    print(
        f"{'method':22s} {'what':8s} {'floor s':>8s} {'method s':>9s} {'ratio':>6s} {'passes':>6s} {'ratio/pass':>10s}"
    )
    for method in [m for m in args.methods.split(",") if m]:
        kw = (
            {"samples": args.samples}
            if method == "smoothgrad"
            else {"steps": args.steps}
            if method == "integrated-gradients"
            else {}
        )
        cfg = SaliencyConfig(method=method, **kw)
        layer = resolve_layer(model, None, tuple(ds.input_shape), device=dev)[0] if method == "gradcam" else None
        passes = {"smoothgrad": args.samples, "integrated-gradients": args.steps}.get(method, 1)

        def maps():
            for b, (x, y) in enumerate(zip(xs, ys)):
                attribute(model, x, y, cfg, layer=layer, keys=torch.arange(len(x)) + b * args.batch)

        runs = [("maps", maps)]
        if args.command and args.model:
            tmp = Path(tempfile.mkdtemp())
            from lfpcli.commands.saliency import saliency

            def command():
                saliency(
                    tmp / "maps.h5",
                    models=[args.model],
                    split=args.split,
                    method=method,
                    target="label",
                    batch_size=args.batch,
                    device=str(dev),
                    force=True,
                    **kw,
                )

            runs.append(("command", command))
        for what, fn in runs:
            floor(), fn()  # warm-up
            pairs = [(clock(floor, dev), clock(fn, dev)) for _ in range(args.repeats)]
            ratio = statistics.median(m / f for f, m in pairs)
            f_med, m_med = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
            print(f"{method:22s} {what:8s} {f_med:8.3f} {m_med:9.3f} {ratio:6.2f} {passes:6d} {ratio / passes:10.2f}")


if __name__ == "__main__":
    main()
