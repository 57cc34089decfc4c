"""Start a model from another model's weights: every tensor but the classification head (fine-tuning)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from lfpcli.errors import ConfigError

#: State-dict names a transfer never copies: the head (its classes are the source task's) and the pixel
#: normalisation (the new model is built with the source's, see :func:`transfer_features`).
HEAD_PREFIX = "net.head."
NORMALISATION = ("mean", "std")


def transfer_features(model: torch.nn.Module, source: Mapping[str, torch.Tensor], what: str = "the source") -> int:
    """Copy every tensor of ``source`` (a :class:`~lfpcli.models.pixel.PixelModel` state dict) into ``model`` except
    its head and normalisation; returns how many tensors were copied.

    The two must be the same architecture with the same options: a missing or differently shaped tensor is a
    ``ConfigError`` naming the first one."""
    own = model.state_dict()
    keep = {k: v for k, v in source.items() if not k.startswith(HEAD_PREFIX) and k not in NORMALISATION}
    wanted = [k for k in own if not k.startswith(HEAD_PREFIX) and k not in NORMALISATION]
    missing = [k for k in wanted if k not in keep]
    extra = [k for k in keep if k not in own]
    if missing or extra:
        name = (missing or extra)[0]
        raise ConfigError(
            f"{what} does not fit this architecture: {len(missing)} tensors missing, {len(extra)} unexpected "
            f"(first: {name}); give the --arch and --arch-arg it was trained with"
        )
    for k in wanted:
        if tuple(keep[k].shape) != tuple(own[k].shape):
            raise ConfigError(
                f"{what} does not fit this architecture: {k} has shape {tuple(keep[k].shape)}, the model "
                f"{tuple(own[k].shape)}; give the --arch and --arch-arg it was trained with"
            )
    with torch.no_grad():
        for k in wanted:
            own[k].copy_(keep[k].to(own[k].dtype))
    return len(wanted)
