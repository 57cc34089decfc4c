"""Gaussian kernel density estimate per class with an isotropic, per-class bandwidth.

    log q(x | t) = logsumexp_i( -||x - x_i||^2 / (2 h_t^2) ) - log n_t - (D / 2) log(2 pi h_t^2)

over the ``n_t`` stored reference points ``x_i`` of class ``t``. ``h_t`` is the standard deviation of the kernel
(sklearn's ``KernelDensity(bandwidth=h_t)``; scipy's ``gaussian_kde`` instead scales the data covariance by a factor).
It is given, or chosen per class by k-fold cross-validated held-out log-likelihood over a log-spaced grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from lfpcli.density.base import (
    LOG_2PI,
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

__all__ = ["GaussianKDE", "kfold_splits", "cv_log_likelihood", "default_bandwidth_grid"]

# Elements of one (grid x held-out x train) block during cross-validation: ~32 MB in float64.
_CV_BLOCK = 1 << 22


class GaussianKDE(ClassDensity):
    """Per-class isotropic Gaussian KDE (normalised log-density).

    Buffers: ``points`` ``(M, D)`` reference points sorted by class, ``offsets`` ``(K+1,)`` (class ``k`` owns rows
    ``offsets[k]:offsets[k+1]``), ``bandwidth`` ``(K,)``. ``log_prob`` is evaluated in chunks of ``chunk_size``
    reference points, so its memory is ``O(N * n_t)`` at most (``O(N * chunk_size)`` without autograd).
    """

    kind = "kde"
    normalized = True
    _state_keys = ("points", "offsets", "bandwidth")

    def __init__(
        self,
        points: Tensor,
        offsets: Tensor,
        bandwidth: Tensor,
        *,
        chunk_size: int = 4096,
        fit_info: dict[str, Any] | None = None,
    ) -> None:
        self._init_packed_points(points, offsets, chunk_size, fit_info)
        bandwidth = bandwidth.to(points.dtype)
        k = self.num_classes
        if bandwidth.shape != (k,) or not bool(torch.isfinite(bandwidth).all() and (bandwidth > 0).all()):
            raise ConfigError(f"kde: bandwidth must be {k} positive finite values, got {bandwidth.tolist()}")
        self.register_buffer("bandwidth", bandwidth.to(points.device))

    # ------------------------------------------------------------------------------------------------- fit
    @classmethod
    def fit(
        cls,
        x: Tensor,
        y: Tensor,
        num_classes: int,
        *,
        seed: int = 0,
        bandwidth: float | Sequence[float] | None = None,
        bandwidth_grid: Sequence[float] | None = None,
        num_bandwidths: int = 24,
        cv_folds: int = 5,
        max_points: int | None = None,
        chunk_size: int = 4096,
        progress: Progress | None = None,
        drawn_from: Sequence[int] | None = None,
    ) -> GaussianKDE:
        """Store each class's points (a seeded subsample of at most ``max_points``) and pick its bandwidth.

        ``bandwidth``: one value for all classes or one per class; when ``None`` it is chosen per class by
        ``cv_folds``-fold cross-validation over ``bandwidth_grid`` (default: ``num_bandwidths`` log-spaced values
        from ``default_bandwidth_grid``). Classes with a single point take the geometric mean of the others.
        ``progress(stage, classes_done, num_classes)`` is told as each class's bandwidth is chosen.
        """
        xs, ys, store_dtype = prepare_fit_data("kde", x, y, num_classes)
        check_positive_int("kde", "max_points", max_points, allow_none=True)
        check_positive_int("kde", "cv_folds", cv_folds)
        check_positive_int("kde", "num_bandwidths", num_bandwidths)
        if cv_folds < 2:
            raise ConfigError(f"kde: cv_folds must be >= 2, got {cv_folds}")
        counts = torch.bincount(ys, minlength=num_classes).tolist()
        gens = [class_generator(seed, k) for k in range(num_classes)]
        if drawn_from is not None:
            # the caller read only each class's subsample (``subsample_rows``): draw it again to advance the
            # generators exactly as fitting on every point would have, then keep every point given
            keep = [presampled(counts[k], int(drawn_from[k]), max_points, gens[k]) for k in range(num_classes)]
        else:
            keep = [subsample(counts[k], max_points, gens[k]) for k in range(num_classes)]
        points, offsets = pack_by_class(xs, ys, keep)
        off = offsets.tolist()

        info: dict[str, Any] = {"seed": int(seed), "max_points": max_points}
        if bandwidth is not None:
            try:
                values = torch.as_tensor(bandwidth, dtype=torch.float64).detach().flatten().cpu()
            except (TypeError, ValueError, RuntimeError):
                values = torch.zeros(0, dtype=torch.float64)
            if values.numel() == 1:
                values = values.expand(num_classes)
            if values.numel() != num_classes or not bool((torch.isfinite(values) & (values > 0)).all()):
                raise ConfigError(
                    f"kde: bandwidth must be a positive number or {num_classes} of them, got {bandwidth!r}"
                )
            h = values.clone()
            info["bandwidth_source"] = "given"
        else:
            if bandwidth_grid is not None:
                try:
                    grid_vals = [float(v) for v in bandwidth_grid]
                except (TypeError, ValueError):
                    grid_vals = []
                if not grid_vals or not all(math.isfinite(v) and v > 0 for v in grid_vals):
                    raise ConfigError(f"kde: bandwidth_grid must hold positive numbers, got {bandwidth_grid!r}")
                fixed_grid = torch.tensor(sorted(grid_vals), dtype=torch.float64, device=xs.device)
            else:
                fixed_grid = None
            chosen: list[float | None] = []
            edge: list[bool] = []
            stage = f"kde: bandwidth by {cv_folds}-fold cross-validation"
            if progress is not None:
                progress(stage, 0, num_classes, unit="class")
            for k in range(num_classes):
                if progress is not None and k:
                    progress(stage, k, num_classes, unit="class")
                pk = points[off[k] : off[k + 1]]
                if pk.shape[0] < 2:
                    chosen.append(None)
                    edge.append(False)
                    continue
                grid = fixed_grid if fixed_grid is not None else default_bandwidth_grid(pk, num_bandwidths)
                splits = kfold_splits(pk.shape[0], cv_folds, gens[k])
                scores = cv_log_likelihood(pk, grid, splits)
                best = int(torch.argmax(scores))
                chosen.append(float(grid[best]))
                edge.append(grid.numel() > 1 and best in (0, grid.numel() - 1))
            if progress is not None:
                progress(stage, num_classes, num_classes, unit="class")
            known = [v for v in chosen if v is not None]
            if not known:
                raise ConfigError(
                    "kde: every class has a single point, so no bandwidth can be cross-validated; pass bandwidth="
                )
            fallback = math.exp(sum(math.log(v) for v in known) / len(known))
            h = torch.tensor([fallback if v is None else v for v in chosen], dtype=torch.float64)
            info.update(bandwidth_source="cv", cv_folds=cv_folds, num_bandwidths=num_bandwidths, cv_at_grid_edge=edge)
            if bandwidth_grid is not None:
                info["bandwidth_grid"] = sorted(float(v) for v in bandwidth_grid)
        return cls(points.to(store_dtype), offsets, h.to(store_dtype), chunk_size=chunk_size, fit_info=info)

    # ------------------------------------------------------------------------------------------- evaluate
    def _log_prob(self, x: Tensor, t: Tensor) -> Tensor:
        points = self._buf("points", x)
        bandwidth = self._buf("bandwidth", x)
        off, chunk, dim = self._offsets, self.chunk_size, self.dim
        sizes = [off[k + 1] - off[k] for k in range(self.num_classes)]
        if self._use_fused(t) and max(sizes) <= chunk:
            # every class in one batched product: (K, M, D) inputs against (K, P, D) reference points, padded
            # points masked out with -inf; the Python loop per class is gone, the arithmetic is the same
            pad, slots, _ = self._padded(x, t)
            ref, valid, n_ref = self._padded_points(points)
            d2 = (
                pad.pow(2).sum(-1, keepdim=True)
                - 2.0 * torch.bmm(pad, ref.transpose(1, 2))
                + ref.pow(2).sum(-1).unsqueeze(1)
            ).clamp_min(0.0)
            scale = (-0.5 / (bandwidth * bandwidth)).view(-1, 1, 1)
            lse = torch.logsumexp((d2 * scale).masked_fill(~valid.unsqueeze(1), -math.inf), dim=2).flatten()[slots]
            return lse - (n_ref.log() + 0.5 * dim * (LOG_2PI + 2.0 * torch.log(bandwidth)))[t]

        def one_class(k: int, xk: Tensor) -> Tensor:
            ref = points[off[k] : off[k + 1]]
            h = bandwidth[k]
            scale = -0.5 / (h * h)
            parts = [
                torch.logsumexp(sq_dists(xk, ref[s : s + chunk]) * scale, dim=1) for s in range(0, ref.shape[0], chunk)
            ]
            lse = parts[0] if len(parts) == 1 else torch.logsumexp(torch.stack(parts, dim=1), dim=1)
            return lse - math.log(ref.shape[0]) - 0.5 * dim * (LOG_2PI + 2.0 * torch.log(h))

        # Grouping by class: gathering each sample's reference set would need (N, n_t, D) memory.
        return self._grouped(x, t, one_class)

    def _padded_points(self, points: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The reference points as ``(K, P, D)`` (P the largest class's count, zero rows as padding), the ``(K, P)``
        mask of real rows and the ``(K,)`` counts; kept for the dtype and device last asked for, so an evaluation
        inside a solver's loop copies nothing to the device."""
        key = (points.dtype, points.device)
        cached = getattr(self, "_points_padded", None)
        if cached is None or cached[0] != key:
            off = self._offsets
            sizes = [off[k + 1] - off[k] for k in range(self.num_classes)]
            p = max(sizes)
            ref = points.new_zeros(self.num_classes, p, points.shape[1])
            valid = torch.zeros(self.num_classes, p, dtype=torch.bool, device=points.device)
            for k, nk in enumerate(sizes):  # once per fit, not per evaluation
                ref[k, :nk] = points[off[k] : off[k + 1]]
                valid[k, :nk] = True
            cached = (key, ref, valid, torch.tensor(sizes, device=points.device, dtype=points.dtype))
            self._points_padded = cached
        return cached[1], cached[2], cached[3]

    def plausibility_weight(self) -> float:
        """The mean squared bandwidth ``mean_t h_t^2`` (see ``ClassDensity.plausibility_weight``)."""
        return float(self.bandwidth.double().pow(2).mean())

    # ---------------------------------------------------------------------------------------------- state
    def _hyper_params(self) -> dict[str, Any]:
        return {"chunk_size": self.chunk_size, "fit_info": self.fit_info}

    @classmethod
    def _from_state(cls, tensors: dict[str, Tensor], params: dict[str, Any]) -> GaussianKDE:
        density = cls(
            tensors["points"],
            tensors["offsets"],
            tensors["bandwidth"],
            chunk_size=int(params.get("chunk_size", 4096)),
            fit_info=params.get("fit_info"),
        )
        if density.num_classes != int(params["num_classes"]) or density.dim != int(params["dim"]):
            raise ConfigError(
                f"tensors give {density.num_classes} classes x {density.dim} dims, params say "
                f"{params['num_classes']} x {params['dim']}"
            )
        return density


