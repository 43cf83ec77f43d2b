"""Objectives along directions in activation space: a chosen vector over channels, or a random one.

A channel is the direction of one basis vector; the Distill article shows that random directions
are often just as interpretable. ``cossim_pow`` rewards pointing the right way, not just being
large: the value is ``dot * cos^n``.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from ..addressing import LayerLike
from .base import Slots, layer_name
from .factory import PerSlot, objective

Vector = Union[torch.Tensor, Sequence[float]]


def _direction_values(
    a: torch.Tensor, d: torch.Tensor, x: Optional[int], y: Optional[int], cossim_pow: float
) -> torch.Tensor:
    if d.shape[-1] != a.shape[1]:
        raise ValueError(
            f"the direction has {d.shape[-1]} entries but the layer has {a.shape[1]} channels; "
            "give one entry per channel"
        )
    v = a.flatten(2) if a.dim() > 2 else a.unsqueeze(2)  # (N, C, positions)
    if x is not None or y is not None:
        h, w = a.shape[-2:]
        v = a[:, :, h // 2 if y is None else y, w // 2 if x is None else x].unsqueeze(2)
    d = d.to(device=a.device, dtype=a.dtype)
    d = d.expand(a.shape[0], -1) if d.dim() == 1 else d
    dot = torch.einsum("ncp,nc->np", v, d)
    if cossim_pow:
        cos = dot / (v.norm(dim=1) * d.norm(dim=1, keepdim=True) + 1e-6)
        dot = dot * cos.clamp(min=0.1).pow(cossim_pow)  # clamp: keep a gradient when pointing away
    return dot.mean(1)


@objective
def direction(
    layer: LayerLike,
    vector: Vector,
    x: Optional[int] = None,
    y: Optional[int] = None,
    cossim_pow: float = 0.0,
    batch: Slots = None,
) -> PerSlot:
    """Projection of the activation onto ``vector`` (one entry per channel), pooled over positions
    or at ``(x, y)``; a ``(slots, C)`` matrix gives each targeted slot its own direction.

    >>> direction("_blocks.8", torch.randn(112), cossim_pow=1.0)
    Objective(direction('_blocks.8'))
    """
    d = torch.as_tensor(vector, dtype=torch.float32)
    if d.dim() == 2 and batch is None:
        batch = list(range(d.shape[0]))

    def values(a: torch.Tensor, idx: Optional[torch.Tensor]) -> torch.Tensor:
        return _direction_values(a, d, x, y, cossim_pow)

    return PerSlot(values, f"direction({layer_name(layer)})", layer, batch)


@objective
def random_direction(
    layer: LayerLike,
    seed: int = 0,
    x: Optional[int] = None,
    y: Optional[int] = None,
    cossim_pow: float = 0.0,
    batch: Slots = None,
) -> PerSlot:
    """A seeded random unit direction over the layer's channels (drawn once the size is known).

    The drawn vector is kept in ``.direction["d"]``, for inspection.
    """
    state = {}

    def values(a: torch.Tensor, idx: Optional[torch.Tensor]) -> torch.Tensor:
        if "d" not in state:
            g = torch.Generator().manual_seed(seed)  # local: the global RNG stays untouched
            d = torch.randn(a.shape[1], generator=g)
            state["d"] = d / d.norm()
        return _direction_values(a, state["d"], x, y, cossim_pow)

    name = f"random_direction({layer_name(layer)}, seed={seed})"
    return PerSlot(values, name, layer, batch, attributes={"direction": state})
