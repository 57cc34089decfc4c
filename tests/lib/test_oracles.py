"""Library checks against independent oracles: pcfe-l0 (S-CFE, the seed paper's Eq. (2)) against an exhaustive
search over supports, the plausibility terms' gradients against finite differences, a density file read back
against the estimator fitted in memory, and the kNN gravity score against its docstring's definition.

Nothing here compares the library with itself: every expected value comes from scipy, numpy written from the
documented formulas, finite differences, or a second, independent route through the data.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from lfpcli.artifacts.dataspec import resolve
from lfpcli.artifacts.density import read_density
from lfpcli.commands import fit_density_file
from lfpcli.commands.common import load_model
from lfpcli.commands.density import plausibility_from
from lfpcli.density import density_from_state, fit_density
from lfpcli.solvers.scfe import SCFEConfig, scfe

F64 = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: intra-op threads only add synchronisation overhead on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------ (1) pcfe-l0 vs brute force
class LinearImage(torch.nn.Module):
    """A K-class linear model on (N, 1, 1, d) 'images': logits = W x + b."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.lin = torch.nn.Linear(weight.shape[1], weight.shape[0]).to(F64)
        with torch.no_grad():
            self.lin.weight.copy_(weight)
            self.lin.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.flatten(1))


def margin_np(W: np.ndarray, b: np.ndarray, x: np.ndarray, t: int, kappa: float) -> float:
    """The margin loss written out: max(max_{j != t} z_j - z_t + kappa, 0)."""
    z = W @ x + b
    return max(max(z[j] - z[t] for j in range(len(z)) if j != t) + kappa, 0.0)


def eq2_np(W, b, x, xp, t, gamma, beta, kappa) -> float:
    """Eq. (2) without a plausibility term, by hand: ||w||^2 + gamma * margin(x + w, t) + beta * ||w||_0."""
    w = xp - x
    return float(w @ w + gamma * margin_np(W, b, xp, t, kappa) + beta * np.count_nonzero(w))


