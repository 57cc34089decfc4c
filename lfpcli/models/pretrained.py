"""``--weights``: a local file, or torchvision's name for an architecture's pretrained weights.

A name (``IMAGENET1K_V1``, ``DEFAULT``, or the qualified ``ResNet50_Weights.IMAGENET1K_V1``) is resolved through
torchvision's weights API (``torchvision.models.get_model_weights(arch)``: the enum member's ``url``) to the file
torch's hub cache keeps it as, ``torch.hub.get_dir()/checkpoints/<file name of the url>``; the file is fetched
there only when absent (from ``$LFP_MIRROR/<file name>`` when that is set), and its SHA-256 is checked against the
prefix in its name (torch.hub's rule) after a download. A file already in the cache is used as it is, as torch.hub
does. Either way the architecture then reads the file itself with ``torch.load(weights_only=True)``
(:func:`lfpcli.models.nets.load_local_weights`); torch.hub's loader, which unpickles, is never used.

A file path keeps working as before; when its name is torchvision's file name for the architecture, its
weights name is recorded too.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lfpcli.errors import ConfigError, InputError
from lfpcli.fetch import checksum, fetch
from lfpcli.models.nets import TORCHVISION_FILES
from lfpcli.progress import Progress, no_progress

#: what a weights name looks like (never a path): ``IMAGENET1K_V1``, ``DEFAULT``, ``ResNet50_Weights.IMAGENET1K_V1``
NAME = re.compile(r"^(?:[A-Za-z0-9]+_Weights\.)?[A-Z][A-Z0-9_]*$")


def _enum(arch: str):
    """torchvision's weights enum for ``arch``, or None when torchvision has no such model."""
    from torchvision.models import get_model_weights

    try:
        return get_model_weights(arch)
    except (ValueError, KeyError):
        return None


def weight_names(arch: str) -> list[str]:
    """The names torchvision lists for ``arch`` (``DEFAULT`` last), empty when it lists none."""
    enum = _enum(arch)
    return [] if enum is None else [m.name for m in enum] + ["DEFAULT"]


def cache_dir() -> Path:
    """Where torch's hub keeps weight files: ``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch/...``)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def _file_name(url: str) -> str:
    return os.path.basename(urlparse(url).path)


def _member(value: str, arch: str):
    """The enum member ``value`` names for ``arch``; a clear error when it names none."""
    enum = _enum(arch)
    names = weight_names(arch)
    if enum is None:
        raise ConfigError(
            f"--weights {value} names torchvision weights, but torchvision has none for --arch {arch} "
            f"(named weights: {', '.join(TORCHVISION_FILES)}); give a weights file instead"
        )
    qualifier, _, short = value.rpartition(".")
    if short not in names or (qualifier and qualifier != enum.__name__):
        raise ConfigError(
            f"--weights {value}: torchvision's weights for {arch} are {', '.join(names)} "
            f"(or {enum.__name__}.NAME), or give a weights file"
        )
    return enum.DEFAULT if short == "DEFAULT" else enum[short]


def _provenance(member, given: str) -> dict[str, Any]:
    return {
        "name": member.name,
        "given": given,
        "torchvision": f"{type(member).__name__}.{member.name}",
        "url": member.url,
    }


def identify(path: str | Path, arch: str) -> dict[str, Any] | None:
    """The torchvision weights a local file is, by its file name (``resnet50-0676ba61.pth`` is IMAGENET1K_V1)."""
    enum = _enum(arch)
    if enum is None:
        return None
    for member in enum:
        if _file_name(member.url) == Path(path).name:
            return _provenance(member, str(path))
    return None


def resolve_weights(value: str, arch: str, *, progress: Progress = no_progress) -> tuple[str, dict[str, Any] | None]:
    """``(file path, provenance)`` for a ``--weights`` value: an existing file (or anything that is not a name) as
    given; a torchvision name -> its file in torch's hub cache, fetched when absent. ``provenance`` (None when the
    file is not torchvision's): ``name`` (the enum member), ``given``, ``torchvision`` (qualified name), ``url``."""
    if Path(value).expanduser().exists() or not NAME.match(value):
        return value, identify(value, arch)
    member = _member(value, arch)
    name = _file_name(member.url)
    path = cache_dir() / name
    if not path.is_file():
        mirror = os.environ.get("LFP_MIRROR")
        url = mirror.rstrip("/") + "/" + name if mirror else member.url
        try:
            fetch([url], path, progress=progress)
        except InputError as e:
            raise InputError(
                f"torchvision's {member.name} weights for {arch} ({name}) are not in torch's hub cache "
                f"{path.parent} and could not be fetched: {e}. Or pass --weights FILE"
            ) from None
        want = re.search(r"-([a-f0-9]+)\.", name)
        if want:
            found = checksum(path, "sha256").split(":", 1)[1]
            if not found.startswith(want.group(1)):
                path.unlink(missing_ok=True)
                raise InputError(
                    f"{url}: sha256 expected to start with {want.group(1)} (its name says so), found {found}; "
                    f"the file was removed"
                )
    return str(path), _provenance(member, value)
