"""On-disk formats: round trips, safe loading, provenance, atomic writes."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from lfpcli.artifacts import (
    atomic_output,
    load_checkpoint,
    make_record,
    open_h5,
    parent_entry,
    parent_status,
    read_record,
    sha256_file,
)
from lfpcli.artifacts.datasets import PERTURBED_METRICS, read_dataset, read_perturbed_set, write_dataset
from lfpcli.errors import ArtifactError, OutputExistsError


def test_checkpoint_loads_in_plain_torch_with_weights_only(digits_model):
    obj = torch.load(digits_model, weights_only=True)
    assert set(obj) == {"state_dict", "meta"}
    meta = obj["meta"]
    for key in (
        "kind",
        "schema",
        "command",
        "params",
        "seeds",
        "versions",
        "device",
        "created",
        "parents",
        "model",
        "init",
        "data",
        "train",
        "metrics",
    ):
        assert key in meta, key
    assert meta["kind"] == "checkpoint" and meta["model"]["arch"] == "small-cnn"
    assert meta["model"]["pixel_range"] == [0.0, 1.0]
    assert meta["params"]["epochs"] == 3 and meta["seeds"]["seed"] == 0
    assert json.loads(json.dumps(meta)) == meta  # plain JSON types only


def test_checkpoint_round_trip_rebuilds_the_same_model(digits_model):
    from lfpcli.commands.common import load_model

    model, meta = load_model(digits_model, torch.device("cpu"))
    sd, meta2 = load_checkpoint(digits_model)
    assert meta == meta2
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k])


def test_code_in_a_pickle_is_never_run(tmp_path):
    sentinel = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {sentinel}",))

    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "meta": Evil()}, path)
    with pytest.raises(ArtifactError, match="refuses"):
        load_checkpoint(path)
    assert not sentinel.exists()


def test_perturbed_set_layout(digits_pgd):
    with h5py.File(digits_pgd, "r") as f:
        assert f.attrs["lfp_kind"] == "perturbed-set"
        for name in ("x", "y", "target", "group", "index"):
            assert f[name].shape[0] == 64
            assert f[name].compression == "gzip" and f[name].chunks is not None
        assert f["x"].dtype == np.float32 and f["x"].shape == (64, 1, 8, 8)
        for name in PERTURBED_METRICS:
            assert f[f"metrics/{name}"].shape == (64,)
        rec = json.loads(f.attrs["lfp_record"])
        assert (f["group"][...] == -1).all()
    assert rec["params"]["targets"] == "random" and rec["params"]["method"] == "pgd-l2"
    arrays, metrics, record = read_perturbed_set(digits_pgd)
    assert (metrics["l2"] <= 1.0 + 1e-5).all()
    assert np.allclose(
        metrics["l2"], np.linalg.norm((arrays["x"] - _clean(arrays["index"])).reshape(64, -1), axis=1), atol=1e-5
    )


def _clean(index):
    from lfpcli.artifacts.dataspec import resolve

    return resolve("digits").splits["train"].x.numpy()[index]


def test_parent_hashes_and_changed_parent(tmp_path, digits_model):
    copy = tmp_path / "m.pt"
    copy.write_bytes(digits_model.read_bytes())
    rec = make_record("eval", {}, parents=[parent_entry("model", copy, "checkpoint")])
    assert rec["parents"][0]["sha256"] == sha256_file(copy)
    assert parent_status(rec)[0]["status"] == "ok"
    with open(copy, "ab") as f:
        f.write(b"x")
    assert parent_status(rec)[0]["status"] == "changed"
    copy.unlink()
    assert parent_status(rec)[0]["status"] == "missing"


def test_atomic_output_leaves_nothing_on_failure_and_never_overwrites(tmp_path):
    out = tmp_path / "a.h5"
    with pytest.raises(RuntimeError):
        with atomic_output(out) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("solver failed")
    assert list(tmp_path.iterdir()) == []
    out.write_bytes(b"old")
    with pytest.raises(OutputExistsError):
        with atomic_output(out):
            pass
    assert out.read_bytes() == b"old"
    with atomic_output(out, force=True) as tmp:
        tmp.write_bytes(b"new")
    assert out.read_bytes() == b"new" and len(list(tmp_path.iterdir())) == 1


def test_force_removes_the_partial_files_earlier_killed_runs_left(tmp_path):
    """A run killed while writing leaves its output under a hidden temporary name (``.NAME.XXXXXXXX.part``, nothing
    can remove it); ``--force`` (which starts that output over) removes them, and nothing else."""
    out = tmp_path / "r.json"
    stale = [tmp_path / ".r.json.k2x9_a0b.part", tmp_path / ".r.json.zz11yy22.part"]
    others = [
        tmp_path / ".r.json.resume.abcdefgh.part",
        tmp_path / ".other.json.abcdefgh.part",
        tmp_path / "r.json.part",
    ]
    for f in stale + others:
        f.write_bytes(b"half a file")
    with atomic_output(out) as tmp:  # without --force they are left alone: they may be another run's, still writing
        tmp.write_bytes(b"{}")
    assert all(f.exists() for f in stale)
    with atomic_output(out, force=True) as tmp:
        tmp.write_bytes(b"{}")
    assert not any(f.exists() for f in stale) and all(f.exists() for f in others)


def test_dataset_file_round_trip(tmp_path):
    from lfpcli.artifacts.dataspec import resolve

    ds = resolve("digits")
    path = tmp_path / "d.h5"
    write_dataset(path, ds, make_record("dataset", {"data": ds.spec}))
    back = read_dataset(path)
    for k in ds.splits:
        assert torch.equal(back.splits[k].x, ds.splits[k].x) and torch.equal(back.splits[k].y, ds.splits[k].y)
    assert back.num_classes == 10 and back.mean == ds.mean
    record, contents = read_record(path)
    assert record["kind"] == "dataset" and "train/x" in contents["datasets"]


def test_wrong_kind_is_named(digits_pgd):
    with pytest.raises(ArtifactError, match="perturbed-set file; expected dataset"):
        open_h5(digits_pgd, ["dataset"])


def test_record_keeps_the_cpu_thread_count():
    """CPU results depend on the number of torch threads (summation order), so every record names it."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert make_record("eval", {})["threads"] == 1
        torch.set_num_threads(2)
        assert make_record("eval", {})["threads"] == 2
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------------ resume fingerprints

