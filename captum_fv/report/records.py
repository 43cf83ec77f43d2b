"""One unit of a report as data: its JSON record (every number a page shows) and its images.

The record is what ``unit.json`` and ``report.json`` hold; :class:`BuiltUnit` adds the arrays to
write as PNGs and the tensors a notebook figure draws.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from ..heatmap import attribution_scale, colorbar, signed_overlay, transparent
from ..items import image_of
from ..mining import Examples
from ..trust import VERDICTS, TrustSummary
from ..unit import Selector, Unit
from ..visualization import Visualization
from .trustplot import PLOT_FILE, path_plot
from .writer import to_png_array

#: The colour bar of a unit's attribution overlays (its scale is ``record["attribution"]["scale"]``).
COLORBAR_FILE = "attr_colorbar.png"

#: The positive optimum drawn with its transparency map (recipes that have one, e.g. "maco").
TRANSPARENCY_FILE = "positive_transparency.png"


def unit_name(selector: Selector) -> str:
    """A file-system-safe, sortable name: ``channel_0003``, ``neuron_3_5_5``, ``fn_myselector``."""
    return Unit.parse(selector).file_name


def unit_identity(selector: Selector) -> str:
    """The unit part of a fingerprint (see :attr:`captum_fv.unit.Unit.identity`)."""
    return Unit.parse(selector).identity


@dataclass
class BuiltUnit:
    """A unit once built: its JSON record, its PNG arrays by file name, and the tensors behind them."""

    record: Dict[str, Any]
    arrays: Dict[str, Any]  # PNG arrays, and the text of the trust plot (SVG)
    visualization: Visualization
    top_images: torch.Tensor
    attribution: Any  # captum_fv.attribution.Attribution
    accentuation: Any = None  # captum_fv.accentuation.Accentuation of the top examples, when asked for
    trust: Any = None  # captum_fv.trust.TrustRecord of the optimum and facets, when measured


class FirstK:
    """The first ``k`` examples of each side of an ExampleSet mined with more: the trust block
    needs 29 a side, the pages show the report's ``k`` (the first k of a larger top-k are the
    top-k, ties included, so the pages do not change)."""

    def __init__(self, mined: Any, k: int) -> None:
        self.mined, self.k, self.data = mined, k, mined.data

    def _first(self, ex: Examples) -> Examples:
        pos = None if ex.positions is None else ex.positions[: self.k]
        return Examples(ex.indices[: self.k], ex.activations[: self.k], pos)

    def top(self, unit: Any) -> Examples:
        return self._first(self.mined.top(unit))

    def bottom(self, unit: Any) -> Examples:
        return self._first(self.mined.bottom(unit))

    def spectrum(self, unit: Any) -> List[Any]:
        return [(label, self._first(ex)) for label, ex in self.mined.spectrum(unit)]


@dataclass
class UnitContext:
    """What every unit record of one report shares."""

    layer: str
    settings: Dict[str, Any]
    fingerprint: Dict[str, str]
    attribution: str
    dataset: Any
    class_names: Optional[List[str]] = None  # class units of a known output (ImageNet): their titles


def setting(value: Any) -> Any:
    """A setting as JSON: plain values as they are, tensors by a digest of their contents."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if torch.is_tensor(value):
        t = value.detach().cpu().contiguous()
        data = (t.double() if t.is_floating_point() else t).numpy().tobytes()  # bf16: no numpy
        digest = hashlib.sha256(data).hexdigest()[:16]
        return f"tensor{tuple(t.shape)} {t.dtype} sha256:{digest}"
    if isinstance(value, (list, tuple)):
        return [setting(v) for v in value]
    return repr(value)


def example_name(dataset: Any, index: int) -> str:
    names = getattr(dataset, "names", None)
    return str(names[index]) if names is not None else f"example {index}"


def _values(t: Optional[torch.Tensor], n: int) -> List[Any]:
    return t.tolist() if t is not None else [float("nan")] * n


