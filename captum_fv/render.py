"""The render loop: optimize a parameterized image batch to maximize an objective.

    param() -> images -> transforms -> truncated forward (hooked layers) -> objective -> ascent

Everything random (initial noise, transforms) comes from generators seeded by ``seed``, so a run
reproduces exactly on CPU and never touches the global RNG; the model is left as it was found.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from .progress import progress_bar

from . import param as param_lib
from . import transforms as tf
from .hooks import Capture, batch_args, forward_args, model_guard
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


@dataclass(frozen=True)
class Schedule:
    """When a render does what: ``steps`` updates, snapshots at ``keep``, a blur every
    ``blur_every`` steps (None: never) of width ``blur_sigma``."""

    steps: int
    keep: FrozenSet[int]
    blur_every: Optional[int] = None
    blur_sigma: float = 0.5

    @classmethod
    def of(cls, steps: int, thresholds: Optional[Sequence[int]], blur_every: Optional[int],
           blur_sigma: float) -> "Schedule":
        keep = set(DEFAULT_THRESHOLDS if thresholds is None else thresholds)
        return cls(steps, frozenset(int(t) for t in keep if 0 <= t < steps), blur_every, blur_sigma)

    def blurs(self, step: int) -> bool:
        return bool(self.blur_every) and bool(step) and step % self.blur_every == 0


@dataclass
class Loop:
    """What each step works with: the parameterization and its tensors, the optimizer, the
    transform and its generator, the objective and how to read its layers from a capture."""

    param: nn.Module
    params: List[torch.Tensor]
    opt: torch.optim.Optimizer
    transform: Callable
    generator: torch.Generator
    obj: Objective
    keys: Dict[Any, str]
    dtype: torch.dtype
    args: Tuple[Any, ...] = ()


def setup_param(param: Optional[nn.Module], module: Optional[nn.Module], obj: Objective,
                size: Union[int, Sequence[int]], batch: Optional[int], seed: int,
                device: torch.device) -> "tuple[nn.Module, torch.Tensor]":
    """The parameterization on ``device`` (default: Fourier + decorrelated colour, ``size``,
    ``batch`` slots) and its starting images, checked to have the slots the objective targets."""
    if param is None:
        param = param_lib.image(size, batch=batch or obj.min_batch, channels=infer_in_channels(module), seed=seed)
    param = param.to(device)
    with torch.no_grad():
        start = param()
    if start.shape[0] < obj.min_batch:
        raise ValueError(
            f"the objective targets {obj.min_batch} batch slots but the parameterization has "
            f"{start.shape[0]}; use batch >= {obj.min_batch}"
        )
    return param, start


def ascent_step(loop: Loop, run: Capture, step: int, last_good: torch.Tensor) -> "tuple[torch.Tensor, torch.Tensor]":
    """One update: the objective on transformed images, its gradient on the image parameters
    only, an optimizer step. Returns the images it scored and their values."""
    loop.opt.zero_grad(set_to_none=True)
    images = loop.param()
    inputs = loop.transform(images, loop.generator)
    values = loop.obj(Context(images, inputs, run(inputs.to(loop.dtype), loop.args), loop.keys, step))
    _check_values(values, images.shape[0], loop.obj)
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
    grads = torch.autograd.grad(loss, loop.params, allow_unused=True)
    for p_, g_ in zip(loop.params, grads):
        p_.grad = g_
    return images, values


class ZeroGradWatch:
    """Stops a run whose first steps all have exactly zero gradient: the objective does not
    depend on the input (a dead start, not a plateau, so only the first steps count)."""

    def __init__(self, obj: Objective, steps: int) -> None:
        self.obj, self.patience, self.run = obj, min(_ZERO_GRAD_PATIENCE, steps), 0

    def check(self, params: Iterable[torch.Tensor]) -> None:
        if self.run is None:
            return
        self.run = self.run + 1 if _grad_is_zero(params) else None
        if self.run is not None and self.run >= self.patience:
            raise ValueError(
                f"the objective {self.obj.name} has zero gradient with respect to the input "
                f"image for {self.run} steps: it does not depend on the input (a layer "
                "outside the input's path, or a unit that is always zero, e.g. after a "
                "ReLU). Pick a pre-activation layer or another unit."
            )


def optimize(loop: Loop, run: Capture, schedule: Schedule, start: torch.Tensor,
             progress: bool) -> "tuple[Dict[int, torch.Tensor], List[torch.Tensor]]":
    """The ascent: snapshots at the schedule's steps and the objective per slot at each step."""
    snapshots: Dict[int, torch.Tensor] = {}
    history: List[torch.Tensor] = []
    last_good = start.detach()
    watch = ZeroGradWatch(loop.obj, schedule.steps)
    bar = progress_bar(range(schedule.steps), desc="render", disable=not progress, leave=False)
    for step in bar:
        if step in schedule.keep:
            snapshots[step] = loop.param().detach().cpu()
        if schedule.blurs(step):
            with torch.no_grad():
                loop.param.assign(tf.gaussian_blur(loop.param(), schedule.blur_sigma))
        images, values = ascent_step(loop, run, step, last_good)
        watch.check(loop.params)
        loop.opt.step()
        history.append(values.detach())
        last_good = images.detach()
        if progress and step % 16 == 0:
            bar.set_postfix(objective=f"{values.detach().float().mean().item():.3g}")
    return snapshots, history


