"""One configuration of the synthetic experiment (the seed paper's Appendix A, after Kumano et al. 2024).

For a :class:`Point` (distribution, input dimension ``d``, hidden width ``h``, ``n`` natural samples, ``m`` noise
samples, method and budget, variant, seed) and shared :class:`Settings`, :func:`run_point`

1. draws ``n`` natural inputs with labels +-1 at random and trains a one-hidden-layer network ``f`` on them
   (``lfpcli.models.synthetic``, full batch, ``lfpcli.synth.train``);
2. draws ``m`` fresh inputs with random +-1 *target* labels (variant ``noise``), or takes the ``n`` natural inputs
   with random targets (variant ``natural``);
3. baseline: trains a fresh network on those inputs with the targets and scores it on the natural samples with
   their labels (about chance);
4. perturbs the inputs toward their targets against ``f`` with the registered solver of the method
   (``lfpcli.solvers``; the box is [-1, 1]^d for ``uniform`` and none for ``gauss``);
5. trains a fresh network on the perturbed inputs with the targets and scores it on the natural samples with their
   labels: the result, against the baseline's.

The baseline and the perturbation-trained network start from the same initial weights, so the two differ only in
their training inputs. Each draw has its own seed derived from the run seed and the parameters it depends on
(:func:`lfpcli.synth.data.derive_seed`), so a configuration gives the same numbers alone or inside any sweep.

Budgets: ``eps`` for ``pgd-l2`` / ``pgd-linf`` (the radius of the ball), ``ratio`` (in (0, 1]) for the others:
``pgd-l0`` changes at most ``k = ceil(ratio * d)`` coordinates (``k`` steps, one more per step), ``pcfe-l0`` keeps
its perturbation in the l0 ball of ``k`` coordinates (``--prox l0-ball``) and runs ``ceil(pcfe_iterations * d)``
FISTA iterations, and ``cfe-l2``, which changes every coordinate, runs ``ceil(ratio * d)`` Adam iterations (what
the paper's public code did with the "ratio" of its CFE figures).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable

import torch

from lfpcli.errors import ConfigError
from lfpcli.models import build_model
from lfpcli.models.outputs import class_logits
from lfpcli.models.synthetic import init_first_layer, one_hidden_forward, output_signs
from lfpcli.progress import Progress, no_progress, scaled
from lfpcli.solvers import get_solver, make_config, norms
from lfpcli.solvers.proxes import k_from_ratio
from lfpcli.synth.data import BOXES, DISTS, derive_seed, draw_inputs, draw_labels, generator
from lfpcli.synth.train import FitConfig, fit

__all__ = [
    "DISTS",
    "EPS_METHODS",
    "METHODS",
    "Point",
    "RATIO_METHODS",
    "Settings",
    "StageCache",
    "VARIANTS",
    "ROW_FIELDS",
    "TIMING_FIELDS",
    "budget_key",
    "natural_data",
    "perturbation_source",
    "run_point",
    "solver_config",
    "stage_keys",
]

METHODS = ("pgd-l2", "pgd-linf", "pgd-l0", "cfe-l2", "pcfe-l0")
EPS_METHODS = ("pgd-l2", "pgd-linf")
RATIO_METHODS = ("pgd-l0", "cfe-l2", "pcfe-l0")
VARIANTS = ("noise", "natural")
EPS_SCALINGS = ("fixed", "sqrt-dim")
#: How pcfe-l0 picks its FISTA step: backtracking line search from 1/L, or a schedule from 1/L without it.
PCFE_STEPS = ("line-search", "anneal", "fixed", "decay")
#: ``eps_scaling="sqrt-dim"``: the pgd-l2 radius is ``eps * sqrt(dim / REFERENCE_DIM)`` (Kumano et al.'s
#: dimension curve: 0.78 at d = 10,000, 0.078 at d = 100).
REFERENCE_DIM = 10_000


def budget_key(method: str) -> str:
    """``eps`` for the PGD balls, ``ratio`` for the sparse and counterfactual methods."""
    if method in EPS_METHODS:
        return "eps"
    if method in RATIO_METHODS:
        return "ratio"
    raise ConfigError(f"unknown method '{method}'; choose one of {', '.join(METHODS)}")


def _whole(name: str, v: Any, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ConfigError(f"{name} must be a whole number of at least {minimum}, got {v!r}")
    return v


def _positive(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ConfigError(f"{name} must be a positive number, got {v!r}")
    return float(v)


def check_ratio(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v <= 1):
        raise ConfigError(f"ratio must lie in (0, 1] (the fraction of the d input values), got {v!r}")
    return float(v)


@dataclass(frozen=True)
class Point:
    """One configuration. ``eps`` is set for ``pgd-l2``/``pgd-linf`` only, ``ratio`` for the others; variant
    ``natural`` perturbs the ``n_natural`` samples themselves and has ``n_noise = 0``."""

    method: str
    dist: str
    variant: str
    dim: int
    hidden: int
    n_natural: int
    n_noise: int
    eps: float | None
    ratio: float | None
    seed: int

    def __post_init__(self):
        key = budget_key(self.method)
        if self.dist not in DISTS:
            raise ConfigError(f"unknown distribution '{self.dist}'; choose one of {', '.join(DISTS)}")
        if self.variant not in VARIANTS:
            raise ConfigError(f"unknown variant '{self.variant}'; choose one of {', '.join(VARIANTS)}")
        _whole("dim (d)", self.dim, 1)
        _whole("hidden (h)", self.hidden, 2)
        _whole("n_natural (n)", self.n_natural, 1)
        if self.variant == "natural":
            if self.n_noise != 0:
                raise ConfigError("variant natural perturbs the natural samples: n_noise must be 0")
        else:
            _whole("n_noise (m)", self.n_noise, 1)
        _whole("seed", self.seed, 0)
        if key == "eps":
            _positive("eps", self.eps)
            if self.ratio is not None:
                raise ConfigError(f"{self.method} takes eps, not ratio")
        else:
            check_ratio(self.ratio)
            if self.eps is not None:
                raise ConfigError(f"{self.method} takes ratio, not eps")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Point":
        return cls(**{f.name: d[f.name] for f in fields(cls)})

    @property
    def n_perturbed(self) -> int:
        return self.n_natural if self.variant == "natural" else self.n_noise


@dataclass(frozen=True)
class Settings:
    """Everything shared by the configurations of a run (recorded in the results file); the defaults are the
    ``paper`` preset's.

    Training (:class:`lfpcli.synth.train.FitConfig`): ``loss`` (exponential), ``lr`` (0.01) and ``momentum`` (0.9)
    of full-batch SGD as in Kumano et al.'s code; the stop rule ``window`` (100), ``rel_tol`` (0.05), ``loss_tol``
    (0: off) and the cap ``max_epochs``; the network's leaky-ReLU ``slope`` (0.01).

    Solvers (exponential loss for the PGDs, as Kumano et al.'s binary attacks):

    - ``pgd_steps`` (100) and ``pgd_step`` (the step as a fraction of eps: 0.2, their eps/5);
    - pgd-linf's ``linf_step`` / ``linf_projection`` (their code: ``max-normalized`` / ``rescale``);
    - ``eps_scaling``: ``sqrt-dim`` (the pgd-l2 radius is eps * sqrt(d / 10,000), as their dimension curve: eps is
      the radius at d = 10,000) or ``fixed`` (eps is the radius);
    - pgd-l0's ``pgd_l0_step`` (0.3, max-normalised steps, best iterate kept, as their code);
    - cfe-l2's ``cfe_lam`` (0.001) and ``cfe_lr`` (Adam, 0.01), on the logistic (cross-entropy) loss;
    - pcfe-l0's ``pcfe_iterations`` (FISTA iterations per search step as a fraction of d: 0.05), ``pcfe_search_steps``
      (5), ``pcfe_lipschitz`` (L = 2, the smallest lfp allows: first step 1/2; the paper's L = 1.0),
      ``pcfe_step`` (``line-search``: backtracking from 1/L, as the paper's text calls L a Lipschitz constant;
      ``anneal``, ``fixed``, ``decay``: a schedule from 1/L without it; ``anneal`` is the paper code's, which
      overshoots once the classification weight has grown), ``pcfe_beta`` (price per changed value on top of the
      l0 ball: 0, so the ball alone sets the sparsity), ``pcfe_kappa`` (the margin loss's confidence: 0.01, the
      code's), and no plausibility density (the paper's code runs plain S-CFE on artificial data);
    - ``solver_batch``: samples per solver call (bounds memory; results depend on it only through rounding).
    """

    loss: str = "exponential"
    lr: float = 0.01
    momentum: float = 0.9
    max_epochs: int = 20_000
    window: int = 100
    rel_tol: float = 0.05
    loss_tol: float = 0.0
    slope: float = 0.01
    pgd_steps: int = 100
    pgd_step: float = 0.2
    linf_step: str = "max-normalized"
    linf_projection: str = "rescale"
    eps_scaling: str = "sqrt-dim"
    pgd_l0_step: float = 0.3
    cfe_lam: float = 0.001
    cfe_lr: float = 0.01
    pcfe_iterations: float = 0.05
    pcfe_search_steps: int = 5
    pcfe_lipschitz: float = 2.0
    pcfe_step: str = "line-search"
    pcfe_beta: float = 0.0
    pcfe_kappa: float = 0.01
    solver_batch: int = 4096

    def __post_init__(self):
        self.fit_config()  # validates the training fields
        if not (isinstance(self.slope, (int, float)) and 0 <= self.slope < 1):
            raise ConfigError(f"slope must be in [0, 1), got {self.slope!r}")
        _whole("pgd_steps", self.pgd_steps, 1)
        _positive("pgd_step", self.pgd_step)
        if self.eps_scaling not in EPS_SCALINGS:
            raise ConfigError(f"eps_scaling must be one of {', '.join(EPS_SCALINGS)}, got '{self.eps_scaling}'")
        _positive("pgd_l0_step", self.pgd_l0_step)
        _positive("cfe_lr", self.cfe_lr)
        if not (isinstance(self.cfe_lam, (int, float)) and self.cfe_lam >= 0 and math.isfinite(self.cfe_lam)):
            raise ConfigError(f"cfe_lam must be a non-negative number, got {self.cfe_lam!r}")
        _positive("pcfe_iterations", self.pcfe_iterations)
        _whole("pcfe_search_steps", self.pcfe_search_steps, 1)
        if self.pcfe_step not in PCFE_STEPS:
            raise ConfigError(f"pcfe_step must be one of {', '.join(PCFE_STEPS)}, got '{self.pcfe_step}'")
        _whole("solver_batch", self.solver_batch, 1)

    def fit_config(self) -> FitConfig:
        return FitConfig(
            loss=self.loss,
            lr=self.lr,
            momentum=self.momentum,
            max_epochs=self.max_epochs,
            window=self.window,
            rel_tol=self.rel_tol,
            loss_tol=self.loss_tol,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Settings":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}")
        return cls(**d)


def eps_radius(point: Point, settings: Settings) -> float | None:
    """The radius PGD uses: ``eps``, times ``sqrt(d / 10,000)`` for pgd-l2 under ``eps_scaling="sqrt-dim"``."""
    if point.eps is None:
        return None
    if point.method == "pgd-l2" and settings.eps_scaling == "sqrt-dim":
        return point.eps * math.sqrt(point.dim / REFERENCE_DIM)
    return point.eps


def solver_config(point: Point, settings: Settings):
    """The validated config of the registered solver for ``point`` (``lfpcli.solvers.make_config``)."""
    lo, hi = BOXES[point.dist]
    box = {"lo": lo, "hi": hi}
    m, d = point.method, point.dim
    if m in EPS_METHODS:
        r = eps_radius(point, settings)
        params = {
            "eps": r,
            "steps": settings.pgd_steps,
            "step_size": settings.pgd_step * r,
            "loss": "exponential",
            **box,
        }
        if m == "pgd-linf":
            params.update(step=settings.linf_step, projection=settings.linf_projection)
        return make_config(m, params)
    k = int(k_from_ratio(point.ratio, d))
    if m == "pgd-l0":
        return make_config(
            m,
            {
                "steps": k,
                "max_changed": k,
                "step_size": settings.pgd_l0_step,
                "step": "max-normalized",
                "keep": "best",
                "loss": "exponential",
                **box,
            },
        )
    if m == "cfe-l2":
        return make_config(
            m, {"lam": settings.cfe_lam, "step_size": settings.cfe_lr, "steps": k, "loss": "ce", "init": "zero", **box}
        )
    iters = max(1, math.ceil(settings.pcfe_iterations * d * (1 - 1e-12)))
    return make_config(
        m,
        {
            "steps": iters,
            "search_steps": settings.pcfe_search_steps,
            "lipschitz": settings.pcfe_lipschitz,
            "line_search": settings.pcfe_step == "line-search",
            "schedule": "fixed" if settings.pcfe_step == "line-search" else settings.pcfe_step,
            "prox": "l0-ball",
            "max_changed": float(k),
            "beta": settings.pcfe_beta,
            "kappa": settings.pcfe_kappa,
            "loss": "margin",
            **box,
        },
    )


class StageCache:
    """The natural network, the perturbation source data and the baseline of recent configurations, keyed by
    everything they depend on: configurations of a sweep that share them (other methods or budgets at the same
    sizes and seed) reuse them. A reused stage is exactly what recomputing it would give."""

    def __init__(self, size: int = 2):
        self.size = size
        self._store: OrderedDict[str, Any] = OrderedDict()

    def get(self, key: str, make: Callable[[], Any]) -> tuple[Any, bool]:
        if key in self._store:
            self._store.move_to_end(key)
            return self._store[key], True
        value = make()
        self._store[key] = value
        kinds = [k for k in self._store if k.split("|", 1)[0] == key.split("|", 1)[0]]
        while len(kinds) > self.size:
            del self._store[kinds.pop(0)]
        return value, False


#: Columns of a result row (besides the point's own fields), in the order the results file stores them.
ROW_FIELDS = (
    "acc_perturbed",
    "acc_baseline",
    "fit_natural",
    "fit_baseline",
    "fit_perturbed",
    "epochs_natural",
    "epochs_baseline",
    "epochs_perturbed",
    "loss_natural",
    "loss_baseline",
    "loss_perturbed",
    "diverged",
    "success",
    "l0",
    "l2",
    "linf",
    "eps_radius",
    "changed_max",
    "solver_iterations",
)
TIMING_FIELDS = ("time_natural", "time_baseline", "time_perturb", "time_perturbed", "time_total")


def _accuracy(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, a: torch.Tensor, slope: float) -> float:
    with torch.no_grad():
        z = one_hidden_forward(w, x.unsqueeze(0), a, slope).reshape(-1)
        return float((class_logits(z).argmax(1) == y).float().mean())


def _key(*parts: Any) -> str:
    return "|".join(str(p) for p in parts)


def natural_data(p: Point) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``n`` natural inputs ``(n, d)`` and their labels ``(n,)`` (CPU), from the point's own seed."""
    gen = generator(derive_seed(p.seed, "natural-data", p.dist, p.dim, p.n_natural))
    return draw_inputs(p.dist, p.n_natural, p.dim, gen), draw_labels(p.n_natural, gen)


def perturbation_source(p: Point, natural_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The inputs to perturb and their targets (on ``natural_x``'s device): variant ``noise``, ``m`` fresh inputs
    and targets, drawn independently of the natural data whatever ``m`` is; variant ``natural``, the natural
    inputs ``natural_x`` with targets drawn independently of their labels."""
    if p.variant == "natural":
        t = draw_labels(p.n_natural, generator(derive_seed(p.seed, "natural-targets", p.dist, p.dim, p.n_natural)))
        return natural_x, t.to(natural_x.device)
    gen = generator(derive_seed(p.seed, "noise-data", p.dist, p.dim, p.n_noise))
    x = draw_inputs(p.dist, p.n_noise, p.dim, gen)
    return x.to(natural_x.device), draw_labels(p.n_noise, gen).to(natural_x.device)


def stage_keys(p: Point, s: Settings) -> dict[str, str]:
    """The :class:`StageCache` key of each stage :func:`run_point` may reuse, covering everything it depends on:

    - ``natural``: the natural data and network (seed, dist, d, n, h, the training settings and slope);
    - ``source``: the inputs to perturb and their targets (seed, variant, dist, d, n, m);
    - ``baseline``: the network trained on the source and its accuracy on the natural data (the source's inputs,
      h, the training settings and slope).

    Only the method, its budget and the solver settings are left out: points differing in those share the stages."""
    fcfg = s.fit_config()
    stamp = _key(*[getattr(fcfg, f.name) for f in fields(fcfg)], s.slope)
    source = _key("source", p.seed, p.variant, p.dist, p.dim, p.n_natural, p.n_noise)
    return {
        "natural": _key("natural", p.seed, p.dist, p.dim, p.hidden, p.n_natural, stamp),
        "source": source,
        "baseline": _key("baseline", source, p.hidden, stamp),
    }


def run_point(
    point: Point,
    settings: Settings,
    *,
    device: torch.device,
    cache: StageCache | None = None,
    progress: Progress = no_progress,
) -> dict[str, Any]:
    """Run one configuration; returns a flat row: the point's fields, ``ROW_FIELDS`` and ``TIMING_FIELDS``.

    Accuracies are on the ``n`` natural samples with their labels; ``fit_*`` is each network's accuracy on its
    own training set; ``success``/``l0``/``l2``/``linf`` are means over the perturbed samples (``success``: ``f``
    predicts the target at the perturbed input); times are seconds spent in this call (0 for a stage reused from
    ``cache``).
    """
    cache = cache or StageCache()
    started = time.perf_counter()
    p, s = point, settings
    fcfg = s.fit_config()
    a = output_signs(p.hidden, device=device)
    keys = stage_keys(p, s)

    def natural():
        t0 = time.perf_counter()
        x, y = natural_data(p)
        w0 = init_first_layer(
            (1, p.hidden, p.dim), generator(derive_seed(p.seed, "natural-init", p.dist, p.dim, p.hidden, p.n_natural))
        )
        x, y = x.to(device), y.to(device)
        r = fit(
            w0.to(device),
            x.unsqueeze(0),
            y.unsqueeze(0),
            a,
            fcfg,
            slope=s.slope,
            progress=progress,
            stage="natural network",
        )
        return {"x": x, "y": y, "fit": r, "seconds": time.perf_counter() - t0}

    nat, nat_reused = cache.get(keys["natural"], natural)

    def source():
        x, t = perturbation_source(p, nat["x"])
        return {"x": x, "t": t}

    src, _ = cache.get(keys["source"], source)
    w_init = init_first_layer(
        (1, p.hidden, p.dim),
        generator(derive_seed(p.seed, "retrain-init", p.variant, p.dist, p.dim, p.hidden, p.n_natural, p.n_noise)),
    ).to(device)

    def baseline():
        t0 = time.perf_counter()
        r = fit(
            w_init,
            src["x"].unsqueeze(0),
            src["t"].unsqueeze(0),
            a,
            fcfg,
            slope=s.slope,
            progress=progress,
            stage="baseline network",
        )
        acc = _accuracy(r.w, nat["x"], nat["y"], a, s.slope)
        return {"fit": r, "acc": acc, "seconds": time.perf_counter() - t0}

    base, base_reused = cache.get(keys["baseline"], baseline)

    # perturb toward the targets against f, with the registered solver, in batches
    t0 = time.perf_counter()
    cfg = solver_config(p, s)
    spec = get_solver(p.method)
    model = build_model("one-hidden", 2, (1, 1, p.dim), [0.0], [1.0], output="scalar", hidden=p.hidden, slope=s.slope)
    with torch.no_grad():
        model.net.first_layer.weight.copy_(nat["fit"].w[0])
    model = model.to(device).eval()
    gen = generator(derive_seed(p.seed, "solver", p.to_dict()))
    x_src, t_src = src["x"], src["t"]
    n_src = x_src.shape[0]
    batches = math.ceil(n_src / s.solver_batch)
    iters = cfg.steps * (cfg.search_steps if p.method == "pcfe-l0" else 1)
    pieces, succ, nz = [], [], {"l0": [], "l2": [], "linf": []}
    for b in range(batches):
        lo, hi = b * s.solver_batch, min((b + 1) * s.solver_batch, n_src)
        xb = x_src[lo:hi].view(hi - lo, 1, 1, p.dim)
        res = spec.fn(
            model, xb, t_src[lo:hi], cfg, generator=gen, progress=scaled(progress, p.method, b * iters, batches * iters)
        )
        pieces.append(res.x.reshape(hi - lo, p.dim))
        succ.append(res.success.float())
        for k, v in norms(res.x - xb).items():
            nz[k].append(v)
    x_adv = torch.cat(pieces)
    del model, pieces
    t_perturb = time.perf_counter() - t0

    t0 = time.perf_counter()
    adv = fit(
        w_init,
        x_adv.unsqueeze(0),
        t_src.unsqueeze(0),
        a,
        fcfg,
        slope=s.slope,
        progress=progress,
        stage="perturbation-trained network",
    )
    acc_adv = _accuracy(adv.w, nat["x"], nat["y"], a, s.slope)
    t_adv = time.perf_counter() - t0

    nf, bf = nat["fit"], base["fit"]
    k = int(k_from_ratio(p.ratio, p.dim)) if p.ratio is not None else -1
    radius = eps_radius(p, s)
    row = {
        **p.to_dict(),
        "acc_perturbed": acc_adv,
        "acc_baseline": base["acc"],
        "fit_natural": float(nf.fitted[0]),
        "fit_baseline": float(bf.fitted[0]),
        "fit_perturbed": float(adv.fitted[0]),
        "epochs_natural": int(nf.epochs[0]),
        "epochs_baseline": int(bf.epochs[0]),
        "epochs_perturbed": int(adv.epochs[0]),
        "loss_natural": float(nf.loss[0]),
        "loss_baseline": float(bf.loss[0]),
        "loss_perturbed": float(adv.loss[0]),
        "diverged": int(bool(nf.diverged[0]) or bool(bf.diverged[0]) or bool(adv.diverged[0])),
        "success": float(torch.cat(succ).mean()),
        **{k2: float(torch.cat(v).mean()) for k2, v in nz.items()},
        "eps_radius": float("nan") if radius is None else float(radius),
        "changed_max": k,
        "solver_iterations": int(iters),
        "time_natural": 0.0 if nat_reused else nat["seconds"],
        "time_baseline": 0.0 if base_reused else base["seconds"],
        "time_perturb": t_perturb,
        "time_perturbed": t_adv,
        "time_total": time.perf_counter() - started,
    }
    return row
