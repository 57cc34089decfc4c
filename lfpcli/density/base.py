"""The base class of every class-conditional density: input checks, grouping by class, state round trip.

A density ``q(x | t)`` is fitted on labelled points ``(x_i, y_i)`` and evaluated with ``log_prob(x, t)`` for a batch
whose samples may each ask for a different class ``t``. Inputs live in whatever space the caller chose (pixels or
model features); nothing is normalised here.

Shapes: ``x`` is ``(N, ...)`` and is flattened to ``(N, D)``; ``t`` is ``(N,)`` int64; ``log_prob`` returns ``(N,)``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from lfpcli.errors import ArtifactError, ConfigError

__all__ = ["ClassDensity", "LOG_2PI"]

LOG_2PI = math.log(2.0 * math.pi)

DensityT = TypeVar("DensityT", bound="ClassDensity")


class ClassDensity(nn.Module, ABC):
    """A fitted class-conditional (log-)density ``log q(x | t)``, differentiable in ``x``.

    Subclasses hold their fitted parameters as buffers (so ``.to(device)`` moves them) and implement
    ``fit``, ``_log_prob``, ``_hyper_params`` and ``_from_state``. ``normalized`` says whether ``log_prob`` is a
    normalised log-density (integrates to one over ``R^D``) or only a plausibility score.
    """

    kind: ClassVar[str] = ""
    normalized: ClassVar[bool] = True
    # Names of the buffers that make up the fitted state (derived buffers are recomputed by the constructor).
    _state_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ConfigError(f"{self.kind}: num_classes must be >= 1, got {num_classes}")
        if dim < 1:
            raise ConfigError(f"{self.kind}: dim must be >= 1, got {dim}")
        self.num_classes = int(num_classes)
        self.dim = int(dim)

    # ----------------------------------------------------------------------------------------------- fitting
    @classmethod
    @abstractmethod
    def fit(cls: type[DensityT], x: Tensor, y: Tensor, num_classes: int, *, seed: int = 0, **params: Any) -> DensityT:
        """Fit one density per class on ``x`` ``(N, ...)`` with labels ``y`` ``(N,)`` in ``[0, num_classes)``."""

    def _init_packed_points(
        self, points: Tensor, offsets: Tensor, chunk_size: int, fit_info: dict[str, Any] | None
    ) -> None:
        """Constructor part shared by estimators that keep reference points packed by class (kde, knn):
        ``points`` (M, D) sorted by class, class ``k`` owning rows ``offsets[k]:offsets[k+1]``."""
        if points.ndim != 2 or not points.dtype.is_floating_point:
            raise ConfigError(
                f"{self.kind}: points must be a (M, D) float tensor, got {tuple(points.shape)} {points.dtype}"
            )
        num_classes = int(offsets.numel()) - 1
        ClassDensity.__init__(self, num_classes, int(points.shape[1]))
        self._offsets = check_offsets(offsets, num_classes, int(points.shape[0]))
        self.chunk_size = check_positive_int(self.kind, "chunk_size", chunk_size)
        self.fit_info = dict(fit_info or {})
        self.register_buffer("points", points)
        self.register_buffer("offsets", offsets.to(device=points.device, dtype=torch.long))

    # -------------------------------------------------------------------------------------------- evaluation
    def log_prob(self, x: Tensor, t: Tensor) -> Tensor:
        """``log q(x_n | t_n)`` for every sample: ``x`` ``(N, ...)``, ``t`` ``(N,)`` -> ``(N,)``.

        Computed in float64 when ``x`` is float64, otherwise in float32; differentiable w.r.t. ``x``.
        """
        xf, t = self._check_inputs(x, t)
        if xf.shape[0] == 0:
            return xf.new_zeros(0)
        return self._log_prob(xf, t)

    def plausibility_weight(self) -> float:
        """A weight ``tau`` that puts ``-tau * log_prob`` on the scale of the squared distance ``||x' - x||^2``
        in pcfe-l0: the score's pull toward the class then competes with, rather than swamps, the distance term.
        Scores already in squared input units (knn gravity, VAE reconstruction error) take 1; densities take
        their squared length scale (a KDE's ``h^2``, a GMM's variance), since ``grad log q ~ (x_i - x) / h^2``."""
        return 1.0

    def forward(self, x: Tensor, t: Tensor) -> Tensor:  # noqa: D102 - same as log_prob
        return self.log_prob(x, t)

    @abstractmethod
    def _log_prob(self, x: Tensor, t: Tensor) -> Tensor:
        """``x`` ``(N, D)`` in the compute dtype, ``t`` ``(N,)`` int64 already checked -> ``(N,)``."""

    # ------------------------------------------------------------------------------------------------- state
    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """The fitted estimator as ``(tensors, params)``: CPU tensors and a JSON-able dict (with ``kind``,
        ``num_classes``, ``dim`` and the hyper-parameters). ``from_state`` rebuilds an identical estimator."""
        buffers = dict(self.named_buffers())
        tensors = {name: buffers[name].detach().cpu().clone() for name in self._state_keys}
        params: dict[str, Any] = {
            "kind": self.kind,
            "num_classes": self.num_classes,
            "dim": self.dim,
            "normalized": self.normalized,
        }
        params.update(self._hyper_params())
        return tensors, params

    @classmethod
    def from_state(cls: type[DensityT], tensors: Mapping[str, Any], params: Mapping[str, Any]) -> DensityT:
        """Rebuild an estimator from ``state()``'s output (tensors may be numpy arrays read back from HDF5)."""
        kind = params.get("kind", cls.kind)
        if kind != cls.kind:
            raise ArtifactError(f"density state is of kind {kind!r}, expected {cls.kind!r}")
        missing = [k for k in cls._state_keys if k not in tensors]
        if missing:
            raise ArtifactError(f"{cls.kind} density state lacks tensors {missing}")
        for key in ("num_classes", "dim"):
            if key not in params:
                raise ArtifactError(f"{cls.kind} density state lacks parameter {key!r}")
        ts = {k: torch.as_tensor(tensors[k]) for k in cls._state_keys}
        try:
            return cls._from_state(ts, dict(params))
        except ConfigError as err:  # a state that cannot be rebuilt is a bad file, not a bad option
            raise ArtifactError(f"inconsistent {cls.kind} density state: {err}") from err

    @classmethod
    @abstractmethod
    def _from_state(cls: type[DensityT], tensors: dict[str, Tensor], params: dict[str, Any]) -> DensityT:
        """Construct from checked-for-presence tensors; raise ConfigError on inconsistent shapes."""

    @abstractmethod
    def _hyper_params(self) -> dict[str, Any]:
        """JSON-able hyper-parameters that ``_from_state`` needs or that record how the fit was made."""

    # --------------------------------------------------------------------------------------------- helpers
    def _check_inputs(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        if not isinstance(x, Tensor) or not isinstance(t, Tensor):
            raise ConfigError(f"{self.kind}: log_prob expects tensors, got {type(x).__name__}, {type(t).__name__}")
        if x.ndim == 0:
            raise ConfigError(f"{self.kind}: x must have a batch dimension, got a scalar")
        xf = x.flatten(1) if x.ndim > 1 else x.unsqueeze(1)
        if xf.shape[1] != self.dim:
            raise ConfigError(
                f"{self.kind}: x has {xf.shape[1]} features per sample (shape {tuple(x.shape)}), "
                f"the density was fitted on {self.dim}"
            )
        if t.ndim != 1 or t.shape[0] != xf.shape[0]:
            raise ConfigError(f"{self.kind}: t must have shape ({xf.shape[0]},), got {tuple(t.shape)}")
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
            raise ConfigError(f"{self.kind}: t must hold integer class indices, got dtype {t.dtype}")
        t = t.to(device=xf.device, dtype=torch.long)
        self._per_targets(t, "range checked", lambda: self._check_range(t))
        if xf.dtype not in (torch.float32, torch.float64):
            # Half precision cannot hold logsumexp of squared distances reliably; integers carry no gradient.
            xf = xf.to(torch.float32)
        return xf, t

    def _buf(self, name: str, like: Tensor) -> Tensor:
        """A buffer in ``like``'s dtype and device (a no-op when they already match)."""
        buf = getattr(self, name)
        if buf.dtype.is_floating_point:
            return buf.to(device=like.device, dtype=like.dtype)
        return buf.to(device=like.device)

    def _grouped(self, x: Tensor, t: Tensor, fn: Callable[[int, Tensor], Tensor]) -> Tensor:
        """Evaluate ``fn(k, x[t == k])`` for each class present and put the values back in batch order.

        Used where per-sample gathering would materialise ``(N, n_k, D)`` or ``(N, C, D, D)`` tensors: grouping
        turns the work into one matrix product per class instead.
        """
        counts, perm, inverse = self._grouping(t)
        pieces = []
        for k, idx in enumerate(torch.split(perm, counts)):
            if counts[k]:
                pieces.append(fn(k, x.index_select(0, idx)))
        values = torch.cat(pieces)
        return values[inverse]

    #: Evaluate all target classes in one batched product over class-padded inputs (:meth:`_padded`) rather than
    #: one product per class (:meth:`_grouped`); the two give the same values. A benchmark switch.
    fused = True

    def _use_fused(self, t: Tensor) -> bool:
        """Whether the padded layout is worth it: on, and padding at most doubles the rows (targets not too skewed)."""
        if not self.fused or t.numel() == 0:
            return False
        counts = self._grouping(t)[0]
        return self.num_classes * max(counts) <= 2 * t.numel() + self.num_classes

    def _padded(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``x`` ``(N, D)`` laid out by target class as ``(K, M, D)`` (M the largest class count, zero rows as
        padding), with ``slots`` ``(N,)``: each sample's row in the flattened ``(K * M)`` layout, in batch order, and
        ``t``'s class of each slot row. Values computed per padded row come back in batch order with
        ``values.flatten(0, 1)[slots]``. Differentiable in ``x``."""
        slots, m = self._class_slots(t)
        pad = x.new_zeros(self.num_classes * m, x.shape[1]).index_copy(0, slots, x)
        return pad.view(self.num_classes, m, x.shape[1]), slots, m

    def _class_slots(self, t: Tensor) -> tuple[Tensor, int]:
        def compute() -> tuple[Tensor, int]:
            counts, perm, inverse = self._grouping(t)
            m = max(counts)
            c = torch.tensor(counts, device=t.device)
            starts = c.cumsum(0) - c
            pos_sorted = torch.arange(t.numel(), device=t.device) - starts[t[perm]]
            # a sample's position within its class, in batch order
            return t * m + pos_sorted[inverse], m

        return self._per_targets(t, "slots", compute)

    def _grouping(self, t: Tensor) -> tuple[list[int], Tensor, Tensor]:
        """Class counts (host list), the permutation sorting ``t`` by class and its inverse."""

        def compute() -> tuple[list[int], Tensor, Tensor]:
            perm = torch.argsort(t, stable=True)
            return torch.bincount(t, minlength=self.num_classes).tolist(), perm, torch.argsort(perm)

        return self._per_targets(t, "grouping", compute)

    def _check_range(self, t: Tensor) -> bool:
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.num_classes):
            raise ConfigError(
                f"{self.kind}: targets must lie in [0, {self.num_classes}), got range [{int(t.min())}, {int(t.max())}]"
            )
        return True

    def _per_targets(self, t: Tensor, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` for the target tensor ``t``, kept while ``t`` is the last one seen and unmodified. Both
        the range check and the class counts read the device; a solver passes the same target tensor at every
        iteration, so with this its loop never waits on the device."""
        cache = getattr(self, "_target_cache", None)
        if cache is None or cache[0] is not t or cache[1] != t._version:
            cache = (t, t._version, {})
            self._target_cache = cache
        if key not in cache[2]:
            cache[2][key] = compute()
        return cache[2][key]

    def extra_repr(self) -> str:
        hyper = ", ".join(f"{k}={v!r}" for k, v in self._hyper_params().items() if not isinstance(v, (list, dict)))
        return f"num_classes={self.num_classes}, dim={self.dim}" + (f", {hyper}" if hyper else "")


# ------------------------------------------------------------------------------------------ fitting helpers
def prepare_fit_data(kind: str, x: Any, y: Any, num_classes: int) -> tuple[Tensor, Tensor, torch.dtype]:
    """Check and flatten training data: returns ``x`` ``(N, D)`` float64, ``y`` ``(N,)`` int64 and the dtype the
    fitted parameters are stored in (float64 if ``x`` was float64, else float32)."""
    # Detached: fitted parameters are constants, never part of the caller's graph.
    x = torch.as_tensor(x).detach()
    y = torch.as_tensor(y).detach()
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ConfigError(f"{kind}: num_classes must be a positive integer, got {num_classes!r}")
    if x.ndim == 0 or x.shape[0] == 0:
        raise ConfigError(f"{kind}: need at least one training point, got x of shape {tuple(x.shape)}")
    xf = x.flatten(1) if x.ndim > 1 else x.unsqueeze(1)
    if y.ndim != 1 or y.shape[0] != xf.shape[0]:
        raise ConfigError(f"{kind}: y must have shape ({xf.shape[0]},), got {tuple(y.shape)}")
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise ConfigError(f"{kind}: y must hold integer class labels, got dtype {y.dtype}")
    y = y.to(device=xf.device, dtype=torch.long)
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise ConfigError(f"{kind}: labels must lie in [0, {num_classes}), got [{int(y.min())}, {int(y.max())}]")
    store_dtype = torch.float64 if xf.dtype == torch.float64 else torch.float32
    xf = xf.to(torch.float64)
    if not bool(torch.isfinite(xf).all()):
        raise ConfigError(f"{kind}: training points contain NaN or infinite values")
    counts = torch.bincount(y, minlength=num_classes)
    empty = (counts == 0).nonzero().flatten().tolist()
    if empty:
        raise ConfigError(f"{kind}: classes {empty} have no training points; cannot fit a density for them")
    return xf, y, store_dtype


def class_generator(seed: int, k: int) -> torch.Generator:
    """A CPU generator for class ``k``, so each class's random choices do not depend on the other classes."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + k) % (2**63 - 1))


def subsample(n: int, max_points: int | None, gen: torch.Generator) -> Tensor:
    """Sorted indices of a seeded subsample of ``min(n, max_points)`` out of ``n`` (all of them when no cap)."""
    if max_points is None or n <= max_points:
        return torch.arange(n)
    return torch.randperm(n, generator=gen)[:max_points].sort().values


def subsample_rows(y: Tensor, num_classes: int, max_points: int | None, seed: int) -> tuple[Tensor, list[int]]:
    """The rows (sorted) that a kde/knn fit on labels ``y`` keeps (``subsample`` per class with
    ``class_generator(seed, k)``), and each class's count: a caller whose points are on disk reads only these rows
    and passes the counts as ``drawn_from``, for exactly the fit it would get from every point."""
    rows, counts = [], []
    for k in range(num_classes):
        members = (y == k).nonzero().flatten()
        counts.append(int(members.numel()))
        rows.append(members[subsample(int(members.numel()), max_points, class_generator(seed, k))])
    out = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.long)
    return out.sort().values, counts


def presampled(count: int, drawn_from: int, max_points: int | None, gen: torch.Generator) -> Tensor:
    """Every one of ``count`` points that are already the subsample of ``drawn_from`` points; ``gen`` advanced as
    :func:`subsample` advanced it when it drew them."""
    expected = drawn_from if max_points is None else min(drawn_from, max_points)
    if count != expected:
        raise ConfigError(f"drawn_from: {count} points given where the subsample of {drawn_from} has {expected}")
    subsample(drawn_from, max_points, gen)
    return torch.arange(count)


def check_positive_int(kind: str, name: str, value: Any, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{kind}: {name} must be a positive integer, got {value!r}")
    return value


def pack_by_class(x: Tensor, y: Tensor, keep: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Stack each class's kept rows (``keep[k]`` indexes into class ``k``'s points) into ``(M, D)`` sorted by
    class, with ``offsets`` ``(K+1,)`` so class ``k`` owns rows ``offsets[k]:offsets[k+1]``."""
    rows = []
    sizes = [0]
    for k, idx in enumerate(keep):
        members = (y == k).nonzero().flatten()
        rows.append(x.index_select(0, members.index_select(0, idx.to(members.device))))
        sizes.append(int(idx.numel()))
    offsets = torch.tensor(sizes, dtype=torch.long).cumsum(0)
    return torch.cat(rows), offsets


def check_offsets(offsets: Tensor, num_classes: int, num_points: int) -> list[int]:
    """Validate class offsets and return them as a Python list (so evaluation slices without a device sync)."""
    if offsets.ndim != 1 or offsets.numel() != num_classes + 1 or offsets.dtype.is_floating_point:
        raise ConfigError(f"offsets must be {num_classes + 1} integers, got shape {tuple(offsets.shape)}")
    off = [int(v) for v in offsets.tolist()]
    if off[0] != 0 or off[-1] != num_points or any(b <= a for a, b in zip(off, off[1:], strict=False)):
        raise ConfigError(f"offsets must rise strictly from 0 to {num_points}, got {off}")
    return off


def sq_dists(a: Tensor, b: Tensor, b_sq: Tensor | None = None) -> Tensor:
    """``||a_i - b_j||^2`` as ``(n, m)`` via one matrix product; clamped at 0 against rounding."""
    a_sq = (a * a).sum(1, keepdim=True)
    if b_sq is None:
        b_sq = (b * b).sum(1)
    return (a_sq - 2.0 * (a @ b.T) + b_sq).clamp_min(0.0)
