"""Model files lfp did not write ("bring your own model"): what a file is, whether it is safe to read, and reading it.

Three formats besides lfp's own checkpoints (:mod:`lfpcli.artifacts.checkpoint`), told apart by content, never by
the file's name:

``torchscript``
    A ``torch.jit.save`` archive (a zip with ``code/`` and ``constants.pkl``), read with ``torch.jit.load``. It
    holds TorchScript: the model's own code, compiled by PyTorch's TorchScript compiler (not Python), and its
    tensors, read by TorchScript's own unpickler, which builds only tensors, plain values and the archive's
    TorchScript classes (never a Python object or function). What it can run is the PyTorch operators its code
    calls. Some of those touch files (``torch.save`` is ``aten::save``, ``torch.from_file`` reads any file) and a
    class's ``__setstate__`` runs while the file is read. So lfp, before ``torch.jit.load``, refuses an archive
    whose code defines ``__setstate__`` (nothing of the file then runs while it is read), and after it, before the
    first forward pass, refuses a model whose code calls any operator outside the ``aten`` and ``prim`` namespaces
    or one of :data:`TS_DENIED_OPS`.

``torch-export``
    A ``torch.export.save`` archive (``.pt2``; a zip whose ``archive_format`` says ``pt2``), read with
    ``torch.export.load``. PyTorch warns that this loader is not safe for untrusted files, and it is not: it
    unpickles some payloads with ``weights_only=False``, evaluates shape expressions with sympy (``eval``), runs
    the archive's guard code with ``exec``, loads AOTInductor shared libraries, and its graph may call any
    function under ``torch``. So lfp reads the archive's JSON first and refuses it unless it is a plain exported
    program (:func:`check_export_archive`): only graph JSON, tensor weights and constants stored without pickle,
    sample inputs that load with ``weights_only=True``, no guard code, shape expressions of symbols, numbers and
    arithmetic only, and graph nodes that call ATen/prims operators (minus :data:`TS_DENIED_OPS`) or symbolic
    integer arithmetic. What such a program runs is then a graph of ATen operators.

``state-dict``
    A ``torch.save`` file of a mapping of parameter names to tensors (possibly under ``state_dict``, ``model``,
    ``model_state_dict``, ``net`` or ``weights``), read with ``torch.load(weights_only=True)``: no code at all;
    the architecture is a registered ``--arch`` (:mod:`lfpcli.models.foreign`).

A pickle that would run code is refused unread by ``weights_only=True`` wherever lfp or the checks above read one.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lfpcli.artifacts.whatfile import describe_non_checkpoint, zip_names, zip_root
from lfpcli.errors import ArtifactError

#: The foreign formats lfp reads, and the loader each is read with (recorded in every artifact made from one).
FOREIGN_FORMATS = ("torchscript", "torch-export", "state-dict")
LOADERS = {
    "torchscript": "torch.jit.load, after checking its code defines no __setstate__ and calls only aten/prim operators",
    "torch-export": "torch.export.load, after checking the archive is a plain exported program (no pickles, guard code or native code)",
    "state-dict": "torch.load(weights_only=True) into a registered --arch",
}
#: How each format is named in messages.
WORDS = {
    "torchscript": "TorchScript model",
    "torch-export": "torch.export program",
    "state-dict": "state dict (weights without an architecture)",
}
#: Operators a foreign model may not call, though they are in an allowed namespace: they read or write files.
TS_DENIED_OPS = frozenset({"aten::save", "aten::from_file"})
#: Keys a training script often nests a state dict under.
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")


@dataclass
class Sniffed:
    """What a model file is: ``kind`` is ``checkpoint`` (an lfp checkpoint), one of :data:`FOREIGN_FORMATS`,
    ``unreadable`` (a torch.save file that ``weights_only`` refuses or that is damaged: lfp's checkpoint reader says
    why) or ``other`` (``what`` says what it is). ``obj`` is the loaded object of a state dict."""

    kind: str
    what: str = ""
    obj: Any = None


@contextmanager
def quiet_torch() -> Iterator[None]:
    """Silence PyTorch's warnings and its loggers' tracebacks while a foreign file is read (lfp reports one line)."""
    loggers = [logging.getLogger(n) for n in ("torch.export", "torch._export", "torch.fx", "torch._dynamo", "torch")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.CRITICAL + 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def _torch_load(source: Any, *, mmap: bool = False) -> Any:
    with quiet_torch():
        return torch.load(source, map_location="cpu", weights_only=True, mmap=mmap)


def is_lfp_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and "state_dict" in obj and isinstance(obj.get("meta"), dict)


def sniff_model_file(path: str | os.PathLike) -> Sniffed:
    """Tell an lfp checkpoint from a TorchScript archive, an exported program and a state dict, by content. A
    torch.save file is unpickled with ``weights_only=True`` (memory-mapped when it is a zip, so cheap)."""
    p = Path(path)
    if not p.is_file() or p.stat().st_size == 0:
        return Sniffed("unreadable")  # lfp's checkpoint reader names the problem (missing, a folder, empty)
    with open(p, "rb") as f:
        head = f.read(8)
    names = zip_names(p) if head.startswith(b"PK") else None
    if head.startswith(b"PK") and names is None:
        return Sniffed("unreadable")  # a damaged zip: lfp's checkpoint reader says so
    if names is not None:
        root = zip_root(names)
        if f"{root}/archive_format" in names:
            with zipfile.ZipFile(p) as zf:
                fmt = zf.read(f"{root}/archive_format").decode("utf-8", "replace").strip()
            if fmt == "pt2":
                return Sniffed("torch-export")
            return Sniffed("other", f"a PyTorch package of format '{fmt[:20]}' (not an exported program lfp reads)")
        if f"{root}/constants.pkl" in names and any(n.startswith(f"{root}/code/") for n in names):
            return Sniffed("torchscript")
        if f"{root}/data.pkl" not in names:
            return Sniffed(
                "other",
                "a zip archive that is neither a torch.save file, a TorchScript model nor a torch.export program",
            )
    elif not (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")):
        return Sniffed("other", describe_non_checkpoint(p) or "a file in no format lfp knows")
    try:
        obj = _torch_load(p, mmap=names is not None)
    except Exception:
        return Sniffed("unreadable")
    if is_lfp_checkpoint(obj):
        return Sniffed("checkpoint")
    return Sniffed("state-dict", obj=obj)


def _is_state_dict(d: Any) -> bool:
    return (
        isinstance(d, dict)
        and len(d) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())
    )


def _state_dict_key(obj: Any) -> str | None:
    """Where a torch.save object holds its state dict: ``""`` (the object itself), one of :data:`STATE_DICT_KEYS`,
    or None (nowhere)."""
    if _is_state_dict(obj):
        return ""
    if isinstance(obj, dict):
        return next((key for key in STATE_DICT_KEYS if _is_state_dict(obj.get(key))), None)
    return None


def extract_state_dict(obj: Any, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The mapping of names to tensors in a torch.save object: the object itself, or one nested under a usual key."""
    key = _state_dict_key(obj)
    if key is not None:
        return dict(obj[key] if key else obj)
    if isinstance(obj, dict):
        keys = ", ".join(repr(k) for k in list(obj)[:6])
        raise ArtifactError(
            f"{path} is a PyTorch file of a mapping ({keys}{', ...' if len(obj) > 6 else ''}) that is not a "
            f"state dict (names mapped to tensors, possibly under {', '.join(STATE_DICT_KEYS)})"
        )
    raise ArtifactError(
        f"{path} is a PyTorch file holding a {type(obj).__name__}, not a state dict (names mapped to tensors)"
    )


