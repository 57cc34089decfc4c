"""Bad input never crashes lfp and never touches the disk.

The product rule checked here, for every command and every kind of bad input: exactly one line on stderr,
starting ``error: ``, that says what is wrong; exit code 2; no traceback; nothing on stdout; and the
folders involved are byte-for-byte unchanged afterwards (no partial output, no ``.NAME.*.part`` temp file,
an existing output never overwritten without ``--force``).

One tiny model (mlp on ``digits``, 1 epoch) and one tiny perturbed set (20 samples) are built once for the
module; every case then runs ``lfpcli.cli.app.main(argv)`` in-process (a few run as real subprocesses).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import h5py
import numpy as np
import pytest
import torch

from lfpcli.artifacts.integrity import CHECKSUM_KEY, checkpoint_checksum, json_checksum, reseal
from lfpcli.cli.app import main as lfp_main

# --------------------------------------------------------------------------------------------- helpers


def err_call(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run ``lfp ARGV`` in-process; return ``(exit code, stdout, stderr)``."""
    import warnings

    capsys.readouterr()  # drop anything printed before
    saved = warnings.showwarning
    try:
        lfp_main([str(a) for a in argv])
        code = 0  # pragma: no cover - main always exits
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        warnings.showwarning = saved
    out, err = capsys.readouterr()
    return code, out, err


