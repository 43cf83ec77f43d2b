"""``score``: every trust measure of one unit's pictures, and the record they go into."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from ..addressing import OUTPUT, LayerLike, resolve_layer
from ..items import image_of
from ..mining import DatasetExamples, ExampleSet
from ..modelinfo import module_of
from ..unit import Selector, Unit
from ..visualization import activations
from ._features import ForwardFunc, as_images, default_feature_layer, layer_features, path_layers
from ._mis import MIN_EXAMPLES, MIS, FeatureSimilarity, Similarity, mis, plan_trials
from ._path import PathSimilarity, path_from_features
from ._verdict import Verdict, verdict


@dataclass(frozen=True)
class ClassAgreement:
    """For a class unit: does each model (``"model"`` is the audited one, then the transfer
    models in order) put the class first (``top1``) or among its five best (``top5``), as a
    fraction of the inputs?"""

    class_index: int
    models: List[str]
    top1: List[float]
    top5: List[float]

    def to_dict(self) -> Dict[str, Any]:
        return {
            "class_index": self.class_index,
            "models": list(self.models),
            "top1": [float(v) for v in self.top1],
            "top5": [float(v) for v in self.top5],
        }


@dataclass(frozen=True)
class TrustRecord:
    """How far to believe one unit's pictures (see the README, "How far to trust a picture").

    ``ratios``: each input's activation over the best natural one (``ratio``: their mean);
    ``path``: the Geirhos path similarity; ``mis_fv`` / ``mis_natural``: the machine
    interpretability score with the pictures / natural examples as explanations; ``classes``:
    for class units; ``verdict`` and ``reason``; ``similarity``: what judged image similarity."""

    unit: str
    layer: str
    ratios: List[float]
    ratio: Optional[float]
    path: PathSimilarity
    mis_fv: MIS
    mis_natural: MIS
    verdict: str
    reason: str
    similarity: str
    n_top: int
    n_bottom: int
    classes: Optional[ClassAgreement] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def path_similarity(self) -> float:
        return self.path.summary

    def to_dict(self) -> Dict[str, Any]:
        """Floats, lists and strings only: the ``"trust"`` entry of a unit's JSON."""
        return {
            "unit": self.unit,
            "layer": self.layer,
            "ratio": None if self.ratio is None else float(self.ratio),
            "ratios": [float(r) for r in self.ratios],
            "path_similarity": self.path.to_dict(),
            "mis_fv": self.mis_fv.to_dict(),
            "mis_natural": self.mis_natural.to_dict(),
            "verdict": self.verdict,
            "reason": self.reason,
            "similarity": self.similarity,
            "n_top": self.n_top,
            "n_bottom": self.n_bottom,
            "classes": None if self.classes is None else self.classes.to_dict(),
        }


@dataclass(frozen=True)
class NaturalPools:
    """The natural images the measures compare with: the unit's top and bottom examples (best
    first) with the source image of each (``None``: unknown), and a seeded random sample."""

    top: torch.Tensor
    bottom: torch.Tensor
    best: float
    top_groups: Optional[List[Any]]
    bottom_groups: Optional[List[Any]]
    random: torch.Tensor


def _dataset_groups(data: Any, groups: Optional[Sequence[Any]]) -> Optional[Sequence[Any]]:
    """Which source image each dataset item came from: ``groups`` if given, else the dataset's
    ``.groups``, else its ``.labels`` (for :func:`captum_fv.data.sample_images`, the photo)."""
    if groups is not None:
        return groups
    return getattr(data, "groups", None) or getattr(data, "labels", None)


