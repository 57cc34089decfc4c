"""What a new user meets in the first hour: help that names values and defaults, progress that shows while
the work is done, messages that say what a file is, Ctrl-C that says what happened, output that ends on the
answer, completion that offers files."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from clirun import interruptible, lfp

from lfpcli.cli.app import command

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from lfpcli.commands import train

    path = tmp_path_factory.mktemp("fh") / "model.pt"
    train(path, data="digits", arch="small-cnn", epochs=1, seed=0, device="cpu")
    return path


@pytest.fixture(scope="module")
def pset(model):
    from lfpcli.commands import perturb

    path = model.parent / "pgd.h5"
    perturb(path, model=model, method="pgd-l2", limit=24, params={"eps": 1.0, "steps": 3}, device="cpu")
    return path


# ------------------------------------------------------------------------------------------------ help


def _all_commands():
    root = command()
    stack = [([], root)]
    while stack:
        path, cmd = stack.pop()
        yield path
        for name, sub in getattr(cmd, "commands", {}).items():
            stack.append((path + [name], sub))


@pytest.mark.parametrize("path", sorted(_all_commands()), ids=lambda p: " ".join(p) or "lfp")
def test_help_names_values_not_python_types(path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = lfp(*path, "--help", capsys=capsys)
    assert code == 0, err
    for bad in ("<bool>", "<str>", "<int>", "<float>", "<list", "<path>", "{file}", "{shell}", "{spec}"):
        assert bad not in out, (path, bad)
    flags = [line for line in out.splitlines() if re.search(r"--(force|json|help|quiet)\b", line)]
    for line in flags:
        assert not re.search(r"--(force|json|help|quiet)\s+(-\w\s+)?[A-Z<]{2,}", line), line


def _command_at(path):
    cmd = command()
    for name in path:
        cmd = cmd.commands[name]
    return cmd


@pytest.mark.parametrize("path", sorted(_all_commands()), ids=lambda p: " ".join(p) or "lfp")
def test_help_shows_bracketed_text_as_written(path, capsys, monkeypatch):
    """Help texts are plain text: '[report, ...]' or '[:key=value,...]' must not be read as rich markup and vanish."""
    monkeypatch.setenv("COLUMNS", "250")
    code, out, err = lfp(*path, "--help", capsys=capsys)
    assert code == 0, err
    shown = " ".join(re.sub("[│╭╮╰╯─]", " ", out).split())
    cmd = _command_at(path)
    texts = [cmd.help or "", cmd.epilog or ""] + [p.help or "" for p in cmd.params]
    texts += [(sub.short_help or sub.help or "").split("\n\n")[0] for sub in getattr(cmd, "commands", {}).values()]
    for text in texts:
        for bracketed in re.findall(r"\[[^\[\]]*\]", text):
            assert " ".join(bracketed.split()) in shown, (path, bracketed)


def test_batch_size_help_says_what_each_command_chooses(capsys, monkeypatch):
    """perturb and saliency choose their CUDA batch differently; each --batch-size help says which (checked here on a
    pretend GPU whose memory holds a forward and backward of at most 1000 samples)."""
    import importlib

    from lfpcli.precision import auto_batch_size

    perturb_mod = importlib.import_module("lfpcli.commands.perturb")  # (lfpcli.commands.perturb is also a function)
    saliency_mod = importlib.import_module("lfpcli.commands.saliency")

    def probe(*args, **kwargs):
        def step(b):
            if b > 1000:
                raise torch.OutOfMemoryError("pretend")

        return step

    monkeypatch.setattr(perturb_mod, "input_gradient_step", probe)
    monkeypatch.setattr(saliency_mod, "input_gradient_step", probe)
    cuda = torch.device("cuda")
    largest = auto_batch_size(probe(), device=cuda, limit=1 << 20, headroom=1.0)
    assert perturb_mod.solver_batch_size(None, (1, 8, 8), cuda, 10**6) == largest // 4
    assert saliency_mod.saliency_batch_size([None], (1, 8, 8), cuda, 10**6) == int(0.8 * largest)
    assert perturb_mod.CPU_BATCH == saliency_mod.CPU_BATCH == 256
    monkeypatch.setenv("COLUMNS", "250")
    for cmd, rule in (
        ("perturb", "on CUDA a quarter of the largest batch"),
        ("saliency", "on CUDA 80% of the largest batch"),
    ):
        _, out, _ = lfp(cmd, "--help", capsys=capsys)
        flat = " ".join(re.sub("[│╭╮╰╯─]", " ", out).split())
        assert "256 on a CPU" in flat and rule in flat, cmd


#: A file of this repository named in text: a relative path up (../), a path under one of the repository's folders,
#: or a reference document (shared/..., reference/...), which a clone does not have.
REPO_FILE = re.compile(
    r"(?<![\w/.~-])(?:(?:\.\./)+[\w./-]+|(?:docs|examples|benchmarks|completions|tests|lfpcli|shared|reference)/"
    r"[\w./*-]*)"
)


def _unknown_files(text: str, base: Path) -> list[str]:
    """The files ``text`` points to that the repository does not have (links relative to ``base``)."""
    bad = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        path = target.split("#")[0]
        if path and not re.match(r"[a-z]+:", path) and not (base / path).exists():
            bad.append(target)
    for ref in REPO_FILE.findall(text):
        ref = ref.rstrip(".,;:")
        if ref.startswith("../") or not list(ROOT.glob(ref.rstrip("/") or ".")):
            bad.append(ref)
    return bad


@pytest.mark.parametrize("doc", sorted((ROOT / "docs").glob("*.md")), ids=lambda p: p.name)
def test_docs_point_only_to_files_a_clone_has(doc):
    assert not _unknown_files(doc.read_text(), doc.parent)


def test_help_points_only_to_files_a_clone_has():
    texts = []
    for path in _all_commands():
        cmd = _command_at(path)
        texts += [cmd.help or "", cmd.epilog or "", *(p.help or "" for p in cmd.params)]
    assert not _unknown_files("\n".join(texts), ROOT)
    assert _unknown_files("see ../shared/reference/datasets.md and [x](nope.md)", ROOT) == [
        "nope.md",
        "../shared/reference/datasets.md",
    ]


def test_help_states_the_defaults_that_apply(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    _, perturb_help, _ = lfp("perturb", "--help", capsys=capsys)
    flat = " ".join(perturb_help.split())
    assert "spurious-digits: pgd-l2 2" in flat.replace("│ ", "")  # the data spec's eps
    assert "2.5*eps/steps" in flat
    _, train_help, _ = lfp("train", "--help", capsys=capsys)
    flat = " ".join(train_help.split())
    assert "spurious-digits 10" in flat and "spurious-digits adam" in flat
    assert "spurious-scenes 20" in flat and "spurious-scenes sgd" in flat
    assert "optimizer (default 0.001)" in flat  # every data spec trains at 0.001, so one default is named
    assert "spurious-scenes sgd" in flat and "other data adam" in flat


def test_lr_means_the_learning_rate_only(model, tmp_path, capsys):
    _, perturb_help, _ = lfp("perturb", "--help", capsys=capsys)
    assert "--lr" not in perturb_help
    out = tmp_path / "cfe.h5"
    code, stdout, err = lfp(
        "perturb",
        "--method",
        "cfe-l2",
        "--in",
        model,
        "--out",
        out,
        "--limit",
        "8",
        "--steps",
        "3",
        "--step-size",
        "0.05",
        "--json",
        "-q",
        capsys=capsys,
    )
    assert code == 0, err
    assert json.loads(stdout)["config"]["step_size"] == 0.05
    code, _, err = lfp(
        "perturb", "--method", "cfe-l2", "--in", model, "--out", tmp_path / "x.h5", "-p", "lr=0.1", capsys=capsys
    )
    assert code == 2 and "lr" in err


def test_the_root_help_describes_the_chain_as_steps_not_a_pipe(capsys):
    _, out, _ = lfp("--help", capsys=capsys)
    assert "| lfp" not in out and "(1) lfp train" in " ".join(out.split())


# ------------------------------------------------------------------------------------------------ messages


def test_a_perturbed_set_given_as_a_checkpoint_is_named_for_what_it_is(pset, capsys):
    code, _, err = lfp("eval", "--in", pset, capsys=capsys)
    assert code == 2
    assert "perturbed-set" in err and "lfp retrain --in" in err and "pickled" not in err


def test_a_text_file_or_noise_as_a_checkpoint_says_what_was_found(tmp_path, capsys):
    (tmp_path / "text.pt").write_text("not a model\n")
    (tmp_path / "noise.pt").write_bytes(bytes(range(7, 200)))
    code, _, err = lfp("perturb", "--in", tmp_path / "text.pt", "--out", tmp_path / "o.h5", capsys=capsys)
    assert code == 2 and "is a text file" in err
    code, _, err = lfp("eval", "--in", tmp_path / "noise.pt", capsys=capsys)
    assert code == 2 and "no format lfp knows" in err and "pickled" not in err


@pytest.mark.parametrize(
    "name, content, what",
    [
        ("notes.pt", b"not a model\n", "is a text file"),
        ("notes.txt", b"hello\n", "is a text file"),
        ("notes.h5", b"hello\n", "is a text file"),
        ("noise.bin", bytes(range(7, 200)), "no format lfp knows"),
    ],
)
@pytest.mark.parametrize("command", ["info", "verify"])
def test_info_on_a_file_that_is_no_artifact_says_what_it_is_and_is_not(tmp_path, capsys, command, name, content, what):
    """info and verify read any lfp artifact, so a stranger is 'not an lfp artifact', whatever its extension."""
    (tmp_path / name).write_bytes(content)
    code, _, err = lfp(command, tmp_path / name, capsys=capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert what in err and "not an lfp artifact" in err and "not a model checkpoint" not in err, err


def test_a_checkpoint_given_where_an_h5_is_wanted_is_named(model, tmp_path, capsys):
    code, _, err = lfp("retrain", "--in", model, "--out", tmp_path / "r.pt", capsys=capsys)
    assert code == 2 and "PyTorch checkpoint" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="the message is about a machine without a GPU")
def test_a_missing_device_is_named_with_the_devices_there_are(model, capsys):
    code, _, err = lfp("eval", "--in", model, "--device", "cuda:3", capsys=capsys)
    assert code == 2 and "cuda:3" in err and "devices here: cpu" in err


def test_a_missing_parent_is_a_warning_before_retrain_goes_on(model, tmp_path, capsys):
    from lfpcli.commands import perturb, train

    src = tmp_path / "src.pt"
    train(src, data="digits", arch="mlp", epochs=1, seed=0, device="cpu")
    pert = tmp_path / "p.h5"
    perturb(pert, model=src, method="pgd-l2", limit=16, params={"eps": 1.0, "steps": 2}, device="cpu")
    src.unlink()
    code, _, err = lfp("retrain", "--in", pert, "--out", tmp_path / "r.pt", "--epochs", "1", "-q", capsys=capsys)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "no longer there" in warnings[0] and "src.pt" in warnings[0]


def test_ctrl_c_stops_with_one_line_and_leaves_nothing(model, tmp_path):
    out = tmp_path / "int.h5"
    env = {**os.environ, "LFP_DEBUG": "0"}
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lfpcli",
            "perturb",
            "--in",
            str(model),
            "--out",
            str(out),
            "--method",
            "pcfe-l0",
            "--density",
            "none",
            "--steps",
            "100000",
            "--limit",
            "8",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=interruptible,
    )
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".int.h5.*.part")) and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.05)  # the temporary output exists once the solver is at work
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    lines = err.decode().splitlines()
    assert p.returncode == 130, lines
    assert len(lines) == 1 and lines[0].startswith("error: interrupted"), lines
    assert not out.exists() and not list(tmp_path.glob("*.part"))


# ------------------------------------------------------------------------------------------------ output


def test_figures_never_print_negative_zero():
    from lfpcli.commands.common import fmt

    assert fmt(-0.00001, 4) == "0.0000" and fmt(-0.0) == "0.000" and fmt(-0.5, 1) == "-0.5" and fmt(None) == "-"


def test_perturb_prints_only_the_parameters_that_apply(model, tmp_path, capsys):
    code, out, err = lfp(
        "perturb",
        "--method",
        "pgd-l2",
        "--in",
        model,
        "--out",
        tmp_path / "p.h5",
        "--limit",
        "8",
        "--steps",
        "2",
        "-q",
        capsys=capsys,
    )
    assert code == 0, err
    config = next(line for line in out.splitlines() if "config:" in line)
    assert "eps=" in config and "step=" not in config and "projection=" not in config and "norm=" not in config


def test_one_epoch_is_one_epoch(pset, tmp_path, capsys):
    code, out, err = lfp("retrain", "--in", pset, "--out", tmp_path / "r.pt", "--epochs", "1", "-q", capsys=capsys)
    assert code == 0, err
    assert "1 epoch " in out and "1 epochs" not in out


def test_eval_compares_models_side_by_side_and_names_the_worst_group(tmp_path, capsys):
    from lfpcli.commands import train

    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    for path, seed in ((a, 0), (b, 1)):
        train(path, data="spurious-digits:train_copies=1", arch="mlp", epochs=1, seed=seed, device="cpu")
    code, out, err = lfp("eval", "--in", a, "--in", b, "--split", "test", "--json", capsys=capsys)
    assert code == 0, err
    reports = json.loads(out)["models"]
    assert [r["model"] for r in reports] == [str(a), str(b)]
    for r in reports:
        test = r["splits"]["test"]
        groups = {g: v["accuracy"] for g, v in test["groups"].items()}
        assert groups[test["worst_group"]] == min(groups.values()) == test["worst_group_accuracy"]
    code, out, _ = lfp("eval", "--in", a, "--in", b, "--split", "test", capsys=capsys)
    assert code == 0 and reports[0]["splits"]["test"]["worst_group"] in out and str(b.name) in out
    code, _, err = lfp("eval", "--in", a, "--in", b, "--out", tmp_path / "r.json", capsys=capsys)
    assert code == 2 and "--out" in err and not (tmp_path / "r.json").exists()


def test_the_quickstart_ends_on_the_side_by_side_answer():
    lines = [s for s in (ROOT / "examples" / "quickstart.sh").read_text().splitlines() if s.startswith("lfp ")]
    assert lines[-1].startswith("lfp eval") and lines[-1].count("--in") == 2


# ------------------------------------------------------------------------------------------------ progress


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, stage, done, total, **status):
        self.calls.append((stage, done, total, status))


def test_pcfe_reports_progress_within_a_batch_and_while_fitting(model, tmp_path, monkeypatch):
    from lfpcli.commands import perturb

    monkeypatch.setenv("LFP_CACHE_DIR", str(tmp_path / "cache"))  # the evaluation estimator is fitted afresh
    rec = Recorder()
    perturb(
        tmp_path / "p.h5",
        model=model,
        method="pcfe-l0",
        limit=16,
        batch_size=16,
        params={"steps": 4, "search_steps": 2},
        density="kde",
        device="cpu",
        progress=rec,
    )
    stages = [c[0] for c in rec.calls]
    assert any("kde plausibility term" in s for s in stages)
    assert any("kde-pixel-v1" in s for s in stages)
    solver = [c for c in rec.calls if c[0].startswith("pcfe-l0")]
    assert solver[0][1] == 0 and solver[-1][1] == solver[-1][2] == 8  # 2 search steps x 4 iterations, one batch
    within = [c for c in solver if 0 < c[1] < c[2]]
    assert len(within) == 7 and all("search" in c[3] and "reached" in c[3] for c in within)
    assert [c[1] for c in solver] == sorted(c[1] for c in solver)


def test_generating_spurious_digits_reports_images_made(tmp_path, monkeypatch):
    from lfpcli.artifacts.dataspec import resolve

    monkeypatch.setenv("LFP_CACHE_DIR", str(tmp_path))
    rec = Recorder()
    ds = resolve("spurious-digits:train_copies=1", progress=rec)
    made = [c for c in rec.calls if c[0].startswith("generating spurious-digits")]
    total = sum(len(s) for s in ds.splits.values())
    assert made[0][1:3] == (0, total) and made[-1][1:3] == (total, total) and len(made) == 4
    rec.calls.clear()
    resolve("spurious-digits:train_copies=1", progress=rec)
    assert rec.calls == []  # read from the cache: nothing to generate


def test_training_reports_one_bar_over_every_epoch(tmp_path):
    from lfpcli.commands import train

    rec = Recorder()
    train(tmp_path / "m.pt", data="digits", arch="mlp", epochs=2, device="cpu", progress=rec)
    training = [c for c in rec.calls if c[0].startswith("training")]
    assert len({c[0] for c in training}) == 1
    assert training[0][1] == 0 and training[-1][1] == training[-1][2]
    assert any(c[3].get("epoch") == "2/2" for c in training)


def _bar_output(script: str, cols: int) -> str:
    """Run ``script`` under a pseudo-terminal ``cols`` columns wide; return what it drew."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execvp(sys.executable, [sys.executable, "-c", script])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
    buf = b""
    while True:
        r, _, _ = select.select([fd], [], [], 30)
        if not r:
            break
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        buf += data
    os.waitpid(pid, 0)
    return buf.decode(errors="replace")


