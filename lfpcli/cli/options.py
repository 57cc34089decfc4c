"""Options shared by several commands, defined once (typer ``Annotated`` aliases), and ``--config`` loading."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import yaml

TRAIN_PANEL = "Training settings (default: the data spec's, or the source model's for retrain)"
METHOD_PANEL = "Method parameters (default: the data spec's for the method, then the solver's)"


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
        if name == "in":
            name = "in_"
        if name not in names or name == "config":
            valid = ", ".join(sorted(n.replace("_", "-").rstrip("-") for n in names if n != "config"))
            raise typer.BadParameter(f"{value}: '{key}' is not an option of this command (options: {valid})", param_hint="--config")
        if isinstance(v, dict):
            v = [f"{k}={x}" for k, x in v.items()]
        defaults[name] = v
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    ctx.meta["lfp_config"] = (value, set(defaults))  # lets an error about one of these values name the file
    return value


ConfigOpt = Annotated[
    Optional[str],
    typer.Option("--config", help="YAML file of option values (keys are option names); flags given on the command line win.",
                 is_eager=True, callback=load_config, metavar="FILE.yaml"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object (the summary) on stdout instead of tables.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite the output if it exists.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of every random choice this command makes (recorded).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA if available), cpu, cuda or cuda:N.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Samples per batch (memory is bounded by the batch).")]
ArchArgOpt = Annotated[
    Optional[list[str]],
    typer.Option("--arch-arg", help="Architecture option KEY=VALUE (repeatable), e.g. width=64.", metavar="KEY=VALUE"),
]
WeightsOpt = Annotated[
    Optional[str],
    typer.Option("--weights", help="Local file of pretrained torchvision weights to start from (never downloaded).", metavar="FILE"),
]
RecipeOpt = Annotated[
    Optional[str],
    typer.Option("--recipe", help="Named optimizer settings: paper-text (the paper's Sec. 5), paper-code (its public code), kumano.",
                 rich_help_panel=TRAIN_PANEL),
]
EpochsOpt = Annotated[Optional[int], typer.Option("--epochs", help="Training epochs.", rich_help_panel=TRAIN_PANEL)]
OptimizerOpt = Annotated[Optional[str], typer.Option("--optimizer", help="sgd or adam.", rich_help_panel=TRAIN_PANEL)]
LrOpt = Annotated[Optional[float], typer.Option("--lr", help="Learning rate.", rich_help_panel=TRAIN_PANEL)]
MomentumOpt = Annotated[Optional[float], typer.Option("--momentum", help="SGD momentum.", rich_help_panel=TRAIN_PANEL)]
WdOpt = Annotated[Optional[float], typer.Option("--weight-decay", help="Weight decay.", rich_help_panel=TRAIN_PANEL)]
NesterovOpt = Annotated[Optional[bool], typer.Option("--nesterov/--no-nesterov", help="Nesterov momentum (SGD).", rich_help_panel=TRAIN_PANEL)]
TrainBatchOpt = Annotated[Optional[int], typer.Option("--batch-size", help="Training batch size.", rich_help_panel=TRAIN_PANEL)]
ScheduleOpt = Annotated[Optional[str], typer.Option("--schedule", help="Learning-rate schedule: constant or cosine.", rich_help_panel=TRAIN_PANEL)]
SelectOpt = Annotated[
    Optional[str],
    typer.Option("--select", help="Which epoch to keep: last, val-accuracy or val-worst-group (best on the clean validation split).",
                 rich_help_panel=TRAIN_PANEL),
]
TrainLossOpt = Annotated[
    Optional[str],
    typer.Option("--loss", help="Training loss: ce, logistic or exponential (on a --output scalar model ce = logistic = "
                 "log(1+exp(-s z)), exponential = exp(-s z), s = +-1; default ce, logistic for scalar models).",
                 rich_help_panel=TRAIN_PANEL),
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
