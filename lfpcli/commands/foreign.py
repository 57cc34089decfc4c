"""Bring your own model: a trained PyTorch model lfp did not write, ready for ``perturb``, ``eval``, ``density`` and
``saliency``, with a record shaped like a checkpoint's so that every command and the artifacts it writes work as
with lfp's own models.

The file is told apart by content (:func:`lfpcli.artifacts.foreign_model.sniff_model_file`): TorchScript, a
torch.export program (``.pt2``) or a state dict (then ``--arch`` names the registered architecture it fits). It
records no data and no normalisation, so ``--data`` (what to run it on: it fixes the input shape and the classes)
and ``--normalize`` (what inputs it expects, see :func:`lfpcli.models.foreign.parse_normalize`) are required.
Before lfp trusts it, one forward pass on two samples of the data checks that it runs and outputs one logit per
class (or one scalar logit for a two-class task).

The synthesised ``meta``: ``model`` (``arch`` = the registered architecture of a state dict, else the format;
``input_shape``, ``num_classes`` and ``output`` from the data and the forward pass; ``mean``/``std`` from
``--normalize``; ``foreign``), ``data`` (the data's record, as a checkpoint's), ``foreign`` (format, path, sha256,
loader, normalisation, whether ``features`` exist, a fixed batch size) and empty ``params``, ``init``, ``train``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lfpcli.artifacts import sha256_file
from lfpcli.artifacts.dataspec import load_perturbed_as_dataset, resolve
from lfpcli.artifacts.foreign_model import (
    LOADERS,
    WORDS,
    Sniffed,
    check_torchscript_ops,
    extract_state_dict,
    read_exported,
    read_torchscript,
)
from lfpcli.artifacts.saliency import h5_kind
from lfpcli.errors import ArtifactError, ConfigError, InputError
from lfpcli.models import PixelModel, list_models
from lfpcli.models.foreign import (
    NORMALIZE_HELP,
    ForeignModel,
    parse_normalize,
    recorded_arch_args,
    state_dict_model,
)
from lfpcli.models.outputs import class_logits
from lfpcli.models.registry import parse_arch_args


def foreign_data(spec: str):
    """The data a foreign model runs on: a data spec, or a perturbed set (its perturbed inputs, clean val/test)."""
    if h5_kind(spec) == "perturbed-set":
        return load_perturbed_as_dataset(spec)
    return resolve(spec)


def _first_line(e: BaseException) -> str:
    """The line of an exception that says what went wrong; for TorchScript's, the cause at its end."""
    text = [t.strip() for t in str(e).strip().splitlines() if t.strip()]
    if not text:
        return type(e).__name__
    if "TorchScript interpreter" in text[0]:
        causes = [t for t in text if "Error: " in t]
        if causes:
            return causes[-1].split("Error: ", 1)[1][:200]
    return text[0][:200]


def _exported_module(
    path: str | Path, input_shape: tuple[int, ...], device: torch.device
) -> tuple[torch.nn.Module, int | None]:
    """The callable module of a checked exported program, and its batch size when it was exported for one only."""
    ep = read_exported(path)
    sig = ep.graph_signature
    if len(sig.user_inputs) != 1 or len(sig.user_outputs) != 1:
        raise ArtifactError(
            f"{path} is a torch.export program with {len(sig.user_inputs)} inputs and {len(sig.user_outputs)} "
            f"outputs; lfp needs one image batch in and one tensor of logits out"
        )
    fixed = None
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name == sig.user_inputs[0]:
            val = node.meta.get("val")
            shape = tuple(getattr(val, "shape", ()) or ())
            if len(shape) != 4:
                raise ArtifactError(
                    f"{path} is a torch.export program whose input has {len(shape)} dimensions; lfp gives it "
                    f"image batches (N, C, H, W)"
                )
            static = [d if isinstance(d, int) else None for d in shape]
            for got, want, name in zip(static[1:], input_shape, ("channels", "height", "width")):
                if got is not None and got != want:
                    dims = ", ".join(str(d) if isinstance(d, int) else "N" for d in shape)
                    raise InputError(
                        f"{path} was exported for inputs of shape ({dims}); the data's are "
                        f"{tuple(input_shape)} ({name} differ)"
                    )
            fixed = static[0]
    try:
        module = ep.module()
    except Exception as e:
        raise ArtifactError(f"{path}: torch.export cannot make a module of this program ({_first_line(e)})") from None
    return module.to(device), fixed


def _probe(model: torch.nn.Module, x: torch.Tensor, path: str | Path, what: str, data: str) -> torch.Tensor:
    try:
        with torch.no_grad():
            out = model(x)
    except InputError:
        raise
    except Exception as e:
        raise ArtifactError(
            f"{path} ({what}) fails on {len(x)} inputs of shape {tuple(x.shape[1:])} from {data}: {_first_line(e)}"
        ) from None
    if not isinstance(out, torch.Tensor):
        raise ArtifactError(
            f"{path} ({what}) returns a {type(out).__name__}; lfp needs a tensor of logits (N, K) or "
            f"scalars (N,) / (N, 1)"
        )
    return out


