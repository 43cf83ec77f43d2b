"""Concept labels by CLIP-Dissect's soft-WPMI (Oikarinen & Weng, "CLIP-Dissect", ICLR 2023).

For unit ``k`` with top examples ``x_1 .. x_K`` (ranked by activation, best first) and a concept
matrix ``S`` (images x concepts, e.g. CLIP image-text similarities, or class one-hots):

* ``p(t | x) = softmax(a * S[x, :])_t``, with ``a = 10`` (:data:`SCALE`);
* each top example is in the unit's soft example set with a probability falling linearly with
  its rank ``r = 0 .. K-1``: ``p_r = 0.998 - (r / K) * (0.998 - 0.97)`` (:data:`P_START`,
  :data:`P_END`);
* ``log p(t | k) = sum_r log(1 - p_r * (1 - p(t | x_r)) + 1e-7)``: the probability that every
  member of the soft set shows concept ``t`` (:data:`EPS` keeps the log finite);
* ``soft-WPMI(k, t) = log p(t | k) - lambda * log p(t)``, with ``lambda = 1`` (:data:`LAMBDA`).

The label is the concept of highest soft-WPMI. The paper estimates the concept prior ``p(t)`` as
the mean of ``p(t | k)`` over the layer's units (``prior="units"`` here); a score then only
ranks a unit against the others scored with it (with one unit every score is 0). The default,
``prior="images"``, is the same product for a unit whose top examples are random images:
``log p(t) = sum_r log(1 - p_r * (1 - m_t) + 1e-7)``, ``m_t`` the mean of ``p(t | x)`` over all
images, so a score is absolute: above 0 when the top examples show ``t`` more than chance
would, below 0 for a unit unrelated to the concepts, whatever other units are labelled. A
rare concept seen in a single top example can score a little above 0; the label's support
(the mean ``p(t | x)`` over the top examples) says how many carry it.
"""

from __future__ import annotations

import math
from typing import Any, List, Optional, Sequence, Union

import numpy as np
import torch

from ..unit import Selector, Unit, as_units
from ._records import UnitLabel

#: CLIP-Dissect's constants: softmax sharpness ``a``, inclusion probability of the first and last
#: top example, the prior's weight ``lambda``, the floor inside the log, the top examples used.
SCALE = 10.0
P_START, P_END = 0.998, 0.97
LAMBDA = 1.0
EPS = 1e-7
TOP_K = 100
#: Fewest classes a dataset needs for class labels (fewer give labels that say little).
MIN_CLASSES = 10
PRIORS = ("images", "units")

Matrix = Union[torch.Tensor, np.ndarray, Sequence[Sequence[float]]]


def inclusion(k: int) -> torch.Tensor:
    """``p_r``, the probability that the rank-``r`` top example is in the soft example set.

    >>> fv.labels.inclusion(4)
    tensor([0.9980, 0.9910, 0.9840, 0.9770], dtype=torch.float64)
    """
    return P_START - torch.arange(k, dtype=torch.float64) / k * (P_START - P_END)


def _log_all(probs: torch.Tensor, p_in: torch.Tensor) -> torch.Tensor:
    """``sum_r log(1 - p_r (1 - p(t | x_r)) + EPS)`` for probs ``(U, K, T)`` -> ``(U, T)``."""
    return torch.log1p(-p_in[None, :, None] * (1 - probs) + EPS).sum(1)


def _scores(top_probs: torch.Tensor, mean_probs: torch.Tensor, lam: float, prior: str) -> torch.Tensor:
    """Soft-WPMI ``(U, T)`` from each unit's ranked top-example probabilities ``(U, K, T)`` and
    the concepts' mean probability over all images ``(T,)``."""
    p_in = inclusion(top_probs.shape[1])
    cond = _log_all(top_probs, p_in)
    if prior == "units":
        log_prior = torch.logsumexp(cond, 0) - math.log(cond.shape[0])
    else:
        log_prior = _log_all(mean_probs[None, None, :].expand(1, top_probs.shape[1], -1), p_in)[0]
    return cond - lam * log_prior


