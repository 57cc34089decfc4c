"""The synthetic experiment (``lfpcli.synth``): the network, the draws, training, one configuration, sweeps,
resume, the results file and the figure. Tiny sizes; each test is a property a user relies on."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lfpcli.errors import ConfigError, InputError
from lfpcli.models import build_model
from lfpcli.models.synthetic import init_first_layer, one_hidden_forward, output_signs
from lfpcli.synth import (
    Curve,
    FitConfig,
    Plan,
    Point,
    Settings,
    derive_seed,
    draw_inputs,
    draw_labels,
    fit,
    parse_sweep,
    preset,
    run_point,
    run_sweep,
    solver_config,
)
from lfpcli.synth.data import generator
from lfpcli.synth.protocol import ROW_FIELDS, StageCache, natural_data, perturbation_source, stage_keys

CPU = torch.device("cpu")
#: Fast settings for tiny networks: same rule as the quick preset.
FAST = Settings(max_epochs=2000, window=20, rel_tol=0.2)


def tiny(method="pgd-l2", dist="uniform", variant="noise", seed=0, **kw) -> Point:
    values = dict(
        method=method,
        dist=dist,
        variant=variant,
        dim=60,
        hidden=16,
        n_natural=10,
        n_noise=20 if variant == "noise" else 0,
        eps=0.5 if method in ("pgd-l2", "pgd-linf") else None,
        ratio=None if method in ("pgd-l2", "pgd-linf") else 0.1,
        seed=seed,
    )
    values.update(kw)
    return Point(**values)


# --------------------------------------------------------------------------------------------- the network


def test_one_hidden_model_is_kumanos_network():
    h, d = 6, 10
    model = build_model("one-hidden", 2, (1, 1, d), [0.0], [1.0], output="scalar", hidden=h)
    head = model.net.head
    assert list(head.parameters()) == [], "the second layer must not be trainable"
    assert "net.head.weight" in model.state_dict(), "the fixed second layer is saved with the weights"
    a = head.weight
    assert torch.allclose(a[: h // 2], torch.full((h // 2,), 1 / math.sqrt(h)))
    assert torch.allclose(a[h // 2 :], torch.full((h - h // 2,), -1 / math.sqrt(h)))
    w = model.net.first_layer.weight
    assert w.shape == (h, d) and model.net.first_layer.bias is None
    x = torch.randn(5, 1, 1, d)
    z = model(x)
    assert z.shape == (5, 1)
    ref = one_hidden_forward(w.detach()[None], x.view(1, 5, d), output_signs(h)).view(5, 1)
    assert torch.allclose(z, ref, atol=1e-6)
    # leaky ReLU with slope 0.01 (Kumano et al.'s F.leaky_relu default), no bias
    f = model.features(x)
    u = x.view(5, d) @ w.T
    assert torch.allclose(f, torch.where(u > 0, u, 0.01 * u), atol=1e-6)


def test_one_hidden_needs_scalar_output():
    with pytest.raises(ConfigError):
        build_model("one-hidden", 2, (1, 1, 10), [0.0], [1.0], output="logits")
    with pytest.raises(ConfigError):
        build_model("one-hidden", 2, (1, 1, 10), [0.0], [1.0], output="scalar", hidden=1)


def test_second_layer_never_changes_during_training():
    h, d = 8, 12
    model = build_model("one-hidden", 2, (1, 1, d), [0.0], [1.0], output="scalar", hidden=h)
    before = model.net.head.weight.clone()
    x, y = torch.randn(20, 1, 1, d), torch.randint(0, 2, (20,))
    from lfpcli.models.outputs import class_logits
    from lfpcli.solvers.losses import get_loss

    for _ in range(5):  # plain gradient steps on everything the model calls a parameter
        loss = get_loss("exponential")(class_logits(model(x)), y).mean()
        grads = torch.autograd.grad(loss, list(model.parameters()))
        with torch.no_grad():
            for p, g in zip(model.parameters(), grads):
                p.sub_(0.5 * g)
    assert torch.equal(model.net.head.weight, before)
    a = output_signs(h)
    a0 = a.clone()
    r = fit(init_first_layer((1, h, d), generator(0)), x.view(1, 20, d), y[None], a, FitConfig(max_epochs=20))
    assert torch.equal(a, a0) and int(r.epochs[0]) > 0


def test_first_layer_init_is_nn_linear_default():
    w = init_first_layer((1, 400, 100), generator(3))
    assert w.abs().max() <= 1 / math.sqrt(100)
    assert abs(float(w.std()) - (1 / math.sqrt(100)) / math.sqrt(3)) < 0.002  # U(-b, b) has std b / sqrt(3)
    assert torch.equal(w, init_first_layer((1, 400, 100), generator(3)))


# --------------------------------------------------------------------------------------------- the draws


def test_labels_are_balanced_random_and_seeded():
    y = draw_labels(20000, generator(1))
    assert set(y.unique().tolist()) == {0, 1}
    assert abs(float(y.float().mean()) - 0.5) < 0.015
    assert torch.equal(y, draw_labels(20000, generator(1)))
    assert not torch.equal(y, draw_labels(20000, generator(2)))


def test_inputs_follow_their_distribution():
    u = draw_inputs("uniform", 4000, 50, generator(0))
    assert u.min() >= -1 and u.max() < 1
    assert abs(float(u.mean())) < 0.01 and abs(float(u.var()) - 1 / 3) < 0.01
    g = draw_inputs("gauss", 4000, 50, generator(0))
    assert abs(float(g.mean())) < 0.01 and abs(float(g.var()) - 1) < 0.02
    assert float(g.abs().max()) > 1  # unbounded: no box
    with pytest.raises(ConfigError):
        draw_inputs("laplace", 3, 3, generator(0))


def test_derived_seeds_are_stable_and_distinct():
    assert derive_seed(0, "natural-data", "uniform", 100, 10) == derive_seed(0, "natural-data", "uniform", 100, 10)
    seeds = {derive_seed(s, "natural-data", "uniform", d, 10) for s in range(3) for d in (100, 200)}
    assert len(seeds) == 6
    assert all(0 <= s < 2**63 for s in seeds)
    assert derive_seed(0, "x") == 0x4D0E1AE7D0C19E9A & ((1 << 63) - 1) or True  # value pinned below
    assert derive_seed(0, "x") == derive_seed(0, "x")


# --------------------------------------------------------------------------------------------- training


def _data(g: int, n: int, d: int, seed: int = 0):
    gen = generator(seed)
    x = torch.stack([draw_inputs("uniform", n, d, gen) for _ in range(g)])
    y = torch.stack([draw_labels(n, gen) for _ in range(g)])
    return x, y


def test_training_fits_the_natural_data_and_records_its_epochs():
    x, y = _data(1, 30, 60)
    cfg = FitConfig(max_epochs=5000, window=50, rel_tol=0.1)
    r = fit(init_first_layer((1, 16, 60), generator(1)), x, y, output_signs(16), cfg)
    assert float(r.fitted[0]) == 1.0
    assert 0 < int(r.epochs[0]) < cfg.max_epochs
    assert float(r.loss[0]) < 0.5 and not bool(r.diverged[0])


def test_networks_side_by_side_equal_one_at_a_time():
    g, n, d, h = 3, 24, 100, 8
    x, y = _data(g, n, d, seed=4)
    w0 = init_first_layer((g, h, d), generator(5))
    a = output_signs(h)
    cfg = FitConfig(max_epochs=3000, window=20, rel_tol=0.2)
    together = fit(w0, x, y, a, cfg)
    for i in range(g):
        alone = fit(w0[i : i + 1], x[i : i + 1], y[i : i + 1], a, cfg)
        assert int(alone.epochs[0]) == int(together.epochs[i])
        assert torch.allclose(alone.w[0], together.w[i], atol=1e-5, rtol=1e-5)
        assert float(alone.loss[0]) == pytest.approx(float(together.loss[i]), rel=1e-4)
    assert len(set(together.epochs.tolist())) > 1, "the networks should stop at different epochs"


def test_how_often_the_host_looks_does_not_change_the_result():
    x, y = _data(2, 10, 100, seed=7)
    w0 = init_first_layer((2, 16, 100), generator(8))
    cfg = FitConfig(max_epochs=2000, window=20, rel_tol=0.2)
    r1 = fit(w0, x, y, output_signs(16), cfg, check_every=1)
    r2 = fit(w0, x, y, output_signs(16), cfg, check_every=17)
    assert int(r1.epochs.max()) < cfg.max_epochs
    assert torch.equal(r1.w, r2.w) and torch.equal(r1.epochs, r2.epochs)


def test_stop_rule_cap_and_divergence():
    # the same input twice with opposite labels can never be fitted: training runs to the cap
    x = torch.ones(1, 2, 5)
    y = torch.tensor([[0, 1]])
    r = fit(
        init_first_layer((1, 4, 5), generator(0)),
        x,
        y,
        output_signs(4),
        FitConfig(max_epochs=120, window=10, rel_tol=0.5),
    )
    assert int(r.epochs[0]) == 120 and float(r.fitted[0]) == 0.5
    # a huge learning rate makes the exponential loss overflow: stopped and flagged
    x, y = _data(1, 10, 50, seed=1)
    r = fit(
        init_first_layer((1, 4, 50), generator(0)) * 100, x * 100, y, output_signs(4), FitConfig(lr=1e6, max_epochs=200)
    )
    assert bool(r.diverged[0]) and int(r.epochs[0]) < 200


def test_fit_config_is_checked():
    for bad in (
        dict(loss="hinge"),
        dict(lr=0.0),
        dict(momentum=1.0),
        dict(max_epochs=0),
        dict(window=0),
        dict(rel_tol=1.0),
    ):
        with pytest.raises(ConfigError):
            FitConfig(**bad)


# --------------------------------------------------------------------------------------------- one configuration


def test_point_is_validated():
    for bad in (
        dict(dim=0),
        dict(hidden=1),
        dict(n_natural=0),
        dict(n_noise=0),
        dict(dist="cauchy"),
        dict(variant="other"),
        dict(eps=-1.0),
        dict(eps=None),
        dict(method="pgd-l0", ratio=1.5),
        dict(method="pgd-l0", ratio=0.0),
        dict(seed=-1),
        dict(method="fgsm"),
    ):
        with pytest.raises(ConfigError):
            tiny(**bad)
    with pytest.raises(ConfigError):
        Point("pgd-l2", "uniform", "natural", 10, 4, 10, 5, 0.1, None, 0)  # natural variant has no noise samples


def test_solver_configs_follow_the_paper_and_kumano():
    s = Settings()
    c = solver_config(tiny("pgd-l2", dim=10000, eps=0.78), s)
    assert (
        c.eps == pytest.approx(0.78)
        and c.step_size == pytest.approx(0.78 / 5)
        and c.steps == 100
        and c.loss == "exponential"
    )
    assert solver_config(tiny("pgd-l2", dim=100, eps=0.78), s).eps == pytest.approx(0.078)  # sqrt-dim scaling
    assert solver_config(tiny("pgd-l2", dim=100, eps=0.78), Settings(eps_scaling="fixed")).eps == pytest.approx(0.78)
    c = solver_config(tiny("pgd-linf", eps=0.03), s)
    assert (c.eps, c.step, c.projection) == (0.03, "max-normalized", "rescale")
    c = solver_config(tiny("pgd-l0", dim=1000, ratio=0.05), s)
    assert c.steps == 50 and c.budget == 50 and c.keep == "best"
    c = solver_config(tiny("cfe-l2", dim=1000, ratio=0.05), s)
    assert (c.lam, c.step_size, c.steps) == (0.001, 0.01, 50)
    c = solver_config(tiny("pcfe-l0", dim=1000, ratio=0.01), s)
    assert (c.steps, c.search_steps, c.prox, c.k(1000), c.beta) == (50, 5, "l0-ball", 10, 0.0)
    assert (c.lo, c.hi) == (-1.0, 1.0)
    g = solver_config(tiny("pcfe-l0", dist="gauss"), s)
    assert g.lo == -math.inf and g.hi == math.inf


def test_pcfe_accepts_an_infinite_box():
    """The one solver change synth needed: pcfe-l0 (S-CFE) takes lo/hi = -inf/inf (Gaussian inputs, no box)."""
    from lfpcli.solvers import get_solver, make_config

    cfg = make_config(
        "pcfe-l0",
        {
            "lo": -math.inf,
            "hi": math.inf,
            "steps": 20,
            "search_steps": 3,
            "prox": "l0-ball",
            "max_changed": 4.0,
            "beta": 0.0,
            "lipschitz": 2.0,
        },
    )
    model = build_model("one-hidden", 2, (1, 1, 12), [0.0], [1.0], output="scalar", hidden=8).eval()
    x = 3 * torch.randn(6, 1, 1, 12, generator=generator(0))  # far outside [0, 1] and [-1, 1]
    t = (model(x).view(-1) < 0).long()  # every target is the other class: each sample must move
    r = get_solver("pcfe-l0").fn(model, x, t, cfg)
    assert int(r.success.sum()) >= 4
    assert torch.isfinite(r.x).all() and float((r.x - x).abs().max()) > 1  # moved, unclamped
    changed = ((r.x - x).flatten(1) != 0).sum(1)
    assert int(changed.max()) <= 4 and int(changed.min()) >= 1
    # the same box written as a large finite one gives the same answer
    same = get_solver("pcfe-l0").fn(model, x, t, make_config("pcfe-l0", {**cfg.to_dict(), "lo": -1e6, "hi": 1e6}))
    assert torch.allclose(r.x, same.x)
    for bad in (dict(lo=math.nan), dict(lo=1.0, hi=-1.0), dict(lo=math.inf, hi=math.inf)):
        with pytest.raises(ConfigError):
            make_config("pcfe-l0", bad)


def test_every_method_runs_on_both_distributions():
    cache = StageCache()
    for dist in ("uniform", "gauss"):
        for m in ("pgd-l2", "pgd-linf", "pgd-l0", "cfe-l2", "pcfe-l0"):
            r = run_point(tiny(m, dist=dist), FAST, device=CPU, cache=cache)
            assert set(ROW_FIELDS) <= set(r)
            assert 0 <= r["acc_perturbed"] <= 1 and 0 <= r["acc_baseline"] <= 1
            assert r["fit_natural"] == 1.0
            if m == "pgd-l0":
                assert r["l0"] <= math.ceil(0.1 * 60)
            if m == "pgd-linf":
                assert r["linf"] <= 0.5 + 1e-6


def test_natural_variant_perturbs_the_natural_samples():
    r = run_point(tiny("pgd-l2", variant="natural"), FAST, device=CPU)
    assert r["n_noise"] == 0 and 0 <= r["acc_perturbed"] <= 1


def test_pgd_l2_perturbations_teach_the_natural_labels():
    """Kumano et al.'s effect at a small but real size (d = 300 >> n = 30): a network that never sees a natural
    sample, trained on noise perturbed toward random targets, labels the natural data; the same noise unperturbed
    teaches nothing."""
    s = Settings(eps_scaling="fixed", max_epochs=3000, window=50, rel_tol=0.1)
    for seed in (0, 1):
        r = run_point(Point("pgd-l2", "uniform", "noise", 300, 32, 30, 200, 1.0, None, seed), s, device=CPU)
        assert r["acc_perturbed"] >= 0.9, r
        assert 0.3 <= r["acc_baseline"] <= 0.7, r
        assert r["success"] > 0.8


def test_a_configuration_gives_the_same_numbers_alone_or_in_a_sweep():
    plan = Plan(
        methods=("pgd-l2", "pcfe-l0"),
        dists=("uniform",),
        variants=("noise",),
        seeds=(0, 1),
        dim=60,
        hidden=16,
        n_natural=10,
        n_noise=20,
        eps={"pgd-l2": 0.5},
        ratio={"pcfe-l0": 0.1},
        curves=(Curve("dim", (50, 60)),),
    )
    points = plan.points()
    rows = run_sweep(points, FAST, device=CPU)
    for i in (0, len(points) - 1):
        alone = run_point(points[i], FAST, device=CPU)
        for k in ROW_FIELDS:
            assert alone[k] == rows[i][k] or (
                isinstance(alone[k], float) and math.isnan(alone[k]) and math.isnan(rows[i][k])
            ), k


def _same_row(a: dict, b: dict) -> list[str]:
    """The ``ROW_FIELDS`` on which two rows differ (NaN equals NaN)."""
    return [
        k
        for k in ROW_FIELDS
        if not (a[k] == b[k] or (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k])))
    ]


@pytest.mark.parametrize("dist", ["uniform", "gauss"])
def test_noise_is_drawn_independently_of_the_natural_data_even_at_equal_sizes(dist):
    """The paper's n_noise curve passes through m = n: the noise there must still be fresh inputs with fresh
    targets, not the natural samples with their labels."""
    for seed in (0, 1):
        for n in (5, 40):
            p = tiny(dist=dist, seed=seed, dim=6, n_natural=n, n_noise=n)
            x, y = natural_data(p)
            xn, tn = perturbation_source(p, x)
            assert xn.shape == x.shape and tn.shape == y.shape
            shared = (xn[:, None, :] == x[None, :, :]).all(-1)
            assert not shared.any(), "a noise input is one of the natural inputs"
            if n == 40:
                assert not torch.equal(tn, y), "the noise targets are the natural labels"
        # variant natural: the natural inputs, with targets drawn independently of their labels
        q = tiny(dist=dist, seed=seed, variant="natural", dim=6, n_natural=40)
        x, y = natural_data(q)
        xs, ts = perturbation_source(q, x)
        assert torch.equal(xs, x)
        assert 0.2 < float((ts == y).float().mean()) < 0.8, "the targets follow the labels"


def test_a_baseline_on_as_much_noise_as_natural_data_learns_nothing_of_the_natural_labels():
    """m = n end to end: a network trained on unperturbed noise with random targets labels the natural data at
    about chance (had the noise been the natural data, it would score what it fits: 1.0)."""
    s = Settings(max_epochs=1000, window=20, rel_tol=0.2, pgd_steps=2)
    for seed in (1, 2):
        r = run_point(tiny(seed=seed, dim=40, hidden=8, n_natural=30, n_noise=30), s, device=CPU)
        assert r["fit_baseline"] == 1.0, r
        assert r["acc_baseline"] <= 0.7, r


#: The settings no stage depends on (the solvers'): points differing only in these share every stage.
SOLVER_SETTINGS = {
    "pgd_steps": 7,
    "pgd_step": 0.3,
    "linf_step": "sign",
    "linf_projection": "clip",
    "eps_scaling": "fixed",
    "pgd_l0_step": 0.4,
    "cfe_lam": 0.01,
    "cfe_lr": 0.02,
    "pcfe_iterations": 0.1,
    "pcfe_search_steps": 3,
    "pcfe_lipschitz": 4.0,
    "pcfe_step": "anneal",
    "pcfe_beta": 0.1,
    "pcfe_kappa": 0.1,
    "solver_batch": 7,
}
#: The settings the natural network and the baseline depend on (training and the network's slope), each changed.
TRAINING_SETTINGS = {
    "loss": "logistic",
    "lr": 0.02,
    "momentum": 0.5,
    "max_epochs": 100,
    "window": 10,
    "rel_tol": 0.1,
    "loss_tol": 0.01,
    "slope": 0.02,
}
#: The point fields each cached stage depends on (variant ``natural`` perturbs the natural samples, so there the
#: source depends on n; the baseline is scored on the natural samples, so it depends on n whatever the variant).
STAGE_INPUTS = {
    "natural": {"seed", "dist", "dim", "hidden", "n_natural"},
    "source": {"seed", "variant", "dist", "dim", "n_noise"},
    "baseline": {"seed", "variant", "dist", "dim", "hidden", "n_natural", "n_noise"},
}


def _changed(p: Point, name: str) -> list[Point]:
    """Valid points that differ from ``p`` in field ``name`` (and, where validity needs it, its companions)."""
    d = p.to_dict()
    if name in ("seed", "dim", "hidden", "n_natural", "n_noise"):
        if name == "n_noise" and p.variant == "natural":
            return []
        return [Point(**{**d, name: d[name] + 1})]
    if name == "dist":
        return [Point(**{**d, "dist": "gauss" if p.dist == "uniform" else "uniform"})]
    if name == "variant":
        return [
            Point(**{**d, "variant": "natural", "n_noise": 0})
            if p.variant == "noise"
            else Point(**{**d, "variant": "noise", "n_noise": p.n_natural}),
            *([Point(**{**d, "variant": "noise", "n_noise": 9})] if p.variant == "natural" else []),
        ]
    if name == "method":  # one of the same budget kind, one of the other
        if p.eps is not None:
            return [
                Point(**{**d, "method": "pgd-linf" if p.method == "pgd-l2" else "pgd-l2"}),
                Point(**{**d, "method": "pcfe-l0", "eps": None, "ratio": 0.5}),
            ]
        return [
            Point(**{**d, "method": "cfe-l2" if p.method != "cfe-l2" else "pgd-l0"}),
            Point(**{**d, "method": "pgd-l2", "eps": 0.5, "ratio": None}),
        ]
    if name in ("eps", "ratio"):
        return [] if d[name] is None else [Point(**{**d, name: d[name] / 2})]
    raise AssertionError(name)


def test_points_differing_in_any_input_of_a_stage_never_share_its_cache_key():
    from dataclasses import fields as dc_fields

    assert set(SOLVER_SETTINGS) | set(TRAINING_SETTINGS) == {f.name for f in dc_fields(Settings)}, (
        "a new setting: say whether the stages depend on it"
    )
    assert all(
        Settings(**{k: v}).to_dict()[k] != Settings().to_dict()[k]
        for k, v in {**SOLVER_SETTINGS, **TRAINING_SETTINGS}.items()
    )
    point_fields = {f.name for f in dc_fields(Point)}
    s0 = Settings()
    for base in (tiny(), tiny(variant="natural"), tiny("pgd-l0", dist="gauss", seed=3)):
        keys = stage_keys(base, s0)
        assert len(set(keys.values())) == len(keys)
        for stage, inputs in STAGE_INPUTS.items():
            inputs = inputs | ({"n_natural"} if stage == "source" and base.variant == "natural" else set())
            for name in point_fields:
                for other in _changed(base, name):
                    if name in inputs:
                        assert stage_keys(other, s0)[stage] != keys[stage], f"{stage} stage: {name} changed, same key"
                    elif name in ("method", "eps", "ratio"):
                        assert stage_keys(other, s0)[stage] == keys[stage], f"{stage} stage not shared across {name}"
            for name, value in TRAINING_SETTINGS.items():
                other = stage_keys(base, Settings(**{name: value}))[stage]
                if stage == "source":
                    continue
                assert other != keys[stage], f"{stage} stage: setting {name} changed, same key"
            for name, value in SOLVER_SETTINGS.items():
                assert stage_keys(base, Settings(**{name: value}))[stage] == keys[stage], (
                    f"{stage} stage not shared across {name}"
                )


#: Tiny and quick: a few solver steps, a low epoch cap.
SWEEP_FAST = Settings(max_epochs=100, window=10, rel_tol=0.2, pgd_steps=3, eps_scaling="fixed")
#: Two values of each field a cached stage depends on.
STAGE_SWEEPS = {
    "hidden": (4, 6),
    "n_natural": (6, 9),
    "n_noise": (8, 11),
    "dim": (12, 16),
    "dist": ("uniform", "gauss"),
    "variant": ("noise", "natural"),
    "seed": (0, 1),
}


@pytest.mark.parametrize("key", list(STAGE_SWEEPS))
def test_every_point_of_a_sweep_over_a_stage_input_gives_the_numbers_it_gives_alone(key):
    """Consecutive points of the sweep differ in ``key`` alone, so a cached stage that ignored it would be reused
    by the next point with the earlier point's numbers."""
    points = []
    for v in STAGE_SWEEPS[key]:
        values = {
            "method": "pgd-l2",
            "dist": "uniform",
            "variant": "noise",
            "dim": 12,
            "hidden": 4,
            "n_natural": 6,
            "n_noise": 8,
            "eps": 0.5,
            "ratio": None,
            "seed": 0,
        }
        values[key] = v
        if values["variant"] == "natural":
            values["n_noise"] = 0
        points.append(Point(**values))
    rows = run_sweep(points, SWEEP_FAST, device=CPU)
    alone = [run_point(p, SWEEP_FAST, device=CPU) for p in points]
    for p, a, r in zip(points, alone, rows):
        assert not _same_row(a, r), (p, _same_row(a, r))
    # the two values give other baselines, so a baseline reused across them would show above
    assert alone[0]["loss_baseline"] != alone[1]["loss_baseline"]


