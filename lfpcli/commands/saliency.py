"""``lfp saliency``: saliency maps of one or more models on the same images, and how much of each falls on the
object (attribution share, pointing game), overall and per group.

The images are a split of the first model's clean data unless ``data`` names other data (a built-in, an lfp
dataset file, or a perturbed set: its perturbed inputs, with the original labels and the perturbation targets).
Models trained on different data compare side by side when they take the same input shape and classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from lfpcli.artifacts import check_output, make_record, parent_entry, sha256_file
from lfpcli.artifacts.datasets import clean_masks, open_perturbed_set
from lfpcli.artifacts.dataspec import resolve
from lfpcli.artifacts.saliency import SaliencyWriter, check_png_output, h5_kind, read_mask_file, write_png
from lfpcli.attribution import (
    MAP_DEFINITIONS,
    SaliencyConfig,
    attribute,
    attribution_share,
    layer_table,
    mask_area,
    pointing_game,
    resolve_layer,
    summarize,
    summarize_area,
)
from lfpcli.commands.common import (
    ForeignOptions,
    check_compatible,
    check_positive_int,
    check_seed,
    data_parent,
    foreign_options_for,
    load_model,
    model_parent,
    resolve_device,
    resolve_recorded_data,
    warn,
)
from lfpcli.data import spec_label
from lfpcli.errors import ConfigError, InputError
from lfpcli.models.outputs import class_logits
from lfpcli.precision import auto_batch_size, input_gradient_step, prepare_model, resolve_execution
from lfpcli.progress import Progress, no_progress

TARGET_RULES = ("label", "pred", "perturbation")
#: Images drawn in the PNG grid unless ``png_rows`` says otherwise.
PNG_ROWS = 8


@dataclass
class _Images:
    """The images saliency runs on, every row of a split (or of a perturbed set), before selection."""

    x: torch.Tensor
    y: torch.Tensor
    group: torch.Tensor
    index: torch.Tensor
    num_classes: int
    class_names: list[str]
    group_names: list[str] | None
    input_shape: tuple[int, int, int]
    spec: dict[str, Any]
    split: str | None
    mask: torch.Tensor | None = None
    mask_source: str | None = None
    perturbation_target: torch.Tensor | None = None
    parents: list[dict[str, Any]] = field(default_factory=list)

    def label(self) -> str:
        where = spec_label(self.spec)
        return f"{where} ({self.split})" if self.split and self.perturbation_target is None else where


def parse_target(text: str | int, class_names: Sequence[str]) -> str | int:
    """``label``, ``pred``, ``perturbation``, or a fixed class (its index or its name)."""
    if isinstance(text, int) and not isinstance(text, bool):
        value: str | int = text
    else:
        s = str(text).strip()
        if s in TARGET_RULES:
            return s
        if s in class_names:
            return list(class_names).index(s)
        try:
            value = int(s)
        except ValueError:
            raise ConfigError(
                f"--target must be label, pred, perturbation, a class index or a class name "
                f"({', '.join(class_names)}), got '{text}'"
            ) from None
    if not 0 <= int(value) < len(class_names):
        raise ConfigError(f"--target {value} is not a class of this data (0..{len(class_names) - 1})")
    return int(value)


def _images(data: str | None, split: str | None, meta: dict[str, Any], model_path: str | Path) -> _Images:
    if h5_kind(data) == "perturbed-set":
        ps = open_perturbed_set(data)
        arrays = {"y": ps.y, "group": ps.group, "index": ps.index, "target": ps.target}
        record = ps.record
        src = record["source"]["dataset"]
        own = record["params"].get("split")
        if split is not None and split != own:
            raise ConfigError(
                f"{data} is a perturbed set of split '{own}'; --split {split} does not apply (leave it out)"
            )
        x = torch.from_numpy(ps.x) if not hasattr(ps.x, "read_raw") else ps.x  # rows read when selected
        index = torch.from_numpy(arrays["index"].astype("int64"))
        mask = None
        clean_spec = src.get("clean_spec") or src.get("spec")
        try:
            if isinstance(clean_spec, dict):
                mask = clean_masks(resolve_recorded_data(clean_spec, data), own, index)
            elif isinstance(clean_spec, str):
                mask = clean_masks(resolve(clean_spec), own, index)
        except InputError as e:
            warn(f"the clean data behind {data} cannot be loaded ({e}); its images have no foreground masks")
        spec = {
            "type": "file",
            "path": str(data),
            "abspath": str(Path(data).resolve()),
            "sha256": sha256_file(data),
            "kind": "perturbed-set",
        }
        return _Images(
            x,
            torch.from_numpy(arrays["y"].astype("int64")),
            torch.from_numpy(arrays["group"].astype("int64")),
            index,
            int(src["num_classes"]),
            list(src.get("class_names") or [str(i) for i in range(int(src["num_classes"]))]),
            src.get("group_names"),
            tuple(src["input_shape"]),
            spec,
            own,
            mask,
            "the clean source data" if mask is not None else None,
            torch.from_numpy(arrays["target"].astype("int64")),
            [parent_entry("data", data, "perturbed-set")],
        )
    name = split or "test"
    if data is not None:
        ds = resolve(data, splits=(name,))
    else:
        info = meta["data"]
        ds = resolve_recorded_data(info.get("clean_spec") or info["spec"], model_path, splits=(name,))
    sp = ds.split(name)
    return _Images(
        sp.x,
        sp.y,
        sp.group,
        sp.index,
        ds.num_classes,
        list(ds.class_names),
        ds.group_names,
        tuple(ds.input_shape),
        ds.spec,
        name,
        sp.mask,
        "the data" if sp.mask is not None else None,
        None,
        data_parent(ds.spec),
    )


def _model_names(paths: Sequence[str | Path]) -> list[str]:
    """Each model's name in tables and pictures: its file stem, with its folder where stems repeat, numbered
    where even that repeats (the same file given twice)."""
    stems = [Path(p).stem for p in paths]
    longer = [f"{Path(p).parent.name}/{Path(p).stem}" for p in paths]
    names = [(lg if stems.count(st) > 1 and longer.count(lg) == 1 else st) for st, lg in zip(stems, longer)]
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


@torch.no_grad()
def _predict(net, x, rows: torch.Tensor, device, batch_size: int) -> torch.Tensor:
    """Predictions on rows ``rows`` of ``x`` (a tensor or rows read on demand), batch by batch."""
    out = [
        class_logits(net(x[rows[s : s + batch_size]].to(device))).argmax(1).cpu()
        for s in range(0, len(rows), batch_size)
    ]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def _select(img: _Images, *, indices, n, group, misclassified, first_net, device, batch_size, seed) -> torch.Tensor:
    """Rows of ``img`` to explain, in order (see :func:`saliency`)."""
    total = len(img.x)
    if indices is not None:
        rows = []
        for i in indices:
            if not isinstance(i, int) or isinstance(i, bool):
                raise ConfigError(f"--indices must be integers, got {i!r}")
            if not 0 <= i < total:
                raise InputError(f"--indices {i} is out of range: {img.label()} has {total} images (0..{total - 1})")
            if i not in rows:
                rows.append(i)
        if not rows:
            raise ConfigError("--indices is empty; give positions such as 3,17")
        return torch.tensor(rows, dtype=torch.long)
    rows = torch.arange(total)
    if group is not None:
        names = img.group_names or []
        if not names:
            raise ConfigError(f"--group: {img.label()} has no groups")
        if str(group) in names:
            k = names.index(str(group))
        else:
            try:
                k = int(group)
            except (TypeError, ValueError):
                k = -1
            if not 0 <= k < len(names):
                raise ConfigError(f"--group must be one of {', '.join(names)} (or 0..{len(names) - 1}), got '{group}'")
        rows = rows[img.group[rows] == k]
    if misclassified:
        pred = _predict(first_net, img.x, rows, device, batch_size)
        rows = rows[pred != img.y[rows]]
    if n is not None and n < len(rows):
        g = torch.Generator().manual_seed(seed)
        rows = torch.sort(rows[torch.randperm(len(rows), generator=g)[:n]]).values
    if len(rows) == 0:
        what = " and ".join(
            w
            for w, on in (
                ("in group " + str(group), group is not None),
                ("misclassified by the first model", misclassified),
            )
            if on
        )
        raise InputError(f"no image of {img.label()} is {what}: nothing to explain")
    return rows


def _no_layers(path: str | Path, meta: dict[str, Any]) -> None:
    """A TorchScript model or an exported program has no layers lfp can hook (TorchScript refuses forward hooks,
    an exported program calls operators, not its submodules): Grad-CAM and the layer list need them."""
    fmt = (meta.get("foreign") or {}).get("format")
    if fmt in ("torchscript", "torch-export"):
        raise ConfigError(
            f"{path} is a {'TorchScript model' if fmt == 'torchscript' else 'torch.export program'}, whose layers "
            f"lfp cannot hook, so Grad-CAM and --list-layers do not apply: use --method gradient, "
            f"input-x-gradient, smoothgrad or integrated-gradients, or give the model as a state dict with --arch"
        )


def saliency_layers(model: str | Path, *, device: str = "cpu", foreign: ForeignOptions | None = None) -> dict[str, Any]:
    """Every named layer of ``model`` with its output shape for one input, and the default Grad-CAM layer."""
    dev = resolve_device(device)
    net, meta = load_model(model, dev, foreign)
    _no_layers(model, meta)
    shape = tuple(meta["model"]["input_shape"])
    table = layer_table(net, shape, dev)
    default = next((r.name for r in table if r.default), None)
    return {
        "model": str(model),
        "arch": meta["model"].get("arch"),
        "input_shape": list(shape),
        "default": default,
        "layers": [r.to_dict() for r in table],
    }


#: Images per batch on a CPU when --batch-size is not given.
CPU_BATCH = 256


def saliency_batch_size(
    runners: list[torch.nn.Module], input_shape: tuple[int, ...], device: torch.device, n: int
) -> int:
    """``CPU_BATCH`` on a CPU; on CUDA the smallest over ``runners`` of the largest batch whose forward and
    backward to the input fits (every method runs one such pass at a time: smoothgrad loops over its noisy
    copies, integrated-gradients batches its steps by the batch), with 20% headroom, at most ``n``."""
    if device.type != "cuda":
        return CPU_BATCH
    return min(
        auto_batch_size(input_gradient_step(net, input_shape, device), device=device, limit=max(1, n))
        for net in runners
    )


def saliency(
    out: str | Path,
    *,
    models: Sequence[str | Path] | str | Path,
    data: str | None = None,
    split: str | None = None,
    indices: Sequence[int] | None = None,
    n: int | None = None,
    group: str | int | None = None,
    misclassified: bool = False,
    method: str = "gradcam",
    layer: str | None = None,
    target: str | int = "pred",
    masks: str | Path | None = None,
    samples: int | None = None,
    noise: float | None = None,
    steps: int | None = None,
    baseline: str | None = None,
    png: str | Path | None = None,
    png_rows: int = PNG_ROWS,
    seed: int = 0,
    batch_size: int | None = None,
    device: str = "auto",
    precision: str = "fp32",
    channels_last: str = "auto",
    compile: bool = False,
    force: bool = False,
    normalize: str | None = None,
    arch: str | None = None,
    arch_args: dict[str, Any] | None = None,
    progress: Progress = no_progress,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Saliency maps of every model in ``models`` on the same images; write them to ``out`` (.h5) and, with
    ``png``, a picture grid (rows = images, first column the image, then one map per model).

    Images: split ``split`` (default ``test``) of the first model's clean data, or of ``data`` (a data spec; a
    perturbed set gives its own perturbed inputs). ``indices``: rows to explain, in that order; otherwise every
    row, narrowed to group ``group`` (name or number), to those the first model misclassifies
    (``misclassified``), then to ``n`` rows drawn at random (seeded by ``seed``, kept in order).

    ``method``: gradcam (on ``layer``, default the last convolutional block), gradient, input-x-gradient,
    smoothgrad (``samples`` noisy copies, default 25, std ``noise`` in pixel units, default 0.15),
    integrated-gradients (``steps``, default 32, from a ``black`` (default) or ``mean`` baseline); see
    :mod:`lfpcli.attribution.methods`. A parameter of another method is refused. ``target``: the class each map
    explains: ``pred`` (each model's own prediction), ``label``, ``perturbation`` (a perturbed set's targets),
    or a class index or name.

    Where the images have foreground masks (the data's own, e.g. spurious-digits' digit, or ``masks``: a
    ``.npy`` or lfp dataset file, one (H, W) 0/1 mask per row of the split; ``"none"``: no masks) every map gets its
    attribution share and pointing-game result (:mod:`lfpcli.attribution.scores`); the summary has them per model, overall and
    per group, next to the chance level (the mask's area).

    A model file lfp did not write (TorchScript, a torch.export program, a state dict with ``arch``) needs ``data``
    and ``normalize`` (:mod:`lfpcli.commands.foreign`), which apply to every such file among ``models``;
    Grad-CAM needs a state dict (the other two have no layers lfp can hook). ``precision``, ``channels_last``,
    ``compile``: how each model's forward and backward run (:mod:`lfpcli.precision`; maps are float32).
    ``batch_size`` None: 256 on a CPU, on CUDA the largest batch every model's forward and backward fits
    (:func:`saliency_batch_size`); the maps do not depend on it.
    """
    check_output(out, force, (".h5", ".hdf5"))
    if png is not None:
        check_png_output(png, force)
    check_seed(seed)
    if batch_size is not None:
        check_positive_int("batch-size", batch_size)
    check_positive_int("png-rows", png_rows)
    if n is not None:
        check_positive_int("n", n)
    if indices is not None and (n is not None or group is not None or misclassified):
        raise ConfigError("--indices picks the images itself; leave out --n, --group and --misclassified")
    paths = [models] if isinstance(models, (str, Path)) else list(models)
    if not paths:
        raise ConfigError("give at least one model (--in MODEL.pt)")
    config = _config(method, layer, samples=samples, noise=noise, steps=steps, baseline=baseline)
    dev = resolve_device(device)

    nets = [load_model(p, dev, o) for p, o in zip(paths, foreign_options_for(paths, data, normalize, arch, arch_args))]
    if config.method == "gradcam":
        for p, (_, meta) in zip(paths, nets):
            _no_layers(p, meta)
    img = _images(data, split, nets[0][1], paths[0])
    names = _model_names(paths)
    for p, (_, meta) in zip(paths, nets):
        check_compatible(meta, _shape_only(img), f"{p} on {img.label()}")
    tgt_rule = parse_target(target, img.class_names)
    if tgt_rule == "perturbation" and img.perturbation_target is None:
        raise ConfigError("--target perturbation needs a perturbed set as --data (SET.h5 from lfp perturb)")
    mask_parents: list[dict[str, Any]] = []
    if masks is not None and str(masks).lower() == "none":  # no share even where the data has masks
        img.mask, img.mask_source = None, None
    elif masks is not None:
        m = read_mask_file(masks, tuple(img.x.shape), img.split)
        img.mask, img.mask_source = torch.from_numpy(m), f"file {masks}"
        mask_parents.append(parent_entry("masks", masks, "mask"))
    layers: list[tuple[Any, Any]] = []
    for name, (net, _) in zip(names, nets):
        layers.append(
            resolve_layer(net, config.layer, img.input_shape, what=f"model '{name}'", device=dev)
            if config.method == "gradcam"
            else (None, None)
        )
    execs = [resolve_execution(dev, precision, channels_last, compile, net) for net, _ in nets]
    runners = [prepare_model(net, ex) for (net, _), ex in zip(nets, execs)]
    batch_from = (
        "--batch-size" if batch_size is not None else ("default on CPU" if dev.type != "cuda" else "largest that fits")
    )
    if batch_size is None:
        batch_size = saliency_batch_size(runners, img.input_shape, dev, len(img.x))
    rows = _select(
        img,
        indices=indices,
        n=n,
        group=group,
        misclassified=misclassified,
        first_net=nets[0][0],
        device=dev,
        batch_size=batch_size,
        seed=seed,
    )
    count = len(rows)
    h, w = img.input_shape[1:]
    has_mask = img.mask is not None
    y, grp = img.y[rows], img.group[rows]
    mask = img.mask[rows] if has_mask else None
    area = mask_area(mask) if has_mask else None
    if tgt_rule == "label":
        tgt_all = y
    elif tgt_rule == "perturbation":
        tgt_all = img.perturbation_target[rows]
    elif tgt_rule == "pred":
        tgt_all = None  # each model's own prediction, from the same forward pass as its map
    else:
        tgt_all = torch.full((count,), int(tgt_rule), dtype=torch.long)
    show = min(png_rows, count) if png is not None else 0
    per_model: list[dict[str, Any]] = []
    nb = math.ceil(count / batch_size)
    with SaliencyWriter(
        out,
        count,
        (h, w),
        [
            (nm, str(p), (info.output_shape[1:] if info is not None else None))
            for nm, p, (_, info) in zip(names, paths, layers)
        ],
        definition=MAP_DEFINITIONS[config.method],
        masks=has_mask,
        perturbation_target=img.perturbation_target is not None,
        force=force,
    ) as wr:
        for s in range(0, count, batch_size):
            sl = slice(s, s + batch_size)
            wr.add_images(
                sl,
                index=rows[sl],
                source_index=img.index[rows[sl]],
                y=y[sl],
                group=grp[sl],
                mask=None if mask is None else mask[sl],
                mask_area=None if area is None else area[sl],
                perturbation_target=None if img.perturbation_target is None else img.perturbation_target[rows[sl]],
            )
        for k, (name, (_net, meta), (mod, info)) in enumerate(zip(names, nets, layers)):
            acc: dict[str, list[torch.Tensor]] = {"pred": [], "target": [], "share": [], "pointing": []}
            shown: list[torch.Tensor] = []
            for b, s in enumerate(range(0, count, batch_size)):
                sl = slice(s, s + batch_size)
                r = rows[sl]
                t = None if tgt_all is None else tgt_all[sl].to(dev)
                res = attribute(runners[k], img.x[r].to(dev), t, config, layer=mod, keys=r, seed=seed)
                maps = res.maps.cpu()
                values: dict[str, Any] = {
                    "map": maps,
                    "pred": res.pred.cpu(),
                    "target": res.target.cpu(),
                    "logit": res.logits.gather(1, res.target.view(-1, 1)).squeeze(1).cpu(),
                    "layer_map": None if res.layer_maps is None else res.layer_maps.cpu(),
                }
                if has_mask:
                    values["share"] = attribution_share(maps, mask[sl])
                    values["pointing"] = pointing_game(maps, mask[sl])
                    acc["share"].append(values["share"])
                    acc["pointing"].append(values["pointing"])
                wr.add_maps(k, sl, values)
                acc["pred"].append(values["pred"])
                acc["target"].append(values["target"])
                if s < show:
                    shown.append(maps[: show - s])
                progress(f"{config.method} {name}", b + 1, nb)
            pred = torch.cat(acc["pred"])
            entry: dict[str, Any] = {
                "name": name,
                "path": str(paths[k]),
                "arch": meta["model"].get("arch"),
                "output": meta["model"].get("output", "logits"),
                "layer": info.name if info is not None else None,
                "layer_shape": list(info.output_shape) if info is not None else None,
                "accuracy": float((pred == y).float().mean()),
                "pred": pred,
                "target": torch.cat(acc["target"]),
                "shown": torch.cat(shown) if shown else None,
            }
            if has_mask:
                entry["share_all"] = torch.cat(acc["share"])
                entry["summary"] = summarize(
                    entry["share_all"], torch.cat(acc["pointing"]), grp, img.group_names, pred == y
                )
            per_model.append(entry)
        summary = _summary(img, per_model, count, area, grp, config, tgt_rule)
        params = {
            "models": [str(p) for p in paths],
            "data": data,
            "split": img.split,
            "indices": list(indices) if indices is not None else None,
            "n": n,
            "group": group,
            "misclassified": misclassified,
            "config": config.to_dict(),
            "target": tgt_rule,
            "masks": str(masks) if masks is not None else None,
            "png": str(png) if png is not None else None,
            "png_rows": png_rows,
            "seed": seed,
            "batch_size": batch_size,
            "batch_size_from": batch_from,
            "device": device,
            "execution": [ex.to_dict() for ex in execs],
        }
        model_parents = [model_parent(p, meta) for p, (_, meta) in zip(paths, nets)]
        parents = model_parents + img.parents + mask_parents
        params["layers"] = [e["layer"] for e in per_model]
        wr.record = make_record(
            "saliency-maps",
            params,
            seeds={"seed": seed},
            parents=parents,
            device=dev,
            argv=argv,
            saliency={
                "method": config.method,
                "config": config.to_dict(),
                "map": MAP_DEFINITIONS[config.method],
                "share": "sum(map+ * mask) / sum(map+) with map+ = max(map, 0); NaN where the map has no positive mass",
                "pointing": "1 where the map's maximum is attained inside the mask, 0 where not, -1 where the map has no positive mass",
                "target": tgt_rule,
                "data": img.spec,
                "split": img.split,
                "mask_source": img.mask_source,
                "class_names": img.class_names,
                "group_names": img.group_names,
                "models": [
                    {
                        "name": e["name"],
                        "path": e["path"],
                        "sha256": pe["sha256"],
                        "arch": e["arch"],
                        "output": e["output"],
                        "layer": e["layer"],
                        "layer_shape": e["layer_shape"],
                    }
                    for e, pe in zip(per_model, model_parents)
                ],
            },
            summary=summary,
        )
        if png is not None:
            from lfpcli.attribution.figure import saliency_grid

            sel = rows[:show]
            gnames = img.group_names or []
            titles = [
                f"#{int(i)}" + (f" {gnames[int(g)]}" if 0 <= int(g) < len(gnames) else "")
                for i, g in zip(sel, img.group[sel])
            ]
            if img.perturbation_target is not None:  # what the perturbation pushed toward
                titles = [
                    f"{t}, target {img.class_names[int(c)]}" for t, c in zip(titles, img.perturbation_target[sel])
                ]
            fig = saliency_grid(
                img.x[sel],
                [e["shown"] for e in per_model],
                names,
                [e["pred"][:show] for e in per_model],
                y[:show],
                img.class_names,
                row_titles=titles,
                masks=None if mask is None else mask[:show],
                shares=[e["share_all"][:show] for e in per_model] if has_mask else None,
                targets=[e["target"][:show] for e in per_model],
                title=f"{config.method}"
                + (f" ({', '.join(sorted({e['layer'] for e in per_model}))})" if config.method == "gradcam" else "")
                + f", target: {target}, {img.label()}",
                note=f"the first {show} of {count} images explained (--png-rows {png_rows}); every map is in {out}"
                if show < count
                else None,
            )
            write_png(png, fig, force=force)
    return {
        "out": str(out),
        "png": str(png) if png is not None else None,
        "kind": "saliency-maps",
        "device": str(dev),
        **summary,
    }


