"""Differentiable, batched class-conditional densities ``log q(x | t)`` for plausible counterfactuals.

Each estimator is fitted on labelled points in the space the caller chose (pixels or model features) and evaluates
``log_prob(x, t)`` for a batch whose samples each name their own class ``t``, differentiably in ``x``::

    from lfpcli.density import fit_density, density_from_state
    q = fit_density("kde", feats, labels, num_classes=10)      # bandwidth by 5-fold CV
    score = q.log_prob(x_prime, targets)                        # (N,), differentiable
    tensors, params = q.state()                                 # for an artifact writer
    q2 = density_from_state(params["kind"], tensors, params)

Kinds:
    ``kde``  per-class isotropic Gaussian KDE (normalised).
    ``gmm``  per-class Gaussian mixture fitted by EM, full or diagonal covariance (normalised).
    ``knn``  kNN "density gravity": an unnormalised plausibility score, ``normalized = False``.
    ``vae``  per-class convolutional VAE, score ``-||x - AE_t(x)||^2`` on images (unnormalised; ``fit`` needs
             ``(N, C, H, W)`` images or ``input_shape``).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from lfpcli.density.base import ClassDensity
from lfpcli.density.gmm import GaussianMixtureDensity
from lfpcli.density.kde import GaussianKDE
from lfpcli.density.knn import KNNGravity
from lfpcli.density.vae import PerClassVAE
from lfpcli.errors import ArtifactError, ConfigError

__all__ = [
    "ClassDensity",
    "GaussianKDE",
    "GaussianMixtureDensity",
    "KNNGravity",
    "PerClassVAE",
    "list_densities",
    "get_density_class",
    "fit_density",
    "fit_params",
    "density_from_state",
]

_REGISTRY: dict[str, type[ClassDensity]] = {
    GaussianKDE.kind: GaussianKDE,
    GaussianMixtureDensity.kind: GaussianMixtureDensity,
    KNNGravity.kind: KNNGravity,
    PerClassVAE.kind: PerClassVAE,
}


def list_densities() -> list[str]:
    """The registered density kinds, sorted."""
    return sorted(_REGISTRY)


def get_density_class(kind: str) -> type[ClassDensity]:
    """The estimator class registered under ``kind``; ConfigError for an unknown kind."""
    try:
        return _REGISTRY[kind]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown density kind {kind!r}; choose one of {', '.join(list_densities())}") from None


# Keyword arguments of ``fit`` that are run settings rather than hyper-parameters.
_RUN_SETTINGS = ("seed", "device", "progress", "store", "drawn_from")


def fit_params(kind: str) -> list[str]:
    """The hyper-parameters ``fit_density(kind, ...)`` accepts: ``fit``'s keyword-only parameters except the run
    settings ``seed``, ``device`` and ``progress``."""
    sig = inspect.signature(get_density_class(kind).fit)
    return [n for n, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY and n not in _RUN_SETTINGS]


def fit_density(
    kind: str,
    x: Tensor,
    y: Tensor,
    num_classes: int,
    *,
    seed: int = 0,
    device: Any = None,
    progress: Any = None,
    store: Any = None,
    drawn_from: Any = None,
    **params: Any,
) -> ClassDensity:
    """Fit a ``kind`` density on ``x`` ``(N, ...)`` with labels ``y`` ``(N,)``; ``params`` are the estimator's
    hyper-parameters (unknown names raise ConfigError rather than TypeError). ``device`` and ``progress`` reach
    the estimators whose fit takes them (the VAEs train on ``device`` and report epochs); the others ignore them.
    ``store`` keeps finished parts of a long fit for a resumed run (the VAEs: one per class). ``drawn_from`` (kde,
    knn): ``x`` holds only the points the fit would keep (``base.subsample_rows``), drawn from classes of these
    sizes; the result equals the fit on every point."""
    allowed = fit_params(kind)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(f"{kind}: unknown parameter(s) {', '.join(unknown)}; accepted: {', '.join(allowed)}")
    cls = get_density_class(kind)
    takes = inspect.signature(cls.fit).parameters
    run = {
        k: v
        for k, v in (("device", device), ("progress", progress), ("store", store), ("drawn_from", drawn_from))
        if v is not None and k in takes
    }
    if drawn_from is not None and "drawn_from" not in takes:
        raise ConfigError(f"{kind}: cannot be fitted on a presampled subset (drawn_from)")
    return cls.fit(x, y, num_classes, seed=seed, **run, **params)


def density_from_state(kind: str, tensors: Mapping[str, Any], params: Mapping[str, Any]) -> ClassDensity:
    """Rebuild a fitted density from ``ClassDensity.state()``'s ``(tensors, params)``."""
    cls = get_density_class(kind)
    if params.get("kind", kind) != kind:
        raise ArtifactError(f"density state is of kind {params.get('kind')!r}, asked to load it as {kind!r}")
    return cls.from_state(tensors, params)