def load_foreign_model(
    path: str | Path, device: torch.device, found: Sniffed, opts: Any
) -> tuple[PixelModel, dict[str, Any]]:
    """Read a foreign model file as ``opts`` (:class:`~lfpcli.commands.common.ForeignOptions`) says; see the module
    docstring. Every problem is one ``InputError`` line that says what to give."""
    fmt = found.kind
    what = WORDS[fmt]
    sd = None
    if fmt == "state-dict":
        sd = extract_state_dict(found.obj, path)
        if not opts.arch:
            raise ConfigError(
                f"{path} is a {what}: give --arch NAME for the network it fits (one of "
                f"{', '.join(list_models())}) and --normalize for the inputs it expects"
            )
    elif opts.arch or opts.arch_args:
        raise ConfigError(
            f"{path} is a {what}, which carries its own network: leave out --arch and --arch-arg (they say "
            f"which registered network a state dict fits)"
        )
    if opts.data is None:
        raise InputError(
            f"{path} is a {what} with no record of the data it was trained on: give --data SPEC, the data to "
            f"run it on (a built-in such as digits, a spec such as mnist:root=DIR, or an lfp .h5 file)"
        )
    if opts.normalize is None:
        raise ConfigError(f"{path} is a {what}: say which inputs it expects with --normalize: {NORMALIZE_HELP}")
    ds = foreign_data(opts.data)
    shape = tuple(int(v) for v in ds.input_shape)
    mean, std, how = parse_normalize(opts.normalize, shape[0], ds.mean, ds.std)
    record: dict[str, Any] = {
        "format": fmt,
        "path": str(path),
        "abspath": str(Path(path).resolve()),
        "sha256": sha256_file(path),
        "loaded_with": LOADERS[fmt],
        "normalize": str(opts.normalize),
        "normalization": how,
    }
    arch, arch_args = fmt, {}
    if fmt == "state-dict":
        arch = opts.arch
        given_args = parse_arch_args(arch, opts.arch_args)
        if "weights" in given_args:
            raise ConfigError("--arch-arg weights does not apply: the state dict is the model's weights")
        model, how_read = state_dict_model(
            sd,
            path=str(path),
            arch=arch,
            arch_args=given_args,
            num_classes=ds.num_classes,
            input_shape=shape,
            mean=mean,
            std=std,
        )
        arch_args = recorded_arch_args(arch, given_args)
        record.update(arch=arch, keys=how_read["keys"], features=True)
        model = model.to(device).eval()
    else:
        fixed = None
        if fmt == "torchscript":
            module = read_torchscript(path, device)
        else:
            module, fixed = _exported_module(path, shape, device)
        model = ForeignModel(module, mean, std, fmt=fmt, path=str(path), fixed_batch=fixed).to(device).eval()
        record["fixed_batch"] = fixed
    split = ds.splits.get("train") or next(iter(ds.splits.values()))
    x = split.rows(0, min(2, len(split))).to(device)  # two samples, read on demand from a streamed split
    out = _probe(model, x, path, what, opts.data)
    k = 1 if out.ndim == 1 else (out.shape[1] if out.ndim == 2 else -1)
    if out.ndim not in (1, 2) or out.shape[0] != len(x):
        raise ArtifactError(
            f"{path} ({what}) returns shape {tuple(out.shape)} for {len(x)} inputs; lfp needs logits (N, K) "
            f"or scalars (N,) / (N, 1)"
        )
    if k == 1 and ds.num_classes == 2:
        output = "scalar"
    elif k == ds.num_classes:
        output = "logits"
    else:
        raise InputError(
            f"{path} ({what}) outputs {k} value{'s' if k != 1 else ''} per input, but {opts.data} has "
            f"{ds.num_classes} classes"
        )
    if fmt != "state-dict":
        model.split = _has_split(model, x, out, path) if fmt == "torchscript" else False
        record["features"] = model.split
    record["output"] = output
    meta = {
        "kind": "foreign-model",
        "model": {
            "arch": arch,
            "arch_args": arch_args,
            "num_classes": ds.num_classes,
            "input_shape": list(shape),
            "mean": mean,
            "std": std,
            "output": output,
            "pixel_range": [0.0, 1.0],
            "normalization": f"--normalize {opts.normalize}: {how} (applied by lfp before the model)",
            "foreign": record,
        },
        "data": {**ds.info(), "given_as": str(opts.data)},
        "params": {},
        "init": None,
        "train": None,
        "foreign": record,
        "parents": [],
    }
    return model, meta


def _has_split(model: ForeignModel, x: torch.Tensor, out: torch.Tensor, path: str | Path) -> bool:
    """Whether a TorchScript model's ``features``/``head`` members compose to its forward pass (then feature-space
    densities can use them); their code is checked as ``forward``'s is before they run."""
    net = model.net
    if not (callable(getattr(net, "features", None)) and callable(getattr(net, "head", None))):
        return False
    try:
        check_torchscript_ops(net, path, ("features", "head"))
    except Exception:  # a refused operator, or members that are not scripted modules or methods
        return False
    try:
        with torch.no_grad():
            z = net.head(net.features(model.normalize(x)))
        return (
            isinstance(z, torch.Tensor)
            and z.shape == out.shape
            and bool(torch.allclose(class_logits(z), class_logits(out), rtol=1e-4, atol=1e-5))
        )
    except Exception:
        return False


__all__ = ["foreign_data", "load_foreign_model"]
