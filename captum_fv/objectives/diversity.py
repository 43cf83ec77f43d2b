"""Diversity: push a batch's images apart by penalizing how alike their Gram matrices are.

The Gram matrix of a layer's activation (channel x channel correlations over positions) describes
the *style* of what the layer sees, not where; two facets of a unit that share a style are the
same facet drawn twice.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from ..addressing import LayerLike
from .base import layer_name
from .factory import PerSlot, objective


def gram(a: torch.Tensor) -> torch.Tensor:
    """Gram matrices (N, C, C) of activations (N, C, ...), averaged over positions."""
    v = a.flatten(2) if a.dim() > 2 else a.unsqueeze(2)
    return v @ v.transpose(1, 2) / v.shape[2]


def similarity(a: torch.Tensor) -> torch.Tensor:
    """Cosine similarity (N, N) of the flattened Gram matrices of activations ``a``."""
    g = F.normalize(gram(a).flatten(1), dim=1)
    return g @ g.T


@objective
def diversity(layer: LayerLike, groups: Optional[Sequence[Sequence[int]]] = None) -> PerSlot:
    """Minus each slot's mean Gram cosine similarity to the other slots of its group.

    Maximized with the unit objective, it makes facets differ. ``groups`` lists the slots that
    must differ from each other (default: the whole batch); slots in no group score 0.

    >>> obj.channel("_blocks.8", 3) + 0.5 * obj.diversity("_blocks.8")
    Objective((channel('_blocks.8', 3) + 0.5 * diversity('_blocks.8')))
    """

    def values(a: torch.Tensor, _: None) -> torch.Tensor:  # the whole batch: slots compare
        n = a.shape[0]
        gid = torch.full((n,), -1, dtype=torch.long, device=a.device)
        for i, slots in enumerate(groups if groups is not None else [range(n)]):
            gid[torch.as_tensor(list(slots), dtype=torch.long, device=a.device)] = i
        same = (gid[:, None] == gid[None, :]) & (gid[:, None] >= 0)
        same.fill_diagonal_(False)
        sim = similarity(a.float())
        return -(sim * same).sum(1) / same.sum(1).clamp(min=1)

    need = 1 + max((max(s) for s in groups if len(s)), default=0) if groups else 1
    return PerSlot(values, f"diversity({layer_name(layer)})", layer, min_batch=need)
