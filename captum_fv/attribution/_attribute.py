"""The entry point: attribute a unit's value on some inputs to their pixels, with its
completeness check, in Captum's vocabulary."""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..addressing import OUTPUT, LayerLike, LayerRef, resolve_layer
from ..hooks import Capture, batch_args, forward_args, model_guard
from ..items import check_batch
from ..modelinfo import OutputKey, infer_in_channels, model_device, model_dtype, module_of, unwrap
from ..precision import attribution_layout
from ..registry import get_attribution, list_attributions
from ..unit import Selector, Unit
from ._baselines import baseline_batch
from ._converge import converge
from ._methods import Adapter, NeuronMethod
from ._prefix import Prefix, output_model
from ._segments import check_cuts, join_segments, segment_steps, split_path, tile_kwargs


@dataclass
class Attribution:
    """Attributions (same shape as the inputs) for one unit, with its completeness check.

    ``activations``: the unit's value f(x) per example; ``baseline_activations``: f(baseline)
    (the mean over a baseline distribution for SHAP methods); ``delta``:
    |sum(attributions) - (f(x) - f(baseline))| per example, None for methods without that
    completeness property (gradients, guided backprop, ablation, conductance). GradientSHAP has it
    only in expectation over its random samples: expect a large delta with few ``n_samples``.
    """

    attributions: torch.Tensor
    delta: Optional[torch.Tensor]
    activations: torch.Tensor
    method: str
    baseline_activations: Optional[torch.Tensor] = None
    n_steps: Optional[torch.Tensor] = None  # path methods: the steps each example was integrated with

    @property
    def relative_delta(self) -> Optional[torch.Tensor]:
        """``delta / |f(x) - f(baseline)|``: below a few percent, the integral has converged."""
        if self.delta is None or self.baseline_activations is None:
            return None
        return self.delta / (self.activations - self.baseline_activations).abs().clamp(min=1e-12)


