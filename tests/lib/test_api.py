"""The Python API: each stage is a function at the package top, whatever submodules are loaded."""

from __future__ import annotations

import importlib
import pkgutil

import lfpcli


def test_stage_functions_survive_importing_every_submodule():
    for mod in pkgutil.walk_packages(lfpcli.__path__, "lfpcli."):
        if not mod.name.endswith("__main__"):
            importlib.import_module(mod.name)
    for name in ("train", "perturb", "retrain", "evaluate", "info"):
        assert callable(getattr(lfpcli, name)), name
        assert getattr(lfpcli, name).__module__.startswith("lfpcli.commands"), name


def test_library_never_imports_the_cli():
    import sys

    for mod in pkgutil.walk_packages(lfpcli.__path__, "lfpcli."):
        if mod.name.startswith(("lfpcli.cli", "lfpcli.__main__")):
            continue
        source = importlib.util.find_spec(mod.name).origin
        text = open(source).read()
        assert "import typer" not in text and "lfpcli.cli" not in text, mod.name
    assert "lfpcli" in sys.modules
