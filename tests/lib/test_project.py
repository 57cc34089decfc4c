"""The project's own metadata, as packaging tools read it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; 3.10 runs the rest of the suite

ROOT = Path(__file__).resolve().parents[2]


def pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def test_license_is_an_spdx_expression_and_the_build_backend_reads_it():
    """PEP 639: ``license`` is an SPDX expression string (the ``{ text = ... }`` table is deprecated); setuptools
    reads that form from version 77 on."""
    p = pyproject()
    assert p["project"]["license"] == "MIT"
    setuptools = next(r for r in p["build-system"]["requires"] if r.startswith("setuptools"))
    low = re.fullmatch(r"setuptools>=(\d+)(\.\d+)*", setuptools)
    assert low and int(low.group(1)) >= 77, setuptools


def test_ci_runs_the_layer_contract_and_the_linter_it_installs():
    """``.ci/run`` checks the import contract and ruff (lint and format) before the tests, with tools the ``test``
    extra installs into its fresh environment, and runs the tests as the README says."""
    p = pyproject()
    extra = " ".join(p["project"]["optional-dependencies"]["test"])
    assert "import-linter" in extra and "ruff" in extra
    assert p["tool"]["importlinter"]["contracts"] and p["tool"]["ruff"]["line-length"] == 120
    steps = [
        ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln.strip().startswith('"$venv/bin/')
    ]
    assert steps[:2] == [
        '"$venv/bin/pip" install --quiet --upgrade pip',
        "\"$venv/bin/pip\" install --quiet -e '.[test]'",
    ]
    assert steps[2:6] == [
        '"$venv/bin/lint-imports"',
        '"$venv/bin/ruff" check .',
        '"$venv/bin/ruff" format --check .',
        '"$venv/bin/pytest"',
    ]
    assert ".venv/bin/pip install -e '.[test]' && .venv/bin/pytest" in (ROOT / "README.md").read_text()
