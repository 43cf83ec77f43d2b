"""Recipes: what a render is made of, by name, decided in this one place.

A :class:`Recipe` bundles a parameterization factory, the transforms, the optimizer and its
learning rate, and whether it needs natural examples of the unit (a dataset prior). Explicit
``param=``, ``transforms=``, ``optimizer=`` and ``lr=`` given to a render override the recipe's.

* ``"fourier"`` (the default for units): Fourier 1/f basis with colour decorrelation, the standard
  transforms, Adam(0.05);
* ``"maco"`` (Fel et al., NeurIPS 2023): phase-only Fourier with a fixed natural magnitude
  spectrum, NAdam, :data:`MACO_CROPS` random crops per image and step (the default for classes);
* ``"aligned"`` (VITAL, Gorgun et al., ICCV 2025): "fourier" plus a cost pulling the image's
  sorted per-channel activations, at the unit's layer and a few earlier ones, towards those of
  the unit's top dataset examples (``dataset=`` or ``examples=``).

>>> sorted(fv.recipes())
['aligned', 'fourier', 'maco']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Union

import torch
from torch import nn

from . import param as param_lib
from . import transforms as tf
from .addressing import OUTPUT, LayerLike, resolve_layer
from .hooks import Capture, batch_args, forward_args, model_guard
from .modelinfo import model_device, model_dtype
from .objectives.base import Objective
from .objectives.prior import feature_prior, resample_sorted, sorted_reference

Size = Union[int, Sequence[int]]
OptimizerFactory = Callable[[Sequence[torch.Tensor]], torch.optim.Optimizer]

#: The recipe of a render that names none (for units; see :func:`default_recipe`).
DEFAULT = "fourier"
#: The recipe each objective kind gets when a render names none (see :func:`default_recipe`),
#: chosen on ``benchmarks/bench_quality.py`` (README, "Quality"). Classes: the recipe that needs no
#: dataset and meets every class goal (own top-1 16/16, top-5 at least 12/16 on EfficientNet-Lite1
#: and -Lite2 at both input sizes, at least 12/16 named blind): "maco" (16/16; top-5 16 and 16 at
#: 224 px, 16 and 13 at native size; 16/16 blind; "fourier": 10/16 blind). Units: among the recipes
#: that need no dataset and reach the best natural crop on every benchmarked unit, the cheapest
#: per step, since a whole-layer audit spends most of its time here: "fourier" (1.0x; "maco" 2.0x,
#: though only its pictures have a natural high-frequency energy; and on MaCo pictures alone the
#: trust block calls 1 of 4 planted units off-natural, on Fourier ones 4 of 4, which is why a
#: report of a ``trust_probe`` recipe adds a Fourier probe: then 4 of 4).
DEFAULTS: Dict[str, str] = {"class": "maco", "unit": DEFAULT}
#: Weight of the "aligned" prior, in units of the unit layer's typical activation on its examples.
PRIOR_WEIGHT = 1.0


class ParamSpec(NamedTuple):
    """What a parameterization factory is asked for."""

    size: Size
    batch: int
    channels: int
    seed: int
    fft: bool = True
    decorrelate: bool = True


@dataclass(frozen=True)
class Recipe:
    """A named way to render: ``param(spec)`` builds the image parameterization,
    ``transforms(side)`` the augmentation for images of that side, ``optimizer(params, lr)``
    the optimizer; ``needs_examples``: the recipe adds a prior from natural examples, weighted by
    ``prior_weight``; ``transparency``: reports draw its pictures' transparency maps (MaCo's
    way of showing which pixels the objective used); ``trust_probe``: its pictures are held to
    natural statistics, so a report's trust block also probes each unit with a plain Fourier
    render (a hidden pathway shows there, README "Quality")."""

    name: str
    description: str
    param: Callable[[ParamSpec], nn.Module]
    transforms: Callable[[int], Callable]
    optimizer: Callable[[Sequence[torch.Tensor], float], torch.optim.Optimizer]
    lr: float
    needs_examples: bool = False
    prior_weight: float = 0.0
    transparency: bool = False
    trust_probe: bool = False


def _fourier_param(spec: ParamSpec) -> nn.Module:
    return param_lib.image(
        spec.size, batch=spec.batch, channels=spec.channels, fft=spec.fft, decorrelate=spec.decorrelate, seed=spec.seed
    )


def _maco_param(spec: ParamSpec) -> nn.Module:
    if spec.channels != 3:
        raise ValueError(
            f"recipe 'maco' draws RGB images (its default spectrum is that of colour photos) but the model "
            f"takes {spec.channels} input channels: use recipe='fourier', or fv.render(..., param=fv.param.maco("
            "size, magnitude=fv.param.magnitude_spectrum(your_images, decorrelate=False), decorrelate=False))"
        )
    if not (spec.fft and spec.decorrelate):
        raise ValueError(
            "recipe 'maco' is a Fourier phase with decorrelated colour: fft=False and decorrelate=False do not "
            "apply to it (use recipe='fourier' for those)"
        )
    return param_lib.maco(spec.size, batch=spec.batch, seed=spec.seed)


#: Crops per slot and step for "maco", all in one forward (the paper uses more; this is a CPU budget),
#: each a fraction of the image's side drawn from :data:`MACO_SCALE`. Zoomed-in crops cost early
#: units their strength: 16 channels of ``_blocks.3`` (128 px, 128 steps; activation / best natural
#: crop, minimum over channels): 4 crops at 0.25-1 0.86, 4 at 0.5-1 1.11, 4 at 0.75-1 1.41,
#: 2 at 0.5-1 0.88, 2 at 0.75-1 1.20 (58% of the 4-crop time); 64 channels of
#: ``_blocks.8._depthwise_conv`` (96 px, 96 steps): 4 at 0.25-1 left 4 below their best crop,
#: 2 or 4 at 0.75-1 none.
MACO_CROPS = 2
MACO_SCALE = (0.75, 1.0)
#: NAdam's learning rate on the phases (radians) for "maco". The paper's 1.0 suits its 1000+ steps on
#: large images. Here, activation / best natural crop on 16 channels of ``_blocks.8`` (96 px,
#: 96 steps, 2 crops of 0.75-1), median (minimum): lr 0.1 3.51 (1.67), 0.2 3.62 (1.88), 0.3 3.54
#: (1.78), 0.5 3.22 (1.70); earlier, with 4 crops of 0.25-1 on 8 of them, 1.0 left one channel below
#: its best crop and 3.0 failed (-0.04).
MACO_LR = 0.2


def _maco_transforms(side: int) -> Callable:
    return tf.crops(MACO_CROPS, scale=MACO_SCALE, noise=0.05)  # resized back to the image's own side


def _adam(params: Sequence[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr)


def _nadam(params: Sequence[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    return torch.optim.NAdam(params, lr=lr)


_RECIPES: Dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            "fourier",
            "Fourier 1/f basis, colour decorrelation, jitter/scale/rotate, Adam(0.05) (the default for units)",
            _fourier_param,
            tf.standard,
            _adam,
            0.05,
        ),
        Recipe(
            "maco",
            "MaCo: phase-only Fourier, fixed natural magnitude spectrum, 2 crops, NAdam(0.2) (the default for classes)",
            _maco_param,
            _maco_transforms,
            _nadam,
            MACO_LR,
            transparency=True,
            trust_probe=True,
        ),
        Recipe(
            "aligned",
            "fourier plus a prior matching sorted activations to the unit's top dataset examples "
            "(needs dataset= or examples=)",
            _fourier_param,
            tf.standard,
            _adam,
            0.05,
            needs_examples=True,
            prior_weight=PRIOR_WEIGHT,
            trust_probe=True,
        ),
    )
}


def recipes() -> Dict[str, str]:
    """The recipes by name, each with a one-line description."""
    return {name: r.description for name, r in _RECIPES.items()}


def get_recipe(name: Union[None, str, Recipe]) -> Recipe:
    """The recipe called ``name`` (None: the default, ``"fourier"``); a Recipe is returned as is."""
    if isinstance(name, Recipe):
        return name
    key = DEFAULT if name is None else name
    if key not in _RECIPES:
        raise ValueError(f"unknown recipe {name!r}; the recipes are: {', '.join(_RECIPES)}")
    return _RECIPES[key]


def objective_kind(objective: Objective) -> str:
    """``"class"`` for an objective that reads only the model's output (class logits or
    probabilities), else ``"unit"`` (channels, neurons, directions of hidden layers).

    >>> objective_kind(obj.class_logit(3)), objective_kind(obj.channel("_blocks.8", 3))
    ('class', 'unit')
    """
    return "class" if objective.layers and all(layer in (None, OUTPUT) for layer in objective.layers) else "unit"


def default_recipe(objective: Objective, param: Optional[nn.Module] = None, channels: int = 3) -> str:
    """The recipe a render of ``objective`` gets when it names none: :data:`DEFAULTS` by
    :func:`objective_kind`, chosen on ``benchmarks/bench_quality.py`` (README, "Quality"). With an
    explicit ``param`` it is :data:`DEFAULT`, whose optimizer and lr suit the Fourier images; so
    it is for a model of other than 3 input ``channels`` where the kind's recipe is "maco", whose
    magnitude spectrum is that of RGB photos."""
    if param is not None:
        return DEFAULT
    chosen = DEFAULTS[objective_kind(objective)]
    return DEFAULT if chosen == "maco" and channels != 3 else chosen


@dataclass
class Setup:
    """A render's ingredients once the recipe and the explicit overrides are merged."""

    recipe: Recipe
    param: nn.Module
    transform: Callable
    optimizer: OptimizerFactory


