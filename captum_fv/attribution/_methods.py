"""Captum's neuron attribution methods behind one adapter, and the built-ins registered by name.

An adapter is called as ``adapter(forward_func, layer, selector, inputs, **kwargs)`` (``layer``: a
module, or None for the model output) and returns attributions, or ``(attributions, delta)``.
"""

from __future__ import annotations

import inspect
import math
import warnings
from typing import Any, Callable, Dict, Optional, Tuple, Type, Union

import torch
from captum.attr import (
    IntegratedGradients,
    NeuronConductance,
    NeuronDeconvolution,
    NeuronDeepLift,
    NeuronDeepLiftShap,
    NeuronFeatureAblation,
    NeuronGradient,
    NeuronGradientShap,
    NeuronGuidedBackprop,
    NeuronIntegratedGradients,
)
from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR
from torch import nn

from ..modelinfo import module_of
from ..registry import register_attribution, set_class_adapter
from ..unit import Selector, Unit
from ._baselines import grey_baselines, patch_mask, path_batch

Adapter = Callable[..., Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]]


class NeuronMethod:
    """Adapter that runs a Captum ``Neuron*`` class with captum-fv selectors.

    Called as ``adapter(forward_func, layer, selector, inputs, **kwargs)`` (``layer``: a module,
    or None for the model output); kwargs go to the Captum constructor or ``attribute()``,
    whichever takes them, with Captum's meaning (``method``: integrated gradients' integration
    rule, e.g. ``"gausslegendre"``).

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
        unit = Unit.parse(selector)
        if not unit.is_single(layer_shape):
            raise ValueError(
                f"{self.neuron_cls.__name__} attributes through one neuron, but {unit.title} "
                f"aggregates several (a channel is the mean over its {_positions(layer_shape)} "
                "positions; Captum would combine their gradients wrongly); pass a tuple such as "
                "(c, y, x), or use attribution='integrated_gradients'"
            )

    def __call__(
        self, forward_func: Any, layer: Optional[nn.Module], selector: Selector, inputs: torch.Tensor, **kwargs: Any
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, ...]]:
        for key, make in self.defaults.items():
            kwargs.setdefault(key, make(inputs))
        if kwargs.get("baselines") is None and self.default_baselines is not None:
            kwargs["baselines"] = self.default_baselines(inputs)
        unit = Unit.parse(selector)
        c = unit.channel if unit.kind == "channel" else None
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
                raise TypeError(
                    "attributing a unit of the model output through a Neuron method "
                    "needs forward_func to be an nn.Module"
                )
        if self.needs_module and not isinstance(forward_func, nn.Module):
            raise TypeError(
                f"{self.neuron_cls.__name__} hooks the model's non-linearities, so "
                "forward_func must be the nn.Module itself, not "
                f"{type(forward_func).__name__}"
            )
        if self.needs_target and kwargs.get("target") is None:
            raise ValueError(
                f"{self.neuron_cls.__name__} measures how much of the model output "
                "'target' flows through the neuron; pass target=<output index>, "
                "e.g. the predicted class"
            )
        if self.handles is not None:
            _warn_unhandled(forward_func, self.handles, self.neuron_cls.__name__)
        init, call = _split_kwargs(self.neuron_cls, kwargs, self.neuron_cls.__name__)
        sel = unit.neuron_selector(self.aggregates)
        captum = self.neuron_cls(forward_func, layer, **init)
        return captum.attribute(inputs, neuron_selector=sel, **call)


#: Activation modules a model may use; methods with per-module rules are checked against these.
_ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.Hardtanh,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
)


def _warn_unhandled(model: nn.Module, handles: Callable[[nn.Module], bool], name: str) -> None:
    """Warn once per call when Captum has no rule for some of the model's activations."""
    missing = sorted({type(m).__name__ for m in model.modules() if isinstance(m, _ACTIVATIONS) and not handles(m)})
    if missing:
        warnings.warn(
            f"{name} has no rule for {', '.join(missing)} in this model; gradients pass "
            "through them unchanged, so the result is closer to a plain gradient "
            "(check .delta where the method has one)",
            stacklevel=4,
        )


