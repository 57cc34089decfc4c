"""Bring your own model: a user's own trained classifier, not written by lfp, through ``perturb``, ``eval``,
``density``, ``saliency`` and as the source of ``retrain``.

The user's model is a class defined here (:class:`UserNet`, trained a few steps on ``digits`` with inputs
normalised as (x - 0.5) / 0.5), saved the ways a user would: scripted and traced TorchScript, a torch.export
program (for any batch size, and for batch 1 only), and a state dict (nested, with DataParallel's ``module.``
prefix) of the class registered as an architecture. The oracle for every format is the user's module itself run
on the data by hand: lfp's accuracy must be exactly its accuracy, so normalisation, class order and batching are
right. Bad inputs follow the error contract of ``test_errors.py`` (one line, exit 2, nothing written); files
crafted to run code (a TorchScript ``__setstate__`` or forward that writes a file, an exported program with a
sympy-evaluated shape expression, pickled weights or guard code) are shown live with plain PyTorch and then
refused by lfp without the sentinel file ever appearing.
"""

from __future__ import annotations

import io
import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Tuple

import h5py
import pytest
import torch
from clirun import lfp
from test_errors import err_art, err_env, err_expect_failure, err_ws  # noqa: F401  (fixtures used by name)
from torch import nn

ARCH = "test-user-net"


class UserNet(nn.Module):
    """A user's own classifier for 1x8x8 digits, with ``features`` and ``head`` parts."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.head = nn.Linear(24, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _register() -> bool:
    """Register the user's class as ``--arch test-user-net`` (as their package would); True if this call did."""
    from lfpcli.models import list_models, register_model

    if ARCH in list_models():
        return False
    register_model(ARCH)(lambda num_classes, input_shape: UserNet(num_classes))
    return True


def _unregister() -> None:
    """Take the test architecture out again, so other tests (e.g. the completion scripts) see lfp's own list."""
    from lfpcli.models import registry

    registry._REGISTRY.pop(ARCH, None)


def _quiet():
    w = warnings.catch_warnings()
    w.__enter__()
    warnings.simplefilter("ignore")
    return w


