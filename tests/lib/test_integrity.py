"""Property tests of the artifact readers and writers: what is written reads back equal, and a damaged file
(a flipped bit anywhere, a truncation, a removed dataset or attribute) is an error, never data."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lfpcli.artifacts import load_checkpoint, load_json_artifact, make_record, save_checkpoint, save_json_artifact
from lfpcli.artifacts.datasets import PerturbedSetWriter, read_dataset, read_perturbed_set, write_dataset
from lfpcli.artifacts.integrity import USERBLOCK_SIZE, is_hdf5
from lfpcli.data.dataset import Dataset, Split
from lfpcli.errors import LfpError

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A real checkpoint's metadata, to which generated state dicts and parameters are attached."""
    from lfpcli.commands import train

    path = tmp_path_factory.mktemp("tpl") / "m.pt"
    train(path, data="digits", arch="mlp", epochs=1, device="cpu")
    return torch.load(path, weights_only=True)["meta"]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
DTYPES = [torch.float32, torch.float64, torch.int64, torch.bool, torch.float16, torch.bfloat16, torch.uint8]


@st.composite
def state_dicts(draw):
    names = draw(st.lists(st.text("abcdefgh._", min_size=1, max_size=10), min_size=0, max_size=5, unique=True))
    sd = {}
    for name in names:
        shape = draw(st.lists(st.integers(0, 4), max_size=3))
        dtype = draw(st.sampled_from(DTYPES))
        seed = draw(st.integers(0, 2**31))
        t = torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 10
        sd[name] = t.to(dtype)
    return sd


def _equal_sd(a, b):
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


@SETTINGS
@given(sd=state_dicts(), extra=st.dictionaries(st.text("xyz", min_size=1, max_size=4), json_values, max_size=3))
def test_a_checkpoint_reads_back_what_was_written(template, tmp_path, sd, extra):
    meta = {**template, "params": {**template["params"], "extra": extra}}
    path = tmp_path / "c.pt"
    save_checkpoint(path, sd, meta, force=True)
    sd2, meta2 = load_checkpoint(path)
    assert _equal_sd(sd, sd2)
    assert meta2["params"]["extra"] == json.loads(json.dumps(extra))


@st.composite
def perturbed_batches(draw):
    n = draw(st.integers(0, 20))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=3, max_size=3)))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    return n, shape, g, draw(st.integers(1, 7))


@SETTINGS
@given(case=perturbed_batches())
def test_a_perturbed_set_reads_back_what_was_written(tmp_path, case):
    n, shape, g, batch = case
    x = torch.rand((n, *shape), generator=g)
    ints = {
        "y": torch.randint(0, 5, (n,), generator=g),
        "target": torch.randint(0, 5, (n,), generator=g),
        "group": torch.randint(-1, 3, (n,), generator=g),
        "index": torch.randperm(n, generator=g),
    }
    metrics = {
        "success": torch.rand(n, generator=g) > 0.5,
        "iterations": torch.randint(0, 9, (n,), generator=g),
        "grad_evals": torch.randint(0, 9, (n,), generator=g),
        **{k: torch.randn(n, generator=g) for k in ("l0", "l2", "linf", "loss", "log_density")},
    }
    path = tmp_path / "p.h5"
    with PerturbedSetWriter(path, n, shape, force=True) as w:
        for s in range(0, n, batch):
            sl = slice(s, s + batch)
            w.add(
                x[sl],
                ints["y"][sl],
                ints["target"][sl],
                ints["group"][sl],
                ints["index"][sl],
                {k: v[sl] for k, v in metrics.items()},
            )
        source = {
            "dataset": {
                "num_classes": 5,
                "class_names": list("abcde"),
                "input_shape": list(shape),
                "mean": [0.5] * shape[0],
                "std": [0.25] * shape[0],
            }
        }
        w.record = make_record("perturbed-set", {"n": n}, source=source)
    arrays, stored, record = read_perturbed_set(path)
    assert np.array_equal(arrays["x"], x.numpy())
    for k, v in ints.items():
        assert np.array_equal(arrays[k], v.numpy()), k
    for k, v in metrics.items():
        assert np.array_equal(stored[k], v.numpy().astype(stored[k].dtype)), k
    assert record["params"] == {"n": n}