BAR_SCRIPT = """
import time, torch, os
os.environ.pop("COLUMNS", None)
from lfpcli.cli.render import TqdmProgress
p = TqdmProgress()
p("working hard", 5, 10, unit="iter", reached=torch.tensor(3))
time.sleep(0.3)
p("working hard", 10, 10, unit="iter", reached=(torch.tensor(7), 9))
p.close()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
@pytest.mark.parametrize("cols", [0, 30, 120])
def test_the_bar_shows_in_any_terminal_width_without_a_bogus_first_rate(cols):
    out = _bar_output(BAR_SCRIPT, cols)
    assert "working hard" in out and "10/10" in out, out
    assert "reached=7/9" in out
    first = out.split("\r")[1] if "\r" in out else out
    assert "it/s" not in first or "?it/s" in first or re.search(r"\b0\.00it/s", first), first  # no rate from a burst


TRAINING_BAR = """
import time, torch, os
os.environ.pop("COLUMNS", None)
from lfpcli.cli.render import TqdmProgress
p = TqdmProgress(min_interval=0)
stage = "training 15 epochs"
for done, epoch in ((1234, 7), (2002, 11), (2750, 15)):
    p(stage, done, 2750, unit="batch", epoch=f"{epoch}/15", loss=torch.tensor(0.123456), val_acc=0.98765, val_wga=0.87654)
    time.sleep(0.2)
