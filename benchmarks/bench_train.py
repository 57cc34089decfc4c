"""Cost of `lfp train` and `lfp retrain` as a ratio of the bare training step, side by side in one run.

The floor is the least a training epoch can cost: for the same minibatches (same size, same shuffled order), the
same model and the same optimizer, for the same number of epochs (``--epochs``), only ``forward -> cross-entropy -> zero_grad -> backward -> step`` on inputs
already in memory on the device. Each measured run then trains the same epochs of the same data:

- ``loop``: ``lfpcli.training.train_model`` without validation (the library's loop: per-epoch seeded shuffling,
  progress hooks, the loss sums kept on the device, selection bookkeeping, the state dict copied at the end);
- ``loop+val``: the same with the validation split scored after the epoch and ``--select val-worst-group``
  (what `lfp train` does by default on data with a validation split);
- ``train`` (command): ``lfpcli.commands.train`` end to end (data resolved, model built, trained,
  train/val/test evaluated, the checkpoint written atomically with its provenance);
- ``retrain`` (command): ``lfpcli.commands.retrain`` on a perturbed set of the same training images,
  against a floor on that set's data.

A command's fixed costs (reading data, evaluating train/val/test once, writing the checkpoint) weigh less the more
epochs it trains: ``--epochs 15`` is lfp's default.

Floor and runs alternate (floor, run, floor, run, ...); each pair gives a ratio and the figure is the median over
pairs, so a machine whose speed drifts moves both sides of a pair alike. Compare ratios only.

    python benchmarks/bench_train.py [--data spurious-digits:train_copies=1] [--arch small-cnn] [--batch 64]
                                     [--epochs 1] [--repeats 5] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from lfpcli.artifacts.dataspec import resolve
from lfpcli.commands.perturb import perturb
from lfpcli.commands.retrain import retrain
from lfpcli.commands.train import train
from lfpcli.models import build_model
from lfpcli.training.config import TrainConfig
from lfpcli.training.loop import epoch_seed, make_optimizer, train_model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def floor_run(ds, x: torch.Tensor, y: torch.Tensor, arch: str, cfg: TrainConfig, seed: int, device) -> None:
    """``cfg.epochs`` epochs of bare steps on ``x``/``y`` already on ``device``, in the order ``train_model`` draws."""
    torch.manual_seed(seed)
    model = build_model(arch, ds.num_classes, ds.input_shape, ds.mean, ds.std).to(device).train()
    opt = make_optimizer(model, cfg)
    for epoch in range(1, cfg.epochs + 1):
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(epoch_seed(seed, epoch))).to(device)
        for i in range(0, len(y), cfg.batch_size):
            b = order[i : i + cfg.batch_size]
            loss = torch.nn.functional.cross_entropy(model(x[b]), y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="spurious-digits:train_copies=1")
    ap.add_argument("--arch", default="small-cnn")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    ds = resolve(a.data)
    tr, va = ds.split("train"), ds.split("val")
    groups = list(ds.group_names) if ds.group_names else None
    cfg = TrainConfig(epochs=a.epochs, batch_size=a.batch)
    cfg_val = TrainConfig(epochs=a.epochs, batch_size=a.batch, select="val-worst-group" if groups else "val-accuracy")
    x, y = tr.x.to(device), tr.y.to(device)
    common = {"arch": a.arch, "epochs": a.epochs, "batch_size": a.batch, "seed": 0, "device": a.device, "force": True}

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # the retrain run's input: the same training images perturbed (2 PGD steps: its cost is not measured here)
        train(tmp / "src.pt", data=a.data, **{**common, "epochs": 1})
        perturb(tmp / "pgd.h5", model=tmp / "src.pt", method="pgd-l2", params={"steps": 2}, device=a.device, force=True)
        import h5py

        with h5py.File(tmp / "pgd.h5", "r") as f:
            px = torch.from_numpy(f["x"][...]).to(device)
            py = torch.from_numpy(f["target"][...]).long().to(device)

        def lib_loop(with_val: bool):
            def run():
                torch.manual_seed(0)
                model = build_model(a.arch, ds.num_classes, ds.input_shape, ds.mean, ds.std)
                train_model(
                    model,
                    tr,
                    cfg_val if with_val else cfg,
                    device=device,
                    seed=0,
                    val=va if with_val else None,
                    group_names=groups,
                )

            return run

        runs = {
            "loop": (lambda: floor_run(ds, x, y, a.arch, cfg, 0, device), lib_loop(False), len(tr)),
            "loop+val": (lambda: floor_run(ds, x, y, a.arch, cfg, 0, device), lib_loop(True), len(tr)),
            "train (command)": (
                lambda: floor_run(ds, x, y, a.arch, cfg, 0, device),
                lambda: train(tmp / "t.pt", data=a.data, **common),
                len(tr),
            ),
            "retrain (command)": (
                lambda: floor_run(ds, px, py, a.arch, cfg, 0, device),
                lambda: retrain(
                    tmp / "r.pt",
                    perturbed=tmp / "pgd.h5",
                    epochs=a.epochs,
                    batch_size=a.batch,
                    seed=0,
                    device=a.device,
                    force=True,
                ),
                len(py),
            ),
        }
        print(
            f"{a.data}, {a.arch}, batch {a.batch}, {a.epochs} epoch(s), {a.threads} thread(s), {device.type}, "
            f"median of {a.repeats} pairs"
        )
        print("| run | samples | floor s | run s | x floor |")
        print("|---|---|---|---|---|")
        for name, (floor, run, n) in runs.items():
            floor()
            run()  # warm-up: first-call costs (allocator, lazy imports) are not per epoch
            ratios, ft, rt = [], [], []
            for _ in range(a.repeats):
                f = timed(floor, device)
                r = timed(run, device)
                ratios.append(r / f)
                ft.append(f)
                rt.append(r)
            print(
                f"| {name} | {n} | {statistics.median(ft):.2f} | {statistics.median(rt):.2f} | "
                f"{statistics.median(ratios):.2f} |"
            )


if __name__ == "__main__":
    main()
