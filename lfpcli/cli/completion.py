"""Static completion scripts for bash, zsh and fish, generated from the click command tree, and ``lfp completion``.

``lfp completion SHELL`` prints them; ``completions/`` holds the same files, and a test fails when they no
longer match the CLI (regenerate with ``python -m lfpcli.cli.write_completions completions``).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from lfpcli.attribution.methods import BASELINES, METHODS
from lfpcli.cli.options import INSPECT_PANEL
from lfpcli.commands.density import density_kinds
from lfpcli.data import list_datasets
from lfpcli.errors import InputError
from lfpcli.models import list_models
from lfpcli.solvers import TARGET_RULES, list_solvers
from lfpcli.synth.data import DISTS
from lfpcli.synth.protocol import VARIANTS
from lfpcli.synth.sweep import PRESETS
from lfpcli.training.config import OPTIMIZERS, RECIPES, SCHEDULES, SELECTIONS

SHELLS = {"bash": "lfp.bash", "zsh": "_lfp", "fish": "lfp.fish"}


def _choices() -> dict[str, list[str]]:
    """Values offered for options whose choices come from a registry."""
    return {
        "--method": list_solvers(),
        "-m": list_solvers(),
        "--arch": list_models(),
        "--targets": list(TARGET_RULES),
        "--data": list_datasets(),
        "--optimizer": list(OPTIMIZERS),
        "--recipe": list(RECIPES),
        "--schedule": list(SCHEDULES),
        "--select": list(SELECTIONS),
        "--device": ["auto", "cpu", "cuda"],
        "--split": ["train", "val", "test"],
        "--init": ["auto", "scratch", "pretrained"],
        "--loss": ["ce", "logistic", "exponential", "margin"],
        "--output": ["logits", "scalar"],
        "--step": ["sign", "max-normalized", "raw"],
        "--prox": ["l0", "l1", "l1/2", "l0-ball", "none"],
        "--kind": density_kinds(),
        "--fit-on": ["train", "val", "group-balanced"],
        "--balance": ["none", "groups"],
        "--projection": ["clip", "rescale"],
    }


def _command_choices() -> dict[str, dict[str, list[str]]]:
    """Choices that differ from the shared table above for one command (its path, e.g. "synth sweep")."""
    synth = {"--dist": list(DISTS), "--variant": list(VARIANTS), "--preset": list(PRESETS)}
    return {
        "saliency": {
            "--method": list(METHODS),
            "-m": list(METHODS),
            "--target": ["label", "pred", "perturbation"],
            "--baseline": list(BASELINES),
            "--split": ["train", "val", "test"],
        },
        "synth run": synth,
        "synth sweep": synth,
        "report": {
            "--format": ["md", "csv", "tex", "json"],
            "--layout": ["paper", "long"],
            "--scale": ["percent", "fraction"],
            "--metric": ["accuracy", "worst-group", "mean-group", "train-weighted"],
            "--by": ["method,data,targets,density", "method,data", "method,data,targets"],
            "--split": ["train", "val", "test"],
        },
    }


def _tree(root: Any) -> dict[str, dict]:
    """Every command of the click command ``root`` by its path ("train", "synth run"): ``help`` (first sentence),
    ``options`` {flag: (takes a value, help)}, ``args``: "choices" with ``choices``, "files", or absent; a group has
    ``subcommands``."""
    out: dict[str, dict] = {}

    def first_sentence(text: str | None) -> str:
        first = re.split(r"\.(\s|$)", " ".join((text or "").split("\n\n")[0].split()))[0]
        return first.replace("'", "").replace('"', "")

    def visit(cmd, path: str, ctx) -> None:
        entry: dict = {"help": first_sentence(cmd.short_help or cmd.help), "options": {}}
        for p in cmd.params:
            kind = getattr(p, "param_type_name", "")
            if kind == "argument":
                if p.name in ("shell",):
                    entry.update(args="choices", choices=list(SHELLS))
                elif p.name == "spec":
                    entry["args"] = "data"
                else:
                    entry["args"] = "files"
            elif kind == "option" and not getattr(p, "hidden", False):
                for flag in list(p.opts) + list(p.secondary_opts):
                    entry["options"][flag] = (not p.is_flag, first_sentence(p.help).replace("\n", " "))
        entry["options"]["--help"] = (False, "Show this message and exit")
        subs = getattr(cmd, "commands", None)
        if subs:
            sub_ctx = typer.Context(cmd, parent=ctx)
            entry["subcommands"] = sorted(cmd.list_commands(sub_ctx))
        out[path] = entry
        for name in entry.get("subcommands", []):
            visit(cmd.get_command(sub_ctx, name), f"{path} {name}", sub_ctx)

    ctx = typer.Context(root)
    for name in sorted(root.list_commands(ctx)):
        visit(root.get_command(ctx, name), name, ctx)
    return out


def _bash(tree, choices) -> str:
    top = [k for k in tree if " " not in k]
    lines = [
        "# bash completion for lfp (generated by `lfp completion bash`; do not edit)",
        "_lfp() {",
        "    local cur prev cmd key i",
        '    cur="${COMP_WORDS[COMP_CWORD]}"',
        '    prev="${COMP_WORDS[COMP_CWORD-1]}"',
        '    cmd=""; key=""',
        "    for ((i=1; i<COMP_CWORD; i++)); do",
        '        case "${COMP_WORDS[i]}" in -*) ;; *) cmd="${COMP_WORDS[i]}"; key="$cmd"; break ;; esac',
        "    done",
        '    if [[ -z "$cmd" ]]; then',
        f'        COMPREPLY=($(compgen -W "{" ".join(top)} --help --version" -- "$cur")); return',
        "    fi",
    ]
    groups = [k for k, c in tree.items() if c.get("subcommands")]
    if groups:
        lines += [
            f'    case "$cmd" in {"|".join(groups)})',
            '        if (( i + 1 < COMP_CWORD )) && [[ "${COMP_WORDS[i+1]}" != -* ]]; then key="$cmd ${COMP_WORDS[i+1]}"; fi ;;',
            "    esac",
        ]
    per = _command_choices()
    lines.append('    case "$key $prev" in')
    for name, table in per.items():
        for flag, vals in sorted(table.items()):
            lines.append(f'        "{name} {flag}") COMPREPLY=($(compgen -W "{" ".join(vals)}" -- "$cur")); return ;;')
    lines += ["    esac", '    case "$prev" in']
    for flag, vals in sorted(choices.items()):
        files = ' $(compgen -f -- "$cur")' if flag == "--data" else ""
        lines.append(f'        {flag}) COMPREPLY=($(compgen -W "{" ".join(vals)}" -- "$cur"){files}); return ;;')
    valued = sorted({f for c in tree.values() for f, (v, _) in c["options"].items() if v} - set(choices))
    if valued:
        lines.append(f'        {"|".join(valued)}) COMPREPLY=($(compgen -f -- "$cur")); return ;;')
    lines += ["    esac", '    if [[ "$cur" == -* ]]; then', '        case "$key" in']
    for name, c in tree.items():
        lines.append(f'            "{name}") COMPREPLY=($(compgen -W "{" ".join(sorted(c["options"]))}" -- "$cur")) ;;')
    lines += ["        esac", "        return", "    fi", '    case "$key" in']
    for name, c in tree.items():
        if c.get("subcommands"):
            lines.append(f'        "{name}") COMPREPLY=($(compgen -W "{" ".join(c["subcommands"])}" -- "$cur")) ;;')
        elif c.get("args") == "choices":
            lines.append(f'        "{name}") COMPREPLY=($(compgen -W "{" ".join(c["choices"])}" -- "$cur")) ;;')
        elif c.get("args") == "files":
            lines.append(f'        "{name}") COMPREPLY=($(compgen -f -- "$cur")) ;;')
        elif c.get("args") == "data":
            lines.append(
                f'        "{name}") COMPREPLY=($(compgen -W "{" ".join(choices["--data"])}" -- "$cur") $(compgen -f -- "$cur")) ;;'
            )
        else:
            lines.append(f'        "{name}") COMPREPLY=($(compgen -W "{" ".join(sorted(c["options"]))}" -- "$cur")) ;;')
    lines += ["    esac", "}", "complete -o filenames -F _lfp lfp", ""]
    return "\n".join(lines)


def _zsh_specs(c: dict, choices: dict) -> list[str]:
    specs = []
    for flag, (takes, hlp) in sorted(c["options"].items()):
        h = hlp.replace("[", "(").replace("]", ")").replace(":", " ")
        if not takes:
            specs.append(f"'{flag}[{h}]'")
        elif flag == "--data":
            specs.append(
                f'\'{flag}[{h}]:data: _alternative "builtins:built-in data:({" ".join(choices[flag])})" "files:file:_files"\''
            )
        elif flag in choices:
            specs.append(f"'{flag}[{h}]:value:({' '.join(choices[flag])})'")
        else:
            specs.append(f"'{flag}[{h}]:file:_files'")
    if c.get("args") == "choices":
        specs.append(f"'1:value:({' '.join(c['choices'])})'")
    elif c.get("args") == "files":
        specs.append("'*:file:_files'")
    elif c.get("args") == "data":
        specs.append(
            f'\'1:data: _alternative "builtins:built-in data:({" ".join(choices["--data"])})" "files:file:_files"\''
        )
    return specs


def _zsh(tree, choices) -> str:
    lines = [
        "#compdef lfp",
        "# zsh completion for lfp (generated by `lfp completion zsh`; do not edit)",
        "",
        "_lfp() {",
        "    local -a commands subs",
        "    commands=(",
    ]
    for name, c in tree.items():
        if " " not in name:
            lines.append(f"        '{name}:{c['help']}'")
    lines += [
        "    )",
        "    if (( CURRENT == 2 )); then",
        "        _describe 'command' commands",
        "        return",
        "    fi",
        '    local key="$words[2]"',
    ]
    groups = [k for k, c in tree.items() if c.get("subcommands")]
    for g in groups:
        subs = " ".join(f"'{s}:{tree[g + ' ' + s]['help']}'" for s in tree[g]["subcommands"])
        lines += [
            f'    if [[ "$key" == "{g}" ]]; then',
            "        if (( CURRENT == 3 )); then",
            f"            subs=({subs})",
            "            _describe 'subcommand' subs",
            "            return",
            "        fi",
            '        key="$words[2] $words[3]"',
            "        shift words; (( CURRENT-- ))",
            "    fi",
        ]
    lines.append('    case "$key" in')
    for name, c in tree.items():
        if c.get("subcommands"):
            continue
        specs = _zsh_specs(c, {**choices, **_command_choices().get(name, {})})
        lines.append(f'        "{name}")')
        lines.append("            _arguments -s \\")
        lines += [f"                {s} \\" for s in specs[:-1]] + [f"                {specs[-1]}", "            ;;"]
    lines += ["    esac", "}", "", '_lfp "$@"', ""]
    return "\n".join(lines)


def _fish(tree, choices) -> str:
    lines = ["# fish completion for lfp (generated by `lfp completion fish`; do not edit)", "complete -c lfp -f"]
    top = [k for k in tree if " " not in k]
    names = " ".join(top)
    for name in top:
        lines.append(
            f"complete -c lfp -n 'not __fish_seen_subcommand_from {names}' -a {name} -d '{tree[name]['help']}'"
        )
    for name, c in tree.items():
        words = name.split()
        if len(words) == 1 and c.get("subcommands"):
            subs = " ".join(c["subcommands"])
            for s in c["subcommands"]:
                lines.append(
                    f"complete -c lfp -n '__fish_seen_subcommand_from {name}; and not __fish_seen_subcommand_from "
                    f"{subs}' -a {s} -d '{tree[name + ' ' + s]['help']}'"
                )
            continue
        cond = " ".join(f"__fish_seen_subcommand_from {w};" for w in words).rstrip(";").replace("; ", "; and ")
        mine = {**choices, **_command_choices().get(name, {})}
        for flag, (takes, hlp) in sorted(c["options"].items()):
            part = f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}"
            extra = ""
            if takes:
                if flag == "--data":
                    extra = f" -r -F -a '{' '.join(mine[flag])}'"
                elif flag in mine:
                    extra = f" -x -a '{' '.join(mine[flag])}'"
                else:
                    extra = " -r -F"
            lines.append(f"complete -c lfp -n '{cond}' {part}{extra} -d '{hlp}'")
        if c.get("args") == "choices":
            lines.append(f"complete -c lfp -n '{cond}' -a '{' '.join(c['choices'])}'")
        elif c.get("args") == "files":
            lines.append(f"complete -c lfp -n '{cond}' -F")
        elif c.get("args") == "data":
            lines.append(f"complete -c lfp -n '{cond}' -F -a '{' '.join(choices['--data'])}'")
    lines.append("")
    return "\n".join(lines)


def script(shell: str, root: Any) -> str:
    """The completion script for ``shell`` of the click command tree ``root`` (``lfp``'s: :func:`lfpcli.cli.app.command`)."""
    if shell not in SHELLS:
        raise InputError(f"unknown shell '{shell}'; choose one of {', '.join(SHELLS)}")
    tree, choices = _tree(root), _choices()
    return {"bash": _bash, "zsh": _zsh, "fish": _fish}[shell](tree, choices)


def write_all(folder: str | Path, root: Any) -> None:
    """Every shell's script of ``root`` into ``folder``, under the names the shells look for."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for shell, fname in SHELLS.items():
        (folder / fname).write_text(script(shell, root))


def completion(ctx: typer.Context, shell: Annotated[str, typer.Argument(help="bash, zsh or fish.")]) -> None:
    """Print the shell completion script (the same as the files in completions/).

    Example: lfp completion bash > ~/.local/share/bash-completion/completions/lfp
    """
    sys.stdout.write(script(shell, ctx.find_root().command))


def register(app: typer.Typer) -> None:
    """Add ``completion`` to the ``lfp`` app."""
    app.command("completion", rich_help_panel=INSPECT_PANEL)(completion)
