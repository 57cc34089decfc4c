"""completions/ holds scripts generated from the CLI; they must match it and work."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import typer
from clirun import lfp

from lfpcli.cli.app import app, command
from lfpcli.cli.completion import SHELLS, script
from lfpcli.data.builtin import BUILTINS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_shipped_script_matches_the_cli(shell, capsys):
    shipped = (ROOT / "completions" / SHELLS[shell]).read_text()
    assert shipped == script(shell, command()), (
        f"completions/{SHELLS[shell]} is stale: run `python -m lfpcli.cli.write_completions completions` and commit"
    )
    assert lfp("completion", shell, capsys=capsys) == (0, shipped, "")


def test_every_command_and_option_is_offered():
    root = typer.main.get_command(app)
    ctx = typer.Context(root)
    text = {s: script(s, command()) for s in SHELLS}
    for name in root.list_commands(ctx):
        cmd = root.get_command(ctx, name)
        for s in SHELLS:
            assert name in text[s]
        for p in cmd.params:
            for flag in p.opts:
                if flag.startswith("--"):
                    assert flag in text["bash"] and flag in text["zsh"] and f"-l {flag[2:]}" in text["fish"], (
                        name,
                        flag,
                    )


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
@pytest.mark.parametrize(
    "words, expected",
    [
        ("lfp per", {"perturb"}),
        ("lfp perturb --method pgd-l", {"pgd-l0", "pgd-l2", "pgd-linf"}),
        ("lfp perturb --targets random-", {"random-other"}),
        ("lfp train --ar", {"--arch", "--arch-arg"}),
        ("lfp saliency --method grad", {"gradcam", "gradient"}),
        ("lfp synth sweep --dist g", {"gauss"}),
    ],
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


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish not installed (.ci/run installs it where it can)")
@pytest.mark.parametrize(
    "line, want, files",
    [
        ("lfp per", {"perturb"}, False),
        ("lfp perturb --method pgd-l", {"pgd-l0", "pgd-l2", "pgd-linf"}, False),
        ("lfp train --ar", {"--arch", "--arch-arg"}, False),
        ("lfp info ", {"model.pt"}, True),
        ("lfp perturb --data ", {"spurious-digits", "digits", "model.pt"}, True),
        ("lfp completion ", {"bash", "zsh", "fish"}, False),
    ],
)
def test_fish_completion_answers(line, want, files, tmp_path):
    """The fish script, sourced in fish, answers `complete -C` with the right candidates."""
    (tmp_path / "model.pt").write_text("x")
    r = subprocess.run(
        ["fish", "-c", f"source {ROOT / 'completions' / 'lfp.fish'}; complete -C '{line}'"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    got = {ln.split("\t")[0] for ln in r.stdout.splitlines()}
    assert want <= got, got


ZSH_STUBS = r"""
_arguments() { print -r -- "ARGS $*" }
_describe() { print -r -- "DESCRIBE $1 ${(P)2}" }
_files() { print -r -- "FILES" }
_alternative() { print -r -- "ALT $*" }
"""


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh not installed (.ci/run installs it where it can)")
@pytest.mark.parametrize(
    "words, want",
    [
        (["lfp", ""], ["DESCRIBE command", "perturb:Perturb every sample", "verify:"]),
        (["lfp", "perturb", "--me"], ["ARGS -s", " --method[", "pgd-l2 pgd-linf pgd-l0 cfe-l2 pcfe-l0", " --data["]),
        (["lfp", "info", ""], ["ARGS -s", "*:file:_files"]),
        (["lfp", "data", ""], ["ARGS -s", f"builtins:built-in data:({' '.join(sorted(BUILTINS))})"]),
        (["lfp", "completion", ""], ["1:value:(bash zsh fish)"]),
    ],
)
def test_zsh_completion_runs_and_asks_for_the_right_things(words, want):
    """The zsh script runs in zsh: with the completion system's functions replaced by stubs that print what they
    are asked for, `_lfp` asks for the right commands, options, choices and files."""
    words_zsh = " ".join(f"'{w}'" for w in words)
    prog = f"{ZSH_STUBS}\nsource {ROOT / 'completions' / '_lfp'} 2>/dev/null; words=({words_zsh}); CURRENT={len(words)}; _lfp"
    r = subprocess.run(["zsh", "-f", "-c", prog], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for w in want:
        assert w in r.stdout, (w, r.stdout[:2000])