def _dataset(n: int, seed: int) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    splits = {
        name: Split(
            torch.rand(n + k, 1, 4, 4, generator=g),
            torch.randint(0, 3, (n + k,), generator=g),
            torch.randint(-1, 2, (n + k,), generator=g),
            torch.arange(n + k),
        )
        for k, name in enumerate(("train", "val", "test"))
    }
    return Dataset(
        spec={"type": "builtin", "name": "x", "params": {}},
        splits=splits,
        num_classes=3,
        class_names=["a", "b", "c"],
        input_shape=(1, 4, 4),
        mean=[0.5],
        std=[0.25],
        group_names=["g0", "g1"],
    )


@SETTINGS
@given(n=st.integers(0, 12), seed=st.integers(0, 2**31))
def test_a_dataset_reads_back_what_was_written(tmp_path, n, seed):
    ds = _dataset(n, seed)
    path = tmp_path / "d.h5"
    write_dataset(path, ds, make_record("dataset", {}), force=True)
    back = read_dataset(path)
    for name, s in ds.splits.items():
        b = back.splits[name]
        assert torch.equal(b.x, s.x) and torch.equal(b.y, s.y) and torch.equal(b.group, s.group)
    assert back.class_names == ds.class_names and back.group_names == ds.group_names


# ------------------------------------------------------------------------------------------------ damage


@pytest.fixture(scope="module")
def written(template, tmp_path_factory):
    """One file of each format, and a reader that returns comparable data."""
    d = tmp_path_factory.mktemp("w")
    g = torch.Generator().manual_seed(0)
    save_checkpoint(d / "c.pt", {"w": torch.randn(30, 20, generator=g), "b": torch.randn(20, generator=g)}, template)
    write_dataset(d / "d.h5", _dataset(30, 1), make_record("dataset", {}))
    save_json_artifact(d / "r.json", make_record("eval", {"model": "m.pt"}), {"splits": {"test": {"accuracy": 0.5}}})

    def ckpt(p):
        sd, meta = load_checkpoint(p)
        return {k: v.numpy() for k, v in sd.items()}, meta

    def data(p):
        ds = read_dataset(p)
        return {k: (s.x.numpy(), s.y.numpy(), s.group.numpy()) for k, s in ds.splits.items()}, ds.class_names

    return {"c.pt": (d / "c.pt", ckpt), "d.h5": (d / "d.h5", data), "r.json": (d / "r.json", load_json_artifact)}


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    return a == b


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    which=st.sampled_from(["c.pt", "d.h5", "r.json"]),
    where=st.floats(0, 1, exclude_max=True),
    bit=st.integers(0, 7),
    cut=st.booleans(),
)
def test_a_flipped_bit_or_a_truncation_is_an_error_never_other_data(written, tmp_path, which, where, bit, cut):
    src, read = written[which]
    ref = read(src)
    data = bytearray(src.read_bytes())
    at = int(where * len(data))
    if cut:
        data = data[:at]
    else:
        data[at] ^= 1 << bit
    bad = tmp_path / f"bad{src.suffix}"
    bad.write_bytes(bytes(data))
    try:
        got = read(bad)
    except LfpError:
        return
    assert _same(got, ref), f"{which}: damage at byte {at} returned other data"


@pytest.mark.parametrize("change", ["drop-dataset", "drop-attribute", "add-dataset", "rewrite-values"])
def test_an_edit_by_another_tool_is_an_error(written, tmp_path, change):
    src, read = written["d.h5"]
    bad = tmp_path / "bad.h5"
    shutil.copyfile(src, bad)
    with h5py.File(bad, "r+") as f:
        if change == "drop-dataset":
            del f["test/group"]
        elif change == "drop-attribute":
            del f["train/x"].attrs["description"]
        elif change == "add-dataset":
            f.create_dataset("extra", data=np.zeros(3))
        else:
            f["train/y"][0] = (f["train/y"][0] + 1) % 3
    with pytest.raises(LfpError, match="checksum"):
        read(bad)


def test_hdf5_files_start_with_the_sealed_user_block_and_stay_hdf5(written):
    path, _ = written["d.h5"]
    head = path.read_bytes()[: USERBLOCK_SIZE + 8]
    assert head.startswith(b"LFP-HDF5 sha256=") and is_hdf5(head)
    with h5py.File(path, "r") as f:  # any HDF5 tool still reads it
        assert f.userblock_size == USERBLOCK_SIZE and "train/x" in f