def _check_options(top_k: int, top: int, lam: float, prior: str) -> None:
    for name, v in (("top_k", top_k), ("top", top)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    if prior not in PRIORS:
        raise ValueError(f"prior must be one of {PRIORS} ('images': chance level, 'units': the paper's), got {prior!r}")
    if not isinstance(lam, (int, float)) or isinstance(lam, bool):
        raise TypeError(f"lam must be a number (the prior's weight, 1 in the paper), got {type(lam).__name__}")


def _matrix(value: Matrix, what: str) -> torch.Tensor:
    t = torch.as_tensor(value).detach().cpu().double()
    if t.dim() != 2 or 0 in t.shape:
        raise ValueError(f"{what} must be a non-empty 2-D matrix (images x ...), got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{what} has NaN or infinite entries; pass finite values")
    return t


def concept_probs(concepts: Matrix, scale: Optional[float] = SCALE) -> torch.Tensor:
    """``p(t | x)`` for an images-by-concepts similarity matrix: ``softmax(scale * S)`` per image;
    ``scale=None``: ``concepts`` already holds probabilities (rows in [0, 1])."""
    s = _matrix(concepts, "concepts")
    if scale is None:
        if (s < 0).any() or (s > 1).any():
            raise ValueError("concepts with scale=None must be probabilities in [0, 1]; give a scale to softmax them")
        return s
    return torch.softmax(float(scale) * s, dim=1)


def _unit_values(activations: Matrix, units: Optional[List[Unit]]) -> torch.Tensor:
    """Per-image unit values ``(N, U)``: the columns of a matrix, or each unit's value on a layer output."""
    acts = torch.as_tensor(activations).detach().cpu()
    if units is None:
        return _matrix(acts, "activations (images x units)")
    if acts.dim() < 2:
        raise ValueError(f"activations must be a layer output (N, ...) with a batch dim, got shape {tuple(acts.shape)}")
    for u in units:
        u.check(acts.shape[1:])
    return _matrix(torch.stack([u.value(acts.float()) for u in units], 1), "unit values")


def _ranked(values: torch.Tensor, k: int) -> torch.Tensor:
    """Each unit's top ``k`` image indices ``(U, k)``, best first, ties to the lower index."""
    return torch.sort(values.T, dim=1, descending=True, stable=True).indices[:, :k]


def soft_wpmi(
    activations: Matrix,
    concepts: Matrix,
    top_k: int = TOP_K,
    *,
    scale: Optional[float] = SCALE,
    lam: float = LAMBDA,
    prior: str = "images",
) -> torch.Tensor:
    """Soft-WPMI of every unit and concept, ``(n_units, n_concepts)`` (see the module docstring).

    ``activations``: ``(n_images, n_units)``, one value per image and unit; ``concepts``:
    ``(n_images, n_concepts)`` similarities (``scale=None``: probabilities); ``top_k``: top
    examples per unit (fewer when there are fewer images).

    >>> acts, onehot = torch.tensor([[3.0], [2.0], [0.0], [1.0]]), torch.eye(2)[[0, 0, 1, 1]]
    >>> fv.labels.soft_wpmi(acts, onehot, top_k=2).argmax(1)
    tensor([0])
    """
    _check_options(top_k, 1, lam, prior)
    values, probs = _unit_values(activations, None), concept_probs(concepts, scale)
    _same_images(values, probs)
    top = _ranked(values, min(top_k, len(values)))
    return _scores(probs[top], probs.mean(0), lam, prior).float()


def _same_images(values: torch.Tensor, probs: torch.Tensor) -> None:
    if len(values) != len(probs):
        raise ValueError(
            f"activations cover {len(values)} images but concepts {len(probs)}; "
            "give both one row per image, in one order"
        )


def dissect(
    activations: Matrix,
    concepts: Matrix,
    names: Sequence[str],
    neuron_selector: Union[Selector, Sequence[Selector], None] = None,
    *,
    top_k: int = TOP_K,
    top: int = 5,
    scale: Optional[float] = SCALE,
    lam: float = LAMBDA,
    prior: str = "images",
) -> List[UnitLabel]:
    """CLIP-Dissect concept labels from any images-by-concepts similarity matrix.

    ``activations``: ``(n_images, n_units)`` unit values, or a layer output ``(n_images, ...)``
    with ``neuron_selector`` naming the units (e.g. ``fv.activations(model, layer, images)``);
    ``concepts``: ``(n_images, n_concepts)`` similarities for the same images in the same order,
    e.g. your own CLIP image-text cosines (softmaxed with ``scale``; ``scale=None`` if they are
    probabilities already); ``names``: one per concept. Each label has soft-WPMI as its score
    and the mean ``p(label | x)`` over the unit's top examples as its support.

    >>> acts = fv.activations(model, "_blocks.8", images)
    >>> sims = torch.rand(4, 3)  # e.g. CLIP cosines of these 4 images with 3 concept texts
    >>> labs = fv.labels.dissect(acts, sims, ["fur", "sky", "text"], [0, 5], top_k=2)
    >>> [lab.unit.title for lab in labs], labs[0].label in ("fur", "sky", "text")
    (['channel 0', 'channel 5'], True)
    """
    _check_options(top_k, top, lam, prior)
    units = None if neuron_selector is None else as_units(neuron_selector)
    values, probs = _unit_values(activations, units), concept_probs(concepts, scale)
    _same_images(values, probs)
    names = _names(names, probs.shape[1], "concepts")
    if units is None:
        units = as_units(range(values.shape[1]))
    k = min(top_k, len(values))
    top_idx = _ranked(values, k)
    tied = values.gather(0, top_idx.T).T  # (U, k) top values
    return _labels(units, probs[top_idx], probs.mean(0), names, "concepts", top, lam, prior, tied)


def class_labels(
    examples: Any,
    neuron_selector: Union[Selector, Sequence[Selector], None] = None,
    *,
    dataset: Any = None,
    top: int = 5,
    lam: float = LAMBDA,
    prior: str = "images",
) -> List[UnitLabel]:
    """A dataset class per unit, from its mined top examples, by soft-WPMI with class one-hots
    as the concept matrix (``p(t | x) = softmax(10 * onehot)``); support is the fraction of the
    top examples in the class.

    ``examples``: what :meth:`captum_fv.DatasetExamples.collect` found (its ``k`` top examples
    per unit are the soft example set); ``neuron_selector``: the units (None: every mined
    one); ``dataset``: the labelled dataset (default: the mined one), with ``.labels`` (or
    torchvision's ``.targets``) and ``.classes``, at least :data:`MIN_CLASSES` of them, e.g.
    :func:`captum_fv.data.image_folder` of a folder with one subfolder per class.
    """
    _check_options(1, top, lam, prior)
    if not hasattr(examples, "top") or not hasattr(examples, "units"):
        raise TypeError(
            f"examples must be what fv.DatasetExamples(...).collect(...) returns, got {type(examples).__name__}"
        )
    data = examples.data if dataset is None else dataset
    labels, classes = _dataset_labels(data)
    selectors = examples.units if neuron_selector is None else neuron_selector
    units = as_units(list(selectors) if neuron_selector is None else selectors)
    n = len(classes)
    counts = torch.bincount(labels, minlength=n).double()
    p_hi = 1.0 / (1.0 + (n - 1) * math.exp(-SCALE))  # softmax(10 * onehot) at the true class
    p_lo = (1.0 - p_hi) / (n - 1)
    mean_probs = p_lo + (p_hi - p_lo) * counts / counts.sum()
    tops = [examples.top(u.selector) for u in units]
    k = min(len(t) for t in tops)
    if k == 0:
        raise ValueError("the mined examples hold no top examples; mine with k >= 1")
    idx = torch.stack([t.indices[:k] for t in tops])
    if int(idx.max()) >= len(labels):
        raise ValueError(
            f"the examples index item {int(idx.max())} but the dataset has {len(labels)} labels; "
            "pass the dataset the examples were mined from"
        )
    hit = torch.nn.functional.one_hot(labels[idx], n).double()  # (U, k, T)
    top_probs = p_lo + (p_hi - p_lo) * hit
    tied = torch.stack([t.activations[:k].double() for t in tops])
    return _labels(units, top_probs, mean_probs, classes, "classes", top, lam, prior, tied, support=hit.mean(1))


def has_classes(dataset: Any) -> bool:
    """Whether ``dataset`` carries class labels :func:`class_labels` can use (``.labels`` or
    ``.targets``, and at least :data:`MIN_CLASSES` ``.classes``)."""
    labels = getattr(dataset, "labels", None)
    if labels is None:
        labels = getattr(dataset, "targets", None)
    classes = getattr(dataset, "classes", None)
    return labels is not None and classes is not None and len(classes) >= MIN_CLASSES


def _dataset_labels(data: Any) -> "tuple[torch.Tensor, List[str]]":
    labels = getattr(data, "labels", None)
    if labels is None:
        labels = getattr(data, "targets", None)
    classes = getattr(data, "classes", None)
    if labels is None or classes is None:
        raise ValueError(
            f"the dataset ({type(data).__name__}) has no class labels (.labels or .targets, and .classes); "
            "class labels need a labelled dataset such as fv.data.image_folder(...) of class subfolders"
        )
    classes = [str(c) for c in classes]
    if len(classes) < MIN_CLASSES:
        shown = ", ".join(classes[:4]) + (" ..." if len(classes) > 4 else "")
        raise ValueError(
            f"class labels need at least {MIN_CLASSES} classes, and the dataset has {len(classes)} ({shown}); "
            "use an image folder with one subfolder per class, ten or more"
        )
    t = torch.as_tensor(list(labels), dtype=torch.long)
    if len(t) and (int(t.min()) < 0 or int(t.max()) >= len(classes)):
        raise ValueError(f"dataset labels must be class indices 0..{len(classes) - 1}; found {int(t.max())}")
    return t, classes


def _names(names: Sequence[str], n: int, what: str) -> List[str]:
    if isinstance(names, str):
        raise TypeError(f"names must be a sequence of {n} names, one per column of {what}, not one string")
    out = [str(x) for x in names]
    if len(out) != n:
        raise ValueError(f"got {len(out)} names for {n} {what}; give one name per column of {what}")
    return out


def _labels(
    units: List[Unit],
    top_probs: torch.Tensor,
    mean_probs: torch.Tensor,
    names: List[str],
    source: str,
    top: int,
    lam: float,
    prior: str,
    top_values: torch.Tensor,
    support: Optional[torch.Tensor] = None,
) -> List[UnitLabel]:
    """One label per unit; a unit whose top examples all tie (a dead or constant unit) has no
    ranking to read, so it gets the empty label with score 0."""
    scores = _scores(top_probs, mean_probs, lam, prior)
    support = top_probs.mean(1) if support is None else support
    k = top_probs.shape[1]
    out = []
    for i, u in enumerate(units):
        if k > 1 and bool((top_values[i] == top_values[i, 0]).all()):
            out.append(UnitLabel(u, "", 0.0, source, [], 0.0, k))
            continue
        best = torch.argsort(scores[i], descending=True, stable=True)[:top].tolist()
        ranked = [(names[t], float(scores[i, t])) for t in best]
        out.append(UnitLabel(u, ranked[0][0], ranked[0][1], source, ranked, float(support[i, best[0]]), k))
    return out
