"""p-CFE l0 (S-CFE): scipy on the convex case, l0 structure on a linear model, the outer search against a hand
simulation, a trained digits model, a density as plausibility term, and the per-sample contract."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from torch import nn

from lfpcli.errors import ConfigError, InputError
from lfpcli.solvers import choose_targets, norms
from lfpcli.solvers import scfe as scfe_module
from lfpcli.solvers.fista import FistaResult
from lfpcli.solvers.scfe import SCFEConfig, scfe

DT = torch.float64


class Linear(nn.Module):
    """Logits ``W x + b`` of flattened inputs; ``weight`` (K, D) given."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        k, d = weight.shape
        self.fc = nn.Linear(d, k).to(weight.dtype)
        with torch.no_grad():
            self.fc.weight.copy_(weight)
            self.fc.bias.copy_(bias if bias is not None else torch.zeros(k, dtype=weight.dtype))

    def forward(self, x):
        return self.fc(x.flatten(1))


def small_cnn(seed=0, k=3, dtype=torch.float32):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, k)).to(dtype)


# ------------------------------------------------------------------------------------------------ (a) convex case


def _scipy_minimiser(weight, bias, x, t, gamma, l1):
    """min over -x <= w <= 1 - x of ||w||^2 + gamma * CE(W(x + w) + b, t) + l1 * ||w||_1, per sample by L-BFGS-B
    on w = u - v (u, v >= 0)."""
    W, b = weight.numpy(), bias.numpy()
    out, values = [], []
    for xn, tn in zip(x.numpy(), t.numpy()):
        d = len(xn)

        def fun(z, xn=xn, tn=tn, d=d):
            w = z[:d] - z[d:]
            logits = W @ (xn + w) + b
            m = logits.max()
            lse = m + np.log(np.exp(logits - m).sum())
            p = np.exp(logits - lse)
            p[tn] -= 1.0
            gw = 2 * w + gamma * (W.T @ p)
            val = w @ w + gamma * (lse - logits[tn]) + l1 * z.sum()
            return val, np.concatenate([gw + l1, -gw + l1])

        bounds = [(0.0, 1.0 - xi) for xi in xn] + [(0.0, xi) for xi in xn]
        res = minimize(
            fun,
            np.zeros(2 * d),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"ftol": 1e-16, "gtol": 1e-12, "maxiter": 20000, "maxcor": 30},
        )
        out.append(res.x[:d] - res.x[d:])
        values.append(res.fun)
    return torch.tensor(np.array(out), dtype=DT), torch.tensor(values, dtype=DT)


@pytest.mark.parametrize("prox,beta", [("none", 0.0), ("l1", 0.05)])
@pytest.mark.parametrize("line_search", [True, False])
def test_single_search_step_is_the_convex_minimiser(prox, beta, line_search):
    """Binary linear model, CE, no plausibility: the objective is strongly convex, so one search step at a fixed
    gamma must land on scipy's bounded minimiser, box constraints active for several coordinates."""
    d, gamma = 12, 3.0
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(2, d, generator=g, dtype=DT)
    bias = torch.tensor([0.3, -0.2], dtype=DT)
    model = Linear(weight, bias)
    x = torch.rand(5, d, generator=g, dtype=DT)
    x[0, :4] = 0.0
    x[1, :4] = 1.0
    t = torch.tensor([0, 1, 1, 0, 1])
    delta = weight[1] - weight[0]
    # CE's Hessian is p (1 - p) delta delta^T <= delta delta^T / 4: a valid fixed step for the whole problem.
    lip = 2.0 + gamma * float(delta @ delta) / 4
    cfg = SCFEConfig(
        steps=400,
        search_steps=1,
        gamma=gamma,
        beta=beta,
        prox=prox,
        loss="ce",
        line_search=line_search,
        lipschitz=2.0 if line_search else lip,
    )
    r = scfe(model, x, t, cfg)
    expected, value = _scipy_minimiser(weight, bias, x, t, gamma, beta)
    torch.testing.assert_close(r.x - x, expected, atol=2e-6, rtol=0)
    boxed = ((r.x == 0) | (r.x == 1)) & (r.x != x)
    assert boxed.sum() >= 5  # the box really binds
    torch.testing.assert_close(r.extras["gamma"], torch.full((5,), gamma, dtype=DT))
    torch.testing.assert_close(r.extras["objective"], value, atol=1e-8, rtol=1e-8)
    assert torch.equal(r.grad_evals, torch.full((5,), 400))
    assert torch.equal(r.success, model(r.x).argmax(1) == t)


