"""kNN "density gravity": an unnormalised plausibility score that pulls x toward dense parts of the target class.

Each class keeps its training points ``x_i`` and a local-density weight per point,

    w_i = 1 / mean_{j in kNN_t(x_i)} ||x_i - x_j||      (normalised to mean 1 within the class),

and the score of ``x`` for target ``t`` is

    s(x, t) = -||x - m_t(x)||^2,   m_t(x) = sum_{j in kNN_t(x)} w_j x_j / sum_{j in kNN_t(x)} w_j

where ``kNN_t(x)`` are the ``k`` nearest points of class ``t``. The neighbour set is chosen without gradient and
``m_t(x)`` is treated as a constant, so ``grad_x s = -2 (x - m_t(x))`` points toward the weighted centre of the
nearby target-class points. ``s`` is smooth between changes of the neighbour set, and it is **not** a normalised
log-density (``normalized = False``): compare its values only with other values of the same estimator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from lfpcli.density.base import (
    ClassDensity,
    check_positive_int,
    class_generator,
    pack_by_class,
    prepare_fit_data,
    presampled,
    sq_dists,
    subsample,
)
from lfpcli.errors import ConfigError
from lfpcli.progress import Progress

__all__ = ["KNNGravity"]


class KNNGravity(ClassDensity):
    """Local-density-weighted kNN attraction score (unnormalised).

    Buffers: ``points`` ``(M, D)`` sorted by class, ``offsets`` ``(K+1,)``, ``weights`` ``(M,)``. The neighbour
    search runs in chunks of ``chunk_size`` reference points: memory ``O(N * chunk_size + N * k * D)``.
    """

    kind = "knn"
    normalized = False
    _state_keys = ("points", "offsets", "weights")

    def __init__(
        self,
        points: Tensor,
        offsets: Tensor,
        weights: Tensor,
        *,
        k: int = 10,
        chunk_size: int = 4096,
        fit_info: dict[str, Any] | None = None,
    ) -> None:
        self._init_packed_points(points, offsets, chunk_size, fit_info)
        weights = weights.to(points.dtype)
        if weights.shape != (points.shape[0],) or not bool(torch.isfinite(weights).all() and (weights > 0).all()):
            raise ConfigError(f"knn: weights must be {points.shape[0]} positive finite values")
        self.k = check_positive_int("knn", "k", k)
        self.register_buffer("weights", weights.to(points.device))

    # ------------------------------------------------------------------------------------------------- fit
    @classmethod
    def fit(
        cls,
        x: Tensor,
        y: Tensor,
        num_classes: int,
        *,
        seed: int = 0,
        k: int = 10,
        density_k: int | None = None,
        max_points: int | None = None,
        chunk_size: int = 4096,
        progress: Progress | None = None,
        drawn_from: Sequence[int] | None = None,
    ) -> KNNGravity:
        """Keep each class's points (a seeded subsample of at most ``max_points``) and weight each by the inverse
        mean distance to its ``density_k`` (default ``k``) nearest same-class neighbours; ``progress(stage,
        classes_done, num_classes)`` is told as each class is weighted."""
        xs, ys, store_dtype = prepare_fit_data("knn", x, y, num_classes)
        check_positive_int("knn", "k", k)
        density_k = check_positive_int("knn", "density_k", density_k if density_k is not None else k)
        check_positive_int("knn", "max_points", max_points, allow_none=True)
        check_positive_int("knn", "chunk_size", chunk_size)
        counts = torch.bincount(ys, minlength=num_classes).tolist()
        if drawn_from is not None:  # the caller read only each class's subsample (see GaussianKDE.fit)
            keep = [
                presampled(counts[c], int(drawn_from[c]), max_points, class_generator(seed, c))
                for c in range(num_classes)
            ]
        else:
            keep = [subsample(counts[c], max_points, class_generator(seed, c)) for c in range(num_classes)]
        points, offsets = pack_by_class(xs, ys, keep)
        off = offsets.tolist()
        parts = []
        for c in range(num_classes):
            if progress is not None:
                progress("knn: local densities", c, num_classes, unit="class")
            parts.append(_local_density(points[off[c] : off[c + 1]], density_k, chunk_size))
        if progress is not None:
            progress("knn: local densities", num_classes, num_classes, unit="class")
        weights = torch.cat(parts)
        info = {"seed": int(seed), "density_k": density_k, "max_points": max_points}
        return cls(points.to(store_dtype), offsets, weights.to(store_dtype), k=k, chunk_size=chunk_size, fit_info=info)

    # ------------------------------------------------------------------------------------------- evaluate
    def _log_prob(self, x: Tensor, t: Tensor) -> Tensor:
        points = self._buf("points", x)
        weights = self._buf("weights", x)
        off = self._offsets

        def one_class(c: int, xc: Tensor) -> Tensor:
            ref = points[off[c] : off[c + 1]]
            with torch.no_grad():
                idx = _nearest(xc.detach(), ref, min(self.k, ref.shape[0]), self.chunk_size)
            w = weights[off[c] : off[c + 1]][idx]  # (n, k)
            centre = (w.unsqueeze(2) * ref[idx]).sum(1) / w.sum(1, keepdim=True)
            return -((xc - centre) ** 2).sum(1)

        # Grouping by class: the neighbour search is a distance matrix against one class's points.
        return self._grouped(x, t, one_class)

    # ---------------------------------------------------------------------------------------------- state
    def _hyper_params(self) -> dict[str, Any]:
        return {"k": self.k, "chunk_size": self.chunk_size, "fit_info": self.fit_info}

    @classmethod
    def _from_state(cls, tensors: dict[str, Tensor], params: dict[str, Any]) -> KNNGravity:
        density = cls(
            tensors["points"],
            tensors["offsets"],
            tensors["weights"],
            k=int(params.get("k", 10)),
            chunk_size=int(params.get("chunk_size", 4096)),
            fit_info=params.get("fit_info"),
        )
        if density.num_classes != int(params["num_classes"]) or density.dim != int(params["dim"]):
            raise ConfigError(
                f"tensors give {density.num_classes} classes x {density.dim} dims, params say "
                f"{params['num_classes']} x {params['dim']}"
            )
        return density


def _nearest(x: Tensor, ref: Tensor, k: int, chunk: int, *, self_rows: Tensor | None = None) -> Tensor:
    """Indices ``(n, k)`` of the ``k`` nearest rows of ``ref`` for each row of ``x``, scanning ``ref`` in chunks
    and keeping a running top-k. ``self_rows`` ``(n,)``: the row of ``ref`` that ``x[i]`` is, never returned."""
    best_d: Tensor | None = None
    best_i: Tensor | None = None
    rows = self_rows.unsqueeze(1) if self_rows is not None else None
    for s in range(0, ref.shape[0], chunk):
        d2 = sq_dists(x, ref[s : s + chunk])
        if rows is not None:
            cols = torch.arange(s, s + d2.shape[1], device=x.device).unsqueeze(0)
            d2 = d2.masked_fill(rows == cols, float("inf"))
        kk = min(k, d2.shape[1])
        d, i = d2.topk(kk, dim=1, largest=False)
        i = i + s
        if best_d is not None and best_i is not None:
            d, order = torch.cat([best_d, d], 1).topk(min(k, best_d.shape[1] + kk), dim=1, largest=False)
            i = torch.cat([best_i, i], 1).gather(1, order)
        best_d, best_i = d, i
    assert best_i is not None
    return best_i


def _nearest_excluding(points: Tensor, start: int, rows: int, k: int, chunk: int) -> Tensor:
    """Nearest other points of ``points[start : start + rows]`` within ``points``."""
    block = points[start : start + rows]
    self_rows = torch.arange(start, start + block.shape[0], device=points.device)
    return _nearest(block, points, k, chunk, self_rows=self_rows)


def _local_density(points: Tensor, k: int, chunk: int) -> Tensor:
    """``1 / mean distance to the k nearest other points``, normalised to mean 1; ``(n, D)`` -> ``(n,)``."""
    n = points.shape[0]
    k = min(k, n - 1)
    if k == 0:
        return points.new_ones(n)
    # Row blocks keep the (rows x chunk) distances and (rows x k x D) neighbour gathers bounded.
    rows = max(1, (1 << 22) // max(chunk, k * points.shape[1]))
    mean_dist = points.new_empty(n)
    for s in range(0, n, rows):
        idx = _nearest_excluding(points, s, rows, k, chunk)
        mean_dist[s : s + rows] = (points[s : s + rows].unsqueeze(1) - points[idx]).norm(dim=2).mean(1)
    # Duplicated points would get an infinite weight; floor at a small fraction of the typical spacing.
    typical = mean_dist[mean_dist > 0]
    floor = 1e-3 * float(typical.median()) if typical.numel() else 1.0
    dens = 1.0 / mean_dist.clamp_min(floor)
    return dens / dens.mean()