def err_snapshot(*roots: Path) -> dict[str, tuple]:
    """Every entry under ``roots``: kind, size, mtime and (for files) the sha256 of its bytes."""
    snap: dict[str, tuple] = {}
    for root in roots:
        root = Path(root)
        if not root.exists():
            snap[str(root)] = ("absent",)
            continue
        for p in [root, *sorted(root.rglob("*"))]:
            st = p.lstat()
            if p.is_dir():
                snap[str(p)] = ("dir", st.st_mode)
            else:
                snap[str(p)] = ("file", st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return snap


def err_assert_one_line(
    code: int, out: str, err: str, *, expect: tuple[str, ...] = (), argv=None, hide: Path | None = None
) -> str:
    """The error contract: exit 2, one ``error: `` line on stderr, nothing on stdout, no traceback; the line
    contains each of ``expect`` (case-insensitive), not counting the text of the folder ``hide``."""
    ctx = f"\nargv: {argv}\nexit: {code}\nstdout: {out!r}\nstderr: {err!r}"
    assert "Traceback" not in err and "Traceback" not in out, ctx
    assert code == 2, ctx
    assert out == "", ctx
    assert err.endswith("\n"), ctx
    lines = err.splitlines()
    assert len(lines) == 1, ctx
    line = lines[0]
    assert line.startswith("error: "), ctx
    assert len(line) > len("error: ") + 10, ctx
    assert "internal error" not in line, ctx
    text = line.replace(str(hide), "<tmp>") if hide is not None else line
    for word in expect:
        assert word.lower() in text.lower(), f"expected {word!r} in the message{ctx}"
    return line


def err_no_part_files(*roots: Path) -> None:
    for root in roots:
        leftovers = [p for p in Path(root).rglob("*.part")] if Path(root).exists() else []
        assert not leftovers, f"temporary files left behind: {leftovers}"


# --------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def err_env(tmp_path_factory):
    """A private dataset cache for this module (the user's cache is never touched) and a clean environment."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LFP_CACHE_DIR", str(tmp_path_factory.mktemp("err-cache")))
    mp.delenv("LFP_DEBUG", raising=False)
    mp.delenv("LFP_PROGRESS", raising=False)
    yield
    mp.undo()


@pytest.fixture(scope="module")
def err_art(err_env, tmp_path_factory):
    """The real artifacts every case starts from: a model, a perturbed set, a dataset file, an eval report."""
    from lfpcli.commands import describe_data, evaluate, perturb, train

    d = tmp_path_factory.mktemp("err-art")
    model, pgd, dataset, report = d / "model.pt", d / "pgd.h5", d / "digits.h5", d / "eval.json"
    train(model, data="digits", arch="mlp", epochs=1, seed=0, device="cpu")
    perturb(pgd, model=model, method="pgd-l2", limit=20, params={"eps": 1.0, "steps": 3}, device="cpu")
    describe_data("digits", out=dataset)
    evaluate(model=model, splits=("test",), device="cpu", out=report)
    return SimpleNamespace(dir=d, model=model, pgd=pgd, dataset=dataset, report=report)


@pytest.fixture
def err_ws(err_art, tmp_path, monkeypatch):
    """A fresh work folder (the cwd) with ``in/`` for inputs and ``out/`` for outputs; on exit, checks that
    the shared artifacts were not modified and that no temporary file is left anywhere."""
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)
    shared = err_snapshot(err_art.dir)
    ws = SimpleNamespace(root=tmp_path, inp=tmp_path / "in", out=tmp_path / "out", art=err_art)
    yield ws
    assert err_snapshot(err_art.dir) == shared, "a shared input artifact was modified"
    err_no_part_files(tmp_path, err_art.dir)


def err_expect_failure(ws, argv: list, capsys, *, expect: tuple[str, ...] = ()) -> str:
    """Run ``argv`` and check the error contract and that the work folder did not change."""
    before = err_snapshot(ws.root)
    code, out, err = err_call(argv, capsys)
    line = err_assert_one_line(code, out, err, expect=expect, argv=argv, hide=ws.root)
    after = err_snapshot(ws.root)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert not changed, f"the disk changed: {sorted(changed)}\nargv: {argv}\nstderr: {err!r}"
    return line


# ------------------------------------------------------------------------------------ bad file contents


class _Evil:
    """Unpickling this runs ``touch PATH``."""

    def __init__(self, sentinel: str):
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch '{self.sentinel}'",))


def _evil_raw(sentinel: Path) -> bytes:
    return pickle.dumps(_Evil(str(sentinel)), protocol=2)


def _evil_torch(path: Path, sentinel: Path) -> None:
    torch.save({"state_dict": {}, "meta": _Evil(str(sentinel))}, path)


def _sentinel(ws) -> Path:
    return ws.root / "SENTINEL"


def _half(src: Path, dst: Path) -> None:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])


def _foreign_h5(path: Path) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros((4, 1, 8, 8), dtype="float32"))
        f.attrs["creator"] = "not lfp"


def _zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("hello.txt", "hello")


# name -> (writer(ws, path), words the message must contain besides the file name)
BAD_FILES: dict[str, tuple[Callable, tuple[str, ...]]] = {
    "missing": (lambda ws, p: None, ("not exist",)),
    "folder": (lambda ws, p: p.mkdir(), ("folder",)),
    "empty": (lambda ws, p: p.write_bytes(b""), ("empty",)),
    "truncated-pt": (lambda ws, p: _half(ws.art.model, p), ()),
    "truncated-h5": (lambda ws, p: _half(ws.art.pgd, p), ()),
    "random-bytes": (lambda ws, p: p.write_bytes(np.random.default_rng(0).bytes(4096)), ()),
    "text": (lambda ws, p: p.write_text("this is a text file\nwith two lines\n"), ()),
    "png-header": (lambda ws, p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 64), ()),
    "json-list": (lambda ws, p: p.write_text("[1, 2, 3]\n"), ()),
    "json-foreign-dict": (lambda ws, p: p.write_text('{"hello": "world"}\n'), ()),
    "foreign-h5": (lambda ws, p: _foreign_h5(p), ()),
    "pt-tensor": (lambda ws, p: torch.save(torch.zeros(3), p), ()),
    "pt-dict-without-meta": (lambda ws, p: torch.save({"state_dict": {"w": torch.zeros(2)}}, p), ()),
    "pt-plain-dict": (lambda ws, p: torch.save({"w": torch.zeros(2), "epoch": 3}, p), ()),
    "zip": (lambda ws, p: _zip(p), ()),
    "evil-torch-pickle": (lambda ws, p: _evil_torch(p, _sentinel(ws)), ()),
    "evil-raw-pickle": (lambda ws, p: p.write_bytes(_evil_raw(_sentinel(ws))), ()),
}

# Input slots: name -> (extension of the bad file, argv builder(ws, path))
MODEL_SLOTS: dict[str, tuple[str, Callable]] = {
    "perturb --in": (".pt", lambda ws, p: ["perturb", "--in", p, "--out", ws.out / "p.h5", "--limit", "5"]),
    "eval --in": (".pt", lambda ws, p: ["eval", "--in", p, "--out", ws.out / "e.json"]),
    "info .pt": (".pt", lambda ws, p: ["info", p]),
    "density --in": (".pt", lambda ws, p: ["density", "--in", p, "--out", ws.out / "q.h5", "-p", "max_points=20"]),
    "verify .pt": (".pt", lambda ws, p: ["verify", p]),
}
H5_SLOTS: dict[str, tuple[str, Callable]] = {
    "retrain --in": (".h5", lambda ws, p: ["retrain", "--in", p, "--out", ws.out / "r.pt", "--epochs", "1"]),
    "train --data": (
        ".h5",
        lambda ws, p: ["train", "--data", p, "--arch", "mlp", "--epochs", "1", "--out", ws.out / "t.pt"],
    ),
    "perturb --data": (
        ".h5",
        lambda ws, p: ["perturb", "--in", ws.art.model, "--data", p, "--out", ws.out / "p.h5", "--limit", "5"],
    ),
    "eval --data": (".h5", lambda ws, p: ["eval", "--in", ws.art.model, "--data", p, "--out", ws.out / "e.json"]),
    "data SPEC": (".h5", lambda ws, p: ["data", p, "--out", ws.out / "d.h5"]),
    "info .h5": (".h5", lambda ws, p: ["info", p]),
    "verify .h5": (".h5", lambda ws, p: ["verify", p]),
    "perturb --density": (
        ".h5",
        lambda ws, p: [
            "perturb",
            "--in",
            ws.art.model,
            "--method",
            "pcfe-l0",
            "--density",
            p,
            "--out",
            ws.out / "p.h5",
            "--limit",
            "5",
        ],
    ),
}
ALL_SLOTS = {
    **MODEL_SLOTS,
    **H5_SLOTS,
    "info .json": (".json", lambda ws, p: ["info", p]),
    "verify .json": (".json", lambda ws, p: ["verify", p]),
}


def _bad_file_cases():
    for slot in ALL_SLOTS:
        for bad in BAD_FILES:
            yield pytest.param(slot, bad, id=f"{slot}-{bad}")


@pytest.mark.parametrize("slot,bad", list(_bad_file_cases()))
def test_bad_input_file(err_ws, capsys, slot, bad):
    ext, argv_of = ALL_SLOTS[slot]
    write, words = BAD_FILES[bad]
    path = err_ws.inp / f"thing{ext}"  # a neutral name: the message must say what is wrong, not the file name
    write(err_ws, path)
    err_expect_failure(err_ws, argv_of(err_ws, path), capsys, expect=(path.name, *words))
    assert not _sentinel(err_ws).exists(), "unpickling ran code"


def test_evil_pickles_are_live(tmp_path):
    """The crafted pickles really do run code when unpickled naively, so the test above means something."""
    s1, s2 = tmp_path / "S1", tmp_path / "S2"
    pickle.loads(_evil_raw(s1))
    assert s1.exists()
    _evil_torch(tmp_path / "evil.pt", s2)
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert s2.exists()


def test_evil_pickle_real_process(err_ws):
    """The same refusal in a real process started like the console script (``python -m lfpcli``): exit code,
    stderr and stdout as a shell sees them."""
    evil = err_ws.inp / "model.pt"
    _evil_torch(evil, _sentinel(err_ws))
    before = err_snapshot(err_ws.root)
    env = {k: v for k, v in os.environ.items() if k not in ("LFP_DEBUG", "LFP_PROGRESS")}
    r = subprocess.run(
        [sys.executable, "-m", "lfpcli", "perturb", "--in", "in/model.pt", "--out", "out/p.h5"],
        cwd=err_ws.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    err_assert_one_line(r.returncode, r.stdout, r.stderr, expect=("model.pt", "refuses"))
    assert not _sentinel(err_ws).exists(), "unpickling ran code"
    assert err_snapshot(err_ws.root) == before


@pytest.mark.parametrize("how", ["torch", "raw"])
def test_evil_pickle_as_weights(err_ws, capsys, how):
    """--weights files are read with weights_only too: a crafted pickle is refused and never runs."""
    path = err_ws.inp / "weights.pth"
    if how == "torch":
        _evil_torch(path, _sentinel(err_ws))
    else:
        path.write_bytes(_evil_raw(_sentinel(err_ws)))
    err_expect_failure(
        err_ws,
        [
            "train",
            "--data",
            "digits",
            "--arch",
            "resnet18",
            "--weights",
            path,
            "--epochs",
            "1",
            "--out",
            err_ws.out / "t.pt",
        ],
        capsys,
        expect=("weights.pth",),
    )
    assert not _sentinel(err_ws).exists(), "unpickling ran code"


# ---------------------------------------------------------------------------------- wrong artifact kind


WRONG_KIND = {
    "perturbed set as eval --in": (lambda a, o: ["eval", "--in", a.pgd], "pgd.h5"),
    "perturbed set as perturb --in": (lambda a, o: ["perturb", "--in", a.pgd, "--out", o / "p.h5"], "pgd.h5"),
    "dataset as eval --in": (lambda a, o: ["eval", "--in", a.dataset], "digits.h5"),
    "eval json as eval --in": (lambda a, o: ["eval", "--in", a.report], "eval.json"),
    "checkpoint as retrain --in": (lambda a, o: ["retrain", "--in", a.model, "--out", o / "r.pt"], "model.pt"),
    "dataset as retrain --in": (lambda a, o: ["retrain", "--in", a.dataset, "--out", o / "r.pt"], "digits.h5"),
    "eval json as retrain --in": (lambda a, o: ["retrain", "--in", a.report, "--out", o / "r.pt"], "eval.json"),
    "eval json as perturb --in": (lambda a, o: ["perturb", "--in", a.report, "--out", o / "p.h5"], "eval.json"),
    "checkpoint as train --data": (lambda a, o: ["train", "--data", a.model, "--out", o / "t.pt"], "model.pt"),
    "checkpoint as eval --data": (lambda a, o: ["eval", "--in", a.model, "--data", a.model], "model.pt"),
    "eval json as eval --data": (lambda a, o: ["eval", "--in", a.model, "--data", a.report], "eval.json"),
    "checkpoint as perturb --data": (
        lambda a, o: ["perturb", "--in", a.model, "--data", a.model, "--out", o / "p.h5"],
        "model.pt",
    ),
    "checkpoint as data SPEC": (lambda a, o: ["data", a.model], "model.pt"),
    "eval json as data SPEC": (lambda a, o: ["data", a.report], "eval.json"),
}


@pytest.mark.parametrize("case", list(WRONG_KIND))
def test_wrong_artifact_kind(err_ws, capsys, case):
    argv_of, name = WRONG_KIND[case]
    err_expect_failure(err_ws, argv_of(err_ws.art, err_ws.out), capsys, expect=(name,))


# ---------------------------------------------------------------------------- tampered lfp HDF5 files


def _set(name: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        arr = fn(f[name][...])
        del f[name]
        f.create_dataset(name, data=arr)

    return edit


def _nan(a):
    a = a.astype("float32").copy()
    a.flat[3] = np.nan
    return a


def _inf(a):
    a = a.astype("float32").copy()
    a.flat[0] = np.inf
    return a


def _attr(key, value):
    def edit(f):
        f.attrs[key] = value

    return edit


def _record(change):
    def edit(f):
        rec = json.loads(f.attrs["lfp_record"])
        change(rec)
        f.attrs["lfp_record"] = json.dumps(rec)

    return edit


def _delete(name):
    def edit(f):
        del f[name]

    return edit


# Tampering that every reader of the file must notice, even ``lfp info`` (the header).
HEADER_TAMPER = {
    "record-not-json": _attr("lfp_record", "{this is not json"),
    "record-json-list": _attr("lfp_record", "[1, 2]"),
    "schema-from-future": _attr("lfp_schema", 99),
    "schema-zero": _attr("lfp_schema", 0),
    "kind-bogus": _attr("lfp_kind", "bogus-kind"),
    "kind-disagrees-with-record": _record(lambda r: r.__setitem__("kind", "checkpoint")),
    "schema-text": _attr("lfp_schema", "one"),
    "parents-a-string": _record(lambda r: r.__setitem__("parents", "abc")),
    "parents-entry-without-sha256": _record(lambda r: r.__setitem__("parents", [{"path": "x.pt"}])),
    "parents-entry-path-a-number": _record(lambda r: r.__setitem__("parents", [{"path": 1, "sha256": "ab"}])),
    "no-lfp-kind": lambda f: f.attrs.__delitem__("lfp_kind"),
}

# Tampering of the arrays of a perturbed set (x, y, target, group, index).
PERTURBED_TAMPER = {
    "x-nan": _set("x", _nan),
    "x-inf": _set("x", _inf),
    "x-3d": _set("x", lambda a: a[:, 0]),
    "x-out-of-pixel-range": _set("x", lambda a: a + 5.0),
    "x-wrong-image-shape": _set("x", lambda a: a[:, :, :4, :4]),
    "y-out-of-range": _set("y", lambda a: a + 100),
    "y-negative": _set("y", lambda a: a - 100),
    "target-out-of-range": _set("target", lambda a: a + 10),
    "target-negative": _set("target", lambda a: a * 0 - 1),
    "target-shorter": _set("target", lambda a: a[:-3]),
    "y-longer": _set("y", lambda a: np.concatenate([a, a])),
    "group-2d": _set("group", lambda a: a[:, None]),
    "metrics-success-shorter": _set("metrics/success", lambda a: a[:-2]),
    "metrics-l2-2d": _set("metrics/l2", lambda a: a[:, None]),
    "missing-target": _delete("target"),
    "missing-x": _delete("x"),
    "x-a-group": lambda f: (f.__delitem__("x"), f.create_group("x")),
    "x-strings": _set("x", lambda a: np.array([b"a"] * len(a))),
    "no-source-in-record": _record(lambda r: r.pop("source")),
    "source-without-dataset": _record(lambda r: r["source"].pop("dataset")),
    "source-num-classes-text": _record(lambda r: r["source"]["dataset"].__setitem__("num_classes", "ten")),
    "empty-record": _attr("lfp_record", "{}"),
    "clean-spec-bogus": _record(lambda r: r["source"]["dataset"].__setitem__("clean_spec", {"type": "bogus"})),
    "clean-spec-other-data": _record(
        lambda r: r["source"]["dataset"].__setitem__(
            "clean_spec", {"type": "builtin", "name": "spurious-digits", "params": {}}
        )
    ),
    "source-model-a-list": _record(lambda r: r["source"].__setitem__("model", [1])),
    "source-init-a-string": _record(lambda r: r["source"].__setitem__("init", "pretrained")),
    "source-train-lr-text": _record(lambda r: r["source"]["train"]["config"].__setitem__("lr", "abc")),
    "source-train-epochs-0": _record(lambda r: r["source"]["train"]["config"].__setitem__("epochs", 0)),
    "params-a-list": _record(lambda r: r.__setitem__("params", [1])),
}

# Tampering of the arrays of a dataset file.
DATASET_TAMPER = {
    "train-x-nan": _set("train/x", _nan),
    "train-x-inf": _set("train/x", _inf),
    "train-x-3d": _set("train/x", lambda a: a[:, 0]),
    "train-y-out-of-range": _set("train/y", lambda a: a + 10),
    "train-y-shorter": _set("train/y", lambda a: a[:-1]),
    "val-group-longer": _set("val/group", lambda a: np.concatenate([a, a])),
    "missing-train-y": _delete("train/y"),
    "missing-train-split": _delete("train"),
    "train-a-dataset-not-a-group": lambda f: (f.__delitem__("train"), f.create_dataset("train", data=np.zeros(3))),
    "extra-split-not-a-group": lambda f: f.create_dataset("extra", data=np.zeros(3)),
    "no-dataset-in-record": _record(lambda r: r.pop("dataset")),
    "dataset-meta-incomplete": _record(lambda r: r["dataset"].pop("class_names")),
    "input-shape-lies": _record(lambda r: r["dataset"].__setitem__("input_shape", [3, 28, 28])),
}


def _tampered(src: Path, dst: Path, edit: Callable[[h5py.File], None]) -> Path:
    """``src`` copied to ``dst`` and edited, its checksums recomputed so that the readers' own checks meet the
    edit (an unsealed edit is caught by the checksum first: tests/lib/test_integrity.py)."""
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        edit(f)
    reseal(dst)
    return dst


PERTURBED_READERS = {k: H5_SLOTS[k] for k in ("retrain --in", "eval --data", "train --data", "perturb --data")}
DATASET_READERS = {k: H5_SLOTS[k] for k in ("train --data", "eval --data", "perturb --data", "data SPEC")}


def _tamper_cases():
    for name, edit in HEADER_TAMPER.items():
        for slot in (*PERTURBED_READERS, "info .h5"):
            yield pytest.param("pgd", name, edit, slot, id=f"pgd-{name}-{slot}")
        for slot in (*DATASET_READERS, "info .h5"):
            yield pytest.param("dataset", name, edit, slot, id=f"dataset-{name}-{slot}")
    # Array and record tampering: two readers per case, rotating, so every reader meets most kinds of damage
    # while the suite stays fast (they share the loading code past the first few lines).
    readers = list(PERTURBED_READERS)
    for i, (name, edit) in enumerate(PERTURBED_TAMPER.items()):
        slots = [readers[i % 4], readers[(i + 1) % 4]]
        if name.startswith("clean-spec"):  # eval on a perturbed set never needs its clean data
            slots = ["retrain --in", "perturb --data"]
        for slot in slots:
            yield pytest.param("pgd", name, edit, slot, id=f"pgd-{name}-{slot}")
    readers = list(DATASET_READERS)
    for i, (name, edit) in enumerate(DATASET_TAMPER.items()):
        for slot in (readers[i % 4], readers[(i + 2) % 4]):
            yield pytest.param("dataset", name, edit, slot, id=f"dataset-{name}-{slot}")


@pytest.mark.parametrize("src,name,edit,slot", list(_tamper_cases()))
def test_tampered_h5(err_ws, capsys, src, name, edit, slot):
    path = _tampered(getattr(err_ws.art, src), err_ws.inp / f"{src}-{name}.h5", edit)
    _, argv_of = H5_SLOTS[slot]
    err_expect_failure(err_ws, argv_of(err_ws, path), capsys, expect=(path.name,))


# ------------------------------------------------------------------------------- tampered checkpoints


def _ckpt(edit):
    """A checkpoint edited, its checksum recomputed where it still has the fields to compute it from, so that
    the reader's own checks meet the edit."""

    def write(ws, path):
        obj = torch.load(ws.art.model, weights_only=True)
        edit(obj)
        meta, sd = (obj.get("meta"), obj.get("state_dict")) if isinstance(obj, dict) else (None, None)
        if isinstance(meta, dict) and isinstance(sd, dict) and all(isinstance(v, torch.Tensor) for v in sd.values()):
            meta[CHECKSUM_KEY] = checkpoint_checksum(sd, meta)
        torch.save(obj, path)

    return write


def _first_weight(o):
    return next(iter(o["state_dict"]))


CKPT_TAMPER = {
    "schema-from-future": _ckpt(lambda o: o["meta"].__setitem__("schema", 99)),
    "schema-text": _ckpt(lambda o: o["meta"].__setitem__("schema", "1")),
    "meta-kind-dataset": _ckpt(lambda o: o["meta"].__setitem__("kind", "dataset")),
    "meta-not-a-dict": _ckpt(lambda o: o.__setitem__("meta", [1, 2])),
    "meta-without-model": _ckpt(lambda o: o["meta"].pop("model")),
    "model-arch-bogus": _ckpt(lambda o: o["meta"]["model"].__setitem__("arch", "bogus")),
    "model-input-shape-text": _ckpt(lambda o: o["meta"]["model"].__setitem__("input_shape", "1x8x8")),
    "model-num-classes-zero": _ckpt(lambda o: o["meta"]["model"].__setitem__("num_classes", 0)),
    "state-dict-wrong-shape": _ckpt(lambda o: o["state_dict"].__setitem__(_first_weight(o), torch.zeros(3, 3))),
    "state-dict-missing-key": _ckpt(lambda o: o["state_dict"].pop(_first_weight(o))),
    "state-dict-not-tensors": _ckpt(lambda o: o.__setitem__("state_dict", {"w": [1, 2]})),
    "weights-nan": _ckpt(lambda o: o["state_dict"][_first_weight(o)].view(-1).__setitem__(0, float("nan"))),
    "no-data-in-meta": _ckpt(lambda o: o["meta"].pop("data")),
    "mean-wrong-length": _ckpt(lambda o: o["meta"]["model"].__setitem__("mean", [0.1, 0.2, 0.3])),
    "std-zero": _ckpt(lambda o: o["meta"]["model"].__setitem__("std", [0.0])),
    "arch-args-unknown": _ckpt(lambda o: o["meta"]["model"].__setitem__("arch_args", {"bogus": 1})),
    "parents-a-string": _ckpt(lambda o: o["meta"].__setitem__("parents", "abc")),
    "parents-entry-without-sha256": _ckpt(lambda o: o["meta"].__setitem__("parents", [{"path": "digits.h5"}])),
    "train-config-lr-text": _ckpt(lambda o: o["meta"]["train"]["config"].__setitem__("lr", "abc")),
    "init-a-string": _ckpt(lambda o: o["meta"].__setitem__("init", "scratch")),
}
CKPT_READERS = {k: MODEL_SLOTS[k] for k in ("perturb --in", "eval --in", "info .pt")}
# What ``lfp info`` must refuse too (it only reads the record, not the weights).
_INFO_CKPT = {
    "schema-from-future",
    "schema-text",
    "meta-kind-dataset",
    "meta-not-a-dict",
    "meta-without-model",
    "model-input-shape-text",
    "model-num-classes-zero",
    "state-dict-not-tensors",
    "no-data-in-meta",
    "mean-wrong-length",
    "std-zero",
    "parents-a-string",
    "parents-entry-without-sha256",
    "train-config-lr-text",
    "init-a-string",
}


def _ckpt_cases():
    for name in CKPT_TAMPER:
        for slot in CKPT_READERS:
            if slot == "info .pt" and name not in _INFO_CKPT:
                continue
            yield pytest.param(name, slot, id=f"{name}-{slot}")


@pytest.mark.parametrize("name,slot", list(_ckpt_cases()))
def test_tampered_checkpoint(err_ws, capsys, name, slot):
    path = err_ws.inp / f"model-{name}.pt"
    CKPT_TAMPER[name](err_ws, path)
    _, argv_of = CKPT_READERS[slot]
    err_expect_failure(err_ws, argv_of(err_ws, path), capsys, expect=(path.name,))


JSON_TAMPER = {
    "schema-from-future": lambda r: r.__setitem__("schema", 99),
    "schema-zero": lambda r: r.__setitem__("schema", 0),
    "schema-text": lambda r: r.__setitem__("schema", "1"),
    "kind-checkpoint": lambda r: r.__setitem__("kind", "checkpoint"),
    "no-kind": lambda r: r.pop("kind"),
    "parents-a-string": lambda r: r.__setitem__("parents", "abc"),
    "parents-entry-without-sha256": lambda r: r.__setitem__("parents", [{"path": "model.pt"}]),
}


@pytest.mark.parametrize("name", list(JSON_TAMPER))
def test_tampered_eval_report(err_ws, capsys, name):
    rec = json.loads(err_ws.art.report.read_text())
    JSON_TAMPER[name](rec)
    rec[CHECKSUM_KEY] = json_checksum(rec)  # sealed again: the reader's own checks must find the edit
    path = err_ws.inp / "report.json"
    path.write_text(json.dumps(rec))
    err_expect_failure(err_ws, ["info", path], capsys, expect=("report.json",))


# --------------------------------------------------------------------------- shape/class-count mismatch


MISMATCH = {
    "eval digits model on spurious-digits": lambda a, o: [
        "eval",
        "--in",
        a.model,
        "--data",
        "spurious-digits",
        "--out",
        o / "e.json",
    ],
    "perturb digits model on spurious-digits": lambda a, o: [
        "perturb",
        "--in",
        a.model,
        "--data",
        "spurious-digits",
        "--out",
        o / "p.h5",
    ],
}


@pytest.mark.parametrize("case", list(MISMATCH))
def test_shape_mismatch(err_ws, capsys, case):
    line = err_expect_failure(err_ws, MISMATCH[case](err_ws.art, err_ws.out), capsys, expect=("model.pt", "shape"))
    assert "(1, 8, 8)" in line and "(3, 28, 28)" in line


def test_class_count_mismatch(err_ws, capsys):
    """Same input shape, other class count: a valid 2-class dataset of 1x8x8 images (no built-in has one, so
    relabel a digits dataset file) given to the 10-class digits model."""
    path = _tampered(
        err_ws.art.dataset,
        err_ws.inp / "two-class.h5",
        _record(
            lambda r: (r["dataset"].__setitem__("num_classes", 2), r["dataset"].__setitem__("class_names", ["a", "b"]))
        ),
    )
    # labels go up to 9, so the file itself is refused first; make the labels fit 2 classes
    with h5py.File(path, "r+") as f:
        for split in ("train", "val", "test"):
            y = f[f"{split}/y"][...] % 2
            del f[f"{split}/y"]
            f.create_dataset(f"{split}/y", data=y)
    reseal(path)
    for argv in (
        ["eval", "--in", err_ws.art.model, "--data", path],
        ["perturb", "--in", err_ws.art.model, "--data", path, "--out", err_ws.out / "p.h5"],
    ):
        err_expect_failure(err_ws, argv, capsys, expect=("classes",))


# ------------------------------------------------------------------------------- impossible option values


def _train(*extra):
    return lambda a, o: ["train", "--data", "digits", "--arch", "mlp", "--epochs", "1", "--out", o / "t.pt", *extra]


def _train_raw(*args):
    return lambda a, o: ["train", *args]


def _perturb(*extra):
    return lambda a, o: ["perturb", "--in", a.model, "--out", o / "p.h5", "--limit", "5", *extra]


def _retrain(*extra):
    return lambda a, o: ["retrain", "--in", a.pgd, "--out", o / "r.pt", "--epochs", "1", *extra]


def _eval(*extra):
    return lambda a, o: ["eval", "--in", a.model, "--out", o / "e.json", *extra]


def _data(spec, *extra):
    return lambda a, o: ["data", spec, "--out", o / "d.h5", *extra]


def _density(*extra):
    return lambda a, o: ["density", "--in", a.model, "--out", o / "q.h5", *extra]


# id -> (argv builder, words the message must contain)
BAD_OPTIONS: dict[str, tuple[Callable, tuple[str, ...]]] = {
    # train
    "train --epochs 0": (_train("--epochs", "0"), ("--epochs",)),
    "train --epochs -1": (_train("--epochs", "-1"), ("--epochs",)),
    "train --epochs abc": (_train("--epochs", "abc"), ("--epochs",)),
    "train --lr -1": (_train("--lr", "-1"), ("--lr",)),
    "train --lr 0": (_train("--lr", "0"), ("--lr",)),
    "train --lr nan": (_train("--lr", "nan"), ("--lr",)),
    "train --lr inf": (_train("--lr", "inf"), ("--lr",)),
    "train --batch-size 0": (_train("--batch-size", "0"), ("--batch-size",)),
    "train --batch-size -5": (_train("--batch-size", "-5"), ("--batch-size",)),
    "train --momentum 1": (_train("--momentum", "1"), ("--momentum",)),
    "train --weight-decay -1": (_train("--weight-decay", "-1"), ("--weight-decay",)),
    "train --weight-decay nan": (_train("--weight-decay", "nan"), ("--weight-decay",)),
    "train --nesterov with adam": (_train("--nesterov", "--optimizer", "adam"), ("--nesterov",)),
    "train --seed -1": (_train("--seed", "-1"), ("--seed",)),
    "train --seed 2**64": (_train("--seed", str(2**64)), ("--seed",)),
    "train --arch bogus": (_train("--arch", "bogus"), ("bogus",)),
    "train --optimizer bogus": (_train("--optimizer", "bogus"), ("--optimizer", "bogus")),
    "train --schedule bogus": (_train("--schedule", "bogus"), ("--schedule", "bogus")),
    "train --recipe bogus": (_train("--recipe", "bogus"), ("recipe", "bogus")),
    "train --select bogus": (_train("--select", "bogus"), ("--select", "bogus")),
    "train --select val-worst-group on digits": (_train("--select", "val-worst-group"), ("--select", "group")),
    "train --device bogus": (_train("--device", "bogus"), ("device", "bogus")),
    "train --device cuda:99": (_train("--device", "cuda:99"), ("cuda",)),
    "train --arch-arg bogus=1": (_train("--arch-arg", "bogus=1"), ("bogus",)),
    "train --arch-arg without =": (_train("--arch-arg", "width"), ("--arch-arg",)),
    "train --arch-arg width=abc": (_train("--arch-arg", "width=abc"), ("width",)),
    "train --weights on an arch without weights": (_train("--weights", "nope.pth"), ("mlp", "weights")),
    "train --weights missing": (_train("--arch", "resnet18", "--weights", "nope.pth"), ("nope.pth", "not exist")),
    "train --weights not a state dict": (
        lambda a, o: _train("--arch", "resnet18", "--weights", a.report)(a, o),
        ("eval.json",),
    ),
    "train --weights is a checkpoint": (
        lambda a, o: _train("--arch", "resnet18", "--weights", a.model)(a, o),
        ("model.pt",),
    ),
    "train --data bogus": (_train("--data", "bogus"), ("bogus",)),
    "train --data empty": (_train("--data", ""), ("data",)),
    "train --data spurious-digits:correlation=2": (_train("--data", "spurious-digits:correlation=2"), ("correlation",)),
    "train --data spurious-digits:correlation=abc": (
        _train("--data", "spurious-digits:correlation=abc"),
        ("correlation",),
    ),
    "train --data spurious-digits:bogus=1": (_train("--data", "spurious-digits:bogus=1"), ("bogus",)),
    "train --data spurious-digits:size=4": (_train("--data", "spurious-digits:size=4"), ("size",)),
    "train --data digits:bogus=1": (_train("--data", "digits:bogus=1"), ("bogus",)),
    "train --bogus": (_train("--bogus"), ("--bogus",)),
    "train missing --out": (_train_raw("--data", "digits"), ("--out",)),
    "train --out empty": (_train_raw("--data", "digits", "--out", ""), ("empty",)),
    "train --out ending in /": (
        lambda a, o: _train_raw("--data", "digits", "--out", f"{o}/new.pt/")(a, o),
        ("folder",),
    ),
    "train extra argument": (_train("extra"), ("extra",)),
    # perturb
    "perturb --eps -1": (_perturb("--eps", "-1"), ("--eps",)),
    "perturb --eps 0": (_perturb("--eps", "0"), ("--eps",)),
    "perturb --eps nan": (_perturb("--eps", "nan"), ("--eps",)),
    "perturb --eps inf": (_perturb("--eps", "inf"), ("--eps",)),
    "perturb --steps 0": (_perturb("--steps", "0"), ("--steps",)),
    "perturb --steps -3": (_perturb("--steps", "-3"), ("--steps",)),
    "perturb --step-size -1": (_perturb("--step-size", "-1"), ("--step-size",)),
    "perturb --step-size nan": (_perturb("--step-size", "nan"), ("--step-size",)),
    "perturb --limit 0": (_perturb("--limit", "0"), ("--limit",)),
    "perturb --limit -1": (_perturb("--limit", "-1"), ("--limit",)),
    "perturb --batch-size 0": (_perturb("--batch-size", "0"), ("--batch-size",)),
    "perturb --seed -1": (_perturb("--seed", "-1"), ("--seed",)),
    "perturb --targets bogus": (_perturb("--targets", "bogus"), ("--targets", "bogus")),
    "perturb --method bogus": (_perturb("--method", "bogus"), ("method", "bogus")),
    "perturb --loss bogus": (_perturb("--loss", "bogus"), ("loss", "bogus")),
    "perturb --step with pgd-l2": (_perturb("--step", "sign"), ("--step",)),
    "perturb --projection bogus": (_perturb("--method", "pgd-linf", "--projection", "bogus"), ("--projection",)),
    "perturb --split bogus": (_perturb("--split", "bogus"), ("split", "bogus")),
    "perturb --param unknown key": (_perturb("--param", "bogus=1"), ("bogus",)),
    "perturb --param without =": (_perturb("--param", "eps"), ("--param", "KEY=VALUE")),
    "perturb --param eps=abc": (_perturb("--param", "eps=abc"), ("eps",)),
    "perturb --device bogus": (_perturb("--device", "bogus"), ("device", "bogus")),
    "perturb --data bogus": (_perturb("--data", "bogus"), ("bogus",)),
    "perturb --bogus": (_perturb("--bogus"), ("--bogus",)),
    "perturb missing --out": (lambda a, o: ["perturb", "--in", a.model], ("--out",)),
    "perturb missing --in": (lambda a, o: ["perturb", "--out", o / "p.h5"], ("--in",)),
    # retrain
    "retrain --epochs 0": (_retrain("--epochs", "0"), ("--epochs",)),
    "retrain --epochs -1": (_retrain("--epochs", "-1"), ("--epochs",)),
    "retrain --lr -1": (_retrain("--lr", "-1"), ("--lr",)),
    "retrain --lr nan": (_retrain("--lr", "nan"), ("--lr",)),
    "retrain --batch-size 0": (_retrain("--batch-size", "0"), ("--batch-size",)),
    "retrain --seed -1": (_retrain("--seed", "-1"), ("--seed",)),
    "retrain --init bogus": (_retrain("--init", "bogus"), ("--init", "bogus")),
    "retrain --init pretrained without --weights": (_retrain("--init", "pretrained"), ("--weights",)),
    "retrain --arch bogus": (_retrain("--arch", "bogus"), ("bogus",)),
    "retrain --arch-arg bogus=1": (_retrain("--arch-arg", "bogus=1"), ("bogus",)),
    "retrain --optimizer bogus": (_retrain("--optimizer", "bogus"), ("--optimizer",)),
    "retrain --select bogus": (_retrain("--select", "bogus"), ("--select",)),
    "retrain --select val-worst-group on digits": (_retrain("--select", "val-worst-group"), ("--select",)),
    "retrain --device bogus": (_retrain("--device", "bogus"), ("device",)),
    "retrain --bogus": (_retrain("--bogus"), ("--bogus",)),
    "retrain missing --out": (lambda a, o: ["retrain", "--in", a.pgd], ("--out",)),
    # eval
    "eval --split bogus": (_eval("--split", "bogus"), ("split", "bogus")),
    "eval --split empty": (_eval("--split", ""), ("--split",)),
    "eval --batch-size 0": (_eval("--batch-size", "0"), ("--batch-size",)),
    "eval --device bogus": (_eval("--device", "bogus"), ("device", "bogus")),
    "eval --data bogus": (_eval("--data", "bogus"), ("bogus",)),
    "eval --data spurious-digits:correlation=2": (_eval("--data", "spurious-digits:correlation=2"), ("correlation",)),
    "eval --bogus": (_eval("--bogus"), ("--bogus",)),
    "eval missing --in": (lambda a, o: ["eval"], ("--in",)),
    # data
    "data bogus": (_data("bogus"), ("bogus",)),
    "data spurious-digits:correlation=2": (_data("spurious-digits:correlation=2"), ("correlation",)),
    "data spurious-digits:correlation=0.2": (_data("spurious-digits:correlation=0.2"), ("correlation",)),
    "data spurious-digits:bogus=1": (_data("spurious-digits:bogus=1"), ("bogus",)),
    "data spurious-digits:seed=x": (_data("spurious-digits:seed=x"), ("seed",)),
    "data --bogus": (_data("digits", "--bogus"), ("--bogus",)),
    # info
    "info without a file": (lambda a, o: ["info"], ("FILE",)),
    # top level
    "unknown command": (lambda a, o: ["bogus"], ("bogus",)),
    "unknown top-level option": (lambda a, o: ["--bogus"], ("--bogus",)),
    "completion bogus shell": (lambda a, o: ["completion", "bogus"], ("bogus",)),
    # density
    "density --kind bogus": (_density("--kind", "bogus"), ("bogus",)),
    "density --kind feature-vae": (_density("--kind", "feature-vae"), ("vae",)),
    "density --fit-on bogus": (_density("--fit-on", "bogus"), ("--fit-on", "bogus")),
    "density -p bogus=1": (_density("-p", "bogus=1"), ("bogus",)),
    "density -p without =": (_density("-p", "bandwidth"), ("KEY=VALUE",)),
    "density kde -p bandwidth=-1": (_density("-p", "bandwidth=-1"), ("bandwidth",)),
    "density kde -p max_points=0": (_density("-p", "max_points=0"), ("max_points",)),
    "density gmm -p components=0": (_density("--kind", "gmm", "-p", "components=0"), ("components",)),
    "density gmm -p covariance=bogus": (_density("--kind", "gmm", "-p", "covariance=bogus"), ("covariance",)),
    "density knn -p k=0": (_density("--kind", "knn", "-p", "k=0"), ("k",)),
    "density vae -p epochs=0": (_density("--kind", "vae", "-p", "epochs=0"), ("epochs",)),
    "density vae -p lr=-1": (_density("--kind", "vae", "-p", "lr=-1"), ("lr",)),
    "density --seed -1": (_density("--seed", "-1"), ("--seed",)),
    "density --device bogus": (_density("--device", "bogus"), ("device", "bogus")),
    "density --out .pt": (lambda a, o: ["density", "--in", a.model, "--out", o / "q.pt"], (".h5",)),
    "density missing --in": (lambda a, o: ["density", "--out", o / "q.h5"], ("--in",)),
    "density missing --out": (lambda a, o: ["density", "--in", a.model], ("--out",)),
    # resume
    "train --save-every -1": (_train("--save-every", "-1"), ("--save-every",)),
    "train --save-every nan": (_train("--save-every", "nan"), ("--save-every",)),
    "retrain --save-every -5": (_retrain("--save-every", "-5"), ("--save-every",)),
    # data, more
    "data --out .pt": (lambda a, o: ["data", "digits", "--out", o / "d.pt"], (".h5",)),
    "data empty spec": (_data(""), ("data",)),
    "data folder": (lambda a, o: ["data", str(o)], ("folder",)),
    "data spurious-digits:size=abc": (_data("spurious-digits:size=abc"), ("size",)),
    "data spurious-digits:train_copies=0": (_data("spurious-digits:train_copies=0"), ("train_copies",)),
    # info, verify
    "info two files": (lambda a, o: ["info", a.model, a.pgd], ("extra argument",)),
    "verify without a file": (lambda a, o: ["verify"], ("FILE",)),
    "verify --bogus": (lambda a, o: ["verify", "--bogus", a.model], ("--bogus",)),
}

# --device cuda is only bad input where there is no GPU.
for _cmd, _mk in (("train", _train), ("perturb", _perturb), ("retrain", _retrain), ("eval", _eval)):
    BAD_OPTIONS[f"{_cmd} --device cuda without a GPU"] = (_mk("--device", "cuda"), ("cuda",))
_NEEDS_NO_GPU = {k for k in BAD_OPTIONS if k.endswith("--device cuda without a GPU")}


def _bad_option_cases():
    no_gpu = pytest.mark.skipif(
        torch.cuda.is_available(), reason="a CUDA GPU is present, so --device cuda is valid here"
    )
    return [pytest.param(c, marks=[no_gpu] if c in _NEEDS_NO_GPU else []) for c in BAD_OPTIONS]


@pytest.mark.parametrize("case", _bad_option_cases())
def test_bad_option(err_ws, capsys, case):
    argv_of, words = BAD_OPTIONS[case]
    err_expect_failure(err_ws, argv_of(err_ws.art, err_ws.out), capsys, expect=words)


# --------------------------------------------------------------------------------------- --config files


CONFIGS: dict[str, tuple[str | None, Callable, tuple[str, ...]]] = {
    "missing": (None, _train(), ("--config", "does not exist")),
    "not yaml": ("epochs: [1, 2\nlr: {\n", _train(), ("--config", "YAML")),
    "binary": ("\x00\x01\x02\xff", _train(), ("--config",)),
    "yaml list": ("- epochs\n- 3\n", _train(), ("--config", "mapping")),
    "yaml scalar": ("just a string\n", _train(), ("--config", "mapping")),
    "unknown key": ("bogus: 1\n", _train(), ("--config", "bogus")),
    "key of another command": ("eps: 1.0\n", _train(), ("--config", "eps")),
    "wrong type": ("epochs: abc\n", _train_raw("--data", "digits", "--out", "out/t.pt"), ("epochs",)),
    "wrong type list": ("lr: [1, 2]\n", _train_raw("--data", "digits", "--out", "out/t.pt"), ("lr",)),
    "impossible value": ("epochs: 0\n", _train_raw("--data", "digits", "--out", "out/t.pt"), ("--epochs",)),
    "perturb impossible eps": ("eps: -1\n", _perturb(), ("--eps",)),
    "perturb unknown param": ("param:\n  bogus: 1\n", _perturb(), ("bogus",)),
    "eval wrong split": ("split: [bogus]\n", lambda a, o: ["eval", "--in", a.model], ("bogus",)),
}


@pytest.mark.parametrize("case", list(CONFIGS))
def test_bad_config(err_ws, capsys, case):
    text, argv_of, words = CONFIGS[case]
    cfg = err_ws.inp / "config.yaml"
    if text is not None:
        cfg.write_bytes(text.encode("latin-1"))
    argv = argv_of(err_ws.art, err_ws.out) + ["--config", cfg]
    err_expect_failure(err_ws, argv, capsys, expect=words)


# ------------------------------------------------------------------------------------------- outputs


# command -> (argv builder taking the output path, the right extension)
WRITERS: dict[str, tuple[Callable, str]] = {
    "train": (lambda a, out: ["train", "--data", "digits", "--arch", "mlp", "--epochs", "1", "--out", out], ".pt"),
    "perturb": (lambda a, out: ["perturb", "--in", a.model, "--out", out, "--limit", "5", "--steps", "2"], ".h5"),
    "retrain": (lambda a, out: ["retrain", "--in", a.pgd, "--out", out, "--epochs", "1"], ".pt"),
    "eval": (lambda a, out: ["eval", "--in", a.model, "--split", "test", "--out", out], ".json"),
    "data": (lambda a, out: ["data", "digits", "--out", out], ".h5"),
}
WRONG_EXT = {".pt": ".h5", ".h5": ".pt", ".json": ".txt"}


def _output_cases():
    for cmd in WRITERS:
        for kind in ("no-such-folder", "output-is-a-folder", "wrong-extension", "no-extension", "exists"):
            yield pytest.param(cmd, kind, id=f"{cmd}-{kind}")


@pytest.mark.parametrize("cmd,kind", list(_output_cases()))
def test_bad_output(err_ws, capsys, cmd, kind):
    argv_of, ext = WRITERS[cmd]
    out = err_ws.out / f"result{ext}"
    words: tuple[str, ...] = ()
    if kind == "no-such-folder":
        out = err_ws.out / "missing-folder" / f"result{ext}"
        words = ("missing-folder", "does not exist")
    elif kind == "output-is-a-folder":
        out.mkdir()
        (out / "keep.txt").write_text("keep me")
        words = ("folder",)
    elif kind == "wrong-extension":
        out = err_ws.out / f"result{WRONG_EXT[ext]}"
        words = (ext,)
    elif kind == "no-extension":
        out = err_ws.out / "result"
        words = (ext,)
    elif kind == "exists":
        out.write_bytes(b"precious bytes that must survive")
        words = ("exists", "--force")
    err_expect_failure(err_ws, argv_of(err_ws.art, out), capsys, expect=(out.name, *words))
    if kind == "exists":
        assert out.read_bytes() == b"precious bytes that must survive"


@pytest.mark.parametrize("cmd", list(WRITERS))
def test_force_replaces_existing_output(err_ws, capsys, cmd):
    argv_of, ext = WRITERS[cmd]
    out = err_ws.out / f"result{ext}"
    out.write_bytes(b"old bytes")
    code, _, err = err_call(argv_of(err_ws.art, out) + ["--force", "--json"], capsys)
    assert code == 0, err
    assert out.read_bytes() != b"old bytes"
    from lfpcli.artifacts import read_record

    record, _ = read_record(out)
    assert record["kind"] in ("checkpoint", "perturbed-set", "dataset", "eval")
    assert sorted(p.name for p in err_ws.out.iterdir()) == [out.name], "something else was left in the output folder"


@pytest.mark.parametrize("cmd", ["perturb", "retrain", "eval"])
def test_force_with_bad_input_keeps_existing_output(err_ws, capsys, cmd):
    """--force only replaces the output when the command succeeds."""
    _, ext = WRITERS[cmd]
    out = err_ws.out / f"result{ext}"
    out.write_bytes(b"precious")
    bad = err_ws.inp / ("bad.h5" if cmd == "retrain" else "bad.pt")
    bad.write_bytes(b"garbage" * 100)
    argv = {
        "perturb": ["perturb", "--in", bad, "--out", out, "--force"],
        "retrain": ["retrain", "--in", bad, "--out", out, "--force"],
        "eval": ["eval", "--in", bad, "--out", out, "--force"],
    }[cmd]
    err_expect_failure(err_ws, argv, capsys, expect=(bad.name,))
    assert out.read_bytes() == b"precious"


def test_failure_mid_write_leaves_nothing(err_ws, capsys, monkeypatch):
    """A failure after the temporary output was opened (here: the solver raises) leaves no file behind."""
    import dataclasses

    import lfpcli.solvers as solvers
    from lfpcli.errors import InputError

    def boom(*a, **k):
        raise InputError("simulated failure while writing")

    spec = solvers.get_solver("pgd-l2")
    monkeypatch.setitem(solvers._SOLVERS, "pgd-l2", dataclasses.replace(spec, fn=boom))
    out = err_ws.out / "p.h5"
    err_expect_failure(
        err_ws, ["perturb", "--in", err_ws.art.model, "--out", out, "--limit", "5"], capsys, expect=("simulated",)
    )


@pytest.mark.parametrize("cmd", ["eval", "perturb"])
def test_folder_becomes_unwritable_mid_run(err_ws, capsys, monkeypatch, cmd):
    """The folder passes the up-front check but creating the temporary output fails later (a race, a mount
    going read-only): still one line naming the output, no temp file."""
    import tempfile

    import lfpcli.artifacts.files as files

    real, calls = tempfile.mkstemp, []

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) > 2:  # the first checks pass; the real write fails
            raise PermissionError(13, "Permission denied", os.path.join(k.get("dir", "."), "x.part"))
        return real(*a, **k)

    monkeypatch.setattr(files.tempfile, "mkstemp", flaky)
    argv_of, ext = WRITERS[cmd]
    out = err_ws.out / f"result{ext}"
    line = err_expect_failure(err_ws, argv_of(err_ws.art, out), capsys, expect=(out.name, "permission denied"))
    assert ".part" not in line


