"""How much a unit changed across checkpoints: pure functions of the per-checkpoint results.

* similarity: cosine of each checkpoint's optimum to the final checkpoint's optimum, both read as
  channel-mean activation vectors at the unit's layer *in the final checkpoint* (one feature
  space for every optimum, so the numbers compare images, not weights), taken relative to the
  layer's mean vector over the dataset (see ``FeatureEvolution``);
* overlap: the share of a checkpoint's top-k dataset examples that the next checkpoint keeps;
* settled: the first checkpoint from which the similarity stays at or above a threshold;
* change: the mean of ``1 - similarity`` over the checkpoints before the final one (two
  checkpoints: ``1 - similarity`` of the first), what the index is sorted by.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence

import torch

#: A unit counts as settled from the first checkpoint whose similarity to the final optimum stays
#: at or above this.
SETTLED = 0.9


class Measures(NamedTuple):
    """A unit's change numbers, one entry per checkpoint (``overlap[i]``: checkpoint ``i`` vs ``i-1``,
    None for the first)."""

    similarity: List[float]
    overlap: List[Optional[float]]
    settled: int  # index of the first checkpoint from which similarity >= SETTLED
    change: float


def channel_means(acts: torch.Tensor) -> torch.Tensor:
    """(N, C, ...) layer activations -> (N, C) means over every position."""
    return acts.flatten(2).mean(-1) if acts.dim() > 2 else acts


def similarity_to_final(vectors: torch.Tensor) -> List[float]:
    """Cosine similarity of each row of ``vectors`` (N, C) to its last row."""
    v = vectors.double()
    return torch.nn.functional.cosine_similarity(v, v[-1:].expand_as(v), dim=1, eps=1e-12).tolist()


def overlaps(tops: Sequence[Sequence[int]]) -> List[Optional[float]]:
    """|top_i ∩ top_{i-1}| / k for each checkpoint after the first (None for the first)."""
    out: List[Optional[float]] = [None]
    for prev, cur in zip(tops, tops[1:]):
        k = max(len(cur), 1)
        out.append(len(set(prev) & set(cur)) / k)
    return out


def settled_at(similarity: Sequence[float], threshold: float = SETTLED) -> int:
    """The first index from which every similarity is >= ``threshold`` (the last one, at worst)."""
    first = len(similarity) - 1
    for i in range(len(similarity) - 1, -1, -1):
        if similarity[i] < threshold - 1e-9:
            break
        first = i
    return first


def change(similarity: Sequence[float]) -> float:
    """Mean of ``1 - similarity`` over the checkpoints before the final one (0 for one checkpoint)."""
    before = list(similarity[:-1])
    return float(sum(1 - s for s in before) / len(before)) if before else 0.0


def measure(vectors: torch.Tensor, tops: Sequence[Sequence[int]], threshold: float = SETTLED) -> Measures:
    """Every change number of one unit from its optima's channel-mean vectors in the final
    checkpoint (N, C) and its top-k example indices per checkpoint."""
    sim = similarity_to_final(vectors)
    return Measures(sim, overlaps(tops), settled_at(sim, threshold), change(sim))
