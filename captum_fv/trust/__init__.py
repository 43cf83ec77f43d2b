"""How far to believe a unit's picture: faithfulness measures and a verdict.

Optimized images can mislead (Geirhos et al., ICML 2024): :func:`score` measures, for one unit,
how well its pictures agree with what the unit does on real data:

* ``ratio``: the pictures' activation over the best natural activation;
* ``path``: the path similarity (Spearman correlation of channel-mean activations with the top
  natural examples vs random ones, at several layers on the way to the unit);
* ``mis_fv`` / ``mis_natural``: the machine interpretability score (Zimmermann et al., NeurIPS
  2024), a simulated 2AFC with the pictures / natural examples as explanations;
* ``classes``: for class units, top-1/top-5 of the model and of transfer models;
* ``verdict``: ``"consistent"``, ``"check"`` or ``"off-natural"`` with a reason.

A dataset of fewer than ``needed()`` (58) items raises :class:`NotEnoughExamples`.
:class:`TrustScorer` scores many units of a layer, sharing the work (reports use it).

>>> v = fv.NeuronVisualization(model, "_blocks.8").visualize(12, size=64, steps=8, progress=False)
>>> rec = fv.trust.score(model, "_blocks.8", v.positive, 12, fv.data.sample_images(size=64, crops=8))
>>> rec.verdict in ("consistent", "check", "off-natural"), sorted(rec.to_dict())[:4]
(True, ['classes', 'layer', 'mis_fv', 'mis_natural'])

:func:`plant` builds the ground truth the measures are calibrated on: a model whose unit has a
hidden branch for a synthetic grating. Implementation: ``_features``, ``_path``, ``_mis``,
``_pools``, ``_verdict``, ``_records``, ``_score``, ``_planted``.
"""

from __future__ import annotations

from ._features import PATH_LAYERS, channel_means, feature_layer, layer_features, path_layers, set_features
from ._mis import (
    MIN_EXAMPLES,
    MIS,
    MIS_SCALE,
    REFERENCES,
    TRIALS,
    FeatureSimilarity,
    Trial,
    mis,
    plan_trials,
    trial_probability,
)
from ._path import PathSimilarity, path_from_features, path_similarity, spearman
from ._planted import Plant, grating_amplitude, plant
from ._pools import NaturalPools, NotEnoughExamples, natural_pools, needed
from ._records import ClassAgreement, TrustRecord, TrustSummary
from ._score import TRUST_VERSION, TrustScorer, class_agreement, score, settings
from ._verdict import (
    CHECK,
    CONSISTENT,
    MIS_NATURAL_MIN,
    MIS_OFF,
    MIS_OK,
    NOT_ENOUGH,
    OFF_NATURAL,
    PATH_OK,
    PATH_STRONG,
    RATIO_MAX,
    RATIO_MIN,
    VERDICTS,
    Verdict,
    thresholds,
    verdict,
)

__all__ = [
    "score",
    "TrustScorer",
    "settings",
    "TRUST_VERSION",
    "thresholds",
    "TrustRecord",
    "TrustSummary",
    "NotEnoughExamples",
    "needed",
    "ClassAgreement",
    "NaturalPools",
    "natural_pools",
    "class_agreement",
    "path_similarity",
    "PathSimilarity",
    "path_from_features",
    "spearman",
    "path_layers",
    "layer_features",
    "set_features",
    "feature_layer",
    "channel_means",
    "PATH_LAYERS",
    "mis",
    "MIS",
    "FeatureSimilarity",
    "Trial",
    "plan_trials",
    "trial_probability",
    "MIS_SCALE",
    "TRIALS",
    "REFERENCES",
    "MIN_EXAMPLES",
    "verdict",
    "Verdict",
    "CONSISTENT",
    "CHECK",
    "OFF_NATURAL",
    "NOT_ENOUGH",
    "VERDICTS",
    "PATH_OK",
    "PATH_STRONG",
    "RATIO_MIN",
    "MIS_OFF",
    "MIS_OK",
    "MIS_NATURAL_MIN",
    "RATIO_MAX",
    "plant",
    "Plant",
    "grating_amplitude",
]
