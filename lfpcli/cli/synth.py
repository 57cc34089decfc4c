"""``lfp synth run|sweep|plot``: the typer sub-app and what it prints (registered on the app by :func:`register`)."""

from __future__ import annotations

import sys
from typing import Annotated, Any, Callable, Optional

import typer
from rich import box

from lfpcli.cli import render
from lfpcli.cli.options import (
    ConfigOpt,
    DeviceOpt,
    ForceOpt,
    JsonOpt,
    QuietOpt,
    ResumableForceOpt,
    ResumeOpt,
    key_values,
)
from lfpcli.cli.render import Table
from lfpcli.cli.runner import argv_is_ours
from lfpcli.commands.common import fmt

PANEL = "Experiments"
SIZES = "Sizes and budgets (default: the preset's)"
TRAINING = "Training and solver settings (default: the preset's)"


def _presets_text() -> str:
    from lfpcli.synth.protocol import Settings
    from lfpcli.synth.sweep import PRESETS

    base = Settings()
    parts = []
    for name, p in PRESETS.items():
        pl, st = p["plan"], {**base.to_dict(), **p["settings"]}
        curves = " ".join(f"--sweep {c.text()}" for c in pl["curves"])
        parts.append(
            f"{name}: methods {','.join(pl['methods'])}; dist {','.join(pl['dists'])}; seeds {','.join(map(str, pl['seeds']))}; "
            f"d={pl['dim']}, h={pl['hidden']}, n={pl['n_natural']}, m={pl['n_noise']}; eps pgd-l2 {pl['eps']['pgd-l2']:g} "
            f"(eps-scaling {st['eps_scaling']}), pgd-linf {pl['eps']['pgd-linf']:g}; ratio {pl['ratio']['pgd-l0']:g}; "
            f"training {st['loss']} loss, SGD lr {st['lr']:g} momentum {st['momentum']:g}, stop once every training sample is fitted "
            f"and the loss falls by less than {st['rel_tol']:g} over {st['window']} epochs (at most {st['max_epochs']}); curves {curves}."
        )
    return "  ".join(parts)


def _settings_names() -> str:
    import dataclasses

    from lfpcli.synth.protocol import Settings

    return ", ".join(
        f"{f.name} ({f.default:g})" if isinstance(f.default, float) else f"{f.name} ({f.default})"
        for f in dataclasses.fields(Settings)
    )


def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _plan_default(name: str) -> str:
    """``quick X, paper Y``: a base value of each preset."""
    from lfpcli.synth.sweep import PRESETS

    return ", ".join(f"{p} {_num(PRESETS[p]['plan'][name])}" for p in PRESETS)


def _setting_default(name: str) -> str:
    """The value of a setting in each preset (``0.01`` when they agree)."""
    from lfpcli.synth.protocol import Settings
    from lfpcli.synth.sweep import PRESETS

    base = getattr(Settings(), name)
    values = {p: _num(PRESETS[p]["settings"].get(name, base)) for p in PRESETS}
    if len(set(values.values())) == 1:
        return next(iter(values.values()))
    return ", ".join(f"{p} {v}" for p, v in values.items())