def attribute(
    forward_func: Union[nn.Module, Callable[..., torch.Tensor]],
    layer: LayerLike,
    inputs: torch.Tensor,
    neuron_selector: Selector,
    attribution: Union[str, Adapter] = "integrated_gradients",
    *,
    tolerance: Optional[float] = 0.05,
    max_steps: int = 800,
    path_cuts: Optional[Sequence[float]] = None,
    output: OutputKey = None,
    **captum_kwargs: Any,
) -> Attribution:
    """Attribute a unit's value on ``inputs`` to their pixels with a Captum method.

    Captum's ``NeuronX(forward_func, layer).attribute(inputs, neuron_selector, **captum_kwargs)``
    in one call, with a completeness check. ``attribution``: a registered name (see
    :func:`captum_fv.registry.list_attributions`), a Captum ``Neuron*`` class or an adapter;
    ``captum_kwargs`` (``baselines``, ``n_steps``, ``method``, ``internal_batch_size``,
    ``target``, ``additional_forward_args`` ...) go to Captum with Captum's meaning (extra
    arguments: the model runs as ``forward_func(x, *args)``; a tensor whose first dim is 1 serves
    every input). ``output``: for a unit of the model output (``layer=None``) of a model returning
    a tuple, dict or ``ModelOutput``, which part it is (see
    :func:`captum_fv.modelinfo.select_output`). The model is left as found: eval mode and frozen
    parameters only during the call.

    Path methods (integrated gradients) converge: an example whose relative delta is above
    ``tolerance`` is attributed again with the steps its delta calls for (at least twice as
    many, at most ``max_steps``) until it is within, and keeps its best result (``.n_steps``
    says how many each used). ``tolerance=None``: one Captum call with exactly ``n_steps``.

    ``path_cuts`` (path methods with one baseline per input): the straight path is cut at these
    fractions, e.g. ``(0.01, 0.05)``, and each segment integrated by Captum (all in one call) with
    its share of ``n_steps``; the attributions are summed. Same cost, more points where the
    gradient changes fastest: near a black baseline on the default model
    (``captum_fv.report.REPORT_REFINEMENT`` uses it; see ``attribution/_segments.py``).

    >>> a = attribute(model, "_blocks.8", images[:2], 12, n_steps=8, method="gausslegendre")
    >>> a.attributions.shape == images[:2].shape, a.relative_delta, a.n_steps
    (True, tensor([...]), tensor([...]))
    """
    _check_not_old_method(captum_kwargs.get("method"))
    cuts = check_cuts(path_cuts)
    if isinstance(attribution, str):
        name, adapter = attribution, get_attribution(attribution)
    else:  # a Captum Neuron* class or an adapter, unregistered
        name = getattr(attribution, "__name__", type(attribution).__name__)
        adapter = NeuronMethod(attribution) if inspect.isclass(attribution) else attribution
    if cuts and not getattr(adapter, "integrates", False):
        raise ValueError(f"path_cuts is for path methods (integrated gradients), not {name!r}; leave it out")
    forward_func = unwrap(forward_func)  # Captum's hooks need the eager, unwrapped model
    module = module_of(forward_func)
    ref = resolve_layer(module, layer)
    fn = Unit.parse(neuron_selector).value
    x = check_batch(inputs, infer_in_channels(module, default=None)).detach()
    if module is not None:
        x = x.to(model_device(module), model_dtype(module))
    if captum_kwargs.get("additional_forward_args") is not None:
        captum_kwargs["additional_forward_args"] = batch_args(
            forward_args(captum_kwargs["additional_forward_args"]), len(x)
        )
    args = forward_args(captum_kwargs.get("additional_forward_args"))
    if ref.name == OUTPUT:
        forward_func = output_model(forward_func, output)  # Captum sees the chosen tensor
    baselines = captum_kwargs.get("baselines")
    if baselines is None and getattr(adapter, "default_baselines", None) is not None:
        baselines = captum_kwargs["baselines"] = adapter.default_baselines(x)
    with model_guard(module):
        fx, layer_shape = _unit_values(forward_func, module, ref, fn, x, args)
        check = getattr(adapter, "check", None)
        if check is not None:
            check(neuron_selector, layer_shape)
        fb = base = None
        if _has_completeness(adapter, captum_kwargs):
            base = baseline_batch(baselines, x, getattr(adapter, "baseline_distribution", False))
            if base is not None:
                fb = _unit_values(forward_func, module, ref, fn, base, batch_args(args, len(base)))[0]
                if len(fb) != len(fx):
                    fb = fb.mean().expand_as(fx)  # a distribution: completeness holds on average

        # cut only a path with one baseline per input, whose f(baseline) gives the delta
        segments = len(cuts) + 1 if cuts and fb is not None and len(base) == len(x) else 1

        def run(rows: torch.Tensor, kw: Dict[str, Any]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
            with torch.enable_grad(), warnings.catch_warnings():
                # Captum announces that it sets requires_grad on the inputs and hooks on
                # non-linearities (both undone afterwards): expected here, so not shown.
                for text in EXPECTED_WARNINGS:
                    warnings.filterwarnings("ignore", message=text)
                inputs = attribution_layout(x[rows])
                if segments > 1:
                    n = kw.get("n_steps", adapter.default_steps)
                    inputs, starts = split_path(inputs, attribution_layout(base[rows]), cuts)
                    kw = {k: v for k, v in kw.items() if k != "baselines"}
                    kw = {**tile_kwargs(kw, int(rows.sum()), segments), "baselines": starts}
                    kw["n_steps"] = segment_steps(n, cuts)
                if ref.name != OUTPUT and module is not None and getattr(adapter, "truncates", False):
                    with Capture(module, forward_func, [ref]) as capture:
                        prefix = Prefix(capture, ref.key)
                        out = adapter(prefix, prefix.probe, neuron_selector, inputs, **kw)
                else:
                    target_layer = None if ref.name == OUTPUT else ref.module
                    out = adapter(forward_func, target_layer, neuron_selector, inputs, **kw)
            attr, delta = out if isinstance(out, tuple) else (out, None)
            if segments > 1:  # the segments' deltas do not add up: measured below on the sum
                attr, delta = join_segments(attr, segments), None
            attr = attr.detach().contiguous()  # the caller's layout, whatever the one computed in
            if delta is None and fb is not None:
                total = attr.flatten(1).sum(1).to(fx)
                delta = (total - (fx[rows] - fb[rows])).abs()
            return attr, None if delta is None else delta.detach().to(fx)

        every = torch.ones(len(x), dtype=torch.bool, device=x.device)
        attributions, delta = run(every, captum_kwargs)
        steps = None
        if getattr(adapter, "integrates", False):
            steps = torch.full_like(fx, captum_kwargs.get("n_steps", adapter.default_steps), dtype=torch.long)
            if tolerance is not None and delta is not None and fb is not None:
                # float32 sums carry rounding: no refining an example whose f(x) == f(baseline)
                allowed = tolerance * (fx - fb).abs() + 1e-5 * (fx.abs() + fb.abs()) + 1e-6
                steps = converge(run, captum_kwargs, attributions, delta, allowed, steps, max_steps)
            steps = steps.cpu()
    return Attribution(
        attributions=attributions,
        delta=delta,
        activations=fx,
        method=name,
        baseline_activations=fb,
        n_steps=steps,
    )


def _check_not_old_method(method: Any) -> None:
    """``method=`` is Captum's (an integration rule); a method *name* there is a mix-up."""
    if isinstance(method, str) and method in list_attributions():
        raise TypeError(
            f"method={method!r} is passed to Captum (integrated gradients' integration "
            f"rule, e.g. 'gausslegendre'); choose the attribution method with "
            f"attribution={method!r}"
        )


EXPECTED_WARNINGS = (
    r"Input Tensor \d+ did not already require gradients",
    r"Setting forward, backward hooks and attributes on non-linear",
    r"Setting backward hooks on ReLU activations",
)


def _has_completeness(adapter: Any, kwargs: Dict[str, Any]) -> bool:
    # Without the (input - baseline) factor attributions are not meant to sum to the difference.
    claims = bool(getattr(adapter, "completeness", False))
    return claims and kwargs.get("multiply_by_inputs", True) is not False


def _unit_values(
    forward_func: Any,
    module: Optional[nn.Module],
    ref: LayerRef,
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    args: Tuple[Any, ...] = (),
) -> Tuple[torch.Tensor, Tuple[int, ...]]:
    """The selector's value per example (no grad) and the layer's output shape without the batch
    dim. One forward of these inputs (and extra arguments); hooks gone on return."""
    with Capture(module, forward_func, [ref]) as run, torch.no_grad():
        acts = run(x, args)[ref.key]
    return fn(acts).detach().float(), tuple(acts.shape[1:])
