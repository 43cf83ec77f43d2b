"""Small facts about a model: the module behind a callable, its device, dtype and input channels,
and which part of what it returns is "the output" (:func:`select_output`).

Every function accepts any callable (a plain function has no parameters) and falls back to a
safe default, so callers need not special-case non-module forward functions.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Tuple, Union

import torch
from torch import nn

__all__ = [
    "WRAPPER_PREFIXES",
    "OutputKey",
    "infer_in_channels",
    "model_device",
    "model_dtype",
    "module_of",
    "select_output",
    "unwrap",
]

#: Name prefixes wrappers add to ``named_modules()``: DataParallel / DDP's ``module.`` and
#: ``torch.compile``'s ``_orig_mod.``. Layer names resolve with or without them.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def unwrap(forward_func: Any) -> Any:
    """The model inside ``nn.DataParallel``, ``DistributedDataParallel`` and ``torch.compile``
    wrappers (any nesting), else ``forward_func`` itself. Compiled models run eagerly from here on:
    hooks and the truncated forward need Python-level module calls. Nothing is modified."""
    f = forward_func
    while isinstance(f, nn.Module):
        if isinstance(f, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            f = f.module
        elif isinstance(getattr(f, "_orig_mod", None), nn.Module):  # torch.compile's OptimizedModule
            f = f._orig_mod
        else:
            break
    return f


def module_of(forward_func: Any) -> Optional[nn.Module]:
    """The nn.Module behind ``forward_func`` (itself, or the owner of a bound method), unwrapped."""
    forward_func = unwrap(forward_func)
    if isinstance(forward_func, nn.Module):
        return forward_func
    owner = getattr(forward_func, "__self__", None)
    return unwrap(owner) if isinstance(owner, nn.Module) else None


def infer_in_channels(
    model: Any, default: Optional[int] = 3, kinds: Tuple[type, ...] = (nn.Conv2d, nn.Conv1d, nn.Conv3d)
) -> Optional[int]:
    """Input channels the model expects: those of its first conv of ``kinds``, else ``default``."""
    if isinstance(model, nn.Module):
        for mod in model.modules():
            if isinstance(mod, kinds):
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


#: What :func:`select_output` accepts as ``output=``: a key, an index or an attribute name.
OutputKey = Union[None, str, int]


def select_output(out: Any, output: OutputKey = None) -> torch.Tensor:
    """The tensor a unit of "the model output" means, from whatever the model returned.

    ``output`` given: that key (dict), index (tuple/list) or attribute (a ``ModelOutput``-like
    object). Otherwise: a tensor as is; a tuple/list its first element (RNN-style ``(output,
    state)``); a dict or object with logits (a ``"logits"`` key or ``.logits``) its logits.
    Anything else raises, asking for ``output=``.
    """
    if output is not None:
        return _checked(_pick(out, output), output)
    if torch.is_tensor(out):
        return out
    if isinstance(out, (tuple, list)) and out and torch.is_tensor(out[0]):
        return out[0]
    logits = out.get("logits") if isinstance(out, Mapping) else getattr(out, "logits", None)
    if torch.is_tensor(logits):
        return logits
    keys = f" (keys {sorted(map(str, out))})" if isinstance(out, Mapping) else ""
    raise TypeError(
        f"the model returned a {type(out).__name__}{keys}, not a tensor, a tuple or "
        "an output with logits; say which part is the output with output=KEY_OR_INDEX"
    )


def _pick(out: Any, output: Union[str, int]) -> Any:
    try:
        if isinstance(out, (Mapping, tuple, list)):
            return out[output]
        return getattr(out, output) if isinstance(output, str) else out[output]
    except (KeyError, IndexError, AttributeError, TypeError) as e:
        raise KeyError(f"output={output!r} is not part of the model output ({type(out).__name__}): {e}") from None


def _checked(value: Any, output: Union[str, int]) -> torch.Tensor:
    if not torch.is_tensor(value):
        raise TypeError(f"output={output!r} of the model output is a {type(value).__name__}, not a tensor")
    return value
