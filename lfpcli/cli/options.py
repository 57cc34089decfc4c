"""Options shared by several commands, defined once (typer ``Annotated`` aliases), and ``--config`` loading."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import yaml

TRAIN_PANEL = (
    "Training settings (flags win over --recipe, which wins over the defaults shown; retrain: the source model's)"
)
#: The panels ``lfp --help`` groups the commands into.
CHAIN_PANEL = "Chain"
INSPECT_PANEL = "Inspect"
METHOD_PANEL = "Method parameters (defaults: the data spec's for the method, then the method's; recorded)"


def load_config(ctx: typer.Context, param: Any, value: Optional[str]) -> Optional[str]:
    """Eager callback: read a YAML mapping of option names to values into the command's defaults, so any
    option can come from a file and flags on the command line still win."""
    if not value:
        return value
    p = Path(value)
    if not p.is_file():
        raise typer.BadParameter(f"config file {value} does not exist", param_hint="--config")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first = str(e).splitlines()[0] if str(e) else "parse error"
        raise typer.BadParameter(f"{value} is not valid YAML ({first})", param_hint="--config") from None
    if not isinstance(data, dict):
        raise typer.BadParameter(f"{value} must hold a mapping of option names to values", param_hint="--config")
    names = {p.name: p for p in ctx.command.params}
    defaults = {}
    for key, v in data.items():
        name = str(key).lstrip("-").replace("-", "_")
        if name not in names and name + "_" in names:  # options whose Python name avoids a keyword: in_, json_, set_
            name = name + "_"
        if name not in names or name == "config":
            valid = ", ".join(sorted(n.rstrip("_").replace("_", "-") for n in names if n != "config"))
            raise typer.BadParameter(
                f"{value}: '{key}' is not an option of this command (options: {valid})", param_hint="--config"
            )
        if isinstance(v, dict):
            v = [f"{k}={x}" for k, x in v.items()]
        defaults[name] = v
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    ctx.meta["lfp_config"] = (value, set(defaults))  # lets an error about one of these values name the file
    return value


ConfigOpt = Annotated[
    Optional[str],
    typer.Option(
        "--config",
        help="YAML file of option values (keys are option names); flags given on the command line win.",
        is_eager=True,
        callback=load_config,
        metavar="FILE.yaml",
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON object (the summary) on stdout instead of tables.")
]
QuietOpt = Annotated[
    bool,
    typer.Option(
        "--quiet",
        "-q",
        help="No progress bars (they are drawn on stderr when it is a terminal, or with LFP_PROGRESS=1).",
    ),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite the output if it exists.")]
#: --force of a command that resumes (it has --resume): it also discards what an interrupted run kept.
ResumableForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Overwrite the output if it exists, and start over: discard the "
        "progress an interrupted run kept in OUT.resume/ (and the partial output it left).",
    ),
]
SaveEveryOpt = Annotated[
    float,
    typer.Option(
        "--save-every",
        help="Keep the training state for --resume after an epoch once this "
        "many seconds have passed since the last save (0: after every epoch).",
        metavar="SECONDS",
    ),
]
ResumeOpt = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="Finish an interrupted run of this same command from the progress kept "
        "in OUT.resume/ (the same result as an uninterrupted run; a different command is refused).",
    ),
]
SeedOpt = Annotated[
    int, typer.Option("--seed", help="Seed of every random choice this command makes (recorded).", show_default=True)
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA if available), cpu, cuda or cuda:N.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Samples per batch (memory is bounded by the batch).")]
ArchArgOpt = Annotated[
    Optional[list[str]],
    typer.Option("--arch-arg", help="Architecture option KEY=VALUE (repeatable), e.g. width=64.", metavar="KEY=VALUE"),
]
WeightsOpt = Annotated[
    Optional[str],
    typer.Option(
        "--weights",
        help="Pretrained weights to start from: an lfp checkpoint of the same architecture (e.g. a model trained on "
        "scenes-pretrain, the start of spurious-scenes models: every tensor but its head is copied); for "
        "resnet18/resnet50, torchvision's name for them (IMAGENET1K_V1, the paper's ResNet-50; IMAGENET1K_V2; "
        "DEFAULT), read from torch's hub cache ($TORCH_HOME/hub/checkpoints) and fetched there only when absent "
        "($LFP_MIRROR/FILE if set), or a local file such as resnet50-0676ba61.pth, never fetched. Read with "
        "weights_only=True; the name and file hash are recorded, and lfp retrain starts from the same file.",
        metavar="NAME|FILE",
    ),
]
#: Help panel of the flags that read a model file lfp did not write (``lfpcli.commands.foreign``).
BYO_PANEL = "Your own model as --in (TorchScript, .pt2, state dict)"
NormalizeOpt = Annotated[
    Optional[str],
    typer.Option(
        "--normalize",
        metavar="MEAN,STD|none",
        rich_help_panel=BYO_PANEL,
        help="The normalisation a model file lfp did not write expects (lfp applies it before the model, so budgets stay "
        "in pixel units): none (pixels in [0, 1]), MEAN,STD for every channel (e.g. 0.5,0.5), M1,..,MC,S1,..,SC per "
        "channel, imagenet, or data (the data's own channel statistics). Required for such a file.",
    ),
]
ForeignArchOpt = Annotated[
    Optional[str],
    typer.Option(
        "--arch",
        metavar="NAME",
        rich_help_panel=BYO_PANEL,
        help="A state-dict file as --in: the registered architecture its weights fit (e.g. kumano-cnn, wrn-28-10, resnet50, "
        "small-cnn; torchvision ResNet names load into resnet18/resnet50).",
    ),
]
ForeignArchArgOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--arch-arg",
        metavar="KEY=VALUE",
        rich_help_panel=BYO_PANEL,
        help="A state-dict file as --in: an option of --arch (repeatable), e.g. width=2.",
    ),
]


def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def train_default(name: str) -> str:
    """Help text naming the defaults of training setting ``name``: per built-in data spec, then lfp's own."""
    from lfpcli.data.builtin import BUILTINS
    from lfpcli.training.config import TrainConfig

    base = _num(getattr(TrainConfig(), name))
    per = {data: _num(b.train_defaults[name]) for data, b in BUILTINS.items() if name in b.train_defaults}
    if all(v == base for v in per.values()):
        return f"(default {base})"
    return "(default: " + ", ".join(f"{d} {v}" for d, v in per.items()) + f", other data {base})"


