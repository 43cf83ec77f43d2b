"""Neuron interaction: a batch sweeping from unit A to unit B, and an alignment term that keeps
neighbouring frames alike so the sweep reads as one image morphing."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..addressing import LayerLike
from .base import Objective, min_batch_for
from .units import _name, _unit_index


def channel_interpolate(
    layer: LayerLike, unit_a: int, unit_b: int, batch: Optional[Sequence[int]] = None
) -> Objective:
    """Slot i of n maximizes ``(1 - t) * channel A + t * channel B`` with ``t = i / (n - 1)``.

    Use with a parameterization shared across the batch (``param.image(..., shared=True)``).
    """

    def fn(ctx) -> torch.Tensor:
        a = ctx.acts(layer)
        slots = torch.arange(a.shape[0], device=a.device) if batch is None else torch.as_tensor(
            list(batch), device=a.device
        )
        n = len(slots)
        units = _unit_index([unit_a, unit_b], 2, a.shape[1], "channel", layer).tolist()
        pooled = a[slots][:, units].flatten(2).mean(2)  # (n, 2)
        t = torch.linspace(0, 1, n, device=a.device, dtype=pooled.dtype) if n > 1 else pooled.new_zeros(1)
        v = (1 - t) * pooled[:, 0] + t * pooled[:, 1]
        return torch.zeros(a.shape[0], dtype=v.dtype, device=a.device).index_add(0, slots, v)

    return Objective(
        fn,
        [layer],
        f"channel_interpolate({_name(layer)}, {unit_a}->{unit_b})",
        min_batch_for(None if batch is None else list(batch)),
    )


def alignment(layer: LayerLike, decay_ratio: float = 2.0, reach: int = 4) -> Objective:
    """Cost: how much each frame's activation differs from the next ``reach`` frames, weighted
    ``decay_ratio ** -(distance - 1)``. Subtract it: ``interp - 0.1 * alignment(layer)``."""

    def fn(ctx) -> torch.Tensor:
        a = ctx.acts(layer).flatten(1)
        cost = torch.zeros(a.shape[0], dtype=a.dtype, device=a.device)
        for d in range(1, min(reach, a.shape[0] - 1) + 1):
            diff = (a[d:] - a[:-d]).pow(2).mean(1) * decay_ratio ** -(d - 1)
            cost = cost.index_add(0, torch.arange(d, a.shape[0], device=a.device), diff / 2)
            cost = cost.index_add(0, torch.arange(0, a.shape[0] - d, device=a.device), diff / 2)
        return cost

    return Objective(fn, [layer], f"alignment({_name(layer)})")
