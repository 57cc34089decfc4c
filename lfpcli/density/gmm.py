"""Gaussian mixture per class, fitted by EM (a batched torch re-implementation of sklearn's GaussianMixture).

    log q(x | t) = logsumexp_c( log w_tc + log N(x; mu_tc, Sigma_tc) )
    log N(x; mu, Sigma) = -(D/2) log(2 pi) + log det(P) - ||(x - mu)^T P||^2 / 2,   P P^T = Sigma^{-1}

``P`` is the Cholesky factor of the precision (sklearn's ``precisions_cholesky_``: ``(D, D)`` upper-triangular
for ``"full"``, the vector ``1/sigma`` for ``"diag"``), precomputed at fit time so evaluation is a matmul.
Classes with fewer points than ``components`` get fewer components; the rest are padding with log weight
``-inf`` (mean 0, identity precision) so every class has the same parameter shapes.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import Tensor

from lfpcli.density.base import (
    LOG_2PI,
    ClassDensity,
    check_positive_int,
    class_generator,
    prepare_fit_data,
    sq_dists,
)
from lfpcli.errors import ConfigError
from lfpcli.progress import Progress

__all__ = ["GaussianMixtureDensity", "COVARIANCE_TYPES"]

COVARIANCE_TYPES = ("full", "diag")
INIT_METHODS = ("kmeans", "kmeans++")


class GaussianMixtureDensity(ClassDensity):
    """Per-class Gaussian mixture (normalised log-density).

    Buffers: ``log_weights`` ``(K, C)`` (``-inf`` for padding), ``means`` ``(K, C, D)``, ``precisions_cholesky``
    ``(K, C, D, D)`` (full) or ``(K, C, D)`` (diag). ``log_prob`` memory: ``O(N * C * D)``.
    """

    kind = "gmm"
    normalized = True
    _state_keys = ("log_weights", "means", "precisions_cholesky")

    def __init__(
        self,
        log_weights: Tensor,
        means: Tensor,
        precisions_cholesky: Tensor,
        *,
        covariance: str,
        fit_info: dict[str, Any] | None = None,
    ) -> None:
        if covariance not in COVARIANCE_TYPES:
            raise ConfigError(f"gmm: covariance must be one of {COVARIANCE_TYPES}, got {covariance!r}")
        if means.ndim != 3 or not means.dtype.is_floating_point:
            raise ConfigError(f"gmm: means must be a (K, C, D) float tensor, got {tuple(means.shape)}")
        num_classes, comps, dim = means.shape
        super().__init__(num_classes, dim)
        want = (num_classes, comps, dim, dim) if covariance == "full" else (num_classes, comps, dim)
        if tuple(precisions_cholesky.shape) != want:
            raise ConfigError(
                f"gmm: precisions_cholesky must have shape {want}, got {tuple(precisions_cholesky.shape)}"
            )
        if tuple(log_weights.shape) != (num_classes, comps):
            raise ConfigError(
                f"gmm: log_weights must have shape {(num_classes, comps)}, got {tuple(log_weights.shape)}"
            )
        log_weights = log_weights.to(device=means.device, dtype=means.dtype)
        precisions_cholesky = precisions_cholesky.to(device=means.device, dtype=means.dtype)
        if not bool(torch.isfinite(log_weights).any(dim=1).all()):
            raise ConfigError("gmm: every class needs at least one component with a finite log weight")
        diag = precisions_cholesky.diagonal(dim1=-2, dim2=-1) if covariance == "full" else precisions_cholesky
        if not bool((diag > 0).all()):
            raise ConfigError("gmm: precision Cholesky factors must have a positive diagonal")
        self.covariance = covariance
        self.components = int(comps)
        self.fit_info = dict(fit_info or {})
        self.register_buffer("log_weights", log_weights)
        self.register_buffer("means", means)
        self.register_buffer("precisions_cholesky", precisions_cholesky)
        # Derived at construction (not stored) so a state round trip recomputes them bit for bit.
        self.register_buffer("log_det", diag.log().sum(-1), persistent=False)
        if covariance == "full":
            self.register_buffer(
                "means_prec", torch.einsum("kcd,kcde->kce", means, precisions_cholesky), persistent=False
            )

    # ------------------------------------------------------------------------------------------------- fit
    @classmethod
    def fit(
        cls,
        x: Tensor,
        y: Tensor,
        num_classes: int,
        *,
        seed: int = 0,
        components: int = 1,
        covariance: str = "full",
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        tol: float = 1e-3,
        n_init: int = 1,
        init: str = "kmeans",
        progress: Progress | None = None,
    ) -> GaussianMixtureDensity:
        """EM per class (in float64), as sklearn: stop when the mean log-likelihood changes by less than ``tol``;
        ``reg_covar`` is added to every covariance diagonal; ``n_init`` seeded restarts keep the best fit.

        ``init="kmeans"``: k-means++ seeding then Lloyd iterations, hard responsibilities; ``"kmeans++"``: the
        seeds only, each point assigned to its nearest seed. ``progress(stage, classes_done, num_classes)`` is
        told as each class is fitted.
        """
        xs, ys, store_dtype = prepare_fit_data("gmm", x, y, num_classes)
        check_positive_int("gmm", "components", components)
        check_positive_int("gmm", "max_iter", max_iter)
        check_positive_int("gmm", "n_init", n_init)
        if covariance not in COVARIANCE_TYPES:
            raise ConfigError(f"gmm: covariance must be one of {COVARIANCE_TYPES}, got {covariance!r}")
        if init not in INIT_METHODS:
            raise ConfigError(f"gmm: init must be one of {INIT_METHODS}, got {init!r}")
        if not (isinstance(reg_covar, (int, float)) and math.isfinite(reg_covar) and reg_covar >= 0):
            raise ConfigError(f"gmm: reg_covar must be a finite number >= 0, got {reg_covar!r}")
        if not (isinstance(tol, (int, float)) and tol >= 0):
            raise ConfigError(f"gmm: tol must be a number >= 0, got {tol!r}")

        dim = xs.shape[1]
        dev = xs.device
        log_w = torch.full((num_classes, components), -math.inf, dtype=torch.float64, device=dev)
        means = torch.zeros(num_classes, components, dim, dtype=torch.float64, device=dev)
        if covariance == "full":
            prec = torch.eye(dim, dtype=torch.float64, device=dev).repeat(num_classes, components, 1, 1)
        else:
            prec = torch.ones(num_classes, components, dim, dtype=torch.float64, device=dev)
        used, converged, lower_bounds, iters = [], [], [], []
        stage = f"gmm: EM, {components} component(s) per class"
        for k in range(num_classes):
            if progress is not None:
                progress(stage, k, num_classes, unit="class")
            xk = xs[ys == k]
            ck = min(components, xk.shape[0])
            fit = _fit_em(
                xk, ck, covariance, float(reg_covar), max_iter, float(tol), n_init, init, class_generator(seed, k), k
            )
            log_w[k, :ck] = fit["weights"].log()
            means[k, :ck] = fit["means"]
            prec[k, :ck] = fit["prec"]
            used.append(ck)
            converged.append(fit["converged"])
            lower_bounds.append(fit["lower_bound"])
            iters.append(fit["n_iter"])
        if progress is not None:
            progress(stage, num_classes, num_classes, unit="class")
        if not all(converged):
            bad = [k for k, c in enumerate(converged) if not c]
            warnings.warn(
                f"gmm: EM did not converge within max_iter={max_iter} for classes {bad}", RuntimeWarning, stacklevel=2
            )
        info = {
            "seed": int(seed),
            "reg_covar": float(reg_covar),
            "max_iter": max_iter,
            "tol": float(tol),
            "n_init": n_init,
            "init": init,
            "components_used": used,
            "converged": converged,
            "lower_bound": lower_bounds,
            "n_iter": iters,
        }
        return cls(
            log_w.to(store_dtype), means.to(store_dtype), prec.to(store_dtype), covariance=covariance, fit_info=info
        )

    # ------------------------------------------------------------------------------------------- evaluate
    def _log_prob(self, x: Tensor, t: Tensor) -> Tensor:
        log_w = self._buf("log_weights", x)
        log_det = self._buf("log_det", x)
        prec = self._buf("precisions_cholesky", x)
        const = -0.5 * self.dim * LOG_2PI
        if self.covariance == "diag":
            # Per-sample parameters gathered by target: (N, C, D), one batched pass.
            y = (x.unsqueeze(1) - self._buf("means", x)[t]) * prec[t]
            return torch.logsumexp(log_w[t] + log_det[t] + const - 0.5 * (y * y).sum(-1), dim=1)
        means_prec = self._buf("means_prec", x)
        if self._use_fused(t):
            # every class's products in one batched matmul: (K, 1, M, D) x (K, C, D, D) -> (K, C, M, D)
            pad, slots, _ = self._padded(x, t)
            y = torch.matmul(pad.unsqueeze(1), prec).transpose(1, 2).flatten(0, 1)[slots] - means_prec[t]
            return torch.logsumexp(log_w[t] + log_det[t] + const - 0.5 * (y * y).sum(-1), dim=1)

        def one_class(k: int, xk: Tensor) -> Tensor:
            y = torch.einsum("nd,cde->nce", xk, prec[k]) - means_prec[k]
            return torch.logsumexp(log_w[k] + log_det[k] + const - 0.5 * (y * y).sum(-1), dim=1)

        # Grouping by class: gathering (D, D) factors per sample would need (N, C, D, D) memory; per class it
        # is one (n_k, D) x (D, C*D) product.
        return self._grouped(x, t, one_class)

    # ---------------------------------------------------------------------------------------------- state
    def plausibility_weight(self) -> float:
        """The geometric-mean component variance along the axes, ``exp(mean log 1 / L_dd^2)`` from the precision
        Cholesky factors (exact for diagonal covariances; see ``ClassDensity.plausibility_weight``)."""
        pc = self.precisions_cholesky.double()
        diag = pc.diagonal(dim1=-2, dim2=-1) if self.covariance == "full" else pc
        return float(torch.exp(-2.0 * diag.abs().clamp_min(1e-300).log().mean()))

    def _hyper_params(self) -> dict[str, Any]:
        return {"covariance": self.covariance, "components": self.components, "fit_info": self.fit_info}

    @classmethod
    def _from_state(cls, tensors: dict[str, Tensor], params: dict[str, Any]) -> GaussianMixtureDensity:
        if "covariance" not in params:
            raise ConfigError("gmm state lacks parameter 'covariance'")
        density = cls(
            tensors["log_weights"],
            tensors["means"],
            tensors["precisions_cholesky"],
            covariance=str(params["covariance"]),
            fit_info=params.get("fit_info"),
        )
        if density.num_classes != int(params["num_classes"]) or density.dim != int(params["dim"]):
            raise ConfigError(
                f"tensors give {density.num_classes} classes x {density.dim} dims, params say "
                f"{params['num_classes']} x {params['dim']}"
            )
        return density


# ------------------------------------------------------------------------------------------------------- EM
def _log_gaussian(x: Tensor, means: Tensor, prec: Tensor, covariance: str) -> Tensor:
    """``log N(x_n; mu_c, Sigma_c)`` as ``(n, C)`` from ``means`` ``(C, D)`` and precision Cholesky factors."""
    if covariance == "full":
        y = torch.einsum("nd,cde->nce", x, prec) - torch.einsum("cd,cde->ce", means, prec)
        log_det = prec.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        sq = (y * y).sum(-1)
    else:
        # Expanded square as matmuls (as sklearn): an (n, C, D) difference tensor per EM step is far slower.
        # Fit runs in float64, where the cancellation is harmless; log_prob uses the direct difference.
        p2 = prec * prec
        sq = (x * x) @ p2.T - 2.0 * x @ (means * p2).T + (means * means * p2).sum(1)
        log_det = prec.log().sum(-1)
    return -0.5 * (x.shape[1] * LOG_2PI + sq) + log_det


def _m_step(x: Tensor, resp: Tensor, covariance: str, reg: float, cls_index: int) -> tuple[Tensor, Tensor, Tensor]:
    """Weights ``(C,)``, means ``(C, D)`` and precision Cholesky factors from responsibilities ``(n, C)``."""
    dim = x.shape[1]
    nk = resp.sum(0) + 10 * torch.finfo(resp.dtype).eps  # as sklearn: keeps empty components finite
    means = (resp.T @ x) / nk.unsqueeze(1)
    comps = resp.shape[1]
    if covariance == "diag":
        # E[x^2] - mu^2 per component (sklearn's formula); clamped since rounding can dip below zero.
        var = ((resp.T @ (x * x)) / nk.unsqueeze(1) - means * means).clamp_min(0.0) + reg
        if not bool((var > 0).all()):
            raise ConfigError(f"gmm: class {cls_index} has a zero-variance feature; set reg_covar > 0")
        return nk / nk.sum(), means, var.rsqrt()
    eye = torch.eye(dim, dtype=x.dtype, device=x.device)
    covs = []
    for c in range(comps):
        diff = x - means[c]
        covs.append((resp[:, c : c + 1] * diff).T @ diff / nk[c] + reg * eye)
    chol, info = torch.linalg.cholesky_ex(torch.stack(covs))
    if bool((info != 0).any()):
        raise ConfigError(
            f"gmm: a covariance of class {cls_index} is not positive definite (too few or collinear points); "
            f"increase reg_covar (now {reg:g}) or use covariance='diag'"
        )
    prec = torch.linalg.solve_triangular(chol, eye.expand(comps, dim, dim), upper=False).mT
    return nk / nk.sum(), means, prec


def _kmeans_pp(x: Tensor, comps: int, gen: torch.Generator) -> Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii): each next centre drawn with probability ~ squared distance."""
    n = x.shape[0]
    idx = [int(torch.randint(n, (1,), generator=gen))]
    d2 = sq_dists(x, x[idx[0] : idx[0] + 1]).squeeze(1)
    for _ in range(1, comps):
        total = float(d2.sum())
        if total > 0:
            nxt = int(torch.multinomial((d2 / total).cpu(), 1, generator=gen))
        else:  # all remaining points coincide with a centre
            nxt = int(torch.randint(n, (1,), generator=gen))
        idx.append(nxt)
        d2 = torch.minimum(d2, sq_dists(x, x[nxt : nxt + 1]).squeeze(1))
    return x[idx].clone()


