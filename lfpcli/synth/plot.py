"""Summaries and figures of synthetic-experiment results: accuracy against the swept key, mean and spread over seeds.

:func:`summarize` groups the rows of a results file by panel (method, distribution, variant) and curve (the swept
key; ``eps`` and ``ratio`` are both the *budget*) and reduces each point over its seeds. :func:`make_figure` draws
it as the paper's Figures 5-12 do: one axes per panel and key, the perturbation-trained network's accuracy on the
natural data against the baseline's (trained on the same inputs unperturbed), the mean over seeds as a line and
the spread (min to max over seeds) as a band, chance level dotted. matplotlib is used through its object API
(no pyplot state), so this runs headless.
"""

from __future__ import annotations

import math
from typing import Any

from lfpcli.synth.sweep import Plan

__all__ = ["AXIS_LABELS", "make_figure", "summarize"]

COLUMN_ORDER = ("dim", "hidden", "n_natural", "n_noise", "budget")
AXIS_LABELS = {
    "dim": "input dimension d",
    "hidden": "hidden units h",
    "n_natural": "natural samples n",
    "n_noise": "noise samples m",
}
BUDGET_LABELS = {
    "pgd-l2": "budget eps (l2 radius)",
    "pgd-linf": "budget eps (linf radius)",
    "pgd-l0": "budget ratio (changed values / d)",
    "cfe-l2": "budget ratio (Adam iterations / d)",
    "pcfe-l0": "budget ratio (changed values / d)",
}
STATS = ("acc_perturbed", "acc_baseline")
LEGEND = {
    "acc_perturbed": "trained on the perturbed inputs (line: mean, band: min-max over seeds)",
    "acc_baseline": "baseline: trained on the same inputs unperturbed",
}
#: A swept key whose largest value is at least this many times its smallest gets a log x-axis.
LOG_SPAN = 10
#: Legend text size in points: that of the axis labels, so that it reads as well as they do.
LEGEND_FONT = 10
MEANS = (
    "success",
    "l0",
    "l2",
    "linf",
    "fit_natural",
    "fit_baseline",
    "fit_perturbed",
    "epochs_natural",
    "epochs_baseline",
    "epochs_perturbed",
    "time_total",
)


def _spread(values: list[float]) -> dict[str, float]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(values), "max": max(values)}


def _reduce(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"seeds": sorted(r["seed"] for r in rows)}
    for k in STATS:
        out[k] = _spread([r[k] for r in rows])
    for k in MEANS:
        vals = [
            r[k] for r in rows if k in r and r[k] is not None and not (isinstance(r[k], float) and math.isnan(r[k]))
        ]
        out[k] = sum(vals) / len(vals) if vals else None
    return out


def _point_key(d: dict[str, Any]) -> tuple:
    return tuple(
        d[f] for f in ("method", "dist", "variant", "dim", "hidden", "n_natural", "n_noise", "eps", "ratio", "seed")
    )


def summarize(rows: list[dict[str, Any]], plan: Plan | None) -> dict[str, Any]:
    """``{"curves": [...], "points": [...]}``: for every panel and swept key the points of its curve in increasing
    order (``value``, the seeds found, mean/std/min/max of both accuracies over them, means of the perturbation
    metrics, fits and epochs); ``points``: every distinct configuration reduced over seeds (the only entries of a
    plan without curves)."""
    by_key = {_point_key(r): r for r in rows}
    curves: dict[tuple, dict[str, Any]] = {}
    if plan is not None:
        for c in plan.curves:
            for m, d, v in plan.panels():
                if not c.applies(m, v):
                    continue
                col = "budget" if c.key in ("eps", "ratio") else c.key
                entry = curves.setdefault(
                    (m, d, v, col), {"key": c.key, "column": col, "method": m, "dist": d, "variant": v, "points": {}}
                )
                for value in c.values:
                    found = [
                        by_key.get(_point_key(plan.base_point(m, d, v, s, **{c.key: value}).to_dict()))
                        for s in plan.seeds
                    ]
                    found = [r for r in found if r is not None]
                    if found:
                        entry["points"][value] = {"value": value, **_reduce(found)}
    curve_list = []
    for entry in curves.values():
        if entry["points"]:
            entry["points"] = [entry["points"][k] for k in sorted(entry["points"])]
            curve_list.append(entry)
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(_point_key(r)[:-1], []).append(r)
    points = []
    for key, rs in groups.items():
        fields = dict(zip(("method", "dist", "variant", "dim", "hidden", "n_natural", "n_noise", "eps", "ratio"), key))
        points.append({**fields, **_reduce(rs)})
    return {"curves": curve_list, "points": points}


