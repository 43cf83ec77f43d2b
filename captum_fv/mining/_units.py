"""Every mined unit's value, peak and trough position on a layer output, in one go."""

from __future__ import annotations

from typing import Any, List, NamedTuple, Optional, Tuple

import torch

from ..unit import Unit, as_units


class UnitStats(NamedTuple):
    """Per example and unit, each (B, U): the unit's value, and the flat map index of its peak
    and of its trough (-1 where a unit has no map)."""

    values: torch.Tensor
    peak: torch.Tensor
    trough: torch.Tensor


class UnitReader:
    """Reads the mined units of a layer whose output (no batch dim) has ``layer_shape``.

    Channel units (ints, ``channel(c)``) are vectorized: spatial mean and arg-max/min of the map
    for all of them at once. Other units go through :meth:`Unit.value` and have no position.
    ``selectors``: None for every channel, else what the user passed (see :func:`as_units`).
    """

    def __init__(self, selectors: Optional[Any], layer_shape: Tuple[int, ...], layer: str) -> None:
        if len(layer_shape) < 1:
            raise ValueError(
                f"layer {layer!r} outputs one value per example; there are no units to mine, pick a layer with channels"
            )
        n_channels = layer_shape[0]
        self.layer_shape = tuple(layer_shape)
        self.map_shape = tuple(layer_shape[1:])
        self.units: List[Unit] = as_units(range(n_channels) if selectors is None else selectors)
        #: What the user passed, one per unit (ints for "every channel").
        self.selectors: List[Any] = [u.selector for u in self.units]
        for u in self.units:
            u.check(self.layer_shape, layer)
        channels = [u.kind == "channel" for u in self.units]
        self.chan_rows = [i for i, c in enumerate(channels) if c]
        self.chan_index = torch.tensor([u.channel for u in self.units if u.kind == "channel"], dtype=torch.long)
        every = list(range(n_channels))
        self.all_channels = len(self.units) == n_channels and self.chan_index.tolist() == every
        self.others = [(i, u) for i, u in enumerate(self.units) if u.kind != "channel"]
        self.has_position = torch.tensor([c and bool(self.map_shape) for c in channels])

    def __call__(self, acts: torch.Tensor) -> UnitStats:
        """The stats of every unit on a layer output ``(B, ...)``."""
        b, n = acts.shape[0], len(self.units)
        if self.all_channels:
            return channel_stats(acts)
        values = acts.new_zeros(b, n, dtype=torch.float32)
        hi = torch.full((b, n), -1, dtype=torch.int32, device=acts.device)
        lo = hi.clone()
        if self.chan_rows:
            rows = torch.tensor(self.chan_rows, device=acts.device)
            v, a, z = channel_stats(acts[:, self.chan_index.to(acts.device)])
            values[:, rows], hi[:, rows], lo[:, rows] = v, a, z
        for row, unit in self.others:
            values[:, row] = unit.value(acts).float()
        return UnitStats(values, hi, lo)


def channel_stats(acts: torch.Tensor) -> UnitStats:
    """Per channel: spatial mean (the channel selector's value), flat arg-max and arg-min."""
    if acts.dim() == 2:  # (B, C): each channel is one neuron, no map
        none = torch.full(acts.shape, -1, dtype=torch.int32, device=acts.device)
        return UnitStats(acts.float(), none, none.clone())
    flat = acts.flatten(2)
    return UnitStats(flat.mean(2).float(), flat.argmax(2).int(), flat.argmin(2).int())


def unravel(flat: torch.Tensor, shape: Tuple[int, ...]) -> torch.Tensor:
    """Flat map indices (...,) to coordinates (..., d); -1 stays -1."""
    coords = []
    rest = flat.long()
    for size in reversed(shape):
        coords.append(rest % size)
        rest = rest // size
    out = torch.stack(coords[::-1], -1) if coords else flat.long()[..., None][..., :0]
    return torch.where(flat.long()[..., None] < 0, torch.full_like(out, -1), out)