def describe_state_dict(obj: Any) -> str | None:
    """A torch.save object that holds a state dict, in words (how many tensors, under which key, the first names);
    None for anything else."""
    key = _state_dict_key(obj)
    if key is None:
        return None
    names = list(obj[key] if key else obj)
    first = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
    return f"a state dict of {len(names)} tensor{'s' if len(names) != 1 else ''}{f' under {key!r}' if key else ''} ({first})"


# ------------------------------------------------------------------------------------------------ TorchScript

_SETSTATE = re.compile(r"\bdef\s+__setstate__\b")


def check_torchscript_archive(path: str | os.PathLike) -> None:
    """Refuse an archive whose code defines ``__setstate__``: the one TorchScript code ``torch.jit.load`` runs."""
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            if "/code/" in name and name.endswith(".py"):
                text = zf.read(name).decode("utf-8", "replace")
                if _SETSTATE.search(text):
                    raise ArtifactError(
                        f"{path} is a TorchScript model whose code defines __setstate__, which torch.jit.load "
                        f"would run while reading the file; lfp does not load it (script the model without a "
                        f"custom __setstate__, or give its state dict with --arch)"
                    )


def _graph_kinds(graph: Any, acc: set[str]) -> set[str]:
    for node in graph.nodes():
        acc.add(node.kind())
        for block in node.blocks():
            _graph_kinds(block, acc)
    return acc


