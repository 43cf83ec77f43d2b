"""The machine interpretability score (Zimmermann et al., NeurIPS 2024): a simulated
two-alternative forced choice. Shown reference explanations of a unit (what drives it up, and
optionally what drives it down), which of two natural queries, one of its top and one of its
bottom examples, is the one that excites it? The machine answers from image similarity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from ._features import ForwardFunc, layer_features

#: Trials per unit and references per side, as in the paper.
TRIALS = 20
REFERENCES = 9
#: Natural examples of each side the trust block needs: 9 references + 20 queries.
MIN_EXAMPLES = REFERENCES + TRIALS
#: Scale of the similarity gap in the sigmoid: p(correct) = sigmoid(gap / MIS_SCALE). Cosine
#: similarities of channel-mean features differ by 0.01-0.2 between an EfficientNet unit's top
#: and bottom examples; 0.05 puts a gap of 0.05 at 73% and one of 0.15 at 95%.
MIS_SCALE = 0.05

Similarity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class FeatureSimilarity:
    """The default similarity: cosine of the audited model's own channel-mean features at
    ``layer``: a proxy for the paper's DreamSim, which needs weights we do not ship. Called with
    two image batches, returns their (N, M) similarity matrix; :meth:`embed` gives the features."""

    def __init__(self, forward_func: ForwardFunc, layer: Any, batch_size: int = 32) -> None:
        self.forward_func, self.layer, self.batch_size = forward_func, layer, batch_size

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        feats = next(iter(layer_features(self.forward_func, [self.layer], images, self.batch_size).values()))
        return torch.nn.functional.normalize(feats, dim=1)

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.embed(a) @ self.embed(b).T


@dataclass(frozen=True)
class Trial:
    """One 2AFC trial: a top and a bottom query, and the natural references that may be shown
    with them (indices into the top and bottom pools)."""

    query_top: int
    query_bottom: int
    refs_top: List[int]
    refs_bottom: List[int]
    leak_free: bool  # no reference shares a source image with either query


def _refs(
    n: int, exclude: set, groups: Optional[Sequence[Any]], banned: set, k: int, rng: np.random.Generator
) -> tuple:
    """``k`` pool indices not in ``exclude`` nor (when possible) from the ``banned`` groups."""
    free = [i for i in range(n) if i not in exclude]
    clean = [i for i in free if groups is None or groups[i] not in banned]
    ok = len(clean) >= min(k, len(free)) and bool(clean)
    pick = clean if ok else free
    return sorted(rng.choice(pick, size=min(k, len(pick)), replace=False).tolist()), ok


def plan_trials(
    n_top: int,
    n_bottom: int,
    top_groups: Optional[Sequence[Any]] = None,
    bottom_groups: Optional[Sequence[Any]] = None,
    trials: int = TRIALS,
    references: int = REFERENCES,
    seed: int = 0,
) -> List[Trial]:
    """Seeded trials: each takes a top and a bottom query (distinct across trials while the pools
    last) and ``references`` natural references a side from the rest of each pool, from other
    source images than the queries' where ``groups`` (which image each example came from)
    leaves enough."""
    if n_top < 2 or n_bottom < 2:
        raise ValueError(f"the 2AFC needs at least 2 top and 2 bottom examples, got {n_top} and {n_bottom}")
    rng = np.random.default_rng(seed)
    qt = rng.permutation(n_top)[:trials]
    qb = rng.permutation(n_bottom)[:trials]
    out = []
    for t in range(trials):
        a, b = int(qt[t % len(qt)]), int(qb[t % len(qb)])
        banned = {
            x
            for x in (
                (top_groups[a] if top_groups is not None else None),
                (bottom_groups[b] if bottom_groups is not None else None),
            )
            if x is not None
        }
        rt, ok_t = _refs(n_top, {a}, top_groups, banned, references, rng)
        rb, ok_b = _refs(n_bottom, {b}, bottom_groups, banned, references, rng)
        out.append(Trial(a, b, rt, rb, ok_t and ok_b))
    return out


def trial_probability(
    q_top: torch.Tensor,
    q_bottom: torch.Tensor,
    e_top: torch.Tensor,
    e_bottom: Optional[torch.Tensor],
    scale: float = MIS_SCALE,
) -> float:
    """p(correct) of one trial from unit-norm features: the gap between how much more the top
    query resembles the top references than the bottom ones, and the same for the bottom query;
    without bottom references, the gap in resemblance to the top references alone."""

    def side(q: torch.Tensor) -> torch.Tensor:
        s = (q @ e_top.T).mean()
        return s - (q @ e_bottom.T).mean() if e_bottom is not None and len(e_bottom) else s

    gap = float(side(q_top) - side(q_bottom))
    return float(1.0 / (1.0 + np.exp(-gap / scale)))


@dataclass(frozen=True)
class MIS:
    """A machine interpretability score: the mean p(correct) over ``probabilities`` (one per
    trial); 0.5 is chance, 1 a unit the explanations make perfectly predictable."""

    score: float
    probabilities: List[float]
    leak_free: float  # fraction of trials whose references avoid the queries' source images

    def to_dict(self) -> Dict[str, Any]:
        return {
            "score": float(self.score),
            "probabilities": [float(p) for p in self.probabilities],
            "leak_free": float(self.leak_free),
        }


def mis(
    top_features: torch.Tensor,
    bottom_features: torch.Tensor,
    trials: Sequence[Trial],
    explanations: Optional[torch.Tensor] = None,
    negative_explanations: Optional[torch.Tensor] = None,
    scale: float = MIS_SCALE,
) -> MIS:
    """The score over ``trials`` from unit-norm features of the top and bottom pools.

    ``explanations`` (and ``negative_explanations``): features of fixed reference images (the
    visualizations); None means natural explanations: each trial's own references from the
    pools. The queries are always the trials' natural examples."""
    probs = []
    for t in trials:
        if explanations is None:
            e_top, e_bottom = top_features[t.refs_top], bottom_features[t.refs_bottom]
        else:
            e_top, e_bottom = explanations, negative_explanations
        probs.append(
            trial_probability(top_features[t.query_top], bottom_features[t.query_bottom], e_top, e_bottom, scale)
        )
    leak = float(np.mean([t.leak_free for t in trials])) if explanations is None else 1.0
    return MIS(float(np.mean(probs)), probs, leak)
