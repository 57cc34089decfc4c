"""The chain's commands: ``lfp train``, ``perturb``, ``retrain``, ``eval`` and ``density`` (registered on the app by
:func:`register`), each a thin layer over :mod:`lfpcli.commands`."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from lfpcli.cli import render
from lfpcli.cli.options import (
    CHAIN_PANEL,
    METHOD_PANEL,
    ArchArgOpt,
    BalanceOpt,
    BatchOpt,
    ChannelsLastOpt,
    CompileOpt,
    ConfigOpt,
    DeviceOpt,
    EpochsOpt,
    ForceOpt,
    ForeignArchArgOpt,
    ForeignArchOpt,
    JsonOpt,
    LrOpt,
    MomentumOpt,
    NesterovOpt,
    NormalizeOpt,
    OptimizerOpt,
    PerturbBatchOpt,
    PrecisionOpt,
    QuietOpt,
    RecipeOpt,
    ResumableForceOpt,
    ResumeOpt,
    SaveEveryOpt,
    ScheduleOpt,
    SeedOpt,
    SelectOpt,
    TrainBatchOpt,
    TrainLossOpt,
    WdOpt,
    WeightsOpt,
    key_values,
    method_default,
)
from lfpcli.cli.runner import run as run_command


def _methods() -> list[str]:
    from lfpcli.solvers import list_solvers

    return list_solvers()


def train(
    out: Annotated[str, typer.Option("--out", "-o", help="Checkpoint to write (.pt).", metavar="FILE.pt")],
    data: Annotated[
        str,
        typer.Option(
            "--data",
            help="Data spec: a built-in (digits, spurious-digits, spurious-scenes, scenes-pretrain[:key=value,...]; lfp data --list); your copy of a paper dataset (waterbirds:root=DIR, spuco-dogs:root=DIR, spuco-animals:root=DIR, mnist:root=DIR, fmnist:root=DIR, cifar10:root=DIR); your images (folder:csv=FILE); or an lfp .h5 file (a cache from lfp data --out). See lfp data --help.",
        ),
    ] = "spurious-digits",
    arch: Annotated[
        str,
        typer.Option(
            "--arch",
            help="Architecture: small-cnn, mlp, resnet18, resnet50 (the paper's WaterBirds and "
            "SpuCo network, with --weights), kumano-cnn (its MNIST/FMNIST ConvNet), wrn-28-10 (its CIFAR-10 "
            "WideResNet), one-hidden (lfp synth's).",
        ),
    ] = "small-cnn",
    arch_arg: ArchArgOpt = None,
    weights: WeightsOpt = None,
    output: Annotated[
        str,
        typer.Option(
            "--output",
            help="logits (one per class) or scalar: one logit for a two-class task, "
            "labels read as -1/+1, class 1 when positive (train with --loss logistic or exponential).",
        ),
    ] = "logits",
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
    balance: BalanceOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    channels_last: ChannelsLastOpt = "auto",
    compile_: CompileOpt = False,
    force: ResumableForceOpt = False,
    resume: ResumeOpt = False,
    save_every: SaveEveryOpt = 60.0,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Train a classifier on clean data and write a self-describing checkpoint.

    Example: lfp train --data spurious-digits --arch small-cnn --out model.pt
    """
    from lfpcli.commands import train as run

    run_command(
        run,
        lambda s: render.show_training(s, "trained"),
        json_,
        quiet,
        out=out,
        data=data,
        arch=arch,
        arch_args=key_values(arch_arg, "--arch-arg"),
        weights=weights,
        recipe=recipe,
        epochs=epochs,
        optimizer=optimizer,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        nesterov=nesterov,
        batch_size=batch_size,
        schedule=schedule,
        select=select,
        loss=loss,
        balance=balance,
        output=output,
        seed=seed,
        device=device,
        force=force,
        resume=resume,
        save_every=save_every,
        precision=precision,
        channels_last=channels_last,
        compile=compile_,
    )