def restricted_min(W, b, x, t, support, gamma, kappa, lo=0.0, hi=1.0) -> float:
    """min over w supported on ``support`` inside the box of ||w||^2 + gamma * margin(x + w, t): a convex
    problem, solved exactly as the smooth QP of its epigraph form (u >= z_j - z_t + kappa for j != t, u >= 0)
    with SLSQP. Returns the smooth objective recomputed by hand at the minimiser (so always attainable)."""
    S = list(support)
    K = W.shape[0]
    others = [j for j in range(K) if j != t]
    if not S:
        return gamma * margin_np(W, b, x, t, kappa)
    m = len(S)
    A = (W - W[t])[:, S]
    c = (W @ x + b) - (W[t] @ x + b[t]) + kappa
    cons = [
        {
            "type": "ineq",
            "fun": (lambda v, j=j: v[m] - (A[j] @ v[:m] + c[j])),
            "jac": (lambda v, j=j: np.concatenate([-A[j], [1.0]])),
        }
        for j in others
    ]
    bounds = [(lo - x[i], hi - x[i]) for i in S] + [(0.0, None)]
    v0 = np.zeros(m + 1)
    v0[m] = max(0.0, max(c[j] for j in others))
    r = minimize(
        lambda v: v[:m] @ v[:m] + gamma * v[m],
        v0,
        jac=lambda v: np.concatenate([2 * v[:m], [gamma]]),
        bounds=bounds,
        constraints=cons,
        method="SLSQP",
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    w = np.zeros_like(x)
    w[S] = np.clip(r.x[:m], [lo - x[i] for i in S], [hi - x[i] for i in S])
    return float(w @ w + gamma * margin_np(W, b, x + w, t, kappa))


def brute_force(W, b, x, t, gamma, beta, kappa) -> tuple[float, tuple[int, ...]]:
    """The global minimum of Eq. (2) over the box: every support S, its convex restriction plus beta * |S|."""
    best = (math.inf, ())
    for r in range(len(x) + 1):
        for S in itertools.combinations(range(len(x)), r):
            value = restricted_min(W, b, x, t, S, gamma, kappa) + beta * len(S)
            if value < best[0] - 1e-12:
                best = (value, S)
    return best


def tiny_problem(d: int, seed: int, n: int = 8, k: int = 3):
    """A random 3-class linear model and n inputs in [0, 1]^d, each with a target other than its prediction."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(k, d, generator=g, dtype=F64)
    b = 0.3 * torch.randn(k, generator=g, dtype=F64)
    x = torch.rand(n, 1, 1, d, generator=g, dtype=F64)
    pred = (x.flatten(1) @ W.T + b).argmax(1)
    t = (pred + 1 + torch.randint(0, k - 1, (n,), generator=g)) % k
    return W, b, x, t


def run_against_brute_force(cfg: SCFEConfig, seeds=(0,)):
    """Every instance (d = 3, 4, 5; 8 inputs per d and seed): the solver's x' and reported objective, the
    brute-force global minimum, and the convex optimum on the solver's own support."""
    rows = []
    for d, seed in itertools.product((3, 4, 5), seeds):
        W, b, x, t = tiny_problem(d, seed)
        res = scfe(LinearImage(W, b), x, t, cfg)
        Wn, bn = W.numpy(), b.numpy()
        for i in range(x.shape[0]):
            xi, xpi, ti = x[i].flatten().numpy(), res.x[i].flatten().numpy(), int(t[i])
            support = tuple(np.flatnonzero(xpi - xi))
            glob, _ = brute_force(Wn, bn, xi, ti, cfg.gamma, cfg.beta, cfg.kappa)
            own = restricted_min(Wn, bn, xi, ti, support, cfg.gamma, cfg.kappa) + cfg.beta * len(support)
            rows.append(
                {
                    "reported": float(res.extras["objective"][i]),
                    "by_hand": eq2_np(Wn, bn, xi, xpi, ti, cfg.gamma, cfg.beta, cfg.kappa),
                    "global": glob,
                    "own_support": own,
                    "in_box": bool(((xpi >= 0) & (xpi <= 1)).all()),
                    "gamma": float(res.extras["gamma"][i]),
                }
            )
    return rows


# The margin loss stays active at the optimum (gamma 0.5 cannot afford the target), so the smooth part is smooth
# near the solution; L = 2 (the longest step allowed) and a line search at every iteration.
CONVERGENT = {
    "search_steps": 1,
    "gamma": 0.5,
    "beta": 0.05,
    "kappa": 0.1,
    "loss": "margin",
    "prox": "l0",
    "lipschitz": 2.0,
    "steps": 500,
    "line_search_iters": None,
}


def test_pcfe_l0_reaches_the_brute_force_minimum_of_eq2():
    """pcfe-l0 with the l0 prox, one search step (fixed gamma), no plausibility term, on 72 tiny linear problems
    (d = 3..5, margin loss with kappa, box [0, 1]): never below the exhaustive global minimum over all 2^d
    supports; the reported objective is Eq. (2) by hand at the returned x'; on whatever support it settles the
    continuous part is solved exactly; and it finds the global minimum on most instances (measured: 57 of 72;
    the others are l0 local minima, mostly w = 0 where no single value is worth its beta at step 1/L)."""
    cfg = SCFEConfig(**CONVERGENT)
    rows = run_against_brute_force(cfg, seeds=(0, 1, 2))
    assert len(rows) == 72
    for r in rows:
        assert r["in_box"] and r["gamma"] == cfg.gamma
        assert r["reported"] == pytest.approx(r["by_hand"], rel=1e-12, abs=1e-12)
        assert r["reported"] >= r["global"] - 1e-9
        assert r["reported"] == pytest.approx(r["own_support"], abs=1e-6)
    at_global = sum(abs(r["reported"] - r["global"]) <= 1e-6 for r in rows)
    assert at_global >= 54, f"only {at_global} of {len(rows)} instances reached the global minimum"


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param(
            {"search_steps": 1, "gamma": 2.0, "beta": 0.05, "kappa": 0.1, "loss": "margin", "prox": "l0"}, id="defaults"
        ),
        pytest.param({**CONVERGENT, "gamma": 2.0}, id="on-the-kink"),
    ],
)
def test_pcfe_l0_is_never_below_the_global_minimum_and_reports_eq2(settings):
    """The solver's defaults (L = 32, 100 steps, line search in the first 10) and a gamma large enough to reach
    the target (the optimum then sits on the margin's kink, where FISTA's smoothness assumption fails): the
    brute-force minimum is still a lower bound on every instance, and the reported objective is Eq. (2) at x'.
    Measured (24 instances each): the defaults reach the global minimum on 0 (median gap 0.075, largest 0.61) and
    the convex optimum of their own support on 2; on the kink 6 and 14 (median gap 0.042, largest 0.60)."""
    cfg = SCFEConfig(**settings)
    rows = run_against_brute_force(cfg)
    for r in rows:
        assert r["in_box"]
        assert r["reported"] == pytest.approx(r["by_hand"], rel=1e-12, abs=1e-12)
        assert r["reported"] >= r["global"] - 1e-9
        assert r["reported"] >= r["own_support"] - 1e-9


