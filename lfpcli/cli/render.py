"""Everything the CLI shows: progress bars (stderr), rich summaries and ``--json`` objects (stdout)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import rich.table
from rich import box
from rich.console import Console, ConsoleDimensions
from rich.markup import escape
from rich.tree import Tree
from tqdm import tqdm

from lfpcli.commands.common import fmt

#: Width of what is printed to a pipe or file when ``COLUMNS`` does not say: enough for any table at its natural width,
#: so that nothing piped is cut or wrapped by the 80 columns rich assumes for a non-terminal.
PIPE_WIDTH = 1000


class _Stdout(Console):
    """rich's console on stdout: as wide as the terminal (or ``COLUMNS``), and in a pipe without ``COLUMNS`` as wide
    as the text itself. Lines longer than the width wrap between words, never inside one."""

    @property
    def size(self) -> ConsoleDimensions:
        if self.is_terminal or os.environ.get("COLUMNS", "").isdigit():
            return super().size
        return ConsoleDimensions(PIPE_WIDTH, 25)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)


out = _Stdout(highlight=False)


class Table(rich.table.Table):
    """A summary table that stays whole in a terminal of 80 columns: a rule under the header and no borders, figures
    never cut (their headers break over lines), text cells (names, paths; ``text=True``) folded where they must be,
    never ended in '…'."""

    def __init__(self, title: str | None = None, **kw: Any):
        super().__init__(
            title=title,
            **{"title_justify": "left", "box": box.SIMPLE_HEAD, "pad_edge": False, "show_edge": False, **kw},
        )

    def add_column(self, header: str = "", *, text: bool = False, **kw: Any) -> None:  # type: ignore[override]
        super().add_column(header, overflow="fold", no_wrap=not text, **kw)


class TqdmProgress:
    """A :class:`lfpcli.progress.Progress` drawn with tqdm on stderr; one bar per stage, removed when done.

    Bytes (``unit="B"``, a download) are shown scaled: size and rate in kB, MB, GB. Off with ``--quiet``, and when stderr is not a terminal (logs stay clean) unless ``LFP_PROGRESS=1``.
    Redraws at most every ``min_interval`` seconds (the last unit of a stage is always drawn), and only then
    reads the status values, which may be tensors on the device. A bar opened part-way through its stage
    counts its rate from there, so the first rate shown is never a burst of already-finished work. In a
    terminal that reports no usable width (a pseudo-terminal of 0 columns) the bar is drawn 80 columns wide.
    The status figures follow the bar on its line while the line holds them and a bar of at least ``MIN_BAR``
    columns; past that (a narrow terminal, many figures) they move to a line of their own below it for the rest
    of the stage, so that neither the bar nor the last figure is squeezed out.
    """

    MIN_BAR = 10

    def __init__(self, quiet: bool = False, min_interval: float = 0.2):
        self.enabled = not quiet and (sys.stderr.isatty() or os.environ.get("LFP_PROGRESS") == "1")
        self.min_interval = min_interval
        self.bar = None
        self.status_line = None
        self.stage = None
        self._drawn = 0.0

    def __call__(self, stage: str, done: int, total: int, **status: Any) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if stage != self.stage:
            self.close()
            unit = str(status.get("unit") or "it")
            width = _stderr_columns()
            self.bar = tqdm(
                total=total,
                desc=stage,
                leave=False,
                file=sys.stderr,
                initial=done,
                unit=unit,
                unit_scale=unit == "B",
                dynamic_ncols=width >= 40,
                ncols=None if width >= 40 else 80,
                mininterval=0,
            )
            self.stage = stage
        elif done < total and now - self._drawn < self.min_interval:
            return
        self._drawn = now
        self.bar.total = total
        self.bar.n = done
        shown = ", ".join(f"{k}={status_text(v)}" for k, v in status.items() if v is not None and k != "unit")
        if shown and self.status_line is None and not self._fits(shown):
            self.bar.set_postfix_str("", refresh=False)
            self.status_line = tqdm(
                total=0,
                leave=False,
                file=sys.stderr,
                bar_format="{desc}",
                mininterval=0,
                dynamic_ncols=self.bar.dynamic_ncols is not None,
                ncols=self.bar.ncols,
            )
        if self.status_line is not None:
            if shown:
                self.status_line.set_description_str(shown, refresh=False)
        elif shown:
            self.bar.set_postfix_str(shown, refresh=False)
        self.bar.refresh()
        if self.status_line is not None:
            self.status_line.refresh()

    def _fits(self, status: str) -> bool:
        """Whether the bar's line holds ``status`` after its counts and a bar of ``MIN_BAR`` columns."""
        width = _stderr_columns()
        meter = self.bar.format_meter(**{**self.bar.format_dict, "ncols": None, "postfix": status})  # a 10-column bar
        return len(meter) - 10 + self.MIN_BAR <= (width if width >= 40 else 80)

    def close(self) -> None:
        if self.status_line is not None:
            self.status_line.close()
            self.status_line = None
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            self.stage = None