_METHOD_PARAMS = {
    "samples": "smoothgrad",
    "noise": "smoothgrad",
    "steps": "integrated-gradients",
    "baseline": "integrated-gradients",
}


def _config(method: str, layer: str | None, **given: Any) -> SaliencyConfig:
    """The method's configuration; a parameter of another method is refused rather than ignored."""
    given = {k: v for k, v in given.items() if v is not None}
    SaliencyConfig(method=method)  # an unknown method is named first
    for k in given:
        if _METHOD_PARAMS[k] != method:
            raise ConfigError(f"--{k} applies to --method {_METHOD_PARAMS[k]} only, not {method}")
    return SaliencyConfig(method=method, layer=layer, **given)


class _shape_only:
    """What ``check_compatible`` reads from a dataset: input shape and class count."""

    def __init__(self, img: _Images):
        self.input_shape, self.num_classes = img.input_shape, img.num_classes


def _summary(img: _Images, per_model, count, area, grp, config, tgt_rule) -> dict[str, Any]:
    has_mask = area is not None
    return {
        "method": config.method,
        "config": config.to_dict(),
        "target": tgt_rule,
        "data": img.spec,
        "data_label": img.label(),
        "split": img.split,
        "n": count,
        "group_names": img.group_names,
        "class_names": img.class_names,
        "mask_source": img.mask_source,
        "mask_area": summarize_area(area, grp, img.group_names) if has_mask else None,
        "models": [
            {k: e[k] for k in ("name", "path", "arch", "layer", "layer_shape", "accuracy")}
            | ({k: v for k, v in e["summary"].items()} if has_mask else {"share": None, "pointing": None, "groups": {}})
            for e in per_model
        ],
    }


__all__ = ["PNG_ROWS", "TARGET_RULES", "parse_target", "saliency", "saliency_layers"]