# -------------------------------------------------------------------------------- unwritable folders


# Run as root, drops the capabilities that let root ignore permissions from the bounding set (prctl
# PR_CAPBSET_DROP = 24; CAP_DAC_OVERRIDE = 1, CAP_DAC_READ_SEARCH = 2), then execs its arguments, which come up
# without them: what `setpriv --bounding-set=-dac_override,-dac_read_search` does, with nothing to install.
_DROP_DAC = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for cap in (1, 2):
    if libc.prctl(24, cap, 0, 0, 0) != 0:
        sys.exit(f"prctl(PR_CAPBSET_DROP, {cap}) failed: {os.strerror(ctypes.get_errno())}")
os.execv(sys.argv[1], sys.argv[1:])
"""


def _unprivileged_prefix(folder: Path) -> list[str]:
    """How to run lfp so that a chmod-555 folder really is read-only: nothing for a normal user; for root, a
    process that drops the capabilities that let root ignore permissions before it execs lfp."""
    probe = folder / ".probe"
    try:
        probe.touch()
    except PermissionError:
        return []
    probe.unlink()
    pre = [sys.executable, "-c", _DROP_DAC]
    r = subprocess.run([*pre, sys.executable, "-c", f"open({str(probe)!r}, 'w')"], capture_output=True, text=True)
    assert r.returncode != 0, f"root could not give up CAP_DAC_OVERRIDE, so no folder is read-only for it: {r.stderr}"
    return pre


_MANY = """
import contextlib, io, json, os, sys
from lfpcli.cli.app import main
results = []
for argv, fool_access in json.loads(sys.argv[1]):
    if fool_access:  # as with ACLs or a read-only mount: os.access says yes, writing fails
        os.access = lambda *a, **k: True
    out, err = io.StringIO(), io.StringIO()
    code = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as e:
            code = e.code
    results.append([code, out.getvalue(), err.getvalue()])
