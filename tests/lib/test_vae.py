"""Per-class VAE plausibility (density kind ``vae``): it learns class-specific reconstructions, its architecture
follows the input shape, samples are scored independently by their own class's VAE, and its state round-trips."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from lfpcli.density import PerClassVAE, density_from_state, fit_density, fit_params, get_density_class
from lfpcli.density.vae import default_latent, encoder_sizes
from lfpcli.errors import ArtifactError, ConfigError


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny convolutions: intra-op threads only add sync overhead on a loaded 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits():
    """sklearn digits 0 and 1 as 1x8x8 images in [0, 1], shuffled, split 260 train / rest held out."""
    d = load_digits()
    keep = np.isin(d.target, [0, 1])
    x = torch.tensor(d.images[keep], dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target[keep], dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    return x[:260], y[:260], x[260:], y[260:]


@pytest.fixture(scope="module")
def fitted(digits):
    x, y, _, _ = digits
    return fit_density("vae", x, y, 2, seed=3)  # default hyper-parameters (20 epochs)


def tiny_data(shape=(2, 9, 7), n=24, classes=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *shape, generator=g), torch.arange(classes).repeat(n // classes + 1)[:n]


def reference_score(q: PerClassVAE, x: torch.Tensor, k: int) -> torch.Tensor:
    """-||x - decoder_k(mu_k(x))||^2, one sample at a time, spelled out."""
    vae = q.vaes[k]
    out = []
    for xi in x:
        mu, _ = vae.encode(xi.unsqueeze(0))
        rec = vae.decode(mu)
        out.append(-((xi.unsqueeze(0) - rec) ** 2).sum())
    return torch.stack(out)


# -------------------------------------------------------------------------------------------------- learning
def test_class_vae_reconstructs_its_own_class_better(digits, fitted):
    _, _, xt, yt = digits
    q = fitted
    assert isinstance(q, PerClassVAE) and get_density_class("vae") is PerClassVAE and q.normalized is False
    for k in range(2):
        term = -q.log_prob(xt, torch.full((len(xt),), k))
        own, other = float(term[yt == k].mean()), float(term[yt != k].mean())
        # A VAE that has learnt its class reconstructs it far better than the other digit.
        assert own < 0.6 * other, (k, own, other)
    assert all(math.isfinite(v) for v in q.fit_info["final_loss"])
    # The score is the sum of squared errors over all pixels, so it is >= 0 and at most D (pixels in [0, 1]).
    term = -q.log_prob(xt, yt)
    assert bool((term >= 0).all() and (term <= q.dim).all())


# ---------------------------------------------------------------------------------------------- architecture
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 28, 28), (3, 30, 22), (2, 7, 9), (1, 1, 1), (1, 15, 64)])
def test_shapes_round_trip_and_encoder_stops_at_seven(shape):
    q = PerClassVAE(2, shape)
    sizes = encoder_sizes(shape[1], shape[2])
    assert max(sizes[-1]) <= 7 and len(sizes) >= 2 and len(q.widths) == len(sizes) - 1
    if len(sizes) > 2:
        assert max(sizes[-2]) > 7  # no layer more than needed
    assert q.latent == default_latent(shape) == min(512, max(16, math.prod(shape) // 64))
    x = torch.rand(5, *shape)
    vae = q.vaes[0]
    feat = vae.encoder[:-1](x)  # up to the flatten
    assert tuple(feat.shape[2:]) == sizes[-1]
    mu, logvar = vae.encode(x)
    assert mu.shape == logvar.shape == (5, q.latent)
    rec = vae.reconstruct(x)
    assert rec.shape == x.shape and bool(((rec > 0) & (rec < 1)).all())
    t = torch.tensor([0, 1, 1, 0, 1])
    assert q.log_prob(x, t).shape == (5,) and q.log_prob(x.flatten(1), t).shape == (5,)


def test_224_has_five_stride_two_layers_and_latent_512():
    q = PerClassVAE(1, (3, 224, 224))
    convs = [m for m in q.vaes[0].encoder if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 5 and all(m.stride == (2, 2) for m in convs)
    assert q.widths == [32, 64, 128, 256, 256] and q.latent == 512
    assert encoder_sizes(224, 224)[-1] == (7, 7)
    with torch.no_grad():
        assert q.vaes[0].reconstruct(torch.rand(1, 3, 224, 224)).shape == (1, 3, 224, 224)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in q.modules())


# ---------------------------------------------------------------------------------------- evaluation
def test_mixed_batch_equals_samples_alone_and_gradients_flow():
    torch.manual_seed(0)
    x, _ = tiny_data((2, 9, 7), n=7)
    q = PerClassVAE(3, (2, 9, 7))  # untrained: independence and routing do not need a fit
    t = torch.tensor([2, 0, 1, 1, 0, 2, 2])
    batch = q.log_prob(x, t)
    alone = torch.cat([q.log_prob(x[i : i + 1], t[i : i + 1]) for i in range(len(t))])
    torch.testing.assert_close(batch, alone, rtol=1e-5, atol=1e-5)
    for k in range(3):
        torch.testing.assert_close(batch[t == k], reference_score(q, x[t == k], k), rtol=1e-5, atol=1e-5)
    # The classes' VAEs differ, so routing a sample to another class changes its score.
    assert not torch.allclose(batch, q.log_prob(x, (t + 1) % 3))
    # Deterministic: the encoder mean, never a sample.
    torch.testing.assert_close(q.log_prob(x, t), batch, rtol=0, atol=0)

    xg = x.flatten(1).clone().requires_grad_()
    q.log_prob(xg, t).sum().backward()
    assert xg.grad is not None and bool(torch.isfinite(xg.grad).all()) and float(xg.grad.abs().sum()) > 0
    # Frozen modules: the solver's backward pass touches x only.
    assert all(p.grad is None and not p.requires_grad for p in q.parameters())
    out64 = q.log_prob(x.double(), t)
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), batch, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------- state
def test_state_round_trip_and_seeded_fit():
    x, y = tiny_data((1, 18, 6), n=20)
    rng_before = torch.get_rng_state()
    q = fit_density("vae", x, y, 2, seed=5, epochs=2, batch_size=8, latent=4, width=4)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is not consumed
    tensors, params = q.state()
    json.dumps(params)
    assert params["kind"] == "vae" and params["input_shape"] == [1, 18, 6] and params["latent"] == 4
    assert params["widths"] == [4, 8] and len(params["fit_info"]["final_loss"]) == 2
    assert all("/" not in k and v.device.type == "cpu" and v.dtype == torch.float32 for k, v in tensors.items())
    xq, t = tiny_data((1, 18, 6), n=9, seed=1)
    want = q.log_prob(xq, t)
    again = density_from_state("vae", tensors, params)
    torch.testing.assert_close(again.log_prob(xq, t), want, rtol=1e-6, atol=1e-6)
    # As an HDF5 reader hands them back: numpy arrays.
    from_np = density_from_state("vae", {k: v.numpy() for k, v in tensors.items()}, json.loads(json.dumps(params)))
    torch.testing.assert_close(from_np.log_prob(xq, t), want, rtol=1e-6, atol=1e-6)

    same = fit_density("vae", x, y, 2, seed=5, epochs=2, batch_size=8, latent=4, width=4)
    torch.testing.assert_close(same.log_prob(xq, t), want, rtol=0, atol=0)
    other = fit_density("vae", x, y, 2, seed=6, epochs=2, batch_size=8, latent=4, width=4)
    assert not torch.allclose(other.log_prob(xq, t), want)
    # Flat x with input_shape is the same fit as the images.
    flat = fit_density(
        "vae", x.flatten(1), y, 2, seed=5, epochs=2, batch_size=8, latent=4, width=4, input_shape=(1, 18, 6)
    )
    torch.testing.assert_close(flat.log_prob(xq, t), want, rtol=0, atol=0)


def test_damaged_state_raises_artifact_error():
    tensors, params = PerClassVAE(2, (1, 8, 8), latent=4, widths=[3]).state()
    name = next(iter(tensors))
    with pytest.raises(ArtifactError, match="lacks tensors"):
        density_from_state("vae", {k: v for k, v in tensors.items() if k != name}, params)
    with pytest.raises(ArtifactError, match="shape"):
        density_from_state("vae", {**tensors, name: torch.zeros(3)}, params)
    with pytest.raises(ArtifactError, match="unexpected"):
        density_from_state("vae", {**tensors, "vaes.2.to_mu.weight": torch.zeros(3)}, params)
    with pytest.raises(ArtifactError, match="NaN"):
        density_from_state("vae", {**tensors, name: torch.full_like(tensors[name], math.nan)}, params)
    with pytest.raises(ArtifactError, match="latent"):
        density_from_state("vae", tensors, {k: v for k, v in params.items() if k != "latent"})
    with pytest.raises(ArtifactError):
        density_from_state("vae", tensors, {**params, "latent": 5})
    with pytest.raises(ArtifactError):
        density_from_state("vae", tensors, {**params, "input_shape": [1, 8]})
    with pytest.raises(ArtifactError):
        density_from_state("vae", tensors, {**params, "dim": 65})
    with pytest.raises(ArtifactError, match="kind"):
        density_from_state("vae", tensors, {**params, "kind": "kde"})


# ------------------------------------------------------------------------------------ parameters, progress
def test_fit_parameters_and_input_errors():
    names = fit_params("vae")
    assert {"input_shape", "latent", "epochs", "lr", "batch_size", "kl_weight", "width"} <= set(names)
    assert not {"seed", "device", "progress"} & set(names)
    x, y = tiny_data((1, 6, 6), n=8)
    with pytest.raises(ConfigError, match="unknown parameter"):
        fit_density("vae", x, y, 2, components=3)
    with pytest.raises(ConfigError, match="input_shape"):
        fit_density("vae", x.flatten(1), y, 2, epochs=1)
    with pytest.raises(ConfigError, match="input_shape"):
        fit_density("vae", x.flatten(1), y, 2, epochs=1, input_shape=(1, 6, 5))
    with pytest.raises(ConfigError, match="input_shape"):
        fit_density("vae", x.flatten(1), y, 2, epochs=1, input_shape=(36,))
    with pytest.raises(ConfigError, match="no training points"):
        fit_density("vae", x, y, 3, epochs=1)
    with pytest.raises(ConfigError, match="NaN"):
        fit_density("vae", torch.where(x > 0.5, math.nan, x), y, 2, epochs=1)
    for bad in ({"epochs": 0}, {"lr": -1.0}, {"kl_weight": -0.1}, {"batch_size": 0}, {"latent": 0}):
        with pytest.raises(ConfigError):
            fit_density("vae", x, y, 2, **bad)
    with pytest.raises(ConfigError, match="device"):
        PerClassVAE.fit(x, y, 2, epochs=1, device="no-such-device")
    q = PerClassVAE(2, (1, 6, 6))
    with pytest.raises(ConfigError, match="features"):
        q.log_prob(torch.rand(2, 37), torch.tensor([0, 1]))


def test_progress_reports_each_epoch_per_class():
    x, y = tiny_data((1, 6, 6), n=12)
    calls = []

    def record(stage, done, total, **status):
        calls.append((stage, done, total, status))

    PerClassVAE.fit(x, y, 2, epochs=3, batch_size=4, progress=record)
    for k in range(2):
        mine = [c for c in calls if c[0] == f"vae class {k}"]
        assert [c[1] for c in mine] == [1, 2, 3] and all(c[2] == 3 for c in mine)
        assert all(math.isfinite(c[3]["loss"]) for c in mine)
    assert [c[0] for c in calls] == ["vae class 0"] * 3 + ["vae class 1"] * 3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fit_on_cuda_and_move():
    x, y = tiny_data((1, 8, 8), n=16)
    q = PerClassVAE.fit(x, y, 2, epochs=2, device="cuda")
    assert next(q.parameters()).device.type == "cuda"
    xq, t = tiny_data((1, 8, 8), n=6, seed=2)
    on_gpu = q.log_prob(xq.cuda(), t.cuda())
    torch.testing.assert_close(on_gpu.cpu(), q.cpu().log_prob(xq, t), rtol=1e-5, atol=1e-5)