def _relu_only(module: nn.Module) -> bool:
    return isinstance(module, nn.ReLU)  # what Captum's guided backprop / deconvolution hook


def _deeplift_rule(module: nn.Module) -> bool:
    return type(module) in SUPPORTED_NON_LINEAR


def _first_line(doc: Optional[str]) -> str:
    lines = [line.strip() for line in (doc or "").strip().splitlines()]
    return lines[0] if lines else ""


def _positions(layer_shape: Tuple[int, ...]) -> int:
    return math.prod(layer_shape[1:]) if len(layer_shape) > 1 else 1


def _split_kwargs(cls: Type[Any], kwargs: Dict[str, Any], name: str) -> Tuple[Dict, Dict]:
    """Split kwargs between ``cls.__init__`` and ``cls.attribute``; unknown ones raise."""
    init_params = set(inspect.signature(cls.__init__).parameters)
    init_params -= {"self", "forward_func", "model", "layer"}
    call_params = set(inspect.signature(cls.attribute).parameters)
    call_params -= {"self", "inputs", "neuron_selector"}
    unknown = set(kwargs) - init_params - call_params
    if unknown:
        raise TypeError(
            f"{name} does not take {sorted(unknown)}; it takes "
            f"{sorted((init_params | call_params) - {'return_convergence_delta'})}"
        )
    init = {k: v for k, v in kwargs.items() if k in init_params}
    call = {k: v for k, v in kwargs.items() if k not in init_params}
    return init, call


def builtin_methods() -> Dict[str, NeuronMethod]:
    """Captum's neuron attribution methods under snake_case names, in registry order."""
    return {
        "integrated_gradients": NeuronMethod(
            NeuronIntegratedGradients,
            "Integrated Gradients: path integral of the unit's gradient from a baseline (default black) to the input.",
            output_cls=IntegratedGradients,
            completeness=True,
            defaults={"internal_batch_size": path_batch},
        ),
        "gradient": NeuronMethod(NeuronGradient, "Gradient of the unit with respect to each input pixel."),
        "gradient_shap": NeuronMethod(
            NeuronGradientShap,
            "GradientSHAP: expected gradients over random points between the "
            "input and a baseline distribution (default: grey levels).",
            completeness=True,
            default_baselines=grey_baselines,
            baseline_distribution=True,
        ),
        "deeplift": NeuronMethod(
            NeuronDeepLift,
            "DeepLIFT: activation differences from a baseline, propagated with rescale rules.",
            completeness=True,
            needs_module=True,
            handles=_deeplift_rule,
        ),
        "deeplift_shap": NeuronMethod(
            NeuronDeepLiftShap,
            "DeepLIFT SHAP: DeepLIFT averaged over a baseline distribution (default: grey levels).",
            completeness=True,
            needs_module=True,
            handles=_deeplift_rule,
            default_baselines=grey_baselines,
            baseline_distribution=True,
        ),
        "guided_backprop": NeuronMethod(
            NeuronGuidedBackprop,
            "Guided backpropagation: gradient with negative signals zeroed at every ReLU.",
            needs_module=True,
            handles=_relu_only,
        ),
        "deconvolution": NeuronMethod(
            NeuronDeconvolution,
            "Deconvolution: gradient passed through ReLUs by the sign of the signal coming back.",
            needs_module=True,
            handles=_relu_only,
        ),
        "conductance": NeuronMethod(
            NeuronConductance,
            "Conductance: how much of the output 'target' flows through one neuron (needs a tuple unit and target=).",
            aggregates=False,
            needs_target=True,
        ),
        "feature_ablation": NeuronMethod(
            NeuronFeatureAblation,
            "Feature ablation: change of the unit when each patch is set to the baseline (default 12x12 patches).",
            defaults={"feature_mask": patch_mask, "perturbations_per_eval": lambda x: 16},
        ),
    }


set_class_adapter(NeuronMethod)  # what register_attribution wraps a bare Captum class in
for _name, _method in builtin_methods().items():
    register_attribution(_name, _method)
del _name, _method
