"""Objectives on units: a neuron, a channel, a whole layer (DeepDream), a class logit or probability.

``unit`` may be one index or a sequence with one index per targeted slot, which is how many units
share one batch: ``channel("_blocks.8", [0, 1, 2, 3])`` drives slot i towards channel i.
"""
from __future__ import annotations

import numbers
from typing import Optional, Sequence, Union

import torch

from ..addressing import LayerLike
from .base import Objective, Slots, min_batch_for, per_slot, spatial_mean

Units = Union[int, Sequence[int]]


def _slots_for(unit: Units, batch: Slots) -> Slots:
    if batch is None and not isinstance(unit, numbers.Integral):
        return list(range(len(unit)))  # one unit per slot, in order
    return batch


def _unit_index(unit: Units, n: int, size: int, what: str, layer: LayerLike) -> torch.Tensor:
    units = [int(unit)] * n if isinstance(unit, numbers.Integral) else [int(u) for u in unit]
    if len(units) != n:
        raise ValueError(f"{len(units)} units given for {n} batch slots; give one unit per slot")
    for u in units:
        if not 0 <= u < size:
            raise IndexError(
                f"{what} {u} is out of range for layer {_name(layer)}, which has {size} "
                f"{what}s (0..{size - 1})"
            )
    return torch.as_tensor(units, dtype=torch.long)


def _name(layer: LayerLike) -> str:
    if layer is None or layer == "":
        return "'output'"
    return repr(layer) if isinstance(layer, str) else type(layer).__name__


def _label(kind: str, layer: LayerLike, unit: Units, batch: Slots) -> str:
    at = "" if batch is None else f", batch={batch}"
    return f"{kind}({_name(layer)}, {unit}{at})"


def channel(layer: LayerLike, unit: Units, batch: Slots = None) -> Objective:
    """Mean activation of channel ``unit`` over all positions.

    >>> channel("_blocks.8", 12)
    """
    slots = _slots_for(unit, batch)

    def values(a: torch.Tensor, idx: Optional[torch.Tensor]) -> torch.Tensor:
        u = _unit_index(unit, a.shape[0], a.shape[1], "channel", layer).to(a.device)
        return spatial_mean(a[torch.arange(a.shape[0], device=a.device), u])

    return Objective(
        lambda ctx: per_slot(values, ctx.acts(layer), slots),
        [layer],
        _label("channel", layer, unit, batch),
        min_batch_for(slots),
    )


def neuron(
    layer: LayerLike,
    unit: Units,
    x: Optional[int] = None,
    y: Optional[int] = None,
    batch: Slots = None,
) -> Objective:
    """Activation of channel ``unit`` at one spatial position (the centre by default).

    >>> neuron("_blocks.8", 12, x=3, y=3)
    """
    slots = _slots_for(unit, batch)

    def values(a: torch.Tensor, idx: Optional[torch.Tensor]) -> torch.Tensor:
        u = _unit_index(unit, a.shape[0], a.shape[1], "channel", layer).to(a.device)
        rows = torch.arange(a.shape[0], device=a.device)
        if a.dim() == 2:
            return a[rows, u]
        if a.dim() == 3:  # (N, C, L)
            return a[rows, u, a.shape[2] // 2 if x is None else x]
        h, w = a.shape[-2:]
        yy, xx = h // 2 if y is None else y, w // 2 if x is None else x
        if not (0 <= yy < h and 0 <= xx < w):
            raise IndexError(
                f"position (x={xx}, y={yy}) is outside layer {_name(layer)}'s {h}x{w} map"
            )
        return a[rows, u, ..., yy, xx].flatten(1).mean(1) if a.dim() > 4 else a[rows, u, yy, xx]

    return Objective(
        lambda ctx: per_slot(values, ctx.acts(layer), slots),
        [layer],
        _label("neuron", layer, unit, batch),
        min_batch_for(slots),
    )


def deepdream(layer: LayerLike, batch: Slots = None) -> Objective:
    """Mean squared activation of a whole layer (DeepDream): amplify whatever the layer sees."""
    return Objective(
        lambda ctx: per_slot(lambda a, _: a.flatten(1).pow(2).mean(1), ctx.acts(layer), batch),
        [layer],
        f"deepdream({_name(layer)})",
        min_batch_for(batch),
    )


#: Lucid's name for the same objective.
layer = deepdream


def class_logit(label: Units, batch: Slots = None, layer: LayerLike = None) -> Objective:
    """Pre-softmax score of class ``label`` (the model output unless ``layer`` says otherwise)."""
    slots = _slots_for(label, batch)

    def values(a: torch.Tensor, idx: Optional[torch.Tensor]) -> torch.Tensor:
        u = _unit_index(label, a.shape[0], a.shape[1], "class", layer).to(a.device)
        a = a if a.dim() == 2 else a.flatten(2).mean(2)  # spatial logits: average them
        return a[torch.arange(a.shape[0], device=a.device), u]

    return Objective(
        lambda ctx: per_slot(values, ctx.acts(layer), slots),
        [layer],
        _label("class_logit", layer, label, batch),
        min_batch_for(slots),
    )


def class_probability(label: Units, batch: Slots = None, layer: LayerLike = None) -> Objective:
    """Post-softmax probability of class ``label``: raising it may also mean lowering the others."""
    slots = _slots_for(label, batch)

    def values(a: torch.Tensor, idx: Optional[torch.Tensor]) -> torch.Tensor:
        u = _unit_index(label, a.shape[0], a.shape[1], "class", layer).to(a.device)
        a = a if a.dim() == 2 else a.flatten(2).mean(2)
        return torch.softmax(a.float(), dim=1)[torch.arange(a.shape[0], device=a.device), u]

    return Objective(
        lambda ctx: per_slot(values, ctx.acts(layer), slots),
        [layer],
        _label("class_probability", layer, label, batch),
        min_batch_for(slots),
    )
