"""``lfp saliency``: the typer command and what it prints (registered on the app by :func:`register`)."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from lfpcli.cli import render
from lfpcli.cli.options import (
    CHAIN_PANEL,
    ChannelsLastOpt,
    CompileOpt,
    ConfigOpt,
    DeviceOpt,
    ForceOpt,
    ForeignArchArgOpt,
    ForeignArchOpt,
    JsonOpt,
    NormalizeOpt,
    PrecisionOpt,
    QuietOpt,
    SaliencyBatchOpt,
    SeedOpt,
    key_values,
)
from lfpcli.cli.render import Table
from lfpcli.cli.runner import run as run_command
from lfpcli.commands.common import fmt

IMAGES = "Images (default: the whole test split)"
METHOD = "Method"


def _indices(text: Optional[str]) -> Optional[list[int]]:
    if text is None:
        return None
    items = [s.strip() for s in text.split(",") if s.strip()]
    try:
        return [int(s) for s in items]
    except ValueError:
        raise typer.BadParameter(
            f"expected comma-separated integers such as 3,17,42, got '{text}'", param_hint="--indices"
        ) from None


def saliency(
    in_: Annotated[
        Optional[list[str]],
        typer.Option(
            "--in",
            "-i",
            help="Model to explain; repeat for several models, shown side by side in that order (same input shape and classes). An lfp checkpoint, or your own (TorchScript, torch.export .pt2, or a state dict with --arch; then --data and --normalize).",
            metavar="MODEL",
        ),
    ] = None,
    out: Annotated[
        Optional[str],
        typer.Option("--out", "-o", help="Maps file to write (.h5); required unless --list-layers.", metavar="FILE.h5"),
    ] = None,
    data: Annotated[
        Optional[str],
        typer.Option(
            "--data",
            help="Images: a data spec, an lfp dataset file, or a perturbed set (its perturbed inputs, original labels and targets). Default: the first model's clean data.",
            rich_help_panel=IMAGES,
        ),
    ] = None,
    split: Annotated[
        Optional[str],
        typer.Option(
            "--split",
            help="Split of the data (default: test; a perturbed set has its own samples).",
            rich_help_panel=IMAGES,
        ),
    ] = None,
    indices: Annotated[
        Optional[str],
        typer.Option(
            "--indices",
            help="Rows of the split to explain, comma-separated, in that order, e.g. 3,17,42.",
            metavar="I,J,...",
            rich_help_panel=IMAGES,
        ),
    ] = None,
    n: Annotated[
        Optional[int],
        typer.Option(
            "--n",
            metavar="N",
            help="Explain N images drawn at random (seeded by --seed, kept in split order) from those selected; default: all of them.",
            rich_help_panel=IMAGES,
        ),
    ] = None,
    group: Annotated[
        Optional[str],
        typer.Option(
            "--group",
            metavar="GROUP",
            help="Only images of this group: its name (e.g. low/land) or number.",
            rich_help_panel=IMAGES,
        ),
    ] = None,
    misclassified: Annotated[
        bool, typer.Option("--misclassified", help="Only images the first model misclassifies.", rich_help_panel=IMAGES)
    ] = False,
    masks: Annotated[
        Optional[str],
        typer.Option(
            "--masks",
            help="Foreground masks for the attribution share: a .npy or lfp dataset file, shape (N, H, W) or (N, 1, H, W) of 0/1, one per row of the split. Default: the data's own (spurious-digits: the digit's pixels); none: no share.",
            metavar="FILE",
            rich_help_panel=IMAGES,
        ),
    ] = None,
    method: Annotated[
        str,
        typer.Option(
            "--method",
            "-m",
            metavar="NAME",
            help="gradcam, gradient (|grad| summed over channels), input-x-gradient, smoothgrad or integrated-gradients.",
            rich_help_panel=METHOD,
        ),
    ] = "gradcam",
    layer: Annotated[
        Optional[str],
        typer.Option(
            "--layer",
            metavar="NAME",
            help="gradcam: layer by name, e.g. features.3 (default: the last convolutional block; see --list-layers).",
            rich_help_panel=METHOD,
        ),
    ] = None,
    target: Annotated[
        str,
        typer.Option(
            "--target",
            metavar="RULE|CLASS",
            help="Class each map explains: pred (each model's own prediction), label (the true label), perturbation (a perturbed set's target), or a class index or name.",
            rich_help_panel=METHOD,
        ),
    ] = "pred",
    samples: Annotated[
        Optional[int],
        typer.Option(
            "--samples", metavar="N", help="smoothgrad: noisy copies per image (default 25).", rich_help_panel=METHOD
        ),
    ] = None,
    noise: Annotated[
        Optional[float],
        typer.Option(
            "--noise",
            metavar="STD",
            help="smoothgrad: noise std in pixel units (default 0.15).",
            rich_help_panel=METHOD,
        ),
    ] = None,
    steps: Annotated[
        Optional[int],
        typer.Option(
            "--steps",
            metavar="N",
            help="integrated-gradients: points on the path (default 32).",
            rich_help_panel=METHOD,
        ),
    ] = None,
    baseline: Annotated[
        Optional[str],
        typer.Option(
            "--baseline",
            metavar="black|mean",
            help="integrated-gradients: black (zeros) or mean (the data's channel means) (default black).",
            rich_help_panel=METHOD,
        ),
    ] = None,
    png: Annotated[
        Optional[str],
        typer.Option(
            "--png",
            help="Also draw a picture grid: rows = images, the image, then one map per model, titled with its name and prediction vs label.",
            metavar="FILE.png",
        ),
    ] = None,
    png_rows: Annotated[
        int, typer.Option("--png-rows", metavar="N", help="Images (rows) in the picture: the first ones explained.")
    ] = 8,
    list_layers: Annotated[
        bool,
        typer.Option(
            "--list-layers",
            help="List each --in model's layers (name, type, output shape for one input) and its default Grad-CAM layer; writes nothing.",
        ),
    ] = False,
    normalize: NormalizeOpt = None,
    arch: ForeignArchOpt = None,
    arch_arg: ForeignArchArgOpt = None,
    batch_size: SaliencyBatchOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    channels_last: ChannelsLastOpt = "auto",
    compile_: CompileOpt = False,
    force: ForceOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Saliency maps of one or more models on the same images, and how much of each falls on the object.

    Writes the maps (.h5, per model and image, with index, label, prediction and target) and, with --png, a picture grid.

    Where the images have a foreground mask (spurious-digits: the digit) it reports each model's attribution share (the fraction of positive attribution mass inside the mask) and pointing game (does the map's maximum fall inside it), overall and per group, next to chance level (the mask's area).

    Example: lfp saliency --in model.pt --in model_pgd.pt --n 64 --out maps.h5 --png grid.png
    """
    if not in_:
        raise typer.BadParameter("give at least one model (--in MODEL.pt)", param_hint="'--in'")
    arch_args = key_values(arch_arg, "--arch-arg") or None
    if list_layers:
        from lfpcli.commands.common import foreign_options_for
        from lfpcli.commands.saliency import saliency_layers

        per_model = foreign_options_for(list(in_), data, normalize, arch, arch_args)
        result = {"models": [saliency_layers(p, device=device, foreign=o) for p, o in zip(in_, per_model)]}
        render.emit_json(result) if json_ else show_layers(result)
        return
    if out is None:
        raise typer.BadParameter("is required: the maps file to write (.h5)", param_hint="'--out'")
    from lfpcli.commands.saliency import saliency as run

    run_command(
        run,
        show_saliency,
        json_,
        quiet,
        out=out,
        models=list(in_),
        data=data,
        split=split,
        indices=_indices(indices),
        n=n,
        group=group,
        misclassified=misclassified,
        method=method,
        layer=layer,
        target=target,
        masks=masks,
        samples=samples,
        noise=noise,
        steps=steps,
        baseline=baseline,
        png=png,
        png_rows=png_rows,
        seed=seed,
        batch_size=batch_size,
        device=device,
        precision=precision,
        channels_last=channels_last,
        compile=compile_,
        force=force,
        normalize=normalize,
        arch=arch,
        arch_args=arch_args,
    )