def check_torchscript_ops(module: Any, path: str | os.PathLike, methods: tuple[str, ...] = ("forward",)) -> None:
    """Refuse a loaded TorchScript model whose code (submodules and functions inlined) calls an operator outside
    ``aten``/``prim``, one of :data:`TS_DENIED_OPS` or a remote call, before lfp runs it."""
    kinds: set[str] = set()
    for owner in methods:
        target = module if owner == "forward" else getattr(module, owner)
        kinds |= _graph_kinds(target.inlined_graph, set())
    bad = sorted(
        k
        for k in kinds
        if k in TS_DENIED_OPS or k.startswith("prim::rpc") or k.split("::", 1)[0] not in ("aten", "prim")
    )
    if bad:
        raise ArtifactError(
            f"{path} is a TorchScript model whose code calls {', '.join(bad[:4])}, which lfp does not run "
            f"from a foreign file (it runs only aten and prim operators that touch no files)"
        )


def read_torchscript(path: str | os.PathLike, device: torch.device) -> torch.nn.Module:
    check_torchscript_archive(path)
    try:
        with quiet_torch():
            module = torch.jit.load(str(path), map_location=device)
    except Exception as e:
        raise ArtifactError(
            f"{path} is a TorchScript archive that torch.jit.load cannot read ({_first_line(e)})"
        ) from None
    check_torchscript_ops(module, path)
    return module


# ------------------------------------------------------------------------------------------------ torch.export

