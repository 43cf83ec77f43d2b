"""A uniform, seeded, mergeable sample of examples, and the quantile examples read from it."""

from __future__ import annotations

from typing import List, NamedTuple, Sequence

import torch

from ._extremes import lexsort


class Sample:
    """A uniform sample of at most ``size`` examples (all units' values for each), one pass.

    Each example gets a random key and the ``size`` smallest keys are kept (ties: lower index):
    a uniform sample without replacement, whatever the dataset length (bottom-k sampling). The
    key of the example at dataset index ``i`` is the ``i``-th draw of a generator seeded with
    ``seed``: it depends on the seed and the index only, not on batching or on which process
    reads the example, so samples taken by several processes merge into the one-process sample.
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.gen = torch.Generator().manual_seed(seed)
        self.drawn = 0  # keys drawn so far = index of the next key
        self.keys = torch.zeros(0)
        self.index = torch.zeros(0, dtype=torch.long)
        self.values = torch.zeros(0, 0)
        self.pos = torch.zeros(0, 0, dtype=torch.int32)

    def _keys(self, start: int, n: int) -> torch.Tensor:
        """Keys of the examples ``start .. start + n - 1`` (indices only ever increase)."""
        if start < self.drawn:
            raise RuntimeError(f"examples arrived out of order (index {start} after {self.drawn - 1})")
        while self.drawn < start:  # another process's examples: draw their keys, unused
            skip = min(start - self.drawn, 1 << 20)
            torch.rand(skip, generator=self.gen)
            self.drawn += skip
        self.drawn += n
        return torch.rand(n, generator=self.gen)

    def update(self, values: torch.Tensor, index: torch.Tensor, pos: torch.Tensor) -> None:
        """Offer examples ``index`` (consecutive dataset indices) with their values."""
        if self.values.numel() == 0:
            self.values, self.pos = values[:0], pos[:0]
        keys = torch.cat([self.keys, self._keys(int(index[0]), len(index))])
        order = torch.sort(keys, stable=True).indices[: self.size]
        if len(self.keys) == len(order) and bool((order < len(self.keys)).all()):
            return  # nothing new got in
        self.keys = keys[order]
        self.index = torch.cat([self.index, index])[order]
        self.values = torch.cat([self.values, values])[order]
        self.pos = torch.cat([self.pos, pos])[order]

    def tensors(self) -> List[torch.Tensor]:
        return [self.keys, self.index, self.values, self.pos]

    @classmethod
    def merged(cls, size: int, seed: int, parts: Sequence[Sequence[torch.Tensor]]) -> "Sample":
        """The sample one pass over everything would keep: the ``size`` smallest (key, index)
        among the parts' samples (each part's sample holds all of its examples that can be)."""
        out = cls(size, seed)
        parts = [p for p in parts if len(p[0]) > 0]
        if parts:
            keys, index, values, pos = (torch.cat(t) for t in zip(*parts))
            order = lexsort(keys, index, descending=False)[:size]
            out.keys, out.index, out.values, out.pos = keys[order], index[order], values[order], pos[order]
        return out


class Nearest(NamedTuple):
    """Each unit's sample quantiles (U, Q), and the k sampled examples nearest each: dataset
    indices, activations and flat map positions, each (U, Q, k)."""

    values: torch.Tensor
    indices: torch.Tensor
    activations: torch.Tensor
    positions: torch.Tensor


def nearest(sample: Sample, levels: torch.Tensor, k: int) -> Nearest:
    """The sample's quantiles at ``levels`` and the k sampled examples nearest each (ties: lower index)."""
    by_index = torch.argsort(sample.index, stable=True)  # so distance ties go to lower indices
    index, values, pos = sample.index[by_index], sample.values[by_index], sample.pos[by_index]
    n, u = values.shape
    if n == 0 or len(levels) == 0:
        empty = torch.zeros(u, len(levels), 0)
        return Nearest(torch.zeros(u, len(levels)), empty.long(), empty, empty.int())
    q = torch.quantile(values.double(), levels.double(), dim=0)  # (Q, U)
    dist = (values.double()[None] - q[:, None]).abs()  # (Q, n, U)
    order = torch.sort(dist, dim=1, stable=True).indices[:, :k]  # (Q, k, U)

    def pick(t: torch.Tensor) -> torch.Tensor:
        return t[None].expand(len(levels), n, u).gather(1, order).permute(2, 0, 1)

    return Nearest(q.float().T, pick(index[:, None].expand(n, u)), pick(values), pick(pos))