def test_files_written_before_checksums_still_read(written, tmp_path):
    """A schema-1 file (written by an earlier lfp: no user block, no checksum) is read as it is."""
    src, read = written["d.h5"]
    old = tmp_path / "old.h5"
    with h5py.File(src, "r") as f, h5py.File(old, "w") as g:
        for k in f:
            f.copy(f[k], g, k)
        for k, v in f.attrs.items():
            if k != "lfp_checksum":
                g.attrs[k] = v
        g.attrs["lfp_schema"] = 1
    assert _same(read(old), read(src))
    with h5py.File(old, "r+") as g:
        g.attrs["lfp_schema"] = 2  # claims the new schema without its checksums
    with pytest.raises(LfpError, match="checksum"):
        read(old)


# ------------------------------------------------------------------------------------------------ fixed cases
# The random flips above rarely land on the bits a checksum over converted values (float64, float32, rounded,
# listed as text) loses: the lowest bit of a large int64, of a float64 mantissa. These cases flip every bit.

#: Per dtype, values whose every bit matters: large integers (beyond float64's 53 bits), full float mantissas.
FIXED_VALUES = {
    torch.float32: [1.0000001, -3.4e38, 1.2e-38],
    torch.float64: [1.0 + 2**-52, -1e300, 3.141592653589793],
    torch.int64: [2**62 + 1, -(2**53) - 1, 7],
    torch.int32: [2**31 - 1, -5],
    torch.int16: [-32768, 1],
    torch.int8: [-128, 3],
    torch.uint8: [255, 1],
    torch.float16: [1.0009765625, -65504.0],
    torch.bfloat16: [1.0078125, -3.0e38],
    torch.bool: [True, False],
}


@pytest.mark.parametrize("dtype", list(FIXED_VALUES), ids=str)
def test_every_bit_of_every_value_is_in_the_checkpoint_checksum(dtype):
    from lfpcli.artifacts.integrity import checkpoint_checksum

    t = torch.tensor(FIXED_VALUES[dtype], dtype=dtype)
    meta = {"kind": "checkpoint"}
    want = checkpoint_checksum({"w": t}, meta)
    raw = t.view(torch.uint8)
    for byte in range(raw.numel()):
        for bit in range(8):  # a bool's too: a damaged file can hold a byte 3 where it held a 1
            flipped = raw.clone()
            flipped[byte] ^= 1 << bit
            assert checkpoint_checksum({"w": flipped.view(dtype)}, meta) != want, (
                f"{dtype}: bit {bit} of byte {byte} is not covered"
            )


def test_the_lowest_bit_of_a_stored_value_flipped_is_an_error(template, tmp_path):
    """On disk: the least significant byte of a float32, a float64 and a large int64 in a saved checkpoint."""
    sd = {
        "f32": torch.tensor([1.0000001, 2.5], dtype=torch.float32),
        "f64": torch.tensor([1.0 + 2**-52, 2.5], dtype=torch.float64),
        "i64": torch.tensor([2**62 + 1, 3], dtype=torch.int64),
    }
    path = tmp_path / "c.pt"
    save_checkpoint(path, sd, template)
    data = path.read_bytes()
    for name, t in sd.items():
        raw = t.numpy().tobytes()
        at = data.find(raw)
        assert at >= 0 and data.find(raw, at + 1) < 0, f"{name}'s bytes are not stored once as they are"
        bad = bytearray(data)
        bad[at] ^= 1  # little-endian: the value's lowest bit
        (tmp_path / "bad.pt").write_bytes(bytes(bad))
        with pytest.raises(LfpError, match="checksum"):
            load_checkpoint(tmp_path / "bad.pt")


def test_a_changed_last_digit_of_a_json_report_is_an_error(tmp_path):
    path = tmp_path / "r.json"
    save_json_artifact(
        path, make_record("eval", {"model": "m.pt"}), {"splits": {"test": {"accuracy": 0.1234567890123456}}}
    )
    text = path.read_text()
    assert "0.1234567890123456" in text
    (tmp_path / "bad.json").write_text(text.replace("0.1234567890123456", "0.1234567890123457"))
    with pytest.raises(LfpError, match="checksum"):
        load_json_artifact(tmp_path / "bad.json")
