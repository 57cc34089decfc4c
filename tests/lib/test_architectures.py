"""The paper's architectures: Kumano et al.'s MNIST/FMNIST ConvNet (``kumano-cnn``), WideResNet-28-10 for CIFAR-10
(``wrn-28-10``) and torchvision's ResNet-50 (``resnet50``).

Parameter counts are checked against ``reference/datasets.md`` section 6 (counted there from the layer tables,
independently of this code); the full-size networks are built on the ``meta`` device (shapes only, no memory, no
time). Shapes per stage follow the reference tables; ``features``/``head`` compose to the forward pass.
"""

from __future__ import annotations

import pytest
import torch

from lfpcli.errors import ConfigError, InputError
from lfpcli.models import build_model, list_models
from lfpcli.models.nets import missing_weights_message


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _net(arch, k, shape, **args):
    return build_model(arch, k, shape, [0.5] * shape[0], [0.5] * shape[0], **args)


def test_registered():
    assert {"kumano-cnn", "wrn-28-10", "resnet50"} <= set(list_models())


@pytest.mark.parametrize(
    "arch,k,shape,args,expected",
    [
        ("kumano-cnn", 10, (1, 28, 28), {}, 1_054_122),  # datasets.md 6.3
        ("wrn-28-10", 10, (3, 32, 32), {}, 36_489_290),  # 6.2, Kumano's conv biases
        ("wrn-28-10", 10, (3, 32, 32), {"conv_bias": False}, 36_479_194),  # 6.2, the WRN paper's "36.5M"
        ("resnet50", 1000, (3, 224, 224), {"small_input": False}, 25_557_032),  # 6.1, torchvision's
    ],
)
def test_parameter_counts_match_the_reference(arch, k, shape, args, expected):
    with torch.device("meta"):
        model = _net(arch, k, shape, **args)
    assert _count(model) == expected


def test_kumano_cnn_stages_and_split():
    model = _net("kumano-cnn", 10, (1, 28, 28)).eval()
    net = model.net
    x = torch.rand(3, 1, 28, 28)
    shapes = {}
    hooks = [
        getattr(net, n).register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, tuple(o.shape[1:])))
        for n in ("conv1", "conv2", "conv3", "conv4", "conv5")
    ]
    with torch.no_grad():
        out, feats = model(x), model.features(x)
    for h in hooks:
        h.remove()
    assert shapes == {
        "conv1": (16, 13, 13),
        "conv2": (128, 11, 11),
        "conv3": (128, 11, 11),
        "conv4": (256, 9, 9),
        "conv5": (256, 9, 9),
    }
    assert feats.shape == (3, 256) and out.shape == (3, 10)
    assert torch.allclose(model.head(feats), out)
    # no BatchNorm, no dropout (section 6.3); the residual blocks add their input
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.Dropout)) for m in net.modules())
    blk = net.conv3
    h = torch.rand(2, 128, 11, 11)
    assert torch.allclose(blk(h), h + torch.relu(blk.conv(h)))


def test_kumano_cnn_state_dict_names_and_sizes():
    model = _net("kumano-cnn", 10, (1, 28, 28))
    names = set(model.net.state_dict())
    assert {
        "conv1.weight",
        "conv2.weight",
        "conv3.conv.weight",
        "conv4.weight",
        "conv5.conv.weight",
        "linear.weight",
    } <= names
    with pytest.raises(ConfigError, match="11x11"):
        _net("kumano-cnn", 10, (1, 8, 8))


def test_wrn_stages_split_and_kumano_names():
    # a narrow, shallow WRN (same code path: depth 10 = one block per group) keeps the test fast
    model = _net("wrn-28-10", 10, (3, 32, 32), depth=10, width=2).eval()
    net = model.net
    shapes = {}
    hooks = [
        getattr(net, n).register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, tuple(o.shape[1:])))
        for n in ("conv1", "layer1", "layer2", "layer3")
    ]
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out, feats = model(x), model.features(x)
    for h in hooks:
        h.remove()
    assert shapes == {"conv1": (16, 32, 32), "layer1": (32, 32, 32), "layer2": (64, 16, 16), "layer3": (128, 8, 8)}
    assert feats.shape == (2, 128) and out.shape == (2, 10)
    assert torch.allclose(model.head(feats), out)
    assert net.bn1.momentum == 0.9 and net.layer1[0].dropout.p == 0.3
    # Kumano's variant: the stride is on the second conv and the 1x1 shortcut, convolutions have biases
    first = net.layer2[0]
    assert first.conv1.stride == (1, 1) and first.conv2.stride == (2, 2) and first.shortcut[0].stride == (2, 2)
    assert first.conv1.bias is not None
    names = set(net.state_dict())
    assert {
        "conv1.weight",
        "layer1.0.bn1.weight",
        "layer1.0.conv2.bias",
        "layer2.0.shortcut.0.weight",
        "bn1.running_var",
        "linear.weight",
    } <= names


def test_wrn_full_size_block_counts():
    with torch.device("meta"):
        net = _net("wrn-28-10", 10, (3, 32, 32)).net
    assert [len(g) for g in (net.layer1, net.layer2, net.layer3)] == [4, 4, 4]
    assert net.layer3[0].conv2.out_channels == 640 and net.linear.in_features == 640


@pytest.mark.parametrize(
    "args,word", [({"depth": 27}, r"6n \+ 4"), ({"dropout": 1.5}, "dropout"), ({"width": 0}, "width")]
)
def test_wrn_refuses_bad_options(args, word):
    with pytest.raises(ConfigError, match=word):
        _net("wrn-28-10", 10, (3, 32, 32), **args)


def test_wrn_dropout_from_the_command_line_is_a_number():
    from lfpcli.models.registry import parse_arch_args

    assert parse_arch_args("wrn-28-10", {"dropout": "0.1", "depth": "16", "conv_bias": "false"}) == {
        "dropout": 0.1,
        "depth": 16,
        "conv_bias": False,
    }


def test_resnet50_missing_weights_says_how_to_get_them(tmp_path):
    missing = tmp_path / "resnet50-0676ba61.pth"
    with pytest.raises(InputError) as e:
        _net("resnet50", 2, (3, 64, 64), weights=str(missing))
    msg = str(e.value)
    assert "resnet50-0676ba61.pth" in msg and "resnet50-11ad3fa6.pth" in msg
    assert "--weights IMAGENET1K_V1" in msg, "the name form, which lfp fetches into torch's hub cache"
    assert "download.pytorch.org/models" in msg and "--weights" in msg and "\n" not in msg


def test_missing_weights_names_a_copy_in_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / "resnet50-0676ba61.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    assert f"a copy is already at {cached}" in missing_weights_message("nowhere.pth", "resnet50")


def test_plugin_architectures_come_from_entry_points(monkeypatch):
    """Another installed package's architecture (entry point group lfpcli.models) is registered on first use."""
    from importlib import metadata

    from lfpcli.models import registry

    class EP:
        name, value = "plugin-net", "somepkg:build"

        def load(self):
            def build(num_classes, input_shape, *, hidden: int = 4):
                from lfpcli.models.nets import mlp

                return mlp(num_classes, input_shape, hidden=hidden, depth=1)

            return build

    monkeypatch.setattr(
        metadata, "entry_points", lambda group=None: [EP()] if group == registry.ENTRY_POINT_GROUP else []
    )
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    assert "plugin-net" in list_models()
    assert _net("plugin-net", 3, (1, 4, 4), hidden=5)(torch.rand(2, 1, 4, 4)).shape == (2, 3)