def _stderr_columns() -> int:
    """Width of the terminal stderr is drawn on (``COLUMNS`` wins), 0 when unknown."""
    if os.environ.get("COLUMNS", "").isdigit():
        return int(os.environ["COLUMNS"])
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0


def status_text(v: Any) -> str:
    """One status figure as short text: tensors read as numbers, floats to 4 significant digits, no ``-0``; a pair
    ``(done, of)`` as ``done/of``."""
    if isinstance(v, tuple) and len(v) == 2:
        return f"{status_text(v[0])}/{status_text(v[1])}"
    if hasattr(v, "detach"):
        v = v.detach().cpu()
        v = v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, float):
        text = f"{v:.4g}"
        return "0" if text in ("-0", "0") else text
    return str(v)


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=None, default=str) + "\n")
    sys.stdout.flush()


def metrics_table(splits: dict[str, Any], title: str) -> Table:
    t = Table(title=title)
    for col in (
        "split",
        "n",
        "accuracy",
        "worst-group\naccuracy",
        "worst group",
        "mean group\naccuracy",
        "train-weighted\naccuracy",
    ):
        t.add_column(col, justify="left" if col in ("split", "worst group") else "right", text=col == "worst group")
    for name, m in splits.items():
        t.add_row(
            name,
            str(m.get("n", "")),
            fmt(m["accuracy"]),
            fmt(m["worst_group_accuracy"]),
            m.get("worst_group") or "-",
            fmt(m["mean_group_accuracy"]),
            fmt(m["train_weighted_accuracy"]),
        )
    return t


def show_eval_many(r: dict[str, Any]) -> None:
    """Several models side by side: one row per model and split."""
    t = Table(title="clean data, original labels")
    for col in ("model", "trained on", "split", "n", "accuracy", "worst-group\naccuracy", "worst group"):
        left = col in ("model", "trained on", "split", "worst group")
        t.add_column(col, justify="left" if left else "right", text=left)
    for rep in r["models"]:
        if "perturbed" in rep:
            p = rep["perturbed"]
            t.add_row(
                rep["model"],
                rep.get("trained_on", ""),
                f"{p['path']} (vs targets)",
                str(p["n"]),
                fmt(p["accuracy"]),
                "-",
                "-",
                end_section=True,
            )
            continue
        rows = list(rep["splits"].items())
        for k, (name, m) in enumerate(rows):
            t.add_row(
                rep["model"] if k == 0 else "",
                rep.get("trained_on", "") if k == 0 else "",
                name,
                str(m["n"]),
                fmt(m["accuracy"]),
                fmt(m["worst_group_accuracy"]),
                m.get("worst_group") or "-",
                end_section=k == len(rows) - 1,
            )
    out.print(t)


def groups_table(splits: dict[str, Any]) -> Table | None:
    names = next((list(m["groups"]) for m in splits.values() if m.get("groups")), None)
    if not names:
        return None
    t = Table(title="per-group accuracy (n)")
    t.add_column("group", text=True)
    for s in splits:
        t.add_column(s, justify="right")
    for g in names:
        t.add_row(
            g,
            *[
                f"{fmt(m['groups'][g]['accuracy'])} ({m['groups'][g]['n']})" if m.get("groups") else "-"
                for m in splits.values()
            ],
        )
    return t


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def show_training(summary: dict[str, Any], verb: str) -> None:
    out.print(
        f"[bold]{verb}[/bold] {summary['arch']} on {_spec(summary['data'])} -> [bold]{summary['out']}[/bold] "
        f"({plural(summary['epochs'], 'epoch')} on {summary['device']}, kept epoch {summary['selected_epoch']})"
    )
    h = summary["history"]
    t = Table(title="training")
    for col in ("epoch", "loss", "train acc", "val acc", "val worst-group"):
        t.add_column(col, justify="right")
    for row in h if len(h) <= 12 else h[:3] + h[-8:]:
        t.add_row(
            str(row["epoch"]),
            fmt(row["train_loss"], 4),
            fmt(row["train_accuracy"]),
            fmt(row.get("val_accuracy")),
            fmt(row.get("val_worst_group_accuracy")),
        )
    out.print(t)
    out.print(metrics_table(summary["metrics"], "clean data, original labels"))