p.close()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
@pytest.mark.parametrize("cols", [80, 100, 120])
def test_the_training_bar_keeps_its_bar_and_every_figure_at_80_to_120_columns(cols):
    """At a width where the figures do not fit beside the bar they go to a line of their own: the bar keeps at least
    10 columns and the last figure (val_wga) is never cut."""
    drawn = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", _bar_output(TRAINING_BAR, cols))
    lines = [ln.rstrip() for ln in re.split(r"[\r\n]+", drawn) if ln.strip()]
    assert all(len(ln) <= cols for ln in lines), [ln for ln in lines if len(ln) > cols]
    bars = [re.search(r"\|(.*?)\|", ln) for ln in lines if "training 15 epochs" in ln]
    assert bars and all(b and len(b.group(1)) >= 10 for b in bars), lines
    assert any("epoch=11/15, loss=0.1235, val_acc=0.9877, val_wga=0.8765" in ln for ln in lines), lines


def test_the_drawer_reads_device_tensors_only_when_it_redraws(monkeypatch):
    from lfpcli.cli import render

    monkeypatch.setenv("LFP_PROGRESS", "1")
    p = render.TqdmProgress(min_interval=3600)
    reads = []

    class Lazy:
        def detach(self):
            reads.append(1)
            return torch.tensor(1.0)

    for k in range(50):
        p("s", k, 100, value=Lazy())
    p("s", 100, 100, value=Lazy())
    p.close()
    assert len(reads) == 2  # the first draw and the last, not one per call


