"""Penalties on the image itself. Each returns a **cost** (>= 0) per slot: subtract it from the
objective you maximize, e.g. ``channel(...) - 0.05 * l1() - 0.25 * total_variation()``."""

from __future__ import annotations

import torch

from ..transforms import gaussian_blur
from .base import Slots
from .factory import PerSlot, objective


@objective
def l1(constant: float = 0.5, batch: Slots = None) -> PerSlot:
    """Mean absolute distance of the pixels from ``constant`` (0.5: middle gray)."""
    return PerSlot(lambda x, _: (x - constant).abs().flatten(1).mean(1), f"l1({constant})", slots=batch, on_images=True)


@objective
def l2(constant: float = 0.5, batch: Slots = None) -> PerSlot:
    """Root mean squared distance of the pixels from ``constant``."""
    return PerSlot(
        lambda x, _: (x - constant).pow(2).flatten(1).mean(1).add(1e-12).sqrt(),
        f"l2({constant})",
        slots=batch,
        on_images=True,
    )


def _tv(x: torch.Tensor) -> torch.Tensor:
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
    return dx + dy


@objective
def total_variation(batch: Slots = None) -> PerSlot:
    """Mean absolute difference between neighbouring pixels: high for high-frequency noise."""
    return PerSlot(lambda x, _: _tv(x), "total_variation", slots=batch, on_images=True)


@objective
def blur(sigma: float = 1.0, batch: Slots = None) -> PerSlot:
    """Squared distance of the image from a blurred copy of itself (held constant), which pulls
    it towards its own blur a little each step."""

    def values(x: torch.Tensor, _) -> torch.Tensor:
        return 0.5 * (x - gaussian_blur(x.detach(), sigma)).pow(2).flatten(1).mean(1)

    return PerSlot(values, f"blur({sigma})", slots=batch, on_images=True)
