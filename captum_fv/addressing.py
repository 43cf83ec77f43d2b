"""Layer addressing: a layer is a module object or its dotted ``named_modules()`` name.

A module that runs several times in one forward pass (ResNet's shared ``relu``) is
ambiguous; pick one call with a ``#k`` suffix: ``"layer1.0.relu#1"`` is its second call.
``None`` (or ``""``) means the model's output, e.g. the logits for class objectives.
"""

from __future__ import annotations

import difflib
from typing import List, NamedTuple, Optional, Sequence, Union

from torch import nn

from .modelinfo import WRAPPER_PREFIXES, unwrap

__all__ = ["OUTPUT", "LayerLike", "LayerRef", "resolve_layer"]

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


def _closest(name: str, names: Sequence[str], n: int = 5) -> List[str]:
    close = difflib.get_close_matches(name, names, n=n, cutoff=0.5)
    if not close:  # a prefix or suffix often says more than edit distance
        close = [m for m in names if name and (m.endswith(name) or m.startswith(name))][:n]
    return close


def _without_wrapper_prefix(name: str, modules: dict) -> str:
    """``module.features.3`` -> ``features.3`` when only the latter exists (see WRAPPER_PREFIXES)."""
    while name not in modules:
        prefix = next((p for p in WRAPPER_PREFIXES if name.startswith(p)), None)
        if prefix is None:
            break
        name = name[len(prefix) :]
    return name


def resolve_layer(model: Optional[nn.Module], layer: LayerLike) -> LayerRef:
    """Turn a module, a dotted name (optionally ``name#k``) or None into a :class:`LayerRef`.

    >>> resolve_layer(model, "_blocks.8").name
    '_blocks.8'
    """
    model = unwrap(model)  # names are those of the wrapped model, with or without the prefix
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
    name = _without_wrapper_prefix(name, modules)
    if name not in modules:
        names = [n for n in modules if n]
        hint = _closest(name, names)
        msg = f"no layer named {name!r} in {type(model).__name__}"
        msg += f"; closest: {', '.join(map(repr, hint))}" if hint else ""
        raise ValueError(msg + ". List them with captum_fv.layers(model).")
    return LayerRef(name, modules[name], call)
