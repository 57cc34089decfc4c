"""Saliency maps of trained models, and how much of them falls on the object (the library behind ``lfp saliency``).

- :mod:`~lfpcli.attribution.layers`: layer names, output shapes, the default Grad-CAM layer, hooks released.
- :mod:`~lfpcli.attribution.methods`: ``attribute(model, x, target, SaliencyConfig(method=...))`` for a batch,
  one forward and backward per batch, on Captum (``gradcam``, ``gradient``, ``input-x-gradient``,
  ``smoothgrad``, ``integrated-gradients``).
- :mod:`~lfpcli.attribution.scores`: attribution share inside a foreground mask, the pointing game, summaries.
- :mod:`~lfpcli.attribution.figure`: the picture grid (rows = images, one overlaid map per model).

(Named ``attribution`` so that ``lfpcli.saliency`` stays the command function, as ``lfpcli.train`` is next to
``lfpcli.training``.)
"""

from lfpcli.attribution.layers import LayerInfo, default_layer, hooks_released, layer_table, resolve_layer
from lfpcli.attribution.methods import (
    BASELINES,
    MAP_DEFINITIONS,
    METHODS,
    Maps,
    SaliencyConfig,
    attribute,
    batched_maps,
)
from lfpcli.attribution.scores import attribution_share, mask_area, pointing_game, summarize, summarize_area

__all__ = [
    "BASELINES",
    "LayerInfo",
    "MAP_DEFINITIONS",
    "METHODS",
    "Maps",
    "SaliencyConfig",
    "attribute",
    "attribution_share",
    "batched_maps",
    "default_layer",
    "hooks_released",
    "layer_table",
    "mask_area",
    "pointing_game",
    "resolve_layer",
    "summarize",
    "summarize_area",
]