def method_default(name: str) -> str:
    """Help text naming the defaults of method parameter ``name``: each method's, then the data specs' own."""
    from lfpcli.data.builtin import BUILTINS
    from lfpcli.solvers import get_solver, list_solvers

    by_value: dict[str, list[str]] = {}
    for m in list_solvers():
        params = get_solver(m).params()
        if name in params:
            v = params[name]
            if name == "step_size" and v is None:
                v = "2.5*eps/steps"
            by_value.setdefault("none" if v is None else _num(v), []).append(m)
    if len(by_value) == 1 and not any(name in d for b in BUILTINS.values() for d in b.perturb_defaults.values()):
        return f"(default {next(iter(by_value))})"
    parts = [f"{', '.join(ms)}: {v}" for v, ms in by_value.items()]
    for data, b in BUILTINS.items():
        over = [f"{m} {_num(d[name])}" for m, d in b.perturb_defaults.items() if name in d]
        if over:
            parts.append(f"on {data}: {', '.join(over)}")
    return f"(default: {'; '.join(parts)})" if parts else ""


RecipeOpt = Annotated[
    Optional[str],
    typer.Option(
        "--recipe",
        help="Named optimizer settings: paper-text (the paper's Sec. 5: SGD lr 1e-5, batch 8, 360 epochs), "
        "paper-code (its public code: SGD lr 1e-3, batch 108, 113 epochs), kumano (SGD lr 0.1, Nesterov, 100 epochs). "
        "Flags given with it win.",
        rich_help_panel=TRAIN_PANEL,
    ),
]
EpochsOpt = Annotated[
    Optional[int],
    typer.Option("--epochs", help=f"Training epochs {train_default('epochs')}.", rich_help_panel=TRAIN_PANEL),
]
OptimizerOpt = Annotated[
    Optional[str],
    typer.Option("--optimizer", help=f"sgd or adam {train_default('optimizer')}.", rich_help_panel=TRAIN_PANEL),
]
LrOpt = Annotated[
    Optional[float],
    typer.Option("--lr", help=f"Learning rate of the optimizer {train_default('lr')}.", rich_help_panel=TRAIN_PANEL),
]
MomentumOpt = Annotated[
    Optional[float],
    typer.Option("--momentum", help=f"SGD momentum {train_default('momentum')}.", rich_help_panel=TRAIN_PANEL),
]
WdOpt = Annotated[
    Optional[float],
    typer.Option("--weight-decay", help=f"Weight decay {train_default('weight_decay')}.", rich_help_panel=TRAIN_PANEL),
]
NesterovOpt = Annotated[
    Optional[bool],
    typer.Option("--nesterov/--no-nesterov", help="Nesterov momentum (SGD; default off).", rich_help_panel=TRAIN_PANEL),
]
TrainBatchOpt = Annotated[
    Optional[int],
    typer.Option(
        "--batch-size",
        help=f"Training batch size {train_default('batch_size')}. Under torchrun: the global minibatch, split among the processes.",
        rich_help_panel=TRAIN_PANEL,
    ),
]
ScheduleOpt = Annotated[
    Optional[str],
    typer.Option(
        "--schedule",
        help=f"Learning-rate schedule: constant or cosine {train_default('schedule')}.",
        rich_help_panel=TRAIN_PANEL,
    ),
]
SelectOpt = Annotated[
    Optional[str],
    typer.Option(
        "--select",
        help="Which epoch to keep: last, val-accuracy or val-worst-group (best on the clean validation split) "
        f"{train_default('select')}.",
        rich_help_panel=TRAIN_PANEL,
    ),
]
BalanceOpt = Annotated[
    Optional[str],
    typer.Option(
        "--balance",
        metavar="none|groups",
        help="none (each training sample once an epoch) or groups (as many samples drawn with replacement, "
        "every (label, attribute) group equally likely: the group-balanced reference that uses the group labels) "
        f"{train_default('balance')}.",
        rich_help_panel=TRAIN_PANEL,
    ),
]
TrainLossOpt = Annotated[
    Optional[str],
    typer.Option(
        "--loss",
        help="Training loss: ce, logistic or exponential (on a --output scalar model ce = logistic = "
        "log(1+exp(-s z)), exponential = exp(-s z), s = +-1; default ce, logistic for scalar models; retrain: the source model's).",
        rich_help_panel=TRAIN_PANEL,
    ),
]