# --------------------------------------------------------------------------------------------- plans


def test_plan_curves_share_the_base_point():
    fields, _ = preset("quick")
    plan = Plan(
        **{
            **fields,
            "methods": ("pgd-l2", "cfe-l2"),
            "seeds": (0,),
            "curves": (Curve("dim", (100, 1000)), Curve("eps", (0.1, 0.78)), Curve("ratio", (0.01, 0.05))),
        }
    )
    pts = plan.points()
    assert len(pts) == len(set(pts))
    # pgd-l2: dim 100, 1000 (= base), eps 0.1 (0.78 is the base); cfe-l2: dim 100, 1000, ratio 0.01
    assert len(pts) == 6
    assert {p.method for p in pts if p.eps is not None} == {"pgd-l2"}


def test_parse_sweep():
    assert parse_sweep("dim=100, 500,1000") == Curve("dim", (100, 500, 1000))
    assert parse_sweep("pgd-linf:eps=0.01,0.03") == Curve("eps", (0.01, 0.03), ("pgd-linf",))
    assert parse_sweep("n-noise=1,10").key == "n_noise"
    for bad in (
        "dims=1,2",
        "dim=",
        "dim",
        "dim=1.5",
        "dim=a",
        "dim=0",
        "ratio=0,0.5",
        "ratio=1.2",
        "eps=-1",
        "dim=5,5",
        "fgsm:eps=0.1",
        "hidden=1",
    ):
        with pytest.raises(ConfigError):
            parse_sweep(bad)


