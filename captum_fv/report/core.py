"""NeuronReport: per unit, its optimized image, diversity facets, negative optimum, optimization
snapshots, and the dataset examples that most and least activate it with Captum attributions."""
from __future__ import annotations

import hashlib
import random
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset
from ..progress import progress_bar

from ..version import __version__
from .. import distributed as dist_lib
from ..data import sample_images
from ..addressing import LayerLike
from ..items import image_of as _image_of
from ..modelinfo import model_device, module_of
from ..selectors import Selector, as_callable, channel_index, describe
from ..visualization import NeuronVisualization, Visualization
from .. import fingerprint as fp_lib
from . import folder, writer


def unit_name(selector: Selector) -> str:
    """A file-system-safe, sortable name: ``channel_0003``, ``neuron_3_5_5``, ``fn_myselector``."""
    c = channel_index(selector)
    if c is not None:
        return f"channel_{c:04d}"
    if isinstance(selector, tuple):
        return "neuron_" + "_".join(str(i) for i in selector)
    return "fn_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", describe(selector))[:60]


def unit_identity(selector: Selector) -> str:
    """The unit part of a fingerprint: its name, and for a callable its code and constants, so two
    different functions that happen to share a name are not taken for each other."""
    name = unit_name(selector)
    code = getattr(selector, "__code__", None) or getattr(getattr(selector, "__call__", None), "__code__", None)
    if code is None or channel_index(selector) is not None:
        return name
    body = code.co_code + repr(code.co_consts).encode() + repr(code.co_names).encode()
    return f"{name}:{hashlib.sha256(body).hexdigest()[:16]}"


