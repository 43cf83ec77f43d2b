"""Neuron interaction: a batch sweeping from unit A to unit B, and an alignment term that keeps
neighbouring frames alike so the sweep reads as one image morphing."""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..addressing import LayerLike
from .base import layer_name, min_batch_for
from .factory import PerSlot, objective
from .units import unit_index


@objective
def channel_interpolate(layer: LayerLike, unit_a: int, unit_b: int, batch: Optional[Sequence[int]] = None) -> PerSlot:
    """Slot i of n maximizes ``(1 - t) * channel A + t * channel B`` with ``t = i / (n - 1)``.

    Use with a parameterization shared across the batch (``param.image(..., shared=True)``).
    """

    def values(a: torch.Tensor, _: None) -> torch.Tensor:  # the whole batch: t runs over it
        slots = (
            torch.arange(a.shape[0], device=a.device)
            if batch is None
            else torch.as_tensor(list(batch), device=a.device)
        )
        n = len(slots)
        units = unit_index([unit_a, unit_b], 2, a.shape[1], "channel", layer).tolist()
        pooled = a[slots][:, units].flatten(2).mean(2)  # (n, 2)
        t = torch.linspace(0, 1, n, device=a.device, dtype=pooled.dtype) if n > 1 else pooled.new_zeros(1)
        v = (1 - t) * pooled[:, 0] + t * pooled[:, 1]
        return torch.zeros(a.shape[0], dtype=v.dtype, device=a.device).index_add(0, slots, v)

    name = f"channel_interpolate({layer_name(layer)}, {unit_a}->{unit_b})"
    return PerSlot(values, name, layer, min_batch=min_batch_for(None if batch is None else list(batch)))


@objective
def alignment(layer: LayerLike, decay_ratio: float = 2.0, reach: int = 4) -> PerSlot:
    """Cost: how much each frame's activation differs from the next ``reach`` frames, weighted
    ``decay_ratio ** -(distance - 1)``. Subtract it: ``interp - 0.1 * alignment(layer)``."""

    def values(a: torch.Tensor, _: None) -> torch.Tensor:  # the whole batch: frames compare
        a = a.flatten(1)
        cost = torch.zeros(a.shape[0], dtype=a.dtype, device=a.device)
        for d in range(1, min(reach, a.shape[0] - 1) + 1):
            diff = (a[d:] - a[:-d]).pow(2).mean(1) * decay_ratio ** -(d - 1)
            cost = cost.index_add(0, torch.arange(d, a.shape[0], device=a.device), diff / 2)
            cost = cost.index_add(0, torch.arange(0, a.shape[0] - d, device=a.device), diff / 2)
        return cost

    return PerSlot(values, f"alignment({layer_name(layer)})", layer)
