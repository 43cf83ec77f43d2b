"""Feature accentuation (Hamblin et al., 2024, "Feature Accentuation: Revealing 'What' Features
Respond to in Natural Images"): starting from a natural image, raise a unit while staying close to
the image, so the change shows *what* in this photo the unit wants more of (attribution shows
*where*).

The image is optimized in the Fourier / decorrelated space starting at the photo, with the
usual transforms; the cost of moving away from it is the relative distance of an early layer's
activation to the photo's own (its :func:`captum_fv.objectives.inversion`). Every (unit, image)
pair is one batch slot of a single render.

>>> acc = fv.accentuate(model, "_blocks.8", images[:2], [3, 12], steps=4)
>>> acc.images.shape, acc.before.shape   # (units, N, 3, H, W), (units, N)
(torch.Size([2, 2, 3, 64, 64]), torch.Size([2, 2]))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Union

import torch
from torch import nn

from . import param as param_lib
from . import transforms as tf
from .addressing import LayerLike, resolve_layer
from .modelinfo import module_of
from .objectives.matching import inversion
from .recipe import prior_layers, reference_activations
from .rendering import render
from .rescue import RescueConfig
from .unit import Selector, as_units, is_many, units_objective

#: Weight of the closeness term, in units of the layer's activation spread on the photos.
REG_WEIGHT = 1.0


@dataclass
class Accentuation:
    """Accentuated images and the unit's value on each photo before and after.

    ``images`` (U, N, C, H, W) in [0, 1] (U units, N images each); ``before``/``after`` (U, N);
    ``distance`` (U, N): the relative distance of ``reg_layer``'s activation to the photo's.
    With one selector (not a sequence), ``images`` is (N, C, H, W) and the rest (N,).
    """

    images: torch.Tensor
    before: torch.Tensor
    after: torch.Tensor
    distance: torch.Tensor
    reg_layer: str


def default_reg_layer(module: Optional[nn.Module], layer: str) -> str:
    """An early layer to stay close in: the earliest block :func:`captum_fv.recipe.prior_layers`
    picks before ``layer``, else the model's first convolution, else ``layer`` itself."""
    picks = prior_layers(module, layer, earlier=2)
    if len(picks) > 1:
        return picks[0]
    convs = [n for n, m in (module.named_modules() if module is not None else []) if isinstance(m, nn.Conv2d)]
    return convs[0] if convs else layer


def _per_unit_inputs(inputs: Union[torch.Tensor, Sequence[torch.Tensor]], n_units: int) -> List[torch.Tensor]:
    if torch.is_tensor(inputs):
        return [inputs] * n_units
    inputs = list(inputs)
    if len(inputs) != n_units:
        raise ValueError(
            f"{len(inputs)} image sets for {n_units} units; give one tensor per unit, or one tensor for all"
        )
    if len({tuple(x.shape) for x in inputs}) != 1:
        raise ValueError("every unit's images must have the same shape (N, C, H, W)")
    return inputs


def accentuate(
    forward_func: Union[nn.Module, Callable[..., torch.Tensor]],
    layer: LayerLike,
    inputs: Union[torch.Tensor, Sequence[torch.Tensor]],
    neuron_selector: Union[Selector, Sequence[Selector]],
    *,
    steps: int = 64,
    reg_layer: Optional[LayerLike] = None,
    reg_weight: float = REG_WEIGHT,
    lr: float = 0.05,
    transforms: Any = None,
    seed: int = 0,
    progress: bool = False,
    additional_forward_args: Any = None,
) -> Accentuation:
    """Raise ``neuron_selector`` (one selector or a sequence) of ``layer`` on the natural images
    ``inputs`` (N, C, H, W) in [0, 1] (or one such tensor per unit) while staying close to them in
    ``reg_layer`` (default :func:`default_reg_layer`), weighted by ``reg_weight`` times the
    layer's activation spread on the photos (0: unconstrained). ``transforms``: default small random scales
    and rotations (they keep the size, so the early layer compares with the photo's). One render
    for every (unit, image) pair."""
    module = module_of(forward_func)
    units = as_units(neuron_selector)
    photos = _per_unit_inputs(inputs, len(units))
    n = photos[0].shape[0]
    key = resolve_layer(module, layer).key
    reg = default_reg_layer(module, key) if reg_layer is None else reg_layer
    reg_key = resolve_layer(module, reg).key
    start = torch.cat(photos).float().clamp(0, 1)  # slot u * n + i: unit u on image i
    acts = reference_activations(module, forward_func, [layer, reg], start, additional_forward_args)
    slot_units = [u for u in units for _ in range(n)]
    before = torch.stack([u.value(acts[key][s : s + 1])[0] for s, u in enumerate(slot_units)])
    spread = acts[key].float().std().clamp(min=1e-6)  # the layer's scale: one weight suits every layer
    obj = units_objective(layer, slot_units, list(range(len(slot_units))))
    if reg_weight:
        obj = obj + (reg_weight * float(spread)) * inversion(reg, acts[reg_key])
    p = param_lib.image(tuple(start.shape[-2:]), batch=len(slot_units), channels=start.shape[1], init=start, seed=seed)
    if transforms is None:  # size-preserving, so the early layer stays comparable with the photo's
        transforms = tf.random_affine(scales=[0.95, 0.975, 1.0, 1.025, 1.05], degrees=range(-5, 6))
    res = render(
        forward_func,
        obj,
        param=p,
        transforms=transforms,
        steps=steps,
        lr=lr,
        seed=seed,
        progress=progress,
        thresholds=(),
        additional_forward_args=additional_forward_args,
        # a photo's top unit is live: redirected ReLUs would only check every row for nothing
        # (a quarter of a 16-step accentuation); a unit flat on its photo shows as after == before
        rescue=RescueConfig(steps=0, warn=False),
    )
    final = reference_activations(module, forward_func, [layer, reg], res.images, additional_forward_args)
    after = torch.stack([u.value(final[key][s : s + 1])[0] for s, u in enumerate(slot_units)])
    ref = acts[reg_key]
    distance = (final[reg_key] - ref).flatten(1).pow(2).mean(1) / ref.flatten(1).pow(2).mean(1).clamp(min=1e-8)
    shape = (len(units), n) if is_many(neuron_selector) else (n,)
    images = res.images.reshape(*shape, *res.images.shape[1:])
    return Accentuation(
        images, before.reshape(shape).cpu(), after.reshape(shape).cpu(), distance.reshape(shape).cpu(), reg_key
    )
