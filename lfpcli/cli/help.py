"""How ``--help`` names option values: one metavar convention for every command, whatever typer's version.

Recent typer releases label every value by its Python type (``<int>``, ``<str>``, ``<list[str]>``), give flags a
``<bool>`` as if they took a value, and wrap required arguments in braces (``{file}``). :func:`polish` walks the
click command tree once and gives each parameter a metavar users recognise: the value's meaning in capitals
(``SPEC``, ``N``, ``FILE.pt``), the choices where there are few (``sgd|adam``), nothing for flags.

lfp's help texts are plain text: typer's rich mode would read ``[report, ...]`` as a markup tag and drop it, so
they are escaped where typer turns them into rich text.
"""

from __future__ import annotations

from typing import Any

#: Metavars by option name, for options that do not set their own.
BY_NAME = {
    "--data": "SPEC",
    "--arch": "NAME",
    "--method": "NAME",
    "--targets": "RULE",
    "--split": "SPLIT",
    "--epochs": "N",
    "--batch-size": "N",
    "--seed": "N",
    "--limit": "N",
    "--steps": "N",
    "--search-steps": "N",
    "--line-search-iters": "N|none",
    "--device": "DEVICE",
    "--lr": "RATE",
    "--momentum": "M",
    "--weight-decay": "WD",
    "--eps": "EPS",
    "--step-size": "SIZE",
    "--lam": "LAMBDA",
    "--gamma": "GAMMA",
    "--beta": "BETA",
    "--tau": "TAU",
    "--lipschitz": "L",
    "--max-changed": "K|RATIO",
    "--recipe": "NAME",
    "--kind": "KIND",
    "--loss": "LOSS",
    "--optimizer": "sgd|adam",
    "--schedule": "constant|cosine",
    "--select": "RULE",
    "--output": "logits|scalar",
    "--init": "auto|scratch|pretrained",
    "--fit-on": "SPLIT",
    "--step": "RULE",
    "--projection": "clip|rescale",
    "--prox": "PROX",
}
#: Metavars of positional arguments, by parameter name.
ARGUMENTS = {"file": "FILE", "files": "FILE...", "spec": "SPEC", "shell": "bash|zsh|fish"}

_patched = False


def _patch_typer() -> None:
    """Flags take no value, and required arguments are written plainly (``FILE``), as click and argparse do.
    Applied only where this typer has the methods that do otherwise."""
    global _patched
    if _patched:
        return
    _patched = True
    try:
        from typer import core
    except ImportError:  # pragma: no cover - typer is a dependency
        return
    opt = getattr(core, "TyperOption", None)
    if opt is not None and hasattr(opt, "display_type_rich"):
        original = opt.display_type_rich

        def display_type_rich(self: Any, ctx: Any) -> Any:
            return None if getattr(self, "is_flag", False) else original(self, ctx)

        opt.display_type_rich = display_type_rich
    arg = getattr(core, "TyperArgument", None)
    if arg is not None and hasattr(arg, "_usage_display_name"):

        def usage_name(self: Any) -> str:
            name = self.metavar or str(self.name).upper()
            if not self.required:
                name = f"[{name}]"
            return name + ("..." if self.nargs != 1 and not name.endswith("...") else "")

        arg._usage_display_name = usage_name
    if arg is not None and hasattr(arg, "display_type_rich"):
        arg.display_type_rich = lambda self, ctx: None  # the metavar already says what the value is
    try:
        from typer import rich_utils
    except ImportError:  # pragma: no cover - typer without rich: help is printed as plain text anyway
        return
    make_text = getattr(rich_utils, "_make_rich_text", None)
    if make_text is not None:
        from rich.markup import escape

        def plain_text(*, text: str, markup_mode: Any, **kw: Any) -> Any:
            return make_text(text=escape(text) if markup_mode == "rich" else text, markup_mode=markup_mode, **kw)

        rich_utils._make_rich_text = plain_text


def _metavar(param: Any) -> str | None:
    if getattr(param, "param_type_name", "") == "argument":
        return param.metavar or ARGUMENTS.get(param.name, str(param.name).upper())
    if getattr(param, "is_flag", False):
        return ""
    if param.metavar:
        return param.metavar
    for opt in param.opts:
        if opt in BY_NAME:
            return BY_NAME[opt]
    kind = getattr(getattr(param, "type", None), "name", "") or ""
    return {"integer": "N", "float": "X", "int": "N"}.get(kind.lower(), "TEXT")


def polish(cmd: Any) -> Any:
    """Set the metavar of every parameter of ``cmd`` and its subcommands (the help option included); returns ``cmd``."""
    _patch_typer()
    stack = [(cmd, None)]
    while stack:
        c, parent = stack.pop()
        ctx_cls = getattr(c, "context_class", None)
        try:
            # the context carries the help option names (-h, --help) down the tree, as at run time
            ctx = ctx_cls(c, parent=parent, **(getattr(c, "context_settings", None) or {})) if ctx_cls else None
            helper = c.get_help_option(ctx) if ctx is not None else None
        except Exception:  # a typer/click without this API: the help option keeps its own rendering
            ctx, helper = None, None
        for p in [*c.params, *([helper] if helper is not None else [])]:
            mv = _metavar(p)
            if mv is not None:
                p.metavar = mv
        stack.extend((sub, ctx) for sub in getattr(c, "commands", {}).values())
    return cmd