# ---------------------------------------------------------------------------------------------- (b) l0 structure


def test_l0_sparsity_grows_with_beta_and_picks_the_largest_weights():
    """On a binary linear model the gradient of the loss is along delta = w_t - w_o, so an l0 solution changes the
    coordinates with the largest |delta|; a higher pixel price changes fewer of them."""
    d = 24
    g = torch.Generator().manual_seed(1)
    mags = 1.15 ** torch.randperm(d, generator=g).to(DT)  # well separated magnitudes in random positions
    signs = torch.where(torch.rand(d, generator=g) < 0.5, -1.0, 1.0).to(DT)
    delta = 0.25 * mags * signs
    weight = torch.stack([-delta / 2, delta / 2])
    model = Linear(weight, 0.25 * delta.sum() * torch.tensor([1.0, -1.0], dtype=DT))  # boundary through x = 0.5
    # start on the wrong side of the boundary, by different amounts; all moves fit in the box
    side = torch.tensor([0.1, -0.1, 0.05, -0.05], dtype=DT)[:, None]
    x = 0.5 + side * torch.sign(delta)
    t = (side[:, 0] < 0).long()
    counts = []
    for beta in (1e-4, 3e-3, 1e-2, 3e-2, 1e-1):
        r = scfe(model, x, t, SCFEConfig(beta=beta, steps=150, search_steps=6))
        assert r.success.all()
        changed = r.x != x
        n_changed = changed.sum(1)
        counts.append(n_changed)
        for i in range(4):
            top = torch.argsort(delta.abs(), descending=True)[: int(n_changed[i])]
            expected = torch.zeros(d, dtype=torch.bool)
            expected[top] = True
            assert torch.equal(changed[i], expected), (beta, i)
            # the move is toward the target: along +delta for t = 1, -delta for t = 0
            direction = delta if int(t[i]) == 1 else -delta
            assert (((r.x[i] - x[i]) * direction)[changed[i]] > 0).all()
    counts = torch.stack(counts)
    assert (counts[1:] <= counts[:-1]).all()
    assert (counts[-1] < counts[0]).all()
    assert counts[-1].max() <= 4 and counts[0].min() >= 10


# ------------------------------------------------------------------------------------------- (c) the outer search


class CountModel(nn.Module):
    """Two logits ``[0, #nonzero(x') - threshold_i]``: sample i reaches class 1 once more than threshold_i pixels
    are non-zero (x = 0, so non-zero pixels of x' are changed pixels)."""

    def __init__(self, thresholds):
        super().__init__()
        self.register_buffer("th", torch.as_tensor(thresholds, dtype=torch.float32))

    def forward(self, x):
        count = (x.flatten(1) != 0).sum(1).float()
        return torch.stack([torch.zeros_like(count), count - self.th], dim=1)


def _changed(gamma: float) -> tuple[int, float]:
    """The stub solver's answer at weight gamma: how many pixels it changes, and by how much."""
    return int(min(16, max(0, round(4 * math.log10(gamma) + 2)))), min(1.0, gamma / 10)


