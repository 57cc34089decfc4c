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
