"""What mining found: :class:`Examples` of one unit, and the :class:`ExampleSet` of all units."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch

from ..items import image_of
from ..unit import Unit

Which = Union[str, float]


@dataclass
class Examples:
    """Examples of one unit at one place of its distribution, best match first.

    ``indices``: dataset indices (k,); ``activations``: the unit's value on each (k,);
    ``positions``: (k, d) index of the peak (trough for bottom examples) in the unit's channel map,
    ``(y, x)`` for a conv layer, or None when the unit has no map (neurons, callables, 1-D layers).
    """

    indices: torch.Tensor
    activations: torch.Tensor
    positions: Optional[torch.Tensor]

    def __len__(self) -> int:
        return len(self.indices)

    def to_dict(self, names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "indices": self.indices.tolist(),
            "activations": self.activations.tolist(),
            "positions": None if self.positions is None else self.positions.tolist(),
        }
        if names is not None:
            out["names"] = [names[i] for i in out["indices"]]
        return out


class Ranked(NamedTuple):
    """Examples of every unit at one place of the distribution: dataset indices and values
    ``(U, ..., k)``, positions ``(U, ..., k, d)`` as map coordinates (-1 where none)."""

    indices: torch.Tensor
    values: torch.Tensor
    positions: torch.Tensor

    def of(self, row: int, *extra: int, positioned: bool = True) -> Examples:
        """Unit ``row``'s examples (at quantile ``extra`` for quantile examples)."""
        at = (row,) + extra
        return Examples(self.indices[at], self.values[at], self.positions[at] if positioned else None)


@dataclass(frozen=True)
class Mined:
    """What one pass found, merged over ranks: the record an :class:`ExampleSet` is built from.

    ``selectors``: the units as the user gave them, ``units``: the same as :class:`Unit`;
    ``levels`` (Q,) and ``quantile_values`` (U, Q) with the ``quantiles`` examples (U, Q, k);
    ``state_bytes``: the largest size of the running state during the pass.
    """

    layer: str
    selectors: List[Any]
    units: List[Unit]
    map_shape: Tuple[int, ...]
    n_examples: int
    k: int
    top: Ranked
    bottom: Ranked
    levels: torch.Tensor
    quantile_values: torch.Tensor
    quantiles: Ranked
    sample_size: int
    state_bytes: int