def natural_pools(
    forward_func: ForwardFunc,
    layer: LayerLike,
    unit: Unit,
    examples: Any,
    k: int = MIN_EXAMPLES,
    n_random: int = MIN_EXAMPLES,
    groups: Optional[Sequence[Any]] = None,
    seed: int = 0,
    progress: bool = False,
) -> NaturalPools:
    """The pools from a mined :class:`ExampleSet` holding the unit with at least ``k`` examples
    a side, else from mining ``k`` a side of the dataset (``examples`` or the set's data)."""
    data = examples.data if isinstance(examples, ExampleSet) else examples
    if data is None or not hasattr(data, "__getitem__"):
        raise TypeError("trust needs an indexable dataset (or an ExampleSet whose data is one)")
    mined = examples if isinstance(examples, ExampleSet) and examples.k >= k else None
    if mined is not None:
        try:
            mined.top(unit.selector)
        except KeyError:
            mined = None
    if mined is None:
        mined = DatasetExamples(forward_func, layer).collect(data, k=k, units=[unit.selector], progress=progress)
    top, bottom = mined.top(unit.selector), mined.bottom(unit.selector)
    g = _dataset_groups(data, groups)
    pick = np.random.default_rng(seed).choice(len(data), size=min(n_random, len(data)), replace=False)
    return NaturalPools(
        mined.images(unit.selector, "top"),
        mined.images(unit.selector, "bottom"),
        float(top.activations[0]) if len(top) else float("nan"),
        None if g is None else [g[i] for i in top.indices.tolist()],
        None if g is None else [g[i] for i in bottom.indices.tolist()],
        torch.stack([image_of(data[int(i)]) for i in sorted(pick.tolist())]),
    )


def class_agreement(
    models: Sequence[ForwardFunc], inputs: torch.Tensor, class_index: int, names: Optional[Sequence[str]] = None
) -> ClassAgreement:
    """Top-1 and top-5 rates of ``class_index`` on ``inputs`` for each model (logits output)."""
    top1, top5 = [], []
    for m in models:
        logits = activations(m, None, inputs).flatten(1)
        best = logits.topk(min(5, logits.shape[1]), dim=1).indices
        top1.append(float((best[:, 0] == class_index).float().mean()))
        top5.append(float((best == class_index).any(1).float().mean()))
    labels = list(names) if names is not None else ["model"] + [f"transfer {i}" for i in range(1, len(models))]
    return ClassAgreement(int(class_index), labels, top1, top5)


def path_similarity(
    forward_func: ForwardFunc,
    layer: LayerLike,
    inputs: Any,
    top: torch.Tensor,
    random: torch.Tensor,
    layers: Optional[Sequence[str]] = None,
) -> PathSimilarity:
    """The Geirhos path similarity of ``inputs`` against ``top`` natural examples vs ``random``
    ones at ``layers`` (default: :func:`path_layers` on the way to ``layer``)."""
    x = as_images(inputs).detach().float()
    names = list(layers) if layers is not None else path_layers(forward_func, layer, input_size=int(x.shape[-1]))
    feats = [layer_features(forward_func, names, imgs) for imgs in (x, top, random)]
    return path_from_features(*feats, names)


def _ratios(forward_func: ForwardFunc, layer: LayerLike, unit: Unit, inputs: torch.Tensor, best: float) -> List[float]:
    values = unit.value(activations(forward_func, layer, inputs))
    return [float(v) / best if best > 0 else float("nan") for v in values.tolist()]