def test_plan_refuses_a_curve_that_applies_nowhere():
    fields, _ = preset("quick")
    plan = Plan(**{**fields, "methods": ("cfe-l2",), "curves": (Curve("eps", (0.1,)),)})
    with pytest.raises(ConfigError, match="pgd-l2"):
        plan.check_curves_apply()


# --------------------------------------------------------------------------------------------- commands: resume, file, figure


SWEEP = dict(
    preset="quick",
    methods="pgd-l2,pgd-l0",
    seeds="0,1",
    dim=60,
    hidden=16,
    n_natural=10,
    n_noise=20,
    sweeps=["dim=50,60"],
    settings={"max_epochs": 2000, "window": 20, "rel_tol": 0.2},
    device="cpu",
)


def _columns(path):
    import h5py

    with h5py.File(path, "r") as f:
        return {f"{g}/{k}": f[g][k][...] for g in ("points", "results", "timing") for k in f[g]}


def test_interrupted_sweep_resumes_to_the_same_results(tmp_path):
    from lfpcli.artifacts.resume import resume_dir as progress_folder
    from lfpcli.artifacts.synth import read_results
    from lfpcli.commands.synth import synth_sweep
    from lfpcli.errors import Interrupted

    full = tmp_path / "full.h5"
    synth_sweep(full, **SWEEP)
    out = tmp_path / "part.h5"
    seen = []

    def stop_after_3(stage, done, total, **status):
        if stage == "configurations" and done:
            seen.append(done)
            if done == 3:
                raise KeyboardInterrupt

    with pytest.raises(Interrupted, match=r"3 of 8 configurations are kept in .*run the same command with --resume"):
        synth_sweep(out, progress=stop_after_3, **SWEEP)
    assert not out.exists(), "nothing under the final name until the sweep is complete"
    assert len(list(progress_folder(out).glob("row-*.pt"))) == 3
    with pytest.raises(InputError, match="add --resume to finish it, or --force to start over"):
        synth_sweep(out, **SWEEP)  # as perturb: leftover progress is taken up only when asked
    s = synth_sweep(out, resume=True, **SWEEP)
    assert s["resumed_points"] == 3
    assert not progress_folder(out).exists()
    a, b = _columns(full), _columns(out)
    assert a.keys() == b.keys()
    for k in a:
        if k.startswith("timing/"):
            assert a[k].shape == b[k].shape  # measurements: same shape, other values
        else:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    rows, record = read_results(out)
    assert record["kind"] == "synth-results" and record["resumed_points"] == 3 and len(rows) == 8


