"""``lfp report``: eval reports aggregated into the paper's tables, or training curves of checkpoints."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lfpcli.artifacts import atomic_output, check_output
from lfpcli.errors import ConfigError
from lfpcli.report import (
    aggregate,
    curve_panels,
    load_runs,
    make_figure,
    parse_where,
    render,
)
from lfpcli.report.aggregate import DEFAULT_BY, DEFAULT_METRICS, DEFAULT_SPLITS
from lfpcli.report.tables import FORMATS, LAYOUTS, SCALES

#: What each output format's file is called.
SUFFIXES = {"md": (".md", ".markdown", ".txt"), "csv": (".csv",), "tex": (".tex",), "json": (".json",)}
FIGURE_SUFFIXES = (".png", ".pdf", ".svg")


def output_format(fmt: str | None, out: str | Path | None) -> str:
    """``--format`` as given, else the one ``--out``'s extension names, else md; a mismatch is refused."""
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(f"--format {fmt}: unknown; choose one of {', '.join(FORMATS)}")
    by_suffix = None
    if out is not None:
        name = Path(str(out)).name.lower()
        by_suffix = next((f for f, sx in SUFFIXES.items() if name.endswith(sx)), None)
        if fmt is not None and by_suffix is not None and by_suffix != fmt:
            raise ConfigError(
                f"--out {out} names a .{name.rsplit('.', 1)[-1]} file but --format is {fmt}; "
                f"use an extension of {', '.join(SUFFIXES[fmt])}"
            )
        if fmt is None and by_suffix is None:
            raise ConfigError(
                f"--out {out}: cannot tell the format from its extension; give --format "
                f"({', '.join(FORMATS)}) or name it .md, .csv, .tex or .json"
            )
    return fmt or by_suffix or "md"


def _split_list(values: Sequence[str] | str | None, default: Sequence[str]) -> list[str]:
    if values is None:
        return list(default)
    items = [values] if isinstance(values, str) else list(values)
    return [x.strip() for v in items for x in str(v).split(",") if x.strip()]


def report(
    *,
    files: Sequence[str | Path],
    by: Sequence[str] | str | None = None,
    metrics: Sequence[str] | str | None = None,
    splits: Sequence[str] | str | None = None,
    where: Sequence[str] | None = None,
    fmt: str | None = None,
    layout: str = "paper",
    scale: str = "percent",
    baseline: str | None = None,
    out: str | Path | None = None,
    force: bool = False,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Aggregate eval reports (``lfp eval --out``) into tables; see :mod:`lfpcli.report.aggregate`.

    Returns the aggregated report (JSON-able) with ``text``: the tables in ``fmt`` (md, csv, tex, json), also
    written to ``out`` when given (atomically; an existing file only with ``force``). ``baseline``: a column
    (e.g. ``Original``) every other column is compared with, paired by seed (mean difference, 95% t interval)."""
    fmt = output_format(fmt, out)
    for name, value, allowed in (("--layout", layout, LAYOUTS), ("--scale", scale, SCALES)):
        if value not in allowed:
            raise ConfigError(f"{name} {value}: unknown; choose one of {', '.join(allowed)}")
    if out is not None:
        check_output(out, force)
    by_keys = _split_list(by, DEFAULT_BY)
    if not by_keys:
        raise ConfigError("--by: give at least one key (method, data, targets, density)")
    rep = aggregate(
        load_runs(list(files)),
        by=by_keys,
        metrics=_split_list(metrics, DEFAULT_METRICS),
        splits=None if splits is None else _split_list(splits, DEFAULT_SPLITS),
        where=parse_where(where),
        baseline=baseline,
    )
    text = render(rep, fmt, layout=layout, scale=scale)
    if out is not None:
        with atomic_output(out, force) as tmp:
            Path(tmp).write_text(text)
    return {
        **rep,
        "format": fmt,
        "layout": layout,
        "scale": scale,
        "text": text,
        "out": str(out) if out is not None else None,
    }


def report_curves(
    *,
    files: Sequence[str | Path],
    out: str | Path | None,
    title: str | None = None,
    force: bool = False,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Training and validation accuracy per epoch of the checkpoints ``files``, one panel per experiment (seeds
    averaged), drawn to ``out`` (.png, .pdf or .svg)."""
    if out is None:
        raise ConfigError("--curves needs --out FILE.png (the figure to write)")
    check_output(out, force, FIGURE_SUFFIXES)
    panels = curve_panels(list(files))
    fig = make_figure(panels, title=title)
    from lfpcli.artifacts.synth import save_figure

    save_figure(fig, out, force=force)
    summary = []
    for p in panels:
        last = {k: (v["mean"][-1] if v["mean"] else None) for k, v in p["series"].items()}
        epochs = max((v["epoch"][-1] for v in p["series"].values() if v["epoch"]), default=0)
        summary.append(
            {"title": p["title"], "checkpoints": p["checkpoints"], "epochs": epochs, "last_epoch_mean": last}
        )
    return {"out": str(out), "kind": "curves", "panels": summary}
