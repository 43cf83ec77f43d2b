"""Default baselines, masks and batch sizes for Captum's methods, and the baselines as a batch
whose unit value completeness is measured against."""

from __future__ import annotations

import numbers
from typing import Any, Optional

import torch


def path_batch(inputs: torch.Tensor) -> int:
    """Path points per forward in integrated gradients: bounds memory whatever n_steps x
    examples. On a CPU, 32 points a forward at 128 px took 0.85x the time of 8 (the default
    model's ``_blocks.8``, 6 examples x 50 steps, 2 cores); a GPU wants them large."""
    if inputs.device.type != "cpu":
        return 64
    return max(1, min(64, (1 << 19) // max(1, inputs.shape[-1] * inputs.shape[-2])))


def grey_baselines(inputs: torch.Tensor, levels: int = 4) -> torch.Tensor:
    """A baseline distribution for SHAP methods: flat images at evenly spaced grey levels."""
    values = torch.linspace(0, 1, levels, device=inputs.device, dtype=inputs.dtype)
    flat = values.view(-1, *([1] * (inputs.dim() - 1)))
    return flat.expand(levels, *inputs.shape[1:]).contiguous()


def patch_mask(inputs: torch.Tensor, grid: int = 12) -> torch.Tensor:
    """A feature mask grouping pixels into a ``grid`` x ``grid`` of patches shared by channels,
    so feature ablation costs about grid**2 forwards, not one per pixel."""
    h, w = inputs.shape[-2:]
    ys = torch.arange(h, device=inputs.device) * min(grid, h) // h
    xs = torch.arange(w, device=inputs.device) * min(grid, w) // w
    return (ys[:, None] * min(grid, w) + xs[None, :]).expand(1, 1, h, w)


def baseline_batch(baselines: Any, x: torch.Tensor, distribution: bool) -> Optional[torch.Tensor]:
    """The baselines as an input batch for f(baseline); None when they cannot be evaluated."""
    if baselines is None:
        return torch.zeros_like(x)  # Captum's default
    if isinstance(baselines, numbers.Number):
        return torch.full_like(x, float(baselines))
    if not torch.is_tensor(baselines):
        return None  # a callable or a tuple of baselines: no single f(baseline) to report
    b = baselines.to(x)
    if distribution or b.shape == x.shape:
        return b
    return b.expand_as(x) if b.shape[0] == 1 else None
