"""Bad input to ``lfp synth run|sweep|plot``: one ``error:`` line, exit 2, nothing on stdout, and the folders
unchanged (no results file, no figure, no progress folder, no temporary file). The contract and its helpers come
from ``test_errors.py``."""

from __future__ import annotations

import shutil

import h5py
import pytest
from test_errors import (  # noqa: F401  (fixtures used by name)
    BAD_FILES,
    err_art,
    err_env,
    err_expect_failure,
    err_ws,
)

TINY = [
    "--dim",
    "60",
    "--hidden",
    "16",
    "--n-natural",
    "10",
    "--n-noise",
    "20",
    "--window",
    "20",
    "--rel-tol",
    "0.2",
    "--device",
    "cpu",
    "--quiet",
]
SETTINGS = {"max_epochs": 2000, "window": 20, "rel_tol": 0.2}


@pytest.fixture(scope="module")
def synth_files(err_art, tmp_path_factory):
    """A results file of a small sweep (a dim curve, two methods), and one of a single configuration."""
    from lfpcli.commands.synth import synth_run, synth_sweep

    d = tmp_path_factory.mktemp("synth-err")
    sweep, one = d / "sweep.h5", d / "one.h5"
    synth_sweep(
        sweep,
        methods="pgd-l2,pcfe-l0",
        seeds="0",
        dim=60,
        hidden=16,
        n_natural=10,
        n_noise=20,
        sweeps=["dim=50,60"],
        settings=SETTINGS,
        device="cpu",
    )
    synth_run(one, dim=60, hidden=16, n_natural=10, n_noise=20, settings=SETTINGS, device="cpu")
    return {"sweep": sweep, "one": one, "dir": d}


def sweep_argv(ws, *extra, out="out/s.h5"):
    return [
        "synth",
        "sweep",
        *TINY,
        "--method",
        "pgd-l2",
        "--seeds",
        "0",
        *(["--out", ws.root / out] if out else []),
        *extra,
    ]


def run_argv(ws, *extra):
    return ["synth", "run", *TINY, *extra]


# --------------------------------------------------------------------------------------------- sweep and run values

SWEEP_CASES = {
    "unknown sweep key": (["--sweep", "dims=100,200"], ("unknown sweep key", "dim")),
    "empty list": (["--sweep", "dim="], ("no values",)),
    "only commas": (["--sweep", "dim=,,"], ("no values",)),
    "no equals sign": (["--sweep", "dim"], ("KEY=V1",)),
    "non-numeric dim": (["--sweep", "dim=100,abc"], ("whole numbers", "abc")),
    "fractional dim": (["--sweep", "dim=100.5"], ("whole numbers",)),
    "non-numeric eps": (["--sweep", "eps=small"], ("numbers", "small")),
    "dim zero": (["--sweep", "dim=0,100"], ("dim", "at least 1")),
    "dim negative": (["--sweep", "dim=-3"], ("dim", "at least 1")),
    "base dim zero": (["--dim", "0"], ("dim", "at least 1")),
    "hidden one": (["--hidden", "1"], ("hidden", "at least 2")),
    "n_noise zero": (["--sweep", "n_noise=0,10"], ("n_noise", "at least 1")),
    "ratio zero": (["--method", "pgd-l0", "--sweep", "ratio=0,0.1"], ("ratio", "(0, 1]")),
    "ratio above one": (["--method", "pgd-l0", "--sweep", "ratio=0.5,1.5"], ("ratio", "(0, 1]")),
    "base ratio above one": (["--method", "pcfe-l0", "--ratio", "2"], ("ratio", "(0, 1]")),
    "eps negative": (["--sweep", "eps=-0.1"], ("eps", "positive")),
    "eps nan": (["--eps", "nan"], ("eps", "positive")),
    "repeated value": (["--sweep", "dim=100,100"], ("twice",)),
    "repeated key": (["--sweep", "dim=100", "--sweep", "dim=200"], ("twice",)),
    "none with a curve": (["--sweep", "none", "--sweep", "dim=100"], ("none", "alone")),
    "key that applies to no method": (["--method", "cfe-l2", "--sweep", "eps=0.1,0.2"], ("eps", "pgd-l2")),
    "eps for ratio methods": (["--method", "cfe-l2", "--eps", "0.1"], ("--eps", "--ratio")),
    "n_noise for the natural variant": (["--variant", "natural", "--sweep", "n_noise=10,20"], ("n_noise", "noise")),
    "unknown method": (["--method", "pgd-l2,fgsm"], ("unknown method", "fgsm")),
    "unknown method in a sweep": (["--sweep", "fgsm:eps=0.1"], ("unknown method", "fgsm")),
    "unknown distribution": (["--dist", "cauchy"], ("unknown distribution", "cauchy")),
    "unknown variant": (["--variant", "adversarial"], ("unknown variant",)),
    "unknown preset": (["--preset", "huge"], ("unknown preset", "quick")),
    "non-numeric seed": (["--seeds", "0,one"], ("--seeds", "whole numbers")),
    "negative seed": (["--seeds", "-1"], ("seeds",)),
    "repeated seed": (["--seeds", "1,1"], ("twice",)),
    "empty seeds": (["--seeds", ","], ("--seeds",)),
    "zero learning rate": (["--lr", "0"], ("--lr", "positive")),
    "momentum one": (["--momentum", "1"], ("--momentum",)),
    "zero epochs": (["--max-epochs", "0"], ("max-epochs",)),
    "zero window": (["--window", "0"], ("window",)),
    "rel-tol one": (["--rel-tol", "1"], ("rel-tol",)),
    "unknown loss": (["--loss", "hinge"], ("loss", "exponential")),
    "unknown eps scaling": (["--eps-scaling", "log"], ("eps_scaling", "sqrt-dim")),
    "unknown setting": (["--set", "speed=3"], ("unknown setting", "speed")),
    "non-numeric setting": (["--set", "pgd_steps=many"], ("pgd_steps", "whole number")),
    "bad pcfe step": (["--set", "pcfe_step=sometimes"], ("pcfe_step", "line-search")),
    "setting given twice": (["--set", "lr=0.1", "--lr", "0.2"], ("lr", "once")),
    "set without equals": (["--set", "lr"], ("KEY=VALUE",)),
    "no cuda": (["--device", "cuda"], ("cuda",)),
    "negative threads": (["--threads", "-1"], ("--threads",)),
}


