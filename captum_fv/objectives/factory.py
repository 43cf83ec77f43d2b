"""The objective factory (Lucid's ``wrap_objective``): write an objective as a function of one
tensor per batch slot, and :func:`objective` builds the :class:`Objective` and registers it.

>>> @objective
... def mean_act(layer, batch=None):
...     '''Mean activation of the whole layer.'''
...     return PerSlot(lambda a, _: a.flatten(1).mean(1), f"mean_act({layer!r})", layer, batch)
>>> fv.registry.get_objective("mean_act")("_blocks.8")
Objective(mean_act('_blocks.8'))
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Mapping, NamedTuple, Optional

import torch

from ..addressing import LayerLike
from ..modelinfo import OutputKey
from ..registry import register_objective
from .base import Context, Objective, Slots, min_batch_for, per_slot

ValuesFn = Callable[[torch.Tensor, Optional[torch.Tensor]], torch.Tensor]


class PerSlot(NamedTuple):
    """What a factory body returns: how to score the targeted slots of one tensor.

    ``values(t, slots)`` gets the rows of the targeted ``slots`` (all rows and None when
    ``slots`` is None) and returns one value per row; untargeted slots score 0. ``t`` is the
    activation of ``layer``, or the images when ``on_images``. ``min_batch`` defaults to what
    ``slots`` needs; ``attributes`` are set on the Objective (for inspection); ``output``: which
    part of a structured model output ``layer=None`` means (see :attr:`Objective.output`).
    """

    values: ValuesFn
    name: str
    layer: LayerLike = None
    slots: Slots = None
    min_batch: Optional[int] = None
    on_images: bool = False
    attributes: Mapping[str, Any] = {}
    output: OutputKey = None


def build(term: PerSlot) -> Objective:
    """The Objective scoring ``term`` at each render step."""
    values, slots, layer = term.values, term.slots, term.layer
    if term.on_images:

        def fn(ctx: Context) -> torch.Tensor:
            return per_slot(values, ctx.images, slots)
    else:

        def fn(ctx: Context) -> torch.Tensor:
            return per_slot(values, ctx.acts(layer), slots)

    need = min_batch_for(slots) if term.min_batch is None else term.min_batch
    obj = Objective(fn, () if term.on_images else [layer], term.name, need, term.output)
    for key, value in term.attributes.items():
        setattr(obj, key, value)
    return obj


def objective(
    body: Optional[Callable[..., PerSlot]] = None,
    *,
    name: Optional[str] = None,
    overwrite: bool = False,
) -> Any:
    """Decorator: ``body(*args) -> PerSlot`` becomes a factory ``(*args) -> Objective`` with the
    same signature and docstring, registered as ``name`` (default: the function's name)."""
    if body is None:
        return lambda f: objective(f, name=name, overwrite=overwrite)

    @functools.wraps(body)
    def factory(*args: Any, **kwargs: Any) -> Objective:
        return build(body(*args, **kwargs))

    factory.__signature__ = inspect.signature(body).replace(return_annotation="Objective")
    register_objective(name or body.__name__, factory, overwrite=overwrite)
    return factory
