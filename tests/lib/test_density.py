"""Class-conditional densities: values against scipy/sklearn, batching, gradients, state round trip, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import gaussian_kde
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import KernelDensity

from lfpcli.density import (
    GaussianKDE,
    GaussianMixtureDensity,
    KNNGravity,
    density_from_state,
    fit_density,
    get_density_class,
    list_densities,
)
from lfpcli.density.base import class_generator
from lfpcli.density.kde import cv_log_likelihood, default_bandwidth_grid, kfold_splits
from lfpcli.errors import ArtifactError, ConfigError

F64 = torch.float64

# (kind, fit params) covering every estimator and covariance type.
ESTIMATORS = [
    ("kde", {}),
    ("kde", {"bandwidth": 0.7, "chunk_size": 5}),
    ("gmm", {"components": 2, "covariance": "full"}),
    ("gmm", {"components": 2, "covariance": "diag"}),
    ("knn", {"k": 5}),
    ("knn", {"k": 5, "chunk_size": 3}),
]


@pytest.fixture(autouse=True)
def _one_thread():
    """The tensors here are tiny: intra-op threads only add sync overhead (seconds on a loaded 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def blobs(n_per_class=(60, 40, 50), dim=3, sep=4.0, seed=0, dtype=F64):
    """One Gaussian blob per class, centres ``sep`` apart along the first axis."""
    g = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for k, n in enumerate(n_per_class):
        centre = torch.zeros(dim, dtype=dtype)
        centre[0] = sep * k
        xs.append(centre + torch.randn(n, dim, generator=g, dtype=dtype) * (0.5 + 0.25 * k))
        ys.append(torch.full((n,), k, dtype=torch.long))
    return torch.cat(xs), torch.cat(ys)


def queries(n=25, dim=3, seed=1, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g, dtype=dtype) * 3.0 + torch.tensor([4.0] + [0.0] * (dim - 1), dtype=dtype)


# ------------------------------------------------------------------------------------------------ registry
def test_registry_lists_and_rejects_unknown():
    assert list_densities() == ["gmm", "kde", "knn", "vae"]
    assert get_density_class("kde") is GaussianKDE
    assert get_density_class("gmm") is GaussianMixtureDensity
    assert get_density_class("knn") is KNNGravity
    x, y = blobs()
    with pytest.raises(ConfigError, match="unknown density kind"):
        get_density_class("flow")
    with pytest.raises(ConfigError, match="unknown density kind"):
        fit_density("flow", x, y, 3)
    with pytest.raises(ConfigError, match="unknown density kind"):
        density_from_state("flow", {}, {})
    with pytest.raises(ConfigError, match="unknown parameter"):
        fit_density("kde", x, y, 3, components=3)
    assert GaussianKDE.normalized and GaussianMixtureDensity.normalized and not KNNGravity.normalized


# ---------------------------------------------------------------------------------------------------- KDE
def test_kde_matches_sklearn_kernel_density():
    x, y = blobs()
    q = fit_density("kde", x, y, 3, bandwidth=[0.4, 0.9, 0.25])
    xq = queries()
    for k, h in enumerate([0.4, 0.9, 0.25]):
        ref = KernelDensity(kernel="gaussian", bandwidth=h).fit(x[y == k].numpy()).score_samples(xq.numpy())
        got = q.log_prob(xq, torch.full((len(xq),), k))
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-9, atol=1e-9)


def test_kde_matches_scipy_gaussian_kde_1d():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(80, 1, generator=g, dtype=F64) * 1.7 + 0.3
    h = 0.45
    q = fit_density("kde", x, torch.zeros(80, dtype=torch.long), 1, bandwidth=h)
    # scipy scales the data covariance (ddof=1) by factor^2, so its kernel std is factor * std(x).
    factor = h / float(x.std(unbiased=True))
    ref = gaussian_kde(x[:, 0].numpy(), bw_method=factor)
    xq = torch.linspace(-6, 6, 31, dtype=F64)
    got = q.log_prob(xq, torch.zeros(31, dtype=torch.long))  # (N,) input is read as N samples of dim 1
    np.testing.assert_allclose(got.numpy(), ref.logpdf(xq.numpy()), rtol=1e-9, atol=1e-9)


