"""Eval reports grouped by what made them, reduced over seeds: the numbers behind ``lfp report``.

Each eval report (``lfp eval --out``) becomes a :class:`Run`: its figures per split, the data it was evaluated on
and the chain summary of its model (:mod:`lfpcli.report.provenance`; taken from the report when it carries one,
otherwise rebuilt by following its parents). Runs whose data, method, target rule, density and every other setting
agree are the *same experiment* and are averaged; they differ only in their seeds. :func:`aggregate` lays the
experiments out as the paper's Tables 1 and 2 do: one row per data set and split, one column per method (and per
target rule and density where those vary), ``original`` for standard training; runs that differ in a setting that
is not one of the ``by`` keys get a column each, and the result says which setting split them.

Spread: ``std`` is the *sample* standard deviation over seeds (ddof = 1; ``None`` for a single run).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lfpcli.errors import ArtifactError, ConfigError, InputError
from lfpcli.report.provenance import SUMMARY_VERSION, chain_summary, data_key_and_label, standard_method

#: The keys a table can be laid out by; any ``config`` key of the runs (e.g. ``perturb.beta``) is accepted too.
BY_KEYS = ("method", "data", "targets", "density")
DEFAULT_BY = BY_KEYS
#: Figures of one split, as ``lfp eval`` names them, under the names ``--metric`` takes.
METRICS = {
    "accuracy": "accuracy",
    "worst-group": "worst_group_accuracy",
    "mean-group": "mean_group_accuracy",
    "train-weighted": "train_weighted_accuracy",
}
METRIC_TITLES = {
    "accuracy": "accuracy",
    "worst-group": "worst-group accuracy",
    "mean-group": "mean-group accuracy",
    "train-weighted": "train-weighted accuracy",
}
DEFAULT_METRICS = ("accuracy", "worst-group")
DEFAULT_SPLITS = ("train", "test")
#: The paper's column order (Tables 1 and 2), then lfp's other methods; ``original`` (standard training) and
#: ``group-balanced`` (standard training with ``--balance groups``) last.
METHOD_ORDER = ("pgd-l2", "pgd-linf", "pgd-l0", "cfe-l2", "pcfe-l0")
METHOD_NAMES = {
    "pgd-l2": "PGD l2",
    "pgd-linf": "PGD linf",
    "pgd-l0": "PGD l0",
    "cfe-l2": "CFE l2",
    "pcfe-l0": "p-CFE l0",
    "original": "Original",
    "group-balanced": "Group-balanced",
}
TARGET_ORDER = ("random", "random-other", "deterministic")
STD_NOTE = "std: sample standard deviation over seeds (ddof=1)"


@dataclass
class Run:
    """One eval report: where it is, what it measured, and the provenance of the model it measured."""

    path: str
    sha256: str
    data_key: str
    data_label: str
    summary: dict[str, Any]
    splits: dict[str, dict[str, Any]]
    provenance_from: str  # "report" (the summary it carries) or "parents" (rebuilt now)

    @property
    def method(self) -> str:
        return str(self.summary.get("method"))

    def keys(self) -> dict[str, Any]:
        """Every grouping key of this run: the four named ones and its config, seeds left out."""
        return {
            "method": self.summary.get("method"),
            "data": self.data_key,
            "targets": self.summary.get("targets"),
            "density": self.summary.get("density"),
            **(self.summary.get("config") or {}),
        }

    def seed_label(self) -> str:
        seeds = {k: v for k, v in (self.summary.get("seeds") or {}).items() if v is not None}
        vals = set(map(str, seeds.values()))
        if len(vals) == 1:
            return vals.pop()
        return ",".join(f"{k}={v}" for k, v in seeds.items()) or "?"


# ------------------------------------------------------------------------------------------------ loading


def _what_file(p: Path) -> str | None:
    """A file that is plainly not a JSON eval report, in words; None when it may be one."""
    from lfpcli.artifacts.integrity import USERBLOCK_SIZE, is_hdf5

    with open(p, "rb") as f:
        head = f.read(USERBLOCK_SIZE + 8)
    if not head:
        return "is empty"
    if is_hdf5(head):
        try:
            from lfpcli.artifacts import open_h5

            f, rec = open_h5(p)
            f.close()
            return f"is an lfp {rec.get('kind')} file (HDF5)"
        except InputError:
            return "is an HDF5 file"
    if head.startswith(b"PK") or head[:1] == b"\x80":
        return "is a PyTorch file (a model checkpoint?)"
    if head.lstrip()[:1] not in (b"{", b"["):
        return "is not JSON"
    return None


def load_run(path: str | os.PathLike) -> Run:
    """Read one eval report and its model's provenance; a file that is not a clean-data eval report is refused."""
    from lfpcli.artifacts import load_json_artifact, sha256_file

    p = Path(path)
    if not p.exists():
        raise InputError(f"eval report {p} does not exist")
    if p.is_dir():
        raise InputError(f"{p} is a folder, not an eval report")
    what = _what_file(p)
    if what is not None:
        hint = " (for training curves of checkpoints: lfp report --curves MODEL.pt ...)" if "PyTorch" in what else ""
        raise ArtifactError(
            f"{p} {what}, not an eval report: make one with lfp eval --in MODEL.pt --out REPORT.json{hint}"
        )
    obj = load_json_artifact(p)
    splits = obj.get("splits")
    if not isinstance(splits, dict) or not splits:
        if isinstance(obj.get("perturbed"), dict):
            raise InputError(
                f"{p} is an eval report on a perturbed set (lfp eval --data SET.h5), not on clean data; "
                f"lfp report aggregates clean evaluations"
            )
        raise ArtifactError(f"{p} is an eval report without figures per split; the file is damaged")
    for name, fig in splits.items():
        if not isinstance(fig, dict) or not _is_fraction(fig.get("accuracy")):
            raise ArtifactError(f"{p}: split '{name}' has no valid accuracy; the file is damaged")
    summary = obj.get("provenance")
    source = "report"
    if summary is None:
        summary, source = _summary_from_parents(p, obj), "parents"
    elif not _valid_summary(summary):
        raise ArtifactError(f"{p} carries a malformed provenance summary; the file is damaged")
    elif summary["method"] == "original":
        summary = {**summary, "method": standard_method(summary["config"])}
    key, label = data_key_and_label(obj.get("data"))
    return Run(
        path=str(p),
        sha256=sha256_file(p),
        data_key=key,
        data_label=label,
        summary=summary,
        splits=splits,
        provenance_from=source,
    )


