"""The aggregated report as text: Markdown, CSV, LaTeX or JSON.

Two layouts. ``paper`` (the default) is the paper's Tables 1 and 2: one table per metric, a row per data set and
split, a column per experiment, each cell ``mean (std)`` over seeds. ``long`` gives each experiment a row and each
split and metric a column (the shape of an ablation table). Markdown and LaTeX show percentages with two decimals
(``scale="percent"``, as the paper does) or fractions with three; CSV and JSON always carry the unrounded fractions,
with n, std, min and max, so every printed figure can be checked against them.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from lfpcli.errors import ConfigError
from lfpcli.report.aggregate import METRIC_TITLES

FORMATS = ("md", "csv", "tex", "json")
LAYOUTS = ("paper", "long")
SCALES = ("percent", "fraction")


def _num(v: float | None, scale: str) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.2f}" if scale == "percent" else f"{v:.3f}"


def cell_text(cell: dict[str, Any] | None, scale: str) -> str:
    """``mean (std)``; ``mean (-)`` for a single run; `` [n=K of R]`` where some runs lack the figure."""
    if not cell or not cell.get("n"):
        return "-"
    text = f"{_num(cell['mean'], scale)} ({_num(cell['std'], scale)})"
    if cell["n"] != cell.get("runs", cell["n"]):
        text += f" [n={cell['n']} of {cell['runs']}]"
    return text


def diff_text(cell: dict[str, Any] | None, scale: str) -> str:
    """A paired difference: ``+mean [low, high]``; ``+mean (n=1)`` without an interval; ``-`` without pairs."""
    d = (cell or {}).get("vs_baseline")
    if not d or not d.get("n"):
        return "-"

    def num(v: float) -> str:
        return f"{100 * v:+.2f}" if scale == "percent" else f"{v:+.3f}"

    if d.get("ci") is None:
        return f"{num(d['mean'])} (n=1)"
    return f"{num(d['mean'])} [{num(d['ci'][0])}, {num(d['ci'][1])}]"


def _diff_title(rep: dict[str, Any], what: str, scale: str) -> str:
    unit = "percentage points" if scale == "percent" else "fraction"
    return (
        f"{what[0].upper()}{what[1:]}: difference from {rep['baseline']['label']}, paired by seed: mean [95% "
        f"Student-t interval] ({unit})"
    )


def _diff_body(body: list[list[Any]], lead: int, keep: list[bool]) -> list[list[Any]]:
    """``body`` with each cell turned into its paired-difference text, columns ``keep`` only."""
    return [
        [x for x, k in zip(row[:lead], keep[:lead]) if k]
        + [x if isinstance(x, str) else _Diff(x or {}) for x, k in zip(row[lead:], keep[lead:]) if k]
        for row in body
    ]


class _Diff(dict):
    """A cell shown as its paired difference."""


def _runs_line(rep: dict[str, Any]) -> str:
    """How many runs each column averages, and their seeds."""
    per_col: dict[str, set] = {}
    seeds: dict[str, set] = {}
    for row in rep["rows"]:
        for cid, cell in row["cells"].items():
            per_col.setdefault(cid, set()).add(cell["runs"])
            seeds.setdefault(cid, set()).update(cell["seeds"])
    labels = {c["id"]: c["label"] for c in rep["columns"]}
    counts = {cid: max(v) for cid, v in per_col.items()}
    if len(set(counts.values())) == 1 and len({tuple(sorted(s)) for s in seeds.values()}) == 1:
        n = next(iter(counts.values()))
        return f"runs per column: {n} (seeds {', '.join(sorted(next(iter(seeds.values())), key=_seed_order))})"
    return "runs per column: " + "; ".join(
        f"{labels[c]} {counts[c]} (seeds {', '.join(sorted(seeds[c], key=_seed_order))})" for c in labels if c in counts
    )


def _seed_order(s: str) -> tuple:
    return (0, int(s), s) if s.isdigit() else (1, 0, s)


def _paper_tables(rep: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """``(title, header, rows)`` per metric, cells as ``(data, split, cell dicts...)`` (not yet text)."""
    out = []
    for metric in rep["metrics"]:
        rows = [r for r in rep["rows"] if r["metric"] == metric]
        used = [c for c in rep["columns"] if any(c["id"] in r["cells"] for r in rows)]
        header = ["data", "split"] + [c["label"] for c in used]
        body = []
        for r in rows:
            body.append([r["data"], r["split"]] + [r["cells"].get(c["id"]) for c in used])
        out.append((METRIC_TITLES[metric], header, body))
    return out


def _long_table(rep: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    datas = list(dict.fromkeys(r["data"] for r in rep["rows"]))
    multi = len(datas) > 1
    pairs = [(m, s) for m in rep["metrics"] for s in rep["splits"]]
    header = (["data"] if multi else []) + ["configuration", "runs"] + [f"{s} {METRIC_TITLES[m]}" for m, s in pairs]
    body = []
    for d in datas:
        for c in rep["columns"]:
            cells = [
                next(
                    (
                        r["cells"].get(c["id"])
                        for r in rep["rows"]
                        if r["data"] == d and r["metric"] == m and r["split"] == s
                    ),
                    None,
                )
                for m, s in pairs
            ]
            if not any(cells):
                continue
            runs = max((x["runs"] for x in cells if x), default=0)
            body.append(([d] if multi else []) + [c["label"], str(runs)] + cells)
    return header, body


def _title(metric_title: str, scale: str) -> str:
    unit = "%" if scale == "percent" else "fraction"
    return f"{metric_title[0].upper()}{metric_title[1:]}, mean (std) over seeds ({unit})"


def _text(x: Any, scale: str) -> str:
    if isinstance(x, str):
        return x
    if isinstance(x, _Diff):
        return diff_text(x, scale)
    return cell_text(x, scale)


def render_md(rep: dict[str, Any], *, layout: str = "paper", scale: str = "percent") -> str:
    lines: list[str] = []

    def table(header: list[str], body: list[list[Any]]) -> None:
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|")
        for row in body:
            lines.append("| " + " | ".join(_text(x, scale) for x in row) + " |")

    base = rep.get("baseline")
    if layout == "paper":
        for i, (title, header, body) in enumerate(_paper_tables(rep)):
            if i:
                lines.append("")
            lines.append(f"**{_title(title, scale)}**")
            lines.append("")
            # the same data set's rows are not repeated: blank after the first, as in the paper
            prev = None
            shown = []
            for row in body:
                shown.append([row[0] if row[0] != prev else ""] + row[1:])
                prev = row[0]
            table(header, shown)
            if base:
                keep = [True, True] + [h != base["label"] for h in header[2:]]
                lines += ["", f"**{_diff_title(rep, title, scale)}**", ""]
                table([h for h, k in zip(header, keep) if k], _diff_body(shown, 2, keep))
    else:
        header, body = _long_table(rep)
        unit = "%" if scale == "percent" else "fraction"
        lines.append(f"**mean (std) over seeds ({unit})**")
        lines.append("")
        table(header, body)
        if base:
            lead = header.index("runs") + 1
            rows = [r for r in body if r[lead - 2] != base["label"]]
            lines += ["", f"**{_diff_title(rep, 'every figure', scale)}**", ""]
            table(header, _diff_body(rows, lead, [True] * len(header)))
    lines.append("")
    lines.append(f"{rep['std']}; {_runs_line(rep)}.")
    for note in rep["notes"]:
        lines.append(f"Note: {note}.")
    return "\n".join(lines) + "\n"


_TEX_METHODS = {
    "PGD l2": r"PGD $\ell_2$",
    "PGD linf": r"PGD $\ell_\infty$",
    "PGD l0": r"PGD $\ell_0$",
    "CFE l2": r"CFE $\ell_2$",
    "p-CFE l0": r"p-CFE $\ell_0$",
}


def _tex_escape(s: str) -> str:
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("_", r"\_"),
        ("#", r"\#"),
        ("{", r"\{"),
        ("}", r"\}"),
    ):
        s = s.replace(a, b)
    return s


def _tex_label(label: str) -> str:
    for plain, tex in _TEX_METHODS.items():
        if label.startswith(plain):
            return tex + _tex_escape(label[len(plain) :])
    return _tex_escape(label)


def render_tex(rep: dict[str, Any], *, layout: str = "paper", scale: str = "percent") -> str:
    out: list[str] = [f"% lfp report: {rep['std']}", f"% {_runs_line(rep)}"]
    out += [f"% note: {n}" for n in rep["notes"]]

    def tabular(caption: str, header: list[str], body: list[list[Any]], nlead: int) -> None:
        out.append(r"\begin{table}[t]")
        out.append(r"\centering")
        out.append(rf"\caption{{{_tex_escape(caption)}}}")
        out.append(r"\begin{tabular}{" + "l" * nlead + "c" * (len(header) - nlead) + "}")
        out.append(r"\toprule")
        out.append(" & ".join(_tex_label(h) if i >= nlead else _tex_escape(h) for i, h in enumerate(header)) + r" \\")
        out.append(r"\midrule")
        for row in body:
            out.append(" & ".join(_tex_escape(x) if isinstance(x, str) else _text(x, scale) for x in row) + r" \\")
        out.append(r"\bottomrule")
        out.append(r"\end{tabular}")
        out.append(r"\end{table}")

    if layout == "paper":
        for title, header, body in _paper_tables(rep):
            prev, shown = None, []
            for row in body:
                shown.append([row[0] if row[0] != prev else ""] + row[1:])
                prev = row[0]
            tabular(_title(title, scale), ["Dataset", "Split Set"] + header[2:], shown, 2)
            if rep.get("baseline"):
                keep = [True, True] + [h != rep["baseline"]["label"] for h in header[2:]]
                tabular(
                    _diff_title(rep, title, scale),
                    [h for h, k in zip(["Dataset", "Split Set"] + header[2:], keep) if k],
                    _diff_body(shown, 2, keep),
                    2,
                )
    else:
        header, body = _long_table(rep)
        lead = header.index("runs") + 1
        tabular(_title("results", scale), header, body, lead)
        if rep.get("baseline"):
            rows = [r for r in body if r[lead - 2] != rep["baseline"]["label"]]
            tabular(_diff_title(rep, "every figure", scale), header, _diff_body(rows, lead, [True] * len(header)), lead)
    return "\n".join(out) + "\n"


def render_csv(rep: dict[str, Any]) -> str:
    """One line per data set, split, metric and column, the unrounded figures as fractions."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "data",
            "split",
            "metric",
            "column",
            "method",
            "targets",
            "density",
            "variant",
            "n",
            "runs",
            "mean",
            "std",
            "min",
            "max",
            "seeds",
            "values",
            "baseline",
            "diff_n",
            "diff_mean",
            "diff_std",
            "diff_ci_low",
            "diff_ci_high",
            "diff_seeds",
        ]
    )
    base = (rep.get("baseline") or {}).get("label", "")
    cols = {c["id"]: c for c in rep["columns"]}
    for row in rep["rows"]:
        for cid, cell in row["cells"].items():
            c = cols[cid]
            variant = ";".join(f"{k}={v}" for k, v in c["variant"].items())
            w.writerow(
                [
                    row["data"],
                    row["split"],
                    row["metric"],
                    c["label"],
                    c.get("method") or "",
                    c.get("targets") or "",
                    c.get("density") or "",
                    variant,
                    cell["n"],
                    cell["runs"],
                    _raw(cell["mean"]),
                    _raw(cell["std"]),
                    _raw(cell["min"]),
                    _raw(cell["max"]),
                    " ".join(cell["seeds"]),
                    " ".join(repr(v) for v in cell["values"]),
                ]
                + _diff_fields(cell, base)
            )
    return buf.getvalue()


