"""Regenerate the shipped completion scripts from the CLI: ``python -m lfpcli.cli.write_completions completions``
(a test fails when ``completions/`` no longer matches ``lfp completion SHELL``)."""

from __future__ import annotations

import sys

from lfpcli.cli.app import command
from lfpcli.cli.completion import write_all

if __name__ == "__main__":
    write_all(sys.argv[1] if len(sys.argv) > 1 else "completions", command())
