"""Model registry. Every model takes pixel-space inputs in [0, 1] and normalises inside ``forward``.

``build_model(arch, num_classes, input_shape, mean, std, **arch_args)`` returns a :class:`PixelModel`;
``list_models()`` names the architectures; ``register_model(name)`` adds one.
"""

from lfpcli.models import kumano as _kumano  # noqa: F401  (registers kumano-cnn: the paper's MNIST/FMNIST network)
from lfpcli.models import nets as _nets  # noqa: F401  (registers the built-in architectures)
from lfpcli.models import synthetic as _synthetic  # noqa: F401  (registers one-hidden, for lfp synth)
from lfpcli.models import wideresnet as _wideresnet  # noqa: F401  (registers wrn-28-10: the paper's CIFAR-10 network)
from lfpcli.models.pixel import PixelModel
from lfpcli.models.registry import build_model, list_models, model_from_meta, register_model

__all__ = ["PixelModel", "build_model", "list_models", "model_from_meta", "register_model"]
