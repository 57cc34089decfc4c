"""Synthetic-experiment results (``lfp synth``): the results file, the resume folder beside it, and figures.

**Results file** (``.h5``, kind ``synth-results``): one row per configuration, stored column by column.

- ``points/<field>``: the configuration: ``method``, ``dist``, ``variant`` (int codes; the dataset's ``labels``
  attribute lists the names, JSON), ``dim``, ``hidden``, ``n_natural``, ``n_noise`` (0 for variant natural),
  ``seed`` (int64), ``eps``, ``ratio`` (float64, NaN where the method takes the other budget);
- ``results/<field>``: what it gave (``lfpcli.synth.protocol.ROW_FIELDS``): accuracies on the natural samples,
  each network's fit, epochs and final loss, perturbation success and mean l0/l2/linf, ...;
- ``timing/<field>``: seconds per stage. Timings are measurements, not results: rerunning a configuration gives
  the same ``points/`` and ``results/`` but other ``timing/`` values.

The record (root attribute ``lfp_record``) holds the plan (panels, seeds, base values, curves), the shared settings,
the device, and which preset it came from.

**Resume folder** ``OUT.resume/`` (``lfpcli.artifacts.resume.Sidecar``, as for every resumable command): the
sweep's fingerprint and one ``row-NNNNNN`` unit per finished configuration, each written whole or not at all. The
final file is written from the rows; then the folder is removed. The same sweep with ``--resume`` continues from the
folder; a sweep with other parameters is refused (``--force``: the folder is discarded and the sweep starts over).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from lfpcli.artifacts.files import atomic_output
from lfpcli.artifacts.h5 import H5Writer, open_h5, read_array
from lfpcli.errors import ArtifactError

__all__ = ["KIND", "read_results", "save_figure", "write_results"]

KIND = "synth-results"
CATEGORIES = ("method", "dist", "variant")
INT_POINT = ("dim", "hidden", "n_natural", "n_noise", "seed")
FLOAT_POINT = ("eps", "ratio")
POINT_FIELDS = CATEGORIES + INT_POINT + FLOAT_POINT
INT_RESULTS = ("epochs_natural", "epochs_baseline", "epochs_perturbed", "diverged", "changed_max", "solver_iterations")

DESCRIPTIONS = {
    "method": "perturbation method (code; names in the labels attribute)",
    "dist": "input distribution (code; names in the labels attribute)",
    "variant": "noise: fresh inputs are perturbed; natural: the natural samples themselves (code; labels attribute)",
    "dim": "input dimension d",
    "hidden": "hidden units h",
    "n_natural": "natural samples n",
    "n_noise": "noise samples m (0 for variant natural)",
    "seed": "run seed",
    "eps": "budget eps (NaN: not this method's)",
    "ratio": "budget ratio of d (NaN: not this method's)",
    "acc_perturbed": "accuracy on the natural samples (their labels) of the network trained on the perturbed inputs",
    "acc_baseline": "accuracy on the natural samples of the network trained on the unperturbed inputs with the same targets",
    "fit_natural": "accuracy of the natural network on its own training samples",
    "fit_baseline": "accuracy of the baseline network on its training set (inputs, targets)",
    "fit_perturbed": "accuracy of the perturbation-trained network on its training set (perturbed inputs, targets)",
    "epochs_natural": "full-batch epochs the natural network trained",
    "epochs_baseline": "epochs of the baseline network",
    "epochs_perturbed": "epochs of the perturbation-trained network",
    "loss_natural": "final mean training loss, natural network",
    "loss_baseline": "final mean training loss, baseline network",
    "loss_perturbed": "final mean training loss, perturbation-trained network",
    "diverged": "1 if a network's training loss became non-finite",
    "success": "fraction of perturbed inputs the natural network assigns to their target",
    "l0": "mean number of changed input values",
    "l2": "mean l2 norm of the change",
    "linf": "mean linf norm of the change",
    "eps_radius": "radius PGD used (eps, scaled for pgd-l2 under eps_scaling sqrt-dim; NaN otherwise)",
    "changed_max": "most values a ratio method may change: ceil(ratio * d) (-1 otherwise)",
    "solver_iterations": "solver iterations per sample (pcfe-l0: all search steps)",
    "time_natural": "seconds training the natural network (0: reused from the previous configuration)",
    "time_baseline": "seconds training the baseline network (0: reused)",
    "time_perturb": "seconds perturbing",
    "time_perturbed": "seconds training the perturbation-trained network",
    "time_total": "seconds for the configuration",
}


def write_results(
    path: str | os.PathLike,
    rows: list[dict[str, Any]],
    *,
    record: dict[str, Any],
    result_fields: tuple[str, ...],
    timing_fields: tuple[str, ...],
    labels: dict[str, tuple[str, ...]],
    force: bool = False,
) -> None:
    """Write a results file (atomically: a temporary name, renamed when complete). ``labels``: the names each
    categorical point field may take (their codes are positions in these lists)."""
    with H5Writer(path, KIND, force=force) as w:
        for f in CATEGORIES:
            names = list(labels[f])
            try:
                codes = [names.index(r[f]) for r in rows]
            except ValueError:
                raise ValueError(f"a row has a {f} outside {names}") from None
            w.put(f"points/{f}", np.asarray(codes, dtype=np.int16), DESCRIPTIONS[f])
            w.set_attr(f"points/{f}", "labels", json.dumps(names))
        for f in INT_POINT:
            w.put(f"points/{f}", np.asarray([r[f] for r in rows], dtype=np.int64), DESCRIPTIONS[f])
        for f in FLOAT_POINT:
            w.put(
                f"points/{f}",
                np.asarray([math.nan if r[f] is None else r[f] for r in rows], dtype=np.float64),
                DESCRIPTIONS[f],
            )
        for f in result_fields:
            dtype = np.int64 if f in INT_RESULTS else np.float64
            w.put(f"results/{f}", np.asarray([r[f] for r in rows], dtype=dtype), DESCRIPTIONS.get(f, f))
        for f in timing_fields:
            w.put(f"timing/{f}", np.asarray([r[f] for r in rows], dtype=np.float64), DESCRIPTIONS.get(f, f))
        w.record = record


def read_results(path: str | os.PathLike) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``(rows, record)`` of a results file; rows are dicts of the point, results and timing fields (``eps`` /
    ``ratio`` None where not applicable). Anything else (another kind, a damaged file) is an ``ArtifactError``."""
    f, record = open_h5(path, kinds=(KIND,))
    with f:
        for group in ("points", "results", "timing"):
            if group not in f or not hasattr(f[group], "keys"):
                raise ArtifactError(f"{path} has no '{group}' group; the file is damaged")
        columns: dict[str, np.ndarray] = {}
        for group in ("points", "results", "timing"):
            for name in f[group].keys():
                columns[name] = read_array(f, f"{group}/{name}", path=path, ndim=1)
        missing = [c for c in POINT_FIELDS + ("acc_perturbed", "acc_baseline") if c not in columns]
        if missing:
            raise ArtifactError(f"{path} lacks the column(s) {', '.join(missing)}; the file is damaged")
        sizes = {len(v) for v in columns.values()}
        if len(sizes) != 1:
            raise ArtifactError(f"{path}: its columns have different lengths; the file is damaged")
        decoded: dict[str, list[str]] = {}
        for c in CATEGORIES:
            try:
                names = json.loads(f[f"points/{c}"].attrs.get("labels", "null"))
            except (TypeError, ValueError):
                names = None
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ArtifactError(f"{path}: points/{c} has no readable labels attribute; the file is damaged")
            codes = columns[c]
            if codes.size and (codes.min() < 0 or codes.max() >= len(names)):
                raise ArtifactError(f"{path}: points/{c} holds codes outside its labels; the file is damaged")
            decoded[c] = [names[int(k)] for k in codes]
    n = sizes.pop()
    rows = []
    for i in range(n):
        row: dict[str, Any] = {}
        for name, col in columns.items():
            if name in decoded:
                row[name] = decoded[name][i]
            elif col.dtype.kind in "iub":
                row[name] = int(col[i])
            else:
                v = float(col[i])
                row[name] = None if name in FLOAT_POINT and math.isnan(v) else v
        rows.append(row)
    return rows, record


def save_figure(fig: Any, path: str | os.PathLike, *, force: bool = False) -> None:
    """Save a matplotlib figure atomically, in the format its extension names."""
    fmt = Path(path).suffix.lower().lstrip(".")
    with atomic_output(path, force) as tmp:
        fig.savefig(tmp, format=fmt, dpi=110, bbox_inches="tight")
