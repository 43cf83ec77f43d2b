"""The pages of an evolution: one per unit (its strip across checkpoints) and an index sorted by
how much each unit changed, rendered with Jinja2 in the report's style."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Sequence

from jinja2 import ChoiceLoader, Environment, PackageLoader, select_autoescape

from ..report.folder import INDEX, REPORT_JSON, atomic_write_text, check_replaceable, record_written
from ..report.writer import format_number


def environment() -> Environment:
    # Our templates first; the report's after them, for its shared "_style.html".
    env = Environment(
        loader=ChoiceLoader(
            [PackageLoader("captum_fv.evolution", "templates"), PackageLoader("captum_fv.report", "templates")]
        ),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    env.filters["num"] = format_number
    return env


def unit_page(record: Dict[str, Any], meta: Dict[str, Any]) -> str:
    """One unit's page: a column per checkpoint (optimum, facets, top examples, statistics)."""
    return environment().get_template("evolution_unit.html").render(u=record, **meta)


def by_change(records: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Most changed first; ties in the order the units were asked for."""
    return sorted(records, key=lambda r: -r["change"])


def write_index(out_dir: Path, records: Sequence[Dict[str, Any]], meta: Dict[str, Any], missing: Sequence[str]) -> Path:
    """Write ``report.json`` and ``index.html`` (each atomically, each replaced only while it
    holds what captum-fv wrote) and return the index path."""
    out_dir = Path(out_dir)
    for name in (REPORT_JSON, INDEX):
        check_replaceable(out_dir, name)
    ordered = by_change(records)
    summary = dict(meta, units=ordered, missing=list(missing))
    atomic_write_text(out_dir / REPORT_JSON, json.dumps(summary, indent=1))
    html = environment().get_template("evolution_index.html").render(units=ordered, missing=missing, **meta)
    atomic_write_text(out_dir / INDEX, html)
    record_written(out_dir, [REPORT_JSON, INDEX])
    return out_dir / INDEX