def test_kde_chunked_equals_unchunked():
    x, y = blobs()
    xq, t = queries(), torch.arange(25) % 3
    whole = fit_density("kde", x, y, 3, bandwidth=0.5).log_prob(xq, t)
    chunked = fit_density("kde", x, y, 3, bandwidth=0.5, chunk_size=7).log_prob(xq, t)
    torch.testing.assert_close(chunked, whole, rtol=1e-12, atol=1e-12)


def test_kde_cv_scores_match_sklearn():
    g = torch.Generator().manual_seed(5)
    pts = torch.randn(47, 2, generator=g, dtype=F64)
    grid = torch.tensor([0.1, 0.3, 0.6, 1.2], dtype=F64)
    splits = kfold_splits(47, 5, class_generator(0, 0))
    assert sorted(torch.cat(splits).tolist()) == list(range(47)) and len(splits) == 5
    ours = cv_log_likelihood(pts, grid, splits)
    ref = []
    for h in grid.tolist():
        total = 0.0
        for held in splits:
            train = np.setdiff1d(np.arange(47), held.numpy())
            total += KernelDensity(bandwidth=h).fit(pts[train].numpy()).score_samples(pts[held].numpy()).sum()
        ref.append(total / 47)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-9)


def test_kde_cv_bandwidth_tracks_the_true_scale():
    g = torch.Generator().manual_seed(7)
    n, dim, scales = 300, 2, (0.5, 2.0)
    x = torch.cat([torch.randn(n, dim, generator=g, dtype=F64) * s for s in scales])
    y = torch.arange(2).repeat_interleave(n)
    q = fit_density("kde", x, y, 2, seed=0)
    assert q.fit_info["bandwidth_source"] == "cv" and q.fit_info["cv_at_grid_edge"] == [False, False]
    for k, s in enumerate(scales):
        # Silverman's rule is near the likelihood-CV optimum for Gaussian data.
        silverman = s * (4.0 / (n * (dim + 2))) ** (1.0 / (dim + 4))
        h = float(q.bandwidth[k])
        grid = default_bandwidth_grid(x[y == k])
        assert 0.5 * silverman < h < 2.0 * silverman
        assert abs(math.log(h / silverman)) < min(
            abs(math.log(grid[0] / silverman)), abs(math.log(grid[-1] / silverman))
        )
    # An explicit grid is used as given.
    q2 = fit_density("kde", x, y, 2, bandwidth_grid=[0.01, 10.0, 0.2, 0.8])
    assert q2.bandwidth.tolist() == [0.2, 0.8]


def test_kde_max_points_is_a_seeded_subsample():
    x, y = blobs((120, 30, 80))
    a = fit_density("kde", x, y, 3, max_points=50, bandwidth=0.5, seed=1)
    b = fit_density("kde", x, y, 3, max_points=50, bandwidth=0.5, seed=1)
    c = fit_density("kde", x, y, 3, max_points=50, bandwidth=0.5, seed=2)
    assert a.offsets.tolist() == [0, 50, 80, 130]
    assert torch.equal(a.points, b.points) and not torch.equal(a.points, c.points)
    # Every stored point is a training point of its class.
    for k in range(3):
        stored = a.points[a.offsets[k] : a.offsets[k + 1]]
        assert (torch.cdist(stored, x[y == k], compute_mode="donot_use_mm_for_euclid_dist").min(1).values == 0).all()


