"""The synthetic learning-from-perturbations experiments (``lfp synth``): the seed paper's Appendix A after Kumano
et al. (ICLR 2024), on uniform or Gaussian inputs and a one-hidden-layer network.

- :mod:`lfpcli.synth.data`: the draws and their per-configuration seeds;
- :mod:`lfpcli.synth.train`: full-batch training with a plateau stop, several networks side by side;
- :mod:`lfpcli.synth.protocol`: one configuration (:class:`Point`, :class:`Settings`, :func:`run_point`);
- :mod:`lfpcli.synth.sweep`: plans of curves, presets, :func:`run_sweep`;
- :mod:`lfpcli.synth.plot`: summaries over seeds and the figure.

Pure functions: nothing here prints or writes files (``lfpcli.commands.synth`` does).
"""

from lfpcli.synth.data import DISTS, derive_seed, draw_inputs, draw_labels
from lfpcli.synth.protocol import METHODS, VARIANTS, Point, Settings, run_point, solver_config
from lfpcli.synth.sweep import PRESETS, SWEEP_KEYS, Curve, Plan, parse_sweep, preset, run_sweep
from lfpcli.synth.train import FitConfig, FitResult, fit

__all__ = [
    "DISTS",
    "METHODS",
    "PRESETS",
    "SWEEP_KEYS",
    "VARIANTS",
    "Curve",
    "FitConfig",
    "FitResult",
    "Plan",
    "Point",
    "Settings",
    "derive_seed",
    "draw_inputs",
    "draw_labels",
    "fit",
    "parse_sweep",
    "preset",
    "run_point",
    "run_sweep",
    "solver_config",
]
