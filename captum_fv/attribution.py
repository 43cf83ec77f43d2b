"""Attribution pairing: which pixels of a unit's examples drive it, computed by Captum.

The selector that drove a visualization drives the attribution too: an int channel becomes
``captum_fv.channel(c)`` (a callable Captum accepts), so Captum attributes the same spatial mean
the visualization maximized. Units of the model output (``layer=None``, an int class) pair with
Captum's ``IntegratedGradients(target=k)``.

>>> ex = DatasetExamples(model, "_blocks.8").collect(dataset)
>>> a = attribute(model, "_blocks.8", 12, ex.images(12), n_steps=64)
>>> a.delta / (a.activations - a.baseline_activations).abs()   # completeness check
>>> heat = overlay(ex.images(12)[0], a.attributions[0])        # (3, H, W) RGB in [0, 1]
"""
from __future__ import annotations

import inspect
import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Type, Union

import torch
from torch import nn

from .hooks import Capture, model_guard
from .addressing import OUTPUT, LayerLike, LayerRef, resolve_layer
from .mining import _check_batch
from .modelinfo import infer_in_channels, model_device, model_dtype, module_of
from .selectors import ChannelSelector, Selector, as_callable, channel_index, describe

Adapter = Callable[..., Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]]


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


# --------------------------------------------------------------------------- adapters