# ------------------------------------------------------------------------------------------ cross-validation
def kfold_splits(n: int, folds: int, generator: torch.Generator) -> list[Tensor]:
    """Seeded k-fold split of ``range(n)``: ``min(folds, n)`` held-out index sets of near-equal size."""
    perm = torch.randperm(n, generator=generator)
    return [s for s in torch.tensor_split(perm, min(folds, n)) if s.numel()]


def cv_log_likelihood(points: Tensor, grid: Tensor, splits: list[Tensor]) -> Tensor:
    """Mean held-out log-likelihood per bandwidth: ``points`` ``(n, D)``, ``grid`` ``(G,)`` -> ``(G,)``.

    Each split is held out in turn and scored under the KDE of the remaining points; the scores of all ``n``
    held-out points are averaged (so unequal fold sizes weigh per point, not per fold).
    """
    points = points.to(torch.float64)
    grid = grid.to(device=points.device, dtype=torch.float64)
    n, dim = points.shape
    scale = (-0.5 / (grid * grid)).view(-1, 1, 1)
    log_norm = 0.5 * dim * (LOG_2PI + 2.0 * torch.log(grid))
    total = torch.zeros_like(grid)
    mask = torch.ones(n, dtype=torch.bool, device=points.device)
    for held in splits:
        held = held.to(points.device)
        mask[held] = False
        train = points[mask]
        mask[held] = True
        train_sq = (train * train).sum(1)
        rows = max(1, _CV_BLOCK // (grid.numel() * train.shape[0]))
        for s in range(0, held.numel(), rows):
            d2 = sq_dists(points[held[s : s + rows]], train, train_sq)
            ll = torch.logsumexp(d2.unsqueeze(0) * scale, dim=2) - math.log(train.shape[0]) - log_norm.view(-1, 1)
            total += ll.sum(1)
    return total / sum(int(h.numel()) for h in splits)


def default_bandwidth_grid(points: Tensor, num: int = 24) -> Tensor:
    """Log-spaced bandwidths from a quarter of the median nearest-neighbour distance per dimension
    (``0.25 * median_nn / sqrt(D)``, below which the kernel sees only its own point) to twice the data's
    per-dimension standard deviation (above which the KDE is one broad Gaussian)."""
    points = points.to(torch.float64)
    n, dim = points.shape
    sample = points[:: max(1, n // 1000)][:1000]
    d2 = sq_dists(sample, sample)
    d2.fill_diagonal_(float("inf"))
    nn = d2.min(dim=1).values.sqrt()
    nn = nn[torch.isfinite(nn) & (nn > 0)]
    sigma = float(points.var(dim=0, unbiased=n > 1).mean().sqrt()) if n > 1 else 0.0
    hi = 2.0 * sigma if sigma > 0 else 1.0
    lo = 0.25 * float(nn.median()) / math.sqrt(dim) if nn.numel() else hi * 1e-3
    if not lo < hi:
        lo = hi * 1e-2
    return torch.logspace(math.log10(lo), math.log10(hi), max(num, 1), dtype=torch.float64, device=points.device)
