"""NeuronVisualization: the Captum-style entry point, ``(forward_func, layer)`` like Captum's
``NeuronAttribution`` family, producing a unit's positive optimum, diversity facets and negative
optimum in one batched optimization."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
from torch import nn

from . import recipe as recipe_lib
from .addressing import LayerLike, resolve_layer
from .hooks import Capture, batch_args, forward_args, model_guard
from .mining import DatasetExamples
from .modelinfo import OutputKey, infer_in_channels, model_device, model_dtype, module_of
from .objectives.base import Objective
from .objectives.diversity import diversity as _diversity_objective
from .precision import Precision
from .rendering import render
from .rescue import RescueConfig
from .unit import Selector, Unit, as_units, is_many, units_objective

#: Default weight of the diversity term between facets (Gram cosine similarity is in [0, 1],
#: the term is scaled by the layer's own typical activation; see ``_scaled_diversity``).
DIVERSITY_WEIGHT = 0.5


@dataclass(frozen=True)
class SlotLayout:
    """Which batch slots hold one unit's images: its positive optimum, its facets and its
    negative optimum (empty when not asked for)."""

    positive: List[int]
    facets: List[int] = field(default_factory=list)
    negative: List[int] = field(default_factory=list)

    @staticmethod
    def per_unit(facets: int, negative: bool) -> int:
        """Slots one unit takes."""
        return 1 + facets + int(negative)

    @classmethod
    def of(cls, i: int, facets: int, negative: bool) -> "SlotLayout":
        """The slots of the ``i``-th unit of a batch, units laid out one after another."""
        base = i * cls.per_unit(facets, negative)
        return cls([base], list(range(base + 1, base + 1 + facets)), [base + 1 + facets] if negative else [])

    @property
    def maximized(self) -> List[int]:
        return self.positive + self.facets

    def roles(self) -> Dict[str, List[int]]:
        return {"positive": self.positive, "facets": self.facets, "negative": self.negative}


def plan_chunks(n_units: int, per_unit: int, max_batch: int) -> List[range]:
    """Consecutive chunks of units, each optimized in one batch of at most ``max_batch`` images
    (``per_unit`` each); a unit is never split, so a chunk holds at least one."""
    size = max(1, max_batch // per_unit)
    return [range(s, min(s + size, n_units)) for s in range(0, n_units, size)]


@dataclass
class Visualization:
    """One unit's optimized images, each (n, C, H, W) in [0, 1], and the activation each reaches
    (the selector's value on the final image, without transforms)."""

    selector: Any
    layer: str
    positive: torch.Tensor
    facets: torch.Tensor
    negative: Optional[torch.Tensor]
    activation: Dict[str, torch.Tensor]
    snapshots: Dict[int, torch.Tensor] = field(default_factory=dict, repr=False)
    history: Optional[torch.Tensor] = field(default=None, repr=False)
    dead: bool = False  # a maximized slot never got a gradient (after the rescue, if on)
    #: with ``visualize(..., transparency=True)``: which pixels of ``positive`` the objective used
    #: (accumulated |input gradient|, (n, 1, H, W) in [0, 1]; draw with ``fv.heatmap.transparent``)
    transparency: Optional[torch.Tensor] = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return Unit.parse(self.selector).title


class NeuronVisualization:
    """Visualize what a unit of ``layer`` responds to, by optimizing input images.

    ``forward_func``: the model (or a function of the input, as in Captum); ``layer``: a module
    or its dotted name. Objectives are maximized: ``.positive`` is the image that excites the unit
    most, ``.negative`` the one that drives it lowest.

    >>> viz = NeuronVisualization(model, "_blocks.8")
    >>> v = viz.visualize(12, facets=4, negative=True, size=64, steps=8, progress=False)
    >>> v.positive.shape, v.facets.shape, v.activation["positive"]
    (torch.Size([1, 3, 64, 64]), torch.Size([4, 3, 64, 64]), tensor([...]))
    """

    def __init__(self, forward_func: Union[nn.Module, Callable[..., torch.Tensor]], layer: LayerLike):
        self.forward_func = forward_func
        self.module = module_of(forward_func)
        self.layer = resolve_layer(self.module, layer)
        self._layer_spec = layer if isinstance(layer, nn.Module) else self.layer.key

    def default_recipe(self, unit: Selector = 0) -> str:
        """The recipe a render of this layer's ``unit`` gets when it names none (for the model
        output, class units, "maco"; see :func:`captum_fv.recipe.default_recipe`)."""
        probe = self._objective(as_units([unit]), [SlotLayout.of(0, 0, False)], 0.0)
        return recipe_lib.default_recipe(probe, None, infer_in_channels(self.module))

    def _objective(self, units: Sequence[Unit], layout: Sequence[SlotLayout], diversity_weight: float) -> Objective:
        spec = self._layer_spec
        pos = [(u, s) for u, lay in zip(units, layout) for s in lay.maximized]
        neg = [(u, s) for u, lay in zip(units, layout) for s in lay.negative]
        obj = units_objective(spec, [u for u, _ in pos], [s for _, s in pos])
        if neg:
            obj = obj - units_objective(spec, [u for u, _ in neg], [s for _, s in neg])
        if len(layout[0].facets) > 1 and diversity_weight:
            obj = obj + diversity_weight * _scaled_diversity(spec, [lay.facets for lay in layout])
        return obj

    def visualize(
        self,
        neuron_selector: Union[Selector, Sequence[Selector]],
        *,
        size: Union[int, Sequence[int]] = 128,
        steps: int = 512,
        facets: int = 0,
        negative: bool = False,
        seed: int = 0,
        lr: Optional[float] = None,
        diversity_weight: float = DIVERSITY_WEIGHT,
        transforms: Any = None,
        fft: bool = True,
        decorrelate: bool = True,
        thresholds: Optional[Sequence[int]] = None,
        max_batch: int = 64,
        progress: bool = True,
        rescue: Any = True,
        additional_forward_args: Any = None,
        recipe: Union[None, str, recipe_lib.Recipe] = None,
        dataset: Any = None,
        examples: Optional[Sequence[Optional[torch.Tensor]]] = None,
        k: int = 6,
        autocast: Any = None,
        channels_last: bool = False,
        transparency: bool = False,
    ) -> Union[Visualization, List[Visualization]]:
        """Optimize images for one selector, or for a sequence of them in shared batches.

        ``neuron_selector``: an int (channel), a tuple indexing one neuron, a callable, or a
        sequence of these (list, range, array: many units; a tuple is one neuron, as in Captum);
        ``facets``: extra images pushed apart by a diversity term; ``negative``: also minimize the
        unit; ``rescue``: as in :func:`captum_fv.render` (units still dead get ``.dead`` and one
        warning naming them); ``max_batch``: most images optimized at once; ``additional_forward_args``: extra
        model arguments, as in Captum (see :func:`captum_fv.render`); ``recipe``: a name from
        :func:`captum_fv.recipes` (explicit ``lr``, ``transforms``, ``fft``, ``decorrelate``
        win); for a recipe with a dataset prior (``"aligned"``), ``examples`` gives each unit's
        natural images (one tensor per unit), else the ``k`` top examples of each unit are
        mined from ``dataset`` first. The prior serves the positive optimum and facets.
        ``autocast`` (``"bf16"`` or None) and ``channels_last``: the optimization's forward, as in
        :func:`captum_fv.render`; ``.activation`` is measured in float32 either way;
        ``transparency``: also return each positive optimum's transparency map (``.transparency``).
        """
        if facets < 0:
            raise ValueError(f"facets must be >= 0, got {facets}")
        units = as_units(neuron_selector)  # type errors now, not mid-optimization
        Precision.of(autocast, channels_last, model_device(self.module))  # bad options fail before any work
        chosen = recipe_lib.get_recipe(recipe if recipe is not None else self.default_recipe(units[0].selector))
        if chosen.needs_examples and examples is None:
            examples = self._top_examples(units, dataset, k, progress, additional_forward_args)
        if torch.is_tensor(examples):
            examples = [examples] * len(units)  # one set of images for every unit
        per_unit = SlotLayout.per_unit(facets, negative)
        results: List[Visualization] = []
        for chunk in plan_chunks(len(units), per_unit, max_batch):
            part = units[chunk.start : chunk.stop]
            layout = [SlotLayout.of(i, facets, negative) for i in range(len(part))]
            obj = self._objective(part, layout, diversity_weight)
            p = chosen.param(
                recipe_lib.ParamSpec(
                    size, len(part) * per_unit, infer_in_channels(self.module), seed + chunk.start, fft, decorrelate
                )
            )
            saver = _rescue_config(rescue, layout)
            res = render(
                self.forward_func,
                obj,
                param=p,
                rescue=saver,
                transforms=transforms,
                steps=steps,
                lr=lr,
                thresholds=thresholds,
                seed=seed + chunk.start,
                progress=progress,
                additional_forward_args=additional_forward_args,
                recipe=chosen,  # the record itself: a custom Recipe has no registered name
                examples=None if examples is None else slot_examples(examples[chunk.start : chunk.stop], layout),
                autocast=autocast,
                channels_last=channels_last,
                transparency=transparency,
            )
            reached = self.activation(res.images, part, layout, additional_forward_args)
            for unit, lay, act in zip(part, layout, reached):
                results.append(self._pack(unit, lay, res, act))
        dead = [v.name for v in results if v.dead]
        if dead:
            how = "even with redirected ReLUs and restarts" if RescueConfig.of(rescue).steps else "with rescue off"
            warnings.warn(
                f"{len(dead)} of {len(results)} units never got a gradient, {how} (their images "
                f"stayed at the start; .dead is True): {', '.join(dead)}",
                stacklevel=2,
            )
        return results if is_many(neuron_selector) else results[0]

    def _top_examples(
        self, units: Sequence[Unit], dataset: Any, k: int, progress: bool, additional_forward_args: Any
    ) -> List[torch.Tensor]:
        """Each unit's ``k`` top dataset examples (one mining pass), for a dataset prior."""
        if dataset is None:
            raise ValueError(
                "this recipe needs natural examples of each unit: pass dataset= (mined "
                "for each unit's top examples) or examples= (one tensor per unit)"
            )
        mined = DatasetExamples(self.forward_func, self._layer_spec).collect(
            dataset,
            k=k,
            units=[u.selector for u in units],
            progress=progress,
            additional_forward_args=additional_forward_args,
        )
        return [mined.images(u.selector) for u in units]

    def activation(
        self,
        images: torch.Tensor,
        selectors: Sequence[Selector],
        layout: Optional[Sequence[SlotLayout]] = None,
        additional_forward_args: Any = None,
    ) -> List[Dict[str, torch.Tensor]]:
        """Each selector's value on its own images (no transforms, no gradient); without a
        layout, every selector on all the images."""
        units = [Unit.parse(s) for s in selectors]
        if layout is None:
            layout = [SlotLayout(list(range(len(images))))] * len(units)
        acts = activations(self.forward_func, self._layer_spec, images, additional_forward_args=additional_forward_args)
        return [
            {
                role: unit.value(acts[slots]).float().cpu() if slots else torch.zeros(0)
                for role, slots in lay.roles().items()
            }
            for unit, lay in zip(units, layout)
        ]

    def _pack(self, unit: Unit, lay: SlotLayout, res: Any, act: Dict) -> Visualization:
        imgs = res.images
        p = lay.positive[0]
        return Visualization(
            selector=unit.selector,
            layer=self.layer.key,
            positive=imgs[lay.positive],
            facets=imgs[lay.facets],
            negative=imgs[lay.negative] if lay.negative else None,
            activation=act,
            snapshots={k: v[p : p + 1] for k, v in res.snapshots.items()},
            history=res.history[:, p],
            dead=any(s in res.dead_slots for s in lay.maximized),
            transparency=None if res.transparency is None else res.transparency[lay.positive],
        )


def slot_examples(
    examples: Sequence[Optional[torch.Tensor]], layout: Sequence[SlotLayout]
) -> List[Optional[torch.Tensor]]:
    """Per batch slot, its unit's examples on the maximized slots (None on negative ones)."""
    out: List[Optional[torch.Tensor]] = [None] * sum(len(lay.maximized) + len(lay.negative) for lay in layout)
    for ex, lay in zip(examples, layout):
        for s in lay.maximized:
            out[s] = ex
    return out


def _rescue_config(rescue: Any, layout: Sequence[SlotLayout]) -> RescueConfig:
    """The render's rescue for these units: their maximized slots watched (a negative optimum
    stuck at a ReLU's floor is already optimal), one warning from ``visualize`` instead."""
    config = RescueConfig.of(rescue)
    slots = tuple(s for lay in layout for s in lay.maximized)
    return dataclasses.replace(config, warn=False, slots=slots)


def _scaled_diversity(layer: LayerLike, groups: List[List[int]]) -> Objective:
    """Diversity in units of the layer's activation scale, so one weight suits every layer."""
    div = _diversity_objective(layer, groups)

    def fn(ctx: Any) -> torch.Tensor:
        scale = ctx.acts(layer).detach().flatten(1).std(1).mean().clamp(min=1e-6)
        return div(ctx) * scale

    return Objective(fn, div.layers, div.name, div.min_batch)


def activations(
    forward_func: Union[nn.Module, Callable[..., torch.Tensor]],
    layer: LayerLike,
    inputs: torch.Tensor,
    batch_size: int = 64,
    additional_forward_args: Any = None,
    output: OutputKey = None,
) -> torch.Tensor:
    """A layer's activation for ``inputs`` (no gradient), with the forward stopped at the layer.

    ``additional_forward_args``: extra model arguments, as in Captum (a tensor with one row per
    input is batched along with the inputs, one with first dim 1 serves every input);
    ``output``: for ``layer=None``, which part of a structured model output (see
    :func:`captum_fv.modelinfo.select_output`).

    >>> acts = fv.activations(model, "_blocks.8", images)  # (N, 112, H/16, W/16)
    """
    module = module_of(forward_func)
    ref = resolve_layer(module, layer)
    dtype = model_dtype(module)
    device = next((p.device for p in module.parameters()), inputs.device) if module else inputs.device
    args, n = forward_args(additional_forward_args), inputs.shape[0]
    outs = []
    with model_guard(module), Capture(module, forward_func, [ref], output=output) as run, torch.no_grad():
        for i in range(0, n, batch_size):
            rows = batch_args(args, n, i, min(i + batch_size, n))
            outs.append(run(inputs[i : i + batch_size].to(device, dtype), rows)[ref.key])
    return torch.cat(outs)