@dataclass
class ResumePlan:
    """What ``run(..., resume=True)`` found on disk: the units kept, and why each other one is redone."""

    kept: List[str]
    redo: Dict[str, str]  # unit name -> "missing", "damaged", "weights changed", ...

    def summary(self) -> str:
        """One line, e.g. ``resume: kept 4 of 6 units, redoing 2 (weights changed: 2)``."""
        total = len(self.kept) + len(self.redo)
        if not self.redo:
            return f"resume: kept all {total} units"
        reasons: Dict[str, int] = {}
        for r in self.redo.values():
            reasons[r] = reasons.get(r, 0) + 1
        why = ", ".join(f"{r}: {n}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
        return f"resume: kept {len(self.kept)} of {total} units, redoing {len(self.redo)} ({why})"


def _example_name(dataset: Any, index: int) -> str:
    names = getattr(dataset, "names", None)
    return str(names[index]) if names is not None else f"example {index}"


def _setting(value: Any) -> Any:
    """A setting as JSON: plain values as they are, tensors by a digest of their contents."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if torch.is_tensor(value):
        t = value.detach().cpu().contiguous()
        data = (t.double() if t.is_floating_point() else t).numpy().tobytes()  # bf16: no numpy
        digest = hashlib.sha256(data).hexdigest()[:16]
        return f"tensor{tuple(t.shape)} {t.dtype} sha256:{digest}"
    if isinstance(value, (list, tuple)):
        return [_setting(v) for v in value]
    return repr(value)


def _values(t: Optional[torch.Tensor], n: int) -> List[float]:
    return t.tolist() if t is not None else [float("nan")] * n


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """The global RNGs (torch, NumPy, ``random``) seeded for one unit's attribution and restored
    afterwards: GradientSHAP and the like draw from them (Captum's GradientSHAP from NumPy's), so
    a unit's attribution does not depend on which units the process attributed before it, nor
    on which process it runs in."""
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        with torch.random.fork_rng(devices=cuda):
            torch.random.default_generator.manual_seed(seed)
            for d in cuda:
                with torch.cuda.device(d):
                    torch.cuda.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
            yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


class NeuronReport:
    """Build and save a neuron report for units of one layer.

    Every number shown on a page lives in ``report.json``; ``figure(unit)`` draws one unit for
    notebooks. Units are optimized in shared batches and mined in one pass over the dataset.

    Inside a ``torch.distributed`` process group of several ranks (``distributed=None``: when
    there is one; ``False``: this process alone), every rank calls ``run`` (or ``build`` then
    ``save``) with the same arguments: each optimizes and attributes its round-robin share of the
    optimization chunks, the mining pass is shared, each rank writes its own unit folders, and
    rank 0 writes ``index.html`` and ``report.json``. The result equals one process's. Each rank
    keeps only its own units in ``.units`` (and can draw only those with ``figure``).

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
        distributed: Optional[bool] = None,
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
        self.distributed = distributed
        self.units: Dict[str, Dict[str, Any]] = {}  # name -> record (JSON-able) + tensors
        self._order: List[str] = []  # unit names in the order they were first asked for
        self._fp: Dict[str, str] = {}  # the fingerprint the units of the last build were made under
        self.resumed: Optional[ResumePlan] = None  # what the last run(resume=True) kept and redid
        self.timings: Dict[str, float] = {"optimization": 0.0, "mining": 0.0, "attribution": 0.0, "writing": 0.0}

    @property
    def settings(self) -> Dict[str, Any]:
        """What makes two runs' units interchangeable (checked by --resume)."""
        return {
            "model": self.model_name, "layer": self.layer, "size": self.size, "steps": self.steps,
            "facets": self.facets, "k": self.k, "seed": self.seed, "attribution": self.attribution,
            "attribution_kwargs": {k: _setting(v) for k, v in sorted(self.attribution_kwargs.items())},
            "max_batch": self.max_batch,
            "dataset_size": len(self.dataset),  # type: ignore[arg-type]
        }

    @property
    def fingerprint(self) -> Dict[str, str]:
        """What a unit on disk must match to be kept by ``resume`` (see captum_fv.fingerprint):
        the results version, the architecture, a digest of the weights, the dataset's identity
        and every setting. Computed anew each time: the model may change between calls."""
        return fp_lib.fingerprint(module_of(self.forward_func), self.forward_func, self.dataset, self.settings)

    @property
    def _shared(self) -> bool:
        """Whether the work is shared with the other ranks of a process group."""
        return self.distributed is not False and dist_lib.is_distributed()

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
        chunks holding those units are optimized, and the results equal a full build's. In a
        process group the chunks to optimize are dealt round-robin to the ranks (whole chunks,
        so each is the very batch one process would optimize), and the mining pass is shared.
        """
        return self._build(units, on_unit, only, None)

    def _build(self, units: Sequence[Selector], on_unit: Optional[Callable[[str], None]],
               only: Optional[Sequence[Selector]], fingerprint: Optional[Dict[str, str]]) -> "NeuronReport":
        from .. import attribution as attr_lib
        from ..mining import DatasetExamples

        units = list(units)
        for u in units:
            as_callable(u)
        names = [unit_name(u) for u in units]
        self._order += [n for n in dict.fromkeys(names) if n not in self._order]
        wanted = {unit_name(u) for u in (units if only is None else only)}
        shared = self._shared
        progress = self.progress and (not shared or dist_lib.rank() == 0)
        position = {n: i for i, n in reversed(list(enumerate(names)))}
        todo = [u for u in units if unit_name(u) in wanted]
        if not todo:
            return self
        self._fp = fingerprint or self.fingerprint

        # Mining first: a bad dataset item stops the run before any optimization.
        t = time.perf_counter()
        mined = DatasetExamples(self.forward_func, self.layer_spec).collect(
            self.dataset, k=self.k, batch_size=self.batch_size, units=todo, progress=progress,
            distributed=shared,
        )
        self.timings["mining"] += time.perf_counter() - t

        t = time.perf_counter()
        thresholds = sorted({0, 4, 48, self.steps // 4, self.steps // 2} - {self.steps})
        chunk = max(1, self.max_batch // (2 + self.facets))  # positive + facets + negative
        starts = [s for s in range(0, len(units), chunk) if wanted & set(names[s : s + chunk])]
        vis: Dict[str, Visualization] = {}
        with dist_lib.all_or_none(shared):
            for start in dist_lib.shard(starts) if shared else starts:
                part = units[start : start + chunk]
                done = self.viz.visualize(
                    part, size=self.size, steps=self.steps, facets=self.facets, negative=True,
                    seed=self.seed + start, thresholds=thresholds,
                    max_batch=len(part) * (2 + self.facets), progress=progress,
                )
                vis.update({unit_name(u): v for u, v in zip(part, done)})
        self.timings["optimization"] += time.perf_counter() - t
        units = todo

        device = model_device(module_of(self.forward_func))
        mine = [u for u in units if unit_name(u) in vis]  # all of them in a single process
        bar = progress_bar(mine, desc="attribution", disable=not progress, leave=False)
        with dist_lib.all_or_none(shared):
            for sel in bar:
                name = unit_name(sel)
                v = vis[name]
                t = time.perf_counter()
                top_images = mined.images(sel, "top")
                with _seeded(self.seed + position[name], device):
                    att = attr_lib.attribute(
                        self.forward_func, self.layer_spec, top_images, sel, attribution=self.attribution,
                        **self.attribution_kwargs,
                    )
                self.timings["attribution"] += time.perf_counter() - t
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
            "fingerprint": dict(self._fp, unit=unit_identity(sel)),
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
                "max_rel_delta": None if rel is None else float(rel.max()),
            },
            "top": [
                {"index": int(i), "name": _example_name(ds, int(i)), "activation": float(a),
                 "position": None if pos is None else [int(p) for p in pos],
                 "delta": None if d != d else float(d),  # NaN: the method has no completeness
                 "relative_delta": None if r != r else float(r),
                 "n_steps": n,  # path methods: the steps this example was integrated with
                 "image": f"top_{j}.png", "overlay": f"top_{j}_attr.png"}
                for j, (i, a, pos, d, r, n) in enumerate(zip(
                    tops.indices, tops.activations, positions, delta.tolist(), _values(rel, len(top)),
                    att.n_steps.tolist() if att.n_steps is not None else [None] * len(top)))
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
        from ..heatmap import overlay

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
            arrays[e["image"]] = writer.to_png_array(_image_of(ds[e["index"]]))
        return {"record": record, "arrays": arrays, "viz": v, "top_images": top, "attribution": att}

    # -- saving ---------------------------------------------------------------------------------
    def _write_unit(self, out_dir: Path, name: str) -> None:
        t = time.perf_counter()
        entry = self.units[name]
        rec = entry["record"]
        page = {"u": dict(rec, files=rec["files_layout"])}
        writer.write_unit(out_dir, name, rec, entry["arrays"], page)
        self.timings["writing"] += time.perf_counter() - t

    def _write_index(self, out_dir: Path, names: Sequence[str], timings: Optional[Dict[str, float]] = None,
                     written_by: Optional[Dict[str, int]] = None) -> Path:
        t = time.perf_counter()
        records, missing = [], []
        for name in names:
            rec = writer.load_unit(out_dir, name, self._fp or self.fingerprint)
            (records.append(rec) if rec is not None else missing.append(name))
        written_by = written_by or {}
        lost = [n for n in missing if n in written_by]
        if lost:
            raise RuntimeError(
                f"unit {lost[0]} was written by rank {written_by[lost[0]]} but rank 0 cannot read it "
                f"in {out_dir}: with processes on several machines, --out must be a folder they all "
                "see (a shared file system)"
            )
        report = {
            "version": __version__, "model": self.model_name, "layer": self.layer,
            "settings": self.settings, "timings_s": dict(timings or self.timings),
            "processes": dist_lib.world_size() if self._shared else 1,
            "fingerprint": self._fp or self.fingerprint,
            "dataset": {"size": len(self.dataset), "name": type(self.dataset).__name__,  # type: ignore[arg-type]
                        "skipped": [{"path": f.path, "reason": f.reason}
                                    for f in getattr(self.dataset, "skipped", [])]},
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

    def _finish(self, out_dir: Path, names: Optional[Sequence[str]], written: Sequence[str]) -> Path:
        """Write the index over ``names`` (None: every unit any rank wrote, in build order). In a
        process group: once every rank has written its units, rank 0 writes it, with each phase's
        time the longest of any rank's; every rank returns when it is written."""
        if not self._shared:
            return self._write_index(out_dir, list(written) if names is None else names)
        dist_lib.barrier()  # every rank has written its unit folders
        gathered = dist_lib.all_gather_object((dict(self.timings), list(written)))
        timings = {k: max(t.get(k, 0.0) for t, _ in gathered) for k in self.timings}
        written_by = {n: r for r, (_, ns) in enumerate(gathered) for n in ns}
        if names is None:
            names = [n for n in self._order if n in written_by]
        with dist_lib.all_or_none():
            if dist_lib.rank() == 0:
                self._write_index(out_dir, names, timings, written_by)
        return out_dir / "index.html"

    def _claim(self, out_dir: Path, force: bool) -> None:
        """Rank 0 (or this process) makes ``out_dir`` ours before any rank writes into it."""
        shared = self._shared
        with dist_lib.all_or_none(shared):
            if dist_lib.rank() == 0 or not shared:
                folder.claim(out_dir, force=force)
        if shared:
            dist_lib.barrier()

    def save(self, out_dir: Union[str, Path], force: bool = False) -> Path:
        """Write every built unit and the index; returns the path of ``index.html``.

        ``out_dir`` must be new, empty or a report folder of captum-fv's; ``force=True`` writes
        into another folder when none of the report's names is there (else OutputFolderError).
        In a process group every rank calls it: each writes the units it built, rank 0 the index."""
        out_dir = Path(out_dir)
        self._claim(out_dir, force)
        with dist_lib.all_or_none(self._shared):
            for name in self.units:
                self._write_unit(out_dir, name)
        return self._finish(out_dir, None, list(self.units))

    def run(self, units: Sequence[Selector], out_dir: Union[str, Path], resume: bool = False,
            force: bool = False) -> Path:
        """Build and write ``units`` one by one (each atomically); with ``resume``, units already
        complete on disk under the same fingerprint are kept, the others redone (``.resumed``
        says which and why). ``out_dir`` follows :meth:`save`'s rules. In a process group every
        rank calls it alike; rank 0 decides which units are redone."""
        out_dir = Path(out_dir)
        units = list(units)
        names = [unit_name(u) for u in units]
        shared = self._shared
        self._claim(out_dir, force)
        fingerprint = self.fingerprint
        plan: Optional[ResumePlan] = None
        with dist_lib.all_or_none(shared):
            if dist_lib.rank() == 0 or not shared:
                plan = self._plan(out_dir, names, fingerprint) if resume else \
                    ResumePlan([], {n: "not resuming" for n in names})
        if shared:
            plan = dist_lib.broadcast_object(plan)
        assert plan is not None
        self.resumed = plan if resume else None
        written: List[str] = []

        def write(name: str) -> None:
            self._write_unit(out_dir, name)
            written.append(name)

        self._build(units, write, [u for u, n in zip(units, names) if n in plan.redo], fingerprint)
        return self._finish(out_dir, names, written)

    @staticmethod
    def _plan(out_dir: Path, names: Sequence[str], fingerprint: Dict[str, str]) -> ResumePlan:
        kept, redo = [], {}
        for name in dict.fromkeys(names):
            status = writer.unit_status(out_dir, name, fingerprint)
            if status.record is not None:
                kept.append(name)
            else:
                redo[name] = status.reason
        return ResumePlan(kept, redo)

    # -- notebooks ------------------------------------------------------------------------------
    def figure(self, unit: Selector) -> "Any":
        """A matplotlib figure of one built unit: optima, facets, snapshots, top examples with
        attribution overlays, and bottom examples."""
        from .figure import unit_figure

        name = unit_name(unit)
        if name not in self.units:
            raise KeyError(f"unit {describe(unit)} is not built; call report.build([{unit!r}]) first")
        return unit_figure(self.units[name])
