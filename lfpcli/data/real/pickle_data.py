"""A data-only reader of pickle streams, for CIFAR-10's python batches: dicts, lists, tuples, strings, bytes,
numbers and numpy arrays of plain dtypes, and nothing else.

It interprets the pickle opcodes itself (as torch's ``weights_only`` loader does) instead of handing the stream to
:mod:`pickle`: no function named in a file is ever looked up or called. The only globals it accepts are the numpy
names an array's pickle refers to (``numpy.ndarray``, ``numpy.dtype``, ``_reconstruct`` and, for protocol 5,
``_frombuffer``, under ``numpy.core`` or ``numpy._core``) and the two names Python 3 pickles bytes with at
protocols 0-2 (``_codecs.encode(text, "latin1")``, ``bytes()``); each is emulated, never called. An array is
built from its stored bytes with :func:`numpy.frombuffer`, after checking that the byte count is shape x item
size. Any other global (``os.system``, ``builtins.eval``, ...), a persistent id, an out-of-band buffer, an object
dtype or a structured dtype is refused with :class:`PickleDataError` when it is met, before anything it names
could be used. Python 2 strings (the real CIFAR-10 files were written by Python 2) come back as ``bytes``, as
``pickle.load(..., encoding="bytes")`` gives them.

Memory: the stream is held in memory once, each array is one copy of its bytes.
"""

from __future__ import annotations

import math
import re
import struct
from typing import Any

import numpy as np

__all__ = ["PickleDataError", "loads"]


class PickleDataError(ValueError):
    """The stream is not a pickle of plain data this reader builds (or it is truncated, or malformed)."""


class _Global:
    """A numpy name the stream refers to; never called, recognised by :func:`_reduce`."""

    def __init__(self, name: str):
        self.name = name


_NDARRAY, _DTYPE, _RECONSTRUCT, _FROMBUFFER, _ENCODE, _BYTES = (
    _Global(n) for n in ("ndarray", "dtype", "_reconstruct", "_frombuffer", "encode", "bytes")
)
_GLOBALS = {
    # how Python 3 pickles bytes at protocols 0-2: _codecs.encode(text, "latin1"), and b"" as bytes()
    ("_codecs", "encode"): _ENCODE,
    ("__builtin__", "bytes"): _BYTES,
    ("builtins", "bytes"): _BYTES,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DTYPE,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
}
# booleans, signed and unsigned integers, floats, complex: one type code and its item size, optionally byte-ordered
_PLAIN_DTYPE = re.compile(r"[<>|=]?(b1|[iu][1248]|f[248]|c(8|16))")


class _Stub:
    """An object announced by REDUCE and made by the BUILD that follows; ``memo_keys`` are where the stream stored
    it in between, replaced by the made object."""

    def __init__(self):
        self.memo_keys: list[int] = []


class _ArrayStub(_Stub):
    """An array announced by ``_reconstruct(ndarray, ...)``."""


class _DtypeStub(_Stub):
    """A dtype announced by ``dtype(code, ...)``; its byte order comes with the BUILD."""

    def __init__(self, code: str):
        super().__init__()
        self.dtype = np.dtype(code)


def _plain_dtype(code: Any) -> np.dtype:
    if isinstance(code, bytes):
        code = code.decode("latin-1")
    if not isinstance(code, str) or not _PLAIN_DTYPE.fullmatch(code):
        raise PickleDataError(f"refused dtype {code!r} (only booleans, integers, floats and complex numbers)")
    return np.dtype(code)


def _as_dtype(obj: Any) -> np.dtype:
    if isinstance(obj, _DtypeStub):
        return obj.dtype
    if isinstance(obj, np.dtype):
        return obj
    raise PickleDataError("an array's dtype is not a dtype")


def _shape(obj: Any) -> tuple[int, ...]:
    if not isinstance(obj, tuple) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in obj):
        raise PickleDataError("an array's shape is not a tuple of sizes")
    return obj


def _array(raw: Any, dtype: np.dtype, shape: tuple[int, ...], fortran: bool) -> np.ndarray:
    if isinstance(raw, str):  # a Python 2 str read as text by a protocol-0 stream
        raw = raw.encode("latin-1")
    if not isinstance(raw, (bytes, bytearray)):
        raise PickleDataError("an array's data is not bytes (object arrays are refused)")
    n = math.prod(shape)  # exact: a forged shape cannot wrap around to match the byte count
    if len(raw) != n * dtype.itemsize:
        raise PickleDataError(f"an array of shape {shape} and dtype {dtype} holds {len(raw)} bytes")
    return np.frombuffer(bytes(raw), dtype=dtype).reshape(shape, order="F" if fortran else "C").copy(order="K")


