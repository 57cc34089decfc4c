"""Training curves from checkpoints' recorded history, as the paper's Figures 13-21 draw them.

Every checkpoint records, per epoch, its accuracy on the data it was trained on (for a retrained model: the
perturbed set against its *target* labels) and, where the data has a validation split, its clean validation
accuracy and worst-group accuracy (original labels). :func:`curve_panels` groups checkpoints that differ only in
their seeds (the same grouping as the tables) and :func:`make_figure` draws one axes per group: the mean over
seeds as a line and the spread (min to max) as a band. matplotlib's object API, no pyplot state: runs headless.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lfpcli.errors import ArtifactError, InputError
from lfpcli.report.aggregate import (
    METHOD_NAMES,
    _fmt_value,
    _order,
    _settings_text,
    _sort_key,
)
from lfpcli.report.provenance import chain_summary, data_key_and_label

SERIES = (
    ("train_accuracy", "train accuracy (its own training data and labels)", "C0", "-"),
    ("val_accuracy", "validation accuracy (clean, true labels)", "C1", "-"),
    ("val_worst_group_accuracy", "validation worst-group accuracy", "C2", "--"),
)


def load_curve(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's history and provenance; a file that is not a checkpoint with a history is refused."""
    from lfpcli.artifacts import load_checkpoint, sha256_file
    from lfpcli.artifacts.integrity import USERBLOCK_SIZE, is_hdf5

    p = Path(path)
    if p.is_file():
        with open(p, "rb") as f:
            head = f.read(USERBLOCK_SIZE + 8)
        if head.lstrip()[:1] == b"{" or is_hdf5(head) or not head:
            what = (
                "is empty"
                if not head
                else "is a JSON file (an eval report?)"
                if head.lstrip()[:1] == b"{"
                else "is an HDF5 file"
            )
            raise ArtifactError(
                f"{p} {what}, not a model checkpoint: --curves reads the .pt files lfp train and lfp retrain write"
            )
    _, meta = load_checkpoint(p)
    history = (meta.get("train") or {}).get("history")
    if (
        not isinstance(history, list)
        or not history
        or not all(isinstance(h, dict) and isinstance(h.get("epoch"), int) for h in history)
    ):
        raise ArtifactError(f"{p} records no per-epoch training history, so it has no curves")
    summary = chain_summary(meta, p, sha256=sha256_file(p))
    key, label = data_key_and_label(summary.get("data"))
    return {
        "path": str(p),
        "history": history,
        "summary": summary,
        "data_key": key,
        "data_label": label,
        "selected_epoch": (meta.get("train") or {}).get("selected_epoch"),
    }


def curve_panels(paths: Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """One panel per experiment (checkpoints equal in everything but their seeds), in the tables' column order."""
    if not paths:
        raise InputError("give at least one checkpoint (lfp report --curves MODEL.pt ... --out curves.png)")
    items = [load_curve(p) for p in paths]
    seen: dict[str, str] = {}
    for it in items:
        sha = it["summary"]["model"]["sha256"]
        if sha in seen:
            raise InputError(f"{seen[sha]} and {it['path']} are the same model; give each once")
        seen[sha] = it["path"]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for it in items:
        s = it["summary"]
        keys = {
            "method": s.get("method"),
            "data": it["data_key"],
            "targets": s.get("targets"),
            "density": s.get("density"),
            **(s.get("config") or {}),
        }
        groups.setdefault(tuple(sorted((k, _fmt_value(v)) for k, v in keys.items())), []).append(it)
    # a panel's title: method, target rule, density, data, and the settings that set it apart from the panels of
    # the same method, target rule, density and data (those of other methods differ in their settings anyway)
    named = ("method", "targets", "density", "data")
    siblings: dict[tuple, list[dict[str, str]]] = {}
    for g in groups:
        ks = dict(g)
        siblings.setdefault(tuple(ks.get(k) for k in named), []).append(ks)
    panels = []
    for ident, its in groups.items():
        s = its[0]["summary"]
        ks = dict(ident)
        keysets = siblings[tuple(ks.get(k) for k in named)]
        differ = sorted(k for k in set().union(*keysets) if k not in named and len({o.get(k) for o in keysets}) > 1)
        title = METHOD_NAMES.get(s.get("method"), str(s.get("method")))
        extra = [x for x in (s.get("targets") and f"{s['targets']} targets", s.get("density")) if x]
        if extra:
            title += f" ({', '.join(extra)})"
        if len({it["data_key"] for g in groups.values() for it in g}) > 1:
            title += f", {its[0]['data_label']}"
        if differ:
            title += " [" + _settings_text({k: ks.get(k) for k in differ}) + "]"
        its = sorted(its, key=lambda it: _sort_key(str(it["summary"].get("seeds"))))
        panels.append(
            {
                "title": title,
                "method": s.get("method"),
                "checkpoints": [it["path"] for it in its],
                "seeds": [it["summary"].get("seeds") for it in its],
                "series": _series(its),
            }
        )
    panels.sort(key=lambda p: (_order(p["method"]), p["title"]))
    return panels


def _series(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Per series: epochs and, per epoch, mean/min/max over the checkpoints that have it."""
    out = {}
    for key, *_ in SERIES:
        per_epoch: dict[int, list[float]] = {}
        for it in items:
            for h in it["history"]:
                v = h.get(key)
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    per_epoch.setdefault(int(h["epoch"]), []).append(float(v))
        if per_epoch:
            epochs = sorted(per_epoch)
            out[key] = {
                "epoch": epochs,
                "mean": [sum(per_epoch[e]) / len(per_epoch[e]) for e in epochs],
                "min": [min(per_epoch[e]) for e in epochs],
                "max": [max(per_epoch[e]) for e in epochs],
                "n": [len(per_epoch[e]) for e in epochs],
            }
    return out


def make_figure(panels: list[dict[str, Any]], *, title: str | None = None):
    """A matplotlib ``Figure``: one axes per panel (at most 3 across), accuracy against epoch."""
    import math
    import textwrap

    from matplotlib.figure import Figure

    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(3.8 * ncols, 2.9 * nrows + (0.6 if title else 0.3)), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    handles, labels = [], []
    for i, p in enumerate(panels):
        ax = axes[i // ncols][i % ncols]
        for key, label, color, style in SERIES:
            s = p["series"].get(key)
            if s is None:
                continue
            (line,) = ax.plot(
                s["epoch"],
                s["mean"],
                color=color,
                linestyle=style,
                marker="o" if len(s["epoch"]) <= 30 else None,
                markersize=3,
                label=label,
            )
            if max(s["n"]) > 1:
                ax.fill_between(s["epoch"], s["min"], s["max"], color=color, alpha=0.2, linewidth=0)
            if label not in labels:
                handles.append(line)
                labels.append(label)
        n = len(p["checkpoints"])
        ax.set_title("\n".join(textwrap.wrap(f"{p['title']}, {n} run{'s' if n != 1 else ''}", 52)), fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0.0, 1.02)
        ax.grid(True, alpha=0.3)
    for j in range(len(panels), nrows * ncols):
        axes[j // ncols][j % ncols].set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    band = " (line: mean over seeds; band: min to max)" if any(len(p["checkpoints"]) > 1 for p in panels) else ""
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncols=min(3, len(handles)),
        fontsize=8,
        frameon=False,
        title=f"per epoch{band}" if band else None,
        title_fontsize=8,
    )
    return fig
