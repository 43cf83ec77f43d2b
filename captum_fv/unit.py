"""What a unit is: the one place that reads a neuron selector.

A selector, in Captum's conventions, names one unit of a layer:

* ``int`` ``c``: channel ``c``, its mean over all positions (for a 1-D layer output, neuron ``c``);
* :func:`channel` ``(c)``: the same, as a callable Captum's ``Neuron*`` methods accept;
* ``tuple``: one neuron of the layer output without the batch dim, e.g. ``(c, y, x)``; slices
  select several, which are summed (as Captum does);
* ``callable``: layer output ``(N, ...)`` -> one value per example ``(N,)``.

:meth:`Unit.parse` reads any of them once; every module then asks the :class:`Unit` for its value
on activations, its objective for given batch slots, its form for Captum's ``neuron_selector``,
its title and its file name. :func:`as_units` reads "many units": any sequence of selectors
(list, range, array) is many units; a tuple is one neuron, as in Captum.

>>> u = Unit.parse(12)
>>> u.title, u.file_name
('channel 12', 'channel_0012')
>>> [v.title for v in as_units(range(2))]
['channel 0', 'channel 1']
"""

from __future__ import annotations

import hashlib
import inspect
import numbers
import re
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .addressing import LayerLike
from .objectives import units as unit_objectives
from .objectives.base import Objective, Slots, layer_name, min_batch_for, per_slot, spatial_mean

Selector = Union[int, Tuple[Any, ...], Callable[[torch.Tensor], torch.Tensor], "Unit"]


class ChannelSelector:
    """Callable selector: the mean of channel ``index`` over all positions, one value per example."""

    def __init__(self, index: int):
        if isinstance(index, bool) or not isinstance(index, numbers.Integral) or index < 0:
            raise ValueError(f"a channel index must be a non-negative int, got {index!r}")
        self.index = int(index)

    def __call__(self, layer_output: torch.Tensor) -> torch.Tensor:
        if layer_output.dim() < 2 or self.index >= layer_output.shape[1]:
            n = layer_output.shape[1] if layer_output.dim() > 1 else 0
            raise IndexError(
                f"channel {self.index} is out of range for a layer output of shape "
                f"{tuple(layer_output.shape[1:])} ({n} channels)"
            )
        return spatial_mean(layer_output[:, self.index])

    def __repr__(self) -> str:
        return f"channel({self.index})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, ChannelSelector) and other.index == self.index

    def __hash__(self) -> int:
        return hash(("channel", self.index))


def channel(index: int) -> ChannelSelector:
    """A selector for channel ``index`` (spatial mean), valid here and in Captum's Neuron* methods.

    >>> sel = channel(12)
    >>> sel(torch.ones(2, 16, 4, 4)).shape
    torch.Size([2])
    """
    return ChannelSelector(index)


def _callable_name(fn: Any) -> str:
    return getattr(fn, "__name__", None) or repr(fn)


