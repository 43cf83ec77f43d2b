"""Small facts about a model: the module behind a callable, its device, dtype and input channels.

Every function accepts any callable (a plain function has no parameters) and falls back to a
safe default, so callers need not special-case non-module forward functions.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
from torch import nn

__all__ = ["infer_in_channels", "model_device", "model_dtype", "module_of"]


def module_of(forward_func: Any) -> Optional[nn.Module]:
    """The nn.Module behind ``forward_func`` (itself, or the owner of a bound method)."""
    if isinstance(forward_func, nn.Module):
        return forward_func
    owner = getattr(forward_func, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


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