PresetOpt = Annotated[
    str,
    typer.Option(
        "--preset",
        help="Named sizes, curves and settings: quick (laptop size) or paper (the "
        "paper's Figures 5-12 at full size); every flag given replaces the preset's value (see Presets below).",
        metavar="quick|paper",
    ),
]
DimOpt = Annotated[
    Optional[int],
    typer.Option("--dim", help=f"Input dimension d ({_plan_default('dim')}).", metavar="D", rich_help_panel=SIZES),
]
HiddenOpt = Annotated[
    Optional[int],
    typer.Option("--hidden", help=f"Hidden units h ({_plan_default('hidden')}).", metavar="H", rich_help_panel=SIZES),
]
NatOpt = Annotated[
    Optional[int],
    typer.Option(
        "--n-natural", help=f"Natural samples n ({_plan_default('n_natural')}).", metavar="N", rich_help_panel=SIZES
    ),
]
NoiseOpt = Annotated[
    Optional[int],
    typer.Option(
        "--n-noise",
        help=f"Noise samples m, perturbed toward random targets ({_plan_default('n_noise')}).",
        metavar="M",
        rich_help_panel=SIZES,
    ),
]
EpsOpt = Annotated[
    Optional[float],
    typer.Option(
        "--eps",
        help="Budget of pgd-l2 and pgd-linf: the radius of the ball (default: pgd-l2 0.78, "
        "scaled by sqrt(d/10000) under --eps-scaling sqrt-dim; pgd-linf 0.03).",
        metavar="EPS",
        rich_help_panel=SIZES,
    ),
]
RatioOpt = Annotated[
    Optional[float],
    typer.Option(
        "--ratio",
        help="Budget of pgd-l0 and pcfe-l0: the most values changed, as a fraction of d "
        "in (0, 1]; of cfe-l2 (which changes every value): Adam iterations / d, as the paper's code "
        "(default 0.05).",
        metavar="RATIO",
        rich_help_panel=SIZES,
    ),
]
LossOpt = Annotated[
    Optional[str],
    typer.Option(
        "--loss",
        help=f"Training loss: exponential (the paper's) or logistic ({_setting_default('loss')}).",
        metavar="exponential|logistic",
        rich_help_panel=TRAINING,
    ),
]
LrOpt = Annotated[
    Optional[float],
    typer.Option(
        "--lr",
        help=f"Full-batch SGD learning rate, Kumano et al.'s ({_setting_default('lr')}).",
        metavar="RATE",
        rich_help_panel=TRAINING,
    ),
]
MomOpt = Annotated[
    Optional[float],
    typer.Option(
        "--momentum", help=f"SGD momentum ({_setting_default('momentum')}).", metavar="M", rich_help_panel=TRAINING
    ),
]
MaxEpOpt = Annotated[
    Optional[int],
    typer.Option(
        "--max-epochs",
        help=f"Cap on the epochs of each network ({_setting_default('max_epochs')}).",
        metavar="N",
        rich_help_panel=TRAINING,
    ),
]
WindowOpt = Annotated[
    Optional[int],
    typer.Option(
        "--window",
        help="Stop rule: once every training sample is fitted, stop when the loss fell by "
        f"less than --rel-tol over this many epochs ({_setting_default('window')}).",
        metavar="N",
        rich_help_panel=TRAINING,
    ),
]
RelTolOpt = Annotated[
    Optional[float],
    typer.Option(
        "--rel-tol",
        help=f"Stop rule: the fraction the loss must fall by over --window epochs "
        f"to go on ({_setting_default('rel_tol')}).",
        metavar="FRACTION",
        rich_help_panel=TRAINING,
    ),
]
ScalingOpt = Annotated[
    Optional[str],
    typer.Option(
        "--eps-scaling",
        help="pgd-l2 radius: fixed (eps as given) or sqrt-dim (eps * sqrt(d/10000), "
        f"Kumano et al.'s dimension curve) ({_setting_default('eps_scaling')}).",
        metavar="fixed|sqrt-dim",
        rich_help_panel=TRAINING,
    ),
]
ThreadsOpt = Annotated[
    int,
    typer.Option(
        "--threads",
        help="CPU threads for torch (0: torch's default, one per core). Synth's "
        "matrices are small: more threads gain little, and on a busy machine threads that wait for "
        "each other made the quick preset 10x slower.",
        metavar="N",
        show_default=True,
    ),
]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--set",
        help="Any setting as KEY=VALUE (repeatable); the paper preset's values: " + _settings_names() + ".",
        metavar="KEY=VALUE",
        rich_help_panel=TRAINING,
    ),
]


def _settings(loss, lr, momentum, max_epochs, window, rel_tol, eps_scaling, items) -> dict[str, Any]:
    given = dict(key_values(items, "--set"))
    flags = {
        "loss": loss,
        "lr": lr,
        "momentum": momentum,
        "max_epochs": max_epochs,
        "window": window,
        "rel_tol": rel_tol,
        "eps_scaling": eps_scaling,
    }
    both = sorted(k for k, v in flags.items() if v is not None and k in given)
    if both:
        raise typer.BadParameter(
            f"{both[0]} given both as --{both[0].replace('_', '-')} and with --set; give it once", param_hint="--set"
        )
    given.update({k: v for k, v in flags.items() if v is not None})
    return given


