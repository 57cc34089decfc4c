"""Starting a model from another lfp model (fine-tuning) and group-balanced epochs."""

from __future__ import annotations

import pytest
import torch

from lfpcli.artifacts import load_checkpoint
from lfpcli.data.dataset import Split
from lfpcli.errors import ConfigError
from lfpcli.models import build_model
from lfpcli.models.transfer import transfer_features
from lfpcli.training.loop import epoch_order

PRE = "scenes-pretrain:classes=6,per_class=8"
TARGET = "spurious-scenes:train_size=40,val_per_group=3,test_per_group=3"


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    from lfpcli.commands import train

    path = tmp_path_factory.mktemp("pre") / "pre.pt"
    train(path, data=PRE, arch="small-cnn", arch_args={"width": 8, "hidden": 16}, epochs=1, seed=0, device="cpu")
    return path


def test_every_tensor_but_the_head_comes_from_the_pretrained_model(pretrained, tmp_path):
    from lfpcli.commands import train

    out = tmp_path / "ft.pt"
    # one epoch at a vanishing learning rate: the features must still be the pretrained ones
    train(
        out,
        data=TARGET,
        arch="small-cnn",
        weights=str(pretrained),
        epochs=1,
        lr=1e-12,
        optimizer="sgd",
        momentum=0.0,
        seed=3,
        device="cpu",
    )
    src, src_meta = load_checkpoint(pretrained)
    sd, meta = load_checkpoint(out)
    feats = [k for k in sd if k.startswith("net.features.")]
    assert feats and all(torch.allclose(sd[k], src[k], atol=1e-9) for k in feats)
    assert sd["net.head.weight"].shape == (2, 16) and src["net.head.weight"].shape == (6, 16)
    # the architecture options and the normalisation come with the weights
    assert meta["model"]["arch_args"]["width"] == 8 and meta["model"]["mean"] == src_meta["model"]["mean"]
    init = meta["init"]
    assert init["type"] == "pretrained" and init["format"] == "lfp-checkpoint"
    from lfpcli.artifacts import sha256_file

    assert init["sha256"] == sha256_file(pretrained)
    assert any(p["role"] == "weights" and p["sha256"] == init["sha256"] for p in meta["parents"])


def test_a_checkpoint_of_another_architecture_or_input_shape_is_refused(pretrained, tmp_path):
    from lfpcli.commands import train

    with pytest.raises(ConfigError, match="--arch small-cnn"):
        train(tmp_path / "a.pt", data=TARGET, arch="mlp", weights=str(pretrained), epochs=1, device="cpu")
    with pytest.raises(ConfigError, match="shape"):
        train(
            tmp_path / "b.pt",
            data=TARGET + ",size=48",
            arch="small-cnn",
            weights=str(pretrained),
            epochs=1,
            device="cpu",
        )
    assert not list(tmp_path.glob("*.pt"))


def test_transfer_names_the_first_tensor_that_does_not_fit():
    a = build_model("small-cnn", 2, (3, 32, 32), [0.5] * 3, [0.25] * 3, width=8, hidden=16)
    b = build_model("small-cnn", 5, (3, 32, 32), [0.5] * 3, [0.25] * 3, width=4, hidden=16)
    with pytest.raises(ConfigError, match="net.features.0.weight"):
        transfer_features(a, b.state_dict())
    c = build_model("small-cnn", 5, (3, 32, 32), [0.1] * 3, [0.2] * 3, width=8, hidden=16)
    assert transfer_features(a, c.state_dict()) == len([k for k in a.state_dict() if k.startswith("net.features.")])
    assert float(a.mean[0, 0]) == 0.5  # the normalisation is the new model's own


def _split(groups: list[int]) -> Split:
    g = torch.tensor(groups)
    return Split(torch.zeros(len(g), 1, 2, 2), g // 2, g, torch.arange(len(g)))


def test_group_balanced_epochs_draw_every_group_equally_often():
    sp = _split([0] * 900 + [1] * 50 + [2] * 30 + [3] * 20)
    draws = torch.cat([epoch_order(sp, "groups", torch.Generator().manual_seed(e)) for e in range(20)])
    assert len(draws) == 20 * len(sp)
    share = torch.bincount(sp.group[draws], minlength=4).double() / len(draws)
    assert torch.allclose(share, torch.full((4,), 0.25, dtype=torch.float64), atol=0.01)
    # without balancing: every row once
    once = epoch_order(sp, "none", torch.Generator().manual_seed(0))
    assert sorted(once.tolist()) == list(range(len(sp)))


def test_balance_needs_groups(tmp_path):
    from lfpcli.commands import train

    with pytest.raises(ConfigError, match="--balance groups"):
        train(tmp_path / "m.pt", data="digits", arch="mlp", epochs=1, balance="groups", device="cpu")
    with pytest.raises(ConfigError, match="--balance"):
        train(tmp_path / "m.pt", data="digits", arch="mlp", epochs=1, balance="upsample", device="cpu")