def make_transform(transforms: Any, recipe: Recipe, side: int) -> Callable:
    """The transform: the recipe's (None), a callable as is, a sequence composed (``[]``: none)."""
    if transforms is None:
        return recipe.transforms(side)
    if callable(transforms):
        return transforms
    return tf.compose(*transforms)


def setup(
    recipe: Union[None, str, Recipe],
    spec: ParamSpec,
    param: Optional[nn.Module] = None,
    transforms: Any = None,
    optimizer: Optional[OptimizerFactory] = None,
    lr: Optional[float] = None,
) -> Setup:
    """The parameterization, transform and optimizer factory a render uses: each explicit one,
    else the recipe's (an explicit ``lr`` applies to the recipe's optimizer)."""
    r = get_recipe(recipe)
    p = param if param is not None else r.param(spec)
    rate = r.lr if lr is None else lr
    opt = optimizer or (lambda ps: r.optimizer(ps, rate))
    with torch.no_grad():
        side = max(p().shape[-2:])
    return Setup(r, p, make_transform(transforms, r, side), opt)


# -- the "aligned" prior --------------------------------------------------------------------------


def prior_layers(module: Optional[nn.Module], layer: str, earlier: int = 2) -> List[str]:
    """The layers an "aligned" prior matches: ``earlier`` blocks before ``layer``, spread evenly
    in the numbered container (``nn.Sequential`` / ``nn.ModuleList``) that holds it, then
    ``layer`` itself. For the model output: blocks spread over the model's longest container."""
    if module is None:
        return [layer]
    mods = dict(module.named_modules())
    parts = layer.split(".") if layer != OUTPUT else []
    for i, part in enumerate(parts):
        if part.isdigit() and isinstance(mods.get(".".join(parts[:i])), (nn.Sequential, nn.ModuleList)):
            prefix = ".".join(parts[:i] + [""])
            index = int(part)
            picks = sorted({round(index * (j + 1) / (earlier + 1)) for j in range(earlier)} - {index})
            return [f"{prefix}{j}" for j in picks] + [layer]
    if layer == OUTPUT:
        seqs = [(len(m), n) for n, m in mods.items() if n and isinstance(m, (nn.Sequential, nn.ModuleList))]
        if seqs:
            n_children, name = max(seqs)
            picks = sorted({round((n_children - 1) * (j + 1) / (earlier + 1)) for j in range(earlier + 1)})
            return [f"{name}.{j}" for j in picks]
    return [layer]


