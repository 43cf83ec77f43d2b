"""``score``: every trust measure of one unit's pictures; :class:`TrustScorer` for many units."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from ..addressing import OUTPUT, LayerLike, resolve_layer
from ..mining import ExampleSet
from ..modelinfo import module_of
from ..unit import Selector, Unit
from ..visualization import activations
from ._features import PATH_LAYERS, ForwardFunc, as_images, feature_layer, path_layers, set_features
from ._mis import MIN_EXAMPLES, MIS_SCALE, REFERENCES, TRIALS, Similarity, mis, plan_trials
from ._path import path_from_features
from ._pools import check_size, dataset_groups, has_item_args, mined_for, random_indices, read
from ._records import ClassAgreement, TrustRecord
from ._verdict import thresholds, verdict

SIMILARITY_NAME = "model features (cosine), a proxy for DreamSim"
#: Raise whenever a change alters what a trust record holds: reports redo units measured before.
TRUST_VERSION = 1


def settings(k: int = MIN_EXAMPLES) -> Dict[str, Any]:
    """Everything that decides a trust record besides the model, data and pictures: what a
    report's fingerprint holds for ``--resume``."""
    return {
        "version": TRUST_VERSION,
        "k": k,
        "trials": TRIALS,
        "references": REFERENCES,
        "mis_scale": MIS_SCALE,
        "path_layers": PATH_LAYERS,
        "similarity": SIMILARITY_NAME,
        "thresholds": thresholds(),
    }


def class_agreement(
    models: Sequence[ForwardFunc],
    inputs: torch.Tensor,
    class_index: int,
    names: Optional[Sequence[str]] = None,
    additional_forward_args: Any = None,
    output: Any = None,
) -> ClassAgreement:
    """Top-1 and top-5 rates of ``class_index`` on ``inputs`` for each model (logits output)."""
    top1, top5 = [], []
    for m in models:
        logits = activations(m, None, inputs, additional_forward_args=additional_forward_args, output=output)
        logits = logits.flatten(1)
        best = logits.topk(min(5, logits.shape[1]), dim=1).indices.cpu()
        top1.append(float((best[:, 0] == class_index).float().mean()))
        top5.append(float((best == class_index).any(1).float().mean()))
    labels = list(names) if names is not None else ["model"] + [f"transfer {i}" for i in range(1, len(models))]
    return ClassAgreement(int(class_index), labels, top1, top5)