def test_search_keeps_the_sparsest_success(monkeypatch):
    """Replace FISTA by a stub whose result is a known function of gamma (read back from the smooth part at w = 0)
    and compare the search with a hand simulation: sparsest success, l2 as tie-break, last try if none."""
    thresholds = [3.5, 6.5, 100.0]
    kappa, steps, search_steps = 0.1, 7, 6
    calls = []

    def stub_fista(smooth, prox, w0, *, steps, step_size, schedule, restart, penalty, **_):
        n = w0.shape[0]
        base = smooth(torch.zeros_like(w0))  # = gamma * margin at x = 0 = gamma * (threshold + kappa)
        gamma = base / (torch.tensor(thresholds) + kappa)
        calls.append(gamma)
        w = torch.zeros_like(w0)
        for i in range(n):  # test-side loop: the stub, not the solver
            m, v = _changed(float(gamma[i]))
            w[i, :m] = v
        ones = torch.full((n,), steps, dtype=torch.long)
        return FistaResult(
            w=w,
            objective=base,
            smooth=base,
            iterations=ones,
            grad_evals=ones.clone(),
            func_evals=torch.ones(n, dtype=torch.long),
            step=torch.ones(n),
            stopped=ones.bool(),
        )

    monkeypatch.setattr(scfe_module, "fista", stub_fista)
    model = CountModel(thresholds)
    x = torch.zeros(3, 16)
    t = torch.ones(3, dtype=torch.long)
    cfg = SCFEConfig(steps=steps, search_steps=search_steps, gamma=1.0, kappa=kappa, growth=10.0)
    r = scfe(model, x, t, cfg)
    assert len(calls) == search_steps

    for i, th in enumerate(thresholds):
        c, lo, hi = 1.0, 0.0, math.inf
        best, best_score, best_c, last = None, math.inf, None, None
        for _ in range(search_steps):
            torch.testing.assert_close(float(calls[_][i]), c, rtol=1e-5, atol=0)
            m, v = _changed(c)
            ok = m > th
            score = m + v * math.sqrt(m) / (v * math.sqrt(m) + 1)
            if ok and score < best_score:
                best, best_score, best_c = (m, v), score, c
            last = (m, v, c)
            if ok:
                hi = c
                c = (lo + hi) / 2
            else:
                lo = c
                c = c * 10 if math.isinf(hi) else (lo + hi) / 2
        m, v = best if best is not None else last[:2]
        expected = torch.zeros(16)
        expected[:m] = v
        torch.testing.assert_close(r.x[i], expected)
        assert bool(r.success[i]) == (best is not None)
        torch.testing.assert_close(
            float(r.extras["gamma"][i]), best_c if best is not None else last[2], rtol=1e-6, atol=0
        )
    # sample 0 meets the same l0 twice (gamma 3.25 then 2.6875): the smaller change wins
    assert r.x[0, 0] == pytest.approx(0.26875) and int((r.x[0] != 0).sum()) == 4
    assert not r.success[2]
    assert torch.equal(r.grad_evals, torch.full((3,), steps * search_steps))
    # forward-only passes: the skip check, FISTA's own (1 per try here) + the success test per try + the final evaluation
    assert torch.equal(r.extras["func_evals"], torch.full((3,), 1 + 2 * search_steps + 1))


# ------------------------------------------------------------------------------------------ (d) a trained model


@pytest.fixture(scope="module")
def digits(digits_model):
    from lfpcli.artifacts.dataspec import resolve
    from lfpcli.commands.common import load_model

    model, _ = load_model(digits_model, torch.device("cpu"))
    split = resolve("digits").splits["train"]
    return model, split.x, split.y


