"""The Objective type: a function from a render step's context to one value per batch slot.

Sign convention (the only one in captum-fv): **objectives are maximized**. A negative optimum is
``-objective``; a penalty is a cost, so it is subtracted: ``channel("_blocks.8", 3) - 0.05 * l1()``.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, Dict, Iterable, Optional, Sequence, Tuple, Union

import torch

from ..addressing import LayerLike
from ..modelinfo import OutputKey
from ..registry import get_objective

Slots = Union[None, int, Sequence[int]]


class Context:
    """What an objective sees at one step.

    ``images``: the parameterized images (B, C, H, W) in [0, 1], before transforms;
    ``inputs``: what the model saw (after transforms); ``acts(layer)``: a layer's activation;
    ``output``: the model output (the part the objective chose, see :attr:`Objective.output`);
    ``step``: the step index.
    """

    def __init__(
        self,
        images: torch.Tensor,
        inputs: torch.Tensor,
        activations: Dict[str, torch.Tensor],
        keys: Dict[Any, str],
        step: int = 0,
    ) -> None:
        self.images = images
        self.inputs = inputs
        self.step = step
        self._acts = activations
        self._keys = keys

    @property
    def batch_size(self) -> int:
        return self.images.shape[0]

    def acts(self, layer: LayerLike) -> torch.Tensor:
        return self._acts[self._keys[layer_id(layer)]]

    @property
    def output(self) -> torch.Tensor:
        return self.acts(None)


def layer_id(layer: LayerLike) -> Any:
    """Hashable identity of a layer spec (modules by identity, names by value)."""
    if layer is None or layer == "":
        return ""
    return layer if isinstance(layer, str) else ("module", id(layer))


def layer_name(layer: LayerLike) -> str:
    """A layer spec as objective names and messages show it: ``'name'``, a module's type, or
    ``'output'``."""
    if layer is None or layer == "":
        return "'output'"
    return repr(layer) if isinstance(layer, str) else type(layer).__name__


class Objective:
    """A differentiable score per batch slot, to be maximized; combine with ``+ - * /``.

    ``layers``: what the hook engine must capture; ``output``: for a model returning a tuple,
    dict or ``ModelOutput``, which part is "the output" (a key, index or attribute; None: see
    :func:`captum_fv.modelinfo.select_output`). Terms combined must agree on ``output``.

    >>> o = obj.channel("_blocks.8", 5) + 0.5 * obj.diversity("_blocks.8")
    >>> o.layers  # what the hook engine must capture
    ('_blocks.8',)
    """

    def __init__(
        self,
        fn: Callable[[Context], torch.Tensor],
        layers: Iterable[LayerLike] = (),
        name: str = "objective",
        min_batch: int = 1,
        output: OutputKey = None,
    ) -> None:
        self.fn = fn
        self.layers: Tuple[LayerLike, ...] = tuple(_unique(layers))
        self.name = name
        self.min_batch = min_batch
        self.output = output

    def __call__(self, ctx: Context) -> torch.Tensor:
        return self.fn(ctx)

    def __repr__(self) -> str:
        return f"Objective({self.name})"

    def _combine(self, other: Any, op: Callable, symbol: str, reverse: bool = False) -> "Objective":
        if isinstance(other, numbers.Number):
            a, name = self, f"{other} {symbol} {self.name}" if reverse else f"{self.name} {symbol} {other}"
            fn = (lambda ctx: op(other, a(ctx))) if reverse else (lambda ctx: op(a(ctx), other))
            return Objective(fn, a.layers, name, a.min_batch, a.output)
        other = as_objective(other)
        a, b = (other, self) if reverse else (self, other)
        return Objective(
            lambda ctx: op(a(ctx), b(ctx)),
            a.layers + b.layers,
            f"({a.name} {symbol} {b.name})",
            max(a.min_batch, b.min_batch),
            shared_output(a, b),
        )

    def __add__(self, other: Any) -> "Objective":
        return self._combine(other, torch.add, "+")

    def __radd__(self, other: Any) -> "Objective":
        if isinstance(other, numbers.Number) and other == 0:
            return self  # sum([obj1, obj2]) starts from 0
        return self._combine(other, torch.add, "+", reverse=True)

    def __sub__(self, other: Any) -> "Objective":
        return self._combine(other, torch.sub, "-")

    def __rsub__(self, other: Any) -> "Objective":
        return self._combine(other, torch.sub, "-", reverse=True)

    def __mul__(self, other: Any) -> "Objective":
        return self._combine(other, torch.mul, "*")

    def __rmul__(self, other: Any) -> "Objective":
        return self._combine(other, torch.mul, "*", reverse=True)

    def __truediv__(self, other: Any) -> "Objective":
        return self._combine(other, torch.div, "/")

    def __rtruediv__(self, other: Any) -> "Objective":
        return self._combine(other, torch.div, "/", reverse=True)

    def __neg__(self) -> "Objective":
        a = self
        return Objective(lambda ctx: -a(ctx), a.layers, f"-{a.name}", a.min_batch, a.output)

    def __pos__(self) -> "Objective":
        return self


def shared_output(a: Objective, b: Objective) -> OutputKey:
    """The model-output part two combined objectives read; one render reads one."""
    if a.output is not None and b.output is not None and a.output != b.output:
        raise ValueError(
            f"{a.name} reads model output {a.output!r} and {b.name} reads "
            f"{b.output!r}; objectives rendered together must read the same output="
        )
    return a.output if a.output is not None else b.output


def _unique(layers: Iterable[LayerLike]) -> Iterable[LayerLike]:
    seen = set()
    for layer in layers:
        i = layer_id(layer)
        if i not in seen:
            seen.add(i)
            yield layer


def as_objective(obj: Any) -> Objective:
    """An Objective, or the shorthand ``"layer:channel"`` for :func:`channel`."""
    if isinstance(obj, Objective):
        return obj
    if isinstance(obj, str):
        layer, sep, unit = obj.rpartition(":")
        if not sep or not unit.strip().lstrip("-").isdigit():
            raise ValueError(
                f"cannot read {obj!r} as an objective: the shorthand is 'layer:channel', e.g. '_blocks.8:12'"
            )
        return get_objective("channel")(layer, int(unit))  # registered by objectives.units
    raise TypeError(
        f"expected an Objective or a 'layer:channel' string, got {type(obj).__name__}; build one "
        "with captum_fv.objectives (channel, neuron, ...)"
    )


def slot_index(batch: Slots, batch_size: int, device: torch.device) -> Optional[torch.Tensor]:
    """Slots as an index tensor (None: every slot). Validates against the batch size."""
    if batch is None:
        return None
    idx = [batch] if isinstance(batch, numbers.Integral) else list(batch)
    for i in idx:
        if not -batch_size <= i < batch_size:
            raise IndexError(
                f"objective targets batch slot {i}, but the batch has {batch_size} images; render with batch >= {i + 1}"
            )
    return torch.as_tensor(idx, dtype=torch.long, device=device) % batch_size


def min_batch_for(batch: Slots) -> int:
    if batch is None:
        return 1
    idx = [batch] if isinstance(batch, numbers.Integral) else list(batch)
    return max((i + 1 for i in idx if i >= 0), default=1)


def per_slot(
    values_fn: Callable[[torch.Tensor, Optional[torch.Tensor]], torch.Tensor],
    t: torch.Tensor,
    batch: Slots,
) -> torch.Tensor:
    """Apply ``values_fn(t[slots], slots)`` to the targeted slots only; zeros elsewhere.

    ``values_fn`` returns one value per row of its input, so untargeted slots cost nothing.
    """
    idx = slot_index(batch, t.shape[0], t.device)
    if idx is None:
        return values_fn(t, None)
    v = values_fn(t[idx], idx)
    return torch.zeros(t.shape[0], dtype=v.dtype, device=v.device).index_add(0, idx, v)


def spatial_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean over every dim after the first (batch): a channel's map → one value per row."""
    return t.flatten(1).mean(1) if t.dim() > 1 else t
