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