def test_trained_digits_model_sparser_than_pgd(digits):
    from lfpcli.solvers import get_solver, make_config

    model, xs, ys = digits
    x, y = xs[:48], ys[:48]
    t = choose_targets(y, 10, "random-other", torch.Generator().manual_seed(0))
    r = scfe(model, x, t, SCFEConfig(steps=40, search_steps=4, beta=0.03))
    assert r.success.float().mean() >= 0.9
    assert torch.equal(r.success, model(r.x).argmax(1) == t)
    pgd = get_solver("pgd-l2").fn(model, x, t, make_config("pgd-l2", {"eps": 3.0, "steps": 20}))
    l0 = norms(r.x - x)["l0"]
    l0_pgd = norms(pgd.x - x)["l0"]
    ok = r.success & pgd.success
    assert ok.sum() >= 40
    assert l0[ok].mean() < 0.6 * l0_pgd[ok].mean()
    searched = ~r.extras["skipped"]  # a sample the model already gives its target is not searched (a test below)
    assert searched.sum() >= 40 and (r.grad_evals[searched] == 160).all() and (r.grad_evals[~searched] == 0).all()
    # line search checks the first 10 iterations of each search step; + objective and success per step, + final
    assert (r.extras["func_evals"][searched] == 4 * 10 + 2 * 4 + 1 + 1).all()  # + the skip check's forward pass
    every = scfe(
        model, x[:8], t[:8], SCFEConfig(steps=40, search_steps=4, beta=0.03, line_search_iters=None), skip=False
    )
    assert (every.extras["func_evals"] == 160 + 2 * 4 + 1).all()  # textbook: one check per iteration
    assert every.success.float().mean() >= 0.75


def test_a_feature_space_term_shares_the_models_pass_and_gives_the_same_result(digits):
    from lfpcli.density import fit_density

    model, xs, ys = digits
    with torch.no_grad():
        feats = model.features(xs[:400])
    q = fit_density("kde", feats, ys[:400], 10, max_points=30)
    x, y = xs[400:416], ys[400:416]
    t = choose_targets(y, 10, "random-other", torch.Generator().manual_seed(2))
    calls = []

    def shared(f, tt):
        calls.append(f.shape)
        return q.log_prob(f, tt)

    shared.on_features = True
    cfg = SCFEConfig(steps=15, search_steps=2, tau=q.plausibility_weight())
    a = scfe(model, x, t, cfg, plausibility=shared)
    b = scfe(model, x, t, cfg, plausibility=lambda xp, tt: q.log_prob(model.features(xp), tt))
    torch.testing.assert_close(a.x, b.x, rtol=0, atol=1e-5)
    assert torch.equal(a.success, b.success)
    assert calls and all(s == (16, feats.shape[1]) for s in calls)  # it was handed features, not images
    with pytest.raises(InputError, match="features"):
        scfe(small_cnn(0), torch.rand(2, 1, 8, 8), torch.tensor([0, 1]), cfg, plausibility=shared)


# ------------------------------------------------------------------------------------------ (e) plausibility


def test_density_term_raises_target_log_density(digits):
    from lfpcli.density import fit_density

    model, xs, ys = digits
    q = fit_density("kde", xs, ys, 10, bandwidth=0.3)
    x, y = xs[100:132], ys[100:132]
    t = choose_targets(y, 10, "random-other", torch.Generator().manual_seed(1))
    base = SCFEConfig(steps=30, search_steps=3, beta=0.01, tau=0.0)
    plain = scfe(model, x, t, base, plausibility=q)  # tau = 0: the callable is only reported
    tau = 1.0
    guided = scfe(model, x, t, SCFEConfig(**{**base.to_dict(), "tau": tau}), plausibility=q)
    with torch.no_grad():
        lp_plain, lp_guided = q.log_prob(plain.x, t), q.log_prob(guided.x, t)
    torch.testing.assert_close(guided.extras["plausibility"], lp_guided, rtol=1e-5, atol=1e-4)
    assert lp_guided.mean() > lp_plain.mean() + 5.0
    assert (lp_guided > lp_plain).float().mean() >= 0.75
    assert guided.success.float().mean() >= 0.8


