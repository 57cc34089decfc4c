"""CUDA: every solver and density runs device-resident and agrees with the CPU (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lfpcli.density import fit_density
from lfpcli.solvers import get_solver, list_solvers, make_config

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

PARAMS = {
    "pgd-l2": {"eps": 2.0, "steps": 20},
    "pgd-linf": {"eps": 0.2, "steps": 20},
    "pgd-l0": {"steps": 40},
    "cfe-l2": {"steps": 60, "step_size": 0.05},
    "pcfe-l0": {"steps": 30, "search_steps": 3},
}


def _problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, 3)).double()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(32, 1, 8, 8, generator=g, dtype=torch.float64)
    t = torch.randint(0, 3, (32,), generator=g)
    return model, x, t


@pytest.mark.parametrize("method", list_solvers())
def test_solver_on_cuda_matches_cpu(method):
    model, x, t = _problem()
    cfg = make_config(method, PARAMS[method])
    fn = get_solver(method).fn
    cpu = fn(model, x, t, cfg, generator=torch.Generator().manual_seed(2))
    gpu = fn(model.cuda(), x.cuda(), t.cuda(), cfg, generator=torch.Generator().manual_seed(2))
    assert gpu.x.is_cuda and gpu.success.is_cuda
    assert gpu.x.min() >= 0 and gpu.x.max() <= 1
    # float64 keeps the two devices within rounding of each other; l0 decisions may flip on a rare tie
    same = (gpu.x.cpu() - cpu.x).flatten(1).abs().amax(1) < 1e-6
    assert same.float().mean() >= 0.9, method
    assert abs(gpu.success.float().mean().item() - cpu.success.float().mean().item()) <= 0.1


@pytest.mark.parametrize("kind", ["kde", "gmm", "knn"])
def test_density_on_cuda_matches_cpu(kind):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (120,), generator=g)
    q = fit_density(kind, x, y, 3)
    xq = torch.randn(40, 5, generator=g, dtype=torch.float64)
    tq = torch.randint(0, 3, (40,), generator=g)
    want = q.log_prob(xq, tq)
    got = q.to("cuda").log_prob(xq.cuda(), tq.cuda())
    torch.testing.assert_close(got.cpu(), want, rtol=1e-6, atol=1e-6)


def test_pcfe_with_a_density_stays_on_the_device():
    model, x, t = _problem()
    model, x, t = model.cuda(), x.cuda(), t.cuda()
    q = fit_density("kde", torch.rand(90, 64, dtype=torch.float64), torch.arange(90) % 3, 3).to("cuda")
    cfg = make_config("pcfe-l0", {**PARAMS["pcfe-l0"], "tau": q.plausibility_weight()})
    r = get_solver("pcfe-l0").fn(model, x, t, cfg, plausibility=lambda xp, tt: q.log_prob(xp.flatten(1), tt))
    assert r.x.is_cuda and r.extras["plausibility"].is_cuda


@pytest.mark.parametrize("method", list_solvers())
def test_no_host_sync_inside_a_solvers_iterations(method):
    """Under CUDA's sync debug mode every host-device synchronisation warns; a solver may sync a fixed number of
    times (set-up checks, pcfe-l0's skip decision), never once per iteration: the count must not grow with steps."""
    import warnings

    model, x, t = _problem()
    model, x, t = model.float().cuda(), x.float().cuda(), t.cuda()
    fn = get_solver(method).fn

    def syncs(steps: int) -> int:
        cfg = make_config(method, {**PARAMS[method], "steps": steps})
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                fn(model, x, t, cfg, generator=torch.Generator().manual_seed(2))
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message).lower() for w in caught)

    assert syncs(5) == syncs(25), f"{method}: host syncs grow with the number of iterations"


def test_saliency_picks_a_batch_that_fits_on_cuda(tmp_path):
    """Without --batch-size saliency on CUDA probes the device and records what it chose."""
    import lfpcli
    from lfpcli.artifacts.saliency import read_saliency
    from lfpcli.commands import train

    train(
        tmp_path / "m.pt",
        data="spurious-digits:size=16,train_copies=1",
        arch="small-cnn",
        epochs=1,
        seed=0,
        device="cpu",
    )
    lfpcli.saliency(tmp_path / "s.h5", models=[tmp_path / "m.pt"], n=40, device="cuda")
    _, _, record = read_saliency(tmp_path / "s.h5")
    assert record["params"]["batch_size_from"] == "largest that fits"
    # a 16x16 small-cnn's pass over the whole test split fits any GPU, so the probe stops at the split's size
    from lfpcli.artifacts.dataspec import resolve

    assert record["params"]["batch_size"] == len(resolve("spurious-digits:size=16,train_copies=1").splits["test"].y)
