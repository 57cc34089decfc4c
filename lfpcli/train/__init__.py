"""The one training loop, shared by ``train`` and ``retrain`` (and later ``synth``)."""

from lfpcli.train.config import RECIPES, TrainConfig
from lfpcli.train.loop import TrainResult, train_model

__all__ = ["RECIPES", "TrainConfig", "TrainResult", "train_model"]