def show_perturb(s: dict[str, Any]) -> None:
    out.print(
        f"[bold]perturbed[/bold] {s['n']} samples of split '{s['split']}' with {s['method']} "
        f"(targets: {s['targets']}) -> [bold]{s['out']}[/bold]"
    )
    cfg = ", ".join(f"{k}={_value(v)}" for k, v in s["config"].items() if k not in s.get("fixed", ()))
    out.print(f"  config: {cfg}")
    t = Table(title="per-sample quality")
    for col in ("metric", "mean", "median", "min", "max"):
        t.add_column(col, justify="right" if col != "metric" else "left", text=col == "metric")
    t.add_row("success (reached target)", fmt(s["success_rate"]), "", "", "")
    for k in ("l0", "l2", "linf", "loss", "log_density", "grad_evals"):
        if k not in s:
            continue
        v = s[k]
        label = (
            f"log_density ({s['log_density_estimator']})"
            if k == "log_density" and s.get("log_density_estimator")
            else k
        )
        t.add_row(label, fmt(v["mean"], 4), fmt(v["median"], 4), fmt(v["min"], 4), fmt(v["max"], 4))
    out.print(t)
    if s.get("density"):
        d = s["density"]
        out.print(
            f"  plausibility: {d.get('kind')} ({d.get('space')} space, {d.get('chosen_by', '')}), tau={_value(s['config'].get('tau'))}"
        )
    out.print(
        f"  targets per class: {s['target_counts']}; target equals the original label for "
        f"{fmt(s['target_kept_label_rate'])} of the samples"
    )
    if s.get("skipped"):
        out.print(
            f"  skipped {s['skipped']} of {s['n']} samples (already classified as their target: the optimum is no change)"
        )


def show_eval(r: dict[str, Any]) -> None:
    if "perturbed" in r:
        p = r["perturbed"]
        out.print(
            f"[bold]{r['model']}[/bold] on perturbed set {p['path']} ({p['method']}, targets {p['targets']}, n={p['n']})"
        )
        out.print(
            f"  accuracy against targets: {fmt(p['accuracy'])}   against original labels: {fmt(p['accuracy_original_labels'])}"
        )
        if "stored_success_rate" in p:
            out.print(
                f"  stored success rate: {fmt(p['stored_success_rate'])}   agreement with stored success: "
                f"{fmt(p['agreement_with_stored_success'])}"
            )
        t = Table(title="stored per-sample metrics")
        for col in ("metric", "mean", "median"):
            t.add_column(col, justify="right" if col != "metric" else "left", text=col == "metric")
        for k, v in p["stored_metrics"].items():
            label = (
                f"{k} ({p['log_density_estimator']})" if k == "log_density" and p.get("log_density_estimator") else k
            )
            t.add_row(label, fmt(v["mean"], 4), fmt(v["median"], 4))
        out.print(t)
        return
    out.print(f"[bold]{r['model']}[/bold] on {_spec(r['data'])}")
    out.print(metrics_table(r["splits"], "clean data, original labels"))
    g = groups_table(r["splits"])
    if g is not None:
        out.print(g)
    if r.get("out"):
        out.print(f"report written to [bold]{r['out']}[/bold]")


def show_data(s: dict[str, Any]) -> None:
    out.print(f"[bold]{_spec(s['spec'])}[/bold]: {s['description']}")
    out.print(f"  input shape {tuple(s['input_shape'])}, {s['num_classes']} classes ({', '.join(s['class_names'])})")
    if s.get("class_to_index"):
        out.print("  class index: " + ", ".join(f"{k} = {v}" for k, v in s["class_to_index"].items()))
    details = s.get("details") or {}
    if details.get("label_order_note"):
        out.print(
            f"  label order: {details.get('label_order')} ({details['label_order_note']}; order="
            f"{details.get('other_order')} numbers them the other way)"
        )
    if details.get("preprocessing"):
        out.print(f"  preprocessing: {details['preprocessing']}")
    if s.get("read") and any(v != "in memory" for v in s["read"].values()):
        out.print("  read on demand, batch by batch (write a uint8 cache with --out FILE.h5 to decode once)")
    t = Table(title="splits")
    t.add_column("split")
    t.add_column("n", justify="right")
    t.add_column("per class", justify="right", text=True)
    if s.get("group_counts"):
        t.add_column("per group (" + ", ".join(s["group_names"]) + ")", justify="right", text=True)
    for k, n in s["sizes"].items():
        row = [k, str(n), str(s["class_counts"][k])]
        if s.get("group_counts"):
            row.append(str(s["group_counts"][k]))
        t.add_row(*row)
    out.print(t)
    if s.get("out"):
        out.print(f"written to [bold]{s['out']}[/bold]")


