"""One checkpoint's share of an evolution: each unit optimized and mined under the weights now in
the model, kept as PNG arrays and statistics (a *stage*), and on disk in
``layers/<layer>/checkpoints/<label>/units/<unit>/`` (the report's layout, :mod:`captum_fv.report.layout`)
so ``resume`` redoes only the stages that are missing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from PIL import Image

from ..mining import ExampleSet
from ..report import writer
from ..report.folder import UNITS_DIR
from ..unit import Unit
from ..visualization import Visualization

STAGES_DIR = "checkpoints"


@dataclass
class StageUnit:
    """One unit under one checkpoint: its images as uint8 arrays (``positive.png``,
    ``facet_<i>.png``, ``top_<i>.png``) and its statistics (JSON-able)."""

    name: str
    arrays: Dict[str, np.ndarray]
    stats: Dict[str, Any]

    def image(self, key: str) -> torch.Tensor:
        """An image back as (C, H, W) in [0, 1], exactly as stored (8 bits)."""
        a = torch.from_numpy(np.array(self.arrays[key])).float() / 255  # a copy: stored arrays are read-only
        return a[None] if a.dim() == 2 else a.permute(2, 0, 1)

    @property
    def top_indices(self) -> List[int]:
        return list(self.stats["top_indices"])


def png_array(image: torch.Tensor) -> np.ndarray:
    return writer.to_png_array(image)


def stage_unit(unit: Unit, vis: Visualization, mined: ExampleSet, row: int, images: torch.Tensor) -> StageUnit:
    """The stage of ``unit`` from its optimization and its mined examples (``row`` in ``mined``,
    ``images`` its top examples)."""
    arrays = {"positive.png": png_array(vis.positive[0])}
    arrays.update({f"facet_{i}.png": png_array(f) for i, f in enumerate(vis.facets)})
    arrays.update({f"top_{i}.png": png_array(x) for i, x in enumerate(images)})
    top = mined.top(unit.selector)
    levels = mined.levels.tolist()
    median = float(mined.quantile_values[row, levels.index(0.5)]) if 0.5 in levels else None
    best = float(top.activations[0]) if len(top) else None
    optimum = float(vis.activation["positive"][0])
    stats = {
        "optimum": optimum,
        "top": [float(a) for a in top.activations],
        "top_indices": top.indices.tolist(),
        "median": median,
        "ratio": optimum / best if best is not None and best > 0 else None,  # a ratio of negatives reads backwards
        "dead": bool(vis.dead),
    }
    return StageUnit(unit.file_name, arrays, stats)


def stage_root(out_dir: Path, slug: str) -> Path:
    return Path(out_dir) / STAGES_DIR / slug


def write_stage(out_dir: Path, slug: str, stage: StageUnit, fingerprint: Dict[str, str]) -> None:
    record = {"name": stage.name, "fingerprint": fingerprint, "stats": stage.stats}
    writer.write_unit(
        stage_root(out_dir, slug),
        stage.name,
        record,
        stage.arrays,
        {},
        html=f"<!doctype html><title>{stage.name}</title>stage of an evolution",
    )


def read_stage(out_dir: Path, slug: str, name: str, fingerprint: Dict[str, str]) -> Optional[StageUnit]:
    """The stage on disk when complete, intact and made under ``fingerprint``, else None."""
    root = stage_root(out_dir, slug)
    record = writer.load_unit(root, name, fingerprint)
    if record is None:
        return None
    folder = root / UNITS_DIR / name
    arrays = {f: np.asarray(Image.open(folder / f)) for f in record["files"] if f.endswith(".png")}
    return StageUnit(name, arrays, record["stats"])
