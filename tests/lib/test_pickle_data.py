"""lfp's data-only pickle reader (CIFAR-10's python batches): it gives what ``pickle.loads`` gives for plain data
at every protocol, reads the Python-2 streams the real files hold, and refuses anything that would call code,
without ever running it; malformed or truncated streams raise its one error type, never anything else."""

from __future__ import annotations

import pickle
import struct

import numpy as np
import pytest
from fixtures_data import Evil
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lfpcli.data.real.pickle_data import PickleDataError, loads


def _same(a, b) -> bool:
    """Equal as plain data: arrays by values, dtype kind/size, shape and memory order; containers recursively."""
    if isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and a.shape == b.shape
            and a.dtype.kind == b.dtype.kind
            and a.dtype.itemsize == b.dtype.itemsize
            and np.array_equal(a, b)
            and a.flags.f_contiguous == b.flags.f_contiguous
            and a.flags.c_contiguous == b.flags.c_contiguous
        )
    if isinstance(b, dict):
        return isinstance(a, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in b)
    if isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and (a == b or (a != a and b != b))  # NaN equals NaN here


def _plain():
    arrays = st.builds(
        lambda dt, shape, fortran, seed: (lambda a: np.asfortranarray(a) if fortran else a)(
            np.random.default_rng(seed).integers(0, 250, size=shape).astype(dt)
        ),
        st.sampled_from(["u1", "i2", "<i4", ">i4", "i8", "u8", "f4", ">f8", "f2", "b1", "c8", "c16"]),
        st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple),
        st.booleans(),
        st.integers(0, 2**16),
    )
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(-(2**80), 2**80)
        | st.floats(allow_nan=True)
        | st.text(max_size=8)
        | st.binary(max_size=300)
        | arrays
    )
    keys = st.text(max_size=5) | st.binary(max_size=5) | st.integers(-5, 300)
    return st.recursive(
        scalars,
        lambda kids: (
            st.lists(kids, max_size=4) | st.lists(kids, max_size=3).map(tuple) | st.dictionaries(keys, kids, max_size=4)
        ),
        max_leaves=12,
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=_plain(), protocol=st.integers(0, pickle.HIGHEST_PROTOCOL))
def test_reads_what_pickle_reads(obj, protocol):
    data = pickle.dumps(obj, protocol=protocol)
    assert _same(loads(data), pickle.loads(data))


def test_shared_objects_stay_shared():
    a = np.arange(6, dtype=np.uint8)
    lst = [1, 2]
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        out = loads(pickle.dumps({"a": a, "b": a, "l": lst, "m": lst}, protocol=protocol))
        assert out["a"] is out["b"] and out["l"] is out["m"]


def _py2_batch() -> tuple[bytes, dict]:
    """A batch as Python 2's cPickle wrote the real CIFAR-10 files (protocol 2, str as SHORT_BINSTRING/BINSTRING,
    numpy.core.multiarray._reconstruct, memo by BINPUT/BINGET), assembled opcode by opcode."""
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    raw = data.tobytes()

    def s(b: bytes) -> bytes:  # a Python 2 str
        return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b

    out = b"\x80\x02}q\x01(" + s(b"data") + b"q\x02"
    out += b"cnumpy.core.multiarray\n_reconstruct\nq\x03cnumpy\nndarray\nq\x04K\x00\x85" + s(b"b") + b"\x87Rq\x05"
    out += b"(K\x01K\x02M\x00\x0c\x86cnumpy\ndtype\nq\x06" + s(b"u1") + b"K\x00K\x01\x87Rq\x07"
    out += b"(K\x03" + s(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89" + s(raw) + b"tb"
    out += s(b"labels") + b"q\x08]q\x09(K\x06K\x09e"
    out += s(b"batch_label") + b"q\x0a" + s(b"training batch 1 of 5")
    out += s(b"filenames") + b"]q\x0b(" + s(b"a.png") + s(b"b.png") + b"e"
    out += s(b"more") + b"h\x05u."  # BINGET of the memoised array stub: the made array
    want = {
        b"data": data,
        b"labels": [6, 9],
        b"batch_label": b"training batch 1 of 5",
        b"filenames": [b"a.png", b"b.png"],
        b"more": data,
    }
    return out, want


def test_python2_batch_stream():
    stream, want = _py2_batch()
    assert _same(pickle.loads(stream, encoding="bytes"), want)  # the stream is what Python reads too
    got = loads(stream)
    assert _same(got, want) and got[b"more"] is got[b"data"]


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(lambda s: Evil(s), id="os.system"),
        pytest.param(lambda s: {"x": [Evil(s)]}, id="nested"),
    ],
)
@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_code_is_refused_and_never_runs(tmp_path, payload, protocol):
    sentinel = tmp_path / "SENTINEL"
    data = pickle.dumps(payload(str(sentinel)), protocol=protocol)
    with pytest.raises(PickleDataError, match="refused global (posix|os|nt)\\.system"):
        loads(data)
    assert not sentinel.exists()
    pickle.loads(data)  # the stream is live: a plain unpickler runs it
    assert sentinel.exists()


