"""Writing a report to disk: atomic unit folders, integrity checks for --resume, HTML and JSON.

A unit is written to a temporary folder and moved into place with one ``os.replace``, so an
interrupted run never leaves a half-written unit. ``unit.json`` lists every file with its size and
SHA-256; a folder whose files do not match is treated as missing and redone.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Mapping, NamedTuple, Optional

import numpy as np
import torch
from jinja2 import Environment, PackageLoader, select_autoescape
from PIL import Image

from ..fingerprint import differences
from .folder import (
    INDEX,
    REPORT_JSON,
    UNIT_JSON,
    UNITS_DIR,
    atomic_write_text,
    check_replaceable,
    check_unit_replaceable,
    digest,
    record_written,
)


def _env() -> Environment:
    # Autoescape everything: labels, layer names and file names may contain any character.
    env = Environment(
        loader=PackageLoader("captum_fv.report", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    env.filters["num"] = format_number
    return env


def format_number(x: Any, digits: int = 3) -> str:
    """A number as the pages show it: 3 significant digits, a dash for None."""
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def to_png_array(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] (1, 3 or 4 channels) -> uint8 array PIL can save."""
    x = image.detach().float().clamp(0, 1).mul(255).round().byte().cpu()
    x = x[0] if x.shape[0] == 1 else x.permute(1, 2, 0)
    return x.numpy()


def safe_child(root: Path, name: str) -> Path:
    """``root / name``, refusing names that would escape ``root`` (we never write outside --out)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise ValueError(f"unsafe file name {name!r}")
    path = (root / name).resolve()
    if path.parent != root.resolve():
        raise ValueError(f"{name!r} would be written outside {root}")
    return path


def write_unit(
    out_dir: Path,
    name: str,
    record: Dict[str, Any],
    images: Mapping[str, Any],
    page_context: Dict[str, Any],
    html: Optional[str] = None,
) -> Path:
    """Write one unit's PNGs (text for str entries), ``unit.json`` and page atomically into ``out_dir/units/name``
    (``html``: the page itself, else the report's unit page rendered with ``page_context``)."""
    units = Path(out_dir) / UNITS_DIR
    units.mkdir(parents=True, exist_ok=True)
    final = safe_child(units, name)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=units))
    try:
        files = {}
        for fname, content in images.items():
            path = safe_child(tmp, fname)
            if isinstance(content, str):  # a drawing as text (the trust plot's SVG)
                path.write_text(content, encoding="utf-8")
            else:
                Image.fromarray(content).save(path, optimize=False)
        page = html if html is not None else _env().get_template("unit.html").render(**page_context)
        (tmp / "index.html").write_text(page, encoding="utf-8")
        for p in sorted(tmp.iterdir()):
            files[p.name] = {"bytes": p.stat().st_size, "sha256": digest(p)}
        record = dict(record, files=files, complete=True)
        (tmp / UNIT_JSON).write_text(json.dumps(record, indent=1), encoding="utf-8")
        check_unit_replaceable(final)
        if final.exists():  # a redo: move the old folder aside, then swap
            old = Path(tempfile.mkdtemp(prefix=f".old-{name}-", dir=units))
            os.replace(final, old / "unit")
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


class UnitStatus(NamedTuple):
    """What ``--resume`` found of one unit on disk: its record when it can be kept, else why not."""

    record: Optional[Dict[str, Any]]
    reason: str  # "kept", "missing", "damaged", or "<parts> changed", e.g. "weights changed"


def unit_status(out_dir: Path, name: str, fingerprint: Optional[Dict[str, str]] = None) -> UnitStatus:
    """Whether the unit's folder is complete and intact, and was made under ``fingerprint``."""
    folder = Path(out_dir) / UNITS_DIR / name
    if not folder.exists():
        return UnitStatus(None, "missing")
    try:
        record = json.loads((folder / UNIT_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return UnitStatus(None, "damaged")
    if not isinstance(record, dict) or not record.get("complete"):
        return UnitStatus(None, "damaged")
    for fname, meta in record.get("files", {}).items():
        path = folder / fname
        try:
            if path.stat().st_size != meta["bytes"] or digest(path) != meta["sha256"]:
                return UnitStatus(None, "damaged")
        except (OSError, KeyError, TypeError):
            return UnitStatus(None, "damaged")
    if fingerprint is not None:
        changed = differences(record.get("fingerprint"), fingerprint)
        if changed:
            return UnitStatus(None, "+".join(changed) + " changed")
    return UnitStatus(record, "kept")


def load_unit(out_dir: Path, name: str, fingerprint: Optional[Dict[str, str]] = None) -> Optional[Dict]:
    """The unit's record if its folder is complete and intact (and made under ``fingerprint``)."""
    return unit_status(out_dir, name, fingerprint).record


def write_index(out_dir: Path, context: Dict[str, Any], report: Dict[str, Any], template: str = "index.html") -> Path:
    """Write ``report.json`` and ``index.html`` (each atomically; the page rendered from
    ``template``: a layer's grid, or ``"model.html"`` for the model index) and return the index
    path; either is replaced only while it holds what captum-fv wrote there."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (REPORT_JSON, INDEX):
        check_replaceable(out_dir, name)
    atomic_write_text(out_dir / REPORT_JSON, json.dumps(report, indent=1))
    index = out_dir / INDEX
    atomic_write_text(index, _env().get_template(template).render(**context))
    record_written(out_dir, [REPORT_JSON, INDEX])
    return index