# ---------------------------------------------------------------------------------------------------- GMM
@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_gmm_matches_sklearn_score_samples_with_copied_parameters(covariance):
    x, y = blobs((80, 70))
    fits = [GaussianMixture(3, covariance_type=covariance, random_state=0).fit(x[y == k].numpy()) for k in range(2)]
    q = GaussianMixtureDensity(
        torch.log(torch.tensor(np.stack([f.weights_ for f in fits]))),
        torch.tensor(np.stack([f.means_ for f in fits])),
        torch.tensor(np.stack([f.precisions_cholesky_ for f in fits])),
        covariance=covariance,
    )
    xq = queries()
    t = torch.arange(25) % 2
    ref = np.where(t.numpy() == 0, fits[0].score_samples(xq.numpy()), fits[1].score_samples(xq.numpy()))
    np.testing.assert_allclose(q.log_prob(xq, t).numpy(), ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_gmm_em_fit_reaches_sklearn_likelihood(covariance):
    g = torch.Generator().manual_seed(11)
    centres = torch.tensor([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0], [20.0, 20.0], [26.0, 20.0], [20.0, 26.0]], dtype=F64)
    x = torch.cat(
        [c + torch.randn(60, 2, generator=g, dtype=F64) * torch.tensor([0.5, 1.0], dtype=F64) for c in centres]
    )
    y = torch.arange(2).repeat_interleave(180)
    q = fit_density("gmm", x, y, 2, components=3, covariance=covariance, seed=0)
    assert all(q.fit_info["converged"])
    for k in range(2):
        xk = x[y == k]
        ref = GaussianMixture(3, covariance_type=covariance, random_state=0).fit(xk.numpy())
        ours = float(q.log_prob(xk, torch.full((len(xk),), k)).mean())
        assert abs(ours - ref.score(xk.numpy())) < 1e-3
        # Same solution, not just the same likelihood: each component mean sits next to a true centre.
        got_means = q.means[k]
        assert torch.cdist(got_means, centres[3 * k : 3 * k + 3]).min(1).values.max() < 0.5


def test_gmm_reduces_components_for_small_classes():
    x, y = blobs((50, 2, 3))
    q = fit_density("gmm", x, y, 3, components=4, covariance="full", reg_covar=1e-3)
    assert q.fit_info["components_used"] == [4, 2, 3]
    assert torch.isinf(q.log_weights[1, 2:]).all() and torch.isfinite(q.log_weights[1, :2]).all()
    torch.testing.assert_close(q.log_weights.exp().sum(1), torch.ones(3, dtype=F64))
    xq = queries(9)
    out = q.log_prob(xq.requires_grad_(), torch.arange(9) % 3)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(xq.grad).all()


def test_gmm_singular_covariance_is_a_config_error():
    x = torch.zeros(10, 3, dtype=F64)
    x[:, 0] = torch.arange(10, dtype=F64)  # points on a line: rank-1 covariance
    with pytest.raises(ConfigError, match="reg_covar"):
        fit_density("gmm", x, torch.zeros(10, dtype=torch.long), 1, reg_covar=0.0)
    with pytest.raises(ConfigError, match="covariance"):
        fit_density("gmm", x, torch.zeros(10, dtype=torch.long), 1, covariance="spherical")


# ---------------------------------------------------------------------------------------------- all kinds
@pytest.mark.parametrize("kind,params", ESTIMATORS)
def test_mixed_targets_equal_per_class_evaluation(kind, params):
    x, y = blobs()
    q = fit_density(kind, x, y, 3, **params)
    xq = queries(30)
    t = torch.randint(0, 3, (30,), generator=torch.Generator().manual_seed(2))
    mixed = q.log_prob(xq, t)
    assert mixed.shape == (30,) and mixed.dtype == F64
    for k in range(3):
        sel = t == k
        alone = q.log_prob(xq[sel], torch.full((int(sel.sum()),), k))
        torch.testing.assert_close(mixed[sel], alone, rtol=1e-12, atol=1e-12)
    # Trailing shape is flattened: (N, 1, 3) reads as (N, 3).
    torch.testing.assert_close(q.log_prob(xq.view(30, 1, 3), t), mixed, rtol=0, atol=0)
    assert q.log_prob(xq[:0], t[:0]).shape == (0,)


