"""``lfp train``: fit a classifier on a data spec and write a self-describing checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lfpcli import distributed
from lfpcli.artifacts import check_output, load_checkpoint, make_record, parent_entry, save_checkpoint, sha256_file
from lfpcli.artifacts.dataspec import resolve
from lfpcli.artifacts.resume import Sidecar, run_fingerprint
from lfpcli.commands.common import (
    check_seed,
    clean_metrics,
    data_parent,
    model_meta,
    resolve_device,
)
from lfpcli.data import Dataset
from lfpcli.errors import ConfigError, Interrupted
from lfpcli.models import build_model
from lfpcli.models.pretrained import resolve_weights
from lfpcli.models.registry import arch_defaults, parse_arch_args
from lfpcli.models.transfer import transfer_features
from lfpcli.precision import resolve_execution
from lfpcli.progress import Progress, no_progress
from lfpcli.training import TrainConfig, train_model


def check_save_every(seconds: float) -> None:
    if not (seconds >= 0) or seconds == float("inf"):
        raise ConfigError(f"--save-every must be a number of seconds >= 0, got {seconds}")


def pretrained_checkpoint(
    weights: str | Path, arch: str, ds: Dataset
) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """``(state_dict, model meta)`` when ``weights`` is an lfp checkpoint (a model to fine-tune: every tensor but its
    head is copied), else None (a torchvision state dict for the architecture's own ``weights`` option). The
    checkpoint must be of ``arch`` and of inputs shaped as ``ds``'s."""
    from lfpcli.artifacts.foreign_model import sniff_model_file

    if sniff_model_file(weights).kind != "checkpoint":
        return None
    sd, meta = load_checkpoint(weights)
    src = meta.get("model") or {}
    if src.get("arch") != arch:
        raise ConfigError(
            f"--weights {weights} is an lfp checkpoint of a {src.get('arch')}, not a {arch}: give --arch {src.get('arch')}"
        )
    if tuple(src.get("input_shape") or ()) != tuple(ds.input_shape):
        raise ConfigError(
            f"--weights {weights} was trained on inputs of shape {tuple(src.get('input_shape') or ())}; "
            f"this data's are {tuple(ds.input_shape)}"
        )
    return sd, src


def fit_and_save(
    out: str | Path,
    *,
    ds: Dataset,
    arch: str,
    arch_args: dict[str, Any],
    weights: str | None,
    cfg: TrainConfig,
    recipe: str | None,
    seed: int,
    device: torch.device,
    force: bool,
    params: dict[str, Any],
    parents: list[dict[str, Any]],
    clean: Dataset,
    progress: Progress,
    output: str = "logits",
    argv: list[str] | None,
    extra: dict[str, Any] | None = None,
    resume: bool = False,
    save_every: float = 60.0,
    execution: dict[str, Any] | None = None,
    pretrained: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build a fresh model, train it on ``ds``, score it on the clean data ``clean``, write the checkpoint.

    The training state is kept in ``OUT.resume/`` (after an epoch, at most every ``save_every`` seconds) until the
    checkpoint is written; ``resume`` continues an interrupted run of the same command from there. ``execution``:
    ``precision``, ``channels_last``, ``compile`` (:func:`lfpcli.precision.resolve_execution`). ``pretrained``: which
    torchvision weights the ``weights`` file is (:func:`lfpcli.models.pretrained.resolve_weights`), recorded in ``init``."""
    torch.manual_seed(seed)
    init: dict[str, Any] = {"type": "scratch", "seed": seed}
    build_args = dict(arch_args)
    mean, std = ds.mean, ds.std
    source = pretrained_checkpoint(weights, arch, ds) if weights else None
    if source is not None:
        src_sd, src_model = source
        arch_args = {**{k: v for k, v in (src_model.get("arch_args") or {}).items() if k != "weights"}, **arch_args}
        build_args = dict(arch_args)
        mean, std = src_model["mean"], src_model["std"]  # the normalisation its features were learnt with
    elif weights:
        build_args["weights"] = weights
    model = build_model(arch, ds.num_classes, ds.input_shape, mean, std, output=output, **build_args)
    if source is not None:
        transfer_features(model, source[0], f"--weights {weights}")
    if weights:
        init = {
            "type": "pretrained",
            "format": "lfp-checkpoint" if source is not None else "state-dict",
            "path": str(weights),
            "abspath": str(Path(weights).resolve()),
            "sha256": sha256_file(weights),
            "seed": seed,
        }
        parents = parents + [parent_entry("weights", weights, "checkpoint" if source is not None else "weights")]
    if weights and pretrained:
        init["pretrained"] = pretrained
    ex = resolve_execution(device, model=model, **(execution or {}))
    params = {**params, "execution": ex.to_dict()}
    val = ds.splits.get("val")
    sidecar = distributed.shared_sidecar(
        lambda: Sidecar(out, run_fingerprint("train", params, parents, device), resume=resume, force=force),
        lambda: Sidecar.attach(out),
    )
    try:
        with sidecar:
            result = train_model(
                model,
                ds.splits["train"],
                cfg,
                device=device,
                seed=seed,
                val=val,
                group_names=ds.group_names,
                progress=progress,
                sidecar=sidecar,
                save_every=save_every,
                execution=ex,
            )
    except KeyboardInterrupt:
        kept = sidecar.load("train-state")["epoch"] if sidecar.has("train-state") else 0
        raise Interrupted(sidecar.interrupted(kept, cfg.epochs, "epochs")) from None
    if not distributed.world().main:  # under torchrun rank 0 scores the model and writes the checkpoint
        return {"out": str(out), "kind": "checkpoint", "rank": distributed.world().rank}
    metrics = clean_metrics(model, clean, device, progress=progress)
    record = make_record(
        "checkpoint",
        params,
        seeds={"seed": seed},
        parents=parents,
        device=device,
        argv=argv,
        model=model_meta(
            {
                "arch": arch,
                "arch_args": {**arch_defaults(arch), **arch_args, "weights": None},
                "num_classes": ds.num_classes,
                "input_shape": list(ds.input_shape),
                "mean": mean,
                "std": std,
                "output": output,
            }
        ),
        init=init,
        data=ds.info(),
        train={
            "config": cfg.to_dict(),
            "recipe": recipe,
            "history": result.history,
            "selected_epoch": result.selected_epoch,
            "minibatch_order": "epoch e: a generator seeded (seed * 1000003 + e)",
        },
        metrics=metrics,
        **(extra or {}),
        **distributed.world().provenance(),
    )
    save_checkpoint(out, model.state_dict(), record, force=force)
    sidecar.finish()
    return {
        "out": str(out),
        "kind": "checkpoint",
        "arch": arch,
        "data": ds.spec,
        "epochs": cfg.epochs,
        "selected_epoch": result.selected_epoch,
        "history": result.history,
        "metrics": metrics,
        "device": str(device),
    }


def train(
    out: str | Path,
    *,
    data: str | dict[str, Any] = "spurious-digits",
    arch: str = "small-cnn",
    arch_args: dict[str, Any] | None = None,
    weights: str | None = None,
    recipe: str | None = None,
    epochs: int | None = None,
    optimizer: str | None = None,
    lr: float | None = None,
    momentum: float | None = None,
    weight_decay: float | None = None,
    nesterov: bool | None = None,
    batch_size: int | None = None,
    schedule: str | None = None,
    select: str | None = None,
    loss: str | None = None,
    balance: str | None = None,
    output: str = "logits",
    seed: int = 0,
    device: str = "auto",
    force: bool = False,
    resume: bool = False,
    save_every: float = 60.0,
    precision: str = "fp32",
    channels_last: str = "auto",
    compile: bool = False,
    progress: Progress = no_progress,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Train ``arch`` on ``data`` and write the checkpoint ``out``; returns a summary dict.

    Training settings come from the explicit arguments, then ``recipe``, then the data spec's defaults.
    ``output="scalar"`` builds a one-logit model for a two-class task (labels read as -1/+1); its ``loss`` is
    ``logistic`` (the default for it) or ``exponential``.
    """
    check_output(out, force, (".pt", ".pth", ".ckpt"))
    check_seed(seed)
    check_save_every(save_every)
    dev = resolve_device(device)
    arch_args = parse_arch_args(arch, arch_args)
    # a torchvision weights name becomes its file in torch's hub cache (fetched when absent); params keep the name
    weights_file, pretrained = resolve_weights(weights, arch, progress=progress) if weights else (None, None)
    ds = resolve(data, progress=progress)
    given = dict(
        epochs=epochs,
        optimizer=optimizer,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        nesterov=nesterov,
        batch_size=batch_size,
        schedule=schedule,
        select=select,
        loss=loss if loss is not None or output != "scalar" else "logistic",
        balance=balance,
    )
    cfg = TrainConfig.resolve(given, recipe=recipe, base=ds.train_defaults)
    params = {
        "data": ds.spec,
        "arch": arch,
        "arch_args": arch_args,
        "weights": weights,
        "recipe": recipe,
        **cfg.to_dict(),
        "output": output,
        "seed": seed,
        "device": device,
    }
    clean = resolve(ds.clean_spec, progress=progress) if ds.clean_spec else ds
    return fit_and_save(
        out,
        ds=ds,
        arch=arch,
        arch_args=arch_args,
        weights=weights_file,
        pretrained=pretrained,
        cfg=cfg,
        recipe=recipe,
        seed=seed,
        device=dev,
        force=force,
        params=params,
        parents=data_parent(ds.spec),
        clean=clean,
        progress=progress,
        argv=argv,
        output=output,
        resume=resume,
        save_every=save_every,
        execution={"precision": precision, "channels_last": channels_last, "compile": compile},
    )