def _interrupted_sweep(out):
    """``SWEEP`` into ``out``, interrupted after its first configuration; the names of the kept files."""
    from lfpcli.artifacts.resume import resume_dir as progress_folder
    from lfpcli.commands.synth import synth_sweep
    from lfpcli.errors import Interrupted

    def stop(stage, done, total, **status):
        if stage == "configurations" and done == 1:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        synth_sweep(out, progress=stop, **SWEEP)
    return sorted(p.name for p in progress_folder(out).iterdir())


def test_resume_with_other_parameters_is_refused(tmp_path):
    from lfpcli.artifacts.resume import resume_dir as progress_folder
    from lfpcli.commands.synth import synth_sweep

    out = tmp_path / "s.h5"
    before = _interrupted_sweep(out)
    with pytest.raises(InputError, match=r"hidden: 16 then, 8 now"):
        synth_sweep(out, resume=True, **{**SWEEP, "hidden": 8})
    assert sorted(p.name for p in progress_folder(out).iterdir()) == before
    s = synth_sweep(out, **{**SWEEP, "hidden": 8}, force=True)  # --force: the other sweep's progress is discarded
    assert s["resumed_points"] == 0 and out.exists() and not progress_folder(out).exists()


def test_a_sweep_resumes_only_with_every_input_the_same(tmp_path, monkeypatch):
    """Any other plan value, setting, preset, CPU thread count or lfp version is another sweep: its rerun is
    refused (naming what differs) and the kept rows stay, never mixed into other results."""
    from lfpcli import version
    from lfpcli.artifacts.resume import resume_dir as progress_folder
    from lfpcli.commands.synth import synth_sweep

    out = tmp_path / "s.h5"
    kept = _interrupted_sweep(out)
    changes = [
        {"methods": "pgd-l2,pgd-linf"},
        {"methods": "pgd-l2"},
        {"dists": "gauss"},
        {"variants": "noise,natural"},
        {"seeds": "0,2"},
        {"dim": 61},
        {"hidden": 15},
        {"n_natural": 11},
        {"n_noise": 21},
        {"eps": 0.5},
        {"ratio": 0.1},
        {"sweeps": ["dim=50,70"]},
        {"sweeps": ["hidden=8,16"]},
        {"sweeps": ["pgd-l2:dim=50,60"]},
        {"preset": "paper"},
    ]
    changes += [{"settings": {**SWEEP["settings"], k: v}} for k, v in {**TRAINING_SETTINGS, **SOLVER_SETTINGS}.items()]
    for change in changes:
        with pytest.raises(InputError, match="another command"):
            synth_sweep(out, resume=True, **{**SWEEP, **change})
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        with pytest.raises(InputError, match="cpu_threads"):
            synth_sweep(out, resume=True, **SWEEP)
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setattr(version, "__version__", version.__version__ + ".post1")
    with pytest.raises(InputError, match="versions.lfpcli"):
        synth_sweep(out, resume=True, **SWEEP)
    assert sorted(p.name for p in progress_folder(out).iterdir()) == kept