@pytest.fixture(scope="module")
def byo(err_env, tmp_path_factory):
    """The user's trained model and its files in every format, plus the oracle: its test accuracy by hand."""
    from lfpcli.artifacts.dataspec import resolve

    torch.manual_seed(0)
    ds = resolve("digits")
    tr, te = ds.split("train"), ds.split("test")
    net = UserNet()
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(40):
        opt.zero_grad()
        nn.functional.cross_entropy(net((tr.x - 0.5) / 0.5), tr.y).backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        oracle = float((net((te.x - 0.5) / 0.5).argmax(1) == te.y).double().mean())
    d = tmp_path_factory.mktemp("byo")
    files = {
        k: d / n
        for k, n in (
            ("script", "user.ts"),
            ("trace", "traced.ts"),
            ("export", "user.pt2"),
            ("static", "static.pt2"),
            ("sd", "user_weights.pt"),
        )
    }
    w = _quiet()
    try:
        torch.jit.script(net).save(str(files["script"]))
        torch.jit.trace(net, tr.x[:4]).save(str(files["trace"]))
        torch.export.save(
            torch.export.export(net, (tr.x[:4],), dynamic_shapes=({0: torch.export.Dim("batch")},)), files["export"]
        )
        torch.export.save(torch.export.export(net, (tr.x[:1],)), files["static"])
    finally:
        w.__exit__(None, None, None)
    # as a training script saves it: nested, with DataParallel's prefix, next to other entries
    torch.save({"epoch": 40, "state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, files["sd"])
    added = _register()
    assert 0.5 < oracle < 1.0
    yield {"net": net, "oracle": oracle, "dir": d, **files}
    if added:
        _unregister()


def _eval_test_accuracy(capsys, model, *extra) -> dict:
    code, out, err = lfp("eval", "--in", model, "--data", "digits", "--split", "test", "--json", *extra, capsys=capsys)
    assert code == 0, err
    return json.loads(out)


# ---------------------------------------------------------------------------------------------- the chain


def test_torchscript_through_perturb_and_eval(byo, tmp_path, capsys):
    ts = byo["script"]
    pset = tmp_path / "pgd.h5"
    code, out, err = lfp(
        "perturb",
        "--in",
        ts,
        "--data",
        "digits",
        "--normalize",
        "0.5,0.5",
        "--out",
        pset,
        "--limit",
        "24",
        "--steps",
        "5",
        "--eps",
        "1.5",
        "--device",
        "cpu",
        "--json",
        capsys=capsys,
    )
    assert code == 0, err
    assert json.loads(out)["n"] == 24
    with h5py.File(pset) as f:
        record = json.loads(f.attrs["lfp_record"])
    model = record["source"]["model"]
    assert model["foreign"]["format"] == "torchscript" and model["arch"] == "torchscript"
    assert model["mean"] == [0.5] and model["std"] == [0.5] and model["input_shape"] == [1, 8, 8]
    parent = record["parents"][0]
    from lfpcli.artifacts import sha256_file

    assert (
        parent["kind"] == "foreign-model" and parent["format"] == "torchscript" and parent["sha256"] == sha256_file(ts)
    )
    assert "torch.jit.load" in parent["loaded_with"]
    # eval: exactly the user's own accuracy (the oracle), and the perturbed set's targets as stored
    rep = _eval_test_accuracy(capsys, ts, "--normalize", "0.5,0.5", "--out", tmp_path / "e.json")
    assert rep["splits"]["test"]["accuracy"] == pytest.approx(byo["oracle"], abs=1e-12)
    assert rep["foreign"]["format"] == "torchscript" and "not recorded" in rep["trained_on"]
    code, out, err = lfp("eval", "--in", ts, "--data", pset, "--normalize", "0.5,0.5", "--json", capsys=capsys)
    assert code == 0, err
    assert json.loads(out)["perturbed"]["agreement_with_stored_success"] == 1.0
    code, out, _ = lfp("verify", pset, tmp_path / "e.json", capsys=capsys)
    assert code == 0, out


def test_every_format_matches_the_oracle(byo, capsys):
    """Traced TorchScript, exported programs (any batch; batch 1 only, run in chunks) and the state dict read into
    the registered class give the user's own test accuracy; a wrong normalisation does not."""
    for key, extra in (("trace", ()), ("export", ()), ("static", ()), ("sd", ("--arch", ARCH))):
        rep = _eval_test_accuracy(capsys, byo[key], "--normalize", "0.5,0.5", *extra)
        assert rep["splits"]["test"]["accuracy"] == pytest.approx(byo["oracle"], abs=1e-12), key
    with torch.no_grad():
        from lfpcli.artifacts.dataspec import resolve

        te = resolve("digits").split("test")
        raw = float((byo["net"](te.x).argmax(1) == te.y).double().mean())
    rep = _eval_test_accuracy(capsys, byo["script"], "--normalize", "none")
    assert rep["splits"]["test"]["accuracy"] == pytest.approx(raw, abs=1e-12)


def test_a_batch_1_export_perturbs_as_the_dynamic_one(byo, tmp_path, capsys):
    sets = []
    for key in ("export", "static"):
        out = tmp_path / f"{key}.h5"
        code, _, err = lfp(
            "perturb",
            "--in",
            byo[key],
            "--data",
            "digits",
            "--normalize",
            "0.5,0.5",
            "--out",
            out,
            "--limit",
            "5",
            "--steps",
            "3",
            "--quiet",
            capsys=capsys,
        )
        assert code == 0, err
        with h5py.File(out) as f:
            sets.append(f["x"][()])
    assert torch.allclose(torch.from_numpy(sets[0]), torch.from_numpy(sets[1]), atol=1e-5)


def test_state_dict_of_the_users_class_through_perturb_eval_and_retrain(byo, tmp_path, capsys):
    pset = tmp_path / "cfe.h5"
    code, _, err = lfp(
        "perturb",
        "--in",
        byo["sd"],
        "--arch",
        ARCH,
        "--data",
        "digits",
        "--normalize",
        "0.5,0.5",
        "--method",
        "cfe-l2",
        "--steps",
        "5",
        "--limit",
        "16",
        "--out",
        pset,
        "--quiet",
        capsys=capsys,
    )
    assert code == 0, err
    with h5py.File(pset) as f:
        model = json.loads(f.attrs["lfp_record"])["source"]["model"]
    assert model["arch"] == ARCH and model["foreign"]["format"] == "state-dict"
    assert "module." in model["foreign"]["keys"]
    # retrain takes the architecture the weights were read into
    code, out, err = lfp("retrain", "--in", pset, "--out", tmp_path / "r.pt", "--epochs", "1", "--json", capsys=capsys)
    assert code == 0, err
    assert json.loads(out)["arch"] == ARCH


def test_retrain_from_a_torchscript_set_needs_arch(byo, err_ws, capsys):
    pset = err_ws.inp / "pgd.h5"
    code, _, err = lfp(
        "perturb",
        "--in",
        byo["script"],
        "--data",
        "digits",
        "--normalize",
        "0.5,0.5",
        "--out",
        pset,
        "--limit",
        "16",
        "--steps",
        "2",
        "--quiet",
        capsys=capsys,
    )
    assert code == 0, err
    err_expect_failure(
        err_ws,
        ["retrain", "--in", pset, "--out", err_ws.out / "r.pt", "--epochs", "1"],
        capsys,
        expect=("TorchScript", "--arch"),
    )
    code, out, err = lfp(
        "retrain", "--in", pset, "--arch", "mlp", "--out", err_ws.out / "r.pt", "--epochs", "1", "--json", capsys=capsys
    )
    assert code == 0, err
    assert json.loads(out)["arch"] == "mlp"


def test_density_saliency_and_feature_space_terms(byo, tmp_path, capsys):
    ts = byo["script"]
    common = ("--data", "digits", "--normalize", "0.5,0.5")
    code, _, err = lfp(
        "density",
        "--in",
        ts,
        *common,
        "--kind",
        "kde",
        "-p",
        "max_points=20",
        "--out",
        tmp_path / "q.h5",
        "--quiet",
        capsys=capsys,
    )
    assert code == 0, err
    # the scripted model kept its features/head parts, so a feature-space plausibility term works
    code, out, err = lfp(
        "perturb",
        "--in",
        ts,
        *common,
        "--method",
        "pcfe-l0",
        "--density",
        "feature-kde",
        "--steps",
        "2",
        "--search-steps",
        "1",
        "--limit",
        "4",
        "--out",
        tmp_path / "p.h5",
        "--json",
        capsys=capsys,
    )
    assert code == 0, err
    assert json.loads(out)["density"]["space"] == "feature"
    code, out, err = lfp(
        "saliency",
        "--in",
        ts,
        "--in",
        byo["export"],
        *common,
        "--method",
        "gradient",
        "--n",
        "3",
        "--out",
        tmp_path / "s.h5",
        "--json",
        capsys=capsys,
    )
    assert code == 0, err
    assert len(json.loads(out)["models"]) == 2


def test_a_user_checkpoint_and_an_lfp_one_side_by_side(byo, err_art, capsys):
    code, out, err = lfp(
        "eval",
        "--in",
        err_art.model,
        "--in",
        byo["script"],
        "--data",
        "digits",
        "--normalize",
        "0.5,0.5",
        "--split",
        "test",
        "--json",
        capsys=capsys,
    )
    assert code == 0, err
    models = json.loads(out)["models"]
    assert "foreign" not in models[0] and models[1]["splits"]["test"]["accuracy"] == pytest.approx(
        byo["oracle"], abs=1e-12
    )


def test_info_on_a_state_dict_says_what_it_is_and_how_to_use_it(byo, tmp_path, capsys):
    """``lfp info`` on weights saved without lfp names them (how many tensors, where, the first names) and points to
    reading them as a model lfp did not write (``--arch``), in one line, exit 2."""
    bare = tmp_path / "bare.pt"
    torch.save(byo["net"].state_dict(), bare)
    names = list(byo["net"].state_dict())
    for path, where, first in ((bare, "", names[0]), (byo["sd"], " under 'state_dict'", f"module.{names[0]}")):
        code, out, err = lfp("info", path, capsys=capsys)
        assert code == 2 and out == "" and len(err.splitlines()) == 1, err
        assert f"is a state dict of {len(names)} tensors{where} ({first}, " in err
        assert "not an lfp checkpoint" in err and "--arch NAME" in err and "--in" in err


# ---------------------------------------------------------------------------------------------- bad input


def _three_class_ts(ws) -> Path:
    p = ws.inp / "three.ts"
    w = _quiet()
    try:
        torch.jit.script(UserNet(3)).save(str(p))
    finally:
        w.__exit__(None, None, None)
    return p


BAD = {
    "no-data": (
        lambda ws, b: ["perturb", "--in", b["script"], "--normalize", "none", "--out", ws.out / "p.h5"],
        ("--data",),
    ),
    "no-normalize": (lambda ws, b: ["eval", "--in", b["script"], "--data", "digits"], ("--normalize", "none")),
    "bad-normalize": (
        lambda ws, b: ["eval", "--in", b["export"], "--data", "digits", "--normalize", "1,2,3"],
        ("--normalize",),
    ),
    "zero-std": (
        lambda ws, b: ["eval", "--in", b["export"], "--data", "digits", "--normalize", "0.5,0"],
        ("positive",),
    ),
    "sd-no-arch": (
        lambda ws, b: ["eval", "--in", b["sd"], "--data", "digits", "--normalize", "none"],
        ("--arch", "state dict"),
    ),
    "sd-wrong-arch": (
        lambda ws, b: [
            "perturb",
            "--in",
            b["sd"],
            "--arch",
            "small-cnn",
            "--data",
            "digits",
            "--normalize",
            "none",
            "--out",
            ws.out / "p.h5",
        ],
        ("does not fit", "small-cnn"),
    ),
    "sd-unknown-arch": (
        lambda ws, b: ["eval", "--in", b["sd"], "--arch", "no-such-net", "--data", "digits", "--normalize", "none"],
        ("no-such-net",),
    ),
    "ts-with-arch": (
        lambda ws, b: ["eval", "--in", b["script"], "--arch", "mlp", "--data", "digits", "--normalize", "none"],
        ("leave out --arch",),
    ),
    "lfp-with-normalize": (
        lambda ws, b: ["perturb", "--in", ws.art.model, "--normalize", "none", "--out", ws.out / "p.h5"],
        ("lfp checkpoint", "--normalize"),
    ),
    "all-lfp-with-normalize": (
        lambda ws, b: ["eval", "--in", ws.art.model, "--in", ws.art.model, "--normalize", "none"],
        ("every --in is an lfp checkpoint",),
    ),
    "wrong-classes": (
        lambda ws, b: ["eval", "--in", _three_class_ts(ws), "--data", "digits", "--normalize", "none"],
        ("outputs 3 values", "10 classes"),
    ),
    "wrong-input": (
        lambda ws, b: [
            "eval",
            "--in",
            b["script"],
            "--data",
            "spurious-digits:size=16,train_copies=1",
            "--normalize",
            "none",
        ],
        ("fails on",),
    ),
    "not-a-model": (
        lambda ws, b: ["eval", "--in", _text(ws), "--data", "digits", "--normalize", "none"],
        ("not a model lfp can read",),
    ),
    "tensor-file": (
        lambda ws, b: ["eval", "--in", _tensor(ws), "--data", "digits", "--normalize", "none", "--arch", "mlp"],
        ("not a state dict",),
    ),
    "gradcam-on-torchscript": (
        lambda ws, b: [
            "saliency",
            "--in",
            b["script"],
            "--data",
            "digits",
            "--normalize",
            "none",
            "--out",
            ws.out / "s.h5",
        ],
        ("Grad-CAM", "--method gradient"),
    ),
    "feature-density-on-export": (
        lambda ws, b: [
            "perturb",
            "--in",
            b["export"],
            "--data",
            "digits",
            "--normalize",
            "none",
            "--method",
            "pcfe-l0",
            "--density",
            "feature-kde",
            "--limit",
            "2",
            "--out",
            ws.out / "p.h5",
        ],
        ("features", "--density kde"),
    ),
}


def _text(ws) -> Path:
    p = ws.inp / "model.pt"
    p.write_text("not a model\n")
    return p


def _tensor(ws) -> Path:
    p = ws.inp / "t.pt"
    torch.save(torch.zeros(3), p)
    return p


@pytest.mark.parametrize("case", list(BAD))
def test_bad_foreign_input(byo, err_ws, capsys, case):
    argv_of, words = BAD[case]
    err_expect_failure(err_ws, argv_of(err_ws, byo), capsys, expect=words)


# ---------------------------------------------------------------------------------------------- files that run code


class _SetstateWrites(nn.Module):
    """Writes a file from its TorchScript ``__setstate__``, which ``torch.jit.load`` runs while reading."""

    def __init__(self, sentinel: str):
        super().__init__()
        self.w = torch.zeros(10, 64)
        self.sentinel = sentinel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w.t()

    @torch.jit.export
    def __getstate__(self) -> Tuple[torch.Tensor, str, bool]:
        return (self.w, self.sentinel, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[torch.Tensor, str, bool]) -> None:
        self.w = state[0]
        self.sentinel = state[1]
        self.training = state[2]
        torch.save(self.w, self.sentinel)


class _ForwardWrites(nn.Module):
    """Writes a file from its forward pass (``torch.save`` is the TorchScript operator ``aten::save``)."""

    def __init__(self, sentinel: str):
        super().__init__()
        self.lin = nn.Linear(64, 10)
        self.sentinel = sentinel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.save(x, self.sentinel)
        return self.lin(x.flatten(1))


def _rewrite(src: Path, dst: Path, edit) -> Path:
    with zipfile.ZipFile(src) as zin:
        items = [(i.filename, zin.read(i.filename)) for i in zin.infolist()]
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for name, data in items:
            zout.writestr(name, edit(name, data))
    return dst


def _edit_json(suffix: str, change):
    def edit(name, data):
        if name.endswith(suffix):
            j = json.loads(data)
            change(j)
            return json.dumps(j).encode()
        return data

    return edit


class _Evil:
    def __init__(self, sentinel: str):
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch '{self.sentinel}'",))


def _evil_expr(src, dst, s):
    def change(j):
        sizes = j["graph_module"]["graph"]["tensor_values"]["x"]["sizes"]
        sizes[0]["as_expr"]["expr_str"] = (
            f"Symbol('s77', positive=True, integer=True) + __import__('os').system('touch {s}')"
        )

    return _rewrite(src, dst, _edit_json("models/model.json", change))


def _evil_pickled_weight(src, dst, s):
    buf = io.BytesIO()
    torch.save({"w": _Evil(str(s))}, buf)
    cfg = _edit_json("model_weights_config.json", lambda j: next(iter(j["config"].values())).update(use_pickle=True))

    def edit(name, data):
        if name.endswith("data/weights/weight_0"):
            return buf.getvalue()
        return cfg(name, data)

    return _rewrite(src, dst, edit)


def _evil_guard(src, dst, s):
    return _rewrite(
        src,
        dst,
        _edit_json("models/model.json", lambda j: j.update(guards_code=[f"__import__('os').system('touch {s}') == 0"])),
    )


def _evil_ts(cls):
    def make(src, dst, s):
        w = _quiet()
        try:
            torch.jit.script(cls(str(s))).save(str(dst))
        finally:
            w.__exit__(None, None, None)
        if s.exists():
            s.unlink()
        return dst

    return make


def _run_plainly(path: Path) -> None:
    """What plain PyTorch does with the file: load it, make its module, run it once."""
    w = _quiet()
    try:
        if path.suffix == ".pt2":
            torch.export.load(str(path)).module()(torch.rand(2, 1, 8, 8))
        else:
            torch.jit.load(str(path))(torch.rand(2, 1, 8, 8))
    except Exception:
        pass
    finally:
        w.__exit__(None, None, None)


EVIL = {
    "torchscript-setstate": (".ts", _evil_ts(_SetstateWrites), ("__setstate__",)),
    "torchscript-forward-save": (".ts", _evil_ts(_ForwardWrites), ("aten::save",)),
    "export-shape-expression": (".pt2", _evil_expr, ("shape expression",)),
    "export-pickled-weight": (".pt2", _evil_pickled_weight, ("pickle",)),
    "export-guard-code": (".pt2", _evil_guard, ("guard code",)),
}


@pytest.mark.parametrize("case", list(EVIL))
def test_files_that_run_code_are_refused_unrun(byo, err_ws, capsys, tmp_path_factory, case):
    ext, make, words = EVIL[case]
    # live: plain PyTorch runs the code (in a folder of its own)
    live = tmp_path_factory.mktemp("live")
    probe = live / "SENTINEL"
    _run_plainly(make(byo["export"], live / f"m{ext}", probe))
    assert probe.exists(), "the crafted file does not run code with plain PyTorch, so the refusal below proves nothing"
    # lfp refuses it, and the code never runs
    sentinel = err_ws.root / "SENTINEL"
    model = make(byo["export"], err_ws.inp / f"m{ext}", sentinel)
    for argv in (
        ["eval", "--in", model, "--data", "digits", "--normalize", "none"],
        ["perturb", "--in", model, "--data", "digits", "--normalize", "none", "--out", err_ws.out / "p.h5"],
    ):
        err_expect_failure(err_ws, argv, capsys, expect=words)
        assert not sentinel.exists(), "lfp ran code from the model file"


def _pickled_state_dict(path: Path, sentinel: Path) -> Path:
    """A training script's torch.save file whose state dict sits next to an object that runs code when unpickled."""
    torch.save({"state_dict": {"head.weight": torch.zeros(10, 24)}, "extra": _Evil(str(sentinel))}, path)
    return path


def _plain_pickle(path: Path, sentinel: Path) -> Path:
    import pickle

    with open(path, "wb") as f:
        pickle.dump({"state_dict": _Evil(str(sentinel))}, f)
    return path


@pytest.mark.parametrize("make", [_pickled_state_dict, _plain_pickle], ids=["torch-save", "plain-pickle"])
def test_pickled_code_is_refused_unrun(byo, err_ws, capsys, tmp_path_factory, make):
    """A model file that would run code when unpickled (torch.load without weights_only, or pickle.load) is refused
    with one line and the code never runs, whatever flags it comes with."""
    live = tmp_path_factory.mktemp("live")
    probe = live / "SENTINEL"
    import pickle

    with open(make(live / "m.pt", probe), "rb") as f:
        try:
            pickle.load(f) if make is _plain_pickle else torch.load(f, weights_only=False)
        except Exception:
            pass
    assert probe.exists(), "the crafted file does not run code when unpickled, so the refusal below proves nothing"
    sentinel = err_ws.root / "SENTINEL"
    model = make(err_ws.inp / "m.pt", sentinel)
    for argv in (
        ["eval", "--in", model, "--data", "digits", "--normalize", "none", "--arch", ARCH],
        [
            "perturb",
            "--in",
            model,
            "--data",
            "digits",
            "--normalize",
            "none",
            "--arch",
            ARCH,
            "--out",
            err_ws.out / "p.h5",
        ],
        ["eval", "--in", model],
    ):
        err_expect_failure(err_ws, argv, capsys, expect=("pickled Python objects",))
        assert not sentinel.exists(), "lfp ran code from the model file"


def test_a_graph_calling_a_python_function_is_refused(byo, err_ws, capsys):
    def change(j):
        j["graph_module"]["graph"]["nodes"][0]["target"] = "torch.load"

    model = _rewrite(byo["export"], err_ws.inp / "m.pt2", _edit_json("models/model.json", change))
    err_expect_failure(
        err_ws,
        ["eval", "--in", model, "--data", "digits", "--normalize", "none"],
        capsys,
        expect=("torch.load", "not an ATen operator"),
    )


def test_an_export_in_training_mode_is_warned_about(tmp_path, capsys):
    net = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(64, 10))
    path = tmp_path / "train_mode.pt2"
    w = _quiet()
    try:
        torch.export.save(
            torch.export.export(
                net.train(), (torch.rand(2, 1, 8, 8),), dynamic_shapes=({0: torch.export.Dim("batch")},)
            ),
            path,
        )
    finally:
        w.__exit__(None, None, None)
    code, _, err = lfp(
        "eval", "--in", path, "--data", "digits", "--normalize", "none", "--split", "test", "--json", capsys=capsys
    )
    assert code == 0 and "warning:" in err and "training mode" in err