def _diff_fields(cell: dict[str, Any], base: str) -> list[str]:
    d = cell.get("vs_baseline")
    if not d:
        return [base if base else "", "", "", "", "", "", ""]
    ci = d.get("ci") or [None, None]
    return [base, str(d["n"]), _raw(d["mean"]), _raw(d["std"]), _raw(ci[0]), _raw(ci[1]), " ".join(d["seeds"])]


def _raw(v: float | None) -> str:
    return "" if v is None else repr(float(v))


def render(rep: dict[str, Any], fmt: str = "md", *, layout: str = "paper", scale: str = "percent") -> str:
    """The report in ``fmt`` (md, csv, tex, json)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt}: unknown; choose one of {', '.join(FORMATS)}")
    if layout not in LAYOUTS:
        raise ConfigError(f"--layout {layout}: unknown; choose one of {', '.join(LAYOUTS)}")
    if scale not in SCALES:
        raise ConfigError(f"--scale {scale}: unknown; choose one of {', '.join(SCALES)}")
    if fmt == "md":
        return render_md(rep, layout=layout, scale=scale)
    if fmt == "tex":
        return render_tex(rep, layout=layout, scale=scale)
    if fmt == "csv":
        return render_csv(rep)
    return json.dumps(rep, indent=2) + "\n"
