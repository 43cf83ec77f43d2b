"""Matching objectives: model inversion (reproduce a target activation) and style (reproduce a
target Gram matrix). Both score 0 at a perfect match and less otherwise."""

from __future__ import annotations

from typing import Optional

import torch

from ..addressing import LayerLike
from .base import Slots, layer_name
from .diversity import gram
from .factory import PerSlot, objective


def _relative_error(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    target = target.to(device=x.device, dtype=x.dtype).expand_as(x)
    err = (x - target).flatten(1).pow(2).mean(1)
    return err / target.flatten(1).pow(2).mean(1).clamp(min=1e-8)


@objective
def inversion(layer: LayerLike, target: torch.Tensor, batch: Slots = None) -> PerSlot:
    """Minus the relative squared error to ``target`` (the layer's activation on some image, with
    or without its batch dim): maximizing it recovers an image the layer sees the same way.

    >>> photo = fv.data.sample_images(size=64)[0][0]
    >>> target = fv.activations(model, "_blocks.5", photo[None])
    >>> inversion("_blocks.5", target)
    Objective(inversion('_blocks.5'))
    """
    target = target.detach()

    def values(a: torch.Tensor, idx: Optional[torch.Tensor]) -> torch.Tensor:
        t = target if target.dim() == a.dim() else target.unsqueeze(0)
        if t.shape[0] > 1 and idx is not None:
            t = t[idx.to(t.device)]  # one target per render slot
        if t.shape[1:] != a.shape[1:]:
            raise ValueError(
                f"target activation has shape {tuple(t.shape[1:])} but layer {layer_name(layer)} gives "
                f"{tuple(a.shape[1:])} at this image size; compute the target at the same size"
            )
        return -_relative_error(a, t)

    return PerSlot(values, f"inversion({layer_name(layer)})", layer, batch)


@objective
def style(layer: LayerLike, target_gram: torch.Tensor, batch: Slots = None) -> PerSlot:
    """Minus the relative squared error between the layer's Gram matrix and ``target_gram``
    (from :func:`captum_fv.objectives.gram` of a style image's activation)."""
    target_gram = target_gram.detach()

    def values(a: torch.Tensor, idx: Optional[torch.Tensor]) -> torch.Tensor:
        t = target_gram
        if t.dim() == 3 and t.shape[0] > 1 and idx is not None:
            t = t[idx.to(t.device)]  # one target per render slot, as in inversion
        return -_relative_error(gram(a), t)

    return PerSlot(values, f"style({layer_name(layer)})", layer, batch)
