"""Layer addressing: a layer is a module object or its dotted ``named_modules()`` name.

A module that runs several times in one forward pass (ResNet's shared ``relu``) is
ambiguous; pick one call with a ``#k`` suffix: ``"layer1.0.relu#1"`` is its second call.
``None`` (or ``""``) means the model's output, e.g. the logits for class objectives.
"""
from __future__ import annotations

import difflib
from typing import Any, Callable, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import nn

LayerLike = Union[str, nn.Module, None]

#: Key of the model output in captured activations.
OUTPUT = ""


class LayerRef(NamedTuple):
    """A resolved layer: its name, its module and which call of it (None: the only one)."""

    name: str
    module: nn.Module
    call: Optional[int] = None

    @property
    def key(self) -> str:
        return self.name if self.call is None else f"{self.name}#{self.call}"


class LayerInfo(NamedTuple):
    """One row of :func:`layers`: name, module type, output shape (no batch dim), calls per forward."""

    name: str
    type: str
    shape: Tuple[int, ...]
    calls: int


def _closest(name: str, names: Sequence[str], n: int = 5) -> List[str]:
    close = difflib.get_close_matches(name, names, n=n, cutoff=0.5)
    if not close:  # a prefix or suffix often says more than edit distance
        close = [m for m in names if name and (m.endswith(name) or m.startswith(name))][:n]
    return close


def resolve_layer(model: Optional[nn.Module], layer: LayerLike) -> LayerRef:
    """Turn a module, a dotted name (optionally ``name#k``) or None into a :class:`LayerRef`.

    >>> resolve_layer(model, "_blocks.8").name
    '_blocks.8'
    """
    if layer is None or (isinstance(layer, str) and layer == OUTPUT):
        return LayerRef(OUTPUT, model if isinstance(model, nn.Module) else nn.Identity())
    if isinstance(layer, nn.Module):
        if not isinstance(model, nn.Module):
            return LayerRef(f"<{type(layer).__name__}@{id(layer):x}>", layer)
        for name, mod in model.named_modules(remove_duplicate=False):
            if mod is layer:
                return LayerRef(name, layer)
        raise ValueError(
            f"the layer {type(layer).__name__} is not a submodule of the model "
            f"({type(model).__name__}); pass a module from model.named_modules() or its name"
        )
    if not isinstance(layer, str):
        raise TypeError(
            f"a layer must be an nn.Module, a dotted name such as 'features.3', or None for the "
            f"model output; got {type(layer).__name__}"
        )
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"layer {layer!r} is given by name, but forward_func is not an nn.Module, so names "
            "cannot be looked up; pass the module object instead"
        )
    name, call = layer, None
    if "#" in layer:
        name, _, idx = layer.rpartition("#")
        if not idx.isdigit():
            raise ValueError(f"bad call index in {layer!r}: write 'name#k' with k = 0, 1, ...")
        call = int(idx)
    modules = dict(model.named_modules(remove_duplicate=False))
    if name not in modules:
        names = [n for n in modules if n]
        hint = _closest(name, names)
        msg = f"no layer named {name!r} in {type(model).__name__}"
        msg += f"; closest: {', '.join(map(repr, hint))}" if hint else ""
        raise ValueError(msg + ". List them with captum_fv.layers(model).")
    return LayerRef(name, modules[name], call)


def infer_in_channels(model: Any, default: Optional[int] = 3) -> Optional[int]:
    """Input channels the model expects: those of its first conv, else ``default``."""
    if isinstance(model, nn.Module):
        for mod in model.modules():
            if isinstance(mod, (nn.Conv2d, nn.Conv1d, nn.Conv3d)):
                return mod.in_channels
    return default


def model_device(model: Any) -> torch.device:
    """Device of the model's first parameter or buffer (CPU when it has none)."""
    if isinstance(model, nn.Module):
        for t in model.parameters():
            return t.device
        for t in model.buffers():
            return t.device
    return torch.device("cpu")


def model_dtype(model: Any) -> torch.dtype:
    """Floating dtype of the model's first floating parameter (float32 when none)."""
    if isinstance(model, nn.Module):
        for t in model.parameters():
            if t.is_floating_point():
                return t.dtype
    return torch.float32


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
    [LayerInfo(name='_conv_stem', type='Conv2d', shape=(32, 112, 112), calls=1), ...]
    """
    from .hooks import model_guard  # local: hooks imports this module

    h, w = _size_hw(input_size)
    c = channels or infer_in_channels(model)
    x = torch.zeros(1, c, h, w, device=model_device(model), dtype=model_dtype(model)) + 0.5
    seen: dict = {}

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
