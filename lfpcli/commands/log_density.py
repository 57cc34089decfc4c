"""The evaluation estimator behind every perturbed set's ``metrics/log_density``: one per data spec.

Methods compare only if their outputs are scored by the same density, whatever plausibility term (if any) a
method optimised. The estimator is fixed by the data spec alone, never by the method or a user option:

- a per-class isotropic Gaussian KDE (``lfpcli.density.kde``), the normalised log-density ``log q(x' | t)`` in nats;
- in pixel space, on images average-pooled to at most ``MAX_SIDE`` pixels a side (a no-op for inputs up to
  32x32; on 224x224 images it keeps the distances meaningful and the cost small);
- fitted on the clean training split of the data spec, at most ``MAX_POINTS`` seeded points per class, bandwidth
  per class by 5-fold cross-validated likelihood; only those points are read (a split read from disk is never
  loaded whole), with exactly the fit the whole split would give.

Perturbed *training* samples are scored leave-one-out: the kernel of the sample's own clean image (when it is one
of the reference points) is left out, so an image that barely moved is not credited with the peak of its own
kernel, which would swamp every difference between methods.

It is fitted once and cached under ``$LFP_CACHE_DIR/log-density/`` keyed by the estimator's name and the data
(spec, and the file's sha256 for file-backed data); a cache that cannot be written only costs a refit.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from lfpcli.artifacts import make_record, sha256_file
from lfpcli.artifacts.density import read_density, write_density
from lfpcli.data import Dataset
from lfpcli.density import density_from_state, fit_density
from lfpcli.density.base import LOG_2PI, class_generator, sq_dists, subsample, subsample_rows
from lfpcli.errors import LfpError
from lfpcli.progress import Progress, no_progress

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
    "leave_one_out": "perturbed training samples: the kernel of their own clean image is left out",
}

LogDensity = Callable[[torch.Tensor, torch.Tensor, Optional[torch.Tensor]], torch.Tensor]


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


def _reference_index(ds: Dataset) -> list[torch.Tensor]:
    """Per class, the training-split ``index`` of each reference point, in the KDE's row order (the same seeded
    subsample ``GaussianKDE.fit`` draws)."""
    tr = ds.split("train")
    out = []
    for k in range(ds.num_classes):
        members = (tr.y == k).nonzero().flatten()
        keep = subsample(int(members.numel()), MAX_POINTS, class_generator(SEED, k))
        out.append(tr.index[members[keep]])
    return out


def evaluation_density(
    ds: Dataset, device: torch.device, progress: Progress = no_progress
) -> tuple[LogDensity, dict[str, Any]]:
    """``(log_density(x', t, exclude=None) -> (N,), description)`` for the data spec ``ds``; fitted once, then read
    from the cache. ``exclude`` (N,): the training-split ``index`` of each sample's clean source image, whose own
    kernel is then left out (pass it for perturbed training samples; None scores against every reference point)."""
    from lfpcli.data.registry import cache_dir

    path = cache_dir() / "log-density" / f"{ds.spec.get('name', 'data')}-{_key(ds)}.h5"
    tr = ds.split("train")
    ref_index = _reference_index(ds)
    q = None
    if path.is_file():
        try:
            tensors, info, _ = read_density(path)
            if info.get("evaluation_estimator") == ESTIMATOR:
                q = density_from_state("kde", tensors, info["params"])
                # the leave-one-out bookkeeping must describe exactly these reference points
                first = [int(i[0]) for i in ref_index if len(i)]
                rows = [r for r, i in zip(q.offsets[:-1].tolist(), ref_index) if len(i)]
                pos = {int(v): j for j, v in enumerate(tr.index.tolist())}
                if not all(
                    torch.equal(q.points[r], pool(tr.take([pos[i]])).flatten(1)[0].to(q.points.dtype))
                    for r, i in zip(rows, first)
                ):
                    q = None
        except (LfpError, OSError, KeyError, TypeError, ValueError):
            q = None
    if q is None:

        def told(stage: str, done: int, total: int, **status: Any) -> None:
            progress(f"fitting the {ESTIMATOR} log-density estimator (once)", done, total, **status)

        # only the reference points are read (at most MAX_POINTS per class, pooled batch by batch): the same fit
        # as on the whole split, without holding it in memory
        rows, counts = subsample_rows(tr.y, ds.num_classes, MAX_POINTS, SEED)
        sub = tr.subset(rows)
        pts = torch.cat([pool(x).flatten(1) for x, *_ in sub.batches(256)]) if len(sub) else torch.zeros(0, 1)
        q = fit_density(
            "kde", pts, tr.y[rows], ds.num_classes, seed=SEED, max_points=MAX_POINTS, progress=told, drawn_from=counts
        )
        tensors, state = q.state()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            record = make_record(
                "density",
                {"evaluation_estimator": ESTIMATOR, "data": ds.spec},
                seeds={"seed": SEED},
                argv=["lfp", "(cache)"],
            )
            write_density(
                path,
                tensors,
                {
                    "kind": "kde",
                    "estimator": "kde",
                    "space": "pixel",
                    "fit_on": "train",
                    "evaluation_estimator": ESTIMATOR,
                    "params": state,
                    "data": ds.spec,
                },
                record,
                force=True,
            )
        except (OSError, LfpError):
            pass
    q = q.to(device)
    off = q.offsets.tolist()
    points = [q.points[off[k] : off[k + 1]] for k in range(ds.num_classes)]
    points_sq = [(p * p).sum(1) for p in points]
    log_h = [float(v) for v in q.bandwidth.double().log().tolist()]
    ref_index = [i.to(device) for i in ref_index]
    dim = q.dim
    desc = {
        **DESCRIPTION,
        "bandwidth_per_class": [float(b) for b in q.bandwidth.tolist()],
        "points_per_class": [len(p) for p in points],
    }

    @torch.no_grad()
    def log_density(x: torch.Tensor, t: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
        """log q(x'_n | t_n) = logsumexp_i(-||x'_n - x_i||^2 / 2h^2) - log m_n - (D/2) log(2 pi h^2) over the
        reference points of class t_n (m_n of them: all, or all but the excluded one)."""
        xf = pool(x).flatten(1).to(device=q.points.device, dtype=q.points.dtype)
        t = t.to(xf.device)
        out = torch.empty(xf.shape[0], dtype=xf.dtype, device=xf.device)
        for k in range(ds.num_classes):
            sel = (t == k).nonzero().flatten()
            if sel.numel() == 0:
                continue
            logk = sq_dists(xf[sel], points[k], points_sq[k]) * (-0.5 * math.exp(-2 * log_h[k]))
            count = torch.full((sel.numel(),), float(len(points[k])), dtype=xf.dtype, device=xf.device)
            if exclude is not None:
                hit = exclude.to(xf.device)[sel][:, None] == ref_index[k][None, :]
                logk = logk.masked_fill(hit, float("-inf"))
                count = count - hit.sum(1)
            value = torch.logsumexp(logk, 1) - count.log() - 0.5 * dim * (LOG_2PI + 2 * log_h[k])
            out[sel] = torch.where(count > 0, value, torch.full_like(value, float("-inf")))  # no point left
        return out

    return log_density, desc


__all__ = ["ESTIMATOR", "DESCRIPTION", "evaluation_density", "pool"]