# ------------------------------------------------------------------------------------------------ width


LONG = "runs/waterbirds-seed-0/model_pgd-l2_random-other.pt"


def _eval_report(name: str) -> dict:
    groups = {
        g: {"accuracy": 0.75, "n": 1200}
        for g in ("landbird/land", "landbird/water", "waterbird/land", "waterbird/water")
    }
    split = {
        "n": 4795,
        "accuracy": 0.873,
        "worst_group_accuracy": 0.412,
        "worst_group": "waterbird/land",
        "mean_group_accuracy": 0.7,
        "train_weighted_accuracy": 0.85,
        "groups": groups,
    }
    return {
        "model": name,
        "trained_on": "waterbirds:root=/data/waterbird_complete95_forest2water2",
        "out": LONG + ".json",
        "data": {"type": "builtin", "name": "spurious-digits", "params": {}},
        "splits": {"train": split, "val": split, "test": split},
    }


def _printed(capsys) -> list[str]:
    from lfpcli.cli import render
    from lfpcli.cli.report import show_curves

    capsys.readouterr()
    render.show_eval(_eval_report(LONG))
    render.show_eval_many({"models": [_eval_report(LONG), _eval_report("model.pt")]})
    show_curves(
        {
            "out": "curves.png",
            "panels": [
                {
                    "title": "pgd-l2 on spurious-digits:correlation=0.95 (random-other targets, kde density)",
                    "checkpoints": [LONG] * 3,
                    "epochs": 20,
                    "last_epoch_mean": {"train_accuracy": 0.99, "val_accuracy": 0.95, "val_worst_group_accuracy": 0.9},
                }
            ],
        }
    )
    return capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("cols", [80, 120])