class Unit:
    """One unit of a layer, parsed from a selector (see the module docstring).

    ``kind`` is ``"channel"``, ``"neuron"`` or ``"function"``; ``selector`` is what the user gave.
    Two units are equal when they select the same thing (``3 == channel(3)``).
    """

    __slots__ = ("kind", "channel", "index", "fn", "selector")

    def __init__(
        self,
        kind: str,
        selector: Any,
        channel: Optional[int] = None,
        index: Optional[Tuple[Any, ...]] = None,
        fn: Optional[Callable] = None,
    ) -> None:
        self.kind, self.selector, self.channel, self.index, self.fn = kind, selector, channel, index, fn

    # -- parsing -----------------------------------------------------------------------------
    @classmethod
    def parse(cls, selector: Selector) -> "Unit":
        """Read a selector once; raises TypeError naming the accepted forms."""
        if isinstance(selector, Unit):
            return selector
        if isinstance(selector, (bool, np.bool_)):
            raise TypeError("a neuron selector cannot be a bool")
        if isinstance(selector, (numbers.Integral, np.integer)) or (
            torch.is_tensor(selector) and selector.dim() == 0 and not selector.is_floating_point()
        ):
            c = int(selector)
            if c < 0:
                raise ValueError(f"a channel index must be a non-negative int, got {c}")
            return cls("channel", selector, channel=c)
        if isinstance(selector, ChannelSelector):
            return cls("channel", selector, channel=selector.index)
        if isinstance(selector, tuple):
            return cls("neuron", selector, index=selector)
        if callable(selector):
            return cls("function", selector, fn=selector)
        raise TypeError(
            "a neuron selector is an int (channel), a tuple indexing one neuron, e.g. (c, y, x), or "
            f"a callable from the layer output to one value per example; got {type(selector).__name__}"
        )

    # -- names -------------------------------------------------------------------------------
    @property
    def title(self) -> str:
        """'channel 5', 'neuron (5, 3, 3)', or the callable's name."""
        if self.kind == "channel":
            return f"channel {self.channel}"
        if self.kind == "neuron":
            return f"neuron {self.index}"
        return _callable_name(self.fn)

    @property
    def file_name(self) -> str:
        """A file-system-safe, sortable name: ``channel_0003``, ``neuron_3_5_5``, ``fn_name``."""
        if self.kind == "channel":
            return f"channel_{self.channel:04d}"
        if self.kind == "neuron":
            return "neuron_" + "_".join(re.sub(r"[^A-Za-z0-9-]+", "-", str(i)) for i in self.index)
        return "fn_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", self.title)[:60]

    @property
    def identity(self) -> str:
        """The file name, and for a callable a digest of its code and constants: two different
        functions that share a name are not the same unit (used by resume fingerprints)."""
        if self.kind != "function":
            return self.file_name
        # a callable object keeps its code on its class's __call__
        code = getattr(self.fn, "__code__", None) or getattr(
            inspect.getattr_static(type(self.fn), "__call__", None), "__code__", None
        )
        if code is None:
            return self.file_name
        body = code.co_code + repr(code.co_consts).encode() + repr(code.co_names).encode()
        return f"{self.file_name}:{hashlib.sha256(body).hexdigest()[:16]}"

    def __repr__(self) -> str:
        return f"Unit({self.title})"

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, Unit):
            try:
                other = Unit.parse(other)
            except (TypeError, ValueError):
                return NotImplemented
        if self.kind == "function" or other.kind == "function":
            return self.kind == other.kind and self.fn is other.fn
        return (self.kind, self.channel, self.index) == (other.kind, other.channel, other.index)

    def __hash__(self) -> int:
        return hash(
            (
                self.kind,
                self.channel,
                self.index if self.kind == "neuron" else None,
                id(self.fn) if self.kind == "function" else None,
            )
        )

    # -- values ------------------------------------------------------------------------------
    def check(self, layer_shape: Sequence[int], layer: LayerLike = None) -> None:
        """Raise a clear error when the unit does not exist in a layer output of ``layer_shape``
        (no batch dim); callables are checked when they run."""
        shape = tuple(layer_shape)
        if self.kind == "channel":
            n = shape[0] if shape else 0
            if self.channel >= n:
                raise IndexError(
                    f"channel {self.channel} is out of range for layer {layer_name(layer)}, "
                    f"which has {n} channels (0..{n - 1})"
                )
        elif self.kind == "neuron":
            self._check_index(shape)

    def _check_index(self, shape: Tuple[int, ...]) -> None:
        if len(self.index) != len(shape):
            raise ValueError(
                f"selector {self.index} has {len(self.index)} indices but the layer output has shape "
                f"{shape} ({len(shape)} dims, no batch); give one index per dim, e.g. (channel, y, x), "
                "or pass an int / captum_fv.channel(c) for a whole channel"
            )
        for i, (k, n) in enumerate(zip(self.index, shape)):
            if isinstance(k, numbers.Integral) and not -n <= k < n:
                raise IndexError(
                    f"selector {self.index}: index {k} is out of range for dim {i} of size "
                    f"{n} (layer output shape {shape})"
                )

    def is_single(self, layer_shape: Sequence[int]) -> bool:
        """Whether the unit is one neuron of a layer output of ``layer_shape`` (no batch dim):
        an int-only tuple, or a channel of a 1-D output. Channels of maps, slices and callables
        aggregate several."""
        if self.kind == "channel":
            return len(tuple(layer_shape)) == 1
        return self.kind == "neuron" and all(isinstance(i, numbers.Integral) for i in self.index)

    def value(self, acts: torch.Tensor) -> torch.Tensor:
        """The unit's value per example, ``(N,)``, on a layer output ``(N, ...)``."""
        if self.kind == "channel":
            return ChannelSelector(self.channel)(acts)
        if self.kind == "neuron":
            self._check_index(tuple(acts.shape[1:]))
            v = acts[(slice(None),) + tuple(self.index)]
            return v.flatten(1).sum(1) if v.dim() > 1 else v  # slices: summed, as in Captum
        v = self.fn(acts)
        if not torch.is_tensor(v):
            raise TypeError(f"selector {self.title} returned {type(v).__name__}, not a tensor")
        if v.dim() == 2 and v.shape[1] == 1:
            v = v[:, 0]
        if v.shape != (acts.shape[0],):
            raise ValueError(
                f"selector {self.title} returned shape {tuple(v.shape)} for a batch of "
                f"{acts.shape[0]}; it must return one value per example, shape ({acts.shape[0]},)"
            )
        return v

    def objective(self, layer: LayerLike, batch: Slots = None) -> Objective:
        """'Maximize this unit at ``layer``' on the targeted batch slots (all when None)."""
        if self.kind == "channel":
            return unit_objectives.channel(layer, self.channel, batch=batch)
        return Objective(
            lambda ctx: per_slot(lambda a, _: self.value(a), ctx.acts(layer), batch),
            [layer],
            f"{self.title} @ {layer_name(layer)}",
            min_batch_for(batch),
        )

    def neuron_selector(self, aggregates: bool = True) -> Any:
        """The unit in Captum's ``neuron_selector`` terms: a channel as :func:`channel` (or, for
        methods that cannot aggregate, its int: a 1-D layer's neuron), a tuple as Captum's index,
        a callable wrapped so its errors name it."""
        if self.kind == "channel":
            return ChannelSelector(self.channel) if aggregates else self.channel
        if self.kind == "neuron":
            return self.index
        return _NamedValue(self)