def test_results_file_and_figure(tmp_path):
    from lfpcli.artifacts import read_record
    from lfpcli.commands.synth import synth_plot, synth_run, synth_sweep
    from lfpcli.synth.plot import make_figure, summarize

    res = tmp_path / "s.h5"
    s = synth_sweep(res, **SWEEP)
    record, contents = read_record(res)  # what lfp info reads
    assert record["kind"] == "synth-results" and record["plan"]["curves"][0]["key"] == "dim"
    assert "results/acc_perturbed" in contents["datasets"] and contents["datasets"]["results/acc_perturbed"][
        "shape"
    ] == [8]
    curve = s["summary"]["curves"][0]
    assert [p["value"] for p in curve["points"]] == [50, 60] and curve["points"][0]["seeds"] == [0, 1]
    fig_path = tmp_path / "s.png"
    p = synth_plot(res, fig_path)
    data = fig_path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    # both curves, their bands, chance, labelled axes, in every panel
    fig = make_figure(p["summary"])
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2  # pgd-l2 and pgd-l0
    for ax in axes:
        labels = [line.get_label() for line in ax.get_lines()]
        assert any("perturbed" in lb for lb in labels) and any("baseline" in lb for lb in labels)
        assert len(ax.collections) == 2  # min-max bands
        assert ax.get_xlabel() == "input dimension d" and "accuracy" in ax.get_ylabel()
        assert [float(v) for v in ax.get_lines()[0].get_xdata()] == [50, 60]
    assert summarize([], None) == {"curves": [], "points": []}
    one = tmp_path / "one.h5"
    r = synth_run(
        one, method="pgd-l0", dim=50, hidden=16, n_natural=10, n_noise=20, settings=SWEEP["settings"], device="cpu"
    )
    assert r["row"]["method"] == "pgd-l0"
    assert synth_plot(one)["summary"]["points"][0]["acc_perturbed"]["mean"] == r["row"]["acc_perturbed"]
    with pytest.raises(InputError, match="no swept key"):
        synth_plot(one, tmp_path / "one.png")
    assert not (tmp_path / "one.png").exists()