def _method_params(ctx: typer.Context, flags: dict[str, Any], param: list[str] | None) -> dict[str, Any]:
    """Method parameters from their own flags and from ``-p KEY=VALUE``, each given on the command line or in the
    ``--config`` file: the command line wins over the file, a flag over ``-p``'s entry in the same place, and the
    file's ``param:`` mapping is merged under the command line's ``-p``. The same key given twice in one place
    (as its flag and as ``-p``) is refused."""

    def source(name: str) -> str:
        src = ctx.get_parameter_source(name) if hasattr(ctx, "get_parameter_source") else None
        return "command line" if src is not None and src.name in ("COMMANDLINE", "ENVIRONMENT") else "config"

    cfg_list = (ctx.default_map or {}).get("param") if source("param") == "command line" else None
    layers = {"config": {}, "command line": {}}  # where -> {key: value}
    layers[source("param")].update(key_values(param, "--param"))
    layers["config"] = {**key_values(cfg_list, "--param"), **layers["config"]}
    for where in ("config", "command line"):
        mine = {k: v for k, v in flags.items() if v is not None and source(k) == where}
        both = sorted(set(mine) & set(layers[where]))
        if both:
            place = "on the command line" if where == "command line" else "in the --config file"
            raise typer.BadParameter(
                f"{', '.join(both)} given both as --{both[0].replace('_', '-')} and as -p {place}; give it once",
                param_hint="--param",
            )
        layers[where].update(mine)
    return {**layers["config"], **layers["command line"]}