class _NamedValue:
    """A function unit as a Captum callable selector (shape-checked, named after the unit)."""

    def __init__(self, unit: Unit) -> None:
        self.unit = unit
        self.__name__ = unit.title

    def __call__(self, layer_output: torch.Tensor) -> torch.Tensor:
        return self.unit.value(layer_output)


def is_many(selectors: Any) -> bool:
    """Whether ``selectors`` is a sequence of selectors (list, range, 1-D array or tensor) rather
    than one selector; a tuple is one neuron, as in Captum."""
    return (
        isinstance(selectors, (list, range))
        or (isinstance(selectors, np.ndarray) and selectors.ndim == 1)
        or (torch.is_tensor(selectors) and selectors.dim() == 1)
    )


def as_units(selectors: Any) -> List[Unit]:
    """Many units from one selector or a sequence of them (list, range, array, 1-D tensor); a tuple
    is one neuron, as in Captum."""
    if is_many(selectors):
        units = [Unit.parse(s.item() if hasattr(s, "item") and not callable(s) else s) for s in selectors]
        if not units:
            raise ValueError(
                "no neuron selectors given (no units); pass a selector or a non-empty sequence of selectors"
            )
        return units
    return [Unit.parse(selectors)]


def units_objective(layer: LayerLike, units: Sequence[Unit], slots: Sequence[int]) -> Objective:
    """One objective driving slot ``slots[i]`` towards ``units[i]``; channels share one op."""
    if all(u.kind == "channel" for u in units):
        return unit_objectives.channel(layer, [u.channel for u in units], batch=list(slots))
    return sum(u.objective(layer, batch=[slot]) for u, slot in zip(units, slots))
