"""Every command README.md and docs/*.md show runs as written: each page's ``bash`` and ``python`` blocks, in order,
as one script, from a fresh folder that holds only what a clone has beside them (``examples/``, ``completions/``),
with the built-in data. A block a reader is not meant to run here (hours long, a GPU, a download, data on your
disk) is marked by the line ``<!-- not run: REASON -->`` just before it, and the reason must be given; blocks of
other languages (output, listings) are not commands. Pages whose commands take minutes as written are ``slow``."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Pages whose commands, as written, take minutes (the whole chain at full size, sweeps): run with pytest -m slow.
SLOW = {"README.md", "saliency.md", "synth.md"}
RUN_LANGUAGES = {"bash": "bash", "sh": "bash", "python": "python"}
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
NOT_RUN = re.compile(r"^\s*<!--\s*not run(?::\s*(?P<reason>.*?))?\s*-->\s*$")


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    language: str
    text: str
    not_run: str | None  # the reason given, "" when the marker has none, None when unmarked


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a markdown page, with the ``not run`` marker on the line before each, if any."""
    lines = page.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang = len(m.group(1)), m.group(2)
        j = i + 1
        while j < len(lines) and not re.match(r"^\s*```\s*$", lines[j]):
            j += 1
        body = "\n".join(ln[indent:] if ln[:indent].isspace() else ln.lstrip() for ln in lines[i + 1 : j])
        prev = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        marker = NOT_RUN.match(prev)
        out.append(Block(i + 1, lang, body, (marker.group("reason") or "") if marker else None))
        i = j + 1
    return out


def script(page: Path) -> str:
    """The page's runnable blocks as one bash script that stops at the first command that fails."""
    parts = ["set -euo pipefail"]
    for b in blocks(page):
        if b.not_run is not None or b.language not in RUN_LANGUAGES:
            continue
        parts.append(f"echo {shlex.quote(f'--- {page.name}:{b.line}')} >&2")
        if RUN_LANGUAGES[b.language] == "python":
            parts.append(f"{shlex.quote(sys.executable)} - <<'LFP_DOCS_PYTHON'\n{b.text}\nLFP_DOCS_PYTHON")
        else:
            parts.append(b.text)
    return "\n".join(parts) + "\n"


def test_every_block_that_is_not_run_says_why():
    for page in PAGES:
        for b in blocks(page):
            assert b.not_run is None or b.not_run.strip(), (
                f"{page.name}:{b.line}: <!-- not run: REASON --> needs its reason"
            )


def test_the_parser_reads_the_convention(tmp_path):
    page = tmp_path / "p.md"
    page.write_text(
        "text\n```bash\necho one\n```\n<!-- not run: hours long -->\n\n```bash\necho two\n```\n"
        "- item\n\n  ```python\n  print(3)\n  ```\n<!-- not run -->\n```bash\necho four\n```\n```\noutput\n```\n"
    )
    got = [(b.language, b.text, b.not_run) for b in blocks(page)]
    assert got == [
        ("bash", "echo one", None),
        ("bash", "echo two", "hours long"),
        ("python", "print(3)", None),
        ("bash", "echo four", ""),
        ("", "output", None),
    ]
    text = script(page)
    assert "echo one" in text and "print(3)" in text and "echo two" not in text and "echo four" not in text


def _run_page(page: Path, tmp_path: Path) -> None:
    folder = tmp_path / "fresh"
    folder.mkdir()
    for shipped in ("examples", "completions"):  # what a clone has beside the outputs, for `bash examples/...`
        (folder / shipped).symlink_to(ROOT / shipped)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "LFP_PROGRESS": "0",
    }
    r = subprocess.run(["bash", "-c", script(page)], cwd=folder, env=env, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, f"{page.name}: a command failed as written\n{r.stderr[-3000:]}"


@pytest.mark.parametrize("page", [p for p in PAGES if p.name not in SLOW], ids=lambda p: p.name)
def test_the_commands_of_a_page_run_as_written(page, tmp_path):
    _run_page(page, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if p.name in SLOW], ids=lambda p: p.name)
def test_the_commands_of_a_long_page_run_as_written(page, tmp_path):
    _run_page(page, tmp_path)