def test_plausibility_weight_zero_or_absent_is_the_plain_solver():
    model = small_cnn(4)
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([0, 1, 2, 0, 1, 2])
    cfg = SCFEConfig(steps=10, search_steps=2, tau=0.0)
    a = scfe(model, x, t, cfg)
    b = scfe(model, x, t, cfg, plausibility=lambda xp, tt: -1e3 * xp.flatten(1).sum(1))
    assert torch.equal(a.x, b.x)


# ------------------------------------------------------------------------------------------ (f) the contract


def test_mask_and_box_and_l0_ball():
    model = small_cnn(1)
    g = torch.Generator().manual_seed(3)
    x = 0.2 + 0.6 * torch.rand(8, 1, 8, 8, generator=g)
    x[:2, :, :4] = 0.2  # on the lower edge of the box below
    t = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    mask = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    mask[..., 2:6, 1:7] = True
    cfg = SCFEConfig(steps=20, search_steps=3, beta=1e-3, lo=0.2, hi=0.8)
    r = scfe(model, x, t, cfg, mask=mask)
    assert ((r.x != x) & ~mask).sum() == 0
    assert (r.x != x).any()
    assert r.x.min() >= 0.2 and r.x.max() <= 0.8
    # a 0/1 float mask means the same
    r2 = scfe(model, x, t, cfg, mask=mask.float())
    assert torch.equal(r.x, r2.x)
    for max_changed, k in ((5, 5), (0.1, 7)):
        r = scfe(model, x, t, SCFEConfig(steps=20, search_steps=3, beta=0.0, prox="l0-ball", max_changed=max_changed))
        l0 = norms(r.x - x)["l0"]
        assert (l0 <= k).all() and (l0 == k).any()


@pytest.mark.parametrize("prox", ["l0", "l1/2"])
def test_batch_invariance_and_no_side_effects(prox):
    """Mixed targets in one batch give the per-sample results; input untouched; mode and grads restored."""
    model = small_cnn(2, dtype=DT)
    model.train()
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(5), dtype=DT)
    x0 = x.clone()
    t = torch.tensor([0, 1, 2, 0, 1])
    cfg = SCFEConfig(steps=15, search_steps=3, prox=prox, beta=1e-3)
    r = scfe(model, x, t, cfg)
    assert torch.equal(x, x0)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())
    for i in range(5):
        ri = scfe(model, x[i : i + 1], t[i : i + 1], cfg)
        torch.testing.assert_close(ri.x, r.x[i : i + 1], atol=1e-10, rtol=0)
        torch.testing.assert_close(ri.extras["gamma"], r.extras["gamma"][i : i + 1])
    assert r.x.dtype == DT and r.loss.shape == (5,) and r.grad_evals.dtype == torch.long


def test_fixed_and_decay_schedules_run():
    model = small_cnn(3)
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(6))
    t = torch.tensor([0, 1, 2, 1])
    for kw in (
        {"line_search": False, "lipschitz": 16.0},
        {"line_search": False, "schedule": "decay", "lipschitz": 8.0},
        {"line_search": False, "schedule": "anneal", "lipschitz": 8.0},
    ):
        r = scfe(model, x, t, SCFEConfig(steps=10, search_steps=2, **kw))
        assert r.x.min() >= 0 and r.x.max() <= 1
        assert (
            r.extras["func_evals"] == 1 + 2 * 2 + 1
        ).all()  # the skip check; no line search: no per-iteration forward


@pytest.mark.parametrize(
    "bad",
    [
        {"steps": 0},
        {"steps": 2.5},
        {"search_steps": 0},
        {"gamma": 0.0},
        {"gamma": float("nan")},
        {"beta": -1e-3},
        {"tau": -1.0},
        {"lipschitz": 1.0},
        {"lipschitz": float("inf")},
        {"schedule": "cosine"},
        {"schedule": "decay"},  # with the default line search
        {"prox": "l2"},
        {"prox": "l0-ball"},
        {"prox": "l0-ball", "max_changed": 0.0},
        {"prox": "l0-ball", "max_changed": 2.5},
        {"max_changed": 5},
        {"loss": "hinge"},
        {"kappa": -0.1},
        {"growth": 1.0},
        {"lo": 1.0, "hi": 0.0},
        {"line_search": "yes"},
    ],
)
def test_bad_config_is_refused(bad):
    with pytest.raises(ConfigError):
        SCFEConfig(**bad)


