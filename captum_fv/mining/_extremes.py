"""Streaming top-k / bottom-k per unit, and their exact merge across passes over disjoint data."""

from __future__ import annotations

from typing import List, Sequence

import torch


def lexsort(primary: torch.Tensor, index: torch.Tensor, descending: bool) -> torch.Tensor:
    """Order along dim 0 by ``primary`` (per column), ties by lower ``index``."""
    by_index = torch.sort(index, dim=0, stable=True).indices
    order = torch.sort(primary.gather(0, by_index), dim=0, descending=descending, stable=True).indices
    return by_index.gather(0, order)


class Extremes:
    """Running top-k (or bottom-k) per unit over a stream of batches.

    A stable sort of [kept; new] keeps ties in dataset-index order: the kept rows are already in
    that order and precede every new row. (``torch.topk`` promises no order among ties.)
    """

    def __init__(self, k: int, largest: bool) -> None:
        self.k, self.largest = k, largest
        self.values = torch.zeros(0, 0)
        self.index = torch.zeros(0, 0, dtype=torch.long)
        self.pos = torch.zeros(0, 0, dtype=torch.int32)

    def update(self, values: torch.Tensor, index: torch.Tensor, pos: torch.Tensor) -> None:
        """Offer examples ``index`` (B,) with their values and flat positions, each (B, U)."""
        if self.values.numel() == 0:
            self.values = values[:0]
            self.index = torch.zeros(0, values.shape[1], dtype=torch.long)
            self.pos = pos[:0]
        v = torch.cat([self.values, values])
        i = torch.cat([self.index, index[:, None].expand_as(values)])
        p = torch.cat([self.pos, pos])
        order = torch.sort(v, dim=0, descending=self.largest, stable=True).indices[: self.k]
        self.values, self.index, self.pos = v.gather(0, order), i.gather(0, order), p.gather(0, order)

    def tensors(self) -> List[torch.Tensor]:
        return [self.values, self.index, self.pos]

    @classmethod
    def merged(cls, k: int, largest: bool, parts: Sequence[Sequence[torch.Tensor]]) -> "Extremes":
        """The state one pass over everything would have: each part is another pass's
        ``tensors()`` over disjoint examples. A part's top-k holds every one of its examples that
        can be in the overall top-k, and sorting by (value, then lower index) is the stream's
        order, so the result is exact, ties included."""
        out = cls(k, largest)
        parts = [p for p in parts if p[0].shape[0] > 0]
        if parts:
            v, i, p = (torch.cat(t) for t in zip(*parts))
            order = lexsort(v, i, descending=largest)[:k]
            out.values, out.index, out.pos = v.gather(0, order), i.gather(0, order), p.gather(0, order)
        return out