class ExampleSet:
    """What :meth:`DatasetExamples.collect` found, per unit: top, bottom and quantile examples.

    Look a unit up by what you passed (an int channel, a tuple, the callable itself).
    ``which`` is ``"top"``, ``"bottom"`` or a quantile level such as ``0.25``.

    >>> ex = fv.DatasetExamples(model, "_blocks.8").collect(dataset, k=4)
    >>> ex.top(12).activations.shape, ex.quantile(12, 0.5).indices.shape
    (torch.Size([4]), torch.Size([4]))
    >>> ex.spectrum(12)[0][0]
    'bottom'
    """

    def __init__(self, mined: Mined, data: Any) -> None:
        self.mined = mined
        self.data = data
        self.layer = mined.layer
        self.units = mined.selectors
        self.n_examples = mined.n_examples
        self.k = mined.k
        self.map_shape = mined.map_shape
        self.levels = mined.levels
        self.quantile_values = mined.quantile_values  # (U, Q)
        self.sample_size = mined.sample_size
        #: Quantiles (and their examples) are exact when the whole dataset fit in the sample.
        self.exact_quantiles = mined.n_examples <= mined.sample_size
        #: Largest size in bytes of the running state during the pass (independent of dataset size).
        self.state_bytes = mined.state_bytes
        self._positioned = [u.kind == "channel" and bool(mined.map_shape) for u in mined.units]

    def __len__(self) -> int:
        return len(self.units)

    def __repr__(self) -> str:
        return (
            f"ExampleSet(layer={self.layer!r}, {len(self.units)} units, {self.n_examples} "
            f"examples, k={self.k}, levels={self.levels.tolist()})"
        )

    def _row(self, selector: Any) -> int:
        try:
            unit = Unit.parse(selector)
        except (TypeError, ValueError):
            unit = None
        if unit is not None:
            for i, u in enumerate(self.mined.units):
                if u == unit:
                    return i
        mined = self.mined.units
        shown = ", ".join(u.title for u in mined[:6]) + (" ..." if len(mined) > 6 else "")
        name = unit.title if unit is not None else repr(selector)
        raise KeyError(f"{name} was not mined; mined units: {shown}")

    def _examples(self, ranked: Ranked, row: int, *extra: int) -> Examples:
        return ranked.of(row, *extra, positioned=self._positioned[row])

    def top(self, unit: Any) -> Examples:
        """The k examples with the highest activation (ties: lower dataset index first)."""
        return self._examples(self.mined.top, self._row(unit))

    def bottom(self, unit: Any) -> Examples:
        """The k examples with the lowest activation (ties: lower dataset index first)."""
        return self._examples(self.mined.bottom, self._row(unit))

    def quantile(self, unit: Any, level: float) -> Examples:
        """The k examples whose activation is nearest the unit's ``level`` quantile."""
        matches = (self.levels - float(level)).abs() < 1e-6
        if not bool(matches.any()):
            raise KeyError(f"quantile {level} was not mined; mined levels: {self.levels.tolist()}")
        return self._examples(self.mined.quantiles, self._row(unit), int(matches.nonzero()[0, 0]))

    def spectrum(self, unit: Any) -> List[Tuple[str, Examples]]:
        """The Distill spectrum, low to high: ``[("bottom", ...), ("q0.25", ...), ..., ("top", ...)]``."""
        quantiles = [(f"q{q:g}", self.quantile(unit, q)) for q in self.levels.tolist()]
        return [("bottom", self.bottom(unit))] + quantiles + [("top", self.top(unit))]

    def examples(self, unit: Any, which: Which = "top") -> Examples:
        if which == "top":
            return self.top(unit)
        if which == "bottom":
            return self.bottom(unit)
        if isinstance(which, numbers.Real):
            return self.quantile(unit, float(which))
        raise ValueError(f"which must be 'top', 'bottom' or a quantile level, got {which!r}")

    def images(self, unit: Any, which: Which = "top") -> torch.Tensor:
        """The examples' images, (k, C, H, W), read back from the dataset."""
        indices = self.examples(unit, which).indices.tolist()
        if self.data is None or not hasattr(self.data, "__getitem__"):
            raise TypeError(
                "the mined data cannot be indexed (an IterableDataset or generator); "
                "fetch the images yourself with the indices in .top(unit).indices"
            )
        if not indices:
            return torch.zeros(0)
        return torch.stack([image_of(self.data[i]) for i in indices])

    def names(self, unit: Any, which: Which = "top") -> List[str]:
        """The examples' names from the dataset's ``.names``, else ``'example <index>'``."""
        indices = self.examples(unit, which).indices.tolist()
        names = getattr(self.data, "names", None)
        return [names[i] if names is not None else f"example {i}" for i in indices]

    def to_dict(self) -> Dict[str, Any]:
        """Everything as JSON-ready lists (names included when the dataset has ``.names``)."""
        names = getattr(self.data, "names", None)
        units = []
        for i, (u, unit) in enumerate(zip(self.units, self.mined.units)):
            units.append(
                {
                    "unit": unit.title,
                    "selector": json_selector(unit),
                    "top": self.top(u).to_dict(names),
                    "bottom": self.bottom(u).to_dict(names),
                    "quantiles": [
                        {"level": q, "value": float(self.quantile_values[i, j]), **self.quantile(u, q).to_dict(names)}
                        for j, q in enumerate(self.levels.tolist())
                    ],
                }
            )
        return {
            "layer": self.layer,
            "n_examples": self.n_examples,
            "k": self.k,
            "map_shape": list(self.map_shape),
            "quantile_levels": self.levels.tolist(),
            "quantiles_exact": self.exact_quantiles,
            "sample_size": self.sample_size,
            "units": units,
        }


def json_selector(unit: Unit) -> Any:
    """The unit as a portable JSON selector: an int channel, a list of ints, or None."""
    if unit.kind == "channel":
        return unit.channel
    if unit.kind == "neuron" and all(isinstance(i, numbers.Integral) for i in unit.index):
        return [int(i) for i in unit.index]
    return None  # slices and callables: only the description is portable
