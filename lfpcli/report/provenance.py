"""What a model is, from its provenance: the compact chain summary an eval report carries and ``lfp report`` groups by.

A model is either *standard* (trained on clean data: method ``original``, or ``group-balanced`` when its minibatches
were drawn with the groups equally likely, ``--balance groups``: the usual upper reference of the spurious-correlation
literature, a method of its own) or *retrained* on a perturbed set, which was made from a source model. :func:`chain_summary` reads the checkpoint's own record and follows its parents (the
perturbed set, its source model and its density file) where they can still be found, and returns::

    {"version": 1,
     "model": {"sha256": ..., "role": "standard" | "retrained"},
     "data": <the clean data spec of the chain>,
     "method": "original" | "group-balanced" | "pgd-l2" | ...,  "targets": None | "random" | ...,
     "density": None | "kde" | "kde (group-balanced)" | "vae (file)" | "none" | ...,
     "seeds": {"train": s} | {"source": s0, "perturb": s1, "retrain": s2},
     "config": {"retrain.train.lr": ..., "perturb.beta": ..., "source.arch": ..., ...},   # every other setting
     "missing": [what could not be followed]}

``config`` holds every setting that may change a result *except* the seeds, flattened to dotted keys, so that two
runs belong together exactly when their ``data``, ``method``, ``targets``, ``density`` and ``config`` agree. Values
that are *fitted* (a density's bandwidth, the τ taken from it) or only say where a file was (paths) are left out or
replaced by how they were chosen, since they differ from seed to seed without being a different experiment; a file
that is part of the experiment (pretrained weights, a mask) is named by its sha256.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lfpcli.artifacts import load_checkpoint, open_h5, sha256_file
from lfpcli.artifacts.provenance import locate_parent
from lfpcli.data.registry import data_key, spec_label
from lfpcli.errors import InputError

SUMMARY_VERSION = 1


def _flat(prefix: str, obj: Any, out: dict[str, Any]) -> None:
    if isinstance(obj, Mapping):
        for k in sorted(obj):
            _flat(f"{prefix}.{k}" if prefix else str(k), obj[k], out)
    elif isinstance(obj, (list, tuple)):
        out[prefix] = list(obj)
    else:
        out[prefix] = obj


def _init_label(init: Mapping[str, Any] | None) -> str:
    init = init or {}
    if init.get("type") == "pretrained":
        return f"pretrained:{str(init.get('sha256') or '?')[:12]}"
    return str(init.get("type") or "scratch")


def _model_config(prefix: str, meta_like: Mapping[str, Any]) -> dict[str, Any]:
    """Architecture, initialisation, training settings and output of a model, from a checkpoint's meta or a
    perturbed set's ``source`` record (which has the same ``model``, ``init`` and ``train`` entries)."""
    out: dict[str, Any] = {}
    model = meta_like.get("model") or {}
    out[f"{prefix}.arch"] = model.get("arch")
    args = {k: v for k, v in (model.get("arch_args") or {}).items() if k != "weights"}
    _flat(f"{prefix}.arch_args", args, out)
    out[f"{prefix}.output"] = model.get("output", "logits")
    out[f"{prefix}.init"] = _init_label(meta_like.get("init"))
    _flat(f"{prefix}.train", (meta_like.get("train") or {}).get("config") or {}, out)
    return out


def standard_method(config: Mapping[str, Any]) -> str:
    """The method of a model trained on clean data, from its flattened ``config``: ``group-balanced`` when it was
    trained with ``--balance groups``, else ``original``. Summaries written before the distinction was made say
    ``original`` for both; a reader passes them through this to name them alike."""
    return "group-balanced" if config.get("train.train.balance") == "groups" else "original"


def _seed_of(meta: Mapping[str, Any]) -> Any:
    seeds = meta.get("seeds") or {}
    if "seed" in seeds:
        return seeds["seed"]
    return (meta.get("params") or {}).get("seed")


def _locate(entry: Mapping[str, Any], artifact: str | os.PathLike | None) -> Path | None:
    return locate_parent(entry, artifact)


def _parent(record: Mapping[str, Any], role: str) -> Mapping[str, Any] | None:
    for p in record.get("parents") or []:
        if isinstance(p, Mapping) and p.get("role") == role:
            return p
    return None


def density_label(info: Mapping[str, Any] | None) -> str | None:
    """A density as it names a column: its kind, and what it was fitted on when that is not the training split."""
    if not info:
        return None
    kind = str(info.get("kind") or info.get("estimator") or "?")
    fit_on = info.get("fit_on") or "train"
    return kind + (f" ({fit_on})" if fit_on != "train" else "")


