"""The suite's own promise: what a test, or a process it starts, writes to a temporary folder lies under pytest's,
and a passing run leaves none of it behind."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_temporary_files_of_tests_and_their_processes_lie_under_pytests_folder(tmp_path_factory):
    base = tmp_path_factory.getbasetemp().resolve()
    assert Path(tempfile.gettempdir()).resolve().is_relative_to(base)
    child = subprocess.run(
        [sys.executable, "-c", "import tempfile; print(tempfile.gettempdir())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(child).resolve().is_relative_to(base), child  # torchrun's logs, torch.compile's caches, ...


def test_pytest_keeps_temporaries_of_failed_tests_only(pytestconfig):
    assert pytestconfig.getini("tmp_path_retention_policy") == "failed"
