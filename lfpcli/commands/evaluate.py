"""``lfp eval``: clean accuracy, per-group and worst-group accuracy; or accuracy on a perturbed set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from lfpcli.artifacts import check_output, make_record, parent_entry, save_json_artifact
from lfpcli.artifacts.datasets import open_perturbed_set
from lfpcli.artifacts.dataspec import resolve
from lfpcli.artifacts.h5 import open_h5
from lfpcli.commands.common import (
    ForeignOptions,
    check_compatible,
    check_positive_int,
    clean_metrics,
    data_parent,
    load_model,
    model_parent,
    resolve_device,
    resolve_recorded_data,
    summarize,
)
from lfpcli.data import SPLITS
from lfpcli.errors import ConfigError, InputError
from lfpcli.models.outputs import class_logits
from lfpcli.progress import Progress, no_progress
from lfpcli.report.provenance import chain_summary


def _is_perturbed_file(data: str | None) -> bool:
    if data is None or not Path(data).is_file():
        return False
    try:
        f, record = open_h5(data)
    except InputError:
        return False
    f.close()
    return record.get("kind") == "perturbed-set"


@torch.no_grad()
def _perturbed_report(net, meta, path, device, batch_size, progress: Progress = no_progress) -> dict[str, Any]:
    ps = open_perturbed_set(path)
    record, stored = ps.record, ps.metrics
    src = record["source"]["dataset"]
    m = meta["model"]
    if tuple(m["input_shape"]) != tuple(src["input_shape"]) or int(m["num_classes"]) != int(src["num_classes"]):
        raise InputError(
            f"{path} does not fit the model (inputs {tuple(src['input_shape'])}, {src['num_classes']} classes)"
        )
    # the inputs batch by batch (a large set is read from the file as it goes)
    x = torch.from_numpy(ps.x) if isinstance(ps.x, np.ndarray) else ps.x
    n = len(ps)
    preds = []
    stage = f"scoring the {n} perturbed inputs of {Path(path).name}"
    progress(stage, 0, n, unit="sample")
    for s in range(0, n, batch_size):
        preds.append(class_logits(net(x[s : s + batch_size].to(device))).argmax(1).cpu())
        progress(stage, min(s + batch_size, n), n, unit="sample")
    pred = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)
    t, y = torch.from_numpy(ps.target), torch.from_numpy(ps.y)
    out: dict[str, Any] = {
        "path": str(path),
        "n": n,
        "accuracy": float((pred == t).float().mean()) if n else None,
        "accuracy_original_labels": float((pred == y).float().mean()) if n else None,
        "method": record["params"].get("method"),
        "targets": record["params"].get("targets"),
        "log_density_estimator": (record.get("log_density_estimator") or {}).get("name"),
    }
    if "success" in stored:
        succ = torch.from_numpy(stored["success"].astype(bool))
        out["stored_success_rate"] = float(succ.float().mean()) if n else None
        out["agreement_with_stored_success"] = float(((pred == t) == succ).float().mean()) if n else None
    out["stored_metrics"] = {
        k: summarize(torch.from_numpy(v.astype("float64"))) for k, v in stored.items() if k != "success"
    }
    return out


def trained_on(meta: dict[str, Any]) -> str:
    """What a checkpoint was trained on, in a few words: its data spec, or the method of its perturbed set."""
    from lfpcli.data import spec_label

    if meta.get("foreign"):
        return f"not recorded (a {meta['foreign']['format']} model lfp did not train)"
    pert = meta.get("perturbation") or {}
    if pert.get("method"):
        return f"{pert['method']}, {pert.get('targets')} targets"
    spec = (meta.get("data") or {}).get("spec")
    return spec_label(spec) if isinstance(spec, dict) else str(spec)


def evaluate(
    *,
    model: str | Path,
    data: str | None = None,
    splits: tuple[str, ...] = SPLITS,
    batch_size: int = 256,
    device: str = "auto",
    out: str | Path | None = None,
    force: bool = False,
    normalize: str | None = None,
    arch: str | None = None,
    arch_args: dict[str, Any] | None = None,
    progress: Progress = no_progress,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Evaluate the checkpoint ``model``.

    With no ``data``: on the clean dataset behind the model (for a retrained model, the data its perturbed
    set came from), original labels, every split. With a perturbed set: accuracy against its targets (and
    against the original labels). With another data spec: on that data's splits.
    Returns ``{"model", "data", "splits": {split: figures}}`` (plus ``"perturbed"``); writes it to ``out``
    as a JSON artifact if given. A model file lfp did not write (TorchScript, a torch.export program, a state dict
    with ``arch``) needs ``data`` and ``normalize`` (:mod:`lfpcli.commands.foreign`); its report has ``foreign``.
    """
    if out is not None:
        check_output(out, force, (".json",))
    check_positive_int("batch-size", batch_size)
    bad = [s for s in splits if not s]
    if bad:
        raise ConfigError("--split must name a split")
    dev = resolve_device(device)
    net, meta = load_model(model, dev, ForeignOptions(data, normalize, arch, arch_args))
    parents = [model_parent(model, meta)]
    report: dict[str, Any] = {"model": str(model), "trained_on": trained_on(meta)}
    if meta.get("foreign"):
        report["foreign"] = meta["foreign"]
    # what lfp report groups by (method, targets, density, data, settings, seeds), kept even if the chain's files go
    report["provenance"] = chain_summary(meta, model, sha256=parents[0]["sha256"])
    if _is_perturbed_file(data):
        report["data"] = {"type": "file", "path": str(data), "kind": "perturbed-set"}
        report["perturbed"] = _perturbed_report(net, meta, data, dev, batch_size, progress)
        parents.append(parent_entry("data", data, "perturbed-set"))
    else:
        if data is not None:
            ds = resolve(data, progress=progress)
        else:
            info = meta["data"]
            ds = resolve_recorded_data(info.get("clean_spec") or info["spec"], model, progress)
        check_compatible(meta, ds, f"{model} on {data or 'its clean data'}")
        if tuple(splits) == tuple(SPLITS):  # the default: every split the data has (MNIST, CIFAR-10: no val)
            splits = tuple(s for s in splits if s in ds.splits)
        missing = [s for s in splits if s not in ds.splits]
        if missing:
            raise InputError(
                f"data {ds.spec.get('name', ds.spec.get('path'))} has no split {', '.join(missing)} (it has {', '.join(ds.splits)})"
            )
        report["data"] = ds.spec
        report["splits"] = clean_metrics(net, ds, dev, splits, batch_size, progress)
        report["group_names"] = ds.group_names
        report["class_to_index"] = ds.class_to_index
        parents += data_parent(ds.spec)
    report["device"] = str(dev)
    if out is not None:
        record = make_record(
            "eval",
            {"model": str(model), "data": data, "splits": list(splits), "batch_size": batch_size, "device": device},
            parents=parents,
            device=dev,
            argv=argv,
        )
        save_json_artifact(out, record, report, force=force)
        report["out"] = str(out)
    return report
