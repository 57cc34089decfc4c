"""``--weights NAME``: torchvision's weights names resolve through its weights API into torch's hub cache, here a
pre-seeded ``$TORCH_HOME`` holding a real (randomly initialised) state dict under torchvision's file name;
``$LFP_MIRROR`` points at a port where nothing listens, so any attempt to fetch fails loudly instead of reaching
the internet. The name and the file's hash are recorded in the checkpoint's ``init``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
import torchvision
from clirun import lfp
from httpserve import refused_url, serve
from test_errors import err_assert_one_line, err_snapshot

from lfpcli.models.pretrained import resolve_weights


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """An empty torch hub cache (``$TORCH_HOME``) and no network: the checkpoints folder to seed."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("LFP_MIRROR", refused_url())
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "resnet18-f37072fd.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def _seed(hub: Path, src: Path) -> Path:
    hub.mkdir(parents=True, exist_ok=True)
    (hub / src.name).write_bytes(src.read_bytes())
    return hub / src.name


def test_train_from_a_weights_name_records_the_name_and_the_file_hash(hub, resnet18_file, tmp_path, capsys):
    cached = _seed(hub, resnet18_file)
    out = tmp_path / "m.pt"
    code, _, err = lfp(
        "train",
        "--data",
        "digits",
        "--arch",
        "resnet18",
        "--weights",
        "IMAGENET1K_V1",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        out,
        capsys=capsys,
    )
    assert code == 0, err
    meta = torch.load(out, weights_only=True)["meta"]
    init = meta["init"]
    assert init["type"] == "pretrained" and init["path"] == str(cached)
    assert init["sha256"] == hashlib.sha256(cached.read_bytes()).hexdigest()
    assert init["pretrained"]["name"] == "IMAGENET1K_V1"
    assert init["pretrained"]["torchvision"] == "ResNet18_Weights.IMAGENET1K_V1"
    assert meta["params"]["weights"] == "IMAGENET1K_V1"
    assert any(p["role"] == "weights" and p["sha256"] == init["sha256"] for p in meta["parents"])


def test_every_name_torchvision_lists_resolves_to_its_cached_file(hub, resnet18_file):
    cached = _seed(hub, resnet18_file)
    for given in ("IMAGENET1K_V1", "DEFAULT", "ResNet18_Weights.IMAGENET1K_V1"):
        path, prov = resolve_weights(given, "resnet18")
        assert path == str(cached) and prov["name"] == "IMAGENET1K_V1" and prov["given"] == given
    # resnet50: V1 (the paper's) and V2 (= DEFAULT), each its own file; resolving does not read the file
    hub.joinpath("resnet50-0676ba61.pth").write_bytes(b"")
    hub.joinpath("resnet50-11ad3fa6.pth").write_bytes(b"")
    assert resolve_weights("IMAGENET1K_V1", "resnet50")[0] == str(hub / "resnet50-0676ba61.pth")
    assert resolve_weights("DEFAULT", "resnet50")[0] == str(hub / "resnet50-11ad3fa6.pth")


def test_a_weights_file_path_works_as_before_and_is_identified(hub, resnet18_file):
    path, prov = resolve_weights(str(resnet18_file), "resnet18")
    assert path == str(resnet18_file) and prov["name"] == "IMAGENET1K_V1"
    other = resnet18_file.parent / "mine.pth"
    other.write_bytes(resnet18_file.read_bytes())
    assert resolve_weights(str(other), "resnet18") == (str(other), None)
    assert not hub.exists(), "a file path never touches the hub cache"


def test_a_name_not_in_the_cache_offline_is_one_line_and_leaves_nothing(hub, tmp_path, capsys):
    before = err_snapshot(tmp_path)
    code, out, err = lfp(
        "train",
        "--data",
        "digits",
        "--arch",
        "resnet50",
        "--weights",
        "IMAGENET1K_V1",
        "--epochs",
        "1",
        "--out",
        tmp_path / "m.pt",
        capsys=capsys,
    )
    err_assert_one_line(
        code, out, err, expect=("IMAGENET1K_V1", "resnet50-0676ba61.pth", "refused", str(hub), "--weights FILE")
    )
    assert err_snapshot(tmp_path) == before


def test_a_fetched_file_whose_hash_is_not_its_name_is_removed(hub, tmp_path, capsys, monkeypatch):
    """torch.hub's naming rule: the hex after '-' starts the file's SHA-256; a file that breaks it is refused."""
    with serve({"resnet18-f37072fd.pth": b"not the weights"}) as srv:
        monkeypatch.setenv("LFP_MIRROR", srv.url)
        code, out, err = lfp(
            "train",
            "--data",
            "digits",
            "--arch",
            "resnet18",
            "--weights",
            "IMAGENET1K_V1",
            "--epochs",
            "1",
            "--out",
            tmp_path / "m.pt",
            capsys=capsys,
        )
    err_assert_one_line(code, out, err, expect=("sha256", "f37072fd", "removed"))
    assert srv.requests == ["resnet18-f37072fd.pth"]
    assert not (hub / "resnet18-f37072fd.pth").exists()


@pytest.mark.parametrize(
    "value,expect",
    [("IMAGENET1K_V9", ("IMAGENET1K_V1", "DEFAULT")), ("ResNet50_Weights.IMAGENET1K_V1", ("ResNet18_Weights",))],
)
def test_a_name_torchvision_does_not_list_says_which_it_does(hub, value, expect, tmp_path, capsys):
    code, out, err = lfp(
        "train",
        "--data",
        "digits",
        "--arch",
        "resnet18",
        "--weights",
        value,
        "--epochs",
        "1",
        "--out",
        tmp_path / "m.pt",
        capsys=capsys,
    )
    err_assert_one_line(code, out, err, expect=expect)


def test_a_name_for_an_architecture_without_torchvision_weights(hub, tmp_path, capsys):
    code, out, err = lfp(
        "train",
        "--data",
        "digits",
        "--arch",
        "kumano-cnn",
        "--weights",
        "IMAGENET1K_V1",
        "--epochs",
        "1",
        "--out",
        tmp_path / "m.pt",
        capsys=capsys,
    )
    err_assert_one_line(code, out, err, expect=("kumano-cnn", "resnet50"))


@pytest.mark.slow
def test_resnet50_trains_from_imagenet1k_v1_in_a_seeded_cache(hub, tmp_path, capsys):
    """The issue's "done when" for the paper's network (a 98 MB state dict, hence slow)."""
    hub.mkdir(parents=True)
    cached = hub / "resnet50-0676ba61.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), cached)
    out = tmp_path / "m.pt"
    code, _, err = lfp(
        "train",
        "--data",
        "digits",
        "--arch",
        "resnet50",
        "--weights",
        "IMAGENET1K_V1",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        out,
        capsys=capsys,
    )
    assert code == 0, err
    init = torch.load(out, weights_only=True)["meta"]["init"]
    assert init["pretrained"]["name"] == "IMAGENET1K_V1" and init["path"] == str(cached)
