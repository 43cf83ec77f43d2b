"""What a label is: :class:`UnitLabel`, and the JSON a report stores (:func:`to_json`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..unit import Unit

#: The label sources: the logits a unit drives, the dataset's classes, a user's concept matrix.
SOURCES = ("output", "classes", "concepts")


@dataclass(frozen=True)
class UnitLabel:
    """One automatic label of one unit.

    ``label``: the best name; ``score``: its value (``"output"``: the mean logit drop when the unit
    is zeroed, in logits; ``"classes"``/``"concepts"``: soft-WPMI, in nats); ``top``: the best
    few ``(name, value)`` pairs, best first, on the same scale; ``support``: for soft-WPMI, how
    much of the unit's top examples carry the label (the mean of p(label | image): the fraction
    in that class for class labels), None for output labels; ``n_examples``: how many examples
    the label was read from.
    """

    unit: Unit
    label: str
    score: float
    source: str
    top: List[Tuple[str, float]] = field(default_factory=list)
    support: Optional[float] = None
    n_examples: int = 0

    def to_dict(self) -> Dict[str, Any]:
        """The label as JSON-ready values (the unit by its title and file name)."""
        return {
            "unit": self.unit.title,
            "file_name": self.unit.file_name,
            "source": self.source,
            "label": self.label,
            "score": round(float(self.score), 4),
            "support": None if self.support is None else round(float(self.support), 4),
            "n_examples": int(self.n_examples),
            "top": [[name, round(float(v), 4)] for name, v in self.top],
        }


def to_json(labels: Sequence[UnitLabel]) -> Dict[str, List[Dict[str, Any]]]:
    """Labels grouped by unit file name, each unit's in the order given: what a report stores
    under ``"labels"``.

    >>> u = fv.Unit.parse(3)
    >>> fv.labels.to_json([fv.labels.UnitLabel(u, "tabby", 1.5, "output", [("tabby", 1.5)])])
    {'channel_0003': [{'unit': 'channel 3', 'file_name': 'channel_0003', 'source': 'output',
      'label': 'tabby', 'score': 1.5, 'support': None, 'n_examples': 0, 'top': [['tabby', 1.5]]}]}
    """
    out: Dict[str, List[Dict[str, Any]]] = {}
    for lab in labels:
        out.setdefault(lab.unit.file_name, []).append(lab.to_dict())
    return out
