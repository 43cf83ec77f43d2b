"""Which layers and units an audit covers: layer patterns and unit lists, read once.

A pattern is a dotted ``named_modules()`` name in which ``*`` matches one name component (it
never crosses a dot), ``**`` any number of components, and ``?`` one character; an optional
``:UNITS`` suffix gives that layer's units (``"_blocks.8:0-15"``, ``"_blocks.*:all"``). Unit lists
are ranges and lists (``"0-3,7"``) or ``"all"`` (every channel of the layer).

>>> [s.layer for s in select_layers(model, ["_blocks.1*"])]
['_blocks.1', '_blocks.10', '_blocks.11', '_blocks.12', '_blocks.13', '_blocks.14', '_blocks.15']
>>> select_layers(model, ["_blocks.8:0-2,5"])[0].units
[0, 1, 2, 5]
>>> parse_unit_list("0-3,7")
[0, 1, 2, 3, 7]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

from torch import nn

from .addressing import resolve_layer
from .inspection import layers as layer_table
from .modelinfo import unwrap

__all__ = ["ALL", "LayerSelection", "parse_unit_list", "select_layers", "split_pattern"]

#: The unit list that means every channel of the layer.
ALL = "all"

_UNIT_PART = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?")


@dataclass(frozen=True)
class LayerSelection:
    """One layer of an audit: its dotted name and its units (None: the caller's default list)."""

    layer: str
    units: Optional[List[int]] = None


def _never_called(module: nn.Module) -> bool:
    """A module without a forward of its own (ModuleList, ModuleDict): it never runs, so a glob
    skips it (there is nothing to hook)."""
    return type(module).forward is nn.Module.forward


def parse_unit_list(spec: str) -> Union[List[int], str]:
    """``"0-3,7,9-10"`` -> ``[0, 1, 2, 3, 7, 9, 10]`` (first occurrence order, no repeats);
    ``"all"`` -> :data:`ALL`, resolved per layer by :func:`select_layers`."""
    if spec.strip().lower() == ALL:
        return ALL
    units: List[int] = []
    for part in spec.split(","):
        m = _UNIT_PART.fullmatch(part)
        if not m:
            raise ValueError(
                f"cannot read the unit list {spec!r}: use ranges and lists like '0-15' or '0,3,7', or 'all'"
            )
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise ValueError(f"unit range {part.strip()!r} is backwards; write {hi}-{lo}")
        units.extend(range(lo, hi + 1))
    return list(dict.fromkeys(units))


def split_pattern(spec: str) -> "tuple[str, Optional[str]]":
    """``"_blocks.8:0-15"`` -> ``("_blocks.8", "0-15")``; ``"_blocks.8"`` -> ``("_blocks.8", None)``."""
    name, sep, units = spec.partition(":")
    if not name.strip():
        raise ValueError(f"layer pattern {spec!r} has no layer name; write e.g. '_blocks.8:0-15'")
    return name.strip(), (units.strip() if sep else None)


def _regex(pattern: str) -> "re.Pattern[str]":
    out = []
    for token in re.split(r"(\*\*|\*|\?)", pattern):
        out.append({"**": r".*", "*": r"[^.]*", "?": r"[^.]"}.get(token, re.escape(token)))
    return re.compile("".join(out))


def _is_pattern(name: str) -> bool:
    return any(c in name for c in "*?")


def select_layers(
    model: nn.Module,
    patterns: Sequence[str],
    input_size: int = 224,
) -> List[LayerSelection]:
    """The layers ``patterns`` name, in the model's ``named_modules()`` order (each once; a later
    pattern's unit list adds to an earlier one's). A plain name is resolved as everywhere else
    (``#k`` calls, wrapper prefixes, close-match errors); a glob must match at least one module.
    ``"all"`` units become every channel of the layer's output (one dry forward at ``input_size``).
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    if not patterns:
        raise ValueError("give at least one layer pattern, e.g. '_blocks.8' or '_blocks.*'")
    modules = {n: m for n, m in unwrap(model).named_modules() if n}
    names = list(modules)
    order = {n: i for i, n in enumerate(names)}
    picked: dict = {}  # layer -> list of units, ALL, or None
    for spec in patterns:
        name, unit_spec = split_pattern(spec)
        units = parse_unit_list(unit_spec) if unit_spec is not None else None
        if _is_pattern(name):
            rx = _regex(name)
            hits = [n for n in names if rx.fullmatch(n)]
            matched = [n for n in hits if not _never_called(modules[n])]
            if hits and not matched:
                raise ValueError(
                    f"layer pattern {name!r} matches only containers that never run ({', '.join(hits[:3])}): "
                    f"name their members, e.g. '{hits[0]}.*'"
                )
            if not matched:
                raise ValueError(
                    f"layer pattern {name!r} matches no module ('*' stays within one dotted part; "
                    f"'**' crosses dots); see `captum-fv layers`"
                )
        else:
            matched = [resolve_layer(model, name).key]
        for layer in matched:
            picked[layer] = _merge(picked.get(layer, None), units, layer in picked)
    if any(u == ALL for u in picked.values()):
        widths = {info.name: info.shape[0] for info in layer_table(model, input_size) if info.shape}
    out = []
    for layer in sorted(picked, key=lambda n: order.get(n.split("#")[0], len(order))):
        units = picked[layer]
        if units == ALL:
            if layer.split("#")[0] not in widths:
                raise ValueError(f"layer {layer!r} gives no tensor output, so it has no channels for 'all'")
            units = list(range(widths[layer.split("#")[0]]))
        out.append(LayerSelection(layer, units))
    return out


def _merge(before, units, seen: bool):
    if not seen:
        return units
    if before == ALL or units == ALL:
        return ALL
    if before is None or units is None:
        return before if units is None else units
    return list(dict.fromkeys(before + units))