# -------------------------------------------------------------------- (2) the plausibility term's gradient
# Every kind lfp density writes, with parameters that keep the fit to a fraction of a second on digits.
KINDS = {
    "kde": {"max_points": 40},
    "gmm-full": {"components": 2, "covariance": "full", "reg_covar": 1e-2},
    "gmm-diag": {"components": 2, "covariance": "diag", "reg_covar": 1e-2},
    "knn": {"k": 5, "max_points": 40},
    "vae": {"epochs": 1, "width": 4, "latent": 4},
    "feature-kde": {"max_points": 40},
    "feature-gmm": {"components": 1, "covariance": "full", "reg_covar": 1e-2},
    "feature-knn": {"k": 5, "max_points": 40},
}


def _kind(name: str) -> str:
    return name.rsplit("-", 1)[0] if name.startswith("gmm-") else name


@pytest.fixture(scope="module")
def fitted(digits_model, tmp_path_factory):
    """Each kind fitted by ``lfp density`` on digits (through fit_density_file) into its own file."""
    d = tmp_path_factory.mktemp("densities")
    out = {}
    for name, params in KINDS.items():
        path = d / f"{name}.h5"
        fit_density_file(path, model=digits_model, kind=_kind(name), params=dict(params), seed=3, device="cpu")
        out[name] = path
    return out


def _term64(name, path, digits_model):
    """The plausibility term as pcfe-l0 evaluates it, in float64: x (N, 1, 8, 8) -> log q(x or features(x), t).

    The density comes back from the file; a feature-space term runs through a float64 copy of the model's
    features, as scfe does (``model.features(x')`` then ``log_prob``)."""
    tensors, info, _ = read_density(path)
    q = density_from_state(info["estimator"], tensors, info["params"]).to(F64)
    if info["space"] == "feature":
        net, _ = load_model(digits_model, torch.device("cpu"))
        net = net.to(F64)
        return lambda x, t: q.log_prob(net.features(x), t)
    return lambda x, t: q.log_prob(x.flatten(1), t)


