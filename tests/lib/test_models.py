"""Model registry: pixel-space normalisation inside the model, features/head split, local pretrained weights."""

from __future__ import annotations

import pytest
import torch
import torchvision

from lfpcli.errors import ConfigError, InputError
from lfpcli.models import build_model, list_models


@pytest.mark.parametrize("arch", ["small-cnn", "mlp", "resnet18"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 28, 28)])
def test_shapes_and_normalisation_inside(arch, shape):
    m = build_model(arch, 3, shape, [0.5] * shape[0], [0.25] * shape[0]).eval()
    x = torch.rand(2, *shape)
    assert m(x).shape == (2, 3)
    with torch.no_grad():
        assert torch.allclose(m(x), m.net.head(m.net.features((x - 0.5) / 0.25)), atol=1e-6)
    assert m.features(x).ndim == 2


def test_pretrained_weights_come_from_a_local_file(tmp_path):
    torch.manual_seed(0)
    ref = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18-local.pth"
    torch.save(ref.state_dict(), path)
    m = build_model("resnet18", 2, (3, 64, 64), [0.5] * 3, [0.25] * 3, weights=str(path), small_input=False)
    assert torch.equal(m.net.features.layer3[0].conv1.weight, ref.layer3[0].conv1.weight)
    assert torch.equal(m.net.features.conv1.weight, ref.conv1.weight)
    assert m.net.head.out_features == 2
    with pytest.raises(InputError, match="does not exist"):
        build_model("resnet18", 2, (3, 64, 64), [0.5] * 3, [0.25] * 3, weights=str(tmp_path / "missing.pth"))


def test_registry_and_bad_arguments():
    assert {"small-cnn", "mlp", "resnet18", "resnet50"} <= set(list_models())
    with pytest.raises(ConfigError, match="unknown architecture"):
        build_model("vgg", 2, (1, 8, 8), [0.5], [0.25])
    with pytest.raises(ConfigError, match="no option"):
        build_model("mlp", 2, (1, 8, 8), [0.5], [0.25], width=3)