@pytest.mark.parametrize("case", list(SWEEP_CASES))
def test_bad_sweep_values(err_ws, capsys, case):
    extra, words = SWEEP_CASES[case]
    if case == "no cuda":
        import torch

        if torch.cuda.is_available():  # the same refusal for a device index that does not exist
            extra = ["--device", f"cuda:{torch.cuda.device_count()}"]
    err_expect_failure(err_ws, sweep_argv(err_ws, *extra), capsys, expect=words)
    assert not (err_ws.out / "s.h5.resume").exists()


RUN_CASES = {
    "unknown method": (["--method", "fgsm"], ("unknown method", "fgsm")),
    "dim zero": (["--dim", "0"], ("dim",)),
    "eps for a ratio method": (["--method", "pgd-l0", "--eps", "0.1"], ("--eps", "--ratio")),
    "ratio for an eps method": (["--method", "pgd-l2", "--ratio", "0.1"], ("--ratio", "--eps")),
    "ratio outside": (["--method", "pcfe-l0", "--ratio", "0"], ("ratio", "(0, 1]")),
    "unknown distribution": (["--dist", "laplace"], ("distribution",)),
    "unknown preset": (["--preset", "tiny"], ("preset",)),
    "negative seed": (["--seed", "-2"], ("seed",)),
    "results file of the wrong extension": (["--out", "out/r.txt"], (".h5",)),
}


@pytest.mark.parametrize("case", list(RUN_CASES))
def test_bad_run_values(err_ws, capsys, case):
    extra, words = RUN_CASES[case]
    err_expect_failure(err_ws, run_argv(err_ws, *extra), capsys, expect=words)


# --------------------------------------------------------------------------------------------- outputs


def test_existing_results_file_is_not_overwritten(err_ws, capsys):
    (err_ws.out / "s.h5").write_bytes(b"precious")
    err_expect_failure(err_ws, sweep_argv(err_ws), capsys, expect=("already exists", "--force"))
    err_expect_failure(err_ws, run_argv(err_ws, "--out", err_ws.out / "s.h5"), capsys, expect=("already exists",))
    assert (err_ws.out / "s.h5").read_bytes() == b"precious"


@pytest.mark.parametrize(
    "out,words", [("out/s.txt", (".h5",)), ("missing/s.h5", ("does not exist",)), ("out", (".h5",)), ("", ("empty",))]
)
def test_bad_results_path(err_ws, capsys, out, words):
    argv = sweep_argv(err_ws, out=None) + ["--out", str(err_ws.root / out) if out else ""]
    err_expect_failure(err_ws, argv, capsys, expect=words)


def test_progress_path_taken_by_a_file(err_ws, capsys):
    (err_ws.out / "s.h5.resume").write_text("not a folder")
    err_expect_failure(err_ws, sweep_argv(err_ws), capsys, expect=("s.h5.resume", "not a folder"))


