"""lfp: learning from perturbations.

Train a classifier, perturb its training data toward wrong target labels, retrain a fresh model on the
perturbed data alone, and measure it on clean data and on its worst group. Every stage is a plain function::

    import lfpcli
    lfpcli.train("model.pt", data="spurious-digits", arch="small-cnn")
    lfpcli.perturb("pgd.h5", model="model.pt", method="pgd-l2")
    lfpcli.retrain("model_pgd.pt", perturbed="pgd.h5")
    report = lfpcli.evaluate(model="model_pgd.pt")
    maps = lfpcli.saliency("maps.h5", models=["model.pt", "model_pgd.pt"], png="grid.png")
    lfpcli.synth_sweep("q.h5", preset="quick"); lfpcli.synth_plot("q.h5", "q.png")

The functions are imported lazily so that ``import lfpcli`` stays cheap.
"""

from lfpcli.version import __version__

__all__ = [
    "__version__",
    "train",
    "perturb",
    "retrain",
    "evaluate",
    "info",
    "verify",
    "fit_density_file",
    "describe_data",
    "saliency",
    "synth_run",
    "synth_sweep",
    "synth_plot",
]


def __getattr__(name):
    if name in (
        "train",
        "perturb",
        "retrain",
        "evaluate",
        "info",
        "verify",
        "fit_density_file",
        "describe_data",
        "saliency",
    ):
        from lfpcli import commands

        return getattr(commands, name)
    if name in ("synth_run", "synth_sweep", "synth_plot"):
        from lfpcli.commands import synth

        return getattr(synth, name)
    raise AttributeError(f"module 'lfpcli' has no attribute {name!r}")