def register(app: typer.Typer) -> None:
    """Add ``saliency`` to the ``lfp`` app."""
    app.command("saliency", rich_help_panel=CHAIN_PANEL)(saliency)


def show_layers(result: dict[str, Any]) -> None:
    for m in result["models"]:
        t = Table(title=f"{m['model']} ({m['arch']}, input {tuple(m['input_shape'])})")
        for col in ("layer", "type", "output (per sample)", "calls", ""):
            t.add_column(col, justify="right" if col == "calls" else "left", text=col != "calls")
        for r in m["layers"]:
            shape = "-" if r["output_shape"] is None else "(" + ", ".join(str(v) for v in r["output_shape"]) + ")"
            mark = "default Grad-CAM layer" if r["default"] else ("map" if r["spatial"] else "")
            t.add_row(r["name"], r["type"], shape, str(r["calls"]), mark)
        render.out.print(t)
        render.out.print(f"  default Grad-CAM layer: {m['default'] or 'none (no convolutional layer)'}")


def _cell(s: dict[str, Any] | None) -> str:
    if not s or s.get("share") is None:
        return "-"
    return f"{fmt(s['share'])} ({fmt(s.get('pointing'), 2)})"


def show_saliency(s: dict[str, Any]) -> None:
    cfg = ", ".join(f"{k}={v}" for k, v in s["config"].items() if k != "method" and v is not None)
    layers = sorted({m["layer"] for m in s["models"] if m.get("layer")})
    how = s["method"] + (f" on {', '.join(layers)}" if layers else "") + (f" ({cfg})" if cfg and not layers else "")
    target = s["target"]
    if isinstance(target, int) and 0 <= target < len(s.get("class_names") or []):
        target = f"class {s['class_names'][target]} ({target})"
    render.out.print(
        f"[bold]saliency[/bold] {how}, target {target}: {len(s['models'])} model(s) on {s['n']} images "
        f"of {s['data_label']} -> [bold]{s['out']}[/bold]"
    )
    names = [m["name"] for m in s["models"]]
    if s.get("mask_area") is None:
        t = Table(title="accuracy on these images")
        for col in ("model", "accuracy"):
            t.add_column(col, justify="left" if col == "model" else "right", text=col == "model")
        for m in s["models"]:
            t.add_row(m["name"], fmt(m["accuracy"]))
        render.out.print(t)
        render.out.print(
            "  no foreground masks for these images, so no attribution share: give --masks FILE (one 0/1 mask per image)"
        )
    else:
        t = Table(title=f"attribution share inside the mask (pointing game), mask from {s['mask_source']}")
        t.add_column("images", text=True)
        t.add_column("n", justify="right")
        t.add_column("chance", justify="right")
        for nm in names:
            t.add_column(nm, justify="right", text=True)
        area = s["mask_area"]
        first = s["models"][0]
        t.add_row("all", str(first["n"] + first["undefined"]), fmt(area["mean"]), *[_cell(m) for m in s["models"]])
        for g in s.get("group_names") or []:
            if g in area["groups"]:
                gm = [m["groups"].get(g) for m in s["models"]]
                cnt = gm[0]["n"] + gm[0]["undefined"] if gm[0] else 0
                t.add_row(g, str(cnt), fmt(area["groups"][g]), *[_cell(x) for x in gm])
        t.add_row("accuracy", "", "", *[fmt(m["accuracy"]) for m in s["models"]])
        render.out.print(t)
        render.out.print(
            "  share: fraction of each map's positive attribution mass inside the mask (mean over images); "
            "pointing: fraction of maps whose maximum lies inside it; chance: the mask's area (a uniform map's share)"
        )
        undefined = [f"{m['name']} {m['undefined']}" for m in s["models"] if m.get("undefined")]
        if undefined:
            render.out.print(
                f"  maps without positive attribution (left out of share and pointing): {', '.join(undefined)}"
            )
    if s.get("png"):
        render.out.print(f"picture: [bold]{s['png']}[/bold]")
