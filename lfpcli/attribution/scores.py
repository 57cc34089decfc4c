"""How much of a saliency map falls on the object: attribution share and the pointing game.

For each map, only its positive part counts (``clamp(min=0)``: Grad-CAM, |gradient| and SmoothGrad maps are
non-negative already; input-x-gradient and integrated gradients lose their negative evidence). With a foreground
``mask`` (the object's pixels):

- **attribution share** = sum(map+ * mask) / sum(map+): the fraction of positive attribution mass on the object.
  A uniform map scores the mask's area fraction, the chance level (``mask_area``).
- **pointing game** (Zhang et al. 2016): a hit when the map's maximum lies on the object (some pixel of the
  mask attains the map's maximum). Chance level: the mask's area fraction too.

A map with no positive mass (all zero: e.g. a Grad-CAM whose weighted sum is negative everywhere) has neither:
its share is NaN and its pointing result -1, and summaries count such maps as ``undefined`` apart.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

#: Pointing-game codes per map.
HIT, MISS, UNDEFINED = 1, 0, -1


def attribution_share(maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N,) float32: the share of each map's positive mass inside its mask; NaN where the map has none."""
    pos = maps.float().clamp(min=0).flatten(1)
    m = mask.bool().flatten(1)
    total = pos.sum(1)
    inside = (pos * m).sum(1)
    return torch.where(
        total > 0, inside / total.clamp_min(torch.finfo(torch.float32).tiny), torch.full_like(total, math.nan)
    )


def pointing_game(maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N,) int8: 1 where the map's maximum is attained inside the mask, 0 where not, -1 where the map has no
    positive mass."""
    pos = maps.float().clamp(min=0).flatten(1)
    m = mask.bool().flatten(1)
    top = pos.max(1).values
    inside = torch.where(m, pos, torch.full_like(pos, -1.0)).max(1).values
    out = (inside >= top).to(torch.int8)
    return torch.where(top > 0, out, torch.full_like(out, UNDEFINED))


def mask_area(mask: torch.Tensor) -> torch.Tensor:
    """(N,) float32: the fraction of pixels inside each mask (a uniform map's share: chance level)."""
    return mask.bool().flatten(1).float().mean(1)


def _stats(share: torch.Tensor, pointing: torch.Tensor, correct: torch.Tensor | None) -> dict[str, Any]:
    ok = torch.isfinite(share)
    hit = pointing[pointing >= 0]
    out = {
        "share": float(share[ok].double().mean()) if ok.any() else None,
        "share_median": float(share[ok].median()) if ok.any() else None,
        "pointing": float((hit == HIT).double().mean()) if len(hit) else None,
        "n": int(ok.sum()),
        "undefined": int((~ok).sum()),
    }
    if correct is not None:
        out["accuracy"] = float(correct.double().mean()) if len(correct) else None
    return out


def summarize(
    share: torch.Tensor,
    pointing: torch.Tensor,
    group: torch.Tensor,
    group_names: Sequence[str] | None,
    correct: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Mean (and median) share over the maps that have one, pointing-game accuracy, counts (``n`` defined,
    ``undefined``), and ``accuracy`` of the model on the images when ``correct`` is given; overall and per group
    (``groups``: name -> the same figures; groups without images left out)."""
    out = _stats(share, pointing, correct)
    out["groups"] = {}
    for k, name in enumerate(group_names or []):
        sel = group == k
        if sel.any():
            out["groups"][name] = _stats(share[sel], pointing[sel], None if correct is None else correct[sel])
    return out


def summarize_area(area: torch.Tensor, group: torch.Tensor, group_names: Sequence[str] | None) -> dict[str, Any]:
    """The chance level: mean mask area fraction overall and per group."""
    out: dict[str, Any] = {"mean": float(area.mean()) if len(area) else None, "groups": {}}
    for k, name in enumerate(group_names or []):
        sel = group == k
        if sel.any():
            out["groups"][name] = float(area[sel].mean())
    return out


__all__ = ["HIT", "MISS", "UNDEFINED", "attribution_share", "mask_area", "pointing_game", "summarize", "summarize_area"]
