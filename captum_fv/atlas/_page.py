"""Writing an atlas to disk: one PNG per cell, a strip of dataset patches per cell, the whole
atlas as one image, ``atlas.json`` and a standalone ``atlas.html`` (no external files besides
these images; thumbnails load lazily, a cell's patches only when it is hovered)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from jinja2 import Environment, PackageLoader, select_autoescape
from PIL import Image

from ._layout import AtlasCell
from ._render import AtlasCost
from ._sample import AtlasSamples

HTML = "atlas.html"
JSON = "atlas.json"
SHEET = "atlas.png"
CELLS_DIR = "cells"
PATCHES_DIR = "patches"
#: Width of the atlas on the page, in CSS pixels.
PAGE_ATLAS_PX = 760
#: Largest side of the whole-atlas image, in pixels.
SHEET_MAX_PX = 2048
#: Dataset patches shown per cell, in rows of this many.
PATCH_COLUMNS = 4

UnitLink = Callable[[int], Optional[str]]


def _env() -> Environment:
    # Autoescape everything: layer names and file names may contain any character.
    return Environment(
        loader=PackageLoader("captum_fv.atlas", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )


def to_pil(image: torch.Tensor) -> Image.Image:
    """(C, H, W) float in [0, 1] or uint8 -> an RGB PIL image."""
    x = image.detach().cpu()
    if x.is_floating_point():
        x = x.float().clamp(0, 1).mul(255).round().to(torch.uint8)
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return Image.fromarray(x[:3].permute(1, 2, 0).contiguous().numpy(), "RGB")


def sheet(images: torch.Tensor, cells: Sequence[AtlasCell], grid: int, tile: int) -> torch.Tensor:
    """The whole atlas (3, grid * tile, grid * tile): each cell's image at its place, white where
    no cell is."""
    out = torch.ones(3, grid * tile, grid * tile)
    if len(cells):
        small = torch.nn.functional.interpolate(
            images[:, :3].float(), size=(tile, tile), mode="bilinear", antialias=True, align_corners=False
        ).clamp(0, 1)
        for cell, img in zip(cells, small):
            out[:, cell.row * tile : (cell.row + 1) * tile, cell.col * tile : (cell.col + 1) * tile] = img
    return out


def patch_strip(patches: torch.Tensor, columns: int = PATCH_COLUMNS) -> torch.Tensor:
    """Patches (k, 3, P, P) uint8 tiled in rows of ``columns`` (3, rows * P, columns * P)."""
    k, c, p, _ = patches.shape
    cols = max(1, min(columns, k))
    rows = math.ceil(k / cols)
    out = torch.full((c, rows * p, cols * p), 255, dtype=torch.uint8)
    for i, patch in enumerate(patches):
        r, q = divmod(i, cols)
        out[:, r * p : (r + 1) * p, q * p : (q + 1) * p] = patch
    return out


def cell_record(
    cell: AtlasCell, samples: AtlasSamples, k: int, names: Optional[Callable[[int], str]], unit_link: Optional[UnitLink]
) -> Dict[str, Any]:
    """What the page and ``atlas.json`` say about one cell."""
    nearest = cell.members[:k].tolist()
    return {
        "name": cell.name,
        "row": cell.row,
        "col": cell.col,
        "count": cell.count,
        "image": f"{CELLS_DIR}/{cell.name}.png",
        "patches": f"{PATCHES_DIR}/{cell.name}.jpg",
        "examples": [
            {
                "index": int(samples.image_index[m]),
                "name": names(int(samples.image_index[m])) if names else f"#{int(samples.image_index[m])}",
                "y": int(samples.positions[m, 0]),
                "x": int(samples.positions[m, 1]),
            }
            for m in nearest
        ],
        "units": [
            {"unit": u, "value": round(v, 4), "href": unit_link(u) if unit_link else None} for u, v in cell.units
        ],
        "projection_start": None if cell.projection_start is None else round(cell.projection_start, 4),
        "projection": None if cell.projection is None else round(cell.projection, 4),
    }


def dataset_names(dataset: Any) -> Optional[Callable[[int], str]]:
    """Item names when the dataset has them (``sample_images`` / ``image_folder`` do)."""
    names = getattr(dataset, "names", None)
    if isinstance(names, (list, tuple)):
        return lambda i: str(names[i]) if 0 <= i < len(names) else f"#{i}"
    return None


def write(
    out_dir: Union[str, Path],
    layer: str,
    grid: int,
    cells: Sequence[AtlasCell],
    images: torch.Tensor,
    samples: AtlasSamples,
    cost: AtlasCost,
    settings: Dict[str, Any],
    layout_method: str,
    patches_per_cell: int = 8,
    names: Optional[Callable[[int], str]] = None,
    unit_link: Optional[UnitLink] = None,
    title: Optional[str] = None,
    back: Sequence[Tuple[str, str]] = (),
) -> Path:
    """Write the atlas into ``out_dir`` (created); returns the path of ``atlas.html``.
    ``back``: ``(text, relative link)`` pairs shown above the title (e.g. a report's pages)."""
    out = Path(out_dir)
    (out / CELLS_DIR).mkdir(parents=True, exist_ok=True)
    (out / PATCHES_DIR).mkdir(parents=True, exist_ok=True)
    records: List[Dict[str, Any]] = []
    for cell, img in zip(cells, images):
        to_pil(img).save(out / CELLS_DIR / f"{cell.name}.png", optimize=True)
        strip = patch_strip(samples.patches[cell.members[:patches_per_cell]])
        to_pil(strip).save(out / PATCHES_DIR / f"{cell.name}.jpg", quality=85)
        records.append(cell_record(cell, samples, patches_per_cell, names, unit_link))
    tile = max(8, min(int(images.shape[-1]) if len(images) else 8, SHEET_MAX_PX // grid))
    to_pil(sheet(images, cells, grid, tile)).save(out / SHEET, optimize=True)
    summary = {
        "layer": layer,
        "grid": grid,
        "layout": layout_method,
        "samples": len(samples),
        "images": samples.n_images,
        "map_shape": list(samples.map_shape),
        "patch_fraction": round(samples.patch_fraction, 4),
        "settings": settings,
        "cost": cost.to_dict(),
        "cells": records,
    }
    (out / JSON).write_text(json.dumps(summary, indent=1))
    cell_px = max(8, PAGE_ATLAS_PX // grid)
    html = (
        _env()
        .get_template(HTML)
        .render(
            title=title or f"Activation atlas of {layer}",
            back=list(back),
            summary=summary,
            cost_line=cost.summary(),
            cells=records,
            grid=grid,
            cell_px=cell_px,
            atlas_px=cell_px * grid,
            sheet=SHEET,
            max_count=max((r["count"] for r in records), default=1),
        )
    )
    path = out / HTML
    path.write_text(html)
    return path