def test_resume_with_other_parameters_is_refused(err_ws, capsys):
    from lfpcli.commands.synth import synth_sweep
    from lfpcli.errors import Interrupted

    def stop(stage, done, total, **status):
        if stage == "configurations" and done == 1:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        synth_sweep(
            err_ws.out / "s.h5",
            methods="pgd-l2",
            seeds="0",
            dim=60,
            hidden=16,
            n_natural=10,
            n_noise=20,
            sweeps=["dim=50,60"],
            settings=SETTINGS,
            device="cpu",
            progress=stop,
        )
    base = ["--sweep", "dim=50,60", "--max-epochs", "2000", "--resume"]
    line = err_expect_failure(
        err_ws,
        sweep_argv(err_ws, *base, "--hidden", "32"),
        capsys,
        expect=("another command", "hidden: 16 then, 32 now", "rerun", "--force"),
    )
    assert "s.h5.resume" in line
    err_expect_failure(
        err_ws,
        sweep_argv(err_ws, "--sweep", "dim=50,70", "--max-epochs", "2000", "--resume"),
        capsys,
        expect=('curves: ["dim=50,60"] then, ["dim=50,70"] now',),
    )
    err_expect_failure(
        err_ws, sweep_argv(err_ws, *base, "--rel-tol", "0.3"), capsys, expect=("rel_tol: 0.2 then, 0.3 now",)
    )
    import torch

    try:  # the last bits of CPU results depend on the thread count, so a resume must keep it
        err_expect_failure(
            err_ws, sweep_argv(err_ws, *base, "--threads", "2"), capsys, expect=("cpu_threads: 1 then, 2 now",)
        )
    finally:
        torch.set_num_threads(1)


# --------------------------------------------------------------------------------------------- plot


def plot_argv(ws, results, *extra, out="out/f.png"):
    return ["synth", "plot", results, *(["--out", ws.root / out] if out else []), *extra]


@pytest.mark.parametrize("bad", [b for b in BAD_FILES if not b.startswith(("evil", "pt-", "truncated-pt"))])
def test_plot_of_a_bad_file(err_ws, capsys, bad):
    write, words = BAD_FILES[bad]
    path = err_ws.inp / "results.h5"
    write(err_ws, path)
    err_expect_failure(err_ws, plot_argv(err_ws, path), capsys, expect=(path.name, *words))


def test_plot_of_another_kind_of_file(err_ws, capsys):
    for path, kind in ((err_ws.art.pgd, "perturbed-set"), (err_ws.art.dataset, "dataset"), (err_ws.art.model, "")):
        err_expect_failure(err_ws, plot_argv(err_ws, path), capsys, expect=(kind,) if kind else ())


def test_plot_of_a_truncated_results_file(err_ws, capsys, synth_files):
    data = synth_files["sweep"].read_bytes()
    path = err_ws.inp / "cut.h5"
    path.write_bytes(data[: len(data) // 2])
    err_expect_failure(err_ws, plot_argv(err_ws, path), capsys, expect=("cut.h5",))


def _damage(src, dst, edit):
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        edit(f)


DAMAGE = {  # the results file's checksum catches each of these first; the reader's own checks stand behind it
    "a results column missing": lambda f: f.__delitem__("results/acc_baseline"),
    "a point column missing": lambda f: f.__delitem__("points/method"),
    "no results group": lambda f: f.__delitem__("results"),
    "columns of other lengths": lambda f: (f.__delitem__("results/l2"), f.create_dataset("results/l2", data=[1.0])),
    "labels unreadable": lambda f: f["points/method"].attrs.__setitem__("labels", "{not json"),
    "codes outside the labels": lambda f: f["points/dist"].__setitem__(0, 7),
    "text instead of numbers": lambda f: (
        f.__delitem__("results/acc_perturbed"),
        f.create_dataset("results/acc_perturbed", data=["a"] * 4),
    ),
    "record without a plan": lambda f: f.attrs.__setitem__("lfp_record", '{"kind": "synth-results", "parents": []}'),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_plot_of_a_damaged_results_file(err_ws, capsys, synth_files, case):
    path = err_ws.inp / "damaged.h5"
    _damage(synth_files["sweep"], path, DAMAGE[case])
    err_expect_failure(err_ws, plot_argv(err_ws, path), capsys, expect=("damaged.h5",))


@pytest.mark.parametrize(
    "out,words",
    [("out/f.txt", (".png", ".pdf")), ("out/f", (".png",)), ("missing/f.png", ("does not exist",)), ("out", (".png",))],
)
def test_plot_to_a_bad_path(err_ws, capsys, synth_files, out, words):
    err_expect_failure(err_ws, plot_argv(err_ws, synth_files["sweep"], out=out), capsys, expect=words)


def test_plot_does_not_overwrite(err_ws, capsys, synth_files):
    (err_ws.out / "f.png").write_bytes(b"precious")
    err_expect_failure(err_ws, plot_argv(err_ws, synth_files["sweep"]), capsys, expect=("already exists", "--force"))
    assert (err_ws.out / "f.png").read_bytes() == b"precious"


def test_plot_selection_and_single_configurations(err_ws, capsys, synth_files):
    err_expect_failure(
        err_ws, plot_argv(err_ws, synth_files["sweep"], "--method", "fgsm"), capsys, expect=("unknown method",)
    )
    err_expect_failure(
        err_ws,
        plot_argv(err_ws, synth_files["sweep"], "--method", "cfe-l2"),
        capsys,
        expect=("no results for", "pgd-l2, pcfe-l0"),
    )
    err_expect_failure(
        err_ws, plot_argv(err_ws, synth_files["sweep"], "--dist", "gauss"), capsys, expect=("no results for",)
    )
    err_expect_failure(err_ws, plot_argv(err_ws, synth_files["one"]), capsys, expect=("no swept key", "--sweep"))