def _reduce(func: Any, args: Any) -> Any:
    if not isinstance(args, tuple):
        raise PickleDataError("REDUCE arguments are not a tuple")
    if func is _RECONSTRUCT:
        if not args or args[0] is not _NDARRAY:
            raise PickleDataError("_reconstruct of something other than numpy.ndarray")
        return _ArrayStub()
    if func is _DTYPE:
        if not args:
            raise PickleDataError("dtype() without a type code")
        return _DtypeStub(_plain_dtype(args[0]).str)
    if func is _FROMBUFFER:
        if len(args) != 4:
            raise PickleDataError("_frombuffer takes (buffer, dtype, shape, order)")
        buf, dtype, shape, order = args
        return _array(buf, _as_dtype(dtype), _shape(shape), order == "F")
    if func is _ENCODE:
        if len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin1", "latin-1"):
            return args[0].encode("latin-1")
        raise PickleDataError("_codecs.encode other than of text to latin1 bytes")
    if func is _BYTES:
        if args:
            raise PickleDataError("bytes() with arguments")
        return b""
    raise PickleDataError("REDUCE of something other than the numpy array names")


def _build(obj: Any, state: Any) -> Any:
    if isinstance(obj, _DtypeStub):
        # (version, byte order, subarray, names, fields, elsize, alignment, flags): only a plain dtype is built
        if not isinstance(state, tuple) or len(state) < 5 or any(s is not None for s in state[2:5]):
            raise PickleDataError("refused dtype state (structured or subarray dtypes are not read)")
        order = state[1].decode("latin-1") if isinstance(state[1], bytes) else state[1]
        if order in ("<", ">"):
            obj.dtype = obj.dtype.newbyteorder(order)
        elif order not in ("|", "="):
            raise PickleDataError(f"refused dtype byte order {order!r}")
        return obj.dtype
    if isinstance(obj, _ArrayStub):
        # (version, shape, dtype, is_fortran, data) or, from old numpy, the same without the version
        if isinstance(state, tuple) and len(state) == 5:
            state = state[1:]
        if not isinstance(state, tuple) or len(state) != 4:
            raise PickleDataError("an array's state is not (shape, dtype, is_fortran, data)")
        shape, dtype, fortran, raw = state
        return _array(raw, _as_dtype(dtype), _shape(shape), bool(fortran))
    raise PickleDataError("BUILD on something other than a numpy array or dtype")


