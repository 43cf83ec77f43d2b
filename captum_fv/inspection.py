"""Layer inspection: list a model's layers with their output shapes and calls per forward.

One dry forward under :func:`~captum_fv.hooks.model_guard`, so the model is left as it was.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .hooks import model_guard
from .modelinfo import infer_in_channels, model_device, model_dtype

__all__ = ["LayerInfo", "layers"]


class LayerInfo(NamedTuple):
    """One row of :func:`layers`: name, module type, output shape (no batch dim), calls per forward."""

    name: str
    type: str
    shape: Tuple[int, ...]
    calls: int


def _size_hw(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(size, int):
        return size, size
    size = tuple(int(s) for s in size)
    if len(size) != 2:
        raise ValueError(f"size must be an int or (height, width); got {size}")
    return size  # type: ignore[return-value]


def layers(
    model: nn.Module,
    input_size: Union[int, Sequence[int]] = 224,
    channels: Optional[int] = None,
) -> List[LayerInfo]:
    """Every named module with its output shape, in the order they run (one dry forward).

    >>> fv.layers(model)[:2]
    [LayerInfo(name='_conv_stem', type='_Conv2dSame', shape=(32, 112, 112), calls=1), ...]
    """
    h, w = _size_hw(input_size)
    c = channels or infer_in_channels(model)
    x = torch.zeros(1, c, h, w, device=model_device(model), dtype=model_dtype(model)) + 0.5
    seen: Dict[str, LayerInfo] = {}

    def record(name: str) -> Callable:
        def hook(mod: nn.Module, inp: Any, out: Any) -> None:
            t = out[0] if isinstance(out, (tuple, list)) and out else out
            shape = tuple(t.shape[1:]) if torch.is_tensor(t) else ()
            if name in seen:
                seen[name] = seen[name]._replace(calls=seen[name].calls + 1)
            else:
                seen[name] = LayerInfo(name, type(mod).__name__, shape, 1)

        return hook

    with model_guard(model) as guard:
        for name, mod in model.named_modules():
            if name:
                guard.add_hook(mod.register_forward_hook(record(name)))
        with torch.no_grad():
            model(x)
    return list(seen.values())
