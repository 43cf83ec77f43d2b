"""Automatic unit labels, offline: what a unit is about, in words, with a score.

* :func:`output_classes`: the output classes a unit drives most, the drop of every logit when
  the unit is zeroed, averaged over its examples (ImageNet names for a 1000-way output);
* :func:`class_labels`: the dataset class a unit's top examples belong to, when the dataset
  has class labels (ten or more classes), by CLIP-Dissect's soft-WPMI with class one-hots;
* :func:`dissect`: CLIP-Dissect labels from any images-by-concepts similarity matrix (e.g. your
  own CLIP scores) and concept names; :func:`soft_wpmi` gives the raw scores.

Each returns one :class:`UnitLabel` per unit (``to_dict()`` for JSON); :func:`to_json` groups
them by unit for a report's ``"labels"``.

>>> ex = fv.DatasetExamples(model, "_blocks.8").collect(dataset, k=4, units=[3, 7], progress=False)
>>> labs = fv.labels.output_classes(model, "_blocks.8", [ex.images(3), ex.images(7)], [3, 7])
>>> sorted(fv.labels.to_json(labs)), labs[0].n_examples
(['channel_0003', 'channel_0007'], 4)

Implementation: ``_records`` (the record, JSON), ``_output`` (zeroing at the layer, tail
forwards), ``_wpmi`` (soft-WPMI, class and concept labels).
"""

from __future__ import annotations

from ._output import known_class_names, output_classes, output_names
from ._records import SOURCES, UnitLabel, to_json
from ._wpmi import (
    EPS,
    LAMBDA,
    MIN_CLASSES,
    P_END,
    P_START,
    PRIORS,
    SCALE,
    TOP_K,
    class_labels,
    concept_probs,
    dissect,
    has_classes,
    inclusion,
    soft_wpmi,
)

__all__ = [
    "EPS",
    "LAMBDA",
    "MIN_CLASSES",
    "P_END",
    "P_START",
    "PRIORS",
    "SCALE",
    "SOURCES",
    "TOP_K",
    "UnitLabel",
    "class_labels",
    "concept_probs",
    "dissect",
    "has_classes",
    "inclusion",
    "known_class_names",
    "output_classes",
    "output_names",
    "soft_wpmi",
    "to_json",
]
