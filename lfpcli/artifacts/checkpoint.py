"""Model checkpoints (``.pt``): ``{"state_dict": {name: Tensor}, "meta": record}``.

``meta`` holds only JSON types, so the file loads with ``torch.load(path, weights_only=True)`` in plain
PyTorch, and lfp itself never unpickles anything else: a file crafted to run code is refused unread.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any, Mapping

import torch

from lfpcli.artifacts.files import atomic_output
from lfpcli.artifacts.foreign_model import describe_state_dict
from lfpcli.artifacts.integrity import CHECKSUM_KEY, checkpoint_checksum
from lfpcli.artifacts.provenance import SCHEMA_VERSION, check_parents, jsonable
from lfpcli.artifacts.whatfile import describe_non_checkpoint
from lfpcli.errors import ArtifactError, InputError


def save_checkpoint(
    path: str | os.PathLike, state_dict: Mapping[str, torch.Tensor], meta: Mapping[str, Any], *, force: bool = False
) -> None:
    """Write a checkpoint atomically; tensors are moved to the CPU and made contiguous."""
    sd = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    meta = jsonable({k: v for k, v in meta.items() if k != CHECKSUM_KEY})
    meta[CHECKSUM_KEY] = checkpoint_checksum(sd, meta)
    payload = {"state_dict": sd, "meta": meta}
    with atomic_output(path, force) as tmp:
        torch.save(payload, tmp)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read ``(state_dict, meta)`` with ``weights_only=True``; any other content is an ``ArtifactError``."""
    if not os.path.exists(path):
        raise InputError(f"checkpoint {path} does not exist")
    if os.path.isdir(path):
        raise InputError(f"{path} is a folder, not a checkpoint file")
    if os.path.getsize(path) == 0:
        raise ArtifactError(f"{path} is empty, not an lfp checkpoint")
    foreign = describe_non_checkpoint(path)
    if foreign:
        raise ArtifactError(
            f"{path} is {foreign}, not a model checkpoint: give the .pt file that lfp train or lfp retrain wrote"
        )
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols are not the user's business
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError... for foreign files
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            raise ArtifactError(
                f"{path} holds pickled Python objects that lfp refuses to load (only plain tensors and metadata "
                f"are accepted); it is not an lfp checkpoint"
            ) from None
        if "zip" in str(e).lower() or "central directory" in str(e):
            raise ArtifactError(
                f"{path} is a damaged or truncated checkpoint (its zip archive cannot be read); "
                f"write it again with lfp train or lfp retrain"
            ) from None
        raise ArtifactError(f"{path} is not a readable checkpoint ({_first_line(e)})") from None
    if not isinstance(obj, dict) or "state_dict" not in obj or "meta" not in obj:
        weights = describe_state_dict(obj)
        if weights:
            raise ArtifactError(
                f"{path} is {weights}, not an lfp checkpoint: the weights of a model lfp did not write, which "
                f"lfp perturb, eval, density and saliency read as --in {path} with --arch NAME (the registered "
                f"architecture they fit; see lfp train --help), --data and --normalize"
            )
        raise ArtifactError(f"{path} is a PyTorch file but not an lfp checkpoint (no 'state_dict' and 'meta')")
    meta, sd = obj["meta"], obj["state_dict"]
    if not isinstance(meta, dict) or meta.get("kind") != "checkpoint":
        kind = meta.get("kind") if isinstance(meta, dict) else None
        raise ArtifactError(f"{path} is a {kind or 'foreign'} file, not an lfp checkpoint")
    if not _int(meta.get("schema")) or meta["schema"] < 1:
        raise ArtifactError(
            f"{path} has an invalid checkpoint schema {meta.get('schema')!r} (this lfp reads schema "
            f"1..{SCHEMA_VERSION}); the file is damaged"
        )
    if meta["schema"] > SCHEMA_VERSION:
        raise ArtifactError(
            f"{path} has checkpoint schema {meta['schema']}; this lfp reads schema 1..{SCHEMA_VERSION}: upgrade lfp"
        )
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise ArtifactError(f"{path} has a malformed state_dict (expected names mapped to tensors)")
    _check_meta(path, meta)
    # last, so that a file with a specific fault is named for it; a damaged one that passed is caught here
    if meta["schema"] >= 2 and meta.get(CHECKSUM_KEY) != checkpoint_checksum(sd, meta):
        what = (
            "has lost its checksum" if CHECKSUM_KEY not in meta else "does not match the checksum it was written with"
        )
        raise ArtifactError(f"{path} {what} (its weights or metadata changed); the file is damaged or was edited")
    return sd, meta


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_meta(path: str | os.PathLike, meta: dict[str, Any]) -> None:
    """The parts of the record that lfp trusts to rebuild and use the model must be well formed."""
    m = meta.get("model")
    if not isinstance(m, dict):
        raise ArtifactError(
            f"{path}: checkpoint metadata does not describe a model (no 'model' record); the file is damaged"
        )
    shape, k = m.get("input_shape"), m.get("num_classes")
    bad = None
    if not isinstance(m.get("arch"), str) or not m["arch"]:
        bad = f"arch {m.get('arch')!r}"
    elif not isinstance(m.get("arch_args", {}), dict):
        bad = "arch_args (expected a mapping)"
    elif not _int(k) or k < 2:
        bad = f"num_classes {k!r} (expected an integer >= 2)"
    elif m.get("output", "logits") not in ("logits", "scalar") or (m.get("output") == "scalar" and k != 2):
        bad = f"output {m.get('output')!r} (expected logits, or scalar for 2 classes)"
    elif not isinstance(shape, list) or len(shape) != 3 or not all(_int(v) and v > 0 for v in shape):
        bad = f"input_shape {shape!r} (expected [C, H, W])"
    else:
        for key in ("mean", "std"):
            v = m.get(key)
            if (
                not isinstance(v, list)
                or len(v) != shape[0]
                or not all(_num(x) for x in v)
                or (key == "std" and min(v) <= 0)
            ):
                bad = f"{key} {v!r} (expected {shape[0]} {'positive ' if key == 'std' else ''}numbers)"
                break
    if bad:
        raise ArtifactError(f"{path}: checkpoint metadata has an invalid model {bad}; the file is damaged")
    check_parents(meta, path)
    data = meta.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("spec"), (dict, str)):
        raise ArtifactError(
            f"{path}: checkpoint metadata does not record the data the model was trained on; the file is damaged"
        )
    for key in ("params", "train", "init"):
        if not isinstance(meta.get(key) or {}, dict):
            raise ArtifactError(f"{path}: checkpoint metadata has a malformed '{key}' record; the file is damaged")
    cfg = (meta.get("train") or {}).get("config") or {}
    try:
        from lfpcli.training.config import TrainConfig

        TrainConfig.resolve({}, base=cfg if isinstance(cfg, dict) else None)
        if not isinstance(cfg, dict):
            raise TypeError
    except (InputError, TypeError, ValueError) as e:
        reason = f": {e}" if isinstance(e, InputError) else ""
        raise ArtifactError(
            f"{path}: checkpoint metadata records invalid training settings{reason}; the file is damaged"
        ) from None
