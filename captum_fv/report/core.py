"""NeuronReport: a neuron report over one layer or many, with a model index over the layers.

Each layer is built by a :class:`captum_fv.report.layer.LayerReport` into its own folder (see
:mod:`captum_fv.report.layout`); this module decides which layers and units a report covers,
keeps the index pages current while a long audit runs, and writes the model index and the
top-level ``report.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
from torch import nn
from torch.utils.data import Dataset

from .. import atlas as atlas_lib
from .. import distributed as dist_lib
from ..addressing import LayerLike
from ..data import sample_images
from ..modelinfo import module_of
from ..selection import ALL, parse_unit_list, select_layers
from ..unit import Selector, Unit
from ..version import __version__
from . import folder, layout, writer
from .folder import UNITS_DIR
from .layer import LayerReport
from .records import grid_entry
from .resume import ResumePlan

#: Seconds between rewrites of the index pages while a run goes on (and after its last unit).
PROGRESS_EVERY_S = 10.0

Units = Union[Sequence[Selector], str, None]


class NeuronReport:
    """Build and save a neuron report: per unit, its optimized image, diversity facets, negative
    optimum, labels, trust verdict, and the dataset examples that most and least activate it with
    Captum attributions; per layer a grid page; over all layers a model index.

    ``layer``: a module, a dotted name, None (the model output: class units), or a sequence of
    them; names may be glob patterns over ``named_modules()`` (``"_blocks.*"``: ``*`` stays within
    one dotted part, ``**`` crosses dots) with an optional unit list (``"_blocks.8:0-15"``,
    ``"_blocks.*:all"``); see :mod:`captum_fv.selection`. ``build``/``run`` take the units of the
    layers that name none: selectors, ``"0-15"``, or ``"all"`` (every channel).

    Every number shown on a page lives in ``report.json`` (top-level ``"layers"``: one entry per
    layer with its folder, unit count and verdicts; ``"units"``: every unit's record, each with
    its ``"layer"``); ``figure(unit)`` draws one unit for notebooks. Files go where
    :mod:`captum_fv.report.layout` says: ``layers/<layer>/units/<unit>/``.

    Options (keywords, the same for every layer): ``size``, ``steps``, ``facets``, ``k``,
    ``seed``, ``attribution_kwargs`` (Captum's own arguments of the attribution method, e.g.
    ``n_steps``, and :func:`captum_fv.attribute`'s ``tolerance`` and ``max_steps``, by default
    :data:`captum_fv.report.REPORT_REFINEMENT`), ``batch_size`` (mining), ``max_batch`` (images
    optimized at once), ``model_name``, ``progress``, ``distributed``, ``additional_forward_args``, ``output``,
    ``recipe``, ``accentuate``, ``accentuate_steps``, ``trust``, ``transfer_models``,
    ``transfer_names``, ``labels``, ``autocast``, ``channels_last``.

    ``trust=True`` (the default) judges each unit's positive optimum and facets with
    :class:`captum_fv.trust.TrustScorer` (the mining pass keeps 29 examples a side for it; the
    pages show ``k``): the record goes under ``"trust"`` in ``unit.json`` and ``report.json``,
    the unit page shows it with the path-similarity curve, the grids sort and filter by verdict.
    A dataset of fewer than 58 items gets the verdict "not enough examples". ``transfer_models``
    (named by ``transfer_names``): for class units (``layer=None``), their top-1/top-5 too.

    ``labels=True`` (the default) labels every unit (:mod:`captum_fv.labels`): the output classes
    it drives most (hidden layers), and the dataset class of its top examples when the dataset
    has ten or more classes; under ``"labels"`` of each unit, shown and searchable on the pages.
    ``atlas=True``: an activation atlas per hidden layer (``layers/<layer>/atlas/atlas.html``,
    :func:`captum_fv.atlas.build` with ``atlas_kwargs``). ``autocast`` (``"bf16"``) and
    ``channels_last``: rendering precision and memory format (see :mod:`captum_fv.precision`).

    Inside a ``torch.distributed`` process group of several ranks (``distributed=None``: when
    there is one; ``False``: this process alone), every rank calls ``run`` (or ``build`` then
    ``save``) with the same arguments: each optimizes and attributes its round-robin share of the
    optimization chunks of every layer, the mining passes are shared, each rank writes its own
    unit folders, and rank 0 writes the index pages and ``report.json``. The result equals one
    process's. Each rank keeps only its own units in ``.units``.

    >>> report = NeuronReport(model, "_blocks.8", fv.data.sample_images(size=64, crops=2),
    ...                       size=64, steps=4, facets=1, k=2, progress=False)
    >>> report.build(range(1)).save("report")
    PosixPath('report/index.html')
    >>> two = NeuronReport(model, ["_blocks.7:0", "_blocks.8:0-1"], fv.data.sample_images(size=64, crops=2),
    ...                    size=64, steps=4, facets=0, k=2, progress=False, trust=False)
    >>> index = two.run(None, "audit")
    >>> [(entry["layer"], entry["units"]) for entry in json.load(open("audit/report.json"))["layers"]]
    [('_blocks.7', 1), ('_blocks.8', 2)]
    """

    def __init__(
        self,
        forward_func: Union[nn.Module, Callable[..., torch.Tensor]],
        layer: Union[LayerLike, Sequence[LayerLike]],
        dataset: Optional[Dataset] = None,
        attribution: str = "integrated_gradients",
        *,
        atlas: bool = False,
        atlas_kwargs: Optional[Dict[str, Any]] = None,
        **options: Any,
    ):
        self.forward_func = forward_func
        size = options.get("size", 128)
        self.dataset = dataset if dataset is not None else sample_images(size=size, crops=32)
        self.atlas, self.atlas_kwargs = atlas, dict(atlas_kwargs or {})
        self._own_units: Dict[str, Optional[List[int]]] = {}  # layer -> units its pattern named
        self.layers: Dict[str, LayerReport] = {}  # layer name -> its part of the report
        for spec, units in _layer_specs(module_of(forward_func), layer, size):
            part = LayerReport(forward_func, spec, self.dataset, attribution, **options)
            if part.layer in self.layers:
                raise ValueError(f"layer {part.layer!r} is given twice; name each layer once")
            self.layers[part.layer] = part
            self._own_units[part.layer] = units
        folders = [layout.layer_folder_name(k) for k in self.layers]
        if len(set(folders)) < len(folders):
            raise ValueError(f"two layers would share a folder ({folders}); pass them in separate reports")
        self.atlases: Dict[str, Any] = {}  # layer -> captum_fv.atlas.Atlas, when atlas=True
        self.atlas_timings: Dict[str, float] = {}

    # -- what the report covers ----------------------------------------------------------------
    @property
    def _first(self) -> LayerReport:
        return next(iter(self.layers.values()))

    @property
    def layer(self) -> str:
        """The layer's name; for a report of several layers, the first one's."""
        return self._first.layer

    @property
    def settings(self) -> Dict[str, Any]:
        """What makes two runs' units interchangeable (checked by --resume); with several layers,
        the settings they share (each layer's ``settings`` adds its name)."""
        if len(self.layers) == 1:
            return self._first.settings
        return {k: v for k, v in self._first.settings.items() if k != "layer"}

    @property
    def fingerprint(self) -> Dict[str, str]:
        """The fingerprint a unit on disk must match to be kept by ``resume`` (of the first
        layer; each layer's own is ``report.layers[name].fingerprint``)."""
        return self._first.fingerprint

    @property
    def units(self) -> Dict[str, Any]:
        """The units built, name -> :class:`captum_fv.report.BuiltUnit`; with several layers the
        names are ``"<layer>/<unit>"``."""
        if len(self.layers) == 1:
            return self._first.units
        return {f"{k}/{n}": u for k, part in self.layers.items() for n, u in part.units.items()}

    @property
    def timings(self) -> Dict[str, float]:
        """Seconds spent in each phase, over every layer."""
        total: Dict[str, float] = {}
        for part in self.layers.values():
            for k, v in part.timings.items():
                total[k] = total.get(k, 0.0) + v
        for v in self.atlas_timings.values():
            total["atlas"] = total.get("atlas", 0.0) + v
        return total

    @property
    def resumed(self) -> Optional[ResumePlan]:
        """What the last ``run(resume=True)`` kept and redid, over every layer."""
        plans = {k: p.resumed for k, p in self.layers.items() if p.resumed is not None}
        if not plans:
            return None
        if len(self.layers) == 1:
            return next(iter(plans.values()))
        return ResumePlan(
            [f"{k}/{n}" for k, p in plans.items() for n in p.kept],
            {f"{k}/{n}": why for k, p in plans.items() for n, why in p.redo.items()},
        )

    def _units_of(self, layer: str, units: Units) -> List[Selector]:
        own = self._own_units[layer]
        if own is not None:
            return list(own)
        if units is None:
            raise ValueError(
                f"no units for layer {layer!r}: pass units (e.g. range(16) or 'all') or name them in "
                f"the layer pattern, e.g. '{layer}:0-15'"
            )
        if isinstance(units, str):
            parsed = parse_unit_list(units)
            if parsed == ALL:
                module = module_of(self.forward_func)
                if module is None:
                    raise ValueError("units='all' needs the model as an nn.Module to count the channels")
                return list(select_layers(module, [f"{layer}:all"], self._first.size)[0].units or [])
            return list(parsed)
        return list(units)

    # -- building ------------------------------------------------------------------------------
    def build(
        self,
        units: Units = None,
        on_unit: Optional[Callable[[str], None]] = None,
        only: Optional[Sequence[Selector]] = None,
    ) -> "NeuronReport":
        """Optimize, mine, label and attribute the units of every layer (``units``: for layers
        whose pattern names none); ``on_unit(name)`` runs as each one completes. ``only``: just
        those units of each layer (see :meth:`LayerReport.build`)."""
        for key, part in self.layers.items():
            part.build(self._units_of(key, units), on_unit, only)
        return self

    def save(self, out_dir: Union[str, Path], force: bool = False) -> Path:
        """Write every built unit, the layers' pages and the model index; returns the path of
        ``index.html``. ``out_dir`` must be new, empty or a report folder of captum-fv's;
        ``force=True`` writes into another folder when none of the report's names is there."""
        root = Path(out_dir)
        folder.claim_shared(root, force, self._shared)
        for key, part in self.layers.items():
            self._write_atlas(root, key, part._order)
            part.save(layout.layer_folder(root, key))
        return self._finish(root)

    def run(self, units: Units, out_dir: Union[str, Path], resume: bool = False, force: bool = False) -> Path:
        """Build and write the units of every layer one by one (each atomically), the index
        pages rewritten as they finish so a long audit can be watched; with ``resume``, units
        already complete on disk under the same fingerprint are kept, the others redone
        (``.resumed`` says which and why). ``out_dir`` follows :meth:`save`'s rules."""
        root = Path(out_dir)
        folder.claim_shared(root, force, self._shared)
        for key, part in self.layers.items():
            names = self._units_of(key, units)
            # the atlas first, so the layer's pages (written as its units finish) link to it
            self._write_atlas(root, key, [Unit.parse(u).file_name for u in names])
            watch = _Watcher(self, root, key, len(names))
            part.run(names, layout.layer_folder(root, key), resume=resume, on_unit=watch)
        return self._finish(root)

    @property
    def _shared(self) -> bool:
        return self._first._shared

    # -- atlases -------------------------------------------------------------------------------
    def _write_atlas(self, root: Path, layer: str, units: Sequence[str]) -> None:
        """The layer's activation atlas (rank 0 alone: it is one shared optimization), its
        strongest channels linked to the pages of ``units``."""
        part = self.layers[layer]
        if not self.atlas or part.layer == "":
            return
        t = time.perf_counter()
        folder.claim_shared(layout.layer_folder(root, layer), False, self._shared)
        with dist_lib.all_or_none(self._shared):
            if dist_lib.rank() == 0 or not self._shared:
                # the atlas's own image size and steps (cheaper than the units'); a 12 x 12 grid
                options = dict(grid=ATLAS_GRID, seed=part.seed, progress=part.progress)
                options.update(self.atlas_kwargs)
                atlas = atlas_lib.build(
                    part.forward_func,
                    part.layer_spec,
                    self.dataset,
                    additional_forward_args=part.additional_forward_args,
                    **options,
                )
                atlas.write(
                    layout.layer_folder(root, layer) / layout.ATLAS_DIR,
                    unit_link=_unit_link(units),
                    back=[("model", "../../../index.html"), (layer, "../index.html")],
                )
                self.atlases[layer] = atlas
        if self._shared:
            dist_lib.barrier()
        self.atlas_timings[layer] = time.perf_counter() - t

    # -- the model index -----------------------------------------------------------------------
    def _finish(self, root: Path) -> Path:
        with dist_lib.all_or_none(self._shared):
            if dist_lib.rank() == 0 or not self._shared:
                self._write_model_index(root)
        if self._shared:
            dist_lib.barrier()
        return root / folder.INDEX

    def _write_model_index(self, root: Path, progress: Optional[Dict[str, Any]] = None) -> Path:
        """``index.html`` and ``report.json`` at the root, from each layer's ``report.json``."""
        layers, reports = [], []
        for key in self.layers:
            rep = _read_json(layout.layer_folder(root, key) / folder.REPORT_JSON)
            if rep is None:
                continue
            reports.append(rep)
            layers.append(_layer_entry(root, key, rep, self.atlases.get(key), progress))
        report = _model_report(self, layers, reports)
        grid = None
        if len(reports) == 1:  # one layer: its grid on the model index too
            grid = {
                "base": f"{layout.LAYERS_DIR}/{layers[0]['folder']}/",
                "units": [grid_entry(r) for r in reports[0]["units"]],
            }
        context = {
            "model": report["model"],
            "layers": layers,
            "settings": report["settings"],
            "dataset": report["dataset"],
            "version": __version__,
            "grid": grid,
            "verdicts": sorted({v for e in layers for v in e["verdicts"]}),
            "progress": progress,
            "timings": report["timings_s"],
        }
        return writer.write_index(root, context, report, template="model.html")

    # -- notebooks -----------------------------------------------------------------------------
    def figure(self, unit: Selector, layer: Optional[LayerLike] = None) -> Any:
        """A matplotlib figure of one built unit (of ``layer``; default: the only or first layer):
        optima, facets, snapshots, top examples with attribution overlays, and bottom examples."""
        if layer is None:
            return self._first.figure(unit)
        key = layer if isinstance(layer, str) and layer in self.layers else None
        if key is None:
            key = next((k for k, p in self.layers.items() if p.viz.layer.module is layer or p.layer == layer), None)
        if key is None:
            raise KeyError(f"layer {layer!r} is not in this report; it has {', '.join(self.layers)}")
        return self.layers[key].figure(unit)


#: The atlas grid of a report (at most 144 cells; ``atlas_kwargs={"grid": 20}`` for the largest).
ATLAS_GRID = 12


class _Watcher:
    """Called as each unit of a layer is written: rewrites the layer's grid and the model index
    at most every :data:`PROGRESS_EVERY_S` seconds, so a long audit can be watched (one process,
    or rank 0's own units in a group: the other ranks' units show when the layer ends)."""

    def __init__(self, report: NeuronReport, root: Path, layer: str, total: int) -> None:
        self.report, self.root, self.layer, self.total = report, root, layer, total
        self.done, self.last = 0, time.perf_counter()

    def __call__(self, name: str) -> None:
        self.done += 1
        now = time.perf_counter()
        if self.report._shared or now - self.last < PROGRESS_EVERY_S or self.done >= self.total:
            return
        self.last = now
        part = self.report.layers[self.layer]
        progress = {"layer": self.layer, "done": self.done, "total": self.total}
        part._write_index(layout.layer_folder(self.root, self.layer), part._order, progress=progress)
        self.report._write_model_index(self.root, progress)


def _layer_specs(module: Optional[nn.Module], layer: Any, size: int) -> List[tuple]:
    """``(layer spec, its own units or None)`` for each layer ``layer`` names."""
    if layer is None or isinstance(layer, nn.Module):
        return [(layer, None)]
    specs = [layer] if isinstance(layer, str) else list(layer)
    if not specs:
        raise ValueError("give at least one layer, e.g. '_blocks.8' or '_blocks.*'")
    if module is None or not all(isinstance(s, str) for s in specs):
        return [(s, None) for s in specs]  # modules, None, or names of a plain forward function
    return [(sel.layer, sel.units) for sel in select_layers(module, specs, input_size=size)]


def _unit_link(units: Sequence[str]) -> Callable[[int], Optional[str]]:
    """The atlas's link for a strongest channel: its unit page when the report builds it."""
    built = set(units)

    def link(channel: int) -> Optional[str]:
        name = Unit.parse(channel).file_name
        return f"../{UNITS_DIR}/{name}/index.html" if name in built else None

    return link


def _read_json(path: Path) -> Optional[Dict[str, Any]]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _layer_entry(
    root: Path, key: str, rep: Dict[str, Any], atlas: Any, progress: Optional[Dict[str, Any]]
) -> Dict[str, Any]:
    """One layer in the model index and in ``report.json["layers"]``."""
    name = layout.layer_folder_name(key)
    records = rep["units"]
    ratios = sorted(r["ratio"] for r in records if r.get("ratio") is not None)
    labelled = [r.get("label") for r in records if r.get("label")]
    page = layout.layer_folder(root, key) / layout.ATLAS_DIR / "atlas.html"
    entry = {
        "layer": key,
        "folder": name,
        "page": f"{layout.LAYERS_DIR}/{name}/{folder.INDEX}",
        "units": len(records),
        "missing": len(rep.get("missing", [])),
        "verdicts": (rep.get("trust") or {}).get("verdicts", {}),
        "median_ratio": ratios[len(ratios) // 2] if ratios else None,
        "labels": sorted(set(labelled), key=labelled.index)[:6],
        "atlas": None,
        "building": bool(progress and progress["layer"] == key),
    }
    if page.exists():
        entry["atlas"] = {"page": f"{layout.LAYERS_DIR}/{name}/{layout.ATLAS_DIR}/atlas.html"}
        if atlas is not None:
            entry["atlas"].update(atlas.cost.to_dict())
    return entry


def _model_report(report: NeuronReport, layers: List[Dict], reports: List[Dict]) -> Dict[str, Any]:
    """The top-level ``report.json``: the one layer's report with ``"layers"`` added, or for
    several layers every unit, missing unit and trust row together."""
    timings = report.timings
    if len(reports) == 1:
        out = dict(reports[0], layers=layers, timings_s=dict(reports[0]["timings_s"], **_extra(timings)))
        out["labels"] = {reports[0]["layer"]: reports[0].get("labels", {})}
        return out
    first = reports[0] if reports else {}
    units = [r for rep in reports for r in rep["units"]]
    out = {
        "version": __version__,
        "model": first.get("model", report._first.model_name),
        "layers": layers,
        "settings": report.settings,
        "timings_s": timings,
        "processes": first.get("processes", 1),
        "dataset": first.get("dataset", {"size": len(report.dataset)}),  # type: ignore[arg-type]
        "units": units,
        "missing": [f"{rep['layer']}/{n}" for rep in reports for n in rep.get("missing", [])],
        "labels": {rep["layer"]: rep.get("labels", {}) for rep in reports},
    }
    trust = [rep["trust"] for rep in reports if rep.get("trust")]
    if trust:
        verdicts: Dict[str, int] = {}
        for t in trust:
            for v, n in t["verdicts"].items():
                verdicts[v] = verdicts.get(v, 0) + n
        out["trust"] = {
            "verdicts": verdicts,
            "classes": any(t["classes"] for t in trust),
            "units": [row for t in trust for row in t["units"]],
        }
    return out


def _extra(timings: Dict[str, float]) -> Dict[str, float]:
    return {"atlas": timings["atlas"]} if "atlas" in timings else {}