class NeuronMethod:
    """Adapter that runs a Captum ``Neuron*`` class with captum-fv selectors.

    Called as ``adapter(forward_func, layer, selector, inputs, **kwargs)`` (``layer``: a module,
    or None for the model output); kwargs go to the Captum constructor or ``attribute()``,
    whichever takes them (``integration_method`` is Captum's ``method``).

    ``output_cls``: the Captum class used for an int unit of the model output (``target=k``);
    ``completeness``: attributions sum to f(x) - f(baseline), so a delta is computed;
    ``aggregates``: the method accepts selectors that aggregate many neurons (channels,
    callables); ``needs_module``: Captum hooks the model's modules, so it must be an nn.Module;
    ``needs_target``: a model-output index ``target`` is required; ``default_baselines``:
    inputs -> baselines when none are given; ``baseline_distribution``: baselines are a
    distribution (SHAP), f(baseline) is their mean; ``defaults``: other default kwargs;
    ``handles``: for methods with per-module rules, whether Captum has a rule for an activation
    module (others get a warning: there the method silently falls back to the plain gradient).
    """

    def __init__(
        self,
        neuron_cls: Type[Any],
        description: Optional[str] = None,
        *,
        output_cls: Optional[Type[Any]] = None,
        completeness: bool = False,
        aggregates: bool = True,
        needs_module: bool = False,
        needs_target: bool = False,
        default_baselines: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        baseline_distribution: bool = False,
        defaults: Optional[Dict[str, Callable[[torch.Tensor], Any]]] = None,
        handles: Optional[Callable[[nn.Module], bool]] = None,
    ) -> None:
        self.neuron_cls = neuron_cls
        self.output_cls = output_cls
        self.description = description or _first_line(neuron_cls.__doc__) or neuron_cls.__name__
        self.completeness = completeness
        self.aggregates = aggregates
        self.needs_module = needs_module
        self.needs_target = needs_target
        self.default_baselines = default_baselines
        self.baseline_distribution = baseline_distribution
        self.defaults = dict(defaults or {})
        self.handles = handles

    def __repr__(self) -> str:
        return f"NeuronMethod({self.neuron_cls.__name__})"

    @property
    def integrates(self) -> bool:
        """Whether the method integrates along a path in ``n_steps`` steps with a completeness
        check, so more steps bring its delta down."""
        return self.completeness and "n_steps" in inspect.signature(self.neuron_cls.attribute).parameters

    @property
    def default_steps(self) -> int:
        """Captum's default ``n_steps`` for this method."""
        return inspect.signature(self.neuron_cls.attribute).parameters["n_steps"].default

    @property
    def truncates(self) -> bool:
        """Whether the network past the layer can be skipped: the method needs only the unit's
        value and its input gradient (no per-module rules, no model-output target)."""
        return not self.needs_module and not self.needs_target

    def check(self, selector: Selector, layer_shape: Tuple[int, ...]) -> None:
        """Raise if this method cannot attribute ``selector`` on a layer of this output shape."""
        if self.aggregates:
            return
        c = channel_index(selector)
        single = (c is not None and len(layer_shape) == 1) or (
            isinstance(selector, tuple) and all(isinstance(i, numbers.Integral) for i in selector)
        )
        if not single:
            raise ValueError(
                f"{self.neuron_cls.__name__} attributes through one neuron, but {describe(selector)} "
                f"aggregates several (a channel is the mean over its {_positions(layer_shape)} "
                "positions; Captum would combine their gradients wrongly); pass a tuple such as "
                "(c, y, x), or use method='integrated_gradients'"
            )

    def __call__(self, forward_func: Any, layer: Optional[nn.Module], selector: Selector,
                 inputs: torch.Tensor, **kwargs: Any) -> Union[torch.Tensor, Tuple[torch.Tensor, ...]]:
        if "integration_method" in kwargs:
            kwargs["method"] = kwargs.pop("integration_method")
        for key, make in self.defaults.items():
            kwargs.setdefault(key, make(inputs))
        if kwargs.get("baselines") is None and self.default_baselines is not None:
            kwargs["baselines"] = self.default_baselines(inputs)
        c = channel_index(selector)
        if layer is None and c is not None and self.output_cls is not None:
            # A class logit: Captum's own IntegratedGradients(target=k), with its own delta.
            init, call = _split_kwargs(self.output_cls, kwargs, self.neuron_cls.__name__)
            call.pop("target", None)
            attr, delta = self.output_cls(forward_func, **init).attribute(
                inputs, target=c, return_convergence_delta=True, **call
            )
            return attr, delta.abs()
        if layer is None:
            layer = module_of(forward_func)  # hooking the model itself exposes its output
            if layer is None:
                raise TypeError("attributing a unit of the model output through a Neuron method "
                                "needs forward_func to be an nn.Module")
        if self.needs_module and not isinstance(forward_func, nn.Module):
            raise TypeError(f"{self.neuron_cls.__name__} hooks the model's non-linearities, so "
                            "forward_func must be the nn.Module itself, not "
                            f"{type(forward_func).__name__}")
        if self.needs_target and kwargs.get("target") is None:
            raise ValueError(f"{self.neuron_cls.__name__} measures how much of the model output "
                             "'target' flows through the neuron; pass target=<output index>, "
                             "e.g. the predicted class")
        if self.handles is not None:
            _warn_unhandled(forward_func, self.handles, self.neuron_cls.__name__)
        init, call = _split_kwargs(self.neuron_cls, kwargs, self.neuron_cls.__name__)
        sel = _captum_selector(selector, self.aggregates)
        captum = self.neuron_cls(forward_func, layer, **init)
        return captum.attribute(inputs, neuron_selector=sel, **call)


class _Prefix(nn.Module):
    """The network up to a layer, as a model whose output is that layer's activation.

    Captum hooks ``probe`` (an identity on the captured activation), so a neuron method sees the
    same unit values and gradients as on the full model while the forward stops at the layer.
    """

    def __init__(self, run: Capture, key: str) -> None:
        super().__init__()
        object.__setattr__(self, "_run", run)  # not a submodule: the model is not ours to own
        self.key = key
        self.probe = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.probe(self._run(x)[self.key])


#: Activation modules a model may use; methods with per-module rules are checked against these.
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
                nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.Softplus)