def _is_fraction(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0.0 <= v <= 1.0


def _valid_summary(s: Any) -> bool:
    return (
        isinstance(s, dict)
        and s.get("version") == SUMMARY_VERSION
        and isinstance(s.get("method"), str)
        and isinstance(s.get("config"), dict)
        and isinstance(s.get("model"), dict)
        and isinstance(s.get("model", {}).get("sha256"), str)
        and isinstance(s.get("seeds"), dict)
    )


def _summary_from_parents(p: Path, obj: Mapping[str, Any]) -> dict[str, Any]:
    """The chain summary of an eval report written without one: follow its ``model`` parent."""
    from lfpcli.artifacts import load_checkpoint, sha256_file
    from lfpcli.artifacts.provenance import locate_parent

    entry = next((e for e in obj.get("parents") or [] if e.get("role") == "model"), None)
    if entry is None:
        raise ArtifactError(f"{p} names no model among its parents; the file is damaged")
    found = locate_parent(entry, p)
    if found is None:
        raise InputError(
            f"{p} carries no provenance summary (written by an older lfp) and its model {entry.get('path')} "
            f"is gone, so which run it is cannot be told; evaluate the model again with lfp eval --out"
        )
    now = sha256_file(found)
    if now != entry.get("sha256"):
        raise InputError(
            f"{p} was made from model {entry.get('path')} (sha256 {str(entry.get('sha256'))[:12]}), but "
            f"{found} now has sha256 {now[:12]}: the report does not describe it; evaluate it again"
        )
    _, meta = load_checkpoint(found)
    return chain_summary(meta, found, sha256=now)


def load_runs(paths: Sequence[str | os.PathLike]) -> list[Run]:
    if not paths:
        raise InputError("give at least one eval report (lfp eval --in MODEL.pt --out REPORT.json)")
    runs = [load_run(p) for p in paths]
    seen: dict[str, str] = {}
    for r in runs:
        sha = str(r.summary["model"]["sha256"])
        key = f"{sha}|{r.data_key}"
        if key in seen:
            raise InputError(
                f"{seen[key]} and {r.path} both report model {sha[:12]} on the same data; give each run once "
                f"(averaging them would count one seed twice)"
            )
        seen[key] = r.path
    return runs


# ------------------------------------------------------------------------------------------- aggregation


@dataclass
class Column:
    """One column of the tables: an experiment (the runs that agree in everything but their seeds) per data set."""

    id: str
    label: str
    keys: dict[str, Any]  # the ``by`` keys (data left out) and, for a split column, the keys that split it
    variant: dict[str, Any] = field(default_factory=dict)  # every setting that splits it from its neighbours
    shown: dict[str, Any] = field(default_factory=dict)  # those where it differs from the neighbours' usual value


def _stats(values: list[float]) -> dict[str, Any]:
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"n": n, "mean": mean, "std": std, "min": min(values), "max": max(values)}