def _density_config(info: Mapping[str, Any] | None, perturbed: Path | None, missing: list[str]) -> dict[str, Any]:
    """The density settings that define the experiment (what was asked for), never what was fitted."""
    if not info:
        return {}
    out: dict[str, Any] = {
        "density.kind": info.get("kind"),
        "density.space": info.get("space"),
        "density.fit_on": info.get("fit_on") or "train",
    }
    if info.get("fitted") == "on the fly":
        out["density.source"] = "fitted by perturb"
        _flat("density.params", info.get("params") or {}, out)
    else:
        out["density.source"] = "file"
        asked: Any = None
        found = (
            _locate({"path": info.get("path"), "abspath": info.get("path"), "sha256": info.get("sha256")}, perturbed)
            if info.get("path")
            else None
        )
        if found is not None:
            try:
                f, rec = open_h5(found, ["density"])
                f.close()
                asked = (rec.get("params") or {}).get("params")
            except InputError:
                asked = None
        if asked is None:
            missing.append(f"density file {info.get('path')} (its estimator settings)")
            out["density.params"] = "unknown"
        else:
            _flat("density.params", asked, out)
    return out


def _perturb_config(params: Mapping[str, Any], density: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cfg = dict(params.get("config") or {})
    if density and density.get("tau_from"):
        cfg["tau"] = "density scale"  # fitted per source model, hence per seed: how it was chosen is the setting
    _flat("perturb", cfg, out)
    for k in ("split", "limit", "batch_size"):
        if k in params:
            out[f"perturb.{k}"] = params.get(k)
    mask = params.get("mask")
    out["perturb.mask"] = None if not mask else f"{mask.get('shape')}:{mask.get('allowed')}"
    return out


def chain_summary(meta: Mapping[str, Any], path: str | os.PathLike, sha256: str | None = None) -> dict[str, Any]:
    """The compact provenance of the checkpoint at ``path`` whose record is ``meta`` (see the module docstring)."""
    missing: list[str] = []
    data_info = meta.get("data") or {}
    data = data_info.get("clean_spec") or data_info.get("spec")
    pert = meta.get("perturbation") or {}
    summary: dict[str, Any] = {
        "version": SUMMARY_VERSION,
        "model": {"sha256": sha256 or sha256_file(path), "role": "retrained" if pert.get("method") else "standard"},
        "data": data,
    }
    if not pert.get("method"):
        config = _model_config("train", meta)
        summary.update(
            method=standard_method(config),
            targets=None,
            density=None,
            seeds={"train": _seed_of(meta)},
            config=config,
            missing=missing,
        )
        return summary
    config: dict[str, Any] = _model_config("retrain", meta)
    seeds: dict[str, Any] = {"source": None, "perturb": None, "retrain": _seed_of(meta)}
    density_name: str | None = None
    entry = _parent(meta, "perturbed")
    found = _locate(entry, path) if entry else None
    record = None
    if found is not None:
        try:
            f, record = open_h5(found, ["perturbed-set"])
            f.close()
        except InputError:
            record = None
    if record is None:
        missing.append(f"perturbed set {entry.get('path') if entry else '(not recorded)'}")
        _flat("perturb", pert.get("config") or {}, config)
        if pert.get("method") == "pcfe-l0":
            density_name = "unknown"
    else:
        params = record.get("params") or {}
        dens = params.get("density")
        config.update(_perturb_config(params, dens))
        config.update(_density_config(dens, found, missing))
        if params.get("method") == "pcfe-l0":
            density_name = density_label(dens) or "none"
        seeds["perturb"] = params.get("seed")
        source = record.get("source") or {}
        config.update(_model_config("source", source))
        pdata = params.get("data") or {}
        # data compare by their canonical key, never as recorded: a record written before a built-in gained a
        # parameter lacks it, and means the same data as a newer one that records its default
        if pdata and data_key(pdata) != data_key(data):
            config["perturb.data"] = data_key(pdata)
        src_entry = _parent(record, "model")
        src_found = _locate(src_entry, found) if src_entry else None
        if src_found is not None:
            try:
                _, src_meta = load_checkpoint(src_found)
                seeds["source"] = _seed_of(src_meta)
                src_data = (src_meta.get("data") or {}).get("clean_spec") or (src_meta.get("data") or {}).get("spec")
                if src_data and data_key(src_data) != data_key(data):
                    config["source.data"] = data_key(src_data)
            except InputError:
                missing.append(f"source model {src_entry.get('path')}")
        else:
            missing.append(f"source model {src_entry.get('path') if src_entry else '(not recorded)'}")
    summary.update(
        method=pert.get("method"),
        targets=pert.get("targets"),
        density=density_name,
        seeds=seeds,
        config=config,
        missing=missing,
    )
    return summary


def data_key_and_label(spec: Any) -> tuple[str, str]:
    """``(key, label)`` of a data spec: the key compares every parameter, the label is short (defaults left out)."""
    if not isinstance(spec, Mapping):
        return str(spec), str(spec)
    if spec.get("type") == "file":
        return data_key(spec), Path(str(spec.get("path"))).name
    return data_key(spec), spec_label(dict(spec))
