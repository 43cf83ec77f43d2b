"""One layer of a neuron report: per unit, its optimized image, diversity facets, negative
optimum, optimization snapshots, labels, and the dataset examples that most and least activate it
with Captum attributions. :class:`captum_fv.NeuronReport` runs one of these per layer.

A build runs named steps over the units still to do: mining (first, so a bad dataset item stops
the run before any optimization), optimization in fixed chunks, labels, and attribution unit by
unit; records and images are made by :mod:`captum_fv.report.records`. The layer's folder
(``layers/<layer>/`` of the report, see :mod:`captum_fv.report.layout`) holds ``units/``, its
grid page and its ``report.json``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
from torch import nn
from torch.utils.data import Dataset

from .. import distributed as dist_lib
from .. import fingerprint as fp_lib
from .. import labels as labels_lib
from .. import recipe as recipe_lib
from .. import trust as trust_lib
from ..accentuation import Accentuation, accentuate
from ..addressing import OUTPUT, LayerLike
from ..attribution import attribute
from ..data import sample_images
from ..mining import DatasetExamples, ExampleSet
from ..modelinfo import model_device, module_of
from ..progress import progress_bar
from ..unit import Selector, Unit, as_units
from ..version import __version__
from ..visualization import NeuronVisualization, SlotLayout, Visualization, plan_chunks
from . import folder, layerindex, trustblock, writer
from .budget import ACCENTUATION_LR, ACCENTUATION_STEPS, report_attribution_kwargs
from .figure import unit_figure
from .inputs import TopInputs, items_have_args, stacked_args, top_inputs
from .records import BuiltUnit, FirstK, UnitContext, add_labels, build_unit, setting, unit_name
from .resume import ResumePlan, plan, redo_all
from .seeding import seeded


class LayerReport:
    """The units of one layer of a :class:`captum_fv.NeuronReport`, built and written into the
    layer's folder; takes the report's arguments (see there). Units are optimized in shared
    batches and mined in one pass over the dataset; in a process group every rank builds its
    round-robin share of the optimization chunks and rank 0 writes the layer's index."""

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
        additional_forward_args: Any = None,
        output: Any = None,
        recipe: Optional[str] = None,
        accentuate: bool = True,
        accentuate_steps: int = ACCENTUATION_STEPS,
        trust: bool = True,
        transfer_models: Sequence[Any] = (),
        transfer_names: Optional[Sequence[str]] = None,
        labels: bool = True,
        autocast: Any = None,
        channels_last: bool = False,
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
        self.attribution_kwargs = report_attribution_kwargs(attribution, attribution_kwargs)
        self.size, self.steps, self.facets, self.k, self.seed = size, steps, facets, k, seed
        self.batch_size, self.max_batch, self.progress = batch_size, max_batch, progress
        module = module_of(forward_func)
        self.model_name = model_name or type(module or forward_func).__name__
        self.distributed = distributed
        self.additional_forward_args = additional_forward_args  # Captum's: the same for every input
        self.output = output  # which entry of a structured model output is "the output"
        # unknown names fail here, not mid-run; none named: the kind's (class units: "maco")
        self.recipe = recipe_lib.get_recipe(recipe if recipe is not None else self.viz.default_recipe()).name
        self._probe = trustblock.probe_steps(self.recipe, self.layer)  # trust's Fourier probe (0: none)
        self.accentuate, self.accentuate_steps = accentuate, accentuate_steps
        self.trust = trust  # every unit's trust block (captum_fv.trust), on by default
        self.transfer_models = list(transfer_models)  # class units: their top-1/top-5 on the pictures
        self.transfer_names = trustblock.transfer_names(self.transfer_models, transfer_names)
        self.labels = labels  # output-class labels, and class labels for a labelled dataset
        self.autocast, self.channels_last = autocast, channels_last  # rendering precision (GPUs)
        self.units: Dict[str, BuiltUnit] = {}  # name -> record (JSON-able), PNG arrays, tensors
        self._order: List[str] = []  # unit names in the order they were first asked for
        self._fp: Dict[str, str] = {}  # the fingerprint the units of the last build were made under
        self.resumed: Optional[ResumePlan] = None  # what the last run(resume=True) kept and redid
        self.timings: Dict[str, float] = {"optimization": 0.0, "mining": 0.0, "attribution": 0.0, "writing": 0.0}
        if trust:
            self.timings["trust"] = 0.0
        if labels:
            self.timings["labels"] = 0.0

    @property
    def settings(self) -> Dict[str, Any]:
        """What makes two runs' units interchangeable (checked by --resume)."""
        trust = (
            trustblock.trust_settings(self.transfer_models, self.transfer_names, self._probe) if self.trust else None
        )
        return {
            "model": self.model_name,
            "layer": self.layer,
            "size": self.size,
            "steps": self.steps,
            "facets": self.facets,
            "k": self.k,
            "seed": self.seed,
            "attribution": self.attribution,
            "attribution_kwargs": {k: setting(v) for k, v in sorted(self.attribution_kwargs.items())},
            "max_batch": self.max_batch,
            "dataset_size": len(self.dataset),  # type: ignore[arg-type]
            "additional_forward_args": setting(self.additional_forward_args),
            "output": setting(self.output),
            # only when not the defaults, so reports made before recipes existed still resume; an
            # absent recipe means "fourier", theirs (whatever recipe.DEFAULT becomes)
            **({"recipe": self.recipe} if self.recipe != "fourier" else {}),
            **({"accentuate_steps": self.accentuate_steps} if self.accentuate else {}),
            "labels": self.labels,
            **({"autocast": str(self.autocast)} if self.autocast is not None else {}),
            **({"channels_last": True} if self.channels_last else {}),
            # its own fingerprint part, so --resume says "trust changed"; absent when off
            **({"trust": trust} if trust is not None else {}),
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
    ) -> "LayerReport":
        """Optimize, mine and attribute ``units``; ``on_unit(name)`` runs as each one completes.

        Units are optimized in fixed chunks of ``units`` (each chunk its own seed), so a unit's
        images do not depend on which other units are being redone: with ``only``, just the
        chunks holding those units are optimized, and the results equal a full build's. In a
        process group the chunks to optimize are dealt round-robin to the ranks (whole chunks,
        so each is the very batch one process would optimize), and the mining pass is shared.
        """
        return self._build(units, on_unit, only, None)

    def _build(
        self,
        units: Sequence[Selector],
        on_unit: Optional[Callable[[str], None]],
        only: Optional[Sequence[Selector]],
        fingerprint: Optional[Dict[str, str]],
    ) -> "LayerReport":
        units = as_units(units)
        names = [u.file_name for u in units]
        self._order += [n for n in dict.fromkeys(names) if n not in self._order]
        wanted = set(names) if only is None else {u.file_name for u in as_units(list(only))} if len(only) else set()
        todo = [u for u in units if u.file_name in wanted]
        if not todo:
            return self
        self._fp = fingerprint or self.fingerprint
        progress = self.progress and (not self._shared or dist_lib.rank() == 0)
        needs_examples = recipe_lib.get_recipe(self.recipe).needs_examples
        # a dataset prior and accentuation need the examples of every unit in the chunks they
        # batch, not just todo's: a unit's images must not depend on which of its chunk were redone
        full = self._mine(units if needs_examples or self.accentuate else todo, progress)
        mined = FirstK(full, self.k)
        vis = self._optimize(units, wanted, progress, mined if needs_examples else None)
        position = {n: i for i, n in reversed(list(enumerate(names)))}
        chunks = [units[c.start : c.stop] for c in self._chunks(len(units))]
        self._attribute(todo, vis, mined, position, on_unit, progress, full, chunks)
        return self

    def _chunks(self, n: int) -> List[range]:
        """The fixed chunks of a build's units, each optimized (and accentuated) in one batch."""
        return plan_chunks(n, SlotLayout.per_unit(self.facets, True), self.max_batch)

    def _mine(self, units: List[Unit], progress: bool) -> ExampleSet:
        """One pass for every unit: the report's ``k`` a side, or as many as the trust block
        needs (the pages show the first ``k``: see :class:`FirstK`)."""
        t = time.perf_counter()
        mined = DatasetExamples(self.forward_func, self.layer_spec).collect(
            self.dataset,
            k=max(self.k, trust_lib.MIN_EXAMPLES) if self.trust else self.k,
            batch_size=self.batch_size,
            units=[u.selector for u in units],
            progress=progress,
            distributed=self._shared,
            additional_forward_args=None if items_have_args(self.dataset) else self.additional_forward_args,
        )
        self.timings["mining"] += time.perf_counter() - t
        return mined

    def _optimize(
        self, units: List[Unit], wanted: set, progress: bool, mined: Optional[FirstK] = None
    ) -> Dict[str, Visualization]:
        """Optimize the chunks of ``units`` that hold a wanted unit (this rank's share of them);
        ``mined``: the units' examples, for a recipe with a dataset prior."""
        t = time.perf_counter()
        names = [u.file_name for u in units]
        thresholds = sorted({0, 4, 48, self.steps // 4, self.steps // 2} - {self.steps})
        chunks = [c for c in self._chunks(len(units)) if wanted & set(names[c.start : c.stop])]
        shared = self._shared
        vis: Dict[str, Visualization] = {}
        with dist_lib.all_or_none(shared):
            for chunk in dist_lib.shard(chunks) if shared else chunks:
                part, start = units[chunk.start : chunk.stop], chunk.start
                done = self.viz.visualize(
                    [u.selector for u in part],
                    size=self.size,
                    steps=self.steps,
                    facets=self.facets,
                    negative=True,
                    seed=self.seed + start,
                    thresholds=thresholds,
                    max_batch=len(part) * (2 + self.facets),
                    progress=progress,
                    additional_forward_args=self.additional_forward_args,
                    recipe=self.recipe,
                    transparency=recipe_lib.get_recipe(self.recipe).transparency,
                    autocast=self.autocast,
                    channels_last=self.channels_last,
                    examples=None if mined is None else [self._top(mined, u).images for u in part],
                )
                vis.update({u.file_name: v for u, v in zip(part, done)})
        self.timings["optimization"] += time.perf_counter() - t
        return vis

    def _attribute(
        self,
        units: List[Unit],
        vis: Dict[str, Visualization],
        mined: FirstK,
        position: Dict[str, int],
        on_unit: Optional[Callable[[str], None]],
        progress: bool,
        full: ExampleSet,
        chunks: Sequence[List[Unit]],
    ) -> None:
        """Attribute the top examples of each unit this rank optimized, measure how far to trust
        its pictures, and record the unit; ``chunks``: the build's units as optimized."""
        device = model_device(module_of(self.forward_func))
        named = self.layer == OUTPUT and not items_have_args(self.dataset)  # class units: titled by name
        args = (self.forward_func, self.dataset, self.additional_forward_args, self.output)
        names = labels_lib.output_names(*args) if named else None
        ctx = UnitContext(self.layer, self.settings, self._fp, self.attribution, self.dataset, names)
        mine = [u for u in units if u.file_name in vis]  # all of them in a single process
        block = self._trust_block() if self.trust and mine else None
        with dist_lib.all_or_none(self._shared):  # every rank enters, with units or none
            if block is not None and self._probe:  # in here, a failing probe fails every rank at once
                self._probe_units(block, mine, chunks)
            accents = self._accentuate(mine, chunks, mined) if self.accentuate and mine else {}
            labels = self._labels(mine, mined, full) if self.labels and mine else {}
            for unit in progress_bar(mine, desc="attribution", disable=not progress, leave=False):
                name = unit.file_name
                t = time.perf_counter()
                top_images, args = self._top(mined, unit)
                with seeded(self.seed + position[name], device):
                    att = attribute(
                        self.forward_func,
                        self.layer_spec,
                        top_images,
                        unit.selector,
                        attribution=self.attribution,
                        additional_forward_args=args,
                        **self.attribution_kwargs,
                    )
                self.timings["attribution"] += time.perf_counter() - t
                trusted = None
                if block is not None:
                    t = time.perf_counter()
                    trusted = block.unit(unit, vis[name], full, self.layer)
                    self.timings["trust"] += time.perf_counter() - t
                built = build_unit(ctx, unit, vis[name], mined, top_images, att, accents.get(name), trusted)
                add_labels(built.record, labels.get(name, []))
                self.units[name] = built
                if on_unit is not None:
                    on_unit(name)

    def _labels(self, units: List[Unit], mined: FirstK, full: ExampleSet) -> Dict[str, List[Dict[str, Any]]]:
        """Each unit's automatic labels (captum_fv.labels): the output classes it drives most,
        read from its top examples (hidden layers), and the dataset class of its top examples
        when the dataset has class labels (ten or more classes)."""
        t = time.perf_counter()
        found: List[Any] = []
        zeroable = [u for u in units if u.kind != "function"]
        if self.layer != OUTPUT and zeroable:
            tops = [self._top(mined, u) for u in zeroable]
            per_item = any(args is not None for _, args in tops) and items_have_args(self.dataset)
            if not per_item:  # per-example forward arguments cannot follow rows cut out per unit
                found += labels_lib.output_classes(
                    self.forward_func,
                    self.layer_spec,
                    [images for images, _ in tops],
                    [u.selector for u in zeroable],
                    additional_forward_args=self.additional_forward_args,
                    output=self.output,
                )
        if labels_lib.has_classes(self.dataset):
            found += labels_lib.class_labels(full, [u.selector for u in units], dataset=self.dataset)
        self.timings["labels"] += time.perf_counter() - t
        return labels_lib.to_json(found)

    def _trust_block(self) -> trustblock.TrustBlock:
        names = (self.transfer_models, self.transfer_names, self.seed, self.additional_forward_args, self.output)
        return trustblock.TrustBlock(self.forward_func, self.layer_spec, self.dataset, *names)

    def _probe_units(self, block: trustblock.TrustBlock, mine: List[Unit], chunks: Sequence[List[Unit]]) -> None:
        t, args = time.perf_counter(), self.additional_forward_args
        kw = dict(size=self.size, steps=self._probe, progress=False, additional_forward_args=args)
        block.probe(self.viz, chunks, {u.file_name for u in mine}, self.seed, **kw)
        self.timings["trust"] += time.perf_counter() - t

    def _accentuate(self, units: List[Unit], chunks: Sequence[List[Unit]], mined: FirstK) -> Dict[str, Accentuation]:
        """Every top example of ``units`` accentuated (what beside where), one batch per chunk of
        the optimization holding one, seeded by its place: a unit's images do not depend on which
        of its chunk a run redoes. Runs inside the attribution step's collective block."""
        t = time.perf_counter()
        wanted, found, end = {u.file_name for u in units}, {}, 0
        for part in chunks:
            start, end = end, end + len(part)  # the chunk's place: its seed, as in the optimization
            if not wanted & {u.file_name for u in part}:
                continue
            tops = [self._top(mined, u) for u in part]
            n = min(len(top.images) for top in tops)
            acc = accentuate(
                self.forward_func,
                self.layer_spec,
                [top.images[:n] for top in tops],
                [u.selector for u in part],
                steps=self.accentuate_steps,
                lr=ACCENTUATION_LR,
                seed=self.seed + start,
                progress=False,
                additional_forward_args=stacked_args(tops, n),
            )
            found.update(
                (u.file_name, Accentuation(acc.images[i], acc.before[i], acc.after[i], acc.distance[i], acc.reg_layer))
                for i, u in enumerate(part)
            )
        self.timings["accentuation"] = self.timings.get("accentuation", 0.0) + time.perf_counter() - t
        return found

    def _top(self, mined: FirstK, unit: Unit) -> TopInputs:
        return top_inputs(self.dataset, mined, unit, self.additional_forward_args)

    # -- saving ---------------------------------------------------------------------------------
    def _write_unit(self, out_dir: Path, name: str) -> None:
        t = time.perf_counter()
        built = self.units[name]
        rec = built.record
        page = {"u": dict(rec, files=rec["files_layout"])}
        writer.write_unit(out_dir, name, rec, built.arrays, page)
        self.timings["writing"] += time.perf_counter() - t

    def _write_index(
        self,
        out_dir: Path,
        names: Sequence[str],
        timings: Optional[Dict[str, float]] = None,
        written_by: Optional[Dict[str, int]] = None,
        progress: Optional[Dict[str, int]] = None,
    ) -> Path:
        """The layer's ``report.json`` and grid page over ``names``; ``progress`` (``done`` of
        ``total``): a run still going, whose units not yet written are listed as to come."""
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
        head = {
            "version": __version__,
            "model": self.model_name,
            "layer": self.layer,
            "settings": self.settings,
            "timings_s": dict(timings or self.timings),
            "processes": dist_lib.world_size() if self._shared else 1,
            "fingerprint": self._fp or self.fingerprint,
            "dataset": layerindex.dataset_entry(self.dataset),
        }
        index = layerindex.write(out_dir, head, records, missing, progress)
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

    def save(self, out_dir: Union[str, Path], force: bool = False) -> Path:
        """Write every built unit and the index; returns the path of ``index.html``.

        ``out_dir`` must be new, empty or a report folder of captum-fv's; ``force=True`` writes
        into another folder when none of the report's names is there (else OutputFolderError).
        In a process group every rank calls it: each writes the units it built, rank 0 the index."""
        out_dir = Path(out_dir)
        folder.claim_shared(out_dir, force, self._shared)
        with dist_lib.all_or_none(self._shared):
            for name in self.units:
                self._write_unit(out_dir, name)
        return self._finish(out_dir, None, list(self.units))

    def run(
        self,
        units: Sequence[Selector],
        out_dir: Union[str, Path],
        resume: bool = False,
        force: bool = False,
        on_unit: Optional[Callable[[str], None]] = None,
    ) -> Path:
        """Build and write ``units`` one by one (each atomically); with ``resume``, units already
        complete on disk under the same fingerprint are kept, the others redone (``.resumed``
        says which and why). ``out_dir`` follows :meth:`save`'s rules. In a process group every
        rank calls it alike; rank 0 decides which units are redone."""
        out_dir = Path(out_dir)
        units = as_units(units)
        names = [u.file_name for u in units]
        shared = self._shared
        folder.claim_shared(out_dir, force, self._shared)
        fingerprint = self.fingerprint
        todo: Optional[ResumePlan] = None
        with dist_lib.all_or_none(shared):
            if dist_lib.rank() == 0 or not shared:
                todo = plan(out_dir, names, fingerprint) if resume else redo_all(names)
        if shared:
            todo = dist_lib.broadcast_object(todo)
        assert todo is not None
        self.resumed = todo if resume else None
        written: List[str] = []

        def write(name: str) -> None:
            self._write_unit(out_dir, name)
            written.append(name)
            if on_unit is not None:
                on_unit(name)

        self._build(units, write, [u for u, n in zip(units, names) if n in todo.redo], fingerprint)
        return self._finish(out_dir, names, written)

    # -- notebooks ------------------------------------------------------------------------------
    def figure(self, unit: Selector) -> "Any":
        """A matplotlib figure of one built unit: optima, facets, snapshots, top examples with
        attribution overlays, and bottom examples."""
        name = unit_name(unit)
        if name not in self.units:
            raise KeyError(f"unit {Unit.parse(unit).title} is not built; call report.build([{unit!r}]) first")
        return unit_figure(self.units[name])