def test_config_round_trip_and_bad_inputs():
    cfg = SCFEConfig(prox="l0-ball", max_changed=0.05)
    assert SCFEConfig(**cfg.to_dict()) == cfg
    assert cfg.k(64) == 4 and SCFEConfig(prox="l0-ball", max_changed=1).k(64) == 1
    import json

    json.dumps(cfg.to_dict())
    model = small_cnn(0)
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(InputError):
        scfe(model, x * 2, torch.tensor([0, 1]), SCFEConfig(steps=1, search_steps=1))
    with pytest.raises(InputError):
        scfe(model, x, torch.tensor([0, 1, 2]), SCFEConfig(steps=1, search_steps=1))
    with pytest.raises(InputError):
        scfe(model, x, torch.tensor([0, 1]), SCFEConfig(steps=1, search_steps=1), mask=torch.ones(3, 1, 8, 8))


# ------------------------------------------------------------------------------------------ (f) skipping


def _same_result(a, b):
    """The same counterfactuals, up to the last bit of rounding a smaller batch may change."""
    torch.testing.assert_close(a.x, b.x, rtol=0, atol=1e-6)
    assert torch.equal(a.success, b.success)
    torch.testing.assert_close(a.loss, b.loss, rtol=0, atol=1e-6)
    for key in ("gamma", "objective", "l0"):
        torch.testing.assert_close(a.extras[key].double(), b.extras[key].double(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("with_density", [False, True])
def test_samples_already_at_their_target_are_skipped_with_the_searched_result(digits, with_density):
    """Random targets keep about 1/K labels; a sample its target leads by more than kappa, whose first prox step from
    w = 0 keeps nothing, is returned at once, and exactly as the full search returns it; the others are searched in
    a smaller batch, with the same result as in the full one."""
    from lfpcli.density import fit_density

    model, xs, ys = digits
    x, y = xs[:40], ys[:40]
    t = choose_targets(y, 10, "random", torch.Generator().manual_seed(3))
    t[:12] = y[:12]  # plenty that keep their label
    kw = {}
    if with_density:
        q = fit_density("kde", xs[200:600], ys[200:600], 10, bandwidth=0.3)
        kw = {"plausibility": q}
    cfg = SCFEConfig(steps=20, search_steps=3, beta=0.05, tau=1e-3 if with_density else None)
    fast = scfe(model, x, t, cfg, skip=True, **kw)
    slow = scfe(model, x, t, cfg, skip=False, **kw)
    _same_result(fast, slow)
    skipped = fast.extras["skipped"]
    assert skipped.sum() >= 8 and not slow.extras["skipped"].any()
    assert (fast.grad_evals[skipped] == (1 if with_density else 0)).all()
    assert (fast.grad_evals[~skipped] == slow.grad_evals[~skipped] + (1 if with_density else 0)).all()
    assert (fast.extras["func_evals"][~skipped] == slow.extras["func_evals"][~skipped] + 1).all()
    assert torch.equal(fast.x[skipped], x[skipped])


def test_nothing_is_skipped_when_a_plausibility_pull_moves_it(digits):
    """With a strong plausibility weight the first prox step moves already-classified samples, so none is skipped."""
    from lfpcli.density import fit_density

    model, xs, ys = digits
    x, y = xs[:16], ys[:16]
    q = fit_density("kde", xs[200:600], ys[200:600], 10, bandwidth=0.3)
    cfg = SCFEConfig(steps=5, search_steps=1, beta=1e-4, tau=100.0)
    r = scfe(model, x, y, cfg, plausibility=q)
    assert not r.extras["skipped"].any()
