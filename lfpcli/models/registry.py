"""Architecture registry: name -> builder ``(num_classes, input_shape, **arch_args) -> nn.Module``.

A builder returns a module with ``features(x) -> (N, F)`` and ``head(f) -> (N, K)`` (``K = 1`` for a scalar-output
binary model).

Architectures of other installed packages: an entry point in the group ``lfpcli.models`` (name: the architecture's
name, value: its builder, e.g. ``my-net = "mypkg.nets:build_my_net"`` under
``[project.entry-points."lfpcli.models"]``) is registered the first time an unknown name is asked for or the names
are listed. Only installed packages are imported this way (lfp never imports code from a model file), so a user's
own class becomes an ``--arch`` for ``lfp train`` and for reading its state dict (``--in weights.pt --arch my-net``).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from torch import nn

from lfpcli.errors import ConfigError
from lfpcli.models.outputs import OUTPUTS
from lfpcli.models.pixel import PixelModel

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
#: The entry-point group of other packages' architectures.
ENTRY_POINT_GROUP = "lfpcli.models"
_plugins_loaded = False


def register_model(name: str):
    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return deco


def load_plugins() -> None:
    """Register the architectures of installed packages (entry points of :data:`ENTRY_POINT_GROUP`), once. A
    plugin that fails to import or is not callable is left out with a warning (it never stops lfp)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    import warnings
    from importlib.metadata import entry_points

    try:
        eps = list(entry_points(group=ENTRY_POINT_GROUP))
    except Exception:  # pragma: no cover - broken package metadata
        return
    for ep in eps:
        if ep.name in _REGISTRY:
            continue
        try:
            fn = ep.load()
        except Exception as e:
            warnings.warn(
                f"architecture '{ep.name}' of package entry point {ep.value} cannot be imported ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:120] if str(e) else ''}); left out",
                stacklevel=2,
            )
            continue
        if callable(fn):
            _REGISTRY[ep.name] = fn


def list_models() -> list[str]:
    load_plugins()
    return sorted(_REGISTRY)


def arch_defaults(arch: str) -> dict[str, Any]:
    """The builder's keyword arguments and their defaults (recorded in checkpoints)."""
    sig = inspect.signature(_builder(arch))
    return {k: p.default for k, p in sig.parameters.items() if p.kind == p.KEYWORD_ONLY}


def parse_arch_args(arch: str, items: dict[str, Any] | None) -> dict[str, Any]:
    """Coerce ``--arch-arg key=value`` strings to the types of the builder's defaults."""
    defaults = arch_defaults(arch)
    out: dict[str, Any] = {}
    for k, v in (items or {}).items():
        if k not in defaults:
            raise ConfigError(f"architecture '{arch}' has no option '{k}' (it takes: {', '.join(defaults) or 'none'})")
        d = defaults[k]
        if isinstance(v, str) and isinstance(d, bool):
            if v.lower() not in ("true", "false", "1", "0"):
                raise ConfigError(f"--arch-arg {k} must be true or false")
            v = v.lower() in ("true", "1")
        elif isinstance(v, str) and isinstance(d, int):
            try:
                v = int(v)
            except ValueError:
                raise ConfigError(f"--arch-arg {k} must be an integer") from None
        elif isinstance(v, str) and isinstance(d, float):
            try:
                v = float(v)
            except ValueError:
                raise ConfigError(f"--arch-arg {k} must be a number") from None
        out[k] = v
    return out


def _builder(arch: str) -> Callable[..., nn.Module]:
    if arch not in _REGISTRY:
        load_plugins()
    if arch not in _REGISTRY:
        raise ConfigError(f"unknown architecture '{arch}'; choose one of: {', '.join(list_models())}")
    return _REGISTRY[arch]


def build_model(
    arch: str,
    num_classes: int,
    input_shape: tuple[int, int, int],
    mean: list[float],
    std: list[float],
    output: str = "logits",
    **arch_args: Any,
) -> PixelModel:
    """``output="logits"``: a head of ``num_classes`` logits; ``"scalar"``: one logit for a two-class task (labels
    read as -1/+1, class 1 when it is positive; see ``lfpcli.models.outputs``)."""
    builder = _builder(arch)
    if output not in OUTPUTS:
        raise ConfigError(f"--output must be one of {', '.join(OUTPUTS)}, got '{output}'")
    if output == "scalar" and num_classes != 2:
        raise ConfigError(f"--output scalar needs a two-class task; this data has {num_classes} classes")
    allowed = arch_defaults(arch)
    unknown = set(arch_args) - set(allowed)
    if unknown:
        raise ConfigError(
            f"architecture '{arch}' has no option {', '.join(sorted(unknown))} (it takes: {', '.join(allowed) or 'none'})"
        )
    if len(mean) != input_shape[0] or len(std) != input_shape[0]:
        raise ConfigError(f"normalisation has {len(mean)} channels but inputs have {input_shape[0]}")
    net = builder(1 if output == "scalar" else num_classes, tuple(input_shape), **arch_args)
    return PixelModel(net, mean, std)


def model_from_meta(meta: dict[str, Any]) -> PixelModel:
    """Rebuild the (untrained) model a checkpoint's metadata describes; load the state dict afterwards."""
    m = meta["model"]
    args = {k: v for k, v in m.get("arch_args", {}).items() if k != "weights"}
    return build_model(
        m["arch"],
        m["num_classes"],
        tuple(m["input_shape"]),
        m["mean"],
        m["std"],
        output=m.get("output", "logits"),
        **args,
    )
