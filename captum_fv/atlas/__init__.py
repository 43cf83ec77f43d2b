"""Activation atlases (Carter, Armstrong, Schubert, Johnson & Olah, "Activation Atlas", Distill
2019): what a layer represents over a whole dataset, as a map.

    spatial activations sampled over the data -> 2-D layout (UMAP, else t-SNE) -> grid of cells,
    each the mean of its activations -> one direction objective per cell, rendered in shared
    batches -> atlas.html (hover a cell: its nearest dataset patches and strongest units)

>>> atlas = fv.atlas.build(model, "_blocks.8", images, grid=2, samples=16, size=32, steps=4,
...                        min_count=1, progress=False)
>>> page = atlas.write("atlas_out")
>>> page.name, atlas.cost.cells == len(atlas.cells)
('atlas.html', True)

Implementation: ``_sample`` (positions, patches, receptive field), ``_layout`` (UMAP/t-SNE, grid
cells), ``_render`` (batched direction renders, cost), ``_page`` (files and page), ``_atlas``
(the record and :func:`build`).
"""

from __future__ import annotations

from ._atlas import Atlas, build
from ._layout import AtlasCell, AtlasLayout, embed, grid_cells, umap_available
from ._render import AtlasCost, RenderedCells, render_cells
from ._sample import AtlasSamples, sample_activations

__all__ = [
    "Atlas",
    "AtlasCell",
    "AtlasCost",
    "AtlasLayout",
    "AtlasSamples",
    "RenderedCells",
    "build",
    "embed",
    "grid_cells",
    "render_cells",
    "sample_activations",
    "umap_available",
]
