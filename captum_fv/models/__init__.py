"""Models for feature visualization: hook-friendly EfficientNet-Lite0 (and Lite1/Lite2 with
the ``models`` extra), offline ImageNet labels, and torchvision models that take [0, 1] RGB.

Every model returned here takes RGB in [0, 1] (NCHW float) and normalizes
inside ``forward``, so optimized images live in a fixed, model-independent
range while layer names stay exactly those of the underlying network.
One module per model family (:mod:`.efficientnet`, :mod:`.torchvision`) plus shared
pieces: :mod:`.preprocessing`, :mod:`.weights` (safe loading), :mod:`.labels`, :mod:`.loading`
(a model by name, as the command line takes it).
"""

from __future__ import annotations

from .efficientnet import (
    EfficientNetLite0,
    efficientnet_lite0,
    efficientnet_lite1,
    efficientnet_lite2,
)
from .labels import imagenet_labels
from .loading import load
from .preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessed, with_preprocessing
from .torchvision import torchvision_model

__all__ = [
    "EfficientNetLite0",
    "Preprocessed",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "imagenet_labels",
    "load",
    "torchvision_model",
    "with_preprocessing",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]
