"""The ``lfp`` command: the app assembled from the command modules (:mod:`lfpcli.cli.chain`, :mod:`lfpcli.cli.describe`,
:mod:`lfpcli.cli.saliency`, :mod:`lfpcli.cli.synth`, :mod:`lfpcli.cli.report`, :mod:`lfpcli.cli.completion`), and
:func:`main`, which turns every outcome into an exit code and at most one line on stderr."""

from __future__ import annotations

import os
import sys
import warnings
from typing import Annotated, Any

import typer

from lfpcli.cli import chain, completion, describe, report, saliency, synth
from lfpcli.cli.help import polish
from lfpcli.distributed import quiet_other_ranks
from lfpcli.errors import LfpError
from lfpcli.version import __version__

app = typer.Typer(
    name="lfp",
    help="Learning from perturbations: train, perturb toward wrong labels, retrain on the perturbed data alone, "
    "and evaluate on clean data and its worst group.",
    epilog="The chain, one command after another, each reading the file the last one wrote:  "
    "(1) lfp train --out model.pt  (2) lfp perturb --in model.pt --out pgd.h5  (3) lfp retrain --in pgd.h5 --out model_pgd.pt  "
    "(4) lfp eval --in model.pt --in model_pgd.pt.  Every file says how it was made: lfp info FILE.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lfp {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", help="Show the version and exit.", callback=_version, is_eager=True)
    ] = False,
) -> None:
    """Learning from perturbations."""


# the commands in the order --help lists them within their panels
chain.register(app)
describe.register(app)
saliency.register(app)
synth.register(app)
report.register(app)
completion.register(app)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(f"warning: {_one_line(message)}\n")


#: What Ctrl-C leaves behind: outputs are written under a temporary name and renamed only when complete.
INTERRUPTED = "interrupted; nothing was written (an output appears only when its command completes)"


def command() -> Any:
    """The click command tree of ``lfp``, with the help conventions of :mod:`lfpcli.cli.help` applied."""
    return polish(typer.main.get_command(app))


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning every failure into one line on stderr and an exit code
    (2: bad input or usage, 1: a bug in lfp, 130: interrupted). ``LFP_DEBUG=1`` re-raises with a traceback."""
    warnings.showwarning = _show_warning
    debug = os.environ.get("LFP_DEBUG") == "1"
    quiet_other_ranks()  # under torchrun, rank 0 speaks for the job
    cmd = command()
    code = 0
    try:
        rv = cmd.main(args=argv, prog_name="lfp", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
        if code == 130:  # typer turns Ctrl-C into Exit(130), which reaches us as a return value
            sys.stderr.write(f"error: {INTERRUPTED}\n")
    except LfpError as e:
        if debug:
            raise
        sys.stderr.write(f"error: {_one_line(e)}\n")
        code = e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write(f"error: {INTERRUPTED}\n")
        code = 130
    except Exception as e:  # click's usage errors carry format_message/exit_code; anything else is our bug
        if hasattr(e, "format_message") and hasattr(e, "exit_code"):
            ctx = getattr(e, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            if type(e).__name__ == "Abort" and isinstance(
                e.__context__, KeyboardInterrupt
            ):  # click's way of saying Ctrl-C
                sys.stderr.write(f"error: {INTERRUPTED}\n")
                sys.stdout.flush()
                sys.exit(130)
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
            sys.stderr.write(
                f"error: internal error in lfp: {type(e).__name__}: {_one_line(e)[:300]} "
                f"(run with LFP_DEBUG=1 for the traceback, and please report it)\n"
            )
            code = 1
    sys.stdout.flush()
    sys.exit(code)