print(json.dumps(results))
"""


def _run_many(cmds: list[tuple[list, bool]], *, cwd: Path, pre: list[str]) -> list[tuple[int, str, str]]:
    """Run several ``lfp`` commands in one fresh process (one interpreter start for all)."""
    env = {k: v for k, v in os.environ.items() if k not in ("LFP_DEBUG", "LFP_PROGRESS")}
    args = json.dumps([[[str(a) for a in argv], fool] for argv, fool in cmds])
    r = subprocess.run(
        [*pre, sys.executable, "-c", _MANY, args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    return [tuple(x) for x in json.loads(r.stdout.strip().splitlines()[-1])]


def test_read_only_output_folder(err_ws):
    """chmod 555 output folder, for every command that writes; each once as is (lfp's up-front check refuses
    it) and once with os.access fooled into saying yes (as with ACLs or a read-only mount), where the real
    write attempt must fail just as cleanly. Root ignores permissions, so as root lfp runs without
    CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH. All in one process, to pay for one interpreter start."""
    ro = err_ws.root / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        pre = _unprivileged_prefix(ro)
        outs = {cmd: ro / f"result{ext}" for cmd, (_, ext) in WRITERS.items()}
        cmds = [
            (argv_of(err_ws.art, outs[cmd]), fool) for fool in (False, True) for cmd, (argv_of, _) in WRITERS.items()
        ]
        before = err_snapshot(err_ws.root)
        results = _run_many(cmds, cwd=err_ws.root, pre=pre)
        for (argv, fool), (code, stdout, stderr) in zip(cmds, results):
            name = Path(argv[argv.index("--out") + 1]).name
            line = err_assert_one_line(
                code, stdout, stderr, expect=(name, "permission" if fool else "writ"), argv=argv, hide=err_ws.root
            )
            assert ".part" not in line, f"the message names the temporary file instead of the output: {line}"
        assert err_snapshot(err_ws.root) == before
    finally:
        ro.chmod(0o755)