@pytest.mark.parametrize("kind,params", ESTIMATORS)
def test_what_log_prob_keeps_between_calls_follows_its_inputs(kind, params):
    """``log_prob`` keeps what it derives from the targets (range check, class counts, order) and from the fitted
    points (the kde's padded copy per dtype) between calls: other targets, the same target tensor edited in place,
    or another dtype must give what an estimator that has kept nothing gives."""
    x, y = blobs()
    q = fit_density(kind, x, y, 3, **params)
    xq = queries(30)

    def fresh(xx, tt):
        tensors, meta = q.state()
        return density_from_state(kind, tensors, meta).log_prob(xx, tt.clone())

    t = torch.arange(30) % 3
    assert torch.equal(q.log_prob(xq, t), fresh(xq, t))
    t.copy_(torch.where(torch.arange(30) < 20, 0, (t + 1) % 3))  # in place: other classes, other class counts
    assert torch.equal(q.log_prob(xq, t), fresh(xq, t))
    t2 = (torch.arange(30) + 2) % 3  # another tensor, same shape
    assert torch.equal(q.log_prob(xq, t2), fresh(xq, t2))
    for dtype in (torch.float32, F64, torch.float32):
        assert torch.equal(q.log_prob(xq.to(dtype), t2), fresh(xq.to(dtype), t2)), dtype
    t2[0] = 3  # in place, out of range: checked again
    with pytest.raises(ConfigError, match="targets must lie"):
        q.log_prob(xq, t2)