class _Bars:
    """Two progress bars for a sweep: configurations done, and the stage of the current one."""

    def __init__(self, quiet: bool):
        self.outer = render.TqdmProgress(quiet=quiet)
        self.inner = render.TqdmProgress(quiet=quiet)

    def __call__(self, stage: str, done: int, total: int, **status: Any) -> None:
        (self.outer if stage == "configurations" else self.inner)(stage, done, total, **status)

    def close(self) -> None:
        self.inner.close()
        self.outer.close()


def _threads(n: int) -> None:
    if n < 0:
        raise typer.BadParameter(f"must be 0 (torch's default) or a number of threads, got {n}", param_hint="--threads")
    if n > 0:
        import torch

        torch.set_num_threads(n)


def _run(fn: Callable[..., Any], show: Callable[[Any], None], as_json: bool, quiet: bool, **kwargs: Any) -> None:
    bars = _Bars(bool(quiet) or (as_json and not sys.stderr.isatty()))
    try:
        result = fn(argv=sys.argv if argv_is_ours() else None, progress=bars, **kwargs)
    finally:
        bars.close()
    render.emit_json(result) if as_json else show(result)


synth_app = typer.Typer(
    name="synth",
    help="The synthetic experiments of the paper's Appendix A (after Kumano et al., ICLR 2024): train a one-hidden-layer "
    "network on random-label inputs, perturb fresh inputs toward random targets against it, train a fresh network on "
    "the perturbed inputs alone and score it on the natural data, against a baseline trained on the same inputs unperturbed.",
    epilog="Presets.  " + _presets_text(),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


@synth_app.command("run", epilog="Presets.  " + _presets_text())
def run(
    method: Annotated[
        str, typer.Option("--method", "-m", help="pgd-l2, pgd-linf, pgd-l0, cfe-l2 or pcfe-l0.", metavar="NAME")
    ] = "pgd-l2",
    dist: Annotated[
        str,
        typer.Option(
            "--dist",
            help="Input distribution: uniform (on [-1, 1]^d, also the box of every method) or gauss (N(0, I), no box).",
            metavar="uniform|gauss",
        ),
    ] = "uniform",
    variant: Annotated[
        str,
        typer.Option(
            "--variant",
            help="noise (perturb m fresh inputs) or natural (perturb the n natural samples themselves).",
            metavar="noise|natural",
        ),
    ] = "noise",
    out: Annotated[
        Optional[str], typer.Option("--out", "-o", help="Also write a one-row results file (.h5).", metavar="FILE.h5")
    ] = None,
    preset: PresetOpt = "quick",
    dim: DimOpt = None,
    hidden: HiddenOpt = None,
    n_natural: NatOpt = None,
    n_noise: NoiseOpt = None,
    eps: EpsOpt = None,
    ratio: RatioOpt = None,
    loss: LossOpt = None,
    lr: LrOpt = None,
    momentum: MomOpt = None,
    max_epochs: MaxEpOpt = None,
    window: WindowOpt = None,
    rel_tol: RelTolOpt = None,
    eps_scaling: ScalingOpt = None,
    set_: SetOpt = None,
    threads: ThreadsOpt = 1,
    seed: Annotated[
        int,
        typer.Option(
            "--seed",
            help="Run seed; every draw's own seed derives from it and what the draw depends on.",
            show_default=True,
        ),
    ] = 0,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
    config: ConfigOpt = None,
) -> None:
    """One configuration: accuracy on the natural data of the network trained on perturbations, and of the baseline.

    Example: lfp synth run --method pgd-l2 --dim 1000
    """
    from lfpcli.commands.synth import synth_run

    _threads(threads)
    _run(
        synth_run,
        show_run,
        json_,
        quiet,
        out=out,
        preset=preset,
        method=method,
        dist=dist,
        variant=variant,
        dim=dim,
        hidden=hidden,
        n_natural=n_natural,
        n_noise=n_noise,
        eps=eps,
        ratio=ratio,
        seed=seed,
        settings=_settings(loss, lr, momentum, max_epochs, window, rel_tol, eps_scaling, set_),
        device=device,
        force=force,
    )


@synth_app.command("sweep", epilog="Presets.  " + _presets_text())
def sweep(
    out: Annotated[
        str,
        typer.Option(
            "--out",
            "-o",
            help="Results file to write (.h5); finished configurations are kept in OUT.resume/ until it is written.",
            metavar="FILE.h5",
        ),
    ],
    preset: PresetOpt = "quick",
    sweep_: Annotated[
        Optional[list[str]],
        typer.Option(
            "--sweep",
            help="A curve: KEY=V1,V2,... varies KEY with everything else at its base value "
            "(repeatable; replaces the preset's curves). Keys: dim, hidden, n_natural, n_noise, eps "
            "(pgd-l2, pgd-linf), ratio (the others). METHOD:KEY=... limits a curve to one method; none: no curve, only the base "
            "configuration of each method, distribution and seed.",
            metavar="KEY=V1,V2,...",
        ),
    ] = None,
    method: Annotated[
        Optional[str],
        typer.Option(
            "--method",
            "-m",
            help="Methods, comma-separated: pgd-l2, pgd-linf, pgd-l0, cfe-l2, pcfe-l0 (default: all five).",
            metavar="NAME,...",
        ),
    ] = None,
    dist: Annotated[
        Optional[str],
        typer.Option(
            "--dist",
            help="Distributions, comma-separated: uniform, gauss (quick uniform; paper both).",
            metavar="NAME,...",
        ),
    ] = None,
    variant: Annotated[
        Optional[str],
        typer.Option(
            "--variant",
            help="Variants, comma-separated: noise (perturb m fresh inputs), natural "
            "(perturb the n natural samples) (default noise).",
            metavar="NAME,...",
        ),
    ] = None,
    seeds: Annotated[
        Optional[str],
        typer.Option("--seeds", help="Seeds, comma-separated (quick 0,1; paper 0,1,2).", metavar="S1,S2,..."),
    ] = None,
    dim: DimOpt = None,
    hidden: HiddenOpt = None,
    n_natural: NatOpt = None,
    n_noise: NoiseOpt = None,
    eps: EpsOpt = None,
    ratio: RatioOpt = None,
    loss: LossOpt = None,
    lr: LrOpt = None,
    momentum: MomOpt = None,
    max_epochs: MaxEpOpt = None,
    window: WindowOpt = None,
    rel_tol: RelTolOpt = None,
    eps_scaling: ScalingOpt = None,
    set_: SetOpt = None,
    threads: ThreadsOpt = 1,
    device: DeviceOpt = "auto",
    force: ResumableForceOpt = False,
    resume: ResumeOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Curves of configurations over methods, distributions and seeds, into one results file; resumable.

    An interrupted sweep, rerun as the same command with --resume, continues with the configurations not yet done and
    ends with the same results as an uninterrupted run.

    Example: lfp synth sweep --preset quick --out q.h5, then lfp synth plot q.h5 --out q.png
    """
    from lfpcli.commands.synth import synth_sweep

    _threads(threads)
    _run(
        synth_sweep,
        show_sweep,
        json_,
        quiet,
        out=out,
        preset=preset,
        methods=method,
        dists=dist,
        variants=variant,
        seeds=seeds,
        dim=dim,
        hidden=hidden,
        n_natural=n_natural,
        n_noise=n_noise,
        eps=eps,
        ratio=ratio,
        sweeps=sweep_,
        settings=_settings(loss, lr, momentum, max_epochs, window, rel_tol, eps_scaling, set_),
        device=device,
        force=force,
        resume=resume,
    )


@synth_app.command("plot")
def plot(
    results: Annotated[str, typer.Argument(help="A results file of lfp synth sweep (or run).", metavar="RESULTS.h5")],
    out: Annotated[
        Optional[str],
        typer.Option(
            "--out", "-o", help="Figure to write: .png, .pdf or .svg (without it, only the table).", metavar="FIG.png"
        ),
    ] = None,
    method: Annotated[
        Optional[str], typer.Option("--method", "-m", help="Only these methods, comma-separated.", metavar="NAME,...")
    ] = None,
    dist: Annotated[
        Optional[str], typer.Option("--dist", help="Only these distributions, comma-separated.", metavar="NAME,...")
    ] = None,
    force: ForceOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Accuracy against each swept key, trained on perturbations vs the baseline: a table and, with --out, a figure.

    Mean and min-max over seeds, one panel per method and distribution (and swept key), as the paper's Figures 5-12.

    Example: lfp synth plot q.h5 --out q.png
    """
    from lfpcli.commands.synth import synth_plot

    _run(synth_plot, show_plot, json_, True, results=results, out=out, methods=method, dists=dist, force=force)


def register(app: typer.Typer) -> None:
    """Add ``synth`` (run, sweep, plot) to the ``lfp`` app."""
    app.add_typer(
        synth_app,
        name="synth",
        rich_help_panel=PANEL,
        short_help="The synthetic experiments of the paper's Appendix A (after Kumano et al.): run, sweep, plot.",
    )


# ------------------------------------------------------------------------------------------------- printing


def _pm(s: dict[str, float], seeds: list[int]) -> str:
    return f"{fmt(s['mean'])}±{fmt(s['std'])}" if len(seeds) > 1 else fmt(s["mean"])


def _value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


HEADINGS = {"dim": "d", "hidden": "h", "n_natural": "n", "n_noise": "m", "budget": "budget"}


def summary_tables(summary: dict[str, Any]) -> list[Table]:
    """One table per swept key: each panel's curve, mean±std over seeds of both accuracies on the natural data, and
    the means of the perturbation success, l0, l2 and the perturbation-trained network's epochs."""
    tables = []
    curves = summary.get("curves") or []
    dists = {c["dist"] for c in curves} | {p["dist"] for p in summary.get("points") or []}
    variants = {c["variant"] for c in curves} | {p["variant"] for p in summary.get("points") or []}
    show_dist = len(dists) > 1 or len(variants) > 1 or "gauss" in dists

    def seeds_text(ps) -> str:
        counts = sorted({len(p["seeds"]) for p in ps})
        return "/".join(map(str, counts)) + (" seed" if counts == [1] else " seeds")

    for col in dict.fromkeys(c["column"] for c in curves):
        mine = [c for c in curves if c["column"] == col]
        t = Table(
            title=f"accuracy on natural data vs {col} (mean±std over {seeds_text([p for c in mine for p in c['points']])})",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
            padding=0,
        )
        for name in (
            "method",
            *(("data",) if show_dist else ()),
            HEADINGS[col],
            "perturbed",
            "baseline",
            "success",
            "l0",
            "l2",
            "epochs",
        ):
            t.add_column(
                name, justify="left" if name in ("method", "data") else "right", text=name in ("method", "data")
            )
        for c in mine:
            for k, p in enumerate(c["points"]):
                label = f"{c['key']} {_value(p['value'])}" if col == "budget" else _value(p["value"])
                data = c["dist"] + ("" if c["variant"] == "noise" else f"/{c['variant']}")
                t.add_row(
                    c["method"] if k == 0 else "",
                    *((data if k == 0 else "",) if show_dist else ()),
                    label,
                    _pm(p["acc_perturbed"], p["seeds"]),
                    _pm(p["acc_baseline"], p["seeds"]),
                    fmt(p["success"], 2),
                    fmt(p["l0"], 0),
                    fmt(p["l2"], 2),
                    fmt(p["epochs_perturbed"], 0),
                    end_section=k == len(c["points"]) - 1,
                )
        tables.append(t)
    if not curves and summary.get("points"):
        pts = summary["points"]
        sizes = {k: sorted({p[k] for p in pts}) for k in ("hidden", "n_natural", "n_noise")}
        fixed = ", ".join(f"{HEADINGS[k]}={v[0]}" for k, v in sizes.items() if len(v) == 1)
        t = Table(
            title=f"accuracy on natural data ({'mean±std over ' if len(pts[0]['seeds']) > 1 else ''}"
            f"{seeds_text(pts)}){'; ' + fixed if fixed else ''}",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
            padding=0,
        )
        extra = [k for k, v in sizes.items() if len(v) > 1]
        for name in (
            "method",
            *(("data",) if show_dist else ()),
            "d",
            *(HEADINGS[k] for k in extra),
            "budget",
            "perturbed",
            "baseline",
            "success",
            "l2",
            "epochs",
        ):
            t.add_column(
                name, justify="left" if name in ("method", "data") else "right", text=name in ("method", "data")
            )
        for p in pts:
            budget = f"eps={_value(p['eps'])}" if p["eps"] is not None else f"ratio={_value(p['ratio'])}"
            data = p["dist"] + ("" if p["variant"] == "noise" else f"/{p['variant']}")
            t.add_row(
                p["method"],
                *((data,) if show_dist else ()),
                str(p["dim"]),
                *(str(p[k]) for k in extra),
                budget,
                _pm(p["acc_perturbed"], p["seeds"]),
                _pm(p["acc_baseline"], p["seeds"]),
                fmt(p["success"], 2),
                fmt(p["l2"], 2),
                fmt(p["epochs_perturbed"], 0),
            )
        tables.append(t)
    return tables


def show_run(s: dict[str, Any]) -> None:
    p, r = s["point"], s["row"]
    budget = (
        f"eps {_value(p['eps'])} (radius {fmt(r['eps_radius'], 4)})"
        if p["eps"] is not None
        else f"ratio {_value(p['ratio'])} (at most {r['changed_max']} values)"
    )
    size = f"d={p['dim']}, h={p['hidden']}, n={p['n_natural']}" + (
        f", m={p['n_noise']}" if p["variant"] == "noise" else ", natural variant"
    )
    render.out.print(
        f"[bold]synth[/bold] {p['method']} on {p['dist']} data, {size}, {budget}, seed {p['seed']} "
        f"({fmt(s['seconds'], 1)} s on {s['device']})" + (f" -> [bold]{s['out']}[/bold]" if s.get("out") else "")
    )
    t = Table(
        title="accuracy on the n natural samples (their labels)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=0,
    )
    for col in ("network", "trained on", "accuracy", "fit", "epochs", "loss"):
        t.add_column(
            col, justify="left" if col in ("network", "trained on") else "right", text=col in ("network", "trained on")
        )
    src = "natural samples" if p["variant"] == "natural" else "noise"
    t.add_row(
        "natural",
        "natural samples, labels",
        "",
        fmt(r["fit_natural"]),
        str(r["epochs_natural"]),
        fmt(r["loss_natural"], 4),
    )
    t.add_row(
        "baseline",
        f"{src}, targets",
        fmt(r["acc_baseline"]),
        fmt(r["fit_baseline"]),
        str(r["epochs_baseline"]),
        fmt(r["loss_baseline"], 4),
    )
    t.add_row(
        "perturbed",
        f"perturbed {src}, targets",
        fmt(r["acc_perturbed"]),
        fmt(r["fit_perturbed"]),
        str(r["epochs_perturbed"]),
        fmt(r["loss_perturbed"], 4),
    )
    render.out.print(t)
    render.out.print(
        "  fit: accuracy on its own training set; epochs: full-batch epochs until the stop rule; loss: final training loss"
    )
    render.out.print(
        f"  perturbations: success {fmt(r['success'])}, mean l0 {fmt(r['l0'], 1)} of {p['dim']}, l2 {fmt(r['l2'], 4)}, "
        f"linf {fmt(r['linf'], 4)}; {r['solver_iterations']} solver iterations per sample"
    )
    render.out.print(
        f"  seconds: natural {fmt(r['time_natural'], 2)}, baseline {fmt(r['time_baseline'], 2)}, perturb {fmt(r['time_perturb'], 2)}, "
        f"perturbation-trained {fmt(r['time_perturbed'], 2)}"
    )


def show_sweep(s: dict[str, Any]) -> None:
    resumed = f", {s['resumed_points']} of them resumed from an earlier run" if s.get("resumed_points") else ""
    render.out.print(
        f"[bold]synth sweep[/bold] ({s['preset']} preset and flags): {s['n_points']} configurations{resumed}, "
        f"{fmt(s['seconds'], 1)} s on {s['device']} -> [bold]{s['out']}[/bold]"
    )
    for t in summary_tables(s["summary"]):
        render.out.print(t)


def show_plot(s: dict[str, Any]) -> None:
    render.out.print(
        f"[bold]{s['results']}[/bold]: {s['rows']} configuration{'' if s['rows'] == 1 else 's'} ({s.get('preset')} preset and flags, made "
        f"{s.get('created')} on {s.get('device')})" + (f" -> figure [bold]{s['out']}[/bold]" if s.get("out") else "")
    )
    for t in summary_tables(s["summary"]):
        render.out.print(t)