def reference_activations(
    module: Optional[nn.Module],
    forward_func: Callable,
    layers: Sequence[LayerLike],
    images: torch.Tensor,
    additional_forward_args: Any = None,
    batch_size: int = 32,
) -> Dict[str, torch.Tensor]:
    """Each layer's activation on ``images`` (no gradient), by layer key (a layer named twice
    is read once)."""
    refs = list({r.key: r for r in (resolve_layer(module, layer) for layer in layers)}.values())
    device = model_device(module) if module is not None else images.device
    dtype = model_dtype(module) if module is not None else images.dtype
    args, n = forward_args(additional_forward_args), images.shape[0]
    out: Dict[str, List[torch.Tensor]] = {r.key: [] for r in refs}
    with model_guard(module), Capture(module, forward_func, refs) as run, torch.no_grad():
        for i in range(0, n, batch_size):
            acts = run(images[i : i + batch_size].to(device, dtype), batch_args(args, n, i, min(i + batch_size, n)))
            for r in refs:
                out[r.key].append(acts[r.key].float())
    return {k: torch.cat(v) for k, v in out.items()}


SlotExamples = Union[torch.Tensor, Sequence[Optional[torch.Tensor]]]


class PriorPlan(NamedTuple):
    """Which slots the prior covers and each slot's reference images."""

    slots: Optional[List[int]]  # None: every slot shares ``images[0]``
    images: List[torch.Tensor]