#: Archive members (below the root folder) a plain exported program consists of.
_EXPORT_MEMBERS = re.compile(
    r"^(archive_format|archive_version|byteorder|\.data/.*|models/[^/]+\.json|data/weights/[^/]+|"
    r"data/constants/[^/]+|data/sample_inputs/[^/]+\.pt|extra/[^/]+)$"
)
#: Graph node targets lfp runs besides ``torch.ops.aten.*`` and ``torch.ops.prims.*``: symbolic integer arithmetic.
_EXPORT_TARGETS = frozenset(
    [
        f"_operator.{n}"
        for n in (
            "getitem",
            "add",
            "sub",
            "mul",
            "floordiv",
            "truediv",
            "mod",
            "pow",
            "neg",
            "pos",
            "abs",
            "eq",
            "ne",
            "lt",
            "le",
            "gt",
            "ge",
            "and_",
            "or_",
            "not_",
        )
    ]
    + [
        f"torch.{n}"
        for n in ("sym_float", "sym_int", "sym_max", "sym_min", "sym_not", "sym_ite", "sym_sum", "_sym_sqrt")
    ]
    + [f"math.{n}" for n in ("ceil", "floor", "trunc", "sqrt")]
)
#: Words a shape expression may contain: sympy's and torch's symbolic-shape functions, and symbol names like s77.
_EXPR_WORDS = frozenset(
    {
        "Symbol",
        "Integer",
        "Rational",
        "Float",
        "Add",
        "Mul",
        "Pow",
        "Max",
        "Min",
        "Abs",
        "floor",
        "ceiling",
        "Eq",
        "Ne",
        "Lt",
        "Le",
        "Gt",
        "Ge",
        "And",
        "Or",
        "Not",
        "True",
        "False",
        "true",
        "false",
        "oo",
        "nan",
        "zoo",
        "Piecewise",
        "positive",
        "integer",
        "nonnegative",
        "real",
        "finite",
        "FloorDiv",
        "ModularIndexing",
        "Where",
        "PythonMod",
        "Mod",
        "CleanDiv",
        "CeilToInt",
        "FloorToInt",
        "CeilDiv",
        "LShift",
        "RShift",
        "IsNonOverlappingAndDenseIndicator",
        "TruncToFloat",
        "TruncToInt",
        "RoundToInt",
        "RoundDecimal",
        "ToFloat",
        "FloatPow",
        "PowByNatural",
        "IntTrueDiv",
        "FloatTrueDiv",
        "Identity",
        "OpaqueUnaryFn_sqrt",
        "BitwiseFn_bitwise_and",
        "BitwiseFn_bitwise_or",
    }
)
_EXPR_TOKEN = re.compile(
    r"\s+|\d+\.\d*(?:e[-+]?\d+)?|\d+|[A-Za-z_][A-Za-z0-9_]*|'[a-z][0-9]+'|\*\*|//|[<>=!]=|[-+*/%(),<>=&|~]"
)
_SYMBOL_NAME = re.compile(r"^[a-z][0-9]+$")


def _safe_expr(text: str) -> bool:
    """A shape expression sympy may parse: numbers, symbol names (s77, u0), the words of :data:`_EXPR_WORDS`,
    arithmetic and comparisons; no other names, no attribute access, no other strings."""
    pos = 0
    for m in _EXPR_TOKEN.finditer(text):
        if m.start() != pos:
            return False
        tok = m.group(0)
        if (tok[:1].isalpha() or tok[:1] == "_") and tok not in _EXPR_WORDS and not _SYMBOL_NAME.match(tok):
            return False
        pos = m.end()
    return pos == len(text)


def _walk(obj: Any) -> Iterator[tuple[str, Any, dict]]:
    """Every (key, value, owner) pair in a JSON tree."""
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            for k, v in o.items():
                yield k, v, o
                stack.append(v)
        elif isinstance(o, list):
            stack.extend(o)


def _export_target_ok(target: str) -> bool:
    if target.startswith(("torch.ops.aten.", "torch.ops.prims.")):
        op = target.split(".")[3] if target.count(".") >= 3 else ""
        return f"aten::{op}" not in TS_DENIED_OPS
    return target in _EXPORT_TARGETS


def _training_mode_ops(node: dict) -> bool:
    """A dropout or batch-norm node traced in training mode (its ``train``/``training`` argument true)."""
    target = str(node.get("target", ""))
    if not any(w in target for w in ("dropout", "batch_norm")):
        return False
    for arg in node.get("inputs") or []:
        if (
            isinstance(arg, dict)
            and arg.get("name") in ("train", "training")
            and (arg.get("arg") or {}).get("as_bool") is True
        ):
            return True
    return False