def _panel_title(method: str, dist: str, variant: str, variants: set[str]) -> str:
    title = f"{method}, {'uniform' if dist == 'uniform' else 'Gaussian'}"
    return title + (f" ({variant} variant)" if len(variants) > 1 or variant != "noise" else "")


def make_figure(summary: dict[str, Any], *, title: str | None = None):
    """A matplotlib ``Figure``: one axes per (panel, column); raises ``ValueError`` if there is no curve."""
    from matplotlib.figure import Figure

    curves = summary["curves"]
    if not curves:
        raise ValueError("no curve to plot")
    panels = list(dict.fromkeys((c["method"], c["dist"], c["variant"]) for c in curves))
    columns = [k for k in COLUMN_ORDER if any(c["column"] == k for c in curves)]
    variants = {p[2] for p in panels}
    cells = {(c["method"], c["dist"], c["variant"], c["column"]): c for c in curves}
    if len(columns) == 1:  # one key: wrap the panels into a grid
        ncols = min(3, len(panels))
        nrows = math.ceil(len(panels) / ncols)
        layout = [((i // ncols, i % ncols), p, columns[0]) for i, p in enumerate(panels)]
    else:
        ncols, nrows = len(columns), len(panels)
        layout = [((i, j), p, col) for i, p in enumerate(panels) for j, col in enumerate(columns)]
    fig = Figure(figsize=(3.6 * ncols, 2.9 * nrows + (0.5 if title else 0.2)), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    used = set()
    handles: list[Any] = []
    for (i, j), (m, d, v), col in layout:
        ax = axes[i][j]
        c = cells.get((m, d, v, col))
        if c is None:
            continue
        used.add((i, j))
        xs = [p["value"] for p in c["points"]]
        drawn = []
        for key, color, marker, style in (("acc_perturbed", "C0", "o", "-"), ("acc_baseline", "C1", "s", "--")):
            mean = [p[key]["mean"] for p in c["points"]]
            lo = [p[key]["min"] for p in c["points"]]
            hi = [p[key]["max"] for p in c["points"]]
            (line,) = ax.plot(xs, mean, color=color, marker=marker, linestyle=style, markersize=4, label=LEGEND[key])
            band = ax.fill_between(xs, lo, hi, color=color, alpha=0.2, linewidth=0)
            drawn.append((line, band))
        chance = ax.axhline(0.5, color="0.5", linestyle=":", linewidth=1, label="chance")
        if not handles:
            handles = [*drawn, chance]
        positive = [x for x in xs if x > 0]
        if len(positive) == len(xs) and len(xs) > 1 and max(xs) / min(xs) >= LOG_SPAN:
            # values spread over a decade or more (d = 100, 300, 1000): evenly spaced on a log axis, each labelled
            from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_locator(FixedLocator(xs))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylim(0.0, 1.02)
        ax.set_xlabel(BUDGET_LABELS[m] if col == "budget" else AXIS_LABELS[col])
        ax.set_ylabel("accuracy on natural data")
        seeds = max(len(p["seeds"]) for p in c["points"])
        ax.set_title(f"{_panel_title(m, d, v, variants)}, {seeds} seed{'s' if seeds != 1 else ''}", fontsize=9)
        ax.grid(True, alpha=0.3)
    for i in range(nrows):
        for j in range(ncols):
            if (i, j) not in used:
                axes[i][j].set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.legend(
        handles,
        [LEGEND["acc_perturbed"], LEGEND["acc_baseline"], "chance"],
        loc="outside lower center",
        ncols=3 if ncols > 2 else 1,
        fontsize=LEGEND_FONT,
        frameon=False,
    )
    return fig
