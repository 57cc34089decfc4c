"""``lfp perturb``: push every sample of a split toward a target label with a solver; write a perturbed set."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import torch

from lfpcli import distributed
from lfpcli.artifacts import check_output, make_record, parent_entry
from lfpcli.artifacts.datasets import PerturbedSetWriter, dataset_meta
from lfpcli.artifacts.dataspec import resolve
from lfpcli.artifacts.resume import Sidecar, run_fingerprint
from lfpcli.commands.common import (
    ForeignOptions,
    check_compatible,
    check_positive_int,
    check_seed,
    data_parent,
    load_model,
    model_parent,
    resolve_device,
    resolve_recorded_data,
    summarize,
)
from lfpcli.commands.log_density import evaluation_density
from lfpcli.errors import ConfigError, InputError, Interrupted
from lfpcli.precision import auto_batch_size, input_gradient_step, prepare_model, resolve_execution
from lfpcli.progress import Progress, no_progress, scaled
from lfpcli.solvers import TARGET_RULES, choose_targets, get_solver, make_config, norms


def load_mask(path: str | Path, input_shape: tuple[int, ...]) -> tuple[torch.Tensor, dict[str, Any]]:
    """A ``.npy`` mask (bool or 0/1, broadcastable to one input) as a bool tensor, read without pickles."""
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise InputError(f"mask file {p} does not exist")
    try:
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError):
        raise InputError(f"{p} is not a .npy array file (save the mask with numpy.save)") from None
    if arr.dtype.kind not in "biuf" or not np.isin(arr, (0, 1)).all():
        raise InputError(f"mask {p} must hold only 0/1 or True/False values")
    try:
        fits = np.broadcast_shapes(arr.shape, tuple(input_shape)) == tuple(input_shape)
    except ValueError:
        fits = False
    if not fits:
        raise InputError(f"mask {p} has shape {arr.shape}, which does not broadcast to the inputs {tuple(input_shape)}")
    m = torch.from_numpy(arr.astype(bool))
    return m, {"path": str(p), "shape": list(arr.shape), "allowed": int(np.broadcast_to(arr, input_shape).sum())}


#: Samples per batch on a CPU when --batch-size is not given.
CPU_BATCH = 256


def solver_batch_size(net: torch.nn.Module, input_shape: tuple[int, ...], device: torch.device, n: int) -> int:
    """``CPU_BATCH`` on a CPU; on CUDA a quarter of the largest batch whose forward+backward fits (a solver keeps
    several copies of the batch and its gradients besides the model's activations), at most ``n``."""
    if device.type != "cuda":
        return CPU_BATCH
    return max(
        1,
        auto_batch_size(input_gradient_step(net, input_shape, device), device=device, limit=max(1, 4 * n), headroom=1.0)
        // 4,
    )


def batch_seed(seed: int, batch: int) -> int:
    """The seed of batch ``batch``'s solver generator (random starts, noise initialisations)."""
    return ((seed + 1) * 1_000_003 + batch) % (2**63)


def perturb(
    out: str | Path,
    *,
    model: str | Path,
    method: str = "pgd-l2",
    data: str | None = None,
    split: str = "train",
    targets: str = "random",
    params: dict[str, Any] | None = None,
    density: str | None = None,
    mask: str | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    limit: int | None = None,
    device: str = "auto",
    precision: str = "fp32",
    channels_last: str = "auto",
    compile: bool = False,
    force: bool = False,
    resume: bool = False,
    normalize: str | None = None,
    arch: str | None = None,
    arch_args: dict[str, Any] | None = None,
    progress: Progress = no_progress,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Perturb ``split`` of the model's data (or ``data``) toward targets chosen by ``targets``.

    Method parameters: ``params`` (e.g. ``{"eps": 2.0, "steps": 30}``), then the data spec's defaults for the
    method, then the solver's defaults. ``density`` (pcfe-l0 only): a density file from ``lfp density``, or a
    kind (``kde``, ``gmm``, ``knn``, ``feature-kde``, ...) fitted now on the model's clean training split; it
    supplies the plausibility term ``-tau * log q(x' | t)``. Left out, pcfe-l0 uses the data's default
    (``default_density``); ``"none"`` drops the term (plain S-CFE). Every perturbed set also stores
    ``metrics/log_density`` under the data spec's fixed evaluation estimator (``lfpcli.commands.log_density``). ``mask`` (pcfe-l0 only): a ``.npy`` file of 0/1 or
    bool values, shape broadcastable to one input (C, H, W), marking the input values allowed to change. Writes ``out`` batch by batch, so memory is bounded by the batch.
    Each finished batch is also kept in ``OUT.resume/`` until the output is complete; ``resume=True`` finishes
    an interrupted run of the same command from there (the same tensors as an uninterrupted run), a different
    command is refused; without it, leftover progress is an error unless ``force`` starts over.

    ``precision``, ``channels_last``, ``compile`` (:mod:`lfpcli.precision`): how the model's forward and backward
    run inside the solver (its success is judged there too); perturbations and density terms stay float32.
    ``batch_size`` None: 256 on a CPU; on CUDA a quarter of the largest batch whose forward and backward fit, found by
    doubling (:func:`solver_batch_size`).

    ``model`` may also be a model file lfp did not write (TorchScript, a torch.export program, a state dict with
    ``arch``/``arch_args``): then ``data`` and ``normalize`` are required (:mod:`lfpcli.commands.foreign`).
    """
    check_output(out, force, (".h5", ".hdf5"))
    check_seed(seed)
    if batch_size is not None:
        check_positive_int("batch-size", batch_size)
    if limit is not None:
        check_positive_int("limit", limit)
    if targets not in TARGET_RULES:
        raise ConfigError(f"unknown --targets rule '{targets}'; choose one of {', '.join(TARGET_RULES)}")
    spec = get_solver(method)
    dev = resolve_device(device)
    net, meta = load_model(model, dev, ForeignOptions(data, normalize, arch, arch_args))
    ds = (
        resolve(data, progress=progress)
        if data is not None
        else resolve_recorded_data(meta["data"]["spec"], model, progress)
    )
    check_compatible(meta, ds, f"{model} on {data or 'its training data'}")
    sp = ds.split(split)
    n = len(sp) if limit is None else min(limit, len(sp))
    ex = resolve_execution(dev, precision, channels_last, compile, net)
    solver_net = prepare_model(net, ex)
    batch_from = (
        "--batch-size" if batch_size is not None else ("default on CPU" if dev.type != "cuda" else "largest that fits")
    )
    if batch_size is None:
        batch_size = solver_batch_size(solver_net, ds.input_shape, dev, n)
        batch_size = distributed.world().smallest(batch_size)  # under torchrun: one that every rank's GPU fits
    defaults = ds.perturb_defaults.get(method, {})
    given = {k: v for k, v in (params or {}).items() if v is not None}
    cfg = make_config(method, {**{k: v for k, v in defaults.items() if k in spec.params()}, **given})
    solver_kw: dict[str, Any] = {}
    density_info = None
    extra_parents = []
    chosen_by = "--density"
    if density is None and method == "pcfe-l0":
        from lfpcli.commands.density import default_density

        density, chosen_by = default_density(ds), "default for this data"
    if density is not None and density != "none":
        if method != "pcfe-l0":
            raise ConfigError(f"--density applies to --method pcfe-l0 only, not {method}")
        from lfpcli.commands.density import plausibility_from

        fn, density_info, extra_parents = plausibility_from(density, net, meta, model, dev, seed, progress=progress)
        density_info["chosen_by"] = chosen_by
        solver_kw["plausibility"] = fn
        if cfg.tau is None:
            cfg = dataclasses.replace(cfg, tau=density_info["plausibility_weight"])
            density_info["tau_from"] = "the density's plausibility_weight (no --tau given)"
    mask_info = None
    if mask is not None:
        if method != "pcfe-l0":
            raise ConfigError(f"--mask applies to --method pcfe-l0 only, not {method}")
        solver_kw["mask"], mask_info = load_mask(mask, ds.input_shape)
        extra_parents.append(parent_entry("mask", mask, "mask"))
    gen = torch.Generator().manual_seed(seed)
    tgt_all = choose_targets(sp.y[:n], ds.num_classes, targets, gen)
    run_params = {
        "method": method,
        "config": cfg.to_dict(),
        "targets": targets,
        "density": density_info,
        "mask": mask_info,
        "split": split,
        "data": ds.spec,
        "seed": seed,
        "batch_size": batch_size,
        "batch_size_from": batch_from,
        "limit": limit,
        "device": device,
        "execution": ex.to_dict(),
        "defaults_from": ds.spec.get("name", ds.spec.get("path")) if defaults else None,
    }
    parents = [model_parent(model, meta)] + data_parent(ds.spec) + extra_parents
    log_density, log_density_info = evaluation_density(ds, dev, progress)
    sums = {
        k: [] for k in ("success", "l0", "l2", "linf", "loss", "iterations", "grad_evals", "log_density", "skipped")
    }
    # one bar for the whole run, in solver iterations, so its rate and time estimate hold across batches
    iters = cfg.steps * getattr(cfg, "search_steps", 1)
    total_batches = math.ceil(n / batch_size)
    stage = f"{method} on {n} sample{'s' if n != 1 else ''}"
    # finished batches are kept beside the output, so that a killed run finishes with --resume
    sidecar = distributed.shared_sidecar(
        lambda: Sidecar(out, run_fingerprint("perturb", run_params, parents, dev), resume=resume, force=force),
        lambda: Sidecar.attach(out),
    )
    # the batches the bar counts as done: those a resumed run finds kept come first, so that the bar opens there and
    # its rate and time left count only the work of this run
    counted = {b for b in range(total_batches) if sidecar.has(f"batch-{b:06d}")}
    progress(stage, len(counted) * iters, total_batches * iters, unit="iter")

    def solve(b: int, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Solve batch ``b`` (inputs ``x``) and keep it in the sidecar."""
        start, stop = b * batch_size, min((b + 1) * batch_size, n)
        t = tgt_all[start:stop]
        x = x.to(dev)
        tick = scaled(
            progress, stage, len(counted) * iters, total_batches * iters, unit="iter", batch=f"{b + 1}/{total_batches}"
        )
        # one generator per batch, a function of the seed and the batch alone: a resumed run draws the same
        res = spec.fn(
            solver_net,
            x,
            t.to(dev),
            cfg,
            generator=torch.Generator().manual_seed(batch_seed(seed, b)),
            progress=tick,
            **solver_kw,
        )
        metrics = {
            "success": res.success,
            "loss": res.loss,
            "iterations": res.iterations,
            "grad_evals": res.grad_evals,
            **norms(res.x - x),
            "skipped": res.extras.get("skipped", torch.zeros_like(res.success)),
            "log_density": log_density(res.x, t.to(dev), sp.index[start:stop] if split == "train" else None),
        }
        sidecar.save(f"batch-{b:06d}", {"x": res.x, "metrics": metrics})
        counted.add(b)
        return res.x, metrics

    def kept() -> int:
        return sum(sidecar.has(f"batch-{b:06d}") for b in range(total_batches))

    # under torchrun each rank solves its share of the batches into the sidecar; rank 0 alone then writes them all
    with sidecar:
        try:
            writes = distributed.solve_shares(
                lambda b: sidecar.has(f"batch-{b:06d}"),
                total_batches,
                solve,
                lambda todo: sp.read_ahead(todo, batch_size, n),
            )
        except KeyboardInterrupt:  # the batches every rank finished so far are kept, whichever rank solved them
            raise Interrupted(sidecar.interrupted(kept(), total_batches, "batches")) from None
    if not writes:
        return {"out": str(out), "kind": "perturbed-set", "rank": distributed.world().rank}
    with sidecar, PerturbedSetWriter(out, n, ds.input_shape, force=force) as w:
        reached = 0
        # the inputs of the batches still to do, read ahead (by DataLoader workers where the data decodes images)
        inputs = sp.read_ahead([b for b in range(total_batches) if not sidecar.has(f"batch-{b:06d}")], batch_size, n)
        try:
            for b, start in enumerate(range(0, n, batch_size)):
                stop = min(start + batch_size, n)
                t = tgt_all[start:stop]
                unit = f"batch-{b:06d}"
                if sidecar.has(unit):
                    done = sidecar.load(unit)
                    x_new, metrics = done["x"], done["metrics"]
                else:
                    x_new, metrics = solve(b, next(inputs))
                counted.add(b)  # under torchrun: batches the other ranks solved
                w.add(x_new, sp.y[start:stop], t, sp.group[start:stop], sp.index[start:stop], metrics)
                for k in sums:
                    sums[k].append(metrics[k].detach().cpu())
                reached += int(sums["success"][-1].sum())
                progress(
                    stage,
                    len(counted) * iters,
                    total_batches * iters,
                    unit="iter",
                    batch=f"{b + 1}/{total_batches}",
                    reached=f"{reached}/{stop}",
                )
        except KeyboardInterrupt:
            raise Interrupted(sidecar.interrupted(kept(), total_batches, "batches")) from None
        cat = {k: torch.cat(v) if v else torch.zeros(0) for k, v in sums.items()}
        y = sp.y[:n]
        summary = {
            "n": n,
            "success_rate": float(cat["success"].double().mean()) if n else None,
            "target_kept_label_rate": float((tgt_all == y).double().mean()) if n else None,
            "target_counts": torch.bincount(tgt_all, minlength=ds.num_classes).tolist(),
            "skipped": int(cat["skipped"].sum()),
            **{k: summarize(cat[k]) for k in ("l0", "l2", "linf", "loss", "iterations", "grad_evals", "log_density")},
        }
        w.set_attr("metrics/log_density", "estimator", log_density_info["name"])
        w.record = make_record(
            "perturbed-set",
            run_params,
            seeds={"seed": seed, "targets_seed": seed, "solver_seeds": "batch b: (seed + 1) * 1000003 + b"},
            parents=parents,
            device=dev,
            argv=argv,
            source={
                "model": meta["model"],
                "init": meta.get("init"),
                "train": {k: v for k, v in (meta.get("train") or {}).items() if k != "history"},
                "model_params": {
                    k: meta["params"].get(k)
                    for k in ("arch", "arch_args", "weights", "recipe")
                    if k in meta.get("params", {})
                },
                "dataset": dataset_meta(ds),
            },
            summary=summary,
            log_density_estimator=log_density_info,
            **distributed.world().provenance(),
        )
    sidecar.finish()
    return {
        "out": str(out),
        "kind": "perturbed-set",
        "method": method,
        "config": cfg.to_dict(),
        "fixed": sorted(spec.fixed),
        "targets": targets,
        "split": split,
        "device": str(dev),
        "density": density_info,
        "mask": mask_info,
        "log_density_estimator": log_density_info["name"],
        **summary,
    }