def _fmt_value(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return "[" + ",".join(_fmt_value(x) for x in v) + "]"
    return str(v)


def _sort_key(v: Any) -> tuple:
    if v is None:
        return (0, "")
    if isinstance(v, bool):
        return (1, str(v))
    if isinstance(v, (int, float)):
        return (2, float(v), "")
    return (3, str(v))


def _order(method: Any) -> tuple:
    m = str(method)
    if m == "original":  # the models trained on clean data last: the standard one, then the group-balanced reference
        return (2, 0, m)
    if m == "group-balanced":
        return (2, 1, m)
    return (0, METHOD_ORDER.index(m), m) if m in METHOD_ORDER else (1, 0, m)


def parse_where(items: Iterable[str] | None) -> list[tuple[str, str]]:
    out = []
    for item in items or []:
        key, eq, value = str(item).partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--where takes KEY=VALUE (e.g. targets=random or perturb.beta=0.01), got '{item}'")
        out.append((key.strip(), value.strip()))
    return out


def _matches(v: Any, want: str) -> bool:
    if _fmt_value(v) == want or str(v) == want:
        return True
    try:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and float(want) == float(v)
    except ValueError:
        return False


def aggregate(
    runs: Sequence[Run],
    *,
    by: Sequence[str] = DEFAULT_BY,
    metrics: Sequence[str] = DEFAULT_METRICS,
    splits: Sequence[str] | None = None,
    where: Sequence[tuple[str, str]] = (),
    baseline: str | None = None,
) -> dict[str, Any]:
    """Group ``runs`` into experiments and reduce each over its seeds; see the module docstring.

    ``baseline`` names a column (e.g. ``Original``): every other cell gets ``vs_baseline``, the paired difference
    (cell minus baseline, runs paired by seed) with its 95% Student-t interval (:mod:`lfpcli.report.paired`).

    ``splits`` None: train and test (the paper's), those of them the reports have, else every split they have.
    Returns a JSON-able dict: ``columns`` (id, label, the keys that define it), ``rows`` (one per data set, split
    and metric, with a cell per column: n, mean, std, min, max, the seeds and the reports averaged), ``splits_by``
    (for every column that a setting outside ``by`` split, which setting and its values) and ``notes``.
    """
    by = [b.strip() for b in by if b.strip()]
    all_keys = set(BY_KEYS)
    for r in runs:
        all_keys.update(r.keys())
    bad = [b for b in by if b not in all_keys]
    if bad:
        raise ConfigError(
            f"--by {bad[0]}: no such key; use {', '.join(BY_KEYS)}, or a setting the runs record "
            f"(e.g. perturb.beta, retrain.train.epochs)"
        )
    if len(set(by)) != len(by):
        raise ConfigError(f"--by names a key twice: {','.join(by)}")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ConfigError(f"--metric {unknown[0]}: unknown; choose from {', '.join(METRICS)}")
    if not metrics:
        raise ConfigError("--metric: give at least one of " + ", ".join(METRICS))
    if splits is not None and not splits:
        raise ConfigError("--split: give at least one split (train, val, test)")
    for key, value in where:
        if key not in all_keys:
            raise ConfigError(
                f"--where {key}={value}: no such key; use {', '.join(BY_KEYS)} or a setting the runs record"
            )
        if not any(
            _matches(r.keys().get(key) if key != "data" else r.data_label, value)
            or (key == "data" and _matches(r.data_key, value))
            for r in runs
        ):
            raise InputError(f"--where {key}={value}: no run has it")
    chosen = [r for r in runs if all(_where_ok(r, k, v) for k, v in where)]
    data_keys = list(dict.fromkeys(r.data_key for r in chosen))
    if "data" not in by and len(data_keys) > 1:
        labels = sorted({r.data_label for r in chosen})
        raise InputError(
            f"the reports come from {len(data_keys)} data sets ({', '.join(labels)}): mixed data sets are "
            f"never averaged; add data to --by to give each its rows, or report them separately"
        )
    have = list(dict.fromkeys(k for r in chosen for k in r.splits))
    if splits is None:  # the paper's train and test where the reports have them, else whatever they have
        splits = [s for s in DEFAULT_SPLITS if s in have] or have
    for s in splits:
        if not any(s in r.splits for r in chosen):
            have = sorted({k for r in chosen for k in r.splits})
            raise InputError(f"--split {s}: no report has it (they have {', '.join(have)})")

    col_by = [b for b in by if b != "data"]
    # experiments: runs equal in every key but the seeds
    experiments: dict[tuple, list[Run]] = {}
    for r in chosen:
        ident = tuple(sorted((k, _fmt_value(v)) for k, v in r.keys().items()))
        experiments.setdefault(ident, []).append(r)
    # per data set and column key, the experiments that fall together, and what tells them apart
    per_cell: dict[tuple, list[list[Run]]] = {}
    for rs in experiments.values():
        k = rs[0].keys()
        per_cell.setdefault((rs[0].data_key, tuple(_fmt_value(k.get(b)) for b in col_by)), []).append(rs)
    columns: dict[tuple, Column] = {}
    members: dict[tuple, list[Run]] = {}  # (data key, column id key) -> runs
    splits_by = []
    for (dkey, ckey), exps in per_cell.items():
        if len(exps) > 1:
            keysets = [e[0].keys() for e in exps]
            names = sorted(set().union(*keysets))
            differ = [n for n in names if len({_fmt_value(ks.get(n)) for ks in keysets}) > 1]
        else:
            differ = []
        # a setting's usual value (the one most of these experiments share, if one does) goes unsaid in the names
        usual = {}
        for n in differ:
            counts: dict[str, int] = {}
            for e in exps:
                v = _fmt_value(e[0].keys().get(n))
                counts[v] = counts.get(v, 0) + 1
            top = sorted(counts.values(), reverse=True)
            if len(top) == 1 or top[0] > top[1]:
                usual[n] = max(counts, key=counts.get)
        for e in exps:
            ks = e[0].keys()
            variant = {n: ks.get(n) for n in differ}
            col_ident = (ckey, tuple((n, _fmt_value(v)) for n, v in variant.items()))
            if col_ident not in columns:
                shown = {n: v for n, v in variant.items() if usual.get(n) != _fmt_value(v)}
                columns[col_ident] = Column(
                    id="", label="", keys={b: ks.get(b) for b in col_by}, variant=variant, shown=shown
                )
            members[(dkey, col_ident)] = e
        if differ:
            splits_by.append(
                {
                    "data": exps[0][0].data_label,
                    "column": dict(zip(col_by, ckey)),
                    "keys": differ,
                    "values": [{n: e[0].keys().get(n) for n in differ} for e in exps],
                }
            )
    ordered = sorted(columns.items(), key=lambda kv: _column_order(kv[1], col_by))
    labelled = _labels([c for _, c in ordered], col_by)
    for i, ((_, col), label) in enumerate(zip(ordered, labelled)):
        col.id, col.label = f"c{i}", label
    rows = []
    data_labels = {r.data_key: r.data_label for r in chosen}
    for dkey in sorted(data_keys, key=lambda k: data_labels[k]) if "data" in by else data_keys:
        for metric in metrics:
            for split in splits:
                cells = {}
                for ident, col in ordered:
                    rs = members.get((dkey, ident))
                    if not rs:
                        continue
                    rs = sorted(rs, key=lambda r: _sort_key(r.seed_label()))
                    vals, used = [], []
                    for r in rs:
                        v = (r.splits.get(split) or {}).get(METRICS[metric])
                        if _is_number(v):
                            vals.append(float(v))
                            used.append(r)
                    cells[col.id] = {
                        **_stats(vals),
                        "values": vals,
                        "seeds": [r.seed_label() for r in used],
                        "reports": [r.path for r in used],
                        "runs": len(rs),
                    }
                rows.append(
                    {"data": data_labels[dkey], "data_key": dkey, "split": split, "metric": metric, "cells": cells}
                )
    notes = []
    base = _pair_with_baseline(baseline, [c for _, c in ordered], rows, notes) if baseline is not None else None
    empty = [m for m in metrics if not any(c["n"] for r in rows if r["metric"] == m for c in r["cells"].values())]
    if empty and len(empty) < len(metrics):
        rows = [r for r in rows if r["metric"] not in empty]
        metrics = [m for m in metrics if m not in empty]
        notes.append(
            f"no report has a {' or '.join(METRIC_TITLES[m] for m in empty)} (data without groups), so it is left out"
        )
    for s in splits_by:
        where_txt = ", ".join(f"{k}={_fmt_value(v)}" for k, v in s["column"].items() if v is not None)
        vals = " | ".join(", ".join(f"{k}={_fmt_value(v)}" for k, v in d.items()) for d in s["values"])
        notes.append(
            f"on {s['data']}, runs of {where_txt or 'one column'} differ in {', '.join(s['keys'])} "
            f"and are not averaged together: {vals}"
        )
    rebuilt = [r.path for r in chosen if r.provenance_from == "parents"]
    if rebuilt:
        notes.append(f"{len(rebuilt)} report(s) carry no provenance summary; it was rebuilt from their parents")
    return {
        "kind": "lfp-report",
        "inputs": [{"path": r.path, "sha256": r.sha256} for r in chosen],
        "left_out_by_where": [r.path for r in runs if r not in chosen],
        "by": list(by),
        "where": [f"{k}={v}" for k, v in where],
        "metrics": list(metrics),
        "splits": list(splits),
        "std": STD_NOTE,
        "columns": [
            {"id": c.id, "label": c.label, **{k: c.keys.get(k) for k in col_by}, "variant": c.variant}
            for _, c in ordered
        ],
        "rows": rows,
        "splits_by": splits_by,
        "baseline": base,
        "notes": notes,
    }


def find_column(name: str, cols: Sequence[Column]) -> Column:
    """The column ``name`` names: its label (any case), its id, or a method (``original``, ``pgd-l2``) that one
    column alone has."""
    want = name.strip().lower()
    for match in (
        lambda c: c.label.lower() == want,
        lambda c: c.id == want,
        lambda c: str(c.keys.get("method")).lower() == want,
    ):
        found = [c for c in cols if match(c)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ConfigError(
                f"--baseline {name}: {len(found)} columns match ({'; '.join(c.label for c in found)}); "
                f"give one column's full label"
            )
    raise ConfigError(f"--baseline {name}: no such column; the columns are: {'; '.join(c.label for c in cols)}")


def _pair_with_baseline(
    name: str, cols: Sequence[Column], rows: list[dict[str, Any]], notes: list[str]
) -> dict[str, Any]:
    """Give every cell of every other column its paired difference with the baseline column's cell of the same row
    (``vs_baseline``, :func:`lfpcli.report.paired.paired_difference`): runs are paired by their seed label."""
    from lfpcli.report.paired import paired_difference

    base = find_column(name, cols)
    labels = {c.id: c.label for c in cols}
    unpaired: dict[str, set] = {}
    for row in rows:
        b = row["cells"].get(base.id)
        if not b:
            continue
        by_seed = {}
        for cid, cell in row["cells"].items():
            if len(set(cell["seeds"])) != len(cell["seeds"]):
                dup = next(x for x in cell["seeds"] if cell["seeds"].count(x) > 1)
                raise InputError(
                    f"--baseline: column {labels[cid]} has two runs of seed {dup}; pairing by seed needs one "
                    f"run per seed and column"
                )
            by_seed[cid] = dict(zip(cell["seeds"], cell["values"]))
        for cid, cell in row["cells"].items():
            if cid == base.id:
                continue
            cell["vs_baseline"] = d = paired_difference(by_seed[cid], by_seed[base.id])
            if d["unpaired"]:
                unpaired.setdefault(labels[cid], set()).update(d["unpaired"])
    for label, seeds in unpaired.items():
        notes.append(
            f"{label}: seed(s) {', '.join(sorted(seeds))} have no partner in the baseline {base.label} (or the other "
            f"way round) and are left out of its paired differences"
        )
    return {
        "id": base.id,
        "label": base.label,
        "level": 0.95,
        "difference": "column minus baseline, paired by seed; 95% Student-t interval over the pairs",
    }


def _where_ok(r: Run, key: str, value: str) -> bool:
    if key == "data":
        return _matches(r.data_label, value) or _matches(r.data_key, value)
    v = r.keys().get(key)
    return v is None or _matches(v, value)  # a run without the key (e.g. original has no targets) stays


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _column_order(col: Column, col_by: Sequence[str]) -> tuple:
    parts: list[Any] = []
    for b in col_by:
        v = col.keys.get(b)
        if b == "method":
            parts.append(_order(v))
        elif b == "targets":
            parts.append((TARGET_ORDER.index(v), "") if v in TARGET_ORDER else (len(TARGET_ORDER), str(v)))
        else:
            parts.append(_sort_key(v))
    parts.append(tuple((n, _sort_key(v)) for n, v in sorted(col.variant.items())))
    # original (no targets) after every perturbation column
    return (_order(col.keys.get("method"))[0] == 2, *parts)


def _labels(cols: Sequence[Column], col_by: Sequence[str]) -> list[str]:
    """Column names: the method's, then every other ``by`` value that varies across columns, then the split."""
    varying = [
        b
        for b in col_by
        if b != "method" and len({_fmt_value(c.keys.get(b)) for c in cols if c.keys.get(b) is not None}) > 1
    ]
    out = []
    for c in cols:
        m = c.keys.get("method")
        head = METHOD_NAMES.get(str(m), str(m)) if "method" in col_by else ""
        extra = [
            _fmt_value(c.keys.get(b)) if b in ("targets", "density") else f"{b}={_fmt_value(c.keys.get(b))}"
            for b in varying
            if c.keys.get(b) is not None
        ]
        label = head + (f" ({', '.join(extra)})" if extra and head else ", ".join(extra))
        if c.shown:
            label += " [" + _settings_text(c.shown) + "]"
        out.append(label or "all runs")
    return out


def _settings_text(settings: Mapping[str, Any]) -> str:
    """``a.b.x=1, a.b.y=2, c=3`` as ``a.b.x=1, y=2; c=3``: keys under one prefix share it."""
    groups: dict[str, list[str]] = {}
    for k in sorted(settings):
        prefix, _, leaf = k.rpartition(".")
        groups.setdefault(prefix, []).append(f"{leaf}={_fmt_value(settings[k])}")
    parts = []
    for prefix, items in groups.items():
        parts.append((f"{prefix}." if prefix else "") + ", ".join(items))
    return "; ".join(parts)
