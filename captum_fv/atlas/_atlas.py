"""The :class:`Atlas` record and :func:`build`: sample, lay out, grid, render, in that order."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..addressing import LayerLike
from . import _page
from ._layout import AtlasCell, AtlasLayout, embed, grid_cells
from ._render import COSSIM_POW, AtlasCost, bare_seconds, render_cells, resolved_recipe
from ._sample import AtlasSamples, sample_activations


@dataclass
class Atlas:
    """An activation atlas of one layer: the ``samples`` it was built from, their ``layout``, the
    non-empty ``cells`` of the ``grid`` x ``grid`` grid (row-major) and each cell's rendered image
    in ``images`` (K, C, size, size), what it cost, and the settings used."""

    layer: str
    grid: int
    samples: AtlasSamples
    layout: AtlasLayout
    cells: List[AtlasCell]
    images: torch.Tensor
    cost: AtlasCost
    settings: Dict[str, Any] = field(default_factory=dict)
    names: Optional[Callable[[int], str]] = field(default=None, repr=False)

    def sheet(self, tile: Optional[int] = None) -> torch.Tensor:
        """The whole atlas as one image (3, grid * tile, grid * tile), white where no cell is."""
        side = int(self.images.shape[-1]) if len(self.images) else 8
        return _page.sheet(self.images, self.cells, self.grid, tile or side)

    def write(
        self,
        out_dir: Union[str, Path],
        unit_link: Optional[Callable[[int], Optional[str]]] = None,
        patches_per_cell: int = 8,
        title: Optional[str] = None,
        back: Sequence[Tuple[str, str]] = (),
    ) -> Path:
        """Write ``atlas.html``, ``atlas.json``, ``atlas.png`` (the whole atlas) and the cells'
        images and patch strips into ``out_dir``; returns the page's path. ``unit_link(channel)``:
        a relative link for a strongest unit (e.g. to its report page), or None for no link;
        ``back``: ``(text, relative link)`` pairs shown above the title."""
        return _page.write(
            out_dir,
            self.layer,
            self.grid,
            self.cells,
            self.images,
            self.samples,
            self.cost,
            self.settings,
            self.layout.method,
            patches_per_cell=patches_per_cell,
            names=self.names,
            unit_link=unit_link,
            title=title,
            back=back,
        )


def build(
    forward_func: Union[nn.Module, Callable[..., torch.Tensor]],
    layer: LayerLike,
    dataset: Any,
    grid: int = 20,
    samples: int = 2048,
    per_image: int = 4,
    size: int = 96,
    steps: int = 128,
    seed: int = 0,
    min_count: int = 2,
    method: str = "auto",
    cossim_pow: float = COSSIM_POW,
    max_batch: int = 64,
    patch: Optional[float] = None,
    recipe: Optional[str] = None,
    lr: Optional[float] = None,
    transforms: Any = None,
    batch_size: int = 32,
    measure_cost: bool = True,
    progress: bool = True,
    additional_forward_args: Any = None,
) -> Atlas:
    """An activation atlas of ``layer`` (Carter et al., Distill 2019) over ``dataset``.

    ``per_image`` seeded positions of each image's activation map, at most ``samples`` in all
    (see :func:`sample_activations`); a 2-D layout (``method``: "auto" is UMAP when umap-learn is
    installed, else t-SNE); a ``grid`` x ``grid`` grid (at most 20) whose cells with at least
    ``min_count`` members are averaged; each cell rendered as ``direction(layer, mean,
    cossim_pow)``, ``max_batch`` cells per optimization of ``steps`` steps at ``size`` px.
    ``measure_cost``: also time bare forward+backward passes of the same batches (a few passes,
    for :attr:`AtlasCost.ratio`). Deterministic under ``seed``; the model and the global RNGs are
    left as they were.

    >>> atlas = fv.atlas.build(model, "_blocks.8", images, grid=2, samples=16, size=32, steps=4,
    ...                        min_count=1, progress=False)
    >>> len(atlas.cells) <= 4, atlas.images.shape[1:]
    (True, torch.Size([3, 32, 32]))
    """
    t0 = time.perf_counter()
    sampled = sample_activations(
        forward_func,
        layer,
        dataset,
        samples=samples,
        per_image=per_image,
        seed=seed,
        patch=patch,
        batch_size=batch_size,
        progress=progress,
        additional_forward_args=additional_forward_args,
    )
    t1 = time.perf_counter()
    laid = embed(sampled.vectors, method, seed)
    cells = grid_cells(laid, sampled.vectors, grid, min_count)
    if not cells:
        raise ValueError(
            f"no cell of the {grid} x {grid} grid has {min_count} or more of the {len(sampled)} samples; "
            "lower min_count or grid, or sample more"
        )
    t2 = time.perf_counter()
    vectors = torch.stack([c.vector for c in cells])
    recipe = resolved_recipe(layer, vectors, recipe)
    rendered = render_cells(
        forward_func,
        layer,
        vectors,
        size=size,
        steps=steps,
        max_batch=max_batch,
        seed=seed,
        cossim_pow=cossim_pow,
        recipe=recipe,
        lr=lr,
        transforms=transforms,
        progress=progress,
        additional_forward_args=additional_forward_args,
    )
    for cell, before, after in zip(cells, rendered.projection_start.tolist(), rendered.projection.tolist()):
        cell.projection_start, cell.projection = before, after
    bare = 0.0
    if measure_cost:
        bare = bare_seconds(
            forward_func,
            layer,
            rendered.batches,
            size,
            steps,
            recipe=recipe,
            transforms=transforms,
            additional_forward_args=additional_forward_args,
        )
    cost = AtlasCost(len(cells), rendered.batches, steps, size, t1 - t0, t2 - t1, rendered.seconds, bare)
    settings = {
        "samples": samples,
        "per_image": per_image,
        "size": size,
        "steps": steps,
        "seed": seed,
        "min_count": min_count,
        "method": method,
        "cossim_pow": cossim_pow,
        "max_batch": max_batch,
        "recipe": recipe,
    }
    return Atlas(
        sampled.layer, grid, sampled, laid, cells, rendered.images, cost, settings, _page.dataset_names(dataset)
    )
