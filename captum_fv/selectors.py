"""Neuron selectors, in Captum's conventions, so one selector drives a visualization and an
attribution alike.

* ``int``: here, the whole channel (spatial mean); for a 1-D layer output, that neuron.
* ``tuple``: indexes one neuron of the layer output without the batch dim, e.g. ``(c, y, x)``;
  slices select several, which are summed (as Captum does).
* ``callable``: layer output (N, ...) -> one value per example (N,).
* :func:`channel`: a callable selecting the spatial mean of one channel; pass it unchanged as
  ``neuron_selector`` to Captum's ``NeuronIntegratedGradients`` and friends.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Tuple, Union

import torch

from .addressing import LayerLike
from .objectives import base as _base
from .objectives import units as _units
from .objectives.base import Objective, Slots

Selector = Union[int, Tuple[Any, ...], Callable[[torch.Tensor], torch.Tensor]]


class ChannelSelector:
    """Callable selector: the mean of channel ``index`` over all positions, one value per example."""

    def __init__(self, index: int):
        if not isinstance(index, numbers.Integral) or index < 0:
            raise ValueError(f"a channel index must be a non-negative int, got {index!r}")
        self.index = int(index)

    def __call__(self, layer_output: torch.Tensor) -> torch.Tensor:
        if layer_output.dim() < 2 or self.index >= layer_output.shape[1]:
            raise IndexError(
                f"channel {self.index} is out of range for a layer output of shape "
                f"{tuple(layer_output.shape[1:])} ({layer_output.shape[1] if layer_output.dim() > 1 else 0} channels)"
            )
        return _base.spatial_mean(layer_output[:, self.index])

    def __repr__(self) -> str:
        return f"channel({self.index})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, ChannelSelector) and other.index == self.index

    def __hash__(self) -> int:
        return hash(("channel", self.index))


def channel(index: int) -> ChannelSelector:
    """A selector for channel ``index`` (spatial mean), valid here and in Captum's Neuron* methods.

    >>> sel = captum_fv.channel(12)
    >>> NeuronVisualization(model, "_blocks.8").visualize(sel)
    >>> NeuronIntegratedGradients(model, model._blocks[8]).attribute(x, neuron_selector=sel)
    """
    return ChannelSelector(index)


def as_callable(selector: Selector) -> Callable[[torch.Tensor], torch.Tensor]:
    """The selector as a function layer output -> (N,) values (ints become channels)."""
    if isinstance(selector, bool):
        raise TypeError("a neuron selector cannot be a bool")
    if isinstance(selector, numbers.Integral):
        return ChannelSelector(int(selector))
    if isinstance(selector, tuple):
        return _tuple_selector(selector)
    if callable(selector):
        return _checked_callable(selector)
    raise TypeError(
        f"a neuron selector is an int (channel), a tuple indexing one neuron, e.g. (c, y, x), or "
        f"a callable from the layer output to one value per example; got {type(selector).__name__}"
    )


def _tuple_selector(index: Tuple[Any, ...]) -> Callable[[torch.Tensor], torch.Tensor]:
    def select(a: torch.Tensor) -> torch.Tensor:
        if len(index) != a.dim() - 1:
            raise ValueError(
                f"selector {index} has {len(index)} indices but the layer output has shape "
                f"{tuple(a.shape[1:])} ({a.dim() - 1} dims, no batch); give one index per dim, "
                "e.g. (channel, y, x), or pass an int / captum_fv.channel(c) for a whole channel"
            )
        for i, (k, n) in enumerate(zip(index, a.shape[1:])):
            if isinstance(k, numbers.Integral) and not -n <= k < n:
                raise IndexError(
                    f"selector {index}: index {k} is out of range for dim {i} of size {n} "
                    f"(layer output shape {tuple(a.shape[1:])})"
                )
        v = a[(slice(None),) + tuple(index)]
        return v.flatten(1).sum(1) if v.dim() > 1 else v  # slices: summed, as in Captum

    select.__name__ = f"neuron{index}"
    return select


def _checked_callable(fn: Callable) -> Callable[[torch.Tensor], torch.Tensor]:
    def select(a: torch.Tensor) -> torch.Tensor:
        v = fn(a)
        if not torch.is_tensor(v):
            raise TypeError(f"selector {describe(fn)} returned {type(v).__name__}, not a tensor")
        if v.dim() == 2 and v.shape[1] == 1:
            v = v[:, 0]
        if v.shape != (a.shape[0],):
            raise ValueError(
                f"selector {describe(fn)} returned shape {tuple(v.shape)} for a batch of "
                f"{a.shape[0]}; it must return one value per example, shape ({a.shape[0]},)"
            )
        return v

    select.__name__ = describe(fn)
    return select


def describe(selector: Any) -> str:
    """A short human-readable name: 'channel 5', 'neuron (5, 3, 3)', or the callable's name."""
    if isinstance(selector, numbers.Integral):
        return f"channel {int(selector)}"
    if isinstance(selector, ChannelSelector):
        return f"channel {selector.index}"
    if isinstance(selector, tuple):
        return f"neuron {selector}"
    return getattr(selector, "__name__", None) or repr(selector)


def channel_index(selector: Any) -> Union[int, None]:
    """The channel an int or channel() selector means, else None."""
    if isinstance(selector, numbers.Integral) and not isinstance(selector, bool):
        return int(selector)
    if isinstance(selector, ChannelSelector):
        return selector.index
    return None


def selector_objective(layer: LayerLike, selector: Selector, batch: Slots = None) -> Objective:
    """The objective 'maximize this selector's value at ``layer``' on the targeted slots."""
    c = channel_index(selector)
    if c is not None:
        return _units.channel(layer, c, batch=batch)
    fn = as_callable(selector)
    return Objective(
        lambda ctx: _base.per_slot(lambda a, _: fn(a), ctx.acts(layer), batch),
        [layer],
        f"{describe(selector)} @ {_base.layer_name(layer)}",
        _base.min_batch_for(batch),
    )
