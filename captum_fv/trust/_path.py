"""The path similarity of Geirhos et al. (ICML 2024): does the network process the picture the way
it processes the unit's top natural examples, at every layer on the way to the unit?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from ..addressing import LayerLike
from ._features import ForwardFunc, as_images, path_layers, set_features


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of every row of ``a`` (N, C) with every row of ``b`` (M, C):
    (N, M), ties given their average rank; a constant row correlates 0 with anything."""
    from scipy.stats import rankdata  # here, not at import: scipy.stats alone takes ~0.7 s to import

    ra = torch.from_numpy(rankdata(a.double().numpy(), axis=1)).double()
    rb = torch.from_numpy(rankdata(b.double().numpy(), axis=1)).double()
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    na, nb = ra.norm(dim=1, keepdim=True), rb.norm(dim=1, keepdim=True)
    rho = (ra @ rb.T) / (na * nb.T).clamp_min(1e-12)
    return rho.float()


@dataclass(frozen=True)
class PathSimilarity:
    """Per layer (input side first, the unit's layer last): the mean Spearman correlation of the
    inputs' channel-mean vectors with those of the unit's top natural examples (``top``) and of
    random natural examples (``random``); ``summary``: the mean of ``top - random`` over layers
    (> 0: the picture travels the network like the unit's top examples, not like any photo)."""

    layers: List[str]
    top: List[float]
    random: List[float]
    summary: float

    def to_dict(self) -> Dict[str, Any]:
        return {
            "layers": list(self.layers),
            "top": [float(v) for v in self.top],
            "random": [float(v) for v in self.random],
            "summary": float(self.summary),
        }


def path_from_features(
    inputs: Dict[str, torch.Tensor], top: Dict[str, torch.Tensor], random: Dict[str, torch.Tensor], layers: List[str]
) -> PathSimilarity:
    """The path similarity from channel-mean features ``{layer: (N, C)}`` of the three sets."""
    to_top = [float(spearman(inputs[k], top[k]).mean()) for k in layers]
    to_random = [float(spearman(inputs[k], random[k]).mean()) for k in layers]
    gap = float(np.mean([t - r for t, r in zip(to_top, to_random)])) if layers else 0.0
    return PathSimilarity(list(layers), to_top, to_random, gap)


def path_similarity(
    forward_func: ForwardFunc,
    layer: LayerLike,
    inputs: torch.Tensor,
    top: torch.Tensor,
    random: torch.Tensor,
    layers: Optional[Sequence[str]] = None,
) -> PathSimilarity:
    """The path similarity of ``inputs`` to ``top`` natural examples vs ``random`` ones at
    ``layers`` (default: :func:`captum_fv.trust.path_layers` of ``layer``), one hooked model."""
    x = as_images(inputs).detach().float()
    names = list(layers) if layers is not None else path_layers(forward_func, layer, probe=x[:1])
    feats = set_features(forward_func, names, [x, top, random])
    return path_from_features(*feats, names)