def _top_entries(ds: Any, tops: Any, top: torch.Tensor, att: Any) -> List[Dict[str, Any]]:
    n = len(top)
    delta = att.delta if att.delta is not None else torch.full((n,), float("nan"))
    positions = tops.positions if tops.positions is not None else [None] * len(tops)
    steps = att.n_steps.tolist() if att.n_steps is not None else [None] * n
    return [
        {
            "index": int(i),
            "name": example_name(ds, int(i)),
            "activation": float(a),
            "position": None if pos is None else [int(p) for p in pos],
            "delta": None if d != d else float(d),  # NaN: the method has no completeness
            "relative_delta": None if r != r else float(r),
            "n_steps": s,  # path methods: the steps this example was integrated with
            "image": f"top_{j}.png",
            "overlay": f"top_{j}_attr.png",
        }
        for j, (i, a, pos, d, r, s) in enumerate(
            zip(tops.indices, tops.activations, positions, delta.tolist(), _values(att.relative_delta, n), steps)
        )
    ]


def _files_layout(v: Visualization) -> Dict[str, Any]:
    return {
        "positive": "positive.png",
        "transparency": TRANSPARENCY_FILE if v.transparency is not None else None,
        "facets": [f"facet_{j}.png" for j in range(len(v.facets))],
        "negative": "negative.png" if v.negative is not None else None,
        "snapshots": [{"step": s, "file": f"step_{s:05d}.png"} for s in sorted(v.snapshots)],
        "colorbar": COLORBAR_FILE,
    }


def _title(ctx: UnitContext, unit: Unit) -> str:
    """'channel 5', or for a class unit of a known output 'class 1: goldfish'."""
    if ctx.class_names is not None and unit.kind == "channel" and 0 <= unit.channel < len(ctx.class_names):
        return f"class {unit.channel}: {ctx.class_names[unit.channel]}"
    return unit.title


def unit_record(
    ctx: UnitContext, unit: Unit, v: Visualization, mined: Any, top: torch.Tensor, att: Any
) -> Dict[str, Any]:
    """The JSON record of one unit: activations, ratio, examples, attribution checks, files."""
    ds = ctx.dataset
    tops, bottoms = mined.top(unit.selector), mined.bottom(unit.selector)
    best = float(tops.activations[0])
    rel = att.relative_delta
    spectrum = [
        (label, int(i), float(a))
        for label, ex in mined.spectrum(unit.selector)
        if label not in ("top", "bottom")
        for i, a in zip(ex.indices[:1], ex.activations[:1])
    ]
    positive = float(v.activation["positive"][0])
    return {
        "name": unit.file_name,
        "title": _title(ctx, unit),
        "layer": ctx.layer,
        "settings": ctx.settings,
        "fingerprint": dict(ctx.fingerprint, unit=unit.identity),
        "activation": {
            "positive": positive,
            "facets": [float(a) for a in v.activation["facets"]],
            "negative": float(v.activation["negative"][0]) if v.negative is not None else None,
        },
        "dataset_max": best,
        "dataset_min": float(bottoms.activations[0]),
        "ratio": positive / best if best > 0 else None,
        "dead": v.dead,  # no gradient (after the rescue, if on): the images stayed at their start
        "attribution": {
            "method": ctx.attribution,
            "mean_abs_delta": None if att.delta is None else float(att.delta.abs().mean()),
            "mean_rel_delta": None if rel is None else float(rel.mean()),
            "max_rel_delta": None if rel is None else float(rel.max()),
            # one colour scale for the unit's top examples: the value drawn at full colour
            "scale": attribution_scale(att.attributions) if len(top) else 0.0,
        },
        "top": _top_entries(ds, tops, top, att),
        "bottom": [
            {"index": int(i), "name": example_name(ds, int(i)), "activation": float(a), "image": f"bottom_{j}.png"}
            for j, (i, a) in enumerate(zip(bottoms.indices, bottoms.activations))
        ],
        "spectrum": [
            {"label": label, "index": i, "name": example_name(ds, i), "activation": a, "image": f"spectrum_{j}.png"}
            for j, (label, i, a) in enumerate(spectrum)
        ],
        "files": {},
        "files_layout": _files_layout(v),
    }


