"""A killed ``perturb`` or ``train`` loses nothing: whatever the moment of the kill, an earlier output is untouched,
nothing half-written appears under the final name, and ``--resume`` finishes with the tensors of an uninterrupted
run. Ctrl-C says what was kept. A ``--resume`` of another command is refused."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from clirun import interruptible

LFP = [sys.executable, "-m", "lfpcli"]


def run(*args, check=True) -> subprocess.CompletedProcess:
    r = subprocess.run([*LFP, *map(str, args)], capture_output=True, text=True, env={**os.environ, "LFP_PROGRESS": "0"})
    if check:
        assert r.returncode == 0, r.stderr
    return r


def h5_tensors(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[...]) if isinstance(o, h5py.Dataset) else None)
    return out


def ckpt_tensors(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def timed(*args) -> float:
    """Seconds an uninterrupted run takes here (start-up included)."""
    t = time.monotonic()
    run(*args)
    return time.monotonic() - t


def kill_at(argv, delay: float, after=None) -> bool:
    """Start ``lfp ARGV``, SIGKILL it after ``delay`` seconds (counted from the moment ``after()`` is true, if given:
    a kill that must land after some progress, however slow the machine); whether it was killed (rather than done
    by then)."""
    p = subprocess.Popen([*LFP, *map(str, argv)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if after is not None:
        while not after() and p.poll() is None:
            time.sleep(0.02)
    try:
        p.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
    return p.wait() == -signal.SIGKILL


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("resume") / "m.pt"
    run("train", "--data", "digits", "--arch", "small-cnn", "--epochs", "1", "--out", path, "-q")
    return path


PERTURB = ["perturb", "--method", "pgd-l0", "--limit", "400", "--batch-size", "20", "--steps", "40", "-q"]


def test_perturb_killed_at_random_moments_then_resumed_gives_the_same_tensors(model, tmp_path):
    ref = tmp_path / "ref.h5"
    seconds = timed(*PERTURB, "--in", model, "--out", ref)
    want = h5_tensors(ref)
    out = tmp_path / "out.h5"
    earlier = b"an earlier output that a killed run must leave alone"
    out.write_bytes(earlier)
    rng = random.Random(11)
    killed = 0
    side = tmp_path / "out.h5.resume"
    for attempt in range(3):
        # a random moment of a run (start-up included), so kills land in set-up, in a batch, between batches; the
        # later runs, which resume and so finish sooner, are killed shortly after they have kept one more batch
        kept = len(list(side.glob("batch-*.pt")))
        after = None if attempt == 0 else (lambda kept=kept: len(list(side.glob("batch-*.pt"))) > kept)
        delay = rng.uniform(0.3, 0.95) * seconds if attempt == 0 else rng.uniform(0.0, 0.03) * seconds
        killed += kill_at([*PERTURB, "--in", model, "--out", out, "--force", "--resume"], delay, after)
        # the earlier output, or (a run that finished before the kill) a whole and correct new one, never a partial one
        if out.read_bytes() != earlier:
            assert all(np.array_equal(h5_tensors(out)[k], v) for k, v in want.items())
            out.write_bytes(earlier)
        assert not [
            p for p in tmp_path.iterdir() if p.name.startswith("out.h5") and p.name not in ("out.h5", "out.h5.resume")
        ]
    assert killed >= 2
    run(*PERTURB, "--in", model, "--out", out, "--force", "--resume")
    got = h5_tensors(out)
    assert got.keys() == want.keys()
    for k in want:
        assert np.array_equal(got[k], want[k]), k
    assert not (tmp_path / "out.h5.resume").exists()


def test_a_resumed_or_forced_run_removes_the_partial_file_a_kill_left(model, tmp_path):
    """kill -9 leaves the output's temporary file (``.OUT.XXXXXXXX.part``, written batch by batch) beside the progress
    folder; the run that takes that progress up (--resume) or discards it (--force) removes it."""
    argv = [*PERTURB, "--limit", "120", "--in", model]
    for flag in ("--resume", "--force"):
        out, side = tmp_path / f"k{flag}.h5", tmp_path / f"k{flag}.h5.resume"
        assert kill_at([*argv, "--out", out], 0.0, after=lambda side=side: len(list(side.glob("batch-*.pt"))) >= 1)
        partial = f".{out.name}.*.part"
        assert list(tmp_path.glob(partial)), "what a killed run leaves (docs/resume.md says so)"
        run(*argv, "--out", out, flag)
        assert out.exists() and not side.exists()
        assert not list(tmp_path.glob(partial)), flag


def test_a_resumed_perturb_opens_its_bar_where_the_kept_batches_end(model, tmp_path):
    """The bar of a resumed run starts at the kept batches, so its rate and time left count only the work this run
    does (a bar opened at 0 that jumps over the kept batches shows them as speed)."""
    from lfpcli.commands import perturb
    from lfpcli.errors import Interrupted

    out = tmp_path / "r.h5"
    kw = {"model": model, "method": "pgd-l2", "limit": 100, "batch_size": 20, "params": {"steps": 5}, "device": "cpu"}

    def stop_in_batch_3(stage, done, total, **status):
        if status.get("batch") == "3/5":
            raise KeyboardInterrupt

    with pytest.raises(Interrupted, match="2 of 5 batches"):
        perturb(out, progress=stop_in_batch_3, **kw)
    calls = []
    perturb(out, resume=True, progress=lambda stage, done, total, **s: calls.append((stage, done, total)), **kw)
    bar = [c for c in calls if c[0].startswith("pgd-l2 on")]
    assert bar[0][1:] == (2 * 5, 5 * 5) and bar[-1][1:] == (5 * 5, 5 * 5)
    assert all(b[1] >= a[1] for a, b in itertools.pairwise(bar))


TRAIN = ["train", "--data", "digits", "--arch", "small-cnn", "--epochs", "5", "--save-every", "0", "--seed", "3", "-q"]


def test_train_killed_at_random_moments_then_resumed_gives_the_same_weights(tmp_path):
    ref = tmp_path / "ref.pt"
    seconds = timed(*TRAIN, "--out", ref)
    want = ckpt_tensors(ref)
    out = tmp_path / "out.pt"
    rng = random.Random(5)
    killed = 0
    for attempt in range(2):
        # the first kill at a random moment (start-up included); the second once an epoch's state is kept, so that
        # at least one run is killed mid-way however the machine's load changes between runs
        delay, after = (
            (rng.uniform(0.3, 0.9) * seconds, None)
            if attempt == 0
            else (rng.uniform(0.0, 0.1) * seconds, (tmp_path / "out.pt.resume" / "train-state.pt").exists)
        )
        killed += kill_at([*TRAIN, "--out", out, "--resume"], delay, after)
        assert not list(tmp_path.glob(".out.pt.*.part"))
        if out.exists():  # finished before the kill: whole and correct
            got = ckpt_tensors(out)
            assert all(torch.equal(got[k], want[k]) for k in want)
            out.unlink()
    assert killed >= 1
    run(*TRAIN, "--out", out, "--resume")
    got = ckpt_tensors(out)
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    a, b = (torch.load(p, weights_only=True)["meta"]["train"]["history"] for p in (ref, out))
    assert a == b


def test_ctrl_c_keeps_the_progress_and_says_how_to_finish(model, tmp_path):
    out = tmp_path / "p.h5"
    p = subprocess.Popen(
        [*LFP, *map(str, PERTURB), "--in", str(model), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=interruptible,
    )
    side = tmp_path / "p.h5.resume"
    deadline = time.monotonic() + 120
    while not (side.exists() and list(side.glob("batch-*.pt"))) and time.monotonic() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    lines = err.decode().splitlines()
    assert p.returncode == 130 and len(lines) == 1, lines
    assert "--resume" in lines[0] and "p.h5.resume" in lines[0]
    assert not out.exists() and list(side.glob("batch-*.pt"))
    r = run(*PERTURB, "--in", model, "--out", out, check=False)
    assert r.returncode == 2 and "--resume" in r.stderr and r.stderr.count("\n") == 1
    other = [*PERTURB[: PERTURB.index("--steps") + 1], "41", *PERTURB[PERTURB.index("--steps") + 2 :]]
    r = run(*other, "--in", model, "--out", out, "--resume", check=False)
    assert r.returncode == 2 and "another command" in r.stderr and "steps" in r.stderr
    run(*PERTURB, "--in", model, "--out", out, "--resume")
    assert out.exists() and not side.exists()


def test_a_vae_density_fit_interrupted_between_classes_resumes_to_the_same_fit(model, tmp_path):
    from lfpcli.commands import fit_density_file
    from lfpcli.errors import Interrupted

    params = {"epochs": 1, "latent": 8, "width": 8}
    ref = tmp_path / "ref.h5"
    fit_density_file(ref, model=model, kind="vae", params=params, device="cpu")

    def stop_at_class_3(stage, done, total, **status):
        if stage == "vae class 3":
            raise KeyboardInterrupt

    out = tmp_path / "vae.h5"
    with pytest.raises(Interrupted, match="3 of 10 class VAEs"):
        fit_density_file(out, model=model, kind="vae", params=params, device="cpu", progress=stop_at_class_3)
    assert not out.exists()
    fit_density_file(out, model=model, kind="vae", params=params, device="cpu", resume=True)
    got, want = h5_tensors(out), h5_tensors(ref)
    assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)


@pytest.mark.parametrize("command", ["train", "perturb", "density"])
def test_each_resumable_command_fingerprints_every_recorded_parameter_and_input(
    command, digits_model, tmp_path, monkeypatch
):
    """What a ``--resume`` must match: every parameter the output records (but the device as given), every parent
    file's sha256, lfp's version, the device and the CPU threads; a parameter left out would let a resume with
    another value finish with units computed under the old one."""
    import importlib

    from lfpcli.artifacts import read_record
    from lfpcli.artifacts.resume import Sidecar

    module = importlib.import_module(f"lfpcli.commands.{command}")
    seen = []

    class Recording(Sidecar):
        def __init__(self, out, fingerprint, **kw):
            super().__init__(out, fingerprint, **kw)
            seen.append(self.fingerprint)

    monkeypatch.setattr(module, "Sidecar", Recording)
    out = tmp_path / ("m.pt" if command == "train" else "o.h5")
    if command == "train":
        module.train(out, data="digits", arch="mlp", epochs=1, seed=2, device="cpu")
    elif command == "perturb":  # with a mask: two input files
        np.save(tmp_path / "mask.npy", np.ones((1, 8, 8), dtype=np.float32))
        module.perturb(
            out,
            model=digits_model,
            method="pcfe-l0",
            limit=8,
            params={"steps": 2, "search_steps": 1},
            density="none",
            mask=str(tmp_path / "mask.npy"),
            device="cpu",
        )
    else:
        module.fit_density_file(
            out, model=digits_model, kind="vae", params={"epochs": 1, "latent": 4, "width": 4}, device="cpu"
        )
    record = read_record(out)[0]
    (fp,) = seen
    assert fp["command"] == command
    assert fp["params"] == {k: v for k, v in record["params"].items() if k != "device"}
    assert fp["inputs"] == {p["role"]: p["sha256"] for p in record["parents"]}
    assert (
        len(fp["inputs"]) == {"train": 0, "perturb": 2, "density": 1}[command]
    )  # train on built-in data reads no file
    assert fp["lfpcli"] == record["versions"]["lfpcli"]
    assert fp["device"] == "cpu" and fp["cpu_threads"] == record["threads"]


# ------------------------------------------------------------------------------------ one model for every command


def _leaves():
    from lfpcli.cli.app import command

    stack = [([], command())]
    while stack:
        path, cmd = stack.pop()
        subs = getattr(cmd, "commands", {})
        if not subs:
            yield " ".join(path), cmd
        stack.extend((path + [n], s) for n, s in subs.items())


def test_every_command_that_resumes_says_the_same_and_no_other_mentions_progress():
    """train, perturb, retrain, density and synth sweep keep progress in OUT.resume/ and take the same --resume and
    --force; the --force of a command with nothing to resume only overwrites."""
    opts = {path: {o: p for p in cmd.params for o in p.opts} for path, cmd in _leaves()}
    resumable = {path for path, o in opts.items() if "--resume" in o}
    assert resumable == {"train", "perturb", "retrain", "density", "synth sweep"}
    assert len({opts[c]["--resume"].help for c in resumable}) == 1
    assert len({opts[c]["--force"].help for c in resumable}) == 1
    assert "OUT.resume/" in opts["perturb"]["--resume"].help and "OUT.resume/" in opts["perturb"]["--force"].help
    for path, o in opts.items():
        if "--force" in o and path not in resumable:
            assert not any(w in o["--force"].help for w in ("progress", "interrupted", "resume")), path
        for p in o.values():
            assert "OUT.progress" not in (p.help or ""), path


def test_ctrl_c_says_the_same_for_every_command_that_resumes(model, tmp_path):
    import re

    from lfpcli.commands import fit_density_file, perturb, train
    from lfpcli.commands.synth import synth_sweep
    from lfpcli.errors import Interrupted

    def stop_at(stage_start, done_at, epoch=None):
        def progress(stage, done, total, **status):
            if stage.startswith(stage_start) and done >= done_at and status.get("epoch", epoch) == epoch:
                raise KeyboardInterrupt

        return progress

    runs = {
        "epochs": lambda out: train(
            out.with_suffix(".pt"),
            data="digits",
            arch="mlp",
            epochs=4,
            save_every=0,
            device="cpu",
            progress=stop_at("training", 0, epoch="3/4"),
        ),
        "batches": lambda out: perturb(
            out,
            model=model,
            limit=40,
            batch_size=20,
            params={"steps": 2},
            device="cpu",
            progress=stop_at("pgd-l2 on", 3),
        ),
        "class VAEs": lambda out: fit_density_file(
            out,
            model=model,
            kind="vae",
            params={"epochs": 1, "latent": 4, "width": 4},
            device="cpu",
            progress=stop_at("vae class 1", 0),
        ),
        "configurations": lambda out: synth_sweep(
            out,
            methods="pgd-l2",
            seeds="0",
            dim=20,
            hidden=4,
            n_natural=6,
            n_noise=8,
            sweeps=["dim=20,30"],
            settings={"window": 5, "rel_tol": 0.5},
            device="cpu",
            progress=stop_at("configurations", 1),
        ),
    }
    for units, run_it in runs.items():
        out = tmp_path / f"{units.replace(' ', '-')}.h5"
        with pytest.raises(Interrupted) as e:
            run_it(out)
        out = out.with_suffix(".pt") if units == "epochs" else out
        assert re.fullmatch(
            rf"interrupted; [1-9]\d* of \d+ {units} are kept in {re.escape(str(out))}\.resume: run the same "
            rf"command with --resume to finish",
            str(e.value),
        ), str(e.value)
        if units == "epochs":  # stopped in the third epoch: the state after the second is kept
            assert str(e.value).startswith("interrupted; 2 of 4 epochs are kept in")


def test_ctrl_c_before_anything_was_finished_says_nothing_was_kept(model, tmp_path):
    from lfpcli.commands import train
    from lfpcli.errors import Interrupted

    def stop(stage, done, total, **status):
        if stage.startswith("training") and done >= 1:
            raise KeyboardInterrupt

    out = tmp_path / "t.pt"
    with pytest.raises(Interrupted) as e:
        train(out, data="digits", arch="mlp", epochs=3, save_every=0, device="cpu", progress=stop)
    assert (
        str(e.value)
        == "interrupted; none of the 3 epochs was finished, so nothing was kept: the same command starts over"
    )
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_while_the_ranks_share_the_batches_says_which_are_kept(model, tmp_path, monkeypatch):
    """Under torchrun the ranks solve their shares of the batches into OUT.resume/ before rank 0 writes the output;
    Ctrl-C there (here after two of four batches) names what is kept and how to finish, as every resumable command."""
    from lfpcli import distributed
    from lfpcli.commands import perturb
    from lfpcli.errors import Interrupted

    def two_then_ctrl_c(has, total, solve, read):
        todo = [b for b in range(total) if not has(b)]
        inputs = read(todo)
        for b in todo[:2]:
            solve(b, next(inputs))
        raise KeyboardInterrupt

    monkeypatch.setattr(distributed, "solve_shares", two_then_ctrl_c)
    out = tmp_path / "p.h5"
    with pytest.raises((Interrupted, KeyboardInterrupt)) as e:  # a bare KeyboardInterrupt: the CLI's generic line
        perturb(out, model=model, limit=80, batch_size=20, params={"steps": 2}, device="cpu")
    assert str(e.value) == (
        f"interrupted; 2 of 4 batches are kept in {out}.resume: run the same command with --resume to finish"
    )
    assert sorted(p.name for p in (tmp_path / "p.h5.resume").glob("batch-*")) == ["batch-000000.pt", "batch-000001.pt"]
    monkeypatch.undo()
    perturb(out, model=model, limit=80, batch_size=20, params={"steps": 2}, device="cpu", resume=True)
    assert out.exists() and not (tmp_path / "p.h5.resume").exists()
