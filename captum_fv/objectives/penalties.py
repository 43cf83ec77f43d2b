"""Penalties on the image itself. Each returns a **cost** (>= 0) per slot: subtract it from the
objective you maximize, e.g. ``channel(...) - 0.05 * l1() - 0.25 * total_variation()``."""
from __future__ import annotations

import torch

from .base import Objective, Slots, min_batch_for, per_slot


def l1(constant: float = 0.5, batch: Slots = None) -> Objective:
    """Mean absolute distance of the pixels from ``constant`` (0.5: middle gray)."""
    return Objective(
        lambda ctx: per_slot(lambda x, _: (x - constant).abs().flatten(1).mean(1), ctx.images, batch),
        (),
        f"l1({constant})",
        min_batch_for(batch),
    )


def l2(constant: float = 0.5, batch: Slots = None) -> Objective:
    """Root mean squared distance of the pixels from ``constant``."""
    return Objective(
        lambda ctx: per_slot(
            lambda x, _: (x - constant).pow(2).flatten(1).mean(1).add(1e-12).sqrt(), ctx.images, batch
        ),
        (),
        f"l2({constant})",
        min_batch_for(batch),
    )


def _tv(x: torch.Tensor) -> torch.Tensor:
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
    return dx + dy


def total_variation(batch: Slots = None) -> Objective:
    """Mean absolute difference between neighbouring pixels: high for high-frequency noise."""
    return Objective(
        lambda ctx: per_slot(lambda x, _: _tv(x), ctx.images, batch),
        (),
        "total_variation",
        min_batch_for(batch),
    )


def blur(sigma: float = 1.0, batch: Slots = None) -> Objective:
    """Squared distance of the image from a blurred copy of itself (held constant), which pulls
    it towards its own blur a little each step."""
    from ..transforms import gaussian_blur

    def values(x: torch.Tensor, _) -> torch.Tensor:
        return 0.5 * (x - gaussian_blur(x.detach(), sigma)).pow(2).flatten(1).mean(1)

    return Objective(
        lambda ctx: per_slot(values, ctx.images, batch), (), f"blur({sigma})", min_batch_for(batch)
    )
