"""Running ``lfp`` in-process from a test, as a shell would see it."""

from __future__ import annotations

import warnings

import pytest

from lfpcli.cli.app import main


def lfp(*args, capsys) -> tuple[int, str, str]:
    """Run ``lfp ARGS`` in-process; return ``(exit code, stdout, stderr)``. lfp's own warning printer is put back
    afterwards, so one test's warnings never reach another's stderr."""
    capsys.readouterr()
    saved = warnings.showwarning
    try:
        with pytest.raises(SystemExit) as e:
            main([str(a) for a in args])
    finally:
        warnings.showwarning = saved
    out, err = capsys.readouterr()
    return e.value.code, out, err


def interruptible() -> None:
    """``preexec_fn`` for a child that a test stops with SIGINT: the default disposition, so that Python turns the
    signal into KeyboardInterrupt even when the test run itself was started with SIGINT ignored (a background job
    of a non-interactive shell is)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
