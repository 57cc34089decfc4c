"""``lfp density``: fit class-conditional densities q(x | class) once, for every pcfe-l0 run to share."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any, Callable

import torch

from lfpcli.artifacts import check_output, make_record, parent_entry, sha256_file
from lfpcli.artifacts.density import read_density, write_density
from lfpcli.artifacts.resume import Sidecar, run_fingerprint
from lfpcli.commands.common import (
    ForeignOptions,
    check_compatible,
    check_seed,
    load_model,
    model_parent,
    resolve_device,
    resolve_recorded_data,
)
from lfpcli.data import Split
from lfpcli.density import density_from_state, fit_density, list_densities
from lfpcli.errors import ArtifactError, ConfigError, InputError, Interrupted
from lfpcli.progress import Progress, no_progress

FIT_ON = ("train", "val", "group-balanced")
#: Inputs with at most this many values get a pixel-space default density; larger ones a feature-space one.
PIXEL_DEFAULT_MAX_VALUES = 4096
#: Reference points per class of a density fitted on the fly for ``perturb --density KIND`` (kde, knn): enough
#: for a smooth estimate, few enough that the term costs less than the model's forward+backward pass.
ON_THE_FLY_MAX_POINTS = 300


def default_density(ds) -> str:
    """pcfe-l0's plausibility term when ``--density`` is left out: a pixel-space KDE for small inputs (up to
    ``PIXEL_DEFAULT_MAX_VALUES`` values, e.g. 3x28x28), a KDE in the model's feature space for larger images,
    where pixel distances say little about plausibility."""
    return "kde" if math.prod(ds.input_shape) <= PIXEL_DEFAULT_MAX_VALUES else "feature-kde"


#: Estimators that only make sense on images (a convolutional VAE), so they have no ``feature-`` twin.
PIXEL_ONLY = ("vae",)


def density_kinds() -> list[str]:
    """Pixel-space kinds and their ``feature-`` twins (the same estimator on the model's penultimate features)."""
    return list_densities() + [f"feature-{k}" for k in list_densities() if k not in PIXEL_ONLY]


def _split_kind(kind: str) -> tuple[str, str]:
    if kind not in density_kinds():
        raise ConfigError(f"unknown density kind '{kind}'; choose one of {', '.join(density_kinds())}")
    return ("feature", kind[len("feature-") :]) if kind.startswith("feature-") else ("pixel", kind)


def _fit_split(ds, fit_on: str, seed: int) -> Split:
    """The clean samples a density is fitted on. ``group-balanced``: the training split subsampled to the
    same number of samples in every (label, attribute) group, so a class density is not pulled toward the
    background that dominates its class."""
    if fit_on not in FIT_ON:
        raise ConfigError(f"--fit-on must be one of {', '.join(FIT_ON)}, got '{fit_on}'")
    if fit_on != "group-balanced":
        return ds.split(fit_on)
    tr = ds.split("train")
    if not ds.group_names:
        raise ConfigError("--fit-on group-balanced needs data with groups; use train or val")
    counts = tr.group_counts(ds.num_groups)
    m = int(counts[counts > 0].min())
    g = torch.Generator().manual_seed(seed)
    keep = []
    for k in range(ds.num_groups):
        idx = torch.nonzero(tr.group == k).flatten()
        if len(idx):
            keep.append(idx[torch.randperm(len(idx), generator=g)[:m]])
    idx = torch.sort(torch.cat(keep)).values
    return tr.subset(idx)


@torch.no_grad()
def _features(model, sp: Split, device, batch: int = 256) -> torch.Tensor:
    """The model's penultimate features of every sample of ``sp``, read batch by batch."""
    out = [model.features(x.to(device)).cpu() for x, *_ in sp.batches(batch)]
    return torch.cat(out) if out else torch.zeros(0)


def _points(
    sp: Split, space: str, base: str, params: dict[str, Any], num_classes: int, seed: int, model, device
) -> tuple[Split, torch.Tensor, dict[str, Any]]:
    """The points a density is fitted on: pixels or features of ``sp``. A kde or knn with ``max_points`` keeps a
    seeded subsample per class: only those samples are read (features computed for them alone) and the fit is told
    so (``drawn_from``), for exactly the fit on every point. Otherwise every sample is read (pixel-space estimators
    then hold their fit set in memory)."""
    extra: dict[str, Any] = {}
    max_points = params.get("max_points")
    if base in ("kde", "knn") and isinstance(max_points, int) and max_points > 0:
        from lfpcli.density.base import subsample_rows

        rows, counts = subsample_rows(sp.y, num_classes, max_points, seed)
        if len(rows) < len(sp):
            sp, extra = sp.subset(rows), {"drawn_from": counts}
    if space == "feature":
        return sp, _features(model, sp, device), extra
    if sp.in_memory:
        return sp, sp.x, extra
    return sp, torch.cat([x for x, *_ in sp.batches(256)]) if len(sp) else sp.take([]), extra


def fit_density_file(
    out: str | Path,
    *,
    model: str | Path,
    kind: str = "kde",
    fit_on: str = "train",
    params: dict[str, Any] | None = None,
    seed: int = 0,
    device: str = "auto",
    force: bool = False,
    resume: bool = False,
    data: str | None = None,
    normalize: str | None = None,
    arch: str | None = None,
    arch_args: dict[str, Any] | None = None,
    progress: Progress = no_progress,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Fit ``kind`` on the clean data behind ``model`` (its ``fit_on`` split) and write a density file.

    ``kind`` is ``kde``, ``gmm``, ``knn``, ``vae`` (in pixel space) or ``feature-kde``, ``feature-gmm``,
    ``feature-knn`` (in the model's penultimate feature space). ``params`` are the estimator's hyper-parameters.
    ``vae`` trains one convolutional VAE per class on ``device`` (seeded, reporting epochs to ``progress``);
    its plausibility score is ``-||x - AE_t(x)||^2``, so pcfe-l0's ``tau`` is the paper's ``theta``. Each
    class's trained VAE is kept in ``OUT.resume/`` until the file is written; ``resume`` continues an interrupted
    fit of the same command from there (the same result). ``data``: fit on this data spec instead (required for a
    model file lfp did not write, which also needs ``normalize``, and ``arch`` for a state dict:
    :mod:`lfpcli.commands.foreign`).
    """
    check_output(out, force, (".h5", ".hdf5"))
    check_seed(seed)
    space, base = _split_kind(kind)
    dev = resolve_device(device)
    net, meta = load_model(model, dev, ForeignOptions(data, normalize, arch, arch_args))
    if data is not None and not meta.get("foreign"):
        from lfpcli.artifacts.dataspec import resolve

        ds = resolve(data, progress=progress)
        check_compatible(meta, ds, f"{model} on {data}")
    else:
        info = meta["data"]
        ds = resolve_recorded_data(info.get("clean_spec") or info["spec"], model, progress)
    sp = _fit_split(ds, fit_on, seed)
    num_points = len(sp)
    fit_y, pts, extra = _points(sp, space, base, params or {}, ds.num_classes, seed, net, dev)
    parents = [model_parent(model, meta)]
    run_params = {
        "model": str(model),
        "kind": kind,
        "fit_on": fit_on,
        "params": params or {},
        "seed": seed,
        "device": device,
        **({"data": data} if data is not None else {}),
    }
    sidecar = None
    if base == "vae":  # the one estimator whose fit takes long enough to be worth resuming
        sidecar = Sidecar(out, run_fingerprint("density", run_params, parents, dev), resume=resume, force=force)
    try:
        with sidecar if sidecar is not None else contextlib.nullcontext():
            q = fit_density(
                base,
                pts if base in PIXEL_ONLY else pts.flatten(1),
                fit_y.y,
                ds.num_classes,
                seed=seed,
                device=dev,
                progress=progress,
                store=sidecar,
                **extra,
                **(params or {}),
            )
    except KeyboardInterrupt:
        if sidecar is None:
            raise
        kept = len([u for u in sidecar.units() if u.startswith("vae-class-")])
        raise Interrupted(sidecar.interrupted(kept, ds.num_classes, "class VAEs")) from None
    tensors, state = q.state()
    desc = {
        "kind": kind,
        "estimator": base,
        "space": space,
        "fit_on": fit_on,
        "num_points": num_points,
        "dim": q.dim,
        "params": state,
        "normalized": bool(q.normalized),
        "data": ds.spec,
        "class_names": list(ds.class_names),
        "class_to_index": ds.class_to_index,
        "group_names": ds.group_names,
    }
    record = make_record("density", run_params, seeds={"seed": seed}, parents=parents, device=dev, argv=argv)
    write_density(out, tensors, desc, record, force=force)
    if sidecar is not None:
        sidecar.finish()
    return {"out": str(out), "kind": "density", **{k: v for k, v in desc.items() if k != "params"}}


def plausibility_from(
    spec: str,
    model: torch.nn.Module,
    meta: dict[str, Any],
    model_path: str | Path,
    device: torch.device,
    seed: int = 0,
    progress: Progress = no_progress,
) -> tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], dict[str, Any], list]:
    """Build ``plausibility(x', t) -> (N,)`` for pcfe-l0 from a density file or a kind name (fitted now, with
    default parameters, on the model's clean training split). Returns ``(fn, description, parents)``."""
    parents = []
    if Path(spec).suffix.lower() in (".h5", ".hdf5") or Path(spec).exists():
        tensors, info, _ = read_density(spec)
        try:
            q = density_from_state(info["estimator"], tensors, info["params"])
        except (KeyError, TypeError, ValueError):
            raise ArtifactError(f"{spec}: density parameters are malformed") from None
        desc = {k: v for k, v in info.items() if k != "params"} | {"path": str(spec), "sha256": sha256_file(spec)}
        parents.append(parent_entry("density", spec, "density"))
        space = info["space"]
    else:
        space, base = _split_kind(spec)
        ds = resolve_recorded_data(meta["data"].get("clean_spec") or meta["data"]["spec"], model_path, progress)
        sp = ds.split("train")
        extra = {"max_points": ON_THE_FLY_MAX_POINTS} if base in ("kde", "knn") else {}
        fit_sp, pts, drawn = _points(sp, space, base, extra, ds.num_classes, seed, model, device)

        def told(stage: str, done: int, total: int, **status: Any) -> None:
            progress(f"fitting the {spec} plausibility term ({stage.split(':')[0]})", done, total, **status)

        q = fit_density(
            base,
            pts if base in PIXEL_ONLY else pts.flatten(1),
            fit_sp.y,
            ds.num_classes,
            seed=seed,
            device=device,
            progress=told,
            **drawn,
            **extra,
        )
        desc = {
            "kind": spec,
            "estimator": base,
            "space": space,
            "fit_on": "train",
            "num_points": len(sp),
            "dim": q.dim,
            "fitted": "on the fly",
            "params": extra,
        }
    q = q.to(device)
    desc["plausibility_weight"] = q.plausibility_weight()
    want = math.prod(meta["model"]["input_shape"]) if space == "pixel" else None
    if space == "pixel" and q.dim != want:
        raise InputError(f"density {spec} is over {q.dim} pixel values; the model's inputs have {want}")
    if space == "feature":
        with torch.no_grad():
            fdim = model.features(torch.zeros(1, *meta["model"]["input_shape"], device=device)).shape[1]
        if q.dim != fdim:
            raise InputError(f"density {spec} is over {q.dim} features; this model's feature space has {fdim}")

        def on_features(feats: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return q.log_prob(feats, t)

        on_features.on_features = True  # scfe passes model.features(x') and reuses them for the logits
        return on_features, desc, parents
    return (lambda xp, t: q.log_prob(xp.flatten(1), t)), desc, parents


__all__ = ["FIT_ON", "default_density", "density_kinds", "fit_density_file", "plausibility_from", "list_densities"]