def _key(k: Any) -> Any:
    if isinstance(k, (list, dict, set, bytearray, np.ndarray, _Stub, _Global)):
        raise PickleDataError("a dict key that is not a string, bytes, number or tuple")
    return k


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0
        self.stack: list[Any] = []
        self.marks: list[list[Any]] = []
        self.memo: dict[int, Any] = {}

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise PickleDataError("truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def line(self) -> bytes:
        end = self.data.find(b"\n", self.pos)
        if end < 0:
            raise PickleDataError("truncated")
        return self.take(end + 1 - self.pos)[:-1]

    def pop(self) -> Any:
        if not self.stack:
            raise PickleDataError("stack underflow")
        return self.stack.pop()

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise PickleDataError("no MARK")
        items, self.stack = self.stack, self.marks.pop()
        return items

    def top(self, kind: type) -> Any:
        if not self.stack or not isinstance(self.stack[-1], kind):
            raise PickleDataError(f"expected a {kind.__name__} on the stack")
        return self.stack[-1]

    def memo_index(self, fmt: str) -> int:
        """A memo index: a text line (PUT, GET) or packed as ``fmt``."""
        if fmt != "line":
            return self.unpack(fmt)
        try:
            return int(self.line())
        except ValueError:
            raise PickleDataError("a memo index is malformed") from None

    def memo_get(self, i: int) -> Any:
        if i not in self.memo:
            raise PickleDataError(f"memo key {i} was never stored")
        return self.memo[i]

    def run(self) -> Any:
        op = _OPS
        while True:
            code = self.take(1)[0]
            handler = op.get(code)
            if handler is None:
                raise PickleDataError(f"refused opcode 0x{code:02x}")
            if handler(self) is _STOP:
                if len(self.stack) != 1 or self.marks:
                    raise PickleDataError("STOP with a malformed stack")
                return self.stack[0]


_STOP = object()


def _push(value_of):
    def op(r: _Reader) -> None:
        r.stack.append(value_of(r))

    return op


def _sized(fmt: str, decode: bool):
    def value(r: _Reader) -> Any:
        raw = r.take(r.unpack(fmt))
        if decode:
            try:
                return raw.decode("utf-8", "surrogatepass")
            except UnicodeDecodeError:
                raise PickleDataError("a string is not UTF-8") from None
        return raw

    return value


def _text_string(r: _Reader) -> bytes:
    s = r.line().rstrip()
    if len(s) < 2 or s[:1] != s[-1:] or s[:1] not in (b"'", b'"'):
        raise PickleDataError("a STRING is not quoted")
    try:
        return s[1:-1].decode("latin-1").encode("latin-1").decode("unicode_escape").encode("latin-1")
    except (UnicodeDecodeError, UnicodeEncodeError):
        raise PickleDataError("a STRING is malformed") from None


def _text_int(r: _Reader) -> Any:
    s = r.line()
    if s == b"00":
        return False
    if s == b"01":
        return True
    try:
        return int(s.rstrip(b"L"))
    except ValueError:
        raise PickleDataError("an INT is malformed") from None


def _text_float(r: _Reader) -> float:
    try:
        return float(r.line())
    except ValueError:
        raise PickleDataError("a FLOAT is malformed") from None


def _long(nbytes_fmt: str):
    def value(r: _Reader) -> int:
        return int.from_bytes(r.take(r.unpack(nbytes_fmt)), "little", signed=True)

    return value


def _global_text(r: _Reader) -> None:
    module, name = r.line().decode("latin-1"), r.line().decode("latin-1")
    _push_global(r, module, name)


def _stack_global(r: _Reader) -> None:
    name, module = r.pop(), r.pop()
    if not isinstance(module, str) or not isinstance(name, str):
        raise PickleDataError("STACK_GLOBAL names are not strings")
    _push_global(r, module, name)


def _push_global(r: _Reader, module: str, name: str) -> None:
    g = _GLOBALS.get((module, name))
    if g is None:
        raise PickleDataError(f"refused global {module}.{name}")
    r.stack.append(g)


def _op_reduce(r: _Reader) -> None:
    args = r.pop()
    r.stack.append(_reduce(r.pop(), args))


def _op_build(r: _Reader) -> None:
    state, obj = r.pop(), r.pop()
    made = _build(obj, state)
    for k in obj.memo_keys:
        r.memo[k] = made
    r.stack.append(made)


def _op_setitem(r: _Reader) -> None:
    v, k = r.pop(), r.pop()
    r.top(dict)[_key(k)] = v


def _op_setitems(r: _Reader) -> None:
    items = r.pop_mark()
    if len(items) % 2:
        raise PickleDataError("SETITEMS with an odd number of items")
    d = r.top(dict)
    for k, v in zip(items[::2], items[1::2]):
        d[_key(k)] = v


def _op_append(r: _Reader) -> None:
    v = r.pop()
    r.top(list).append(v)


def _op_appends(r: _Reader) -> None:
    items = r.pop_mark()
    r.top(list).extend(items)


def _op_dict(r: _Reader) -> None:
    items = r.pop_mark()
    if len(items) % 2:
        raise PickleDataError("DICT with an odd number of items")
    r.stack.append({_key(k): v for k, v in zip(items[::2], items[1::2])})


def _op_tuple_n(n: int):
    def op(r: _Reader) -> None:
        if len(r.stack) < n:
            raise PickleDataError("stack underflow")
        items = r.stack[len(r.stack) - n :] if n else []
        del r.stack[len(r.stack) - n :]
        r.stack.append(tuple(items))

    return op


def _op_put(fmt: str | None):
    def op(r: _Reader) -> None:
        if not r.stack:
            raise PickleDataError("stack underflow")
        i = len(r.memo) if fmt is None else r.memo_index(fmt)  # MEMOIZE: the next index
        r.memo[i] = r.stack[-1]
        if isinstance(r.stack[-1], _Stub):
            r.stack[-1].memo_keys.append(i)

    return op


def _op_get(fmt: str):
    def op(r: _Reader) -> None:
        r.stack.append(r.memo_get(r.memo_index(fmt)))

    return op


def _op_proto(r: _Reader) -> None:
    if r.take(1)[0] > 5:
        raise PickleDataError("unsupported pickle protocol")


def _op_frame(r: _Reader) -> None:
    r.unpack("<Q")  # a frame is only a hint for buffering: its contents are ordinary opcodes


def _op_mark(r: _Reader) -> None:
    r.marks.append(r.stack)
    r.stack = []


def _op_pop_mark(r: _Reader) -> None:
    r.pop_mark()


def _op_dup(r: _Reader) -> None:
    if not r.stack:
        raise PickleDataError("stack underflow")
    r.stack.append(r.stack[-1])


# pop_mark swaps r.stack, so the items are taken before r.stack is named
def _op_list(r: _Reader) -> None:
    items = r.pop_mark()
    r.stack.append(items)


def _op_tuple(r: _Reader) -> None:
    items = r.pop_mark()
    r.stack.append(tuple(items))


def _op_frozenset(r: _Reader) -> None:
    items = r.pop_mark()
    r.stack.append(frozenset(_key(k) for k in items))


def _op_additems(r: _Reader) -> None:
    items = r.pop_mark()
    r.top(set).update(_key(k) for k in items)


def _op_bytearray8(r: _Reader) -> None:
    r.stack.append(bytearray(r.take(r.unpack("<Q"))))


_OPS: dict[int, Any] = {
    0x80: _op_proto,  # PROTO
    0x95: _op_frame,  # FRAME
    ord("."): lambda r: _STOP,  # STOP
    ord("("): _op_mark,  # MARK
    ord("1"): _op_pop_mark,  # POP_MARK
    ord("0"): lambda r: r.pop(),  # POP
    ord("2"): _op_dup,  # DUP
    ord("N"): _push(lambda r: None),  # NONE
    0x88: _push(lambda r: True),  # NEWTRUE
    0x89: _push(lambda r: False),  # NEWFALSE
    ord("I"): _push(_text_int),  # INT
    ord("L"): _push(_text_int),  # LONG
    ord("J"): _push(lambda r: r.unpack("<i")),  # BININT
    ord("K"): _push(lambda r: r.unpack("<B")),  # BININT1
    ord("M"): _push(lambda r: r.unpack("<H")),  # BININT2
    0x8A: _push(_long("<B")),  # LONG1
    0x8B: _push(_long("<i")),  # LONG4
    ord("F"): _push(_text_float),  # FLOAT
    ord("G"): _push(lambda r: r.unpack(">d")),  # BINFLOAT
    ord("S"): _push(_text_string),  # STRING (Python 2 str: bytes)
    ord("T"): _push(_sized("<i", False)),  # BINSTRING (Python 2 str: bytes)
    ord("U"): _push(_sized("<B", False)),  # SHORT_BINSTRING (Python 2 str: bytes)
    ord("B"): _push(_sized("<I", False)),  # BINBYTES
    ord("C"): _push(_sized("<B", False)),  # SHORT_BINBYTES
    0x8E: _push(_sized("<Q", False)),  # BINBYTES8
    0x96: _op_bytearray8,  # BYTEARRAY8
    ord("V"): _push(lambda r: r.line().decode("raw_unicode_escape")),  # UNICODE
    ord("X"): _push(_sized("<I", True)),  # BINUNICODE
    0x8C: _push(_sized("<B", True)),  # SHORT_BINUNICODE
    0x8D: _push(_sized("<Q", True)),  # BINUNICODE8
    ord("}"): _push(lambda r: {}),  # EMPTY_DICT
    ord("]"): _push(lambda r: []),  # EMPTY_LIST
    ord(")"): _push(lambda r: ()),  # EMPTY_TUPLE
    0x8F: _push(lambda r: set()),  # EMPTY_SET
    0x90: _op_additems,  # ADDITEMS
    0x91: _op_frozenset,  # FROZENSET
    ord("d"): _op_dict,  # DICT
    ord("l"): _op_list,  # LIST
    ord("t"): _op_tuple,  # TUPLE
    0x85: _op_tuple_n(1),  # TUPLE1
    0x86: _op_tuple_n(2),  # TUPLE2
    0x87: _op_tuple_n(3),  # TUPLE3
    ord("s"): _op_setitem,  # SETITEM
    ord("u"): _op_setitems,  # SETITEMS
    ord("a"): _op_append,  # APPEND
    ord("e"): _op_appends,  # APPENDS
    ord("p"): _op_put("line"),  # PUT
    ord("q"): _op_put("<B"),  # BINPUT
    ord("r"): _op_put("<I"),  # LONG_BINPUT
    0x94: _op_put(None),  # MEMOIZE
    ord("g"): _op_get("line"),  # GET
    ord("h"): _op_get("<B"),  # BINGET
    ord("j"): _op_get("<I"),  # LONG_BINGET
    ord("c"): _global_text,  # GLOBAL (only the numpy array names)
    0x93: _stack_global,  # STACK_GLOBAL (only the numpy array names)
    ord("R"): _op_reduce,  # REDUCE (only the numpy array names)
    ord("b"): _op_build,  # BUILD (only numpy arrays and dtypes)
    # refused by omission: INST, OBJ, NEWOBJ, NEWOBJ_EX, PERSID, BINPERSID, EXT1/2/4, NEXT_BUFFER, READONLY_BUFFER
}


def loads(data: bytes) -> Any:
    """The plain data pickled in ``data`` (see the module docstring for what is built and what is refused).

    Raises :class:`PickleDataError` for anything else or a truncated stream.
    """
    r = _Reader(bytes(data))
    try:
        return r.run()
    except PickleDataError:
        raise
    except Exception as e:  # noqa: BLE001  (malformed sizes or values: struct, Unicode, unhashable keys, ...)
        raise PickleDataError(f"malformed ({type(e).__name__})") from None