class TrustScorer:
    """Judges pictures of units of ``layer`` against the natural images of ``data``, sharing
    the work between units: the path layers are traced once and the random photos' features
    computed once; each unit's sets run in their own batches, so its record does not depend on
    which other units were scored. Arguments as for :func:`score`; raises
    :class:`NotEnoughExamples` when ``data`` holds fewer than ``2 * k`` items.

    >>> s = fv.trust.TrustScorer(model, "_blocks.8", fv.data.sample_images(size=64, crops=8))
    >>> rec = s.score(torch.rand(2, 3, 64, 64), 12)
    >>> rec.n_top, rec.n_bottom, rec.path.layers[-1], rec.verdict in fv.trust.VERDICTS
    (29, 29, '_blocks.8', True)
    """

    def __init__(
        self,
        forward_func: ForwardFunc,
        layer: LayerLike,
        data: Any,
        *,
        groups: Optional[Sequence[Any]] = None,
        similarity: Optional[Similarity] = None,
        path: Optional[Sequence[str]] = None,
        transfer_models: Sequence[ForwardFunc] = (),
        transfer_names: Optional[Sequence[str]] = None,
        k: int = MIN_EXAMPLES,
        seed: int = 0,
        additional_forward_args: Any = None,
        output: Any = None,
        progress: bool = False,
    ) -> None:
        data = data.data if isinstance(data, ExampleSet) else data
        check_size(data, k)
        self.forward_func, self.layer, self.data, self.k, self.seed = forward_func, layer, data, k, seed
        self.ref = resolve_layer(module_of(forward_func), layer)
        self.groups = dataset_groups(data, groups)
        self.similarity, self.progress = similarity, progress
        self.transfer_models = list(transfer_models)
        self.transfer_names = None if transfer_names is None else list(transfer_names)
        self.args, self.output = additional_forward_args, output
        self.item_args = has_item_args(data)
        self._path: Optional[List[str]] = None if path is None else list(path)
        self._sim_layer: Optional[str] = None
        self._random: Optional[Dict[str, torch.Tensor]] = None

    def _prepare(self, probe: torch.Tensor) -> None:
        """Trace the path layers with ``probe`` and compute the random photos' features, once."""
        if self._random is not None:
            return
        if self._path is None:
            self._path = path_layers(self.forward_func, self.layer, probe=probe, additional_forward_args=self.args)
        if self.similarity is None:
            self._sim_layer = feature_layer(self._path, self.ref.name == OUTPUT)
            if self._sim_layer is None:
                raise ValueError("no layer to judge similarity at; pass similarity=")
        r = read(self.data, random_indices(len(self.data), self.k, self.seed), None)
        self._random = set_features(self.forward_func, self._wanted, [r.images], [self._data_args(r.args)])[0]

    @property
    def _wanted(self) -> List[str]:
        layers = list(self._path or [])
        return layers + ([self._sim_layer] if self._sim_layer and self._sim_layer not in layers else [])

    def _data_args(self, item_args: Any) -> Any:
        return item_args if self.item_args else self.args

    def score(
        self,
        inputs: Any,
        neuron_selector: Selector,
        examples: Optional[ExampleSet] = None,
        *,
        negative_inputs: Any = None,
        values: Optional[Sequence[float]] = None,
        probe_values: Optional[Sequence[float]] = None,
    ) -> TrustRecord:
        """The record of ``inputs``, pictures of ``neuron_selector``; ``examples``: an
        :class:`ExampleSet` that mined the unit with at least ``k`` a side (else it is mined);
        ``values``: the unit's value on each input when already known (else computed);
        ``probe_values``: its value on plain Fourier renders, for pictures held to natural
        statistics (their best over the best photo is ``probe_ratio``, judged like the ratio)."""
        unit = Unit.parse(neuron_selector)
        x = as_images(inputs).detach().float()
        neg = None if negative_inputs is None else as_images(negative_inputs).detach().float()
        self._prepare(x[:1])
        assert self._random is not None and self._path is not None
        mined = mined_for(
            self.forward_func,
            self.layer,
            unit,
            self.data if examples is None else examples,
            self.k,
            self.progress,
            self.args,
        )
        top_ex, bottom_ex = mined.top(unit.selector), mined.bottom(unit.selector)
        top, bottom = (
            read(self.data, top_ex.indices.tolist(), self.groups),
            read(self.data, bottom_ex.indices.tolist(), self.groups),
        )
        sets = [x, top.images, bottom.images] + ([neg] if neg is not None else [])
        args = [self.args, self._data_args(top.args), self._data_args(bottom.args)] + (
            [self.args] if neg is not None else []
        )
        f = dict(
            zip(("inputs", "top", "bottom", "negative"), set_features(self.forward_func, self._wanted, sets, args))
        )
        path_sim = path_from_features(f["inputs"], f["top"], self._random, self._path)
        emb = self._embeddings(f, x, neg, top.images, bottom.images)
        trials = plan_trials(len(top.images), len(bottom.images), top.groups, bottom.groups, seed=self.seed)
        m_nat = mis(emb["top"], emb["bottom"], trials)
        m_fv = mis(
            emb["top"], emb["bottom"], trials, explanations=emb["inputs"], negative_explanations=emb.get("negative")
        )
        best = float(top_ex.activations[0])
        if values is None and unit.kind == "channel" and self.ref.key in f["inputs"]:
            values = f["inputs"][self.ref.key][:, unit.channel].tolist()  # a channel's value is its mean
        if values is None:
            values = unit.value(
                activations(self.forward_func, self.layer, x, additional_forward_args=self.args, output=self.output)
            ).tolist()
        ratios = [float(v) / best if best > 0 else float("nan") for v in values]
        ratio = float(np.mean(ratios)) if ratios and np.isfinite(ratios).all() else None
        probe = max(probe_values) / best if probe_values and best > 0 else None
        v = verdict(path_sim.summary, m_fv.score, m_nat.score, ratio, probe)
        classes = None
        if self.ref.name == OUTPUT and unit.kind == "channel":
            names = None if self.transfer_names is None else ["model", *self.transfer_names]
            classes = class_agreement(
                [self.forward_func, *self.transfer_models], x, unit.channel, names, self.args, self.output
            )
        sim_name = (
            SIMILARITY_NAME
            if self.similarity is None
            else getattr(self.similarity, "__name__", type(self.similarity).__name__)
        )
        return TrustRecord(
            unit.title,
            self.ref.key,
            ratios,
            ratio,
            path_sim,
            m_fv,
            m_nat,
            v.label,
            v.reason,
            sim_name,
            len(top.images),
            len(bottom.images),
            classes,
            self.groups is not None,
            probe_ratio=probe,
        )

    def _embeddings(
        self,
        feats: Dict[str, Dict[str, torch.Tensor]],
        x: torch.Tensor,
        neg: Optional[torch.Tensor],
        top: torch.Tensor,
        bottom: torch.Tensor,
    ) -> Dict[str, torch.Tensor]:
        """Unit-norm embeddings of every set: the model's features at the similarity layer, or
        a custom similarity's ``embed``, else its similarity rows to a common anchor set."""
        if self.similarity is None:
            return {name: torch.nn.functional.normalize(f[self._sim_layer], dim=1) for name, f in feats.items()}
        sets = {"inputs": x, "top": top, "bottom": bottom, **({"negative": neg} if neg is not None else {})}
        sim = self.similarity
        if hasattr(sim, "embed"):
            return {k: torch.nn.functional.normalize(sim.embed(v), dim=1) for k, v in sets.items()}
        anchor = torch.cat(list(sets.values()))
        return {k: torch.nn.functional.normalize(sim(v, anchor).float(), dim=1) for k, v in sets.items()}


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
    additional_forward_args: Any = None,
    progress: bool = False,
    probe_values: Optional[Sequence[float]] = None,
) -> TrustRecord:
    """How far to believe ``inputs``, pictures of ``neuron_selector`` at ``layer``.

    ``inputs``: the pictures (the positive optimum and its facets, (N, C, H, W)); ``examples``:
    a dataset of at least ``2 * k`` items, or an :class:`ExampleSet` that mined the unit
    (re-mined when it holds fewer than ``k`` examples a side); ``negative_inputs``: the
    negative optimum, shown as the bottom references of the 2AFC (else the pictures'
    resemblance to the top references alone decides); ``groups``: which source image each
    dataset item came from, so references and queries come from different images (default: the
    dataset's ``.groups``: for :func:`captum_fv.data.sample_images` and ``image_folder`` crops, their
    photo);
    ``similarity``: a function of two image batches returning their (N, M) similarity (default:
    cosine of the model's own features one path layer before ``layer``, a proxy for DreamSim);
    ``path``: the layers of the path similarity (default: :func:`path_layers`);
    ``additional_forward_args``: Captum's, for every picture and every item without its own.
    ``layer=None`` with an int selector is a class unit: its record adds the top-1/top-5 of the
    model and of ``transfer_models``. ``probe_values``: the unit's value on plain Fourier renders,
    for pictures held to natural statistics (MaCo, a dataset prior: see ``TrustRecord.probe_ratio``).
    A dataset too small raises :class:`NotEnoughExamples`.
    """
    scorer = TrustScorer(
        forward_func,
        layer,
        examples,
        groups=groups,
        similarity=similarity,
        path=path,
        transfer_models=transfer_models,
        transfer_names=transfer_names,
        k=k,
        seed=seed,
        additional_forward_args=additional_forward_args,
        progress=progress,
    )
    ex = examples if isinstance(examples, ExampleSet) else None
    return scorer.score(inputs, neuron_selector, ex, negative_inputs=negative_inputs, probe_values=probe_values)


__all__ = ["TrustScorer", "class_agreement", "score", "settings", "TRUST_VERSION"]
