"""Binary scalar-output models (one logit, labels -1/+1): the two-logit view, the losses, every solver, training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lfpcli.models.outputs import class_logits, predict_labels, signed_labels
from lfpcli.solvers import get_solver, list_solvers, make_config
from lfpcli.solvers.losses import LOSSES, get_loss, margin

F64 = torch.float64


def test_two_logit_view_makes_the_losses_the_binary_ones():
    z = torch.linspace(-6, 6, 25, dtype=F64)
    for t_val in (0, 1):
        t = torch.full_like(z, t_val, dtype=torch.long)
        s = signed_labels(t).to(F64)
        logits = class_logits(z[:, None])
        torch.testing.assert_close(get_loss("logistic")(logits, t), torch.log1p(torch.exp(-s * z)))
        torch.testing.assert_close(get_loss("ce")(logits, t), torch.log1p(torch.exp(-s * z)))
        torch.testing.assert_close(get_loss("exponential")(logits, t), torch.exp(-s * z))
        torch.testing.assert_close(margin(logits, t, kappa=0.3), (0.3 - s * z).clamp_min(0))
    # the sign rule, with z = 0 going to class 0 (-1); (N,) and (N, 1) outputs read the same
    z = torch.tensor([-2.0, -1e-6, 0.0, 1e-6, 3.0])
    assert predict_labels(z).tolist() == [0, 0, 0, 1, 1]
    assert predict_labels(z[:, None]).tolist() == [0, 0, 0, 1, 1]


def test_multiclass_logits_pass_through_and_exponential_loss_is_the_sum_over_other_classes():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 4, generator=g, dtype=F64)
    assert class_logits(logits) is logits
    t = torch.randint(0, 4, (7,), generator=g)
    want = torch.stack(
        [sum(torch.exp(logits[i, j] - logits[i, t[i]]) for j in range(4) if j != t[i]) for i in range(7)]
    )
    torch.testing.assert_close(LOSSES["exponential"](logits, t), want)
    with pytest.raises(ValueError):
        class_logits(torch.zeros(2, 3, 4))


class Scalar(nn.Module):
    """z = w . x + b on flattened pixels, one output."""

    def __init__(self, w, b):
        super().__init__()
        self.lin = nn.Linear(w.numel(), 1)
        with torch.no_grad():
            self.lin.weight.copy_(w.flatten()[None])
            self.lin.bias.fill_(b)

    def forward(self, x):
        return self.lin(x.flatten(1))


class TwoLogit(nn.Module):
    """The same classifier written as two logits (-z/2, z/2)."""

    def __init__(self, scalar: Scalar):
        super().__init__()
        self.s = scalar

    def forward(self, x):
        z = self.s(x)
        return torch.cat([-z / 2, z / 2], 1)


def _problem(n=12, shape=(1, 6, 6)):
    g = torch.Generator().manual_seed(3)
    w = torch.randn(shape, generator=g)
    x = torch.rand(n, *shape, generator=g)
    model = Scalar(w, -float((w.flatten() * 0.5).sum()))  # the boundary passes through the middle grey image
    with torch.no_grad():
        y = predict_labels(model(x))
    return model, x, 1 - y  # every sample is pushed across the boundary


SMALL = {
    "pgd-l2": {"eps": 3.0, "steps": 20},
    "pgd-linf": {"eps": 0.3, "steps": 20},
    "pgd-l0": {"max_changed": 36, "steps": 36},
    "cfe-l2": {"lam": 0.01, "step_size": 0.05, "steps": 100},
    "pcfe-l0": {"steps": 40, "search_steps": 4, "beta": 0.001},
}


@pytest.mark.parametrize("method", list_solvers())
def test_every_solver_handles_a_scalar_model_exactly_like_its_two_logit_twin(method):
    """A one-logit model and the same classifier written as two logits must give the same counterfactuals;
    on this linear model every method also reaches every target."""
    assert set(SMALL) == set(list_solvers())
    model, x, t = _problem()
    spec = get_solver(method)
    cfg = make_config(method, SMALL[method])
    a = spec.fn(model, x, t, cfg, generator=torch.Generator().manual_seed(1))
    b = spec.fn(TwoLogit(model), x, t, cfg, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a.x, b.x)
    assert torch.equal(a.success, b.success)
    assert a.success.all(), f"{method}: {a.success.float().mean():.2f}"
    assert ((a.x >= 0) & (a.x <= 1)).all()
    with torch.no_grad():
        assert torch.equal(predict_labels(model(a.x)), t)


@pytest.mark.parametrize("loss", ["logistic", "exponential"])
def test_solvers_take_the_binary_losses(loss):
    model, x, t = _problem()
    for method in ("pgd-l2", "cfe-l2", "pcfe-l0"):
        cfg = make_config(method, {**SMALL[method], "loss": loss})
        res = get_solver(method).fn(model, x, t, cfg, generator=torch.Generator().manual_seed(1))
        assert res.success.float().mean() >= 0.9, (method, loss)
        assert torch.isfinite(res.loss).all()


def test_scalar_training_learns_a_separable_task_with_either_loss():
    from lfpcli.data.dataset import Split
    from lfpcli.models import build_model
    from lfpcli.training import TrainConfig, train_model

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (200,), generator=g)
    x = torch.rand(200, 1, 4, 4, generator=g) * 0.4 + y.view(-1, 1, 1, 1) * 0.5  # bright = class 1
    sp = Split(x, y, torch.zeros(200, dtype=torch.long), torch.arange(200))
    for loss in ("logistic", "exponential"):
        torch.manual_seed(0)
        net = build_model("mlp", 2, (1, 4, 4), [0.5], [0.25], output="scalar", hidden=8, depth=1)
        assert net(x[:3]).shape == (3, 1)
        cfg = TrainConfig(epochs=15, lr=1e-2, batch_size=32, loss=loss)
        res = train_model(net, sp, cfg, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))
        assert res.history[-1]["train_accuracy"] >= 0.95, loss
        assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]


def test_scalar_output_needs_two_classes():
    from lfpcli.errors import ConfigError
    from lfpcli.models import build_model

    with pytest.raises(ConfigError, match="two-class"):
        build_model("mlp", 10, (1, 8, 8), [0.5], [0.25], output="scalar")
    with pytest.raises(ConfigError, match="--output"):
        build_model("mlp", 2, (1, 8, 8), [0.5], [0.25], output="sigmoid")