def _warn_unhandled(model: nn.Module, handles: Callable[[nn.Module], bool], name: str) -> None:
    """Warn once per call when Captum has no rule for some of the model's activations."""
    missing = sorted({type(m).__name__ for m in model.modules()
                      if isinstance(m, _ACTIVATIONS) and not handles(m)})
    if missing:
        warnings.warn(f"{name} has no rule for {', '.join(missing)} in this model; gradients pass "
                      "through them unchanged, so the result is closer to a plain gradient "
                      "(check .delta where the method has one)", stacklevel=4)


def _relu_only(module: nn.Module) -> bool:
    return isinstance(module, nn.ReLU)  # what Captum's guided backprop / deconvolution hook


def _deeplift_rule(module: nn.Module) -> bool:
    from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR

    return type(module) in SUPPORTED_NON_LINEAR


def _first_line(doc: Optional[str]) -> str:
    lines = [line.strip() for line in (doc or "").strip().splitlines()]
    return lines[0] if lines else ""


def _positions(layer_shape: Tuple[int, ...]) -> int:
    return math.prod(layer_shape[1:]) if len(layer_shape) > 1 else 1


def _captum_selector(selector: Selector, aggregates: bool) -> Any:
    """The selector in Captum's terms: channels as ``channel(c)``, tuples as Captum indexes."""
    c = channel_index(selector)
    if c is not None:
        return ChannelSelector(c) if aggregates else c  # not aggregating: a 1-D layer's neuron
    if isinstance(selector, tuple):
        return selector  # Captum's tuple semantics are ours (slices summed)
    return as_callable(selector)  # shape-checked wrapper, so errors name the selector


def _split_kwargs(cls: Type[Any], kwargs: Dict[str, Any], name: str) -> Tuple[Dict, Dict]:
    """Split kwargs between ``cls.__init__`` and ``cls.attribute``; unknown ones raise."""
    init_params = set(inspect.signature(cls.__init__).parameters)
    init_params -= {"self", "forward_func", "model", "layer"}
    call_params = set(inspect.signature(cls.attribute).parameters)
    call_params -= {"self", "inputs", "neuron_selector"}
    unknown = set(kwargs) - init_params - call_params
    if unknown:
        raise TypeError(f"{name} does not take {sorted(unknown)}; it takes "
                        f"{sorted((init_params | call_params) - {'return_convergence_delta'})}")
    init = {k: v for k, v in kwargs.items() if k in init_params}
    call = {k: v for k, v in kwargs.items() if k not in init_params}
    return init, call


