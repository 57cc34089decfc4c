"""``lfp report``: the typer command and what it prints (registered on the app by :func:`register`)."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from lfpcli.cli import render
from lfpcli.cli.options import INSPECT_PANEL, ForceOpt, JsonOpt
from lfpcli.cli.runner import run as run_command

TABLES = "Tables (eval reports)"
CURVES = "Curves (checkpoints)"


def report(
    files: Annotated[
        list[str],
        typer.Argument(
            help="Eval reports (lfp eval --out REPORT.json); with --curves, checkpoints (.pt).",
            metavar="FILE...",
            show_default=False,
        ),
    ],
    by: Annotated[
        str,
        typer.Option(
            "--by",
            metavar="KEY,...",
            help="Keys that name the table's rows and columns: data (one block of rows per data set), "
            "method, targets, density; any recorded setting too, e.g. perturb.beta or retrain.train.epochs. Runs that "
            "differ in any other setting still get a column each, and the report says which setting split them; "
            "only the seeds are averaged over.",
            rich_help_panel=TABLES,
        ),
    ] = "method,data,targets,density",
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            metavar="NAME,...",
            help="Figures, one table each: accuracy (the paper's "
            "Table 1), worst-group (Table 2), mean-group, train-weighted. Default: accuracy,worst-group.",
            rich_help_panel=TABLES,
        ),
    ] = None,
    split: Annotated[
        list[str] | None,
        typer.Option(
            "--split",
            metavar="SPLIT,...",
            help="Splits, one row each (clean data, true labels). Default: train,test (the paper's).",
            rich_help_panel=TABLES,
        ),
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where",
            metavar="KEY=VALUE",
            help="Keep only runs with this value (repeatable); a run "
            "the key does not apply to is kept (e.g. --where targets=random keeps the standard "
            "model, which has no target rule).",
            rich_help_panel=TABLES,
        ),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            metavar="md|csv|tex|json",
            help="Output format (default: from --out's extension, "
            "else md). csv and json carry unrounded fractions with n, std, min, max and the seeds.",
            rich_help_panel=TABLES,
        ),
    ] = None,
    layout: Annotated[
        str,
        typer.Option(
            "--layout",
            metavar="paper|long",
            help="paper: a row per data set and split, a column per "
            "experiment (Tables 1 and 2); long: a row per experiment, a column per split and figure (ablations).",
            rich_help_panel=TABLES,
        ),
    ] = "paper",
    scale: Annotated[
        str,
        typer.Option(
            "--scale",
            metavar="percent|fraction",
            help="md and tex: percentages with 2 decimals (as the paper) or fractions with 3.",
            rich_help_panel=TABLES,
        ),
    ] = "percent",
    baseline: Annotated[
        str | None,
        typer.Option(
            "--baseline",
            metavar="COLUMN",
            help="Compare every column with this one "
            "(its label, e.g. Original, or a method): runs paired by seed, the mean "
            "difference (column minus baseline) with its 95% Student-t interval, as a "
            "second table and in csv/json.",
            rich_help_panel=TABLES,
        ),
    ] = None,
    curves: Annotated[
        bool,
        typer.Option(
            "--curves",
            help="Draw training and validation accuracy per epoch of the checkpoints FILE... "
            "(the paper's Figures 13-21) to --out (.png, .pdf, .svg): one panel per experiment, seeds "
            "averaged (band: min to max).",
            rich_help_panel=CURVES,
        ),
    ] = False,
    title: Annotated[
        str | None,
        typer.Option("--title", metavar="TEXT", help="--curves: a title over the figure.", rich_help_panel=CURVES),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            "-o",
            help="Write the tables (or, with --curves, the figure) to this file; without it the tables go to stdout.",
            metavar="FILE",
        ),
    ] = None,
    force: ForceOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Aggregate eval reports into the paper's Tables 1 and 2 (mean (std) over seeds), or draw training curves.

    Which runs belong together comes from the files' own provenance, never their names: each eval report carries a summary of its model's chain (method, target rule, density, data, every setting, the seeds), and an older one is traced through its parents. Runs equal in everything but their seeds are averaged: mean and sample standard deviation (ddof=1) over seeds. Standard training is the column Original; standard training with --balance groups (the group-balanced reference) the column Group-balanced.

    Example: lfp report runs/*/eval_*.json --out table.md; lfp report --curves runs/*/model*.pt --out curves.png
    """
    if curves:
        for name, value in (
            ("--by", by != "method,data,targets,density"),
            ("--metric", metric),
            ("--split", split),
            ("--where", where),
            ("--baseline", baseline),
            ("--format", fmt),
            ("--layout", layout != "paper"),
            ("--scale", scale != "percent"),
        ):
            if value:
                raise typer.BadParameter(f"{name} applies to tables, not to --curves", param_hint=name)
        from lfpcli.commands.report import report_curves

        run_command(report_curves, show_curves, json_, None, files=list(files), out=out, title=title, force=force)
        return
    if title is not None:
        raise typer.BadParameter("applies to --curves only", param_hint="--title")
    from lfpcli.commands.report import report as run

    def show(rep: dict[str, Any]) -> None:
        if rep.get("out") is None:
            sys.stdout.write(rep["text"])
            return
        n = len(rep["inputs"])
        render.out.print(
            f"[bold]report[/bold] {n} eval report{'s' if n != 1 else ''} -> {len(rep['columns'])} column"
            f"{'s' if len(rep['columns']) != 1 else ''} ({rep['format']}) -> [bold]{rep['out']}[/bold]"
        )
        for note in rep["notes"]:
            render.out.print(f"  note: {note}")

    def as_json(**kw: Any) -> dict[str, Any]:
        rep = run(**kw)
        return {k: v for k, v in rep.items() if k != "text"} if json_ else rep

    run_command(
        as_json,
        show,
        json_,
        None,
        files=list(files),
        by=by,
        metrics=metric,
        splits=split,
        where=where,
        fmt=fmt,
        layout=layout,
        scale=scale,
        baseline=baseline,
        out=out,
        force=force,
    )


def register(app: typer.Typer) -> None:
    """Add ``report`` to the ``lfp`` app."""
    app.command("report", rich_help_panel=INSPECT_PANEL)(report)


def show_curves(s: dict[str, Any]) -> None:
    render.out.print(
        f"[bold]curves[/bold] {len(s['panels'])} panel{'s' if len(s['panels']) != 1 else ''} -> [bold]{s['out']}[/bold]"
    )
    for p in s["panels"]:
        last = p["last_epoch_mean"]
        figs = ", ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in last.items() if v is not None)
        render.out.print(
            f"  {p['title']}: {len(p['checkpoints'])} checkpoint(s), {p['epochs']} epochs; last epoch: {figs}"
        )