@pytest.mark.parametrize("name", list(KINDS))
def test_plausibility_term_gradient_matches_finite_differences(name, fitted, digits_model):
    """log q(x', t) as the solver differentiates it (pixel space, or through the model's features) has the
    gradient central finite differences give, in float64, for every kind: kde, gmm (full and diagonal), knn
    gravity (an unnormalised score, differentiable between changes of its neighbour set), the per-class VAE,
    and the feature-space kde, gmm and knn."""
    term = _term64(name, fitted[name], digits_model)
    g = torch.Generator().manual_seed(11)
    x = (0.15 + 0.7 * torch.rand(3, 1, 8, 8, generator=g, dtype=F64)).requires_grad_()
    t = torch.tensor([0, 4, 9])
    value = term(x, t)
    assert value.shape == (3,) and value.dtype == F64 and bool(torch.isfinite(value).all())
    (grad,) = torch.autograd.grad(value.sum(), x)
    assert float(grad.abs().max()) > 0  # a gradient exists and is not identically zero
    assert torch.autograd.gradcheck(lambda z: term(z, t), (x,), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", list(KINDS))
def test_solver_closure_is_the_density_read_back(name, fitted, digits_model):
    """The callable pcfe-l0 receives for ``--density FILE`` (plausibility_from) evaluates the same log q as the
    density rebuilt from that file by hand, so the gradient checked above is the solver's."""
    net, meta = load_model(digits_model, torch.device("cpu"))
    fn, desc, _ = plausibility_from(str(fitted[name]), net, meta, digits_model, torch.device("cpu"))
    tensors, info, _ = read_density(fitted[name])
    q = density_from_state(info["estimator"], tensors, info["params"])
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([1, 2, 3, 4, 5])
    with torch.no_grad():
        if getattr(fn, "on_features", False):
            got, want = fn(net.features(x), t), q.log_prob(net.features(x), t)
        else:
            got, want = fn(x, t), q.log_prob(x.flatten(1), t)
    assert desc["space"] == info["space"]
    assert torch.equal(got, want)


@pytest.mark.parametrize("name", list(KINDS))
def test_density_file_gives_the_log_prob_of_the_estimator_fitted_in_memory(name, fitted, digits_model):
    """A density written by ``lfp density`` and read back (read_density + density_from_state) gives exactly the
    log_prob of the same estimator fitted in memory on the same clean training split (pixels, or the model's
    features), on fresh inputs it never saw."""
    kind = _kind(name)
    base = kind.removeprefix("feature-")
    net, meta = load_model(digits_model, torch.device("cpu"))
    sp = resolve(meta["data"]["spec"]).split("train")
    with torch.no_grad():
        pts = net.features(sp.x) if kind.startswith("feature-") else sp.x
    q_mem = fit_density(base, pts if base == "vae" else pts.flatten(1), sp.y, 10, seed=3, **KINDS[name])
    tensors, info, record = read_density(fitted[name])
    q_file = density_from_state(info["estimator"], tensors, info["params"])
    assert info["estimator"] == base and record["params"]["kind"] == kind
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    t = torch.arange(16) % 10
    with torch.no_grad():
        inp = net.features(x) if kind.startswith("feature-") else x.flatten(1)
        a, b = q_file.log_prob(inp, t), q_mem.log_prob(inp, t)
    assert bool(torch.isfinite(a).all())
    torch.testing.assert_close(a, b, rtol=0, atol=0)


# ------------------------------------------------------------------------------ kNN gravity by its definition
def knn_gravity_by_definition(
    points: np.ndarray, labels: np.ndarray, xq: np.ndarray, tq: np.ndarray, k: int, density_k: int
) -> np.ndarray:
    """The knn module docstring, written out with numpy and brute-force distances:

    w_i = 1 / mean_{j in kNN_t(x_i)} ||x_i - x_j||  over the density_k nearest *other* points of x_i's class,
    normalised to mean 1 within the class; s(x, t) = -||x - m_t(x)||^2 with m_t(x) the w-weighted mean of the k
    nearest class-t points to x."""
    out = []
    weights = {}
    for c in np.unique(labels):
        P = points[labels == c]
        D = np.linalg.norm(P[:, None, :] - P[None, :, :], axis=2)
        np.fill_diagonal(D, np.inf)
        mean_d = np.sort(D, axis=1)[:, :density_k].mean(1)
        w = 1.0 / mean_d
        weights[c] = (P, w / w.mean())
    for x, t in zip(xq, tq):
        P, w = weights[t]
        nn = np.argsort(np.linalg.norm(P - x, axis=1))[:k]
        m = (w[nn, None] * P[nn]).sum(0) / w[nn].sum()
        out.append(-float(((x - m) ** 2).sum()))
    return np.array(out)


def test_knn_gravity_equals_its_docstring_definition():
    """KNNGravity.log_prob equals s(x, t) = -||x - m_t(x)||^2 computed from scratch (local-density weights from the
    density_k nearest same-class neighbours, attractor over the k nearest target-class points), and its gradient
    is -2 (x - m_t(x)) with the attractor held constant, as documented."""
    g = np.random.default_rng(0)
    pts = np.concatenate([g.normal(0, 1, (30, 4)), g.normal(3, 0.5, (25, 4)), g.normal(-2, 2, (20, 4))])
    lab = np.repeat([0, 1, 2], [30, 25, 20])
    xq = g.normal(0.5, 2.0, (12, 4))
    tq = np.arange(12) % 3
    q = fit_density("knn", torch.tensor(pts), torch.tensor(lab), 3, k=6, density_k=4)
    x = torch.tensor(xq, requires_grad=True)
    got = q.log_prob(x, torch.tensor(tq))
    want = knn_gravity_by_definition(pts, lab, xq, tq, k=6, density_k=4)
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-12, atol=1e-12)
    (grad,) = torch.autograd.grad(got.sum(), x)
    # -||x - m||^2 = s  and  grad = -2 (x - m)  =>  ||grad||^2 / 4 = -s
    np.testing.assert_allclose((grad.numpy() ** 2).sum(1) / 4, -want, rtol=1e-10)
