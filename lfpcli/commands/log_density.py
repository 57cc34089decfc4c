"""The evaluation estimator behind every perturbed set's ``metrics/log_density``: one per data spec.

Methods compare only if their outputs are scored by the same density, whatever plausibility term (if any) a
method optimised. The estimator is fixed by the data spec alone, never by the method or a user option:

- a per-class isotropic Gaussian KDE (``lfpcli.density.kde``), the normalised log-density ``log q(x' | t)`` in nats;
- in pixel space, on images average-pooled to at most ``MAX_SIDE`` pixels a side (a no-op for inputs up to
  32x32; on 224x224 images it keeps the distances meaningful and the cost small);
- fitted on the clean training split of the data spec, at most ``MAX_POINTS`` seeded points per class, bandwidth
  per class by 5-fold cross-validated likelihood.

It is fitted once and cached under ``$LFP_CACHE_DIR/log-density/`` keyed by the estimator's name and the data
(spec, and the file's sha256 for file-backed data); a cache that cannot be written only costs a refit.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable

import torch
import torch.nn.functional as F

from lfpcli.artifacts import make_record, sha256_file
from lfpcli.artifacts.density import read_density, write_density
from lfpcli.data import Dataset
from lfpcli.density import density_from_state, fit_density
from lfpcli.errors import LfpError

ESTIMATOR = "kde-pixel-v1"
MAX_SIDE = 32
MAX_POINTS = 1000
SEED = 0

DESCRIPTION = {
    "name": ESTIMATOR,
    "estimator": "kde",
    "space": "pixel",
    "pooled_to_max_side": MAX_SIDE,
    "fit_on": "train",
    "max_points_per_class": MAX_POINTS,
    "bandwidth": "per class, 5-fold cross-validated likelihood",
    "seed": SEED,
    "units": "nats, log q(x' | target)",
}


def pool(x: torch.Tensor) -> torch.Tensor:
    """Average-pool ``(N, C, H, W)`` images so neither side exceeds ``MAX_SIDE`` (unchanged when they fit)."""
    h, w = x.shape[-2:]
    if h <= MAX_SIDE and w <= MAX_SIDE:
        return x
    return F.adaptive_avg_pool2d(x, (min(h, MAX_SIDE), min(w, MAX_SIDE)))


def _key(ds: Dataset) -> str:
    spec = dict(ds.spec)
    if spec.get("type") == "file" and "sha256" not in spec:
        spec["sha256"] = sha256_file(spec["path"])
    return hashlib.sha256(json.dumps([ESTIMATOR, spec], sort_keys=True, default=str).encode()).hexdigest()[:16]


def evaluation_density(ds: Dataset, device: torch.device) -> tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], dict[str, Any]]:
    """``(log_density(x', t) -> (N,), description)`` for the data spec ``ds``; fitted once, then read from the cache."""
    from lfpcli.data.registry import cache_dir

    path = cache_dir() / "log-density" / f"{ds.spec.get('name', 'data')}-{_key(ds)}.h5"
    q = None
    if path.is_file():
        try:
            tensors, info, _ = read_density(path)
            if info.get("evaluation_estimator") == ESTIMATOR:
                q = density_from_state("kde", tensors, info["params"])
        except (LfpError, OSError, KeyError, TypeError):
            q = None
    if q is None:
        sp = ds.split("train")
        q = fit_density("kde", pool(sp.x).flatten(1), sp.y, ds.num_classes, seed=SEED, max_points=MAX_POINTS)
        tensors, state = q.state()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            record = make_record("density", {"evaluation_estimator": ESTIMATOR, "data": ds.spec}, seeds={"seed": SEED},
                                 argv=["lfp", "(cache)"])
            write_density(path, tensors, {"kind": "kde", "estimator": "kde", "space": "pixel", "fit_on": "train",
                                          "evaluation_estimator": ESTIMATOR, "params": state, "data": ds.spec}, record,
                          force=True)
        except (OSError, LfpError):
            pass
    q = q.to(device)
    desc = {**DESCRIPTION, "bandwidth_per_class": [float(b) for b in q.bandwidth.tolist()],
            "points_per_class": torch.diff(q.offsets).tolist()}

    @torch.no_grad()
    def log_density(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return q.log_prob(pool(x).flatten(1), t)

    return log_density, desc


__all__ = ["ESTIMATOR", "DESCRIPTION", "evaluation_density", "pool"]
