"""``lfp retrain``: train a *fresh* model on a perturbed set alone, labelled with its target labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lfpcli.artifacts import check_output, parent_entry, parent_warnings
from lfpcli.artifacts.datasets import open_perturbed_set
from lfpcli.artifacts.dataspec import load_perturbed_as_dataset, resolve
from lfpcli.artifacts.provenance import locate_parent
from lfpcli.commands.common import check_seed, resolve_device, warn
from lfpcli.commands.train import check_save_every, fit_and_save
from lfpcli.errors import ConfigError, InputError
from lfpcli.models.pretrained import resolve_weights
from lfpcli.models.registry import parse_arch_args
from lfpcli.progress import Progress, no_progress
from lfpcli.training import TrainConfig

INITS = ("auto", "scratch", "pretrained")


def retrain(
    out: str | Path,
    *,
    perturbed: str | Path,
    arch: str | None = None,
    arch_args: dict[str, Any] | None = None,
    init: str = "auto",
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
    """Train a new model on ``perturbed`` (inputs = perturbed images, labels = targets).

    Never initialised from the model that made the perturbations: ``init="auto"`` starts from scratch or
    from the same pretrained weights file the source model started from; ``scratch`` / ``pretrained``
    force one. Architecture and training settings default to the source model's; model selection
    (``select``) and the reported metrics use the clean source data with its true labels. A scalar-output
    source model gives a scalar-output retrained model. A perturbed set made with a model lfp did not write
    records it as ``foreign``: from a state dict the architecture is the one it was read into; from TorchScript or
    an exported program lfp cannot rebuild one, so ``arch`` is required (training settings: the data's defaults).
    """
    check_output(out, force, (".pt", ".pth", ".ckpt"))
    check_seed(seed)
    check_save_every(save_every)
    if init not in INITS:
        raise ConfigError(f"--init must be one of {', '.join(INITS)}, got '{init}'")
    dev = resolve_device(device)
    record = open_perturbed_set(perturbed, lazy=True).record
    for msg in parent_warnings(record, perturbed):
        warn(msg)
    source = record.get("source") or {}
    src_model = source.get("model") or {}
    src_init = source.get("init") or {"type": "scratch"}
    foreign = src_model.get("foreign") or {}
    if arch is None and foreign.get("format") in ("torchscript", "torch-export"):
        from lfpcli.models import list_models

        what = "TorchScript model" if foreign["format"] == "torchscript" else "torch.export program"
        raise ConfigError(
            f"{perturbed} was made with a {what} lfp did not train ({foreign.get('path')}), whose architecture "
            f"lfp cannot rebuild: give --arch for the fresh model (one of {', '.join(list_models())})"
        )
    arch = arch or src_model.get("arch")
    if not arch:
        raise InputError(f"{perturbed} does not record its source architecture; give --arch")
    if arch == src_model.get("arch"):
        # the source's architecture options, each --arch-arg overriding its own key only
        arch_args = {
            **{k: v for k, v in (src_model.get("arch_args") or {}).items() if k != "weights"},
            **(arch_args or {}),
        }
    arch_args = parse_arch_args(arch, arch_args)
    if weights is None and init in ("auto", "pretrained") and src_init.get("type") == "pretrained":
        found = locate_parent(src_init, perturbed)
        if found is None:
            raise InputError(
                f"the source model started from pretrained weights {src_init.get('path')}, which are not there; "
                f"give --weights FILE or --init scratch"
            )
        weights = str(found)
    if init == "pretrained" and weights is None:
        raise ConfigError("--init pretrained needs --weights FILE (the source model was trained from scratch)")
    if init == "scratch":
        weights = None
    # a torchvision weights name becomes its file in torch's hub cache (fetched when absent)
    weights_file, pretrained = resolve_weights(weights, arch, progress=progress) if weights else (None, None)
    ds = load_perturbed_as_dataset(perturbed, progress=progress)
    clean = ds.clean_data if ds.clean_data is not None else resolve(ds.clean_spec, progress=progress)
    src_cfg = (source.get("train") or {}).get("config") or {}
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
        loss=loss,
        balance=balance,
    )
    cfg = TrainConfig.resolve(given, recipe=recipe, base=src_cfg or ds.train_defaults)
    params = {
        "perturbed": str(perturbed),
        "data": ds.spec,
        "arch": arch,
        "arch_args": arch_args,
        "init": init,
        "weights": weights,
        "recipe": recipe,
        **cfg.to_dict(),
        "seed": seed,
        "device": device,
        "settings_from": "source model" if src_cfg else "data defaults",
    }
    parents = [parent_entry("perturbed", perturbed, "perturbed-set")]
    summary = fit_and_save(
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
        parents=parents,
        clean=clean,
        progress=progress,
        argv=argv,
        output=src_model.get("output", "logits"),
        resume=resume,
        save_every=save_every,
        execution={"precision": precision, "channels_last": channels_last, "compile": compile},
        extra={
            "perturbation": {
                "method": record["params"].get("method"),
                "targets": record["params"].get("targets"),
                "config": record["params"].get("config"),
            }
        },
    )
    return {**summary, "perturbed": str(perturbed), "method": record["params"].get("method")}