@pytest.mark.parametrize("kind,params", ESTIMATORS)
def test_gradient_matches_finite_differences(kind, params):
    x, y = blobs()
    q = fit_density(kind, x, y, 3, **params)
    xq = queries(6).requires_grad_()
    t = torch.tensor([0, 1, 2, 2, 1, 0])
    assert torch.autograd.gradcheck(lambda z: q.log_prob(z, t), (xq,), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind,params", ESTIMATORS)
def test_state_round_trip_is_exact(kind, params):
    x, y = blobs(dtype=torch.float32)
    q = fit_density(kind, x, y, 3, **params)
    tensors, meta = q.state()
    assert meta["kind"] == kind and meta["num_classes"] == 3 and meta["dim"] == 3
    # What an HDF5 writer would do: numpy arrays and a JSON string.
    back = density_from_state(kind, {k: v.numpy() for k, v in tensors.items()}, json.loads(json.dumps(meta)))
    assert type(back) is type(q)
    xq, t = queries(20, dtype=torch.float32), torch.arange(20) % 3
    expected = q.log_prob(xq, t)
    assert expected.dtype == torch.float32
    assert torch.equal(back.log_prob(xq, t), expected)
    # Buffers follow .to(); float64 queries are evaluated in float64.
    assert back.to(F64).log_prob(xq.double(), t).dtype == F64
    assert q.log_prob(xq.double(), t).dtype == F64


def test_from_state_rejects_malformed_states():
    x, y = blobs()
    tensors, meta = fit_density("kde", x, y, 3, bandwidth=0.5).state()
    with pytest.raises(ArtifactError, match="lacks tensors"):
        density_from_state("kde", {"points": tensors["points"]}, meta)
    with pytest.raises(ArtifactError, match="kind"):
        density_from_state("gmm", tensors, meta)
    bad = dict(tensors, offsets=torch.tensor([0, 5, 3, 150]))
    with pytest.raises(ArtifactError, match="offsets"):
        density_from_state("kde", bad, meta)
    with pytest.raises(ArtifactError):
        density_from_state("kde", tensors, dict(meta, dim=4))


# ---------------------------------------------------------------------------------------------------- kNN
def test_knn_gravity_gradient_points_toward_target_cloud():
    g = torch.Generator().manual_seed(4)
    x = torch.cat([torch.randn(100, 2, generator=g, dtype=F64), torch.randn(100, 2, generator=g, dtype=F64) + 10])
    y = torch.arange(2).repeat_interleave(100)
    q = fit_density("knn", x, y, 2, k=8)
    assert q.normalized is False and torch.allclose(q.weights[:100].mean(), torch.tensor(1.0, dtype=F64))
    xq = torch.tensor([[2.0, 1.0], [8.0, 9.0], [-3.0, 4.0]], dtype=F64, requires_grad=True)
    t = torch.tensor([1, 0, 1])
    score = q.log_prob(xq, t)
    (grad,) = torch.autograd.grad(score.sum(), xq)
    centres = torch.stack([x[y == k].mean(0) for k in range(2)])
    toward = centres[t] - xq.detach()
    cos = torch.nn.functional.cosine_similarity(grad, toward, dim=1)
    assert (cos > 0.9).all()
    # A small step along the gradient raises the score and the score is highest inside the cloud.
    assert (q.log_prob(xq.detach() + 0.05 * grad, t) > score.detach()).all()
    inside = q.log_prob(centres, torch.tensor([0, 1]))
    assert (inside > score.detach().max()).all()


def test_knn_local_density_weights_favour_dense_points():
    g = torch.Generator().manual_seed(8)
    dense = torch.randn(50, 2, generator=g, dtype=F64) * 0.1
    sparse = torch.randn(10, 2, generator=g, dtype=F64) + torch.tensor([3.0, 0.0], dtype=F64)
    q = fit_density("knn", torch.cat([dense, sparse]), torch.zeros(60, dtype=torch.long), 1, k=60, density_k=5)
    assert q.weights[:50].min() > q.weights[50:].max()
    # With every point in the neighbour set the attractor is pulled to the dense blob, not the plain mean.
    centre = q.log_prob(torch.zeros(1, 2, dtype=F64), torch.zeros(1, dtype=torch.long))
    plain_mean = torch.cat([dense, sparse]).mean(0, keepdim=True)
    assert float(centre) > -float((plain_mean**2).sum())


# ------------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kind", ["kde", "gmm", "knn"])
def test_wrong_inputs_raise_config_error(kind):
    x, y = blobs()
    q = fit_density(kind, x, y, 3, **({"bandwidth": 0.5} if kind == "kde" else {}))
    xq = queries(4)
    with pytest.raises(ConfigError, match=r"\[0, 3\)"):
        q.log_prob(xq, torch.tensor([0, 1, 3, 0]))
    with pytest.raises(ConfigError, match=r"\[0, 3\)"):
        q.log_prob(xq, torch.tensor([0, -1, 2, 0]))
    with pytest.raises(ConfigError, match="features"):
        q.log_prob(torch.zeros(4, 5, dtype=F64), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ConfigError, match="shape"):
        q.log_prob(xq, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ConfigError, match="integer"):
        q.log_prob(xq, torch.zeros(4))
    # Fitting: labels out of range, a class with no points, non-finite data.
    with pytest.raises(ConfigError, match="labels"):
        fit_density(kind, x, y, 2)
    with pytest.raises(ConfigError, match="no training points"):
        fit_density(kind, x, y, 4)
    with pytest.raises(ConfigError, match="NaN"):
        fit_density(kind, torch.full_like(x, float("nan")), y, 3)
    with pytest.raises(ConfigError, match="shape"):
        fit_density(kind, x, y[:-1], 3)


def test_kde_rejects_bad_bandwidths():
    x, y = blobs()
    with pytest.raises(ConfigError, match="bandwidth"):
        fit_density("kde", x, y, 3, bandwidth=-1.0)
    with pytest.raises(ConfigError, match="bandwidth"):
        fit_density("kde", x, y, 3, bandwidth=[0.5, 0.5])
    with pytest.raises(ConfigError, match="bandwidth_grid"):
        fit_density("kde", x, y, 3, bandwidth_grid=[0.5, 0.0])
    with pytest.raises(ConfigError, match="bandwidth_grid"):
        fit_density("kde", x, y, 3, bandwidth_grid=["wide"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind,params", ESTIMATORS)
def test_buffers_move_to_cuda(kind, params):
    x, y = blobs()
    q = fit_density(kind, x, y, 3, **params)
    xq, t = queries(), torch.arange(25) % 3
    on_gpu = q.to("cuda").log_prob(xq.cuda(), t.cuda())
    torch.testing.assert_close(on_gpu.cpu(), q.cpu().log_prob(xq, t), rtol=1e-9, atol=1e-9)


def test_fit_detaches_inputs_and_accepts_tensor_bandwidth():
    x, y = blobs()
    q = fit_density("kde", x.clone().requires_grad_(), y, 3, bandwidth=torch.tensor([0.3, 0.4, 0.5]))
    assert not q.points.requires_grad and q.bandwidth.tolist() == pytest.approx([0.3, 0.4, 0.5])