def perturb(
    ctx: typer.Context,
    in_: Annotated[
        str,
        typer.Option(
            "--in",
            "-i",
            help="The model whose decisions are pushed: an lfp checkpoint, or your own "
            "(TorchScript, torch.export .pt2, or a state dict with --arch; then --data and --normalize).",
            metavar="MODEL",
        ),
    ],
    out: Annotated[str, typer.Option("--out", "-o", help="Perturbed set to write (.h5).", metavar="FILE.h5")],
    method: Annotated[
        str, typer.Option("--method", "-m", help=f"Perturbation method: {', '.join(_methods())}.")
    ] = "pgd-l2",
    targets: Annotated[
        str,
        typer.Option(
            "--targets",
            help="Target rule: random (uniform over all K classes; the paper's code), "
            "random-other (uniform over the K-1 others; the paper's Def. 4.1), deterministic (y+1 mod K).",
        ),
    ] = "random",
    data: Annotated[
        Optional[str],
        typer.Option(
            "--data",
            help="Data spec to perturb (default: the data the model was trained on; "
            "required for a model lfp did not write).",
        ),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Split to perturb.")] = "train",
    eps: Annotated[
        Optional[float],
        typer.Option(
            "--eps",
            help=f"pgd-l2, pgd-linf: budget, the radius of the ball in pixel units {method_default('eps')}.",
            rich_help_panel=METHOD_PANEL,
        ),
    ] = None,
    steps: Annotated[
        Optional[int],
        typer.Option(
            "--steps",
            help=f"Iterations (per search step for pcfe-l0) {method_default('steps')}.",
            rich_help_panel=METHOD_PANEL,
        ),
    ] = None,
    step_size: Annotated[
        Optional[float],
        typer.Option(
            "--step-size",
            help=f"Step of the method: PGD's alpha; cfe-l2: Adam's step size (the paper's lambda_CF) {method_default('step_size')}.",
            rich_help_panel=METHOD_PANEL,
        ),
    ] = None,
    random_start: Annotated[
        Optional[bool],
        typer.Option(
            "--random-start/--no-random-start",
            help="pgd-l2, pgd-linf: start at a random point of the ball (default off).",
            rich_help_panel=METHOD_PANEL,
        ),
    ] = None,
    loss: Annotated[
        Optional[str],
        typer.Option(
            "--loss",
            help=f"Loss toward the target: ce, logistic, exponential or margin (binary scalar models: logistic = ce) {method_default('loss')}.",
            rich_help_panel=METHOD_PANEL,
        ),
    ] = None,
    step: Annotated[
        Optional[str],
        typer.Option(
            "--step",
            help=f"pgd-linf step: sign (textbook) or max-normalized (the paper's code); pgd-l0 also raw {method_default('step')}.",
            rich_help_panel=METHOD_PANEL,
        ),
    ] = None,
    projection: Annotated[
        Optional[str],
        typer.Option(
            "--projection",
            help="pgd-linf projection: clip (textbook; the default) or rescale (the paper's code).",
            rich_help_panel=METHOD_PANEL,
        ),
    ] = None,
    lam: Annotated[
        Optional[float],
        typer.Option(
            "--lam",
            help=f"cfe-l2: weight of the squared l2 distance {method_default('lam')}.",
            rich_help_panel=METHOD_PANEL,
        ),
    ] = None,
    max_changed: Annotated[
        Optional[str],
        typer.Option(
            "--max-changed",
            help="pgd-l0, pcfe-l0 (with --prox l0-ball): most input values changed, a count or (pcfe-l0) a ratio in (0, 1) (default: pgd-l0 --steps; pcfe-l0 none).",
            rich_help_panel=METHOD_PANEL,
        ),
    ] = None,
    search_steps: Annotated[
        Optional[int],
        typer.Option(
            "--search-steps",
            help=f"pcfe-l0: bisection steps over the weight of the classification term {method_default('search_steps')}.",
            rich_help_panel=METHOD_PANEL,
        ),
    ] = None,
    lipschitz: Annotated[
        Optional[float],
        typer.Option(
            "--lipschitz",
            help=f"pcfe-l0: L, the FISTA step is 1/L (the start value with --line-search) {method_default('lipschitz')}. Smaller L (longer steps) finds lower objectives with more changed values and higher plausibility.",
            rich_help_panel=METHOD_PANEL,
        ),
    ] = None,
    line_search: Annotated[
        Optional[bool],
        typer.Option(
            "--line-search/--no-line-search",
            help="pcfe-l0: backtracking line search per sample (default on).",
            rich_help_panel=METHOD_PANEL,
        ),
    ] = None,
    line_search_iters: Annotated[
        Optional[str],
        typer.Option(
            "--line-search-iters",
            help=f"pcfe-l0: backtrack in the first N iterations of each search step, then keep the step; none: every iteration {method_default('line_search_iters')}.",
            rich_help_panel=METHOD_PANEL,
        ),
    ] = None,
    gamma: Annotated[
        Optional[float],
        typer.Option(
            "--gamma",
            help=f"pcfe-l0: initial weight of the classification term {method_default('gamma')}.",
            rich_help_panel=METHOD_PANEL,
        ),
    ] = None,
    beta: Annotated[
        Optional[float],
        typer.Option(
            "--beta",
            help=f"pcfe-l0: price of each changed input value (l0 weight) {method_default('beta')}.",
            rich_help_panel=METHOD_PANEL,
        ),
    ] = None,
    tau: Annotated[
        Optional[float],
        typer.Option(
            "--tau",
            help="pcfe-l0: weight of the plausibility term -log q(x'|t) (default: the density's own scale, e.g. a KDE's mean h^2; recorded).",
            rich_help_panel=METHOD_PANEL,
        ),
    ] = None,
    prox: Annotated[
        Optional[str],
        typer.Option(
            "--prox",
            help=f"pcfe-l0 sparsity: l0, l1, l1/2, l0-ball or none {method_default('prox')}.",
            rich_help_panel=METHOD_PANEL,
        ),
    ] = None,
    density: Annotated[
        Optional[str],
        typer.Option(
            "--density",
            help="pcfe-l0 plausibility: a file from 'lfp density', a kind (kde, gmm, knn, vae, feature-kde, ...) fitted now on the model's clean training split, or none. Default: kde for inputs of at most 4096 values, feature-kde for larger ones.",
            metavar="FILE|KIND",
            rich_help_panel=METHOD_PANEL,
        ),
    ] = None,
    mask: Annotated[
        Optional[str],
        typer.Option(
            "--mask",
            help="pcfe-l0: .npy file of 0/1 values (shape broadcastable to one input, C,H,W) marking the input values allowed to change.",
            metavar="FILE.npy",
            rich_help_panel=METHOD_PANEL,
        ),
    ] = None,
    param: Annotated[
        Optional[list[str]],
        typer.Option(
            "--param",
            "-p",
            help="Any method parameter as KEY=VALUE (repeatable).",
            metavar="KEY=VALUE",
            rich_help_panel=METHOD_PANEL,
        ),
    ] = None,
    limit: Annotated[
        Optional[int], typer.Option("--limit", help="Perturb only the first N samples of the split.")
    ] = None,
    normalize: NormalizeOpt = None,
    arch: ForeignArchOpt = None,
    arch_arg: ForeignArchArgOpt = None,
    batch_size: PerturbBatchOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    channels_last: ChannelsLastOpt = "auto",
    compile_: CompileOpt = False,
    force: ResumableForceOpt = False,
    resume: ResumeOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Perturb every sample of a split toward a target label; write the perturbed set (.h5).

    Example: lfp perturb --method pgd-l2 --in model.pt --out pgd.h5
    """
    from lfpcli.commands import perturb as run

    flags = dict(
        eps=eps,
        steps=steps,
        step_size=step_size,
        random_start=random_start,
        loss=loss,
        step=step,
        projection=projection,
        lam=lam,
        max_changed=max_changed,
        search_steps=search_steps,
        lipschitz=lipschitz,
        line_search=line_search,
        line_search_iters=line_search_iters,
        gamma=gamma,
        beta=beta,
        tau=tau,
        prox=prox,
    )
    params = _method_params(ctx, flags, param)
    run_command(
        run,
        render.show_perturb,
        json_,
        quiet,
        out=out,
        model=in_,
        method=method,
        data=data,
        split=split,
        targets=targets,
        params=params,
        density=density,
        mask=mask,
        seed=seed,
        batch_size=batch_size,
        limit=limit,
        device=device,
        precision=precision,
        channels_last=channels_last,
        compile=compile_,
        force=force,
        resume=resume,
        normalize=normalize,
        arch=arch,
        arch_args=key_values(arch_arg, "--arch-arg") or None,
    )


def retrain(
    in_: Annotated[str, typer.Option("--in", "-i", help="Perturbed set to learn from (.h5).", metavar="FILE.h5")],
    out: Annotated[str, typer.Option("--out", "-o", help="Checkpoint to write (.pt).", metavar="FILE.pt")],
    arch: Annotated[Optional[str], typer.Option("--arch", help="Architecture (default: the source model's).")] = None,
    arch_arg: ArchArgOpt = None,
    init: Annotated[
        str,
        typer.Option(
            "--init",
            help="auto (the source model's: scratch, or the same pretrained weights file), scratch, or pretrained.",
        ),
    ] = "auto",
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
    balance: BalanceOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    channels_last: ChannelsLastOpt = "auto",
    compile_: CompileOpt = False,
    force: ResumableForceOpt = False,
    resume: ResumeOpt = False,
    save_every: SaveEveryOpt = 60.0,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Train a fresh model on a perturbed set alone, with its target labels; report it on clean data.

    Example: lfp retrain --in pgd.h5 --out model_pgd.pt
    """
    from lfpcli.commands import retrain as run

    run_command(
        run,
        lambda s: render.show_training(s, "retrained"),
        json_,
        quiet,
        out=out,
        perturbed=in_,
        arch=arch,
        arch_args=key_values(arch_arg, "--arch-arg") if arch_arg else None,
        init=init,
        weights=weights,
        recipe=recipe,
        epochs=epochs,
        optimizer=optimizer,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        nesterov=nesterov,
        batch_size=batch_size,
        schedule=schedule,
        select=select,
        loss=loss,
        balance=balance,
        seed=seed,
        device=device,
        force=force,
        resume=resume,
        save_every=save_every,
        precision=precision,
        channels_last=channels_last,
        compile=compile_,
    )


def eval_(
    in_: Annotated[
        list[str],
        typer.Option(
            "--in",
            "-i",
            help="Model to evaluate; repeat to compare models side by side "
            "(e.g. the standard model and one retrained on perturbations). An lfp checkpoint, or your "
            "own (TorchScript, torch.export .pt2, or a state dict with --arch; then --data and --normalize).",
            metavar="MODEL",
        ),
    ],
    data: Annotated[
        Optional[str],
        typer.Option(
            "--data",
            help="Data spec or perturbed set (default: the clean data behind each model; "
            "required for a model lfp did not write).",
        ),
    ] = None,
    split: Annotated[
        Optional[list[str]], typer.Option("--split", help="Split to evaluate (repeatable; default train, val, test).")
    ] = None,
    out: Annotated[
        Optional[str],
        typer.Option("--out", "-o", help="Also write the report as a JSON artifact (one --in).", metavar="FILE.json"),
    ] = None,
    normalize: NormalizeOpt = None,
    arch: ForeignArchOpt = None,
    arch_arg: ForeignArchArgOpt = None,
    batch_size: BatchOpt = 256,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Clean accuracy, per-group and worst-group accuracy (original labels); or accuracy on a perturbed set.

    Every figure is named for what it is: accuracy over samples, worst-group accuracy (and which group), the
    unweighted mean of group accuracies, and group accuracies weighted by the training group proportions.
    Several --in compare models side by side (--json: {"models": [report, ...]}).

    Example: lfp eval --in model.pt --in model_pgd.pt --split test
    """
    from lfpcli.commands import evaluate as run

    if len(in_) > 1 and out is not None:
        raise typer.BadParameter(
            "--out writes the report of one model; give one --in, or run lfp eval once per model", param_hint="--out"
        )
    splits = tuple(split or ("train", "val", "test"))
    arch_args = key_values(arch_arg, "--arch-arg") or None
    if len(in_) == 1:
        run_command(
            run,
            render.show_eval,
            json_,
            quiet,
            model=in_[0],
            data=data,
            splits=splits,
            batch_size=batch_size,
            device=device,
            out=out,
            force=force,
            normalize=normalize,
            arch=arch,
            arch_args=arch_args,
        )
        return
    from lfpcli.commands.common import foreign_options_for

    per_model = foreign_options_for(in_, data, normalize, arch, arch_args)

    def each(progress: Any = None, argv: Any = None) -> dict[str, Any]:
        return {
            "models": [
                run(
                    model=m,
                    data=data,
                    splits=splits,
                    batch_size=batch_size,
                    device=device,
                    progress=progress,
                    normalize=o.normalize,
                    arch=o.arch,
                    arch_args=o.arch_args,
                )
                for m, o in zip(in_, per_model)
            ]
        }

    run_command(each, render.show_eval_many, json_, quiet)


def density(
    in_: Annotated[
        str,
        typer.Option(
            "--in",
            "-i",
            help="Model whose clean data (and, for feature- kinds, features) the density is fitted on: "
            "an lfp checkpoint, or your own (TorchScript, torch.export .pt2, or a state dict with --arch; then "
            "--data and --normalize).",
            metavar="MODEL",
        ),
    ],
    out: Annotated[str, typer.Option("--out", "-o", help="Density file to write (.h5).", metavar="FILE.h5")],
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            help="kde, gmm, knn, vae (pixel space; vae: one conv VAE per class, score -||x - AE_t(x)||^2) "
            "or feature-kde, feature-gmm, feature-knn (the model's penultimate features).",
        ),
    ] = "kde",
    fit_on: Annotated[
        str, typer.Option("--fit-on", help="train, val, or group-balanced (train subsampled to equal group sizes).")
    ] = "train",
    param: Annotated[
        Optional[list[str]],
        typer.Option(
            "--param",
            "-p",
            help="Estimator parameter KEY=VALUE (repeatable), e.g. bandwidth=0.3, components=4, covariance=diag, k=10, epochs=30, latent=64.",
            metavar="KEY=VALUE",
        ),
    ] = None,
    data: Annotated[
        Optional[str],
        typer.Option(
            "--data", help="Data to fit on (default: the model's clean data; required for a model lfp did not write)."
        ),
    ] = None,
    normalize: NormalizeOpt = None,
    arch: ForeignArchOpt = None,
    arch_arg: ForeignArchArgOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    force: ResumableForceOpt = False,
    resume: ResumeOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Fit one density per class, q(x | class), for the plausibility term of pcfe-l0; fit once, share it.

    Example: lfp density --kind kde --in model.pt --out kde.h5, then lfp perturb --method pcfe-l0 --in model.pt --density kde.h5 --out pcfe.h5
    """
    from lfpcli.commands import fit_density_file as run

    run_command(
        run,
        render.show_density,
        json_,
        quiet,
        out=out,
        model=in_,
        kind=kind,
        fit_on=fit_on,
        params=_typed(key_values(param, "--param")),
        seed=seed,
        device=device,
        force=force,
        resume=resume,
        data=data,
        normalize=normalize,
        arch=arch,
        arch_args=key_values(arch_arg, "--arch-arg") or None,
    )


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


def register(app: typer.Typer) -> None:
    """Add ``train``, ``perturb``, ``retrain``, ``eval`` and ``density`` to the ``lfp`` app."""
    for name, fn in (
        ("train", train),
        ("perturb", perturb),
        ("retrain", retrain),
        ("eval", eval_),
        ("density", density),
    ):
        app.command(name, rich_help_panel=CHAIN_PANEL)(fn)
