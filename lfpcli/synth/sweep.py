"""Sweeps of the synthetic experiment: a :class:`Plan` of curves, expanded into configurations, run one by one.

A plan has *panels* (every combination of its methods, distributions and variants), *seeds*, a *base*
configuration (d, h, n, m, each method's budget) and *curves*: a curve varies one key over a list of values with
every other key at its base value, as each panel of the paper's Figures 5-12 does (accuracy against d, n, m or the
budget). Every curve runs for every panel it applies to (``eps`` to pgd-l2/pgd-linf, ``ratio`` to the others,
``n_noise`` to variant ``noise``; a curve may name its methods) and every seed. Configurations shared by several
curves (the base point) run once. A plan without curves runs the base configuration of every panel and seed.

:func:`run_sweep` runs the configurations that are not done yet, in an order that lets consecutive ones share the
natural network, the noise data and the baseline (``lfpcli.synth.protocol.StageCache``), and hands each finished
row to a callback (the command stores it, so an interrupted sweep resumes). Results do not depend on the order or
on what was done before: every configuration draws from its own seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from lfpcli.errors import ConfigError
from lfpcli.progress import Progress, no_progress
from lfpcli.synth.data import DISTS
from lfpcli.synth.protocol import (
    EPS_METHODS,
    METHODS,
    RATIO_METHODS,
    VARIANTS,
    Point,
    Settings,
    StageCache,
    check_ratio,
    run_point,
)

__all__ = ["Curve", "PRESETS", "Plan", "SWEEP_KEYS", "parse_sweep", "preset", "run_sweep"]

#: Keys a curve can vary, and what each is.
SWEEP_KEYS = {
    "dim": "input dimension d",
    "hidden": "hidden units h",
    "n_natural": "natural samples n",
    "n_noise": "noise samples m",
    "eps": "budget eps (pgd-l2, pgd-linf)",
    "ratio": "budget ratio (pgd-l0, cfe-l2, pcfe-l0)",
}
INT_KEYS = ("dim", "hidden", "n_natural", "n_noise")
MINIMUM = {"dim": 1, "hidden": 2, "n_natural": 1, "n_noise": 1}


def check_value(key: str, value: Any) -> int | float:
    """A value of sweep key ``key``, validated (ints for sizes, eps > 0, ratio in (0, 1])."""
    if key in INT_KEYS:
        if isinstance(value, bool) or not isinstance(value, int) or value < MINIMUM[key]:
            raise ConfigError(f"{key} must be a whole number of at least {MINIMUM[key]}, got {value!r}")
        return value
    if key == "ratio":
        return check_ratio(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"eps must be a positive number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Curve:
    """``key`` varied over ``values``; ``methods``: only these methods (empty: every method the key applies to)."""

    key: str
    values: tuple
    methods: tuple[str, ...] = ()

    def __post_init__(self):
        if self.key not in SWEEP_KEYS:
            raise ConfigError(f"unknown sweep key '{self.key}'; choose one of {', '.join(SWEEP_KEYS)}")
        if not self.values:
            raise ConfigError(
                f"--sweep {self.key} has no values; give a comma-separated list such as {self.key}=100,500,1000"
            )
        vals = tuple(check_value(self.key, v) for v in self.values)
        if len(set(vals)) != len(vals):
            raise ConfigError(f"--sweep {self.key} lists a value twice: {', '.join(str(v) for v in self.values)}")
        object.__setattr__(self, "values", vals)
        for m in self.methods:
            if m not in METHODS:
                raise ConfigError(f"unknown method '{m}' in --sweep {m}:{self.key}; choose one of {', '.join(METHODS)}")

    def applies(self, method: str, variant: str) -> bool:
        if self.methods and method not in self.methods:
            return False
        if self.key == "eps":
            return method in EPS_METHODS
        if self.key == "ratio":
            return method in RATIO_METHODS
        if self.key == "n_noise":
            return variant == "noise"
        return True

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "values": list(self.values), "methods": list(self.methods)}

    def text(self) -> str:
        """The curve as ``--sweep`` takes it: ``KEY=V1,V2`` or ``METHOD:KEY=V1,V2``."""
        values = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in self.values)
        return f"{self.methods[0] + ':' if len(self.methods) == 1 else ''}{self.key}={values}"


def parse_sweep(text: str) -> Curve:
    """``KEY=V1,V2,...`` or ``METHOD:KEY=V1,...`` (the curve for that method only) -> :class:`Curve`."""
    lhs, eq, rhs = text.partition("=")
    if not eq:
        raise ConfigError(f"--sweep expects KEY=V1,V2,... (keys: {', '.join(SWEEP_KEYS)}), got '{text}'")
    lhs = lhs.strip()
    methods: tuple[str, ...] = ()
    if ":" in lhs:
        m, _, lhs = lhs.rpartition(":")
        methods = (m.strip(),)
    key = lhs.strip().replace("-", "_")
    if key not in SWEEP_KEYS:
        raise ConfigError(f"unknown sweep key '{lhs}'; choose one of {', '.join(SWEEP_KEYS)}")
    items = [v.strip() for v in rhs.split(",") if v.strip()]
    if not items:
        raise ConfigError(f"--sweep {key} has no values; give a comma-separated list such as {key}=100,500,1000")
    values = []
    for v in items:
        try:
            values.append(int(v) if key in INT_KEYS else float(v))
        except ValueError:
            kind = "whole numbers" if key in INT_KEYS else "numbers"
            raise ConfigError(f"--sweep {key} takes {kind}, got '{v}'") from None
    return Curve(key, tuple(values), methods)


def _names(kind: str, given: tuple[str, ...], allowed: tuple[str, ...]) -> tuple[str, ...]:
    if not given:
        raise ConfigError(f"give at least one {kind} (one of {', '.join(allowed)})")
    for g in given:
        if g not in allowed:
            raise ConfigError(f"unknown {kind} '{g}'; choose one of {', '.join(allowed)}")
    if len(set(given)) != len(given):
        raise ConfigError(f"a {kind} is listed twice: {', '.join(given)}")
    return tuple(given)


@dataclass(frozen=True)
class Plan:
    """What a sweep runs (see the module docstring). ``eps`` / ``ratio``: each method's base budget."""

    methods: tuple[str, ...]
    dists: tuple[str, ...]
    variants: tuple[str, ...]
    seeds: tuple[int, ...]
    dim: int
    hidden: int
    n_natural: int
    n_noise: int
    eps: dict[str, float] = field(default_factory=dict)
    ratio: dict[str, float] = field(default_factory=dict)
    curves: tuple[Curve, ...] = ()

    def __post_init__(self):
        _names("method", self.methods, METHODS)
        _names("distribution", self.dists, DISTS)
        _names("variant", self.variants, VARIANTS)
        if not self.seeds:
            raise ConfigError("give at least one seed (--seeds 0,1,2)")
        for s in self.seeds:
            if isinstance(s, bool) or not isinstance(s, int) or s < 0 or s >= 2**63:
                raise ConfigError(f"seeds must be non-negative whole numbers, got {s!r}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"a seed is listed twice: {', '.join(str(s) for s in self.seeds)}")
        for key in INT_KEYS:
            check_value(key, getattr(self, key))
        for m in self.methods:
            if m in EPS_METHODS:
                check_value("eps", self.eps.get(m))
            else:
                check_value("ratio", self.ratio.get(m))
        keys = [(c.key, c.methods) for c in self.curves]
        if len(set(keys)) != len(keys):
            raise ConfigError("a --sweep key is given twice; give all of its values in one --sweep KEY=V1,V2,...")

    def base_point(self, method: str, dist: str, variant: str, seed: int, **changes: Any) -> Point:
        values = {
            "method": method,
            "dist": dist,
            "variant": variant,
            "dim": self.dim,
            "hidden": self.hidden,
            "n_natural": self.n_natural,
            "n_noise": self.n_noise,
            "seed": seed,
            "eps": self.eps.get(method) if method in EPS_METHODS else None,
            "ratio": self.ratio.get(method) if method in RATIO_METHODS else None,
        }
        values.update(changes)
        if variant == "natural":
            values["n_noise"] = 0
        return Point(**values)

    def panels(self) -> list[tuple[str, str, str]]:
        return [(m, d, v) for m in self.methods for d in self.dists for v in self.variants]

    def points(self) -> list[Point]:
        """The configurations, each once, in plan order (curve by curve, panel by panel, value by value, seed by seed)."""
        seen: dict[Point, None] = {}
        if not self.curves:
            for m, d, v in self.panels():
                for s in self.seeds:
                    seen.setdefault(self.base_point(m, d, v, s))
        for c in self.curves:
            for m, d, v in self.panels():
                if not c.applies(m, v):
                    continue
                for value in c.values:
                    for s in self.seeds:
                        seen.setdefault(self.base_point(m, d, v, s, **{c.key: value}))
        return list(seen)

    def check_curves_apply(self) -> None:
        """Every curve runs somewhere: a ``--sweep eps`` with only ratio methods selected is a mistake."""
        for c in self.curves:
            if not any(c.applies(m, v) for m, _, v in self.panels()):
                who = {"eps": "pgd-l2, pgd-linf", "ratio": "pgd-l0, cfe-l2, pcfe-l0", "n_noise": "variant noise"}.get(
                    c.key, ""
                )
                sel = f"--method {','.join(self.methods)}" + (
                    f" --variant {','.join(self.variants)}" if c.key == "n_noise" else ""
                )
                only = f" (only {', '.join(c.methods)})" if c.methods else ""
                raise ConfigError(
                    f"--sweep {c.key}{only} applies to {who or 'no selected method'}, none of which is selected ({sel})"
                )

    def to_dict(self) -> dict[str, Any]:
        return {
            "methods": list(self.methods),
            "dists": list(self.dists),
            "variants": list(self.variants),
            "seeds": list(self.seeds),
            "dim": self.dim,
            "hidden": self.hidden,
            "n_natural": self.n_natural,
            "n_noise": self.n_noise,
            "eps": dict(self.eps),
            "ratio": dict(self.ratio),
            "curves": [c.to_dict() for c in self.curves],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Plan":
        try:
            curves = tuple(
                Curve(c["key"], tuple(c["values"]), tuple(c.get("methods") or ())) for c in d.get("curves", [])
            )
            return cls(
                methods=tuple(d["methods"]),
                dists=tuple(d["dists"]),
                variants=tuple(d["variants"]),
                seeds=tuple(d["seeds"]),
                dim=d["dim"],
                hidden=d["hidden"],
                n_natural=d["n_natural"],
                n_noise=d["n_noise"],
                eps=dict(d.get("eps") or {}),
                ratio=dict(d.get("ratio") or {}),
                curves=curves,
            )
        except (KeyError, TypeError, AttributeError):
            raise ConfigError("the plan is malformed") from None


# ------------------------------------------------------------------------------------------------- presets

_PAPER_CURVES = (
    Curve("dim", (100, 500, 1000, 2500, 5000, 7500, 10000)),
    Curve("n_natural", (1000, 2000, 3000, 5000, 7000, 10000)),
    Curve("n_noise", (1, 10, 100, 500, 1000, 1500, 2500, 5000, 7500, 10000)),
    Curve("eps", (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.78), ("pgd-l2",)),
    Curve("eps", (0.001, 0.005, 0.01, 0.015, 0.02, 0.03), ("pgd-linf",)),
    Curve("ratio", (0.0001, 0.0004, 0.0008, 0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.02, 0.03, 0.04, 0.05)),
)

#: ``paper``: the seed paper's Figures 5-12 at Kumano et al.'s sizes (h = 1000, n = 1000, m = 10,000, d up to
#: 10,000; the curves of their public scripts). ``quick``: every method, 3 dimensions x 2 seeds at laptop size.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "plan": dict(
            methods=METHODS,
            dists=DISTS,
            variants=("noise",),
            seeds=(0, 1, 2),
            dim=10000,
            hidden=1000,
            n_natural=1000,
            n_noise=10000,
            eps={"pgd-l2": 0.78, "pgd-linf": 0.03},
            ratio={m: 0.05 for m in RATIO_METHODS},
            curves=_PAPER_CURVES,
        ),
        "settings": {},  # lfpcli.synth.Settings' defaults are the paper preset's
    },
    "quick": {
        "plan": dict(
            methods=METHODS,
            dists=("uniform",),
            variants=("noise",),
            seeds=(0, 1),
            dim=1000,
            hidden=100,
            n_natural=100,
            n_noise=500,
            eps={"pgd-l2": 0.78, "pgd-linf": 0.03},
            ratio={m: 0.05 for m in RATIO_METHODS},
            curves=(Curve("dim", (100, 300, 1000)),),
        ),
        "settings": dict(max_epochs=5000, window=50, rel_tol=0.1),
    },
}