def show_data_list(s: dict[str, Any]) -> None:
    """``lfp data --list``: one paragraph per data spec (name, source, description, parameters with defaults)."""
    for d in s["datasets"]:
        out.print(f"[bold]{d['name']}[/bold] ({d['source']}): {d['description']}")
        params = ", ".join(
            f"{k}={_value(p['default']) if p['default'] is not None else '-'}" for k, p in d["params"].items()
        )
        out.print(f"  parameters: {params}")
        out.print(f"  e.g. --data {d['example']}")
    out.print(
        "Give parameters after the name: NAME:key=value,key=value (lfp data NAME describes one; --json for all of this)."
    )


def size_text(n: int) -> str:
    """Bytes as a person reads them: 1.2 GB, 340 kB (powers of 1000, as tqdm's bar shows them)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def show_download(s: dict[str, Any]) -> None:
    """What ``lfp data SPEC --download`` did, archive by archive, then the data as ``show_data`` describes it and
    the spec to use next."""
    from rich.markup import escape

    d = s["download"]
    for part in d["parts"]:
        if part["status"] == "present":
            out.print(
                f"{d['title']}: already present at [bold]{escape(part['folder'])}[/bold]; nothing fetched "
                f"(--force fetches again)"
            )
            continue
        out.print(f"{d['title']}: installed at [bold]{escape(part['folder'])}[/bold]")
        for a in part["archives"]:
            c = a["checksum"]
            alg, found = c["found"].split(":", 1)
            where = f"fetched from {escape(a['url'])}" if a["url"] else "already there"
            again = f" ({plural(a['restarts'], 'restart')} after a cut transfer)" if a["restarts"] else ""
            if c["status"] == "verified":
                check = f"{alg} verified"
            elif c["published"] is None:
                check = f"no checksum published by the source (sha256 {found})"
            else:
                check = (
                    f"[yellow]{alg} {found} differs from the published {c['published'].split(':', 1)[1]}: accepted "
                    f"with --no-verify[/yellow]"
                )
            out.print(f"  {escape(Path(a['file']).name)}: {size_text(a['bytes'])} {where}{again}; {check}")
        out.print(
            "  layout checked by lfp's loader" + ("; archives removed after unpacking" if part["removed"] else "")
        )
    show_data(s)
    out.print(f"next: --data {escape(s['next_data'])}")


def _value(v: Any) -> str:
    """A parameter value as a person writes it: floats to 6 significant digits."""
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _spec(spec: Any) -> str:
    from lfpcli.data import spec_label

    return spec_label(spec) if isinstance(spec, dict) else str(spec)


def _leaf(v: Any) -> str:
    """A value shown on its key's line: text as it is, an empty mapping or list as ``none``, the rest as JSON."""
    if isinstance(v, str):
        return v
    return "none" if isinstance(v, (dict, list)) and not v else json.dumps(v)


