"""Output folders: a report writes only into a folder it made, and replaces only its own files.

A report marks its folder with :data:`MARKER` before it writes anything, so a crashed run is
still recognized by ``--resume``. An existing, non-empty folder without the marker is the user's:
writing there stops with :class:`OutputFolderError` unless ``force`` is given, and even then only
when none of the report's own names (``index.html``, ``report.json``, ``units/``, ``layers/``, the marker) is
there already. Inside a folder of ours, ``index.html`` and ``report.json`` are replaced only while
they still hold what captum-fv wrote (their digests are kept in the marker), and a unit folder
only while it holds our ``unit.json``; anything else in the folder is never touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

from .. import distributed as dist_lib
from ..version import __version__

MARKER = ".captum-fv.json"
INDEX = "index.html"
REPORT_JSON = "report.json"
UNITS_DIR = "units"
UNIT_JSON = "unit.json"
OWN_NAMES = (INDEX, REPORT_JSON, UNITS_DIR, "layers", MARKER)


class OutputFolderError(ValueError):
    """The output folder is not one captum-fv may write into (exit code 2 on the command line)."""


def digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and one ``os.replace``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read_marker(out_dir: Path) -> Optional[Dict]:
    try:
        marker = json.loads((out_dir / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get("tool") == "captum-fv" else None


def _legacy_report(out_dir: Path) -> bool:
    """A report written before folders were marked (captum-fv 0.1 without the marker)."""
    try:
        report = json.loads((out_dir / REPORT_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and {"version", "units", "settings"} <= set(report)


def is_ours(out_dir: Path) -> bool:
    return _read_marker(out_dir) is not None


def _write_marker(out_dir: Path, files: Dict[str, str]) -> None:
    marker = {"tool": "captum-fv", "version": __version__, "files": files}
    atomic_write_text(out_dir / MARKER, json.dumps(marker, indent=1))


def claim(out_dir: Path, force: bool = False) -> None:
    """Make ``out_dir`` a report folder of ours, or raise OutputFolderError saying why not."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputFolderError(f"output folder '{out_dir}' is a file; choose a folder path")
    if out_dir.is_dir() and is_ours(out_dir):
        return
    entries = sorted(p.name for p in out_dir.iterdir()) if out_dir.is_dir() else []
    if entries and _legacy_report(out_dir):
        _write_marker(out_dir, {})  # our own earlier report: its files are ours to replace
        return
    if entries and not force:
        raise OutputFolderError(
            f"output folder '{out_dir}' is not empty and was not made by captum-fv; choose a new "
            "folder, or pass --force (force=True) to write beside its files"
        )
    clashes = [n for n in OWN_NAMES if n in entries]
    if clashes:
        raise OutputFolderError(
            f"cannot write into '{out_dir}', even with --force: it already holds "
            f"{', '.join(clashes)}; move them away or choose another folder"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_marker(out_dir, {})


def check_replaceable(out_dir: Path, name: str) -> None:
    """Raise OutputFolderError unless the top-level file ``name`` is absent or still holds what
    captum-fv wrote there."""
    path = Path(out_dir) / name
    if not path.exists():
        return
    known = (_read_marker(Path(out_dir)) or {}).get("files", {})
    if name in known and path.is_file() and digest(path) == known[name]:
        return
    if not known and path.is_file() and _legacy_report(Path(out_dir)):
        return  # marked from an old report: its index and JSON predate digests
    raise OutputFolderError(
        f"'{path}' was changed or put there since captum-fv wrote this report; move it away so "
        "the report can write its own"
    )


def check_unit_replaceable(unit_dir: Path) -> None:
    """Raise OutputFolderError unless ``unit_dir`` is absent or holds captum-fv's ``unit.json``."""
    if not unit_dir.exists():
        return
    try:
        record = json.loads((unit_dir / UNIT_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = None
    if not (isinstance(record, dict) and "name" in record and "files" in record):
        raise OutputFolderError(
            f"'{unit_dir}' holds no unit.json of captum-fv's: it was not written by this report or "
            "was changed; move it away so the report can write the unit"
        )


def record_written(out_dir: Path, names: List[str]) -> None:
    """Remember the digests of the top-level files just written, so later runs may replace them."""
    out_dir = Path(out_dir)
    files = dict((_read_marker(out_dir) or {}).get("files", {}))
    files.update({n: digest(out_dir / n) for n in names})
    _write_marker(out_dir, files)


def claim_shared(out_dir: Path, force: bool, shared: bool) -> None:
    """:func:`claim` by rank 0 (or this process alone) before any rank writes into ``out_dir``."""
    with dist_lib.all_or_none(shared):
        if dist_lib.rank() == 0 or not shared:
            claim(out_dir, force=force)
    if shared:
        dist_lib.barrier()