def plan_prior(examples: SlotExamples) -> PriorPlan:
    """A tensor (N, C, H, W) serves every slot; a sequence gives each slot its own examples
    (None or empty: no prior for that slot)."""
    if torch.is_tensor(examples):
        return PriorPlan(None, [examples])
    chosen = [(s, e) for s, e in enumerate(examples) if e is not None and len(e)]
    return PriorPlan([s for s, _ in chosen], [e for _, e in chosen])


def _stack_references(refs: List[torch.Tensor]) -> torch.Tensor:
    m = min(r.shape[-1] for r in refs)  # one count for all slots: resample the longer ones
    return torch.stack([resample_sorted(r, m) for r in refs])


def aligned_prior(
    module: Optional[nn.Module],
    forward_func: Callable,
    layer: LayerLike,
    examples: SlotExamples,
    weight: float = PRIOR_WEIGHT,
    layers: Optional[Sequence[str]] = None,
    additional_forward_args: Any = None,
) -> Optional[Objective]:
    """The "aligned" cost for a render of a unit of ``layer`` (to subtract): the sorted-matching
    distance at ``layers`` (default :func:`prior_layers`) to the references computed once from
    ``examples``, summed over layers and scaled by ``weight`` times the unit layer's activation
    spread on them. None when no slot has examples."""
    plan = plan_prior(examples)
    if not plan.images:
        return None
    key = resolve_layer(module, layer).key
    names = list(layers) if layers is not None else prior_layers(module, key)
    per_slot = [
        reference_activations(module, forward_func, names, imgs, additional_forward_args) for imgs in plan.images
    ]
    unit_key = key if key in per_slot[0] else resolve_layer(module, names[-1]).key
    scale = float(torch.stack([acts[unit_key].std() for acts in per_slot]).mean())
    terms: List[Objective] = []
    for name in names:
        k = resolve_layer(module, name).key
        refs = [sorted_reference(acts[k]) for acts in per_slot]
        ref = refs[0] if plan.slots is None else _stack_references(refs)
        terms.append(feature_prior(name if name != OUTPUT else None, ref, batch=plan.slots))
    return (weight * scale / len(terms)) * sum(terms[1:], terms[0])


def with_prior(
    obj: Objective,
    recipe: Recipe,
    module: Optional[nn.Module],
    forward_func: Callable,
    examples: Optional[SlotExamples],
    additional_forward_args: Any = None,
    layer: Optional[LayerLike] = None,
) -> Objective:
    """``obj`` minus the recipe's prior when it has one; the unit's layer defaults to the
    objective's first. A recipe that needs examples without any is an error."""
    if not recipe.needs_examples:
        return obj
    if examples is None:
        raise ValueError(
            f"the recipe {recipe.name!r} needs natural examples of the unit: pass "
            "dataset= (NeuronVisualization.visualize, NeuronReport) or examples= (render)"
        )
    target = layer if layer is not None else (obj.layers[0] if obj.layers else None)
    prior = aligned_prior(
        module, forward_func, target, examples, recipe.prior_weight, additional_forward_args=additional_forward_args
    )
    return obj if prior is None else obj - prior
