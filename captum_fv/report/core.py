"""NeuronReport: per unit, its optimized image, diversity facets, negative optimum, optimization
snapshots, and the dataset examples that most and least activate it with Captum attributions."""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .. import __version__
from ..data import sample_images
from ..layers import LayerLike
from ..render import module_of
from ..selectors import Selector, as_callable, channel_index, describe
from ..visualization import NeuronVisualization, Visualization
from . import writer


def unit_name(selector: Selector) -> str:
    """A file-system-safe, sortable name: ``channel_0003``, ``neuron_3_5_5``, ``fn_myselector``."""
    c = channel_index(selector)
    if c is not None:
        return f"channel_{c:04d}"
    if isinstance(selector, tuple):
        return "neuron_" + "_".join(str(i) for i in selector)
    return "fn_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", describe(selector))[:60]


def _example_name(dataset: Any, index: int) -> str:
    names = getattr(dataset, "names", None)
    return str(names[index]) if names is not None else f"example {index}"


def _image_of(dataset: Any, index: int) -> torch.Tensor:  # datasets yield images or (image, label)
    item = dataset[index]
    return item[0] if isinstance(item, (tuple, list)) else item


class NeuronReport:
    """Build and save a neuron report for units of one layer.

    Every number shown on a page lives in ``report.json``; ``figure(unit)`` draws one unit for
    notebooks. Units are optimized in shared batches and mined in one pass over the dataset.

    >>> report = NeuronReport(model, "_blocks.8", fv.data.sample_images(size=128, crops=32))
    >>> report.build(range(8)).save("report")
    """

    def __init__(
        self,
        forward_func: Union[nn.Module, Callable[..., torch.Tensor]],
        layer: LayerLike,
        dataset: Optional[Dataset] = None,
        attribution: str = "integrated_gradients",
        *,
        size: int = 128,
        steps: int = 256,
        facets: int = 4,
        k: int = 6,
        seed: int = 0,
        attribution_kwargs: Optional[Dict[str, Any]] = None,
        batch_size: int = 32,
        max_batch: int = 64,
        model_name: Optional[str] = None,
        progress: bool = True,
    ):
        if facets < 1 and facets != 0:
            raise ValueError(f"facets must be >= 0, got {facets}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.forward_func = forward_func
        self.viz = NeuronVisualization(forward_func, layer)
        self.layer = self.viz.layer.key
        self.layer_spec = self.viz._layer_spec
        self.dataset = dataset if dataset is not None else sample_images(size=size, crops=32)
        self.attribution = attribution
        self.attribution_kwargs = dict(attribution_kwargs or {})
        self.size, self.steps, self.facets, self.k, self.seed = size, steps, facets, k, seed
        self.batch_size, self.max_batch, self.progress = batch_size, max_batch, progress
        module = module_of(forward_func)
        self.model_name = model_name or type(module or forward_func).__name__
        self.units: Dict[str, Dict[str, Any]] = {}  # name -> record (JSON-able) + tensors
        self.timings: Dict[str, float] = {"optimization": 0.0, "mining": 0.0, "attribution": 0.0, "writing": 0.0}

    @property
    def settings(self) -> Dict[str, Any]:
        """What makes two runs' units interchangeable (checked by --resume)."""
        return {
            "model": self.model_name, "layer": self.layer, "size": self.size, "steps": self.steps,
            "facets": self.facets, "k": self.k, "seed": self.seed, "attribution": self.attribution,
            "max_batch": self.max_batch,
            "dataset_size": len(self.dataset),  # type: ignore[arg-type]
        }

    # -- building -------------------------------------------------------------------------------
    def build(
        self,
        units: Sequence[Selector],
        on_unit: Optional[Callable[[str], None]] = None,
        only: Optional[Sequence[Selector]] = None,
    ) -> "NeuronReport":
        """Optimize, mine and attribute ``units``; ``on_unit(name)`` runs as each one completes.

        Units are optimized in fixed chunks of ``units`` (each chunk its own seed), so a unit's
        images do not depend on which other units are being redone: with ``only``, just the
        chunks holding those units are optimized, and the results equal a full build's.
        """
        from .. import attribution as attr_lib
        from ..mining import DatasetExamples

        units = list(units)
        for u in units:
            as_callable(u)
        wanted = {unit_name(u) for u in (units if only is None else only)}
        t = time.perf_counter()
        thresholds = sorted({0, 4, 48, self.steps // 4, self.steps // 2} - {self.steps})
        chunk = max(1, self.max_batch // (2 + self.facets))  # positive + facets + negative
        vis: Dict[str, Visualization] = {}
        for start in range(0, len(units), chunk):
            part = units[start : start + chunk]
            if not wanted & {unit_name(u) for u in part}:
                continue
            done = self.viz.visualize(
                part, size=self.size, steps=self.steps, facets=self.facets, negative=True,
                seed=self.seed + start, thresholds=thresholds, max_batch=len(part) * (2 + self.facets),
                progress=self.progress,
            )
            vis.update({unit_name(u): v for u, v in zip(part, done)})
        self.timings["optimization"] += time.perf_counter() - t
        units = [u for u in units if unit_name(u) in wanted]
        if not units:
            return self

        t = time.perf_counter()
        mined = DatasetExamples(self.forward_func, self.layer_spec).collect(
            self.dataset, k=self.k, batch_size=self.batch_size, units=units, progress=self.progress
        )
        self.timings["mining"] += time.perf_counter() - t

        bar = tqdm(units, desc="attribution", disable=not self.progress, leave=False)
        for sel in bar:
            v = vis[unit_name(sel)]
            t = time.perf_counter()
            top_images = mined.images(sel, "top")
            att = attr_lib.attribute(
                self.forward_func, self.layer_spec, sel, top_images, method=self.attribution,
                **self.attribution_kwargs,
            )
            self.timings["attribution"] += time.perf_counter() - t
            name = unit_name(sel)
            self.units[name] = self._record(name, sel, v, mined, top_images, att)
            if on_unit is not None:
                on_unit(name)
        return self

    def _record(self, name: str, sel: Selector, v: Visualization, mined: Any, top: torch.Tensor, att: Any) -> Dict:
        ds = self.dataset
        tops, bottoms = mined.top(sel), mined.bottom(sel)
        best = float(tops.activations[0])
        delta = att.delta if att.delta is not None else torch.full((len(top),), float("nan"))
        rel = att.relative_delta
        positions = tops.positions if tops.positions is not None else [None] * len(tops)
        spectrum = [(label, int(i), float(a)) for label, ex in mined.spectrum(sel)
                    if label not in ("top", "bottom") for i, a in zip(ex.indices[:1], ex.activations[:1])]
        record = {
            "name": name,
            "title": describe(sel),
            "layer": self.layer,
            "settings": self.settings,
            "activation": {
                "positive": float(v.activation["positive"][0]),
                "facets": [float(a) for a in v.activation["facets"]],
                "negative": float(v.activation["negative"][0]) if v.negative is not None else None,
            },
            "dataset_max": best,
            "dataset_min": float(bottoms.activations[0]),
            "ratio": float(v.activation["positive"][0]) / best if best > 0 else None,
            "attribution": {
                "method": self.attribution,
                "mean_abs_delta": None if att.delta is None else float(att.delta.abs().mean()),
                "mean_rel_delta": None if rel is None else float(rel.mean()),
            },
            "top": [
                {"index": int(i), "name": _example_name(ds, int(i)), "activation": float(a),
                 "position": None if pos is None else [int(p) for p in pos],
                 "delta": None if d != d else float(d),  # NaN: the method has no completeness
                 "image": f"top_{j}.png", "overlay": f"top_{j}_attr.png"}
                for j, (i, a, pos, d) in enumerate(zip(tops.indices, tops.activations, positions, delta.tolist()))
            ],
            "bottom": [
                {"index": int(i), "name": _example_name(ds, int(i)), "activation": float(a),
                 "image": f"bottom_{j}.png"}
                for j, (i, a) in enumerate(zip(bottoms.indices, bottoms.activations))
            ],
            "spectrum": [
                {"label": label, "index": i, "name": _example_name(ds, i), "activation": a,
                 "image": f"spectrum_{j}.png"}
                for j, (label, i, a) in enumerate(spectrum)
            ],
            "files": {},
        }
        record["files_layout"] = {
            "positive": "positive.png",
            "facets": [f"facet_{j}.png" for j in range(len(v.facets))],
            "negative": "negative.png" if v.negative is not None else None,
            "snapshots": [{"step": s, "file": f"step_{s:05d}.png"} for s in sorted(v.snapshots)],
        }
        from ..attribution import overlay

        arrays: Dict[str, np.ndarray] = {"positive.png": writer.to_png_array(v.positive[0])}
        for j, f in enumerate(v.facets):
            arrays[f"facet_{j}.png"] = writer.to_png_array(f)
        if v.negative is not None:
            arrays["negative.png"] = writer.to_png_array(v.negative[0])
        for s, img in v.snapshots.items():
            arrays[f"step_{s:05d}.png"] = writer.to_png_array(img[0])
        for j, img in enumerate(top):
            arrays[f"top_{j}.png"] = writer.to_png_array(img)
            arrays[f"top_{j}_attr.png"] = writer.to_png_array(overlay(img, att.attributions[j]))
        for e in record["bottom"] + record["spectrum"]:
            arrays[e["image"]] = writer.to_png_array(_image_of(ds, e["index"]))
        return {"record": record, "arrays": arrays, "viz": v, "top_images": top, "attribution": att}

    # -- saving ---------------------------------------------------------------------------------
    def _write_unit(self, out_dir: Path, name: str) -> None:
        t = time.perf_counter()
        entry = self.units[name]
        rec = entry["record"]
        page = {"u": dict(rec, files=rec["files_layout"])}
        writer.write_unit(out_dir, name, rec, entry["arrays"], page)
        self.timings["writing"] += time.perf_counter() - t

    def _write_index(self, out_dir: Path, names: Sequence[str]) -> Path:
        t = time.perf_counter()
        records, missing = [], []
        for name in names:
            rec = writer.load_unit(out_dir, name, self.settings)
            (records.append(rec) if rec is not None else missing.append(name))
        report = {
            "version": __version__, "model": self.model_name, "layer": self.layer,
            "settings": self.settings, "timings_s": self.timings,
            "dataset": {"size": len(self.dataset), "name": type(self.dataset).__name__},  # type: ignore[arg-type]
            "units": records, "missing": missing,
        }
        context = {
            "layer": self.layer, "model": self.model_name, "settings": self.settings,
            "dataset": report["dataset"], "version": __version__, "missing": missing,
            "units": [dict(r, files_positive=r["files_layout"]["positive"]) for r in records],
        }
        index = writer.write_index(out_dir, context, report)
        self.timings["writing"] += time.perf_counter() - t
        return index

    def save(self, out_dir: Union[str, Path]) -> Path:
        """Write every built unit and the index; returns the path of ``index.html``."""
        out_dir = Path(out_dir)
        for name in self.units:
            self._write_unit(out_dir, name)
        return self._write_index(out_dir, list(self.units))

    def run(self, units: Sequence[Selector], out_dir: Union[str, Path], resume: bool = False) -> Path:
        """Build and write ``units`` one by one (each atomically); with ``resume``, units already
        complete on disk with the same settings are kept, damaged ones are redone."""
        out_dir = Path(out_dir)
        names = [unit_name(u) for u in units]
        todo = [u for u, n in zip(units, names)
                if not (resume and writer.load_unit(out_dir, n, self.settings) is not None)]
        self.build(units, on_unit=lambda name: self._write_unit(out_dir, name), only=todo)
        return self._write_index(out_dir, names)

    # -- notebooks ------------------------------------------------------------------------------
    def figure(self, unit: Selector) -> "Any":
        """A matplotlib figure of one built unit: optima, facets, snapshots, top examples with
        attribution overlays, and bottom examples."""
        from .figure import unit_figure

        name = unit_name(unit)
        if name not in self.units:
            raise KeyError(f"unit {describe(unit)} is not built; call report.build([{unit!r}]) first")
        return unit_figure(self.units[name])
