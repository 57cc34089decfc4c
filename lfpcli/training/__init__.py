"""The one training loop, shared by ``train`` and ``retrain`` (and later ``synth``)."""

from lfpcli.training.config import RECIPES, TrainConfig
from lfpcli.training.loop import TrainResult, train_model

__all__ = ["RECIPES", "TrainConfig", "TrainResult", "train_model"]
