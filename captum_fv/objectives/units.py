"""Objectives on units: a neuron, a channel, a whole layer (DeepDream), a class logit or probability.

``unit`` may be one index or a sequence with one index per targeted slot, which is how many units
share one batch: ``channel("_blocks.8", [0, 1, 2, 3])`` drives slot i towards channel i.
"""

from __future__ import annotations

import numbers
from typing import Optional, Sequence, Union

import torch

from ..addressing import LayerLike
from ..modelinfo import OutputKey
from .base import Slots, layer_name, spatial_mean
from .factory import PerSlot, objective

Units = Union[int, Sequence[int]]


def slots_for(unit: Units, batch: Slots) -> Slots:
    """The slots a unit objective targets: ``batch``, or one slot per unit when units are many."""
    if batch is None and not isinstance(unit, numbers.Integral):
        return list(range(len(unit)))  # one unit per slot, in order
    return batch


def unit_index(unit: Units, n: int, size: int, what: str, layer: LayerLike) -> torch.Tensor:
    """One unit index per row (n rows), checked against the layer's ``size`` units."""
    units = [int(unit)] * n if isinstance(unit, numbers.Integral) else [int(u) for u in unit]
    if len(units) != n:
        raise ValueError(f"{len(units)} units given for {n} batch slots; give one unit per slot")
    for u in units:
        if not 0 <= u < size:
            raise IndexError(
                f"{what} {u} is out of range for layer {layer_name(layer)}, which has {size} {what}s (0..{size - 1})"
            )
    return torch.as_tensor(units, dtype=torch.long)


def _label(kind: str, layer: LayerLike, unit: Units, batch: Slots) -> str:
    at = "" if batch is None else f", batch={batch}"
    return f"{kind}({layer_name(layer)}, {unit}{at})"


def _rows(a: torch.Tensor) -> torch.Tensor:
    return torch.arange(a.shape[0], device=a.device)


@objective
def channel(layer: LayerLike, unit: Units, batch: Slots = None) -> PerSlot:
    """Mean activation of channel ``unit`` over all positions.

    >>> channel("_blocks.8", 12)
    Objective(channel('_blocks.8', 12))
    """

    def values(a: torch.Tensor, idx: Optional[torch.Tensor]) -> torch.Tensor:
        u = unit_index(unit, a.shape[0], a.shape[1], "channel", layer).to(a.device)
        return spatial_mean(a[_rows(a), u])

    return PerSlot(values, _label("channel", layer, unit, batch), layer, slots_for(unit, batch))


@objective
def neuron(
    layer: LayerLike,
    unit: Units,
    x: Optional[int] = None,
    y: Optional[int] = None,
    batch: Slots = None,
) -> PerSlot:
    """Activation of channel ``unit`` at one spatial position (the centre by default).

    >>> neuron("_blocks.8", 12, x=3, y=3)
    Objective(neuron('_blocks.8', 12))
    """

    def values(a: torch.Tensor, idx: Optional[torch.Tensor]) -> torch.Tensor:
        u = unit_index(unit, a.shape[0], a.shape[1], "channel", layer).to(a.device)
        rows = _rows(a)
        if a.dim() == 2:
            return a[rows, u]
        if a.dim() == 3:  # (N, C, L)
            return a[rows, u, a.shape[2] // 2 if x is None else x]
        h, w = a.shape[-2:]
        yy, xx = h // 2 if y is None else y, w // 2 if x is None else x
        if not (0 <= yy < h and 0 <= xx < w):
            raise IndexError(f"position (x={xx}, y={yy}) is outside layer {layer_name(layer)}'s {h}x{w} map")
        return a[rows, u, ..., yy, xx].flatten(1).mean(1) if a.dim() > 4 else a[rows, u, yy, xx]

    return PerSlot(values, _label("neuron", layer, unit, batch), layer, slots_for(unit, batch))


@objective
def deepdream(layer: LayerLike, batch: Slots = None) -> PerSlot:
    """Mean squared activation of a whole layer (DeepDream): amplify whatever the layer sees."""
    return PerSlot(lambda a, _: a.flatten(1).pow(2).mean(1), f"deepdream({layer_name(layer)})", layer, batch)


#: Lucid's name for the same objective.
layer = deepdream


def _logits(a: torch.Tensor) -> torch.Tensor:
    return a if a.dim() == 2 else a.flatten(2).mean(2)  # spatial logits: average them


@objective
def class_logit(label: Units, batch: Slots = None, layer: LayerLike = None, output: OutputKey = None) -> PerSlot:
    """Pre-softmax score of class ``label`` (the model output unless ``layer`` says otherwise;
    ``output``: which part of a tuple/dict/``ModelOutput`` the logits are, default its first
    element or its logits)."""

    def values(a: torch.Tensor, idx: Optional[torch.Tensor]) -> torch.Tensor:
        u = unit_index(label, a.shape[0], a.shape[1], "class", layer).to(a.device)
        a = _logits(a)
        return a[_rows(a), u]

    return PerSlot(values, _label("class_logit", layer, label, batch), layer, slots_for(label, batch), output=output)


@objective
def class_probability(label: Units, batch: Slots = None, layer: LayerLike = None, output: OutputKey = None) -> PerSlot:
    """Post-softmax probability of class ``label``: raising it may also mean lowering the others
    (``layer``, ``output``: as for :func:`class_logit`)."""

    def values(a: torch.Tensor, idx: Optional[torch.Tensor]) -> torch.Tensor:
        u = unit_index(label, a.shape[0], a.shape[1], "class", layer).to(a.device)
        a = _logits(a)
        return torch.softmax(a.float(), dim=1)[_rows(a), u]

    return PerSlot(
        values, _label("class_probability", layer, label, batch), layer, slots_for(label, batch), output=output
    )
