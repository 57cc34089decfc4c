"""The synthetic data of Kumano et al. (2024): inputs uniform on [-1, 1]^d or standard normal, labels +-1 at random.

Every draw comes from its own ``torch.Generator`` on the CPU, seeded by :func:`derive_seed` from the run seed and
the parameters the draw depends on, never from global RNG state. So one configuration of a sweep gets the same
numbers as ``lfp synth run`` of it alone, on any device, in any order, before or after an interruption.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

from lfpcli.errors import ConfigError

__all__ = ["BOXES", "DISTS", "derive_seed", "draw_inputs", "draw_labels", "generator"]

DISTS = ("uniform", "gauss")
#: The input box of each distribution: where the inputs live and where perturbations are clamped. ``gauss`` has
#: none (Kumano et al.'s code: ``(-inf, inf)``).
BOXES = {"uniform": (-1.0, 1.0), "gauss": (float("-inf"), float("inf"))}


def derive_seed(seed: int, *parts: Any) -> int:
    """A 63-bit seed from the run seed and a description of what is drawn (names and sizes): the first 8 bytes of
    the sha256 of their JSON text. Independent of Python's hash randomisation and of every other draw."""
    text = json.dumps([int(seed), *parts], sort_keys=True, separators=(",", ":"))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") & ((1 << 63) - 1)


def generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(seed)


def draw_inputs(dist: str, n: int, dim: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` inputs of ``dim`` values (float32, CPU): ``uniform`` on [-1, 1), ``gauss`` from N(0, I)."""
    if dist == "uniform":
        return torch.rand((n, dim), generator=gen, dtype=torch.float32).mul_(2).sub_(1)
    if dist == "gauss":
        return torch.randn((n, dim), generator=gen, dtype=torch.float32)
    raise ConfigError(f"unknown distribution '{dist}'; choose one of {', '.join(DISTS)}")


def draw_labels(n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` labels as class indices {0, 1} (int64, CPU), each uniform and independent: class 1 is label +1 in the
    scalar-output convention (``lfpcli.models.outputs.signed_labels``)."""
    return torch.randint(0, 2, (n,), generator=gen, dtype=torch.int64)