FINGERPRINT = {
    "command": "perturb",
    "params": {
        "method": "pgd-l0",
        "config": {"steps": 40, "eps": 0.5, "lo": [0.0]},
        "seed": 0,
        "data": {"name": "digits", "params": {"seed": 0}},
    },
    "inputs": {"model": "a" * 64, "density": "b" * 64},
    "lfpcli": "0.1.0",
    "device": "cpu",
    "cpu_threads": 2,
}


def _leaves(obj, path=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, (*path, k))
    else:
        yield path


def _with(obj, path, change):
    """A copy of ``obj`` with ``change(dict, key)`` applied at ``path``."""
    import copy

    out = copy.deepcopy(obj)
    d = out
    for k in path[:-1]:
        d = d[k]
    change(d, path[-1])
    return out


def test_a_resume_is_refused_whatever_part_of_the_fingerprint_differs(tmp_path):
    from lfpcli.artifacts.resume import Sidecar
    from lfpcli.errors import InputError

    out = tmp_path / "o.h5"
    Sidecar(out, FINGERPRINT, resume=False, force=False).save("batch-000000", {"x": torch.ones(2)})
    changes = []
    for path in _leaves(FINGERPRINT):
        changes.append(
            (
                path,
                _with(
                    FINGERPRINT,
                    path,
                    lambda d, k: d.__setitem__(k, [d[k]] if not isinstance(d[k], list) else d[k] + [1]),
                ),
            )
        )
        changes.append((path, _with(FINGERPRINT, path, lambda d, k: d.pop(k))))  # gone
        changes.append(
            (path, _with(FINGERPRINT, path, lambda d, k: d.__setitem__(k + "_new", 1)))
        )  # one more beside it
    for _, other in changes:
        with pytest.raises(InputError, match="another command"):
            Sidecar(out, other, resume=True, force=False)
    side = Sidecar(out, json.loads(json.dumps(FINGERPRINT)), resume=True, force=False)  # the same: resumed
    assert side.units() == ["batch-000000"]


def test_the_run_fingerprint_changes_with_every_input_but_the_device_as_given(monkeypatch):
    from lfpcli import version
    from lfpcli.artifacts.resume import run_fingerprint

    params = {
        "method": "pgd-l0",
        "config": {"steps": 40, "eps": 0.5},
        "seed": 0,
        "targets": "next",
        "device": "auto",
        "execution": {"device": "cpu", "precision": "fp32"},
    }
    parents = [
        {"role": "model", "sha256": "a" * 64, "path": "m.pt"},
        {"role": "data", "sha256": "b" * 64, "path": "d.h5"},
    ]
    cpu = torch.device("cpu")
    want = run_fingerprint("perturb", params, parents, cpu)
    assert run_fingerprint("perturb", {**params, "device": "cpu"}, parents, cpu) == want  # "auto" and "cpu": one device
    others = [
        run_fingerprint("train", params, parents, cpu),
        run_fingerprint("perturb", params, parents[:1], cpu),
        run_fingerprint("perturb", params, [*parents, {"role": "mask", "sha256": "c" * 64}], cpu),
        run_fingerprint("perturb", params, [parents[0], {**parents[1], "sha256": "c" * 64}], cpu),
        run_fingerprint("perturb", params, [parents[0], {**parents[1], "role": "density"}], cpu),
        run_fingerprint("perturb", params, parents, torch.device("cuda")),
    ]
    for path in _leaves({k: v for k, v in params.items() if k != "device"}):
        others.append(
            run_fingerprint("perturb", _with(params, path, lambda d, k: d.__setitem__(k, [d[k]])), parents, cpu)
        )
        others.append(run_fingerprint("perturb", _with(params, path, lambda d, k: d.pop(k)), parents, cpu))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        others.append(run_fingerprint("perturb", params, parents, cpu))
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setattr(version, "__version__", version.__version__ + ".post1")
    others.append(run_fingerprint("perturb", params, parents, cpu))
    for i, other in enumerate(others):
        assert other != want, i