def _init_labels(x: Tensor, comps: int, init: str, gen: torch.Generator, max_lloyd: int = 100) -> Tensor:
    centres = _kmeans_pp(x, comps, gen)
    labels = sq_dists(x, centres).argmin(1)
    if init == "kmeans":
        for _ in range(max_lloyd):
            counts = torch.bincount(labels, minlength=comps).to(x.dtype)
            sums = torch.zeros_like(centres).index_add_(0, labels, x)
            filled = counts > 0
            # An emptied cluster keeps its centre rather than collapsing to the origin.
            centres = torch.where(filled.unsqueeze(1), sums / counts.clamp_min(1).unsqueeze(1), centres)
            new = sq_dists(x, centres).argmin(1)
            if torch.equal(new, labels):
                break
            labels = new
    return labels


def _fit_em(
    x: Tensor,
    comps: int,
    covariance: str,
    reg: float,
    max_iter: int,
    tol: float,
    n_init: int,
    init: str,
    gen: torch.Generator,
    cls_index: int,
) -> dict[str, Any]:
    best: dict[str, Any] | None = None
    for _ in range(n_init):
        resp = torch.nn.functional.one_hot(_init_labels(x, comps, init, gen), comps).to(x.dtype)
        weights, means, prec = _m_step(x, resp, covariance, reg, cls_index)
        lower_bound, converged, n_iter = -math.inf, False, 0
        for n_iter in range(1, max_iter + 1):  # noqa: B007 - reported after the loop
            prev = lower_bound
            weighted = _log_gaussian(x, means, prec, covariance) + weights.log()
            log_norm = torch.logsumexp(weighted, dim=1)
            lower_bound = float(log_norm.mean())
            weights, means, prec = _m_step(x, (weighted - log_norm.unsqueeze(1)).exp(), covariance, reg, cls_index)
            if abs(lower_bound - prev) < tol:
                converged = True
                break
        if best is None or lower_bound > best["lower_bound"]:
            best = {
                "weights": weights,
                "means": means,
                "prec": prec,
                "lower_bound": lower_bound,
                "converged": converged,
                "n_iter": n_iter,
            }
    assert best is not None
    return best
