"""completions/ holds scripts generated from the CLI; they must match it and work."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import typer

from lfpcli.cli.app import app
from lfpcli.cli.completion import SHELLS, script

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_shipped_script_matches_the_cli(shell):
    shipped = (ROOT / "completions" / SHELLS[shell]).read_text()
    assert shipped == script(shell), (
        f"completions/{SHELLS[shell]} is stale: run `python -m lfpcli.cli.completion completions` and commit"
    )


def test_every_command_and_option_is_offered():
    root = typer.main.get_command(app)
    ctx = typer.Context(root)
    text = {s: script(s) for s in SHELLS}
    for name in root.list_commands(ctx):
        cmd = root.get_command(ctx, name)
        for s in SHELLS:
            assert name in text[s]
        for p in cmd.params:
            for flag in p.opts:
                if flag.startswith("--"):
                    assert flag in text["bash"] and flag in text["zsh"] and f"-l {flag[2:]}" in text["fish"], (name, flag)


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
@pytest.mark.parametrize(
    "words, expected",
    [("lfp per", {"perturb"}), ("lfp perturb --method pgd-l", {"pgd-l0", "pgd-l2", "pgd-linf"}),
     ("lfp perturb --targets random-", {"random-other"}), ("lfp train --ar", {"--arch", "--arch-arg"})],
)
def test_bash_completion_answers(words, expected):
    line = words
    prog = (
        f"source {ROOT / 'completions' / 'lfp.bash'}; COMP_WORDS=({line}{' ' if line.endswith(' ') else ''}"
        + ('""' if line.endswith(" ") else "")
        + "); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _lfp; printf '%s\\n' \"${COMPREPLY[@]}\""
    )
    r = subprocess.run(["bash", "-c", prog], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert set(r.stdout.split()) == expected
