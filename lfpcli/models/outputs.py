"""What a model's output means: K class logits, or one scalar logit for a binary task.

A *scalar-output* model returns ``z`` of shape ``(N,)`` or ``(N, 1)`` for a two-class task whose labels are read
as ``s = 2 y - 1`` in ``{-1, +1}``: it predicts class 1 when ``z > 0``. Everything in lfp that needs class
scores goes through :func:`class_logits`, which views ``z`` as the two logits ``(-z/2, +z/2)``. The view is exact:
``softmax`` of it is ``(sigmoid(-z), sigmoid(z))``, so cross-entropy on it is the logistic loss
``log(1 + exp(-s z))``, the margin ``z_other - z_t`` is ``-s z``, and ``argmax`` is the sign rule (``z = 0`` goes
to class 0, i.e. -1). So every solver and metric handles both kinds of model with one code path.
"""

from __future__ import annotations

import torch

OUTPUTS = ("logits", "scalar")


def class_logits(out: torch.Tensor) -> torch.Tensor:
    """``(N, K)`` logits with ``K >= 2`` unchanged; a scalar output ``(N,)`` / ``(N, 1)`` as ``(N, 2)`` = ``(-z/2, z/2)``."""
    if out.ndim == 1:
        out = out.unsqueeze(1)
    if out.ndim != 2:
        raise ValueError(f"model output must be (N, K) logits or (N,) / (N, 1) scalars, got shape {tuple(out.shape)}")
    if out.shape[1] == 1:
        half = 0.5 * out
        return torch.cat([-half, half], dim=1)
    return out


def predict_labels(out: torch.Tensor) -> torch.Tensor:
    """Predicted class indices ``(N,)`` from a model output (argmax of the logits, or the sign of a scalar)."""
    return class_logits(out).argmax(1)


def signed_labels(y: torch.Tensor) -> torch.Tensor:
    """Labels ``{0, 1}`` as ``{-1, +1}`` (the binary convention of scalar-output models)."""
    return 2 * y.long() - 1
