"""The render loop: optimize a parameterized image batch to maximize an objective.

    param() -> images -> transforms -> truncated forward (hooked layers) -> objective -> ascent

Everything random (initial noise, transforms) comes from generators seeded by ``seed``, so a run
reproduces exactly on CPU and never touches the global RNG; the model is left as it was found.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Optional, Sequence, Union

import torch
from torch import nn
from .progress import progress_bar

from . import param as param_lib
from . import transforms as tf
from .hooks import Capture, model_guard
from .addressing import LayerRef, resolve_layer
from .modelinfo import infer_in_channels, model_device, model_dtype, module_of
from .objectives.base import Context, Objective, as_objective, layer_id as _layer_id

#: Steps at which :func:`render` keeps a copy of the images unless told otherwise.
DEFAULT_THRESHOLDS = (0, 4, 48)
_ZERO_GRAD_PATIENCE = 8  # steps of exactly-zero gradient before we call the objective detached


class NonFiniteObjectiveError(FloatingPointError):
    """The objective became NaN or inf; ``.images`` holds the last finite images."""

    def __init__(self, msg: str, images: torch.Tensor, step: int):
        super().__init__(msg)
        self.images = images
        self.step = step


@dataclass
class RenderResult:
    """Output of :func:`render`.

    ``images`` (B, C, H, W) in [0, 1]; ``snapshots`` {step: images} at each threshold;
    ``history`` (steps, B) the objective per slot at each step (on transformed inputs);
    ``values`` (B,) the objective per slot on the final images, without transforms.
    """

    images: torch.Tensor
    snapshots: Dict[int, torch.Tensor]
    history: torch.Tensor
    values: torch.Tensor
    objective: Objective
    seed: int = 0
    param: Optional[nn.Module] = field(default=None, repr=False)


def resolve_objective_layers(
    module: Optional[nn.Module], objective: Objective
) -> "tuple[list[LayerRef], Dict[Any, str]]":
    refs = [resolve_layer(module, layer) for layer in objective.layers]
    keys = {_layer_id(layer): ref.key for layer, ref in zip(objective.layers, refs)}
    return refs, keys


def _make_transform(transforms: Any, size: int) -> Callable:
    if transforms is None:
        return tf.standard(size)
    if callable(transforms):
        return transforms
    return tf.compose(*transforms)  # a sequence; empty means none


def _grad_is_zero(params: Iterable[torch.Tensor]) -> bool:
    return all(p.grad is None or not bool(p.grad.any()) for p in params)


def render(
    model: Union[nn.Module, Callable[..., torch.Tensor]],
    objective: Any,
    param: Optional[nn.Module] = None,
    transforms: Union[None, Callable, Sequence[Callable]] = None,
    steps: int = 512,
    lr: float = 0.05,
    optimizer: Optional[Callable[[Sequence[torch.Tensor]], torch.optim.Optimizer]] = None,
    thresholds: Optional[Sequence[int]] = None,
    seed: int = 0,
    progress: bool = True,
    size: Union[int, Sequence[int]] = 128,
    batch: Optional[int] = None,
    blur_every: Optional[int] = None,
    blur_sigma: float = 0.5,
) -> RenderResult:
    """Maximize ``objective`` over images and return them with snapshots and history.

    ``model``: an nn.Module or a forward function (Captum's ``forward_func``); ``objective``: an
    :class:`Objective` or ``"layer:channel"``; ``param``: an image parameterization (default:
    Fourier + decorrelated colour, ``size``, ``batch`` slots); ``transforms``: a transform, a list
    of them, ``[]`` for none, or None for :func:`transforms.standard`; ``optimizer``: a factory
    ``params -> torch.optim.Optimizer`` (default Adam(lr)); ``thresholds``: steps to snapshot;
    ``blur_every``: blur the image every k steps (a regularizer from the early literature).

    >>> result = fv.render(model, "_blocks.8:12", steps=256)
    >>> result.images.shape
    torch.Size([1, 3, 128, 128])
    """
    obj = as_objective(objective)
    module = module_of(model)
    refs, keys = resolve_objective_layers(module, obj)
    device, dtype = model_device(module), model_dtype(module)
    if param is None:
        param = param_lib.image(
            size, batch=batch or obj.min_batch, channels=infer_in_channels(module), seed=seed
        )
    param = param.to(device)
    with torch.no_grad():
        start = param()
    if start.shape[0] < obj.min_batch:
        raise ValueError(
            f"the objective targets {obj.min_batch} batch slots but the parameterization has "
            f"{start.shape[0]}; use batch >= {obj.min_batch}"
        )
    transform = _make_transform(transforms, max(start.shape[-2:]))
    params = list(param.parameters())
    opt = (optimizer or (lambda ps: torch.optim.Adam(ps, lr=lr)))(params)
    keep = set(DEFAULT_THRESHOLDS if thresholds is None else thresholds)
    keep = {int(t) for t in keep if 0 <= t < steps}
    g = torch.Generator().manual_seed(seed)
    snapshots: Dict[int, torch.Tensor] = {}
    history = []
    last_good = start.detach()
    zero_run: Optional[int] = 0

    with model_guard(module), Capture(module, model, refs) as run:
        bar = progress_bar(range(steps), desc="render", disable=not progress, leave=False)
        for step in bar:
            if step in keep:
                snapshots[step] = param().detach().cpu()
            if blur_every and step and step % blur_every == 0:
                with torch.no_grad():
                    param.assign(tf.gaussian_blur(param(), blur_sigma))
            opt.zero_grad(set_to_none=True)
            images = param()
            inputs = transform(images, g)
            values = obj(Context(images, inputs, run(inputs.to(dtype)), keys, step))
            _check_values(values, images.shape[0], obj)
            loss = -values.float().sum()
            if not torch.isfinite(loss):
                raise NonFiniteObjectiveError(
                    f"the objective became {loss.item()} at step {step}; the last finite images "
                    "are in this error's .images. Lower lr, or check the objective and model "
                    "(half precision overflows easily: try model.float()).",
                    last_good.cpu(),
                    step,
                )
            # Gradients for the image parameters only: with a plain forward function the model's
            # parameters may still require grad, and backward() would fill their .grad.
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            for p_, g_ in zip(params, grads):
                p_.grad = g_
            if zero_run is not None:  # only the first steps: a dead start, not a plateau
                zero_run = zero_run + 1 if _grad_is_zero(params) else None
                if zero_run is not None and zero_run >= min(_ZERO_GRAD_PATIENCE, steps):
                    raise ValueError(
                        f"the objective {obj.name} has zero gradient with respect to the input "
                        f"image for {zero_run} steps: it does not depend on the input (a layer "
                        "outside the input's path, or a unit that is always zero, e.g. after a "
                        "ReLU). Pick a pre-activation layer or another unit."
                    )
            opt.step()
            history.append(values.detach())
            last_good = images.detach()
            if progress and step % 16 == 0:
                bar.set_postfix(objective=f"{values.detach().float().mean().item():.3g}")
        with torch.no_grad():
            final = param()
            final_values = obj(Context(final, final, run(final.to(dtype)), keys, steps))
    images = final.detach().cpu()
    snapshots[steps] = images
    hist = torch.stack(history).float().cpu() if history else torch.zeros(0, images.shape[0])
    return RenderResult(images, snapshots, hist, final_values.float().cpu(), obj, seed, param)


def _check_values(values: Any, batch: int, obj: Objective) -> None:
    if not torch.is_tensor(values) or values.shape != (batch,):
        shape = tuple(values.shape) if torch.is_tensor(values) else type(values).__name__
        raise ValueError(
            f"objective {obj.name} returned {shape}; an objective must return one value per "
            f"batch slot, shape ({batch},)"
        )
    if not values.requires_grad:
        raise ValueError(
            f"the objective {obj.name} does not depend on the input image (its value has no "
            "gradient); check that it reads a layer on the input's path"
        )
