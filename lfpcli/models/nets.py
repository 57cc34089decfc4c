"""The built-in architectures: ``small-cnn``, ``mlp``, ``resnet18``, ``resnet50``."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from lfpcli.errors import ArtifactError, ConfigError, InputError
from lfpcli.models.registry import register_model


class _Net(nn.Module):
    def __init__(self, features: nn.Module, head: nn.Module):
        super().__init__()
        self.features, self.head = features, head


@register_model("small-cnn")
def small_cnn(num_classes, input_shape, *, width: int = 32, hidden: int = 128) -> nn.Module:
    """Two 3x3 conv blocks (width, 2*width channels; 2x2 max-pool while the map is >= 14 px), then a
    (2*width * h * w) -> hidden -> classes MLP; maps larger than 7x7 are average-pooled to 7x7 first."""
    c, h, w = input_shape
    layers: list[nn.Module] = []
    ch = c
    for out in (width, 2 * width):
        layers += [nn.Conv2d(ch, out, 3, padding=1), nn.ReLU(inplace=True)]
        if min(h, w) >= 14:
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        ch = out
    if h > 7 or w > 7:
        layers.append(nn.AdaptiveAvgPool2d((min(h, 7), min(w, 7))))
        h, w = min(h, 7), min(w, 7)
    layers += [nn.Flatten(), nn.Linear(ch * h * w, hidden), nn.ReLU(inplace=True)]
    return _Net(nn.Sequential(*layers), nn.Linear(hidden, num_classes))


@register_model("mlp")
def mlp(num_classes, input_shape, *, hidden: int = 256, depth: int = 2) -> nn.Module:
    """Flatten, then ``depth`` hidden layers of width ``hidden`` with ReLU, then a linear head."""
    if depth < 1 or hidden < 1:
        raise ConfigError("mlp needs depth >= 1 and hidden >= 1")
    d = math.prod(input_shape)
    layers: list[nn.Module] = [nn.Flatten()]
    for _ in range(depth):
        layers += [nn.Linear(d, hidden), nn.ReLU(inplace=True)]
        d = hidden
    return _Net(nn.Sequential(*layers), nn.Linear(d, num_classes))


#: torchvision's ImageNet weight files (``https://download.pytorch.org/models/<file>``): V1 first, the one the paper's
#: setup implies (``resnet50(pretrained=True)`` in SubpopBench is V1).
TORCHVISION_FILES = {
    "resnet18": [("IMAGENET1K_V1", "resnet18-f37072fd.pth")],
    "resnet50": [("IMAGENET1K_V1", "resnet50-0676ba61.pth"), ("IMAGENET1K_V2", "resnet50-11ad3fa6.pth")],
}


def missing_weights_message(path: str | Path, arch: str | None = None) -> str:
    """One line: the weights file is not there; naming torchvision's weights fetches them (offline by default: only a
    name is ever fetched); where torchvision's file comes from and how to pass it (naming a copy already in torch's
    hub cache, ``$TORCH_HOME/hub/checkpoints``, when there is one)."""
    files = TORCHVISION_FILES.get(arch or "", TORCHVISION_FILES["resnet50"])
    name = arch or "resnet50"
    try:
        cache = Path(torch.hub.get_dir()) / "checkpoints"
    except Exception:  # pragma: no cover - get_dir only reads environment variables
        cache = Path("~/.cache/torch/hub/checkpoints")
    found = [cache / f for _, f in files if (cache / f).is_file()]
    paper = ", the paper's setup" if name == "resnet50" else ""
    versions = " or ".join(f"{f} ({v}{paper if k == 0 else ''})" for k, (v, f) in enumerate(files))
    here = f"; a copy is already at {found[0]}: pass --weights {found[0]}" if found else ""
    return (
        f"pretrained weights file {path} does not exist. Name torchvision's weights instead (--weights {files[0][0]}: "
        f"lfp fetches {files[0][1]} into {cache} once, then reads it there), or get the file where there is network "
        f"access: torchvision's ImageNet {name} weights are {versions} from https://download.pytorch.org/models/, e.g. "
        f"python -c \"import torchvision; torchvision.models.{name}(weights='IMAGENET1K_V1')\" saves it in {cache}; "
        f"then pass --weights /path/to/{files[0][1]}{here}"
    )


def load_local_weights(path: str, arch: str | None = None) -> dict[str, torch.Tensor]:
    """A torchvision state dict from a local file, read with ``weights_only=True`` (no pickle code); a weights name
    is turned into its file before (:mod:`lfpcli.models.pretrained`)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(missing_weights_message(p, arch))
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception:
        raise ArtifactError(f"{p} is not a loadable state dict of plain tensors") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ArtifactError(f"{p} is not a state dict of tensors")
    return sd


def _resnet(name, num_classes, input_shape, weights, small_input):
    import torchvision

    net = getattr(torchvision.models, name)(weights=None)
    if weights:
        sd = load_local_weights(weights, name)
        missing, unexpected = net.load_state_dict(sd, strict=False)
        bad = [k for k in missing if not k.endswith("num_batches_tracked")]
        if bad or unexpected:
            raise ArtifactError(
                f"{weights} does not match torchvision {name}: {len(bad)} missing, {len(unexpected)} unexpected keys"
            )
    if input_shape[0] != 3:
        net.conv1 = nn.Conv2d(input_shape[0], 64, 7, 2, 3, bias=False)
    if small_input == "auto":
        small_input = min(input_shape[1:]) < 64
    if small_input:
        # CIFAR-style stem: keep resolution on tiny images (a 7x7/2 conv + max-pool would leave 1x1 maps)
        net.conv1 = nn.Conv2d(input_shape[0], 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    feat_dim = net.fc.in_features
    net.fc = nn.Identity()
    return _Net(net, nn.Linear(feat_dim, num_classes))


@register_model("resnet18")
def resnet18(num_classes, input_shape, *, weights: str | None = None, small_input: str | bool = "auto") -> nn.Module:
    """torchvision ResNet-18 with a new linear head; ``weights``: a local torchvision state-dict file."""
    return _resnet("resnet18", num_classes, input_shape, weights, small_input)


@register_model("resnet50")
def resnet50(num_classes, input_shape, *, weights: str | None = None, small_input: str | bool = "auto") -> nn.Module:
    """torchvision ResNet-50 with a new linear head; ``weights``: a local torchvision state-dict file
    (e.g. ``resnet50-0676ba61.pth``, ImageNet V1, as the paper's setup implies)."""
    return _resnet("resnet50", num_classes, input_shape, weights, small_input)
