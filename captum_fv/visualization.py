"""NeuronVisualization: the Captum-style entry point, ``(forward_func, layer)`` like Captum's
``NeuronAttribution`` family, producing a unit's positive optimum, diversity facets and negative
optimum in one batched optimization."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
from torch import nn

from . import param as param_lib
from .hooks import Capture, model_guard
from .addressing import LayerLike, resolve_layer
from .modelinfo import infer_in_channels, model_dtype, module_of
from .objectives.diversity import diversity as _diversity_objective
from .objectives import units as _units
from .objectives.base import Objective
from .render import render
from .selectors import Selector, as_callable, channel_index, describe, selector_objective

#: Default weight of the diversity term between facets (Gram cosine similarity is in [0, 1],
#: the unit objective is scaled by the unit's own typical activation; see ``_unit_scale``).
DIVERSITY_WEIGHT = 0.5


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

    @property
    def name(self) -> str:
        return describe(self.selector)


class NeuronVisualization:
    """Visualize what a unit of ``layer`` responds to, by optimizing input images.

    ``forward_func``: the model (or a function of the input, as in Captum); ``layer``: a module
    or its dotted name. Objectives are maximized: ``.positive`` is the image that excites the unit
    most, ``.negative`` the one that drives it lowest.

    >>> viz = NeuronVisualization(model, "_blocks.8")
    >>> v = viz.visualize(12, facets=4, negative=True)
    >>> v.positive.shape, v.facets.shape, v.activation["positive"]
    """

    def __init__(self, forward_func: Union[nn.Module, Callable[..., torch.Tensor]], layer: LayerLike):
        self.forward_func = forward_func
        self.module = module_of(forward_func)
        self.layer = resolve_layer(self.module, layer)
        self._layer_spec = layer if isinstance(layer, nn.Module) else self.layer.key

    def _objective(
        self, selectors: Sequence[Selector], facets: int, negative: bool, diversity_weight: float
    ) -> "tuple[Objective, List[Dict[str, List[int]]]]":
        per_unit = 1 + facets + int(negative)
        layout = []
        for i in range(len(selectors)):
            base = i * per_unit
            layout.append(
                {
                    "positive": [base],
                    "facets": list(range(base + 1, base + 1 + facets)),
                    "negative": [base + 1 + facets] if negative else [],
                }
            )
        spec = self._layer_spec
        pos_slots = [s for lay in layout for s in lay["positive"] + lay["facets"]]
        pos_sel = [sel for sel, lay in zip(selectors, layout) for _ in lay["positive"] + lay["facets"]]
        neg_slots = [s for lay in layout for s in lay["negative"]]
        neg_sel = [sel for sel, lay in zip(selectors, layout) for _ in lay["negative"]]
        obj = _selectors_objective(spec, pos_sel, pos_slots)
        if neg_slots:
            obj = obj - _selectors_objective(spec, neg_sel, neg_slots)
        if facets > 1 and diversity_weight:
            groups = [lay["facets"] for lay in layout]
            obj = obj + diversity_weight * _scaled_diversity(spec, groups)
        return obj, layout

    def visualize(
        self,
        neuron_selector: Union[Selector, Sequence[Selector]],
        *,
        size: Union[int, Sequence[int]] = 128,
        steps: int = 512,
        facets: int = 0,
        negative: bool = False,
        seed: int = 0,
        lr: float = 0.05,
        diversity_weight: float = DIVERSITY_WEIGHT,
        transforms: Any = None,
        fft: bool = True,
        decorrelate: bool = True,
        thresholds: Optional[Sequence[int]] = None,
        max_batch: int = 64,
        progress: bool = True,
    ) -> Union[Visualization, List[Visualization]]:
        """Optimize images for one selector, or for a list of them in shared batches.

        ``neuron_selector``: an int (channel), a tuple indexing one neuron, a callable, or a list
        of these; ``facets``: extra images pushed apart by a diversity term; ``negative``: also
        minimize the unit; ``max_batch``: most images optimized at once.
        """
        single = not isinstance(neuron_selector, list)
        selectors = [neuron_selector] if single else list(neuron_selector)
        if not selectors:
            raise ValueError("no neuron selectors given")
        if facets < 0:
            raise ValueError(f"facets must be >= 0, got {facets}")
        for sel in selectors:
            as_callable(sel)  # type errors now, not mid-optimization
        per_unit = 1 + facets + int(negative)
        chunk = max(1, max_batch // per_unit)
        results: List[Visualization] = []
        for start in range(0, len(selectors), chunk):
            part = selectors[start : start + chunk]
            obj, layout = self._objective(part, facets, negative, diversity_weight)
            p = param_lib.image(
                size,
                batch=len(part) * per_unit,
                channels=infer_in_channels(self.module),
                fft=fft,
                decorrelate=decorrelate,
                seed=seed + start,
            )
            res = render(
                self.forward_func, obj, param=p, transforms=transforms, steps=steps, lr=lr,
                thresholds=thresholds, seed=seed + start, progress=progress,
            )
            reached = self.activation(res.images, part, layout)
            for sel, lay, act in zip(part, layout, reached):
                results.append(self._pack(sel, lay, res, act))
        return results[0] if single else results

    def activation(
        self,
        images: torch.Tensor,
        selectors: Sequence[Selector],
        layout: Optional[Sequence[Dict[str, List[int]]]] = None,
    ) -> List[Dict[str, torch.Tensor]]:
        """Each selector's value on its own images (no transforms, no gradient)."""
        if layout is None:
            layout = [{"positive": list(range(len(images)))}] * len(selectors)
        acts = activations(self.forward_func, self._layer_spec, images)
        out = []
        for sel, lay in zip(selectors, layout):
            fn = as_callable(sel)
            out.append({role: fn(acts[slots]).float().cpu() if slots else torch.zeros(0)
                        for role, slots in lay.items()})
        return out

    def _pack(self, sel: Selector, lay: Dict[str, List[int]], res: Any, act: Dict) -> Visualization:
        imgs = res.images
        p = lay["positive"][0]
        return Visualization(
            selector=sel,
            layer=self.layer.key,
            positive=imgs[lay["positive"]],
            facets=imgs[lay["facets"]],
            negative=imgs[lay["negative"]] if lay["negative"] else None,
            activation=act,
            snapshots={k: v[p : p + 1] for k, v in res.snapshots.items()},
            history=res.history[:, p],
        )


def _selectors_objective(layer: LayerLike, selectors: Sequence[Selector], slots: List[int]) -> Objective:
    """One objective for many (selector, slot) pairs; channels are vectorized into one op."""
    chans = [channel_index(s) for s in selectors]
    if all(c is not None for c in chans):
        return _units.channel(layer, chans, batch=slots)
    return sum(selector_objective(layer, s, batch=[slot]) for s, slot in zip(selectors, slots))


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
) -> torch.Tensor:
    """A layer's activation for ``inputs`` (no gradient), with the forward stopped at the layer.

    >>> acts = fv.activations(model, "_blocks.8", images)  # (N, 112, H/16, W/16)
    """
    module = module_of(forward_func)
    ref = resolve_layer(module, layer)
    dtype = model_dtype(module)
    device = next((p.device for p in module.parameters()), inputs.device) if module else inputs.device
    outs = []
    with model_guard(module), Capture(module, forward_func, [ref]) as run, torch.no_grad():
        for i in range(0, inputs.shape[0], batch_size):
            outs.append(run(inputs[i : i + batch_size].to(device, dtype))[ref.key])
    return torch.cat(outs)
