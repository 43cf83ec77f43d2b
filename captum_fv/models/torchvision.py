"""torchvision classifiers from local weights, taking RGB in [0, 1].

Nothing is downloaded; weights that do not fit the architecture fail with an explanation
(missing/unexpected/resized keys, a likely ``num_classes``, architectures the keys match).
"""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Mapping
from typing import Optional, Union

import torch
from torch import Tensor, nn

from .preprocessing import IMAGENET_MEAN, IMAGENET_STD, with_preprocessing
from .weights import load_checkpoint, mismatch, unwrap_state_dict

__all__ = ["torchvision_model"]


def _classification_models() -> list[str]:
    """Names of torchvision's image classification models."""
    import torchvision.models

    return torchvision.models.list_models(module=torchvision.models)


def _check_model_name(name: str) -> None:
    """Raise ValueError for names that are not torchvision classifiers, with suggestions."""
    import torchvision.models

    known = _classification_models()
    if name in known:
        return
    if name in torchvision.models.list_models():
        raise ValueError(f"{name!r} is not an image classification model; torchvision_model supports classifiers only")
    close = difflib.get_close_matches(name, known, n=5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown torchvision model {name!r}.{hint} See torchvision.models.list_models() for all names.")


def _mismatch_message(name: str, model: nn.Module, state: Mapping[str, Tensor], shown: int = 5) -> Optional[str]:
    """Explain how ``state`` does not fit ``model``; None when it fits."""
    problem = mismatch(model, state)
    if not problem:
        return None
    lines = [f"weights do not fit torchvision model {name!r}:", *problem.lines(shown)]
    # A resized final linear layer almost always means a different class count.
    classes = {a[0] for k, a, _ in problem.resized if k.endswith(".weight") and len(a) == 2}
    if len(classes) == 1 and not (problem.missing or problem.unexpected):
        lines.append(f"These weights look like num_classes={classes.pop()}.")
        return "\n".join(lines)
    matches = _architectures_with_keys(name, set(state)) if (problem.missing or problem.unexpected) else []
    if matches:
        lines.append(f"The keys match torchvision model(s): {', '.join(matches)}.")
    lines.append("Check that `name` is the architecture the weights were saved from and that `num_classes` matches.")
    return "\n".join(lines)


def _architectures_with_keys(name: str, keys: set[str]) -> list[str]:
    """Models with names close to ``name`` whose state_dict keys are exactly ``keys``.

    Only near names are tried, built on the meta device, so this stays cheap.
    """
    import torchvision.models

    found = []
    for candidate in difflib.get_close_matches(name, _classification_models(), n=8, cutoff=0.5):
        if candidate == name:
            continue
        try:
            with warnings.catch_warnings(), torch.device("meta"):
                warnings.simplefilter("ignore")
                model = torchvision.models.get_model(candidate, weights=None)
        except Exception:  # some builders compute on tensors and fail on meta; skip them
            continue
        if set(model.state_dict()) == keys:
            found.append(candidate)
    return found


def torchvision_model(
    name: str, weights: Optional[Union[str, os.PathLike]] = None, num_classes: int = 1000
) -> nn.Module:
    """A torchvision classifier in eval mode taking [0, 1] RGB, from local weights.

    Nothing is downloaded: ``weights`` is a path to a saved state_dict (raw, or
    under a 'state_dict'/'model' key), or None for a random init. Input is
    normalized with the ImageNet mean/std inside; layer names are torchvision's.

    >>> net = torchvision_model("resnet18")
    >>> net(torch.rand(1, 3, 64, 64)).shape
    torch.Size([1, 1000])
    """
    import torchvision.models

    _check_model_name(name)
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    if weights is not None:
        state = unwrap_state_dict(load_checkpoint(weights))
        problem = _mismatch_message(name, model, state)
        if problem:
            raise ValueError(problem)
        model.load_state_dict(state, strict=True)
    return with_preprocessing(model, IMAGENET_MEAN, IMAGENET_STD).eval()