def path_batch(inputs: torch.Tensor) -> int:
    """Path points per forward in integrated gradients: bounds memory whatever n_steps x
    examples. On a CPU, small batches (about 8 at 128 px) are as fast per point as large ones
    and stay in cache; a GPU wants them large."""
    if inputs.device.type != "cpu":
        return 64
    return max(1, min(64, (1 << 17) // max(1, inputs.shape[-1] * inputs.shape[-2])))


def grey_baselines(inputs: torch.Tensor, levels: int = 4) -> torch.Tensor:
    """A baseline distribution for SHAP methods: flat images at evenly spaced grey levels."""
    values = torch.linspace(0, 1, levels, device=inputs.device, dtype=inputs.dtype)
    flat = values.view(-1, *([1] * (inputs.dim() - 1)))
    return flat.expand(levels, *inputs.shape[1:]).contiguous()


def patch_mask(inputs: torch.Tensor, grid: int = 12) -> torch.Tensor:
    """A feature mask grouping pixels into a ``grid`` x ``grid`` of patches shared by channels,
    so feature ablation costs about grid**2 forwards, not one per pixel."""
    h, w = inputs.shape[-2:]
    ys = torch.arange(h, device=inputs.device) * min(grid, h) // h
    xs = torch.arange(w, device=inputs.device) * min(grid, w) // w
    return (ys[:, None] * min(grid, w) + xs[None, :]).expand(1, 1, h, w)


def _builtin_methods() -> Dict[str, NeuronMethod]:
    """Captum's neuron attribution methods under snake_case names, in registry order."""
    from captum.attr import (
        IntegratedGradients, NeuronConductance, NeuronDeconvolution, NeuronDeepLift,
        NeuronDeepLiftShap, NeuronFeatureAblation, NeuronGradient, NeuronGradientShap,
        NeuronGuidedBackprop, NeuronIntegratedGradients,
    )

    return {
        "integrated_gradients": NeuronMethod(
            NeuronIntegratedGradients, "Integrated Gradients: path integral of the unit's gradient "
            "from a baseline (default black) to the input.", output_cls=IntegratedGradients,
            completeness=True, defaults={"internal_batch_size": path_batch}),
        "gradient": NeuronMethod(
            NeuronGradient, "Gradient of the unit with respect to each input pixel."),
        "gradient_shap": NeuronMethod(
            NeuronGradientShap, "GradientSHAP: expected gradients over random points between the "
            "input and a baseline distribution (default: grey levels).", completeness=True,
            default_baselines=grey_baselines, baseline_distribution=True),
        "deeplift": NeuronMethod(
            NeuronDeepLift, "DeepLIFT: activation differences from a baseline, propagated with "
            "rescale rules.", completeness=True, needs_module=True, handles=_deeplift_rule),
        "deeplift_shap": NeuronMethod(
            NeuronDeepLiftShap, "DeepLIFT SHAP: DeepLIFT averaged over a baseline distribution "
            "(default: grey levels).", completeness=True, needs_module=True, handles=_deeplift_rule,
            default_baselines=grey_baselines, baseline_distribution=True),
        "guided_backprop": NeuronMethod(
            NeuronGuidedBackprop, "Guided backpropagation: gradient with negative signals zeroed "
            "at every ReLU.", needs_module=True, handles=_relu_only),
        "deconvolution": NeuronMethod(
            NeuronDeconvolution, "Deconvolution: gradient passed through ReLUs by the sign of the "
            "signal coming back.", needs_module=True, handles=_relu_only),
        "conductance": NeuronMethod(
            NeuronConductance, "Conductance: how much of the output 'target' flows through one "
            "neuron (needs a tuple unit and target=).", aggregates=False, needs_target=True),
        "feature_ablation": NeuronMethod(
            NeuronFeatureAblation, "Feature ablation: change of the unit when each patch is set to "
            "the baseline (default 12x12 patches).",
            defaults={"feature_mask": patch_mask, "perturbations_per_eval": lambda x: 16}),
    }


# --------------------------------------------------------------------------- entry point


def attribute(
    forward_func: Union[nn.Module, Callable[..., torch.Tensor]],
    layer: LayerLike,
    selector: Selector,
    inputs: torch.Tensor,
    method: Union[str, Adapter] = "integrated_gradients",
    *,
    tolerance: Optional[float] = 0.05,
    max_steps: int = 800,
    **kwargs: Any,
) -> Attribution:
    """Attribute a unit's value on ``inputs`` to their pixels with a Captum method.

    ``method``: a registered name (see :func:`captum_fv.registry.list_attributions`) or an
    adapter; kwargs (``baselines``, ``n_steps``, ``internal_batch_size``, ``target`` ...) go to
    Captum. The model is left as found: eval mode and frozen parameters only during the call.

    Path methods (integrated gradients) converge: an example whose relative delta is above
    ``tolerance`` is attributed again with the steps its delta calls for (at least twice as
    many, at most ``max_steps``) until it is within, and keeps its best result (``.n_steps``
    says how many each used). ``tolerance=None``: one Captum call with exactly ``n_steps``.

    >>> a = attribute(model, "_blocks.8", 12, images, n_steps=64)
    >>> a.attributions.shape == images.shape, a.relative_delta, a.n_steps
    """
    from .registry import get_attribution  # the registry imports this module's methods

    name = method if isinstance(method, str) else getattr(method, "__name__", type(method).__name__)
    if isinstance(method, str):
        adapter = get_attribution(method)
    else:  # a Captum Neuron* class or an adapter, unregistered
        adapter = NeuronMethod(method) if inspect.isclass(method) else method
    module = module_of(forward_func)
    ref = resolve_layer(module, layer)
    fn = as_callable(selector)
    x = _check_batch(inputs, infer_in_channels(module, default=None)).detach()
    if module is not None:
        x = x.to(model_device(module), model_dtype(module))
    baselines = kwargs.get("baselines")
    if baselines is None and getattr(adapter, "default_baselines", None) is not None:
        baselines = kwargs["baselines"] = adapter.default_baselines(x)
    with model_guard(module):
        fx, layer_shape = _unit_values(forward_func, module, ref, fn, x)
        check = getattr(adapter, "check", None)
        if check is not None:
            check(selector, layer_shape)
        fb = None
        if _has_completeness(adapter, kwargs):
            base = _baseline_batch(baselines, x, getattr(adapter, "baseline_distribution", False))
            if base is not None:
                fb = _unit_values(forward_func, module, ref, fn, base)[0]
                if len(fb) != len(fx):
                    fb = fb.mean().expand_as(fx)  # a distribution: completeness holds on average

        def run(rows: torch.Tensor, kw: Dict[str, Any]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
            with torch.enable_grad(), warnings.catch_warnings():
                # Captum announces that it sets requires_grad on the inputs and hooks on
                # non-linearities (both undone afterwards): expected here, so not shown.
                for text in _EXPECTED_WARNINGS:
                    warnings.filterwarnings("ignore", message=text)
                if ref.name != OUTPUT and module is not None and getattr(adapter, "truncates", False):
                    with Capture(module, forward_func, [ref]) as capture:
                        prefix = _Prefix(capture, ref.key)
                        out = adapter(prefix, prefix.probe, selector, x[rows], **kw)
                else:
                    target_layer = None if ref.name == OUTPUT else ref.module
                    out = adapter(forward_func, target_layer, selector, x[rows], **kw)
            attr, delta = out if isinstance(out, tuple) else (out, None)
            if delta is None and fb is not None:
                total = attr.detach().flatten(1).sum(1).to(fx)
                delta = (total - (fx[rows] - fb[rows])).abs()
            return attr.detach(), None if delta is None else delta.detach().to(fx)

        every = torch.ones(len(x), dtype=torch.bool, device=x.device)
        attributions, delta = run(every, kwargs)
        steps = None
        if getattr(adapter, "integrates", False):
            steps = torch.full_like(fx, kwargs.get("n_steps", adapter.default_steps), dtype=torch.long)
            if tolerance is not None and delta is not None and fb is not None:
                # float32 sums carry rounding: no refining an example whose f(x) == f(baseline)
                allowed = tolerance * (fx - fb).abs() + 1e-5 * (fx.abs() + fb.abs()) + 1e-6
                steps = _converge(run, kwargs, attributions, delta, allowed, steps, max_steps)
            steps = steps.cpu()
    return Attribution(
        attributions=attributions,
        delta=delta,
        activations=fx,
        method=name,
        baseline_activations=fb,
        n_steps=steps,
    )


def _converge(
    run: Callable[[torch.Tensor, Dict[str, Any]], Tuple[torch.Tensor, torch.Tensor]],
    kwargs: Dict[str, Any], attributions: torch.Tensor, delta: torch.Tensor,
    allowed: torch.Tensor, steps: torch.Tensor, max_steps: int,
) -> torch.Tensor:
    """Redo the examples whose delta exceeds ``allowed`` with more path steps until it does not
    or they reach ``max_steps``; each keeps its best result (``attributions`` and ``delta`` are
    updated in place). Returns the steps each kept result used."""
    tried = steps
    while True:
        rows = (delta > allowed) & (tried < max_steps)
        if not rows.any():
            return steps
        # Gauss-Legendre's error on these piecewise-smooth paths falls about as steps**-2: aim
        # at the tolerance at once (with a margin), at least doubling; whole path batches.
        aim = torch.maximum(tried * (delta / allowed).sqrt() * 1.25, 2.0 * tried)
        target = ((aim.ceil().long() + 7) // 8 * 8).clamp(max=max_steps)
        for n in target[rows].unique().tolist():
            group = rows & (target == n)
            again, again_delta = run(group, {**_rows_of(kwargs, group, len(delta)), "n_steps": n})
            better = group.clone()
            better[group] = again_delta < delta[group]
            attributions[better] = again[better[group]]
            delta[better] = again_delta[better[group]]
            steps = torch.where(better, n, steps)
        tried = torch.where(rows, target, tried)


def _rows_of(kwargs: Dict[str, Any], rows: torch.Tensor, n: int) -> Dict[str, Any]:
    """kwargs for a subset of the examples: per-example tensors and lists (baselines, target,
    additional_forward_args) cut to those rows; shared values as they are."""
    def cut(v: Any) -> Any:
        if torch.is_tensor(v) and v.dim() > 0 and len(v) == n and n > 1:
            return v[rows.to(v.device)]
        if isinstance(v, list) and len(v) == n and n > 1:
            return [item for item, keep in zip(v, rows.tolist()) if keep]
        if isinstance(v, tuple):
            return tuple(cut(item) for item in v)
        return v
    return {k: cut(v) for k, v in kwargs.items()}


_EXPECTED_WARNINGS = (
    r"Input Tensor \d+ did not already require gradients",
    r"Setting forward, backward hooks and attributes on non-linear",
    r"Setting backward hooks on ReLU activations",
)


def _has_completeness(adapter: Any, kwargs: Dict[str, Any]) -> bool:
    # Without the (input - baseline) factor attributions are not meant to sum to the difference.
    claims = bool(getattr(adapter, "completeness", False))
    return claims and kwargs.get("multiply_by_inputs", True) is not False


def _unit_values(
    forward_func: Any, module: Optional[nn.Module], ref: LayerRef,
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
) -> Tuple[torch.Tensor, Tuple[int, ...]]:
    """The selector's value per example (no grad) and the layer's output shape without the batch
    dim. One forward of these inputs; hooks gone on return."""
    with Capture(module, forward_func, [ref]) as run, torch.no_grad():
        acts = run(x)[ref.key]
    return fn(acts).detach().float(), tuple(acts.shape[1:])


def _baseline_batch(baselines: Any, x: torch.Tensor, distribution: bool) -> Optional[torch.Tensor]:
    """The baselines as an input batch for f(baseline); None when they cannot be evaluated."""
    if baselines is None:
        return torch.zeros_like(x)  # Captum's default
    if isinstance(baselines, numbers.Number):
        return torch.full_like(x, float(baselines))
    if not torch.is_tensor(baselines):
        return None  # a callable or a tuple of baselines: no single f(baseline) to report
    b = baselines.to(x)
    if distribution or b.shape == x.shape:
        return b
    return b.expand_as(x) if b.shape[0] == 1 else None


# --------------------------------------------------------------------------- heat maps

# ColorBrewer sequential ramps: the anchors of matplotlib's Blues, Greens and Reds, which Captum
# uses for 'absolute_value', 'positive' and 'negative'; 'all' is Captum's red-white-green.
_RAMPS: Dict[str, Sequence[str]] = {
    "absolute_value": ("f7fbff", "deebf7", "c6dbef", "9ecae1", "6baed6", "4292c6", "2171b5", "08519c", "08306b"),
    "positive": ("f7fcf5", "e5f5e0", "c7e9c0", "a1d99b", "74c476", "41ab5d", "238b45", "006d2c", "00441b"),
    "negative": ("fff5f0", "fee0d2", "fcbba1", "fc9272", "fb6a4a", "ef3b2c", "cb181d", "a50f15", "67000d"),
    "all": ("ff0000", "ffffff", "008000"),
}


def _colormap(t: torch.Tensor, sign: str) -> torch.Tensor:
    """Values in [0, 1] (H, W) to RGB (3, H, W) by linear interpolation between the anchors."""
    anchors = torch.tensor([[int(h[i : i + 2], 16) / 255 for i in (0, 2, 4)] for h in _RAMPS[sign]])
    pos = t.clamp(0, 1) * (len(anchors) - 1)
    lo = pos.floor().long().clamp(max=len(anchors) - 2)
    frac = (pos - lo)[..., None]
    rgb = anchors[lo] * (1 - frac) + anchors[lo + 1] * frac
    return rgb.permute(2, 0, 1)


def normalize_attribution(attribution: torch.Tensor, sign: str = "absolute_value",
                          outlier_perc: float = 2.0) -> torch.Tensor:
    """Captum's heat-map scaling: sum over channels, keep ``sign``, divide by the value below
    which ``100 - outlier_perc`` % of the total |attribution| lies, clip to [-1, 1]."""
    if sign not in _RAMPS:
        raise ValueError(f"sign must be one of {sorted(_RAMPS)}, got {sign!r}")
    a = attribution.detach().float().cpu()
    a = a.sum(0) if a.dim() == 3 else a
    kept = {"positive": a.clamp(min=0), "negative": a.clamp(max=0), "absolute_value": a.abs()}
    a = kept.get(sign, a)
    values = a.abs().flatten().sort().values
    cum = values.cumsum(0)
    if len(cum) == 0 or float(cum[-1]) == 0:
        return torch.zeros_like(a)  # nothing to show (Captum would refuse to divide by zero)
    threshold = values[int((cum >= cum[-1] * 0.01 * (100 - outlier_perc)).nonzero()[0, 0])]
    return (a / (-threshold if sign == "negative" else threshold)).clamp(-1, 1)


def overlay(image: torch.Tensor, attribution: torch.Tensor, alpha: float = 0.5,
            sign: str = "absolute_value", outlier_perc: float = 2.0) -> torch.Tensor:
    """Captum's 'blended_heat_map' as an image: the heat map over the greyscaled image.

    ``image`` (C, H, W) in [0, 1] and ``attribution`` (C, H, W) or (H, W), or batches of both;
    ``sign``: 'absolute_value' (Blues), 'positive' (Greens), 'negative' (Reds) or 'all'
    (red-white-green). Returns RGB (3, H, W) (or (N, 3, H, W)) in [0, 1].

    >>> rgb = overlay(images[0], a.attributions[0], sign="positive")
    >>> rgb.permute(1, 2, 0).numpy()  # for plt.imshow
    """
    if image.dim() == 4:
        pairs = zip(image, attribution)
        return torch.stack([overlay(i, a, alpha, sign, outlier_perc) for i, a in pairs])
    if image.dim() != 3:
        raise ValueError(f"image must be (C, H, W) or (N, C, H, W), got shape {tuple(image.shape)}")
    if tuple(attribution.shape[-2:]) != tuple(image.shape[-2:]):
        raise ValueError(f"attribution shape {tuple(attribution.shape)} does not match the image's "
                         f"{tuple(image.shape)} in height and width")
    norm = normalize_attribution(attribution, sign, outlier_perc)
    heat = _colormap((norm + 1) / 2 if sign == "all" else norm, sign)
    grey = image.detach().float().cpu().mean(0)
    lo, hi = grey.min(), grey.max()
    grey = (grey - lo) / (hi - lo) if hi > lo else torch.zeros_like(grey)  # imshow's autoscale
    return ((1 - alpha) * grey[None].expand(3, -1, -1) + alpha * heat).clamp(0, 1)