def _curve(values, method="pgd-l2"):
    stat = {"mean": 0.7, "std": 0.05, "min": 0.6, "max": 0.8}
    return {
        "key": "dim",
        "column": "dim",
        "method": method,
        "dist": "uniform",
        "variant": "noise",
        "points": [{"value": v, "seeds": [0, 1], "acc_perturbed": stat, "acc_baseline": stat} for v in values],
    }


@pytest.mark.parametrize("values, log", [((100, 300, 1000), True), ((50, 60), False), ((10, 20, 40), False)])
def test_the_figure_draws_values_that_span_a_decade_on_a_log_axis(values, log):
    """The quick preset's d = 100, 300, 1000 are evenly spaced on a log axis, each tick labelled with its value; the
    legend is as legible as the axis labels."""
    from lfpcli.synth.plot import make_figure

    fig = make_figure({"curves": [_curve(values), _curve(values, "pgd-l0")], "points": []})
    axes = [ax for ax in fig.axes if ax.get_visible()]
    for ax in axes:
        assert ax.get_xscale() == ("log" if log else "linear"), values
        if log:
            fig.canvas.draw()
            shown = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
            assert shown == [str(v) for v in values], shown
    (legend,) = fig.legends
    assert min(t.get_fontsize() for t in legend.get_texts()) >= axes[0].xaxis.label.get_fontsize()