def _add(tree: Tree, value: Any, depth: int = 0) -> None:
    """``value`` under ``tree``: a mapping's keys each on its line, with its value or, below it, its contents."""
    if isinstance(value, dict):
        for k, v in value.items():
            if (
                isinstance(v, (dict, list))
                and v
                and depth < 6
                and not (isinstance(v, list) and all(not isinstance(i, (dict, list)) for i in v))
            ):
                _add(tree.add(f"[bold]{escape(str(k))}[/bold]"), v, depth + 1)
            else:
                tree.add(f"[bold]{escape(str(k))}[/bold]: {escape(_leaf(v))}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _add(tree.add(f"[{i}]"), v, depth + 1) if isinstance(v, (dict, list)) else tree.add(escape(str(v)))


def show_info(r: dict[str, Any]) -> None:
    tree = Tree(
        f"[bold]{escape(r['path'])}[/bold]: {r['kind']} (schema {r['schema']}), sha256 {r['sha256'][:16]}…, {r['size_bytes']} bytes"
    )
    threads = f" ({plural(r['threads'], 'CPU thread')})" if isinstance(r.get("threads"), int) else ""
    tree.add(f"[bold]created[/bold]: {r.get('created')} on {r.get('device')}{threads}")
    tree.add(f"[bold]command[/bold]: {escape(str(r.get('command')))}")
    parents = tree.add("[bold]parents[/bold]" + ("" if r["parents"] else ": none"))
    mark = {"ok": "[green]ok[/green]", "changed": "[red]CHANGED since[/red]", "missing": "[yellow]missing[/yellow]"}
    for p in r["parents"]:
        parents.add(
            f"{p['role']}: {escape(p['path'])} ({p.get('kind')}) sha256 {p['sha256'][:16]}… {mark[p['status']]}"
        )
    skip = {
        "kind",
        "schema",
        "command",
        "argv",
        "created",
        "device",
        "parents",
        "path",
        "sha256",
        "size_bytes",
        "contents",
        "history",
    }
    for key in (
        "params",
        "seeds",
        "versions",
        "summary",
        "metrics",
        "model",
        "init",
        "source",
        "perturbation",
        "data",
        "dataset",
        "train",
        "splits",
    ):
        if key in r and key not in skip:
            v = r[key]
            if key == "train" and isinstance(v, dict):
                v = {k: x for k, x in v.items() if k != "history"} | {"epochs_run": len(v.get("history", []))}
            _add(tree, {key: v})
    contents = r.get("contents") or {}
    if contents.get("datasets"):
        c = tree.add("[bold]datasets[/bold]")
        for name, d in contents["datasets"].items():
            c.add(escape(f"{name}: {tuple(d['shape'])} {d['dtype']}  {d['description']}"))
    if contents.get("state_dict"):
        n = len(contents["state_dict"])
        tree.add(f"[bold]state_dict[/bold]: {n} tensors")
    out.print(tree, soft_wrap=False)  # wrapped by words under its own guides, not cut by the terminal


def show_density(s: dict[str, Any]) -> None:
    out.print(
        f"[bold]fitted[/bold] {s['kind']} ({s['space']} space, dim {s['dim']}) on {s['num_points']} clean "
        f"'{s['fit_on']}' samples of {_spec(s['data'])} -> [bold]{s['out']}[/bold]"
    )


def show_verify(r: dict[str, Any]) -> None:
    mark = {
        "ok": "[green]ok[/green]",
        "changed": "[red]CHANGED[/red]",
        "missing": "[yellow]MISSING[/yellow]",
        "unreadable": "[red]UNREADABLE[/red]",
    }

    def add(tree: Tree, entry: dict[str, Any]) -> None:
        checked = (
            f"checked {entry['found']}"
            if entry.get("found")
            else f"not at {entry.get('abspath') or entry['path']} nor beside it"
        )
        other = entry.get("elsewhere")
        if other:
            checked += f"; the recorded {other['path']} " + (
                "is unchanged" if other["status"] == "ok" else "differs too"
            )
        line = f"{mark.get(entry['status'], entry['status'])} {entry.get('role')}: {escape(entry['path'])} ({escape(checked)})"
        if entry["status"] == "changed":
            line += f" sha256 {entry['sha256_recorded'][:12]} recorded, {entry['sha256_now'][:12]} now"
        elif entry["status"] == "unreadable":
            line += f": {escape(str(entry.get('error')))}"
        sub = tree.add(line)
        for p in entry["parents"]:
            add(sub, p)

    for t in r["files"]:
        tree = Tree(
            f"[bold]{escape(t['path'])}[/bold]: {t['kind']}, sha256 {t['sha256'][:16]}…"
            + ("" if t["parents"] else ", no parents")
        )
        for p in t["parents"]:
            add(tree, p)
        out.print(tree, soft_wrap=False)
    c = r["counts"]
    verdict = "[green]the chain holds[/green]" if r["ok"] else "[red]the chain does not hold[/red]"
    out.print(
        f"{verdict}: {c['ok']} ancestor(s) ok, {c['changed']} changed, {c['missing']} missing"
        + (f", {c['unreadable']} unreadable" if c.get("unreadable") else "")
    )
