"""Integrated gradients along a path cut into segments, each integrated by Captum with its share
of the steps, so that more path points fall where the integrand lives.

On the default model the gradient along the straight path from a black baseline is concentrated
near the baseline: on the top examples of 16 channels of ``_blocks.8`` a tenth of the path holds
most of the integral, with peaks hundreds of times its mean. Cutting the path at 1% and 5% and
giving each of the three segments a third of the steps (same cost) brought the examples within
10% completeness from 70 to 89 of 96 at 50 steps (median relative delta 0.045 -> 0.021). The
segments' attributions add up to the whole path's (the same straight line, integrated piecewise).

The cuts are a bet on where the integrand lives: for a unit whose response rises smoothly along
the whole path, the far segment's third of the steps integrates worse than all of them would
(a test's tanh unit at gain 15: relative delta 0.08 cut against 0.001 whole at 12 steps), and
the refinement then pays for more steps. Reports bet on them (measured on the default model).
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence, Tuple

import torch

from ._converge import per_example


def check_cuts(cuts: Optional[Sequence[float]]) -> Tuple[float, ...]:
    """``cuts`` as a sorted tuple strictly inside (0, 1); raises a one-line error otherwise."""
    if not cuts:
        return ()
    out = tuple(float(c) for c in cuts)
    if any(not 0.0 < c < 1.0 for c in out) or list(out) != sorted(set(out)):
        raise ValueError(
            f"path_cuts must be increasing fractions strictly between 0 and 1, e.g. (0.01, 0.05); got {cuts}"
        )
    return out


def segment_steps(n_steps: int, cuts: Sequence[float]) -> int:
    """Steps per segment: ``n_steps`` shared among ``len(cuts) + 1`` segments, rounded up."""
    return max(1, math.ceil(n_steps / (len(cuts) + 1)))


def split_path(
    inputs: torch.Tensor, baselines: torch.Tensor, cuts: Sequence[float]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Segment ends and starts as one batch, segment-major (row ``k * N + i``: segment k of
    example i): inputs ``b + c_{k+1} (x - b)``, baselines ``b + c_k (x - b)``, c_0 = 0, c_K = 1."""
    step = inputs - baselines
    points = [baselines + a * step for a in (0.0, *cuts, 1.0)]  # each cut point made once
    return torch.cat(points[1:]), torch.cat(points[:-1])


def join_segments(attributions: torch.Tensor, segments: int) -> torch.Tensor:
    """The whole path's attributions: the sum of the segments' (segment-major rows)."""
    return attributions.unflatten(0, (segments, -1)).sum(0)


def tile_kwargs(kwargs: Dict[str, Any], n: int, segments: int) -> Dict[str, Any]:
    """Per-example values (tensors and lists with ``n`` rows, in tuples too) repeated for every
    segment, segment-major like :func:`split_path`; shared values as they are."""
    return per_example(kwargs, n, lambda v: v.repeat(segments, *([1] * (v.dim() - 1))), lambda v: v * segments)
