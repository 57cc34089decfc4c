"""Perturbation solvers: pure functions ``solver(model, x, target, config, generator=...) -> SolverResult``.

``list_solvers()`` names the methods ``lfp perturb --method`` accepts; ``make_config(method, params)`` builds a
method's validated config from a dict of parameters (unknown names are refused with the list of valid ones).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from lfpcli.errors import ConfigError
from lfpcli.solvers import cfe, pgd, pgd_l0, scfe  # modules: the functions are reached as pgd.pgd etc.
from lfpcli.solvers.base import SolverResult, frozen_eval, norms
from lfpcli.solvers.targets import TARGET_RULES, choose_targets


@dataclass(frozen=True)
class SolverSpec:
    """A registered method: its solver function, config class, the config fields the method fixes, and a
    one-line description for ``--help``."""

    name: str
    fn: Callable[..., SolverResult]
    config: type
    fixed: dict[str, Any]
    description: str

    def params(self) -> dict[str, Any]:
        """Tunable parameters and their defaults."""
        return {
            f.name: (f.default if f.default is not dataclasses.MISSING else None)
            for f in dataclasses.fields(self.config)
            if f.name not in self.fixed
        }


_SOLVERS: dict[str, SolverSpec] = {}


def register_solver(name: str, fn, config: type, description: str, **fixed: Any) -> None:
    if name in _SOLVERS:
        raise ValueError(f"solver {name!r} is already registered")
    _SOLVERS[name] = SolverSpec(name, fn, config, fixed, description)


def list_solvers() -> list[str]:
    return list(_SOLVERS)


def get_solver(name: str) -> SolverSpec:
    if name not in _SOLVERS:
        raise ConfigError(f"unknown method '{name}'; choose one of {', '.join(_SOLVERS)}")
    return _SOLVERS[name]


def _coerce(name: str, annotation: str, value: Any) -> Any:
    """Convert a string given on the command line (``-p eps=2``) to the field's declared type."""
    if not isinstance(value, str):
        return value
    ann = str(annotation)
    try:
        if value.lower() in ("none", "null") and "None" in ann:
            return None
        if ann.startswith("bool"):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return value.lower() in ("true", "1", "yes")
        if ann.startswith("int"):
            return int(value)
        if ann.startswith("float"):
            return float(value)
    except ValueError:
        raise ConfigError(f"parameter {name} must be of type {ann}, got '{value}'") from None
    return value


def make_config(name: str, params: dict[str, Any]):
    """The validated config of method ``name`` from ``params`` (None values mean "use the default"; strings
    are converted to the field's type)."""
    spec = get_solver(name)
    allowed = spec.params()
    types = {f.name: f.type for f in dataclasses.fields(spec.config)}
    given = {k: _coerce(k, types.get(k, ""), v) for k, v in params.items() if v is not None}
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        opts = ", ".join("--" + k.replace("_", "-") for k in unknown)
        raise ConfigError(f"{opts} does not apply to --method {name} (it takes: {', '.join(sorted(allowed))})")
    return spec.config(**{**given, **spec.fixed})


register_solver(
    "pgd-l2",
    pgd.pgd,
    pgd.PGDConfig,
    "targeted PGD in an l2 ball (Madry et al.)",
    norm="l2",
    step="sign",
    projection="clip",
)
register_solver("pgd-linf", pgd.pgd, pgd.PGDConfig, "targeted PGD in an linf ball (Madry et al.)", norm="linf")
register_solver(
    "pgd-l0",
    pgd_l0.pgd_l0,
    pgd_l0.PGDL0Config,
    "targeted sparse PGD, one more changed coordinate per step (Kumano et al.)",
)
register_solver(
    "cfe-l2",
    cfe.cfe,
    cfe.CFEConfig,
    "l2 counterfactuals: cross-entropy + lam * squared l2 distance, Adam (Wachter et al.)",
)
register_solver(
    "pcfe-l0",
    scfe.scfe,
    scfe.SCFEConfig,
    "sparse plausible counterfactuals (S-CFE, Eq. 2): FISTA with an l0 prox, gamma by bisection",
)

__all__ = [
    "TARGET_RULES",
    "SolverResult",
    "SolverSpec",
    "choose_targets",
    "frozen_eval",
    "get_solver",
    "list_solvers",
    "make_config",
    "norms",
    "register_solver",
]
