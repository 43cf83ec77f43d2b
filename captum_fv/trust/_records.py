"""The trust records: what one unit's pictures scored (:class:`TrustRecord`, the ``"trust"`` entry
of a unit's JSON) and the few numbers an index lists (:class:`TrustSummary`, read back from it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ._mis import MIS
from ._path import PathSimilarity
from ._verdict import NOT_ENOUGH


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

    ``ratios``: each input's activation over the best natural one (``ratio``: their mean, None
    when no photo excites the unit); ``path``: the Geirhos path similarity; ``mis_fv`` /
    ``mis_natural``: the machine interpretability score with the pictures / natural examples
    as explanations; ``probe_ratio``: for pictures held to natural statistics (MaCo, a dataset
    prior), a plain Fourier probe's ratio, which shows a hidden pathway they may not draw;
    ``classes``: for class units; ``verdict`` and ``reason``; ``similarity``: what judged image
    similarity; ``sources_known``: whether references and queries could be
    kept from sharing a source image. With the verdict ``"not enough examples"`` the measures are
    None and ``reason`` says what was missing."""

    unit: str
    layer: str
    ratios: List[float]
    ratio: Optional[float]
    path: Optional[PathSimilarity]
    mis_fv: Optional[MIS]
    mis_natural: Optional[MIS]
    verdict: str
    reason: str
    similarity: str
    n_top: int
    n_bottom: int
    classes: Optional[ClassAgreement] = None
    sources_known: bool = False  # whether the dataset said which source image each example came from
    extra: Dict[str, Any] = field(default_factory=dict)
    probe_ratio: Optional[float] = None  # a Fourier probe's activation over the best natural one

    @classmethod
    def not_enough(cls, unit: str, layer: str, reason: str) -> "TrustRecord":
        """The record of a unit the dataset cannot judge (``reason``: why, and the fix)."""
        return cls(unit, layer, [], None, None, None, None, NOT_ENOUGH, reason, "", 0, 0)

    @property
    def path_similarity(self) -> Optional[float]:
        return None if self.path is None else self.path.summary

    def to_dict(self) -> Dict[str, Any]:
        """Floats, lists and strings only: the ``"trust"`` entry of a unit's JSON."""
        return {
            "unit": self.unit,
            "layer": self.layer,
            "ratio": None if self.ratio is None else float(self.ratio),
            "ratios": [None if r != r else float(r) for r in self.ratios],
            "path_similarity": None if self.path is None else self.path.to_dict(),
            "mis_fv": None if self.mis_fv is None else self.mis_fv.to_dict(),
            "mis_natural": None if self.mis_natural is None else self.mis_natural.to_dict(),
            "verdict": self.verdict,
            "reason": self.reason,
            "similarity": self.similarity,
            "n_top": self.n_top,
            "n_bottom": self.n_bottom,
            "classes": None if self.classes is None else self.classes.to_dict(),
            "sources_known": self.sources_known,
            **({"probe_ratio": float(self.probe_ratio)} if self.probe_ratio is not None else {}),
        }

    def summary(self) -> "TrustSummary":
        return TrustSummary.from_dict(self.to_dict())


@dataclass(frozen=True)
class TrustSummary:
    """The numbers an index lists per unit, read from a ``"trust"`` entry of ``unit.json`` or
    ``report.json`` (None where the record has none): verdict, ratio, path summary, both MIS,
    and for class units the audited model's top-1/top-5 rates."""

    unit: str
    layer: str
    verdict: str
    ratio: Optional[float]
    path: Optional[float]
    mis_fv: Optional[float]
    mis_natural: Optional[float]
    top1: Optional[float] = None
    top5: Optional[float] = None

    @classmethod
    def from_dict(cls, trust: Dict[str, Any]) -> "TrustSummary":
        def part(key: str, sub: str) -> Optional[float]:
            value = trust.get(key)
            return None if not isinstance(value, dict) else value.get(sub)

        classes = trust.get("classes") or {}
        return cls(
            trust.get("unit", ""),
            trust.get("layer", ""),
            trust.get("verdict", ""),
            trust.get("ratio"),
            part("path_similarity", "summary"),
            part("mis_fv", "score"),
            part("mis_natural", "score"),
            (classes.get("top1") or [None])[0],
            (classes.get("top5") or [None])[0],
        )

    def to_dict(self) -> Dict[str, Any]:
        return {
            "unit": self.unit,
            "layer": self.layer,
            "verdict": self.verdict,
            "ratio": self.ratio,
            "path": self.path,
            "mis_fv": self.mis_fv,
            "mis_natural": self.mis_natural,
            "top1": self.top1,
            "top5": self.top5,
        }
