"""Rendering the atlas's cells: each cell's mean activation vector becomes a direction objective,
and many cells share one optimization (slot ``i`` of a batch maximizes cell ``i``'s direction),
timed against a bare forward+backward of the same batches."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Union

import torch
from torch import nn

from .. import recipe as recipe_lib
from ..addressing import LayerLike, resolve_layer
from ..hooks import Capture, batch_args, forward_args, model_guard
from ..modelinfo import infer_in_channels, model_device, model_dtype, module_of
from ..objectives.directions import direction
from ..rendering import render
from ..visualization import activations

#: Cosine power of the direction objective (value = dot * cos^n): the paper's remedy for mean
#: vectors, which are shorter than any one activation and would otherwise be outgrown by any
#: large activation that merely leans the right way.
COSSIM_POW = 2.0


@dataclass
class AtlasCost:
    """What the atlas cost, in seconds: ``sample_s`` (the pass over the data), ``layout_s``,
    ``render_s`` (all cells' optimizations), ``bare_s`` (``steps`` bare forward+backward passes of
    the same batches through the layer's prefix, the floor any optimizer pays); ``cells`` and
    ``batches`` (the batch size of each optimization)."""

    cells: int
    batches: List[int]
    steps: int
    size: int
    sample_s: float = 0.0
    layout_s: float = 0.0
    render_s: float = 0.0
    bare_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.sample_s + self.layout_s + self.render_s

    @property
    def per_cell_s(self) -> float:
        """Render seconds per cell."""
        return self.render_s / max(1, self.cells)

    @property
    def ratio(self) -> float:
        """Render time over the bare forward+backward time of the same work (1.0: no overhead)."""
        return self.render_s / self.bare_s if self.bare_s > 0 else float("nan")

    def to_dict(self) -> Dict[str, Any]:
        return {
            "cells": self.cells,
            "batches": list(self.batches),
            "steps": self.steps,
            "size": self.size,
            "sample_s": round(self.sample_s, 3),
            "layout_s": round(self.layout_s, 3),
            "render_s": round(self.render_s, 3),
            "bare_s": round(self.bare_s, 3),
            "total_s": round(self.total_s, 3),
            "per_cell_s": round(self.per_cell_s, 4),
            "ratio": round(self.ratio, 3) if self.bare_s > 0 else None,
        }

    def summary(self) -> str:
        """One line for pages and logs."""
        ratio = f"{self.ratio:.2f}x" if self.bare_s > 0 else "not measured"
        return (
            f"{self.cells} cells in {len(self.batches)} batched optimization(s) of {self.steps} steps at "
            f"{self.size} px: {self.render_s:.1f} s, {self.per_cell_s:.2f} s per cell; vs bare "
            f"forward+backward {ratio}; sampling {self.sample_s:.1f} s, layout {self.layout_s:.1f} s"
        )


@dataclass
class RenderedCells:
    """Each cell's image (K, C, H, W) in [0, 1], its projection onto its unit direction before
    and after optimization (K,), the batch sizes used, and the seconds spent."""

    images: torch.Tensor
    projection_start: torch.Tensor
    projection: torch.Tensor
    batches: List[int]
    seconds: float


def chunks(n: int, size: int) -> Iterator[range]:
    """Consecutive ranges of at most ``size`` covering ``range(n)``."""
    for s in range(0, n, max(1, size)):
        yield range(s, min(s + size, n))


def projections(
    forward_func: Any, layer: LayerLike, images: torch.Tensor, vectors: torch.Tensor, args: Any = None
) -> torch.Tensor:
    """Each image's mean activation projected onto its row of ``vectors`` made unit length (K,)."""
    a = activations(forward_func, layer, images, additional_forward_args=args).float().cpu()
    mean = a.flatten(2).mean(2)
    unit = vectors.float() / vectors.float().norm(dim=1, keepdim=True).clamp(min=1e-12)
    return (mean * unit).sum(1)


def render_cells(
    forward_func: Union[nn.Module, Callable[..., torch.Tensor]],
    layer: LayerLike,
    vectors: torch.Tensor,
    size: int = 96,
    steps: int = 128,
    max_batch: int = 64,
    seed: int = 0,
    cossim_pow: float = COSSIM_POW,
    recipe: Optional[str] = None,
    lr: Optional[float] = None,
    transforms: Any = None,
    progress: bool = False,
    additional_forward_args: Any = None,
) -> RenderedCells:
    """Optimize one image per row of ``vectors`` (K, C), ``max_batch`` cells per optimization:
    slot ``i`` maximizes ``direction(layer, vectors[i], cossim_pow)``."""
    if vectors.dim() != 2 or len(vectors) == 0:
        raise ValueError(f"expected cell vectors (K, C) with K >= 1, got shape {tuple(vectors.shape)}")
    recipe = resolved_recipe(layer, vectors, recipe)
    images, start, batches = [], [], []
    t0 = time.perf_counter()
    for part in chunks(len(vectors), max_batch):
        vec = vectors[part.start : part.stop]
        res = render(
            forward_func,
            direction(layer, vec, cossim_pow=cossim_pow),
            batch=len(vec),
            size=size,
            steps=steps,
            seed=seed + part.start,
            thresholds=[0],
            progress=progress,
            recipe=recipe,
            lr=lr,
            transforms=transforms,
            additional_forward_args=additional_forward_args,
        )
        images.append(res.images)
        start.append(res.snapshots[0])
        batches.append(len(vec))
    seconds = time.perf_counter() - t0
    out = torch.cat(images)
    before = projections(forward_func, layer, torch.cat(start), vectors, additional_forward_args)
    after = projections(forward_func, layer, out, vectors, additional_forward_args)
    return RenderedCells(out, before, after, batches, seconds)


def resolved_recipe(layer: LayerLike, vectors: torch.Tensor, recipe: Optional[str]) -> str:
    """The recipe a render of these cells uses: the one named, else render's default for a
    direction objective (so the bare baseline sees the same transforms)."""
    if recipe is not None:
        return recipe_lib.get_recipe(recipe).name
    return recipe_lib.default_recipe(direction(layer, vectors[:1]))


def bare_seconds(
    forward_func: Union[nn.Module, Callable[..., torch.Tensor]],
    layer: LayerLike,
    batches: List[int],
    size: int,
    steps: int,
    recipe: Optional[str] = None,
    transforms: Any = None,
    repeat: int = 3,
    additional_forward_args: Any = None,
) -> float:
    """Seconds ``steps`` bare forward+backward passes of each batch would take: inputs of the size
    the render's transforms produce, through the layer's prefix (truncated), gradient to the
    input only; the median of ``repeat`` timings after a warm-up, per distinct batch size."""
    module = module_of(forward_func)
    ref = resolve_layer(module, layer)
    device, dtype = model_device(module), model_dtype(module)
    channels = infer_in_channels(module)
    transform = recipe_lib.make_transform(transforms, recipe_lib.get_recipe(recipe), size)  # as render makes it
    g = torch.Generator().manual_seed(0)
    args = forward_args(additional_forward_args)
    per: Dict[int, float] = {}
    with model_guard(module), Capture(module, forward_func, [ref]) as run:
        for b in sorted(set(batches)):
            # What the render feeds the model: transformed images (several views for multi-crop).
            x = transform(torch.rand(b, channels, size, size, generator=g), g).detach()
            x = x.to(device, dtype).requires_grad_(True)
            rows = batch_args(args, len(x))

            def once() -> None:
                torch.autograd.grad(run(x, rows)[ref.key].float().mean(), x)

            once()
            times = []
            for _ in range(repeat):
                t = time.perf_counter()
                once()
                times.append(time.perf_counter() - t)
            per[b] = statistics.median(times)
    return sum(steps * per[b] for b in batches)