class _Point:
    def __init__(self, x):
        self.x = x


@pytest.mark.parametrize(
    "obj, why",
    [
        (_Point(1), "refused global"),  # an instance of any class
        (np.array([object()], dtype=object), "refused dtype"),
        (np.zeros(2, dtype=[("a", "i4"), ("b", "f4")]), "refused dtype"),
        (np.zeros(2, dtype="U3"), "refused dtype"),
        ({1, 2}, "refused"),  # sets are plain but CIFAR never holds one: protocol 4 opcode only
        (np.float32(1.5), "refused global"),  # a numpy scalar goes through numpy.core.multiarray.scalar
    ],
)
def test_refused(obj, why):
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        data = pickle.dumps(obj, protocol=protocol)
        if isinstance(obj, set) and protocol >= 4:
            assert loads(data) == obj
            continue
        with pytest.raises(PickleDataError, match=why):
            loads(data)


@pytest.mark.parametrize(
    "stream, why",
    [
        (b"", "truncated"),
        (b"\x80\x02}q\x01", "truncated"),
        (b"\x80\x02K\x01K\x02.", "STOP with a malformed stack"),
        (b"\x80\x02u.", "underflow|no MARK"),
        (b"\x80\x02h\x07.", "never stored"),
        (b"\x80\x02P0\n.", "refused opcode"),  # PERSID
        (b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00\x97.", "refused opcode"),  # NEXT_BUFFER
        (b"\x80\x02B\xff\xff\xff\x7f.", "truncated"),  # a 2 GB BINBYTES in a 10-byte file
        (b"\x80\x02\x81.", "refused opcode"),  # NEWOBJ
    ],
)
def test_malformed(stream, why):
    with pytest.raises(PickleDataError, match=why):
        loads(stream)


def test_array_size_is_checked():
    raw = np.arange(4, dtype=np.int32).tobytes()
    good = pickle.dumps(np.arange(4, dtype=np.int32), protocol=3)
    assert good.count(b"C\x10" + raw) == 1  # SHORT_BINBYTES of the 16 data bytes
    with pytest.raises(PickleDataError, match="holds 12 bytes"):
        loads(good.replace(b"C\x10" + raw, b"C\x0c" + raw[:12]))


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cut=st.floats(0, 1), flips=st.integers(0, 4))
def test_damaged_streams_raise_only_its_error(seed, cut, flips):
    """Truncated or bit-flipped streams give a value or PickleDataError, never another exception or a hang."""
    stream, _ = _py2_batch()
    rng = np.random.default_rng(seed)
    b = bytearray(stream[: int(len(stream) * cut) + 1])
    for _ in range(flips):
        b[int(rng.integers(len(b)))] ^= 1 << int(rng.integers(8))
    try:
        loads(bytes(b))
    except PickleDataError:
        pass
