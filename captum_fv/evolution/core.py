"""FeatureEvolution: the same units of one layer across training checkpoints, side by side.

The model is loaded with each checkpoint in turn (``weights_only``, one at a time) and gets its
own weights back afterwards. Under every checkpoint each unit is optimized from the same seed and
starting image (fixed chunks of the unit list, as in a report) and its top dataset examples are
mined; then, in the final checkpoint, every optimum is read as a channel-mean activation vector
at the layer, which gives the change numbers of :mod:`captum_fv.evolution.measures`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from .. import distributed as dist_lib
from .. import fingerprint as fp_lib
from .. import recipe as recipe_lib
from ..addressing import LayerLike
from ..data import sample_images
from ..items import image_of
from ..mining import DatasetExamples
from ..modelinfo import module_of
from ..report import folder, layout, writer
from ..report.resume import ResumePlan, plan, redo_all
from ..unit import Selector, Unit, as_units
from ..version import __version__
from ..visualization import NeuronVisualization, SlotLayout, activations, plan_chunks
from . import pages
from .checkpoints import CheckpointLike, as_checkpoints, load_into, restored
from .measures import SETTLED, channel_means, measure
from .stage import StageUnit, read_stage, stage_unit, write_stage

#: Dataset items (evenly spaced) whose mean activation is the origin of the similarity's vectors.
BASELINE_ITEMS = 256


@dataclass
class EvolvedUnit:
    """One unit across the checkpoints: its record (every number, JSON-able), its PNG arrays
    (``c<i>_positive.png``, ``c<i>_facet_<j>.png``, ``c<i>_top_<j>.png``) and its stages."""

    record: Dict[str, Any]
    arrays: Dict[str, np.ndarray]
    stages: List[StageUnit]

    def optima(self) -> torch.Tensor:
        """The positive optimum under each checkpoint, (N, C, H, W) in [0, 1]."""
        return torch.stack([s.image("positive.png") for s in self.stages])

    def tops(self) -> torch.Tensor:
        """The best dataset example under each checkpoint, (N, C, H, W)."""
        return torch.stack([s.image("top_0.png") for s in self.stages])


class FeatureEvolution:
    """Visualize units of ``layer`` under each of ``checkpoints`` (local state_dict files or
    state_dicts in memory, oldest first; the last one is "final").

    ``recipe``: how the optima are rendered (a name from :func:`captum_fv.recipes`; default the
    unit default). Inside a ``torch.distributed`` process group every rank calls ``run`` alike: the fixed chunks
    of units are dealt round-robin, each rank writes its units, rank 0 the index.

    Checkpoints are files (``["step0.pt", "step100.pt", "final.pt"]``) or state_dicts:

    >>> final = model.state_dict()
    >>> early = {k: t + 0.1 * torch.randn_like(t) if t.is_floating_point() else t for k, t in final.items()}
    >>> ev = FeatureEvolution(model, "_blocks.8", [early, final], dataset, size=32, steps=4, progress=False)
    >>> round(ev.build(range(2)).units["channel_0001"].record["similarity"][-1], 6)  # the final one vs itself
    1.0
    >>> ev.run(range(2), "evolution").name  # the same units as pages
    'index.html'
    """

    def __init__(
        self,
        forward_func: Union[nn.Module, Callable[..., torch.Tensor]],
        layer: LayerLike,
        checkpoints: Sequence[CheckpointLike],
        dataset: Any = None,
        *,
        labels: Optional[Sequence[str]] = None,
        size: int = 128,
        steps: int = 256,
        facets: int = 0,
        k: int = 6,
        seed: int = 0,
        max_batch: int = 64,
        batch_size: int = 32,
        threshold: float = SETTLED,
        model_name: Optional[str] = None,
        progress: bool = True,
        distributed: Optional[bool] = None,
        recipe: Optional[str] = None,
    ):
        if facets < 0 or k < 1 or steps < 1 or size < 1:
            raise ValueError("facets must be >= 0 and k, steps, size >= 1")
        self.module = module_of(forward_func)
        if self.module is None:
            raise TypeError(
                "FeatureEvolution loads checkpoints into a model: forward_func must be an nn.Module (or wrap one)"
            )
        self.forward_func = forward_func
        self.viz = NeuronVisualization(forward_func, layer)
        self.layer = self.viz.layer.key
        self.layer_spec = layer if isinstance(layer, nn.Module) else self.layer
        self.checkpoints = as_checkpoints(checkpoints, labels)
        self.dataset = dataset if dataset is not None else sample_images(size=size, crops=8)
        self.size, self.steps, self.facets, self.k, self.seed = size, steps, facets, k, seed
        self.max_batch, self.batch_size, self.threshold = max_batch, batch_size, threshold
        self.model_name = model_name or type(self.module).__name__
        self.progress, self.distributed = progress, distributed
        self.recipe = recipe_lib.get_recipe(recipe if recipe is not None else self.viz.default_recipe()).name
        self.units: Dict[str, EvolvedUnit] = {}
        self.resumed: Optional[ResumePlan] = None  # what the last run(resume=True) kept and redid
        self._unit_fp: Dict[str, str] = {}
        self._base: Optional[torch.Tensor] = None

    @property
    def labels(self) -> List[str]:
        return [c.label for c in self.checkpoints]

    @property
    def settings(self) -> Dict[str, Any]:
        """What makes two runs' units interchangeable (checked by ``resume``)."""
        return {
            "model": self.model_name,
            "layer": self.layer,
            "size": self.size,
            "steps": self.steps,
            "facets": self.facets,
            "k": self.k,
            "seed": self.seed,
            "max_batch": self.max_batch,
            "threshold": self.threshold,
            "dataset_size": len(self.dataset),
            "evolution": True,
            **({"recipe": self.recipe} if self.recipe != "fourier" else {}),  # absent: runs made before recipes
        }

    @property
    def _shared(self) -> bool:
        return self.distributed is not False and dist_lib.is_distributed()

    def _meta(self) -> Dict[str, Any]:
        return {
            "layer": self.layer,
            "model": self.model_name,
            "settings": self.settings,
            "labels": self.labels,
            "threshold": self.threshold,
            "version": __version__,
        }

    # -- building -------------------------------------------------------------------------------
    def build(self, units: Sequence[Selector]) -> "FeatureEvolution":
        """Every unit under every checkpoint, in memory (``.units``); nothing is written."""
        self._evolve(as_units(units), None, None)
        return self

    def run(
        self, units: Sequence[Selector], out_dir: Union[str, Path], resume: bool = False, force: bool = False
    ) -> Path:
        """Build and write ``units`` (each unit folder atomically) and the index; with ``resume``,
        units and per-checkpoint stages already on disk under the same fingerprint are kept
        (``.resumed`` says which units were redone and why). Returns the path of ``index.html``."""
        out_dir, units = Path(out_dir), as_units(units)
        shared = self._shared
        folder.claim_shared(out_dir, force, shared)
        layer_dir = layout.layer_folder(out_dir, self.layer)  # the report's layout: units, stages
        folder.claim_shared(layer_dir, False, shared)
        with dist_lib.all_or_none(shared):
            self._evolve(units, layer_dir, resume)
        if shared:
            dist_lib.barrier()  # every rank has written its units
        index = out_dir / folder.INDEX
        with dist_lib.all_or_none(shared):
            if dist_lib.rank() == 0 or not shared:
                self._write_index(out_dir, layer_dir, [u.file_name for u in units])
        if shared:
            dist_lib.barrier()
        return index

    def _evolve(self, units: List[Unit], out_dir: Optional[Path], resume: Optional[bool]) -> None:
        per_unit = SlotLayout.per_unit(self.facets, False)
        chunks = plan_chunks(len(units), per_unit, self.max_batch)
        mine = dist_lib.shard(chunks) if self._shared else chunks
        with restored(self.module):
            digests = []
            for c in self.checkpoints:  # one at a time: only the digests are kept
                load_into(self.module, c)
                digests.append(fp_lib.weights_digest(self.module))
            base = self._base_fingerprint()
            unit_fp = dict(base, weights=_combined(self.labels, digests))
            self._unit_fp = unit_fp  # what the index checks its units against
            names = [units[i].file_name for c in mine for i in c]
            todo = plan(out_dir, names, unit_fp) if resume and out_dir is not None else redo_all(names)
            self.resumed = todo if resume else None
            wanted = set(todo.redo)
            if not wanted:
                return
            self._base = None  # measured anew in the final checkpoint
            stages: Dict[str, List[StageUnit]] = {n: [] for n in wanted}
            for ckpt, weights in zip(self.checkpoints, digests):
                load_into(self.module, ckpt)
                for name, stage in self._stages(
                    units, mine, wanted, out_dir, dict(base, weights=weights), ckpt.slug
                ).items():
                    stages[name].append(stage)
            # the final checkpoint is loaded now: every optimum is read in its feature space
            for unit in units:
                if unit.file_name in wanted:
                    self._finish_unit(unit, stages[unit.file_name], dict(unit_fp, unit=unit.identity), out_dir)

    def _base_fingerprint(self) -> Dict[str, str]:
        return fp_lib.fingerprint(self.module, self.forward_func, self.dataset, self.settings)

    def _stages(
        self,
        units: List[Unit],
        mine: Sequence[range],
        wanted: set,
        out_dir: Optional[Path],
        fingerprint: Dict[str, str],
        slug: str,
    ) -> Dict[str, StageUnit]:
        """The stages of the ``wanted`` units under the weights now loaded: kept from disk where
        intact, else optimized (whole chunks, each from its own seed) and mined."""
        found: Dict[str, StageUnit] = {}
        fps = {u.file_name: dict(fingerprint, unit=u.identity) for u in units}
        if out_dir is not None:
            for name in wanted:
                kept = read_stage(out_dir, slug, name, fps[name])
                if kept is not None:
                    found[name] = kept
        todo = [c for c in mine if any(units[i].file_name in wanted - set(found) for i in c)]
        if not todo:
            return found
        need = [units[i] for c in todo for i in c if units[i].file_name in wanted and units[i].file_name not in found]
        mined = DatasetExamples(self.forward_func, self.layer_spec).collect(
            self.dataset,
            k=self.k,
            batch_size=self.batch_size,
            units=[u.selector for u in need],
            progress=self.progress,
            distributed=False,
        )
        row = {u.file_name: i for i, u in enumerate(need)}
        per_unit = SlotLayout.per_unit(self.facets, False)
        for chunk in todo:
            part = units[chunk.start : chunk.stop]
            vis = self.viz.visualize(
                [u.selector for u in part],
                size=self.size,
                steps=self.steps,
                facets=self.facets,
                seed=self.seed + chunk.start,
                max_batch=len(part) * per_unit,
                progress=self.progress,
                recipe=self.recipe,
                **({"dataset": self.dataset, "k": self.k} if recipe_lib.get_recipe(self.recipe).needs_examples else {}),
            )
            for unit, v in zip(part, vis):
                name = unit.file_name
                if name not in row:
                    continue
                stage = stage_unit(unit, v, mined, row[name], mined.images(unit.selector))
                if out_dir is not None:
                    write_stage(out_dir, slug, stage, fps[name])
                found[name] = stage
        return found

    def _finish_unit(
        self, unit: Unit, stages: List[StageUnit], fingerprint: Dict[str, str], out_dir: Optional[Path]
    ) -> None:
        optima = torch.stack([s.image("positive.png") for s in stages])
        vectors = channel_means(activations(self.forward_func, self.layer_spec, optima)) - self._baseline()
        m = measure(vectors, [s.top_indices for s in stages], self.threshold)
        arrays: Dict[str, np.ndarray] = {}
        columns = []
        for i, (label, s) in enumerate(zip(self.labels, stages)):
            files: Dict[str, Any] = {"positive": "", "facets": [], "top": []}
            for key in sorted(s.arrays, key=_image_order):
                fname = f"c{i:02d}_{key}"
                arrays[fname] = s.arrays[key]
                if key == "positive.png":
                    files["positive"] = fname
                else:
                    files["facets" if key.startswith("facet_") else "top"].append(fname)
            columns.append(dict(s.stats, label=label, similarity=m.similarity[i], overlap=m.overlap[i], files=files))
        record = {
            "name": unit.file_name,
            "title": unit.title,
            "layer": self.layer,
            "fingerprint": fingerprint,
            "checkpoints": columns,
            "change": m.change,
            "settled": self.labels[m.settled],
            "settled_index": m.settled,
            "similarity": m.similarity,
            "overlap": m.overlap,
        }
        self.units[unit.file_name] = EvolvedUnit(record, arrays, stages)
        if out_dir is not None:
            writer.write_unit(out_dir, unit.file_name, record, arrays, {}, html=pages.unit_page(record, self._meta()))

    def _baseline(self) -> torch.Tensor:
        """The layer's mean channel-mean vector over (up to BASELINE_ITEMS of) the dataset in the
        final checkpoint: subtracted before the cosine, so the activation every input shares (from
        biases and ReLUs) does not make every pair of optima look alike."""
        if self._base is None:
            n = len(self.dataset)
            picks = torch.linspace(0, n - 1, min(n, BASELINE_ITEMS)).round().long().unique().tolist()
            images = torch.stack([image_of(self.dataset[i]) for i in picks])
            self._base = channel_means(activations(self.forward_func, self.layer_spec, images)).mean(0).cpu()
        return self._base

    def _write_index(self, out_dir: Path, layer_dir: Path, names: Sequence[str]) -> Path:
        """The index and report.json at the top of ``out_dir``, over the units in ``layer_dir``."""
        unit_fp = self._unit_fp
        records, missing = [], []
        for name in dict.fromkeys(names):
            rec = writer.load_unit(layer_dir, name, unit_fp)
            (records.append(rec) if rec is not None else missing.append(name))
        base = layer_dir.relative_to(out_dir).as_posix() + "/"
        return pages.write_index(out_dir, records, dict(self._meta(), fingerprint=unit_fp, base=base), missing)


def _combined(labels: Sequence[str], digests: Sequence[str]) -> str:
    """One weights digest for the whole sequence of checkpoints, labels and order included."""
    h = hashlib.sha256()
    for label, d in zip(labels, digests):
        h.update(f"{label}|{d};".encode())
    return h.hexdigest()[:32]


def _image_order(key: str) -> tuple:
    """positive first, then facets, then top examples, each by number."""
    kind = 0 if key == "positive.png" else 1 if key.startswith("facet_") else 2
    num = int(key.rsplit("_", 1)[1].split(".")[0]) if kind else 0
    return kind, num
