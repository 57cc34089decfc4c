"""One module per subcommand: resolve inputs (parent artifacts supply defaults), run the library, write
artifacts, return a JSON-able summary. Nothing here prints."""

from lfpcli.commands.data import describe_data, download_data
from lfpcli.commands.density import fit_density_file
from lfpcli.commands.evaluate import evaluate
from lfpcli.commands.info import info
from lfpcli.commands.perturb import perturb
from lfpcli.commands.retrain import retrain
from lfpcli.commands.saliency import saliency, saliency_layers
from lfpcli.commands.train import train
from lfpcli.commands.verify import verify

__all__ = [
    "describe_data",
    "download_data",
    "fit_density_file",
    "evaluate",
    "info",
    "perturb",
    "retrain",
    "saliency",
    "saliency_layers",
    "train",
    "verify",
]