def final_values(loop: Loop, run: Capture, steps: int) -> "tuple[torch.Tensor, torch.Tensor]":
    """The final images and the objective on them, without transforms or gradient."""
    with torch.no_grad():
        final = loop.param()
        values = loop.obj(Context(final, final, run(final.to(loop.dtype), loop.args), loop.keys, steps))
    return final.detach().cpu(), values


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
    additional_forward_args: Any = None,
) -> RenderResult:
    """Maximize ``objective`` over images and return them with snapshots and history.

    ``model``: an nn.Module or a forward function (Captum's ``forward_func``); ``objective``: an
    :class:`Objective` or ``"layer:channel"``; ``param``: an image parameterization (default:
    Fourier + decorrelated colour, ``size``, ``batch`` slots); ``transforms``: a transform, a list
    of them, ``[]`` for none, or None for :func:`transforms.standard`; ``optimizer``: a factory
    ``params -> torch.optim.Optimizer`` (default Adam(lr)); ``thresholds``: steps to snapshot;
    ``blur_every``: blur the image every k steps (a regularizer from the early literature);
    ``additional_forward_args``: extra model arguments, as in Captum (the model runs as
    ``model(x, *args)``); the same serve every batch slot, a tensor whose first dim is 1 being
    expanded along the batch (see :func:`captum_fv.hooks.batch_args`).

    >>> result = fv.render(model, "_blocks.8:12", steps=256)
    >>> result.images.shape
    torch.Size([1, 3, 128, 128])
    """
    obj = as_objective(objective)
    module = module_of(model)
    refs, keys = resolve_objective_layers(module, obj)
    device, dtype = model_device(module), model_dtype(module)
    param, start = setup_param(param, module, obj, size, batch, seed, device)
    params = list(param.parameters())
    loop = Loop(
        param, params, (optimizer or (lambda ps: torch.optim.Adam(ps, lr=lr)))(params),
        _make_transform(transforms, max(start.shape[-2:])), torch.Generator().manual_seed(seed),
        obj, keys, dtype, batch_args(forward_args(additional_forward_args), start.shape[0]),
    )
    schedule = Schedule.of(steps, thresholds, blur_every, blur_sigma)
    with model_guard(module), Capture(module, model, refs, output=obj.output) as run:
        snapshots, history = optimize(loop, run, schedule, start, progress)
        images, values = final_values(loop, run, steps)
    snapshots[steps] = images
    hist = torch.stack(history).float().cpu() if history else torch.zeros(0, images.shape[0])
    return RenderResult(images, snapshots, hist, values.float().cpu(), obj, seed, param)


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
