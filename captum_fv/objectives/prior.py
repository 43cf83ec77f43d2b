"""A dataset prior (the "learned prior" family; VITAL, Gorgun et al., ICCV 2025): a cost pulling
an image's feature statistics towards those of natural reference images.

Per channel of a layer, the image's activation values are sorted and compared with the sorted
values of the references (resampled to the same count): the 1-D optimal-transport distance
between the two distributions. It is 0 when they match and positive otherwise, so it is a cost:
subtract it, ``channel("_blocks.8", 3) - 0.5 * feature_prior("_blocks.8", reference)``.

>>> ref = sorted_reference(fv.activations(model, "_blocks.8", images))  # e.g. top dataset examples
>>> cost = feature_prior("_blocks.8", ref)
"""

from __future__ import annotations

from typing import Optional

import torch

from ..addressing import LayerLike
from .base import Slots, layer_name
from .factory import PerSlot, objective

_EPS = 1e-8


def as_maps(acts: torch.Tensor) -> torch.Tensor:
    """(N, C, ...) activations as (N, C, positions); a 1-D layer (N, C) has one position."""
    return acts.flatten(2) if acts.dim() > 2 else acts.reshape(acts.shape[0], -1, 1)


def sorted_reference(acts: torch.Tensor) -> torch.Tensor:
    """Reference activations (N, C, ...) of N images -> (C, M): each channel's values over every
    image and position, sorted (M = N x positions). Detached: the references are constants."""
    maps = as_maps(acts.detach().float())
    return maps.transpose(0, 1).reshape(maps.shape[1], -1).sort(dim=1).values


def resample_sorted(values: torch.Tensor, n: int) -> torch.Tensor:
    """Sorted values (..., M) at ``n`` evenly spaced quantiles (..., n), linearly interpolated;
    unchanged when M == n (so an image compared with itself scores exactly 0)."""
    m = values.shape[-1]
    if m == n:
        return values
    pos = ((torch.arange(n, device=values.device, dtype=torch.float32) + 0.5) * m / n - 0.5).clamp(0, m - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=m - 1)
    w = (pos - lo).to(values.dtype)
    return values[..., lo] * (1 - w) + values[..., hi] * w


def sorted_distance(acts: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per row of ``acts`` (B, C, ...): the mean squared difference of its sorted channel values
    and the reference's (``reference`` (C, M) shared or (B, C, M) per row), divided by the
    reference's mean per-channel variance so that layers of any scale weigh alike. (B,)"""
    x = as_maps(acts).sort(dim=-1).values
    ref = reference.to(device=x.device, dtype=x.dtype)
    if ref.shape[-2] != x.shape[1]:
        raise ValueError(f"the reference has {ref.shape[-2]} channels but the layer gives {x.shape[1]}")
    ref = ref.unsqueeze(0) if ref.dim() == 2 else ref
    scale = ref.var(dim=-1, unbiased=False).mean(-1).clamp(min=_EPS)  # (1 or B,)
    return (x - resample_sorted(ref, x.shape[-1])).pow(2).mean((1, 2)) / scale


@objective
def feature_prior(layer: LayerLike, reference: torch.Tensor, batch: Slots = None) -> PerSlot:
    """The distance of the layer's per-channel activation distributions to ``reference`` (from
    :func:`sorted_reference`): (C, M) for every slot, or (S, C, M), one per targeted slot in
    ``batch`` order. 0 at a match, positive otherwise: a cost to subtract."""
    reference = reference.detach()
    if reference.dim() not in (2, 3):
        raise ValueError(f"reference must be (C, M) or (S, C, M), got shape {tuple(reference.shape)}")

    def values(a: torch.Tensor, idx: Optional[torch.Tensor]) -> torch.Tensor:
        if reference.dim() == 3 and reference.shape[0] != a.shape[0]:
            raise ValueError(
                f"{reference.shape[0]} references for {a.shape[0]} slots; give one per "
                "targeted slot, or a (C, M) reference shared by every slot"
            )
        return sorted_distance(a, reference)

    return PerSlot(values, f"feature_prior({layer_name(layer)})", layer, batch)