def unit_arrays(
    record: Dict[str, Any], v: Visualization, top: torch.Tensor, att: Any, dataset: Any
) -> Dict[str, np.ndarray]:
    """Every PNG of the unit's folder, as uint8 arrays by file name."""
    arrays: Dict[str, np.ndarray] = {"positive.png": to_png_array(v.positive[0])}
    if v.transparency is not None:
        arrays[TRANSPARENCY_FILE] = to_png_array(transparent(v.positive[0], v.transparency[0]))
    for j, f in enumerate(v.facets):
        arrays[f"facet_{j}.png"] = to_png_array(f)
    if v.negative is not None:
        arrays["negative.png"] = to_png_array(v.negative[0])
    for s, img in v.snapshots.items():
        arrays[f"step_{s:05d}.png"] = to_png_array(img[0])
    scale = record["attribution"]["scale"]
    for j, img in enumerate(top):
        arrays[f"top_{j}.png"] = to_png_array(img)
        arrays[f"top_{j}_attr.png"] = to_png_array(signed_overlay(img, att.attributions[j], scale).image)
    if len(top):
        arrays[COLORBAR_FILE] = to_png_array(colorbar(scale))
    else:
        record["files_layout"]["colorbar"] = None
    for e in record["bottom"] + record["spectrum"]:
        arrays[e["image"]] = to_png_array(image_of(dataset[e["index"]]))
    return arrays


def add_accentuation(record: Dict[str, Any], arrays: Dict[str, np.ndarray], acc: Any) -> None:
    """The top examples' accentuations: a ``top_j_acc.png`` and its values beside each example."""
    record["accentuation"] = {
        "reg_layer": acc.reg_layer,
        "mean_before": float(acc.before.mean()),
        "mean_after": float(acc.after.mean()),
    }
    for j, entry in enumerate(record["top"][: len(acc.images)]):
        entry.update(
            accentuated=f"top_{j}_acc.png",
            accentuated_before=float(acc.before[j]),
            accentuated_after=float(acc.after[j]),
            accentuated_distance=float(acc.distance[j]),
        )
        arrays[entry["accentuated"]] = to_png_array(acc.images[j])


def add_labels(record: Dict[str, Any], labels: List[Dict[str, Any]]) -> None:
    """The unit's automatic labels (:func:`captum_fv.labels.to_json` entries, best source first)
    under ``"labels"``, and the one a grid shows under ``"label"`` ("" when none)."""
    record["labels"] = labels
    named = [lab for lab in labels if lab["label"]]
    record["label"] = named[0]["label"] if named else ""


def add_trust(record: Dict[str, Any], arrays: Dict[str, Any], trust: Any) -> None:
    """The trust block: the record's ``"trust"`` entry, and the path-similarity plot when measured."""
    record["trust"] = trust.to_dict()
    record["files_layout"]["trust_path"] = PLOT_FILE if trust.path is not None else None
    if trust.path is not None:
        arrays[PLOT_FILE] = path_plot(trust.path)


def build_unit(
    ctx: UnitContext,
    unit: Unit,
    v: Visualization,
    mined: Any,
    top: torch.Tensor,
    att: Any,
    accentuation: Any = None,
    trust: Any = None,
) -> BuiltUnit:
    record = unit_record(ctx, unit, v, mined, top, att)
    arrays: Dict[str, Any] = dict(unit_arrays(record, v, top, att, ctx.dataset))
    if accentuation is not None:
        add_accentuation(record, arrays, accentuation)
    if trust is not None:
        add_trust(record, arrays, trust)
    return BuiltUnit(record, arrays, v, top, att, accentuation, trust)


def grid_entry(record: Dict[str, Any]) -> Dict[str, Any]:
    """What a layer's grid shows and sorts by for one unit record: name, title, thumbnail, ratio,
    label, and the trust verdict and path summary ("" and None without a trust block)."""
    trust = TrustSummary.from_dict(record["trust"]) if record.get("trust") else None
    return {
        "name": record["name"],
        "title": record["title"],
        "files_positive": record["files_layout"]["positive"],
        "ratio": record.get("ratio"),
        "label": record.get("label", ""),
        "verdict": trust.verdict if trust else "",
        "path": trust.path if trust else None,
    }


def trust_index(records: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """What an index lists of the units' trust blocks: per unit its :class:`TrustSummary` (with
    the unit's name and title), the count of each verdict, and whether any unit is a class
    unit (then top-1/top-5 columns); None when no unit has a trust block."""
    rows = [
        dict(TrustSummary.from_dict(r["trust"]).to_dict(), name=r["name"], title=r["title"])
        for r in records
        if r.get("trust")
    ]
    if not rows:
        return None
    counts = {v: sum(row["verdict"] == v for row in rows) for v in VERDICTS}
    return {
        "verdicts": {v: n for v, n in counts.items() if n},
        "classes": any(row["top1"] is not None for row in rows),
        "units": rows,
    }
