"""``torchrun --nproc-per-node 2 -m lfpcli ...`` on the CPU (gloo): ``perturb`` shares its batches among the ranks and
writes the perturbed set a single process writes; ``train`` under DistributedDataParallel splits every minibatch among
the ranks and gives the weights of a single-process run with the same ``--batch-size`` (to float rounding); only rank 0
speaks, and an error is reported once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from lfpcli.cli.app import main


def lfp_here(*args) -> None:
    """``lfp ARGS`` in this process (no start-up cost), which must succeed."""
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    assert e.value.code == 0


def launch(*args: str) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node 2 --standalone ARGS`` (``python -m torch.distributed.run`` without the binary)."""
    exe = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    launcher = [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    return subprocess.run(
        [*launcher, "--nproc-per-node", "2", "--standalone", *args],
        check=False,
        capture_output=True,
        text=True,
        env={**env, "LFP_PROGRESS": "0", "OMP_NUM_THREADS": "1"},
        timeout=300,
    )


def torchrun(*args) -> subprocess.CompletedProcess:
    return launch("-m", "lfpcli", *map(str, args))


def h5_tensors(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[...]) if isinstance(o, h5py.Dataset) else None)
    return out


def record(path: Path) -> dict:
    from lfpcli.artifacts import read_record

    return read_record(path)[0]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("torchrun") / "m.pt"
    lfp_here("train", "--data", "digits", "--arch", "mlp", "--epochs", "1", "--out", path, "-q")
    return path


def test_perturb_under_torchrun_writes_the_single_process_set(model, tmp_path, capsys):
    # 70 samples in batches of 16: five batches, so rank 0 solves three and rank 1 two, the last one short
    args = ["perturb", "--in", model, "--method", "pgd-l2", "--steps", "4", "--limit", "70", "--batch-size", "16", "-q"]
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    lfp_here(*args, "--out", one)
    capsys.readouterr()
    r = torchrun(*args, "--out", two)
    assert r.returncode == 0, r.stderr
    want, got = h5_tensors(one), h5_tensors(two)
    assert {"x", "target", "y", "index", "metrics/success", "metrics/l2", "metrics/log_density"} <= set(want)
    assert got.keys() == want.keys()
    for k in want:
        assert np.array_equal(got[k], want[k]), k
    a, b = record(one), record(two)
    assert a["summary"] == b["summary"] and a["params"] == b["params"]
    assert b["distributed"]["world_size"] == 2 and "distributed" not in a
    assert r.stdout.count("perturbed 70 samples") == 1  # rank 0 alone reports
    assert not (tmp_path / "two.h5.resume").exists()

    # bad input: one line from lfp (rank 0's), nothing written; each rank exits 2 (torchrun itself then exits 1)
    r = torchrun(*args, "--out", two)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert lines == [f"error: output {two} already exists; use --force to overwrite it"], r.stderr
    assert (
        "exitcode  : 2" in r.stderr
        and 'Traceback (most recent call last):\n  File "' + str(Path("lfpcli")) not in r.stderr
    )
    assert not (tmp_path / "two.h5.resume").exists()


def test_ddp_train_gives_the_single_process_weights(tmp_path, capsys):
    # digits' 1078 training samples in minibatches of 359: the fourth holds one sample, so one rank's shard is empty
    args = [
        "train",
        "--data",
        "digits",
        "--arch",
        "mlp",
        "--epochs",
        "2",
        "--batch-size",
        "359",
        "--optimizer",
        "sgd",
        "--lr",
        "0.1",
        "--seed",
        "4",
        "-q",
    ]
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    lfp_here(*args, "--out", one)
    capsys.readouterr()
    r = torchrun(*args, "--out", two)
    assert r.returncode == 0, r.stderr
    a, b = (torch.load(p, weights_only=True) for p in (one, two))
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k, v in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][k], v, rtol=1e-5, atol=1e-6, msg=k)
    ha, hb = a["meta"]["train"]["history"], b["meta"]["train"]["history"]
    assert [h["epoch"] for h in hb] == [1, 2] and [h["train_accuracy"] for h in hb] == [h["train_accuracy"] for h in ha]
    assert [h["train_loss"] for h in hb] == pytest.approx([h["train_loss"] for h in ha], rel=1e-5)
    assert [h["val_accuracy"] for h in hb] == [h["val_accuracy"] for h in ha]
    assert b["meta"]["distributed"]["world_size"] == 2 and b["meta"]["params"] == a["meta"]["params"]
    assert r.stdout.count("trained") == 1


FAILS_ON_RANK_1 = """
import sys
from lfpcli import distributed
from lfpcli.errors import InputError, LfpError

distributed.quiet_other_ranks()
try:
    with distributed.session("perturb") as job:
        if job.rank == 1:
            raise InputError("no such file on this node")
        job.check_in()
        print("rank 0 went on")
except LfpError as e:
    sys.stderr.write(f"error: {e}\\n")
    sys.exit(e.exit_code)
"""


def test_an_error_on_one_rank_stops_the_others_and_rank_0_reports_it(tmp_path):
    """Rank 1 fails before a check-in that rank 0 waits at: rank 0 learns of it there (no hang) and reports it."""
    script = tmp_path / "fails_on_rank_1.py"
    script.write_text(FAILS_ON_RANK_1)
    r = launch(str(script))
    assert r.returncode != 0 and "rank 0 went on" not in r.stdout
    assert [ln for ln in r.stderr.splitlines() if ln.startswith("error:")] == [
        "error: rank 1: no such file on this node"
    ]


def test_slurm_example_parses_and_meets_on_the_first_node():
    script = Path(__file__).resolve().parents[2] / "examples" / "slurm_perturb.sh"
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    text = script.read_text()
    assert (
        "srun" in text
        and "torchrun" in text
        and '--rdzv-endpoint "$head_node:$port"' in text
        and "-m lfpcli perturb" in text
    )
