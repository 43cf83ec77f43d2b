"""The inputs a report feeds back to the model for a unit: its top examples, with the extra
forward arguments that go with them (the dataset items' own, else the report's)."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence

import torch

from ..items import as_args, collate, forward_args_of, image_of
from ..unit import Unit


class TopInputs(NamedTuple):
    """A unit's top examples ``images`` (N, C, H, W) and their forward arguments (None: none)."""

    images: torch.Tensor
    args: Optional[Any]


def items_have_args(dataset: Any) -> bool:
    """Whether dataset items carry their own forward arguments (then they win over the report's,
    which serve the optimization only)."""
    try:
        first = dataset[0]
    except (TypeError, IndexError, KeyError, NotImplementedError):
        return False
    return forward_args_of(first) is not None


def top_inputs(dataset: Any, mined: Any, unit: Unit, additional_forward_args: Any = None) -> TopInputs:
    """The unit's top examples (as ``mined`` ranks them) and their extra forward arguments: the
    dataset items' own (``"additional_forward_args"`` of dict items), else
    ``additional_forward_args`` with one row per example."""
    indices = mined.top(unit.selector).indices.tolist()
    batch = collate([dataset[i] for i in indices])  # each example read once
    images, per_item = image_of(batch), forward_args_of(batch)
    if per_item is not None:
        return TopInputs(images, per_item)
    if additional_forward_args is None:
        return TopInputs(images, None)
    rows = len(images)
    return TopInputs(
        images,
        tuple(
            a.expand(rows, *a.shape[1:]) if torch.is_tensor(a) and a.dim() and a.shape[0] == 1 else a
            for a in as_args(additional_forward_args)
        ),
    )


def stacked_args(tops: Sequence[TopInputs], n: int) -> Any:
    """The forward arguments of the first ``n`` top examples of each unit, unit after unit (the
    slots of one batch over all of them); an argument that is not per example: the first unit's.
    None when the examples carry none."""
    per_unit = [as_args(t.args) for t in tops if t.args is not None]
    if not per_unit:
        return None
    return tuple(
        torch.cat([a[j][:n] for a in per_unit]) if torch.is_tensor(first) and first.dim() else first
        for j, first in enumerate(per_unit[0])
    )