def test_tables_and_lines_fit_a_terminal_of_80_to_120_columns_with_words_whole(cols, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(cols))
    lines = _printed(capsys)
    assert all(len(ln) <= cols for ln in lines), [ln for ln in lines if len(ln) > cols]
    text = "\n".join(lines)
    assert "…" not in text  # nothing cut short
    for word in ("worst-group", "train-weighted", "accuracy", "waterbird/land"):
        assert re.search(rf"(^|\s){re.escape(word)}(\s|$)", text, re.MULTILINE), word  # whole, not folded or cut
    assert re.search(r"val\s+worst\s+group\s+accuracy\s+0\.900", text)  # a long line wraps between words


def test_piped_output_is_never_cut_or_wrapped(capsys, monkeypatch):
    """In a pipe (no terminal, no COLUMNS) lines and tables keep their natural width: names are never cut or wrapped."""
    monkeypatch.delenv("COLUMNS", raising=False)
    lines = _printed(capsys)
    assert "…" not in "\n".join(lines)
    assert any(f"report written to {LONG}.json" in ln for ln in lines)
    assert any(ln.lstrip().startswith(LONG) and "waterbird/land" in ln for ln in lines)  # a table row, whole
    assert any("val worst group accuracy 0.900" in ln for ln in lines)


@pytest.mark.parametrize("cols", [80, None])
def test_info_and_data_fit_the_width_or_keep_theirs_in_a_pipe(model, pset, cols, capsys, monkeypatch):
    if cols:
        monkeypatch.setenv("COLUMNS", str(cols))
    else:
        monkeypatch.delenv("COLUMNS", raising=False)
    for argv in (["info", pset], ["verify", pset], ["data", "spurious-digits"]):
        code, out, err = lfp(*argv, capsys=capsys)
        assert code == 0, err
        lines = out.splitlines()
        if cols:
            assert all(len(ln) <= cols for ln in lines), (argv, [ln for ln in lines if len(ln) > cols])
        elif argv[0] != "data":  # the first line names the file and its sha256 together
            assert str(pset) in lines[0] and re.search(r"sha256 [0-9a-f]{16}", lines[0]), lines[0]
        assert not re.search(r"[^0-9a-f]…", out), argv


# ------------------------------------------------------------------------------------------------ completion


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
@pytest.mark.parametrize(
    "words, want, forbid",
    [
        ("lfp info ", {"model.pt", "pgd.h5"}, {"--json"}),
        ("lfp info --", {"--json", "--help"}, {"model.pt"}),
        ("lfp data ", {"digits", "spurious-digits", "pgd.h5"}, set()),
        ("lfp perturb --data ", {"digits", "spurious-digits", "pgd.h5"}, set()),
        ("lfp completion ", {"bash", "zsh", "fish"}, set()),
    ],
)
def test_bash_completion_offers_files_where_files_go(words, want, forbid, tmp_path):
    for name in ("model.pt", "pgd.h5"):
        (tmp_path / name).write_text("x")
    prog = (
        f'cd {tmp_path}; source {ROOT / "completions" / "lfp.bash"}; COMP_WORDS=({words} ""); '
        "COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _lfp; printf '%s\\n' \"${COMPREPLY[@]}\""
    )
    if not words.endswith(" "):
        prog = prog.replace(' ""', "")
    r = subprocess.run(["bash", "-c", prog], capture_output=True, text=True)
    got = set(r.stdout.split())
    assert want <= got and not (forbid & got), got