def key_values(items: list[str] | None, flag: str) -> dict[str, str]:
    """Parse repeated KEY=VALUE options."""
    out: dict[str, str] = {}
    for item in items or []:
        k, eq, v = item.partition("=")
        if not eq or not k:
            raise typer.BadParameter(f"expected KEY=VALUE, got '{item}'", param_hint=flag)
        out[k.strip().replace("-", "_")] = v.strip()
    return out


#: Help panel of the flags that say how the model runs (``lfpcli.precision``).
EXEC_PANEL = "Execution"
PrecisionOpt = Annotated[
    str,
    typer.Option(
        "--precision",
        metavar="fp32|bf16|fp16",
        rich_help_panel=EXEC_PANEL,
        show_default=True,
        help="Numeric type of the model's forward and backward (torch.autocast); perturbations, optimizer state, "
        "losses and density terms stay fp32. bf16 needs an Ampere or newer GPU; fp16 training uses a gradient scaler.",
    ),
]
ChannelsLastOpt = Annotated[
    str,
    typer.Option(
        "--channels-last",
        metavar="auto|on|off",
        rich_help_panel=EXEC_PANEL,
        show_default=True,
        help="Store a convolutional model's weights and inputs NHWC (auto: on CUDA only).",
    ),
]
CompileOpt = Annotated[
    bool,
    typer.Option(
        "--compile",
        rich_help_panel=EXEC_PANEL,
        help="Compile the model with torch.compile (the first batches are slower; needs a C++ compiler on CPU).",
    ),
]


def _solver_batch(cuda: str) -> Any:
    return Annotated[
        Optional[int],
        typer.Option(
            "--batch-size",
            help=f"Samples per batch; memory is bounded by the batch (default: 256 on a CPU; on CUDA {cuda}, "
            f"found by doubling; the choice is recorded).",
            show_default=False,
        ),
    ]


#: perturb's (lfpcli.commands.perturb.solver_batch_size) and saliency's (lfpcli.commands.saliency.saliency_batch_size).
PerturbBatchOpt = _solver_batch(
    "a quarter of the largest batch whose forward and backward fit, since a solver keeps several copies of the batch"
)
SaliencyBatchOpt = _solver_batch(
    "80% of the largest batch whose forward and backward fit for every model, at most the number of images"
)
