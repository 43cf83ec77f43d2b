"""Layer features the trust measures compare: channel-mean vectors at chosen layers, one pass."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
from torch import nn

from ..addressing import OUTPUT, LayerLike, resolve_layer
from ..hooks import Capture, model_guard
from ..inspection import layers as list_layers
from ..modelinfo import model_dtype, module_of

ForwardFunc = Union[nn.Module, Callable[..., torch.Tensor]]

#: How many layers along the way to the unit the path similarity looks at (the unit's own included).
PATH_LAYERS = 5


def channel_means(acts: torch.Tensor) -> torch.Tensor:
    """(N, C, ...) activations as (N, C) vectors: the mean over every position of each channel."""
    return acts.flatten(2).mean(2) if acts.dim() > 2 else acts.reshape(acts.shape[0], -1)


def layer_features(
    forward_func: ForwardFunc, layers: Sequence[LayerLike], images: torch.Tensor, batch_size: int = 32
) -> Dict[str, torch.Tensor]:
    """``{layer key: (N, C) channel means}`` for ``images``, every layer from one forward pass
    (stopped after the last one), without gradients."""
    module = module_of(forward_func)
    refs = [resolve_layer(module, layer) for layer in layers]
    device = next((p.device for p in module.parameters()), images.device) if module else images.device
    dtype = model_dtype(module)
    out: Dict[str, List[torch.Tensor]] = {r.key: [] for r in refs}
    with model_guard(module), Capture(module, forward_func, refs) as run, torch.no_grad():
        for i in range(0, images.shape[0], batch_size):
            got = run(images[i : i + batch_size].to(device, dtype))
            for r in refs:
                out[r.key].append(channel_means(got[r.key]).float().cpu())
    return {key: torch.cat(v) for key, v in out.items()}


def _depth(name: str) -> int:
    return name.count(".")


def path_layers(forward_func: ForwardFunc, layer: LayerLike, n: int = PATH_LAYERS, input_size: int = 128) -> List[str]:
    """Up to ``n`` layers evenly spaced along the way to ``layer`` (itself last): the modules at
    its own nesting depth that run before it with a spatial (C, H, W) output, e.g.
    ``_blocks.0 ... _blocks.8`` for ``_blocks.8``; for the model output, the top-level blocks."""
    module = module_of(forward_func)
    ref = resolve_layer(module, layer)
    infos = [i for i in list_layers(module, input_size=input_size) if len(i.shape) == 3]
    if ref.name == OUTPUT:
        depth = 1 if any(_depth(i.name) == 1 for i in infos) else 0
        before = [i.name for i in infos if _depth(i.name) == depth]
    else:
        names = [i.name for i in infos]
        stop = names.index(ref.name) if ref.name in names else len(names)
        before = [nm for nm in names[:stop] if _depth(nm) == _depth(ref.name)]
    chosen = _evenly(before, n - (ref.name != OUTPUT))
    return chosen + ([ref.key] if ref.name != OUTPUT else [])


def _evenly(names: List[str], n: int) -> List[str]:
    """``n`` names evenly spaced over ``names``, the last included."""
    if n <= 0 or not names:
        return []
    if len(names) <= n:
        return list(names)
    step = (len(names) - 1) / max(n - 1, 1)
    picks = sorted({round(len(names) - 1 - k * step) for k in range(n)})
    return [names[i] for i in picks]


def default_feature_layer(forward_func: ForwardFunc, layer: LayerLike, input_size: int = 128) -> Optional[str]:
    """The layer whose features judge similarity by default: the path layer just before the
    audited one (not the layer itself: it holds the unit, which a hidden branch can make
    dominate every feature vector), or for the model output the last spatial top-level block."""
    path = path_layers(forward_func, layer, input_size=input_size)
    ref = resolve_layer(module_of(forward_func), layer)
    if ref.name != OUTPUT:
        return path[-2] if len(path) > 1 else ref.key
    return path[-1] if path else None


def as_images(x: Any) -> torch.Tensor:
    """A batch of images (N, C, H, W) from a tensor or a sequence of (C, H, W) tensors."""
    if torch.is_tensor(x):
        return x if x.dim() == 4 else x.unsqueeze(0)
    return torch.stack([torch.as_tensor(t) for t in x])