def preset(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(plan fields, settings fields)`` of a preset (copies)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}'; choose one of {', '.join(PRESETS)}")
    p = PRESETS[name]
    plan = dict(p["plan"])
    plan["eps"], plan["ratio"] = dict(plan["eps"]), dict(plan["ratio"])
    return plan, dict(p["settings"])


# ------------------------------------------------------------------------------------------------- running


def _order(p: Point) -> tuple:
    """Execution order: configurations sharing the natural network, then the noise data and baseline, run together."""
    return (p.seed, p.dist, p.dim, p.hidden, p.n_natural, p.variant, p.n_noise, p.method, p.eps or 0.0, p.ratio or 0.0)


def run_sweep(
    points: list[Point],
    settings: Settings,
    *,
    device: torch.device,
    done: dict[int, dict[str, Any]] | None = None,
    on_row: Callable[[int, dict[str, Any]], None] | None = None,
    progress: Progress = no_progress,
) -> list[dict[str, Any]]:
    """Run every configuration of ``points`` whose index is not in ``done``; returns all rows in ``points`` order.

    ``on_row(index, row)`` is called as soon as a configuration finishes (before the next starts), and
    ``progress("configurations", finished, total)`` after it.
    """
    rows: dict[int, dict[str, Any]] = dict(done or {})
    todo = sorted((i for i in range(len(points)) if i not in rows), key=lambda i: (_order(points[i]), i))
    cache = StageCache()
    total = len(points)
    progress("configurations", len(rows), total)
    for i in todo:
        row = run_point(points[i], settings, device=device, cache=cache, progress=progress)
        rows[i] = row
        if on_row is not None:
            on_row(i, row)
        progress(
            "configurations", len(rows), total, acc_perturbed=row["acc_perturbed"], acc_baseline=row["acc_baseline"]
        )
    return [rows[i] for i in range(total)]
