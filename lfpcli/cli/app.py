"""The ``lfp`` command: one thin function per subcommand over :mod:`lfpcli.commands`."""

from __future__ import annotations

import os
import sys
import warnings
from typing import Annotated, Any, Callable, Optional

import typer

from lfpcli import __version__
from lfpcli.cli import render
from lfpcli.cli.options import (
    ArchArgOpt,
    BatchOpt,
    ConfigOpt,
    DeviceOpt,
    EpochsOpt,
    ForceOpt,
    JsonOpt,
    LrOpt,
    METHOD_PANEL,
    MomentumOpt,
    NesterovOpt,
    OptimizerOpt,
    QuietOpt,
    RecipeOpt,
    ScheduleOpt,
    SeedOpt,
    SelectOpt,
    TrainLossOpt,
    TrainBatchOpt,
    WdOpt,
    WeightsOpt,
    key_values,
)

app = typer.Typer(
    name="lfp",
    help="Learning from perturbations: train, perturb toward wrong labels, retrain on the perturbed data alone, "
    "and evaluate on clean data and its worst group.",
    epilog="Chain: lfp train --out model.pt | lfp perturb --in model.pt --out pgd.h5 | lfp retrain --in pgd.h5 "
    "--out model_pgd.pt | lfp eval --in model_pgd.pt.  Every file says how it was made: lfp info FILE.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

def _methods() -> list[str]:
    from lfpcli.solvers import list_solvers

    return list_solvers()


CHAIN = "Chain"
INSPECT = "Inspect"
LATER = "Not yet available"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lfp {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", help="Show the version and exit.", callback=_version, is_eager=True)] = False,
) -> None:
    """Learning from perturbations."""


def _run(fn: Callable[..., Any], show: Callable[[Any], None], as_json: bool, quiet: bool | None = None, **kwargs: Any) -> None:
    progress = render.TqdmProgress(quiet=bool(quiet) or as_json and not sys.stderr.isatty()) if quiet is not None else None
    if progress is not None:
        kwargs["progress"] = progress
    try:
        result = fn(argv=sys.argv if _argv_is_ours() else None, **kwargs)
    finally:
        if progress is not None:
            progress.close()
    render.emit_json(result) if as_json else show(result)


def _argv_is_ours() -> bool:
    return bool(sys.argv) and os.path.basename(sys.argv[0]) in ("lfp", "__main__.py", "lfp.exe")


@app.command(rich_help_panel=CHAIN)
def train(
    out: Annotated[str, typer.Option("--out", "-o", help="Checkpoint to write (.pt).", metavar="FILE.pt")],
    data: Annotated[str, typer.Option("--data", help="Data spec: a built-in (digits, spurious-digits[:key=value,...]) or an lfp .h5 file.")] = "spurious-digits",
    arch: Annotated[str, typer.Option("--arch", help="Architecture: small-cnn, mlp, resnet18, resnet50.")] = "small-cnn",
    arch_arg: ArchArgOpt = None,
    weights: WeightsOpt = None,
    output: Annotated[str, typer.Option("--output", help="logits (one per class) or scalar: one logit for a two-class task, "
                                        "labels read as -1/+1, class 1 when positive (train with --loss logistic or exponential).")] = "logits",
    recipe: RecipeOpt = None,
    epochs: EpochsOpt = None,
    optimizer: OptimizerOpt = None,
    lr: LrOpt = None,
    momentum: MomentumOpt = None,
    weight_decay: WdOpt = None,
    nesterov: NesterovOpt = None,
    batch_size: TrainBatchOpt = None,
    schedule: ScheduleOpt = None,
    select: SelectOpt = None,
    loss: TrainLossOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Train a classifier on clean data and write a self-describing checkpoint.

    Example: lfp train --data spurious-digits --arch small-cnn --out model.pt
    """
    from lfpcli.commands import train as run

    _run(run, lambda s: render.show_training(s, "trained"), json_, quiet, out=out, data=data, arch=arch,
         arch_args=key_values(arch_arg, "--arch-arg"), weights=weights, recipe=recipe, epochs=epochs, optimizer=optimizer,
         lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov, batch_size=batch_size, schedule=schedule,
         select=select, loss=loss, output=output, seed=seed, device=device, force=force)


@app.command(rich_help_panel=CHAIN)
def perturb(
    in_: Annotated[str, typer.Option("--in", "-i", help="Checkpoint of the model whose decisions are pushed.", metavar="MODEL.pt")],
    out: Annotated[str, typer.Option("--out", "-o", help="Perturbed set to write (.h5).", metavar="FILE.h5")],
    method: Annotated[str, typer.Option("--method", "-m", help=f"Perturbation method: {', '.join(_methods())}.")] = "pgd-l2",
    targets: Annotated[str, typer.Option("--targets", help="Target rule: random (uniform over all K classes; the paper's code), "
                                          "random-other (uniform over the K-1 others; the paper's Def. 4.1), deterministic (y+1 mod K).")] = "random",
    data: Annotated[Optional[str], typer.Option("--data", help="Data spec to perturb (default: the data the model was trained on).")] = None,
    split: Annotated[str, typer.Option("--split", help="Split to perturb.")] = "train",
    eps: Annotated[Optional[float], typer.Option("--eps", help="Budget: radius of the l2/linf ball in pixel units.", rich_help_panel=METHOD_PANEL)] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Iterations.", rich_help_panel=METHOD_PANEL)] = None,
    step_size: Annotated[Optional[float], typer.Option("--step-size", help="PGD step alpha (default 2.5*eps/steps).", rich_help_panel=METHOD_PANEL)] = None,
    random_start: Annotated[Optional[bool], typer.Option("--random-start/--no-random-start", help="Start PGD at a random point of the ball.", rich_help_panel=METHOD_PANEL)] = None,
    loss: Annotated[Optional[str], typer.Option("--loss", help="Loss toward the target: ce, logistic, exponential or margin (binary scalar models: logistic = ce).", rich_help_panel=METHOD_PANEL)] = None,
    step: Annotated[Optional[str], typer.Option("--step", help="pgd-linf step: sign (textbook) or max-normalized (the paper's code); pgd-l0 also raw.", rich_help_panel=METHOD_PANEL)] = None,
    projection: Annotated[Optional[str], typer.Option("--projection", help="pgd-linf projection: clip (textbook) or rescale (the paper's code).", rich_help_panel=METHOD_PANEL)] = None,
    lam: Annotated[Optional[float], typer.Option("--lam", help="cfe-l2: weight of the squared l2 distance.", rich_help_panel=METHOD_PANEL)] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="cfe-l2: Adam step size.", rich_help_panel=METHOD_PANEL)] = None,
    max_changed: Annotated[Optional[str], typer.Option("--max-changed", help="pgd-l0, pcfe-l0 (with --prox l0-ball): most input values changed, a count or (pcfe-l0) a ratio in (0, 1).", rich_help_panel=METHOD_PANEL)] = None,
    search_steps: Annotated[Optional[int], typer.Option("--search-steps", help="pcfe-l0: bisection steps over the weight of the classification term.", rich_help_panel=METHOD_PANEL)] = None,
    lipschitz: Annotated[Optional[float], typer.Option("--lipschitz", help="pcfe-l0: L, the FISTA step is 1/L (the start value with --line-search); default 32. Smaller L (longer steps) finds lower objectives with more changed values and higher plausibility.", rich_help_panel=METHOD_PANEL)] = None,
    line_search: Annotated[Optional[bool], typer.Option("--line-search/--no-line-search", help="pcfe-l0: backtracking line search per sample.", rich_help_panel=METHOD_PANEL)] = None,
    line_search_iters: Annotated[Optional[str], typer.Option("--line-search-iters", help="pcfe-l0: backtrack in the first N iterations of each search step, then keep the step (default 10); none: every iteration.", rich_help_panel=METHOD_PANEL)] = None,
    gamma: Annotated[Optional[float], typer.Option("--gamma", help="pcfe-l0: initial weight of the classification term.", rich_help_panel=METHOD_PANEL)] = None,
    beta: Annotated[Optional[float], typer.Option("--beta", help="pcfe-l0: price of each changed input value (l0 weight).", rich_help_panel=METHOD_PANEL)] = None,
    tau: Annotated[Optional[float], typer.Option("--tau", help="pcfe-l0: weight of the plausibility term -log q(x'|t) (default: the density's own scale, e.g. a KDE's mean h^2; recorded).", rich_help_panel=METHOD_PANEL)] = None,
    prox: Annotated[Optional[str], typer.Option("--prox", help="pcfe-l0 sparsity: l0, l1, l1/2, l0-ball or none.", rich_help_panel=METHOD_PANEL)] = None,
    density: Annotated[Optional[str], typer.Option("--density", help="pcfe-l0 plausibility: a file from 'lfp density', a kind (kde, gmm, knn, vae, feature-kde, ...) fitted now on the model's clean training split, or none. Default: kde for inputs of at most 4096 values, feature-kde for larger ones.", metavar="FILE|KIND", rich_help_panel=METHOD_PANEL)] = None,
    mask: Annotated[Optional[str], typer.Option("--mask", help="pcfe-l0: .npy file of 0/1 values (shape broadcastable to one input, C,H,W) marking the input values allowed to change.", metavar="FILE.npy", rich_help_panel=METHOD_PANEL)] = None,
    param: Annotated[Optional[list[str]], typer.Option("--param", "-p", help="Any method parameter as KEY=VALUE (repeatable).", metavar="KEY=VALUE", rich_help_panel=METHOD_PANEL)] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Perturb only the first N samples of the split.")] = None,
    batch_size: BatchOpt = 256,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Perturb every sample of a split toward a target label; write the perturbed set (.h5).

    Example: lfp perturb --method pgd-l2 --in model.pt --out pgd.h5
    """
    from lfpcli.commands import perturb as run

    params: dict[str, Any] = dict(key_values(param, "--param"))
    flags = dict(eps=eps, steps=steps, step_size=step_size, random_start=random_start, loss=loss, step=step, projection=projection,
                 lam=lam, lr=lr, max_changed=max_changed, search_steps=search_steps, lipschitz=lipschitz,
                 line_search=line_search, line_search_iters=line_search_iters, gamma=gamma, beta=beta, tau=tau, prox=prox)
    given = {k: v for k, v in flags.items() if v is not None}
    both = sorted(set(given) & set(params))
    if both:
        raise typer.BadParameter(f"{', '.join(both)} given both as --{both[0].replace('_', '-')} and as -p; give it once",
                                 param_hint="--param")
    params.update(given)
    _run(run, render.show_perturb, json_, quiet, out=out, model=in_, method=method, data=data, split=split,
         targets=targets, params=params, density=density, mask=mask, seed=seed, batch_size=batch_size, limit=limit, device=device, force=force)


@app.command(rich_help_panel=CHAIN)
def retrain(
    in_: Annotated[str, typer.Option("--in", "-i", help="Perturbed set to learn from (.h5).", metavar="FILE.h5")],
    out: Annotated[str, typer.Option("--out", "-o", help="Checkpoint to write (.pt).", metavar="FILE.pt")],
    arch: Annotated[Optional[str], typer.Option("--arch", help="Architecture (default: the source model's).")] = None,
    arch_arg: ArchArgOpt = None,
    init: Annotated[str, typer.Option("--init", help="auto (the source model's: scratch, or the same pretrained weights file), scratch, or pretrained.")] = "auto",
    weights: WeightsOpt = None,
    recipe: RecipeOpt = None,
    epochs: EpochsOpt = None,
    optimizer: OptimizerOpt = None,
    lr: LrOpt = None,
    momentum: MomentumOpt = None,
    weight_decay: WdOpt = None,
    nesterov: NesterovOpt = None,
    batch_size: TrainBatchOpt = None,
    schedule: ScheduleOpt = None,
    select: SelectOpt = None,
    loss: TrainLossOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Train a fresh model on a perturbed set alone, with its target labels; report it on clean data.

    Example: lfp retrain --in pgd.h5 --out model_pgd.pt
    """
    from lfpcli.commands import retrain as run

    _run(run, lambda s: render.show_training(s, "retrained"), json_, quiet, out=out, perturbed=in_, arch=arch,
         arch_args=key_values(arch_arg, "--arch-arg") if arch_arg else None, init=init, weights=weights, recipe=recipe,
         epochs=epochs, optimizer=optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
         batch_size=batch_size, schedule=schedule, select=select, loss=loss, seed=seed, device=device, force=force)


@app.command("eval", rich_help_panel=CHAIN)
def eval_(
    in_: Annotated[str, typer.Option("--in", "-i", help="Checkpoint to evaluate.", metavar="MODEL.pt")],
    data: Annotated[Optional[str], typer.Option("--data", help="Data spec or perturbed set (default: the clean data behind the model).")] = None,
    split: Annotated[Optional[list[str]], typer.Option("--split", help="Split(s) to evaluate (repeatable; default train, val, test).")] = None,
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Also write the report as a JSON artifact.", metavar="FILE.json")] = None,
    batch_size: BatchOpt = 256,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    json_: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Clean accuracy, per-group and worst-group accuracy (original labels); or accuracy on a perturbed set.

    Every figure is named for what it is: accuracy over samples, worst-group accuracy, the unweighted mean of
    group accuracies, and group accuracies weighted by the training group proportions.

    Example: lfp eval --in model_pgd.pt --json
    """
    from lfpcli.commands import evaluate as run

    _run(run, render.show_eval, json_, None, model=in_, data=data, splits=tuple(split or ("train", "val", "test")),
         batch_size=batch_size, device=device, out=out, force=force)


@app.command(rich_help_panel=CHAIN)
def density(
    in_: Annotated[str, typer.Option("--in", "-i", help="Checkpoint whose clean data (and, for feature- kinds, features) the density is fitted on.", metavar="MODEL.pt")],
    out: Annotated[str, typer.Option("--out", "-o", help="Density file to write (.h5).", metavar="FILE.h5")],
    kind: Annotated[str, typer.Option("--kind", help="kde, gmm, knn, vae (pixel space; vae: one conv VAE per class, score -||x - AE_t(x)||^2) "
                                      "or feature-kde, feature-gmm, feature-knn (the model's penultimate features).")] = "kde",
    fit_on: Annotated[str, typer.Option("--fit-on", help="train, val, or group-balanced (train subsampled to equal group sizes).")] = "train",
    param: Annotated[Optional[list[str]], typer.Option("--param", "-p", help="Estimator parameter KEY=VALUE (repeatable), e.g. bandwidth=0.3, components=4, covariance=diag, k=10, epochs=30, latent=64.", metavar="KEY=VALUE")] = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Fit one density per class, q(x | class), for the plausibility term of pcfe-l0; fit once, share it.

    Example: lfp density --kind kde --in model.pt --out kde.h5, then lfp perturb --method pcfe-l0 --in model.pt --density kde.h5 --out pcfe.h5
    """
    from lfpcli.commands import fit_density_file as run

    _run(run, render.show_density, json_, quiet, out=out, model=in_, kind=kind, fit_on=fit_on,
         params=_typed(key_values(param, "--param")), seed=seed, device=device, force=force)


def _typed(params: dict[str, str]) -> dict[str, Any]:
    """KEY=VALUE strings to numbers where they parse as numbers."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        for cast in (int, float):
            try:
                out[k] = cast(v)
                break
            except ValueError:
                continue
        else:
            out[k] = {"none": None, "true": True, "false": False}.get(v.lower(), v)
    return out


@app.command(rich_help_panel=INSPECT)
def info(
    file: Annotated[str, typer.Argument(help="Any lfp artifact: checkpoint, perturbed set, dataset or eval report.")],
    json_: JsonOpt = False,
) -> None:
    """What an artifact is and how it was made: command, parameters, seeds, versions, parents (sha256 checked).

    Example: lfp info pgd.h5
    """
    from lfpcli.commands import info as run

    r = run(file)
    for p in r["parents"]:
        if p["status"] == "changed":
            warnings.warn(f"parent {p['path']} of {file} changed since (sha256 {p['sha256'][:12]} recorded, "
                          f"{p['sha256_now'][:12]} now)", stacklevel=1)
    render.emit_json(r) if json_ else render.show_info(r)


@app.command("data", rich_help_panel=INSPECT)
def data_(
    spec: Annotated[str, typer.Argument(help="Data spec: digits, spurious-digits[:key=value,...], or an lfp .h5 file.")] = "spurious-digits",
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Write the dataset as an lfp .h5 file.", metavar="FILE.h5")] = None,
    force: ForceOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Describe a data spec (splits, classes, groups); with --out, write it as an lfp dataset file.

    Example: lfp data spurious-digits:correlation=0.9 --out sd90.h5
    """
    from lfpcli.commands import describe_data as run

    _run(run, render.show_data, json_, None, data=spec, out=out, force=force)


def _not_yet(name: str) -> Callable[..., None]:
    def cmd(ctx: typer.Context) -> None:
        from lfpcli.errors import InputError

        raise InputError(f"'lfp {name}' is not available yet in lfp {__version__}; it is planned (see the README)")

    cmd.__doc__ = {"saliency": "Saliency maps (Grad-CAM, gradients) of models, as pictures and numbers. (not yet available)",
                   "synth": "The synthetic learning-from-perturbations experiments. (not yet available)"}[name]
    return cmd


for _name in ("saliency", "synth"):
    app.command(_name, rich_help_panel=LATER, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(_not_yet(_name))


@app.command(rich_help_panel=INSPECT)
def completion(shell: Annotated[str, typer.Argument(help="bash, zsh or fish.")]) -> None:
    """Print the shell completion script (the same as the files in completions/).

    Example: lfp completion bash > ~/.local/share/bash-completion/completions/lfp
    """
    from lfpcli.cli.completion import script

    sys.stdout.write(script(shell))


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(f"warning: {_one_line(message)}\n")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning every failure into one line on stderr and an exit code
    (2: bad input or usage, 1: a bug in lfp, 130: interrupted). ``LFP_DEBUG=1`` re-raises with a traceback."""
    from lfpcli.errors import LfpError

    warnings.showwarning = _show_warning
    debug = os.environ.get("LFP_DEBUG") == "1"
    cmd = typer.main.get_command(app)
    code = 0
    try:
        rv = cmd.main(args=argv, prog_name="lfp", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except LfpError as e:
        if debug:
            raise
        sys.stderr.write(f"error: {_one_line(e)}\n")
        code = e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        code = 130
    except Exception as e:  # click's usage errors carry format_message/exit_code; anything else is our bug
        if hasattr(e, "format_message") and hasattr(e, "exit_code"):
            ctx = getattr(e, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            msg = e.format_message() if type(e).__name__ != "Abort" else "aborted"
            cfg = ctx.meta.get("lfp_config") if ctx is not None else None
            pname = getattr(getattr(e, "param", None), "name", None)
            if cfg and pname in cfg[1]:
                msg += f" (the value comes from {cfg[0]})"
            sys.stderr.write(f"error: {_one_line(msg)}{hint}\n")
            code = 2 if e.exit_code in (1, 2) else e.exit_code
        elif isinstance(e, MemoryError) or "out of memory" in str(e).lower():
            sys.stderr.write(f"error: out of memory ({_one_line(e)[:200]}); use a smaller --batch-size\n")
            code = 2
        elif isinstance(e, OSError) and not debug:
            sys.stderr.write(f"error: {_one_line(e)}\n")
            code = 2
        else:
            if debug:
                raise
            sys.stderr.write(f"error: internal error in lfp: {type(e).__name__}: {_one_line(e)[:300]} "
                             f"(run with LFP_DEBUG=1 for the traceback, and please report it)\n")
            code = 1
    sys.stdout.flush()
    sys.exit(code)
