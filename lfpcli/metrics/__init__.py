"""Accuracy figures, each named for what it is.

For predictions ``pred``, labels ``y`` and groups ``g`` of one split:

- ``accuracy``: fraction of samples classified correctly;
- ``groups[name]``: accuracy and sample count within each group;
- ``worst_group_accuracy``: the lowest group accuracy (groups with no samples in the split are skipped), and
  ``worst_group`` its name (the first such group on a tie);
- ``mean_group_accuracy``: the unweighted mean of group accuracies;
- ``train_weighted_accuracy``: group accuracies averaged with weights = the *training* group proportions
  (how WaterBirds results are usually reported).

Group figures are ``None`` where the data has no groups.
"""

from __future__ import annotations

from typing import Any

import torch

from lfpcli.data.dataset import Split
from lfpcli.models.outputs import class_logits
from lfpcli.progress import Progress, no_progress


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    split: Split,
    device: torch.device,
    batch_size: int = 256,
    progress: Progress = no_progress,
    stage: str = "predicting",
) -> torch.Tensor:
    """Predicted classes (N,) on the CPU, computed batch by batch in eval mode (mode restored after);
    ``progress(stage, samples_done, N)`` after each batch."""
    was_training = model.training
    model.eval()
    out = []
    n = len(split)
    try:
        progress(stage, 0, n, unit="sample")
        for b, (x, *_) in enumerate(split.batches(batch_size)):
            out.append(class_logits(model(x.to(device, non_blocking=True))).argmax(1))
            progress(stage, min((b + 1) * batch_size, n), n, unit="sample")
    finally:
        model.train(was_training)
    return torch.cat(out).cpu() if out else torch.zeros(0, dtype=torch.long)


def split_metrics(
    pred: torch.Tensor,
    y: torch.Tensor,
    group: torch.Tensor,
    group_names: list[str] | None = None,
    train_group_counts: torch.Tensor | None = None,
) -> dict[str, Any]:
    """The figures above for one split; ``pred``, ``y``, ``group`` are (N,) int tensors."""
    correct = (pred == y).double()
    n = int(y.numel())
    res: dict[str, Any] = {
        "accuracy": float(correct.mean()) if n else None,
        "n": n,
        "worst_group_accuracy": None,
        "worst_group": None,
        "mean_group_accuracy": None,
        "train_weighted_accuracy": None,
        "groups": None,
    }
    if not group_names or n == 0 or bool((group < 0).all()):
        return res
    k = len(group_names)
    valid = group >= 0
    counts = torch.bincount(group[valid], minlength=k)[:k].double()
    hits = torch.bincount(group[valid], weights=correct[valid], minlength=k)[:k]
    acc = hits / counts.clamp_min(1)
    present = counts > 0
    res["groups"] = {
        name: {"accuracy": float(acc[i]) if present[i] else None, "n": int(counts[i])}
        for i, name in enumerate(group_names)
    }
    if present.any():
        res["worst_group_accuracy"] = float(acc[present].min())
        res["worst_group"] = group_names[int(torch.where(present, acc, torch.full_like(acc, float("inf"))).argmin())]
        res["mean_group_accuracy"] = float(acc[present].mean())
        if train_group_counts is not None and train_group_counts.sum() > 0:
            w = train_group_counts.double()[:k] * present
            res["train_weighted_accuracy"] = float((acc * w).sum() / w.sum()) if w.sum() > 0 else None
    return res