def check_export_archive(path: str | os.PathLike) -> list[str]:
    """Refuse a ``.pt2`` archive unless it is a plain exported program (module docstring); reads only JSON and, with
    ``weights_only=True``, the sample inputs. Returns notes worth a warning (a program exported in training mode)."""
    notes: list[str] = []

    def refuse(why: str) -> ArtifactError:
        return ArtifactError(
            f"{path} is a torch.export archive that lfp does not load: {why} (lfp reads plain exported "
            f"programs only, since torch.export.load is not safe for untrusted files)"
        )

    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        root = zip_root(names)
        models = []
        for name in names:
            rel = name[len(root) + 1 :] if root and name.startswith(root + "/") else name
            if not _EXPORT_MEMBERS.match(rel):
                what = (
                    "compiled native code (AOTInductor)" if rel.startswith("data/aotinductor/") else f"the member {rel}"
                )
                raise refuse(f"it holds {what}")
            if rel.startswith("models/"):
                models.append(rel[len("models/") : -len(".json")])
        if not models:
            raise refuse("it holds no exported program")

        def load_json(rel: str) -> Any:
            try:
                return json.loads(zf.read(f"{root}/{rel}" if root else rel))
            except KeyError:
                raise refuse(f"{rel} is missing") from None
            except (ValueError, UnicodeDecodeError):
                raise refuse(f"{rel} is not JSON") from None

        for model in models:
            weights = load_json(f"data/weights/{model}_weights_config.json")
            for fqn, entry in ((weights or {}).get("config") or {}).items():
                if not isinstance(entry, dict) or entry.get("use_pickle") is not False:
                    raise refuse(f"weight {fqn} is stored as a pickle")
            constants = load_json(f"data/constants/{model}_constants_config.json")
            for fqn, entry in ((constants or {}).get("config") or {}).items():
                if (
                    not isinstance(entry, dict)
                    or entry.get("use_pickle") is not False
                    or not str(entry.get("path_name", "")).startswith("tensor_")
                ):
                    raise refuse(f"constant {fqn} is a pickled or custom object")
            sample = f"{root}/data/sample_inputs/{model}.pt" if root else f"data/sample_inputs/{model}.pt"
            if sample in names:
                data = zf.read(sample)
                if data:
                    try:
                        _torch_load(io.BytesIO(data))
                    except Exception:
                        raise refuse("its sample inputs hold pickled Python objects") from None
            program = load_json(f"models/{model}.json")
            for key, value, owner in _walk(program):
                if key == "guards_code" and value:
                    raise refuse("it carries guard code (Python, run with exec)")
                if key == "expr_str" and not (isinstance(value, str) and _safe_expr(value)):
                    raise refuse(f"a shape expression is not plain arithmetic ({str(value)[:60]!r})")
                if key == "custom_obj_values" and value:
                    raise refuse("it holds custom (TorchBind) objects")
                if key == "target" and "inputs" in owner and "outputs" in owner:
                    if not isinstance(value, str) or not _export_target_ok(value):
                        raise refuse(f"its graph calls {str(value)[:80]}, not an ATen operator")
                    if _training_mode_ops(owner) and not notes:
                        notes.append(
                            f"{path} was exported in training mode: its dropout and batch norm act as in training "
                            f"(random, batch statistics); export the model after model.eval()"
                        )
    return notes


def read_exported(path: str | os.PathLike) -> Any:
    """The checked ``ExportedProgram`` of a ``.pt2`` file (a note such as "exported in training mode" is a warning)."""
    notes = check_export_archive(path)
    try:
        with quiet_torch():
            ep = torch.export.load(str(path))
    except Exception as e:
        raise ArtifactError(
            f"{path} is a torch.export archive that torch.export.load cannot read ({_first_line(e)})"
        ) from None
    for note in notes:
        warnings.warn(note, stacklevel=2)
    return ep


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


__all__ = [
    "FOREIGN_FORMATS",
    "LOADERS",
    "STATE_DICT_KEYS",
    "TS_DENIED_OPS",
    "WORDS",
    "Sniffed",
    "check_export_archive",
    "check_torchscript_archive",
    "check_torchscript_ops",
    "describe_state_dict",
    "extract_state_dict",
    "is_lfp_checkpoint",
    "quiet_torch",
    "read_exported",
    "read_torchscript",
    "sniff_model_file",
]
