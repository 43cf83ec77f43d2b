"""Layer features the trust measures compare: channel-mean vectors at chosen layers, one pass."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..addressing import OUTPUT, LayerLike, resolve_layer
from ..hooks import Capture, batch_args, forward_args, model_guard
from ..modelinfo import infer_in_channels, model_dtype, module_of

ForwardFunc = Union[nn.Module, Callable[..., torch.Tensor]]

#: How many layers along the way to the unit the path similarity looks at (the unit's own included).
PATH_LAYERS = 5


def channel_means(acts: torch.Tensor) -> torch.Tensor:
    """(N, C, ...) activations as (N, C) vectors: the mean over every position of each channel."""
    return acts.flatten(2).mean(2) if acts.dim() > 2 else acts.reshape(acts.shape[0], -1)


def _device(module: Optional[nn.Module], fallback: torch.device) -> torch.device:
    return next((p.device for p in module.parameters()), fallback) if module is not None else fallback


def set_features(
    forward_func: ForwardFunc,
    layers: Sequence[LayerLike],
    sets: Sequence[torch.Tensor],
    args: Optional[Sequence[Any]] = None,
    batch_size: int = 64,
) -> List[Dict[str, torch.Tensor]]:
    """``{layer key: (N, C) channel means}`` for each image set of ``sets``, without gradients.

    One hooked model serves every set, each run in its own batches from its first image, so a
    set's features do not depend on the other sets. ``args``: per set, Captum's
    ``additional_forward_args`` (a tensor with one row per image is batched with the images, one
    with first dim 1 serves every image). A one-image probe runs first: every later forward
    stops after the last layer."""
    module = module_of(forward_func)
    refs = [resolve_layer(module, layer) for layer in layers]
    args = list(args) if args is not None else [None] * len(sets)
    nonempty = [i for i, s in enumerate(sets) if len(s)]
    out: List[Dict[str, List[torch.Tensor]]] = [{r.key: [] for r in refs} for _ in sets]
    if not nonempty:
        return [{k: torch.zeros(0) for k in o} for o in out]
    device, dtype = _device(module, sets[nonempty[0]].device), model_dtype(module)
    with model_guard(module), Capture(module, forward_func, refs) as run, torch.no_grad():
        first = nonempty[0]
        run(sets[first][:1].to(device, dtype), batch_args(forward_args(args[first]), len(sets[first]), 0, 1))
        for i in nonempty:
            images, fixed = sets[i], forward_args(args[i])
            for start in range(0, len(images), batch_size):
                stop = min(start + batch_size, len(images))
                got = run(images[start:stop].to(device, dtype), batch_args(fixed, len(images), start, stop))
                for r in refs:
                    out[i][r.key].append(channel_means(got[r.key]).float().cpu())
    return [{k: torch.cat(v) if v else torch.zeros(0) for k, v in o.items()} for o in out]


def layer_features(
    forward_func: ForwardFunc,
    layers: Sequence[LayerLike],
    images: torch.Tensor,
    batch_size: int = 32,
    additional_forward_args: Any = None,
) -> Dict[str, torch.Tensor]:
    """``{layer key: (N, C) channel means}`` for ``images``, every layer from one forward pass
    (stopped after the last one), without gradients."""
    return set_features(forward_func, layers, [images], [additional_forward_args], batch_size)[0]


def _depth(name: str) -> int:
    return name.count(".")


def spatial_layers(forward_func: ForwardFunc, probe: torch.Tensor, additional_forward_args: Any = None) -> List[str]:
    """Named modules that run exactly once per forward with a (C, H, W) output, in the order
    they run (one dry forward of ``probe``, a (1, C, H, W) image)."""
    module = module_of(forward_func)
    if module is None:
        return []
    seen: Dict[str, Tuple[int, int]] = {}  # name -> (output rank, calls)

    def record(name: str) -> Callable:
        def hook(mod: nn.Module, inp: Any, out: Any) -> None:
            t = out[0] if isinstance(out, (tuple, list)) and out else out
            rank = t.dim() - 1 if torch.is_tensor(t) else 0
            seen[name] = (rank, seen[name][1] + 1) if name in seen else (rank, 1)

        return hook

    x = probe[:1].to(_device(module, probe.device), model_dtype(module))
    with model_guard(module) as guard, torch.no_grad():
        for name, mod in module.named_modules():
            if name:
                guard.add_hook(mod.register_forward_hook(record(name)))
        forward_func(x, *batch_args(forward_args(additional_forward_args), 1))
    return [name for name, (rank, calls) in seen.items() if rank == 3 and calls == 1]


def path_layers(
    forward_func: ForwardFunc,
    layer: LayerLike,
    n: int = PATH_LAYERS,
    input_size: int = 128,
    probe: Optional[torch.Tensor] = None,
    additional_forward_args: Any = None,
) -> List[str]:
    """Up to ``n`` layers evenly spaced along the way to ``layer`` (itself last): the modules at
    its own nesting depth that run before it with a spatial (C, H, W) output, e.g.
    ``_blocks.0 ... _blocks.8`` for ``_blocks.8``; for the model output, the top-level blocks.
    ``probe``: an input to trace the model with (default: a grey ``input_size`` image)."""
    module = module_of(forward_func)
    ref = resolve_layer(module, layer)
    if probe is None:
        probe = torch.full((1, infer_in_channels(module, default=3), input_size, input_size), 0.5)
    names = spatial_layers(forward_func, probe, additional_forward_args)
    if ref.name == OUTPUT:
        depth = 1 if any(_depth(nm) == 1 for nm in names) else 0
        before = [nm for nm in names if _depth(nm) == depth]
    else:
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


def feature_layer(path: Sequence[str], layer_is_output: bool) -> Optional[str]:
    """The layer whose features judge similarity by default, from the unit's path: the path
    layer just before the audited one (not the layer itself: it holds the unit, which a hidden
    branch can make dominate every feature vector), or for the model output the last one."""
    if layer_is_output:
        return path[-1] if path else None
    return path[-2] if len(path) > 1 else (path[-1] if path else None)


def default_feature_layer(forward_func: ForwardFunc, layer: LayerLike, input_size: int = 128) -> Optional[str]:
    """:func:`feature_layer` of the default :func:`path_layers` of ``layer``."""
    ref = resolve_layer(module_of(forward_func), layer)
    return feature_layer(path_layers(forward_func, layer, input_size=input_size), ref.name == OUTPUT)


def as_images(x: Any) -> torch.Tensor:
    """A batch of images (N, C, H, W) from a tensor or a sequence of (C, H, W) tensors."""
    if torch.is_tensor(x):
        return x if x.dim() == 4 else x.unsqueeze(0)
    return torch.stack([torch.as_tensor(t) for t in x])
