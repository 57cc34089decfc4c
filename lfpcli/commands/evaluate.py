"""``lfp eval``: clean accuracy, per-group and worst-group accuracy; or accuracy on a perturbed set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lfpcli.artifacts import make_record, parent_entry, save_json_artifact, check_output
from lfpcli.artifacts.datasets import read_perturbed_set
from lfpcli.artifacts.h5 import open_h5
from lfpcli.commands.common import (
    check_compatible,
    check_positive_int,
    clean_metrics,
    data_parent,
    load_model,
    resolve_device,
    resolve_recorded_data,
    summarize,
)
from lfpcli.data import SPLITS, resolve
from lfpcli.errors import ConfigError, InputError
from lfpcli.models.outputs import class_logits
from lfpcli.progress import Progress, no_progress


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
def _perturbed_report(net, meta, path, device, batch_size) -> dict[str, Any]:
    arrays, stored, record = read_perturbed_set(path)
    src = record["source"]["dataset"]
    m = meta["model"]
    if tuple(m["input_shape"]) != tuple(src["input_shape"]) or int(m["num_classes"]) != int(src["num_classes"]):
        raise InputError(f"{path} does not fit the model (inputs {tuple(src['input_shape'])}, {src['num_classes']} classes)")
    x = torch.from_numpy(arrays["x"])
    preds = []
    for s in range(0, len(x), batch_size):
        preds.append(class_logits(net(x[s : s + batch_size].to(device))).argmax(1).cpu())
    pred = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)
    t, y = torch.from_numpy(arrays["target"]), torch.from_numpy(arrays["y"])
    n = len(t)
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
    out["stored_metrics"] = {k: summarize(torch.from_numpy(v.astype("float64"))) for k, v in stored.items() if k != "success"}
    return out


def trained_on(meta: dict[str, Any]) -> str:
    """What a checkpoint was trained on, in a few words: its data spec, or the method of its perturbed set."""
    from lfpcli.data import spec_label

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
    progress: Progress = no_progress,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Evaluate the checkpoint ``model``.

    With no ``data``: on the clean dataset behind the model (for a retrained model, the data its perturbed
    set came from), original labels, every split. With a perturbed set: accuracy against its targets (and
    against the original labels). With another data spec: on that data's splits.
    Returns ``{"model", "data", "splits": {split: figures}}`` (plus ``"perturbed"``); writes it to ``out``
    as a JSON artifact if given.
    """
    if out is not None:
        check_output(out, force, (".json",))
    check_positive_int("batch-size", batch_size)
    bad = [s for s in splits if not s]
    if bad:
        raise ConfigError("--split must name a split")
    dev = resolve_device(device)
    net, meta = load_model(model, dev)
    parents = [parent_entry("model", model, "checkpoint")]
    report: dict[str, Any] = {"model": str(model), "trained_on": trained_on(meta)}
    if _is_perturbed_file(data):
        report["data"] = {"type": "file", "path": str(data), "kind": "perturbed-set"}
        report["perturbed"] = _perturbed_report(net, meta, data, dev, batch_size)
        parents.append(parent_entry("data", data, "perturbed-set"))
    else:
        if data is not None:
            ds = resolve(data, progress=progress)
        else:
            info = meta["data"]
            ds = resolve_recorded_data(info.get("clean_spec") or info["spec"], model, progress)
        check_compatible(meta, ds, f"{model} on {data or 'its clean data'}")
        missing = [s for s in splits if s not in ds.splits]
        if missing:
            raise InputError(f"data {ds.spec.get('name', ds.spec.get('path'))} has no split {', '.join(missing)} (it has {', '.join(ds.splits)})")
        report["data"] = ds.spec
        report["splits"] = clean_metrics(net, ds, dev, splits, batch_size, progress)
        report["group_names"] = ds.group_names
        parents += data_parent(ds.spec)
    report["device"] = str(dev)
    if out is not None:
        record = make_record("eval", {"model": str(model), "data": data, "splits": list(splits), "batch_size": batch_size,
                                      "device": device}, parents=parents, device=dev, argv=argv)
        save_json_artifact(out, record, report, force=force)
        report["out"] = str(out)
    return report
