"""A layer's index: its ``report.json`` (every unit record, the trust rows, the labels) and its
grid page, from the unit records on disk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..trust import VERDICTS
from . import writer
from .folder import atomic_write_text, check_replaceable, record_written
from .layout import ATLAS_DIR
from .records import grid_entry, trust_index

#: The layer's unit order for the unit pages' previous/next links, read by the pages' script, so
#: a unit page never depends on which other units a run built (a kept page stays current).
UNITS_JS = "units.js"
#: Above this many units the layer page leaves the trust table to ``report.json`` (the grid shows
#: each verdict and sorts by the numbers), so a page of thousands of units stays under 2 MB.
TRUST_TABLE_MAX = 300


def dataset_entry(dataset: Any) -> Dict[str, Any]:
    """What ``report.json`` says of the dataset: size, type, the files skipped when it was read."""
    return {
        "size": len(dataset),
        "name": type(dataset).__name__,
        "skipped": [{"path": f.path, "reason": f.reason} for f in getattr(dataset, "skipped", [])],
    }


def write(
    out_dir: Path,
    head: Dict[str, Any],
    records: List[Dict[str, Any]],
    missing: List[str],
    progress: Optional[Dict[str, Any]] = None,
) -> Path:
    """Write the layer's ``report.json`` (``head``: version, model, layer, settings, timings,
    processes, fingerprint, dataset; then the units) and ``index.html``; returns the page."""
    report = dict(
        head,
        units=records,
        missing=missing,
        labels={r["name"]: r["labels"] for r in records if "labels" in r},
    )
    trust = trust_index(records)
    if trust is not None:
        report["trust"] = trust
    context = {
        "layer": head["layer"],
        "model": head["model"],
        "settings": head["settings"],
        "dataset": head["dataset"],
        "version": head["version"],
        "missing": missing,
        "units": [grid_entry(r) for r in records],
        "verdicts": [v for v in VERDICTS if trust and v in trust["verdicts"]],
        "trust": trust,
        "trust_table": trust is not None and len(trust["units"]) <= TRUST_TABLE_MAX,
        "progress": progress,
        "atlas": f"{ATLAS_DIR}/atlas.html" if (Path(out_dir) / ATLAS_DIR / "atlas.html").exists() else None,
    }
    index = writer.write_index(out_dir, context, report)
    order = [[r["name"], r["title"]] for r in records]
    check_replaceable(out_dir, UNITS_JS)
    atomic_write_text(out_dir / UNITS_JS, f"window.captumFvUnits = {json.dumps(order)};\n")
    record_written(out_dir, [UNITS_JS])
    return index
