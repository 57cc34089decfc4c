"""Running one library function as an ``lfp`` command: progress bars on stderr, the argv recorded in artifacts, rank
0 alone reporting under torchrun, and the result printed as tables or JSON. Every command module uses it."""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

from lfpcli import distributed
from lfpcli.cli import render


def run(
    fn: Callable[..., Any], show: Callable[[Any], None], as_json: bool, quiet: bool | None = None, **kwargs: Any
) -> None:
    # under torchrun: one rank of the job (perturb, train and retrain only); rank 0 alone reports
    with distributed.session(getattr(fn, "__name__", ""), kwargs.get("device")) as job:
        progress = (
            render.TqdmProgress(quiet=bool(quiet) or not job.main or as_json and not sys.stderr.isatty())
            if quiet is not None
            else None
        )
        if progress is not None:
            kwargs["progress"] = progress
        try:
            result = fn(argv=sys.argv if argv_is_ours() else None, **kwargs)
        finally:
            if progress is not None:
                progress.close()
    if job.main:
        render.emit_json(result) if as_json else show(result)


def argv_is_ours() -> bool:
    return bool(sys.argv) and os.path.basename(sys.argv[0]) in ("lfp", "__main__.py", "lfp.exe")
