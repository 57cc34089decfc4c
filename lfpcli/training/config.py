"""Training configuration, validated on construction, recorded verbatim in checkpoints."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from lfpcli.errors import ConfigError

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine")
SELECTIONS = ("last", "val-accuracy", "val-worst-group")
#: How an epoch draws its samples: ``none`` every training sample once; ``groups`` as many samples, drawn with
#: replacement so that every (label, attribute) group is equally likely (group-balanced upsampling, the usual
#: reference that uses the group labels: Sagawa et al. 2020, Idrissi et al. 2022).
BALANCES = ("none", "groups")
#: Training losses (``lfpcli.solvers.losses``): on a scalar-output binary model ``ce`` and ``logistic`` are both
#: ``log(1 + exp(-s z))`` and ``exponential`` is ``exp(-s z)``, labels ``s`` in {-1, +1}.
TRAIN_LOSSES = ("ce", "logistic", "exponential")

#: Named optimizer settings from the literature. ``paper-text``: the seed paper's Section 5 (fine-tuning a
#: ResNet-50 on WaterBirds/SpuCoAnimals); ``paper-code``: what the paper's public code runs on WaterBirds
#: (SubpopBench's defaults); ``kumano``: Kumano et al.'s MNIST/FMNIST/CIFAR-10 settings (their train.py).
RECIPES: dict[str, dict[str, Any]] = {
    "paper-text": {
        "optimizer": "sgd",
        "lr": 1e-5,
        "momentum": 0.9,
        "weight_decay": 5e-2,
        "batch_size": 8,
        "epochs": 360,
    },
    "paper-code": {
        "optimizer": "sgd",
        "lr": 1e-3,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "batch_size": 108,
        "epochs": 113,
    },
    "kumano": {
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 5e-4,
        "batch_size": 128,
        "epochs": 100,
    },
}


@dataclass(frozen=True)
class TrainConfig:
    """Optimizer and loop settings. ``select``: keep the last epoch, or the epoch with the best validation
    accuracy / worst-group accuracy (ties go to the earlier epoch). ``balance``: see :data:`BALANCES`."""

    epochs: int = 15
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    nesterov: bool = False
    batch_size: int = 64
    schedule: str = "constant"
    select: str = "last"
    loss: str = "ce"
    balance: str = "none"

    def __post_init__(self):
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not (self.lr > 0) or self.lr == float("inf"):
            raise ConfigError(f"--lr must be a positive number, got {self.lr}")
        if not (0 <= self.momentum < 1):
            raise ConfigError(f"--momentum must be in [0, 1), got {self.momentum}")
        if not (self.weight_decay >= 0) or self.weight_decay == float("inf"):
            raise ConfigError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got '{self.optimizer}'")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"--schedule must be one of {', '.join(SCHEDULES)}, got '{self.schedule}'")
        if self.select not in SELECTIONS:
            raise ConfigError(f"--select must be one of {', '.join(SELECTIONS)}, got '{self.select}'")
        if self.loss not in TRAIN_LOSSES:
            raise ConfigError(f"--loss must be one of {', '.join(TRAIN_LOSSES)}, got '{self.loss}'")
        if self.balance not in BALANCES:
            raise ConfigError(f"--balance must be one of {', '.join(BALANCES)}, got '{self.balance}'")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ConfigError("--nesterov needs --optimizer sgd with a momentum > 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def resolve(
        cls, given: dict[str, Any], *, recipe: str | None = None, base: dict[str, Any] | None = None
    ) -> "TrainConfig":
        """Explicit values, then the recipe, then ``base`` (data-spec or parent defaults), then field defaults."""
        if recipe is not None and recipe not in RECIPES:
            raise ConfigError(f"unknown recipe '{recipe}'; choose one of {', '.join(RECIPES)}")
        names = {f.name for f in fields(cls)}
        merged = {k: v for k, v in (base or {}).items() if k in names}
        merged.update(RECIPES.get(recipe, {}) if recipe else {})
        merged.update({k: v for k, v in given.items() if v is not None and k in names})
        return cls(**merged)