def score(
    forward_func: ForwardFunc,
    layer: LayerLike,
    inputs: Any,
    neuron_selector: Selector,
    examples: Any,
    *,
    negative_inputs: Any = None,
    groups: Optional[Sequence[Any]] = None,
    similarity: Optional[Similarity] = None,
    path: Optional[Sequence[str]] = None,
    transfer_models: Sequence[ForwardFunc] = (),
    transfer_names: Optional[Sequence[str]] = None,
    k: int = MIN_EXAMPLES,
    seed: int = 0,
    progress: bool = False,
) -> TrustRecord:
    """How far to believe ``inputs``, pictures of ``neuron_selector`` at ``layer``.

    ``inputs``: the pictures (the positive optimum and its facets, (N, C, H, W)); ``examples``:
    a dataset, or an :class:`ExampleSet` that mined the unit (re-mined when it holds fewer than
    ``k`` examples a side); ``negative_inputs``: the negative optimum, shown as the bottom
    references of the 2AFC (else the pictures' resemblance to the top references alone decides);
    ``groups``: which source image each dataset item came from, so references and queries come
    from different images (default: the dataset's ``.groups`` or ``.labels``); ``similarity``: a
    function of two image batches returning their (N, M) similarity (default: cosine of the
    model's own features at ``layer``, a proxy for DreamSim); ``path``: the layers of the path
    similarity (default: :func:`path_layers`). ``layer=None`` with an int selector is a class
    unit: its record adds the top-1/top-5 of the model and of ``transfer_models``.
    """
    unit = Unit.parse(neuron_selector)
    ref = resolve_layer(module_of(forward_func), layer)
    x = as_images(inputs).detach().float()
    neg = None if negative_inputs is None else as_images(negative_inputs).detach().float()
    pools = natural_pools(forward_func, layer, unit, examples, k=k, groups=groups, seed=seed, progress=progress)
    size = int(x.shape[-1])
    layers = list(path) if path is not None else path_layers(forward_func, layer, input_size=size)
    sim_layer = default_feature_layer(forward_func, layer, input_size=size) if similarity is None else None
    wanted = layers + ([sim_layer] if sim_layer is not None and sim_layer not in layers else [])
    feats = {
        name: layer_features(forward_func, wanted, imgs)
        for name, imgs in (("inputs", x), ("top", pools.top), ("bottom", pools.bottom), ("random", pools.random))
    }
    if neg is not None:
        feats["negative"] = layer_features(forward_func, wanted, neg)
    path_sim = path_from_features(feats["inputs"], feats["top"], feats["random"], layers)
    emb = _embeddings(feats, sim_layer) if similarity is None else _embed_with(similarity, x, neg, pools)
    trials = plan_trials(len(pools.top), len(pools.bottom), pools.top_groups, pools.bottom_groups, seed=seed)
    m_nat = mis(emb["top"], emb["bottom"], trials)
    m_fv = mis(emb["top"], emb["bottom"], trials, explanations=emb["inputs"], negative_explanations=emb.get("negative"))
    ratios = _ratios(forward_func, layer, unit, x, pools.best)
    ratio = float(np.mean(ratios)) if ratios and np.isfinite(ratios).all() else None
    v: Verdict = verdict(path_sim.summary, m_fv.score, m_nat.score, ratio)
    classes = None
    if ref.name == OUTPUT and unit.kind == "channel":
        classes = class_agreement(
            [forward_func, *transfer_models],
            x,
            unit.channel,
            None if transfer_names is None else ["model", *transfer_names],
        )
    return TrustRecord(
        unit.title,
        ref.key,
        ratios,
        ratio,
        path_sim,
        m_fv,
        m_nat,
        v.label,
        v.reason,
        "model features (cosine), a proxy for DreamSim"
        if similarity is None
        else getattr(similarity, "__name__", type(similarity).__name__),
        len(pools.top),
        len(pools.bottom),
        classes,
    )


def _embeddings(feats: Dict[str, Dict[str, torch.Tensor]], key: Optional[str]) -> Dict[str, torch.Tensor]:
    """Unit-norm features of every set at the similarity layer."""
    if key is None:
        raise ValueError("no layer to judge similarity at; pass similarity=")
    return {name: torch.nn.functional.normalize(f[key], dim=1) for name, f in feats.items()}


def _embed_with(
    similarity: Similarity, x: torch.Tensor, neg: Optional[torch.Tensor], pools: NaturalPools
) -> Dict[str, torch.Tensor]:
    """Embeddings from a custom similarity: its ``embed`` when it has one, else the rows of its
    similarity matrix to a common anchor set (the pools and pictures themselves)."""
    sets = {"inputs": x, "top": pools.top, "bottom": pools.bottom}
    if neg is not None:
        sets["negative"] = neg
    if hasattr(similarity, "embed"):
        return {k: torch.nn.functional.normalize(similarity.embed(v), dim=1) for k, v in sets.items()}
    anchor = torch.cat(list(sets.values()))
    return {k: torch.nn.functional.normalize(similarity(v, anchor).float(), dim=1) for k, v in sets.items()}


__all__ = [
    "ClassAgreement",
    "FeatureSimilarity",
    "NaturalPools",
    "TrustRecord",
    "class_agreement",
    "natural_pools",
    "path_similarity",
    "score",
]
