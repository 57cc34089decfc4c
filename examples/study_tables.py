"""Tables the study scripts (examples/five_methods.sh, examples/pcfe_ablations.sh) build from lfp's own JSON outputs;
standard library only, so any python3 runs it.

    python3 study_tables.py column REPORT.json EVAL.json
        The label of the column of ``lfp report --format json`` output REPORT.json that holds the eval report
        EVAL.json (what ``lfp report --baseline`` takes). Labels come from the runs' provenance, so a script names
        its baseline by one of its files rather than by a label that depends on what else is in the table.

    python3 study_tables.py attribution REPORT.json --out OUT.md [--title TEXT] --pair EVAL.json SALIENCY.json ...
        Attribution share on the object per column of REPORT.json: each pair is an eval report (which column and
        seed the model is, read from REPORT.json) and the ``lfp saliency --json`` summary of the same model. Per
        column, mean (std) over seeds (sample std, ddof = 1) of: the share over all images, the share of the group
        where it is lowest (per seed), and chance beside each (the mask's area: a uniform map's share).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys


def _same(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _cells(report: dict) -> list[tuple[str, str, str]]:
    """``(column label, seed, eval report path)`` for every run of every column of a report."""
    labels = {c["id"]: c["label"] for c in report["columns"]}
    out = []
    for row in report["rows"]:
        for cid, cell in row["cells"].items():
            out.extend((labels[cid], str(seed), path) for seed, path in zip(cell["seeds"], cell["reports"]))
    return out


def column_of(report: dict, evaluation: str) -> tuple[str, str]:
    """``(label, seed)`` of the column of ``report`` that holds the eval report ``evaluation``."""
    for label, seed, path in _cells(report):
        if _same(path, evaluation):
            return label, seed
    raise SystemExit(f"study_tables.py: {evaluation} is in no column of the report")


def _mean_std(values: list[float]) -> str:
    n = len(values)
    mean = math.fsum(values) / n
    if n == 1:
        return f"{100 * mean:.2f}"
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    return f"{100 * mean:.2f} ({100 * std:.2f})"


def attribution_figures(summary: dict) -> dict[str, float]:
    """Share (all images, worst group) and chance (all images, that group) of a one-model saliency summary."""
    (model,) = summary["models"]
    if model.get("share") is None:
        raise SystemExit(f"study_tables.py: the saliency summary of {model.get('path')} has no share (no masks)")
    groups = {g: v["share"] for g, v in (model.get("groups") or {}).items() if v.get("share") is not None}
    area = summary["mask_area"]
    worst = min(groups, key=groups.get) if groups else None
    return {
        "share": model["share"],
        "share_worst": groups[worst] if worst else model["share"],
        "chance": area["mean"],
        "chance_worst": area["groups"][worst] if worst else area["mean"],
        "worst": worst or "all",
        "n": summary["n"],
    }


ROWS = (
    ("share", "share on the object, all images"),
    ("chance", "chance (mask area), all images"),
    ("share_worst", "share on the object, worst group"),
    ("chance_worst", "chance (mask area), that group"),
)


def attribution_table(report: dict, pairs: list[tuple[str, str]], title: str) -> str:
    columns: dict[str, dict[str, dict]] = {}
    absent = []
    for evaluation, saliency in pairs:
        if not os.path.exists(saliency):  # a model evaluated by an earlier run whose saliency stage did not finish
            absent.append(saliency)
            continue
        label, seed = column_of(report, evaluation)
        with open(saliency) as f:
            columns.setdefault(label, {})[seed] = attribution_figures(json.load(f))
    order = [c["label"] for c in report["columns"] if c["label"] in columns]
    lines = [f"**{title}**", "", "| figure | " + " | ".join(order) + " |", "|---|" + "---:|" * len(order)]
    for key, name in ROWS:
        cells = [_mean_std([columns[c][s][key] for s in sorted(columns[c])]) for c in order]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    worst = [", ".join(f"{s}: {columns[c][s]['worst']}" for s in sorted(columns[c])) for c in order]
    lines.append("| worst group, by seed | " + " | ".join(worst) + " |")
    images = sorted({f["n"] for c in order for f in columns[c].values()})
    seeds = sorted({s for c in order for s in columns[c]})
    lines += [
        "",
        f"Percent, mean (std) over seeds {', '.join(seeds)} (sample std, ddof=1); {'/'.join(map(str, images))} "
        "images a model and seed. Share: the fraction of a map's positive attribution mass inside the object's "
        "mask, averaged over images (lfp saliency: Grad-CAM of the predicted class); worst group: the group whose "
        "mean share is lowest, per seed; chance: the mask's area, what a uniform map would score.",
    ]
    if absent:
        lines += ["", f"Left out, no saliency summary (run the stage that makes it again): {', '.join(absent)}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="study_tables.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    col = sub.add_parser("column", help="the label of the column holding an eval report")
    col.add_argument("report")
    col.add_argument("evaluation")
    att = sub.add_parser("attribution", help="attribution share per column, mean (std) over seeds")
    att.add_argument("report")
    att.add_argument("--out", required=True)
    att.add_argument("--title", default="Attribution share on the object")
    att.add_argument("--pair", nargs=2, action="append", required=True, metavar=("EVAL.json", "SALIENCY.json"))
    args = parser.parse_args(argv)
    with open(args.report) as f:
        report = json.load(f)
    if args.what == "column":
        print(column_of(report, args.evaluation)[0])
        return
    text = attribution_table(report, [tuple(p) for p in args.pair], args.title)
    tmp = f"{args.out}.part"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, args.out)  # whole or not at all


if __name__ == "__main__":
    main(sys.argv[1:])
