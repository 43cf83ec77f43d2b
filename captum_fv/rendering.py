"""The render loop: optimize a parameterized image batch to maximize an objective.

    param() -> images -> transforms -> truncated forward (hooked layers) -> objective -> ascent

Everything random (initial noise, transforms) comes from generators seeded by ``seed``, so a run
reproduces exactly on CPU and never touches the global RNG; the model is left as it was found.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from . import recipe as recipe_lib
from . import transforms as tf
from .addressing import LayerRef, resolve_layer
from .hooks import Capture, batch_args, forward_args, model_guard
from .modelinfo import infer_in_channels, model_device, model_dtype, module_of
from .objectives.base import Context, Objective, as_objective
from .objectives.base import layer_id as _layer_id
from .precision import Precision
from .progress import progress_bar
from .rescue import Rescue, RescueConfig, depends_on_input, redirected

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
    dead_slots: List[int] = field(default_factory=list)  # no gradient (after the rescue, if on)
    transparency: Optional[torch.Tensor] = None  # (B, 1, H, W) in [0, 1] with transparency=True


def resolve_objective_layers(
    module: Optional[nn.Module], objective: Objective
) -> "tuple[list[LayerRef], Dict[Any, str]]":
    refs = [resolve_layer(module, layer) for layer in objective.layers]
    keys = {_layer_id(layer): ref.key for layer, ref in zip(objective.layers, refs)}
    return refs, keys


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
    def of(
        cls, steps: int, thresholds: Optional[Sequence[int]], blur_every: Optional[int], blur_sigma: float
    ) -> "Schedule":
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
    transparency: Optional[torch.Tensor] = None  # (B, 1, H, W) sum of |d objective / d image|
    precision: Precision = Precision()  # the ascent forward's autocast and input memory format


def setup_param(param: nn.Module, obj: Objective, device: torch.device) -> "tuple[nn.Module, torch.Tensor]":
    """The parameterization (made by the recipe unless given) on ``device`` and its starting
    images, checked to have the slots the objective targets."""
    param = param.to(device)
    with torch.no_grad():
        start = param()
    if start.shape[0] < obj.min_batch:
        raise ValueError(
            f"the objective targets {obj.min_batch} batch slots but the parameterization has "
            f"{start.shape[0]}; use batch >= {obj.min_batch}"
        )
    return param, start


def unit_scale(maps: torch.Tensor) -> torch.Tensor:
    """Each slot's map divided by its maximum (all-zero maps stay zero): values in [0, 1]."""
    top = maps.flatten(1).amax(1).clamp(min=1e-30)
    return maps / top.view(-1, *(1,) * (maps.dim() - 1))


def view_args(args: Tuple[Any, ...], batch: int, views: int) -> Tuple[Any, ...]:
    """Per-slot extra forward arguments repeated for ``views`` crop-major views of each slot."""
    if views <= 1:
        return args
    return tuple(
        a.repeat(views, *(1,) * (a.dim() - 1)) if torch.is_tensor(a) and a.dim() > 0 and a.shape[0] == batch else a
        for a in args
    )


def slot_values(
    obj: Objective,
    images: torch.Tensor,
    inputs: torch.Tensor,
    acts: Dict[str, torch.Tensor],
    keys: Dict[Any, str],
    step: int,
) -> torch.Tensor:
    """The objective per slot (B,). When the transform made ``n`` views of each slot (rows
    ``k * B + b``, e.g. :func:`transforms.crops`), the objective scores each view group as a
    batch of B slots and a slot's value is the mean over its views, so per-slot objectives
    (unit i in slot i, diversity across slots) keep their meaning."""
    b, rows = images.shape[0], inputs.shape[0]
    if rows == b:
        return obj(Context(images, inputs, acts, keys, step))
    if rows % b or any(a.shape[0] != rows for a in acts.values()):
        raise ValueError(
            f"the transform turned {b} images into {rows} inputs; a transform may only make "
            "the same number of views of every slot (crop-major rows: view k of slot i is "
            "row k * B + i), and every captured layer must keep one row per input"
        )
    views = [
        obj(
            Context(
                images,
                inputs[k * b : (k + 1) * b],
                {key: a[k * b : (k + 1) * b] for key, a in acts.items()},
                keys,
                step,
            )
        )
        for k in range(rows // b)
    ]
    return torch.stack(views).mean(0)


def ascent_step(loop: Loop, run: Capture, step: int, last_good: torch.Tensor) -> "tuple[torch.Tensor, torch.Tensor]":
    """One update: the objective on transformed images, its gradient on the image parameters
    only, an optimizer step. Returns the images it scored and their values."""
    loop.opt.zero_grad(set_to_none=True)
    images = loop.param()
    inputs = loop.transform(images, loop.generator)
    views = inputs.shape[0] // images.shape[0]
    acts = loop.precision.forward(run, inputs.to(loop.dtype), view_args(loop.args, images.shape[0], views))
    values = slot_values(loop.obj, images, inputs, acts, loop.keys, step)
    _check_values(values, images.shape[0], loop.obj)
    loss = -values.float().sum()
    if not torch.isfinite(loss):
        raise NonFiniteObjectiveError(
            f"the objective became {loss.item()} at step {step}; the last finite images "
            "are in this error's .images. Lower lr, or check the objective and model "
            "(half precision overflows easily: try model.float() or autocast=None).",
            last_good.cpu(),
            step,
        )
    # Gradients for the image parameters only: with a plain forward function the model's
    # parameters may still require grad, and backward() would fill their .grad.
    wrt = loop.params + ([images] if loop.transparency is not None else [])
    grads = torch.autograd.grad(loss, wrt, allow_unused=True)
    if loop.transparency is not None and grads[-1] is not None:
        loop.transparency += grads[-1].detach().abs().sum(1, keepdim=True).float()
    for p_, g_ in zip(loop.params, grads):
        p_.grad = g_
    return images, values


class ZeroGradWatch:
    """Stops a run whose first steps all have exactly zero gradient, if the objective also never
    changes on a few random images (``depends``): it does not depend on the input. Otherwise the
    start is merely flat, and the rescue (see :mod:`captum_fv.rescue`) deals with it."""

    def __init__(self, obj: Objective, steps: int, depends: Callable[[], bool] = lambda: False) -> None:
        self.obj, self.patience, self.run, self.depends = obj, min(_ZERO_GRAD_PATIENCE, steps), 0, depends

    def check(self, params: Iterable[torch.Tensor]) -> None:
        if self.run is None:
            return
        self.run = self.run + 1 if _grad_is_zero(params) else None
        if self.run is not None and self.run >= self.patience and self.depends():
            self.run = None
        elif self.run is not None and self.run >= self.patience:
            raise ValueError(
                f"the objective {self.obj.name} has zero gradient with respect to the input "
                f"image for {self.run} steps: it does not depend on the input (a layer "
                "outside the input's path, or a unit that is always zero, e.g. after a "
                "ReLU). Pick a pre-activation layer or another unit."
            )


def score(loop: Loop, run: Capture, images: torch.Tensor, step: int) -> torch.Tensor:
    """The objective per slot on ``images`` as they are (no transforms)."""
    return loop.obj(Context(images, images, run(images.to(loop.dtype), loop.args), loop.keys, step))


def optimize(
    loop: Loop, run: Capture, schedule: Schedule, start: torch.Tensor, progress: bool, rescue: Optional[Rescue] = None
) -> "tuple[Dict[int, torch.Tensor], List[torch.Tensor]]":
    """The ascent: snapshots at the schedule's steps and the objective per slot at each step;
    ``rescue`` redirects ReLU gradients in its phases and restarts dead slots."""
    snapshots: Dict[int, torch.Tensor] = {}
    history: List[torch.Tensor] = []
    last_good = start.detach()
    rescue = rescue or Rescue(None, start.shape[0], schedule.steps, 0)
    probe = torch.Generator().manual_seed(rescue.generator.initial_seed() + 1)
    watch = ZeroGradWatch(
        loop.obj, schedule.steps, lambda: depends_on_input(lambda x: score(loop, run, x, 0), start, probe)
    )
    bar = progress_bar(range(schedule.steps), desc="render", disable=not progress, leave=False)
    for step in bar:
        if step in schedule.keep:
            snapshots[step] = loop.param().detach().cpu()
        if schedule.blurs(step):
            with torch.no_grad():
                loop.param.assign(tf.gaussian_blur(loop.param(), schedule.blur_sigma))
        with redirected(rescue.active(step)):
            images, values = ascent_step(loop, run, step, last_good)
        watch.check(loop.params)
        loop.opt.step()
        rescue.after_step(step, loop.params, loop.opt, lambda x: score(loop, run, x, step), images.detach())
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
    lr: Optional[float] = None,
    optimizer: Optional[Callable[[Sequence[torch.Tensor]], torch.optim.Optimizer]] = None,
    thresholds: Optional[Sequence[int]] = None,
    seed: int = 0,
    progress: bool = True,
    size: Union[int, Sequence[int]] = 128,
    batch: Optional[int] = None,
    blur_every: Optional[int] = None,
    blur_sigma: float = 0.5,
    additional_forward_args: Any = None,
    recipe: Union[None, str, recipe_lib.Recipe] = None,
    examples: Any = None,
    rescue: Union[bool, int, RescueConfig] = True,
    transparency: bool = False,
    autocast: Any = None,
    channels_last: bool = False,
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
    expanded along the batch (see :func:`captum_fv.hooks.batch_args`); ``recipe``: a name from
    :func:`captum_fv.recipes` (default: :func:`captum_fv.recipe.default_recipe` of the objective)
    giving the parameterization, transforms, optimizer and lr that are not given explicitly;
    ``examples``: natural images for a recipe with a dataset prior (``"aligned"``), a tensor for
    every slot or a sequence, one per slot;
    ``rescue``: redirect ReLU/ReLU6 gradients for the first steps and restart slots that still get
    none (True: :class:`captum_fv.rescue.RescueConfig` defaults; an int: that many redirected
    steps; False: plain gradients throughout); slots still dead end in ``.dead_slots``, with a
    warning (also with ``rescue=False``: a blank is never silent); ``transparency``: also return
    ``.transparency``, which pixels the objective used (MaCo's map: the accumulated |gradient|
    w.r.t. the image, per slot, scaled to [0, 1]);
    ``autocast``: ``"bf16"`` runs each step's forward under bfloat16 autocast on the model's device
    type, ``channels_last``: hands the model channels-last inputs (see :mod:`captum_fv.precision`;
    both off by default; the images, optimizer and objective stay float32, and ``.values`` and the
    rescue's checks are computed in float32 without either option).

    >>> result = fv.render(model, "_blocks.8:12", size=64, steps=32)
    >>> result.images.shape
    torch.Size([1, 3, 64, 64])
    """
    obj = as_objective(objective)
    module = module_of(model)
    device, dtype = model_device(module), model_dtype(module)
    precision = Precision.of(autocast, channels_last, device)
    spec = recipe_lib.ParamSpec(size, batch or obj.min_batch, infer_in_channels(module), seed)
    chosen = recipe if recipe is not None else recipe_lib.default_recipe(obj, param, spec.channels)
    made = recipe_lib.setup(chosen, spec, param, transforms, optimizer, lr)
    obj = recipe_lib.with_prior(obj, made.recipe, module, model, examples, additional_forward_args)
    refs, keys = resolve_objective_layers(module, obj)
    param, start = setup_param(made.param, obj, device)
    params = list(param.parameters())
    loop = Loop(
        param,
        params,
        made.optimizer(params),
        made.transform,
        torch.Generator().manual_seed(seed),
        obj,
        keys,
        dtype,
        batch_args(forward_args(additional_forward_args), start.shape[0]),
        transparency=torch.zeros_like(start[:, :1], dtype=torch.float32) if transparency else None,
        precision=precision,
    )
    schedule = Schedule.of(steps, thresholds, blur_every, blur_sigma)
    with model_guard(module), Capture(module, model, refs, output=obj.output) as run:
        saver = Rescue(RescueConfig.of(rescue), start.shape[0], steps, seed)
        snapshots, history = optimize(loop, run, schedule, start, progress, saver)
        images, values = final_values(loop, run, steps)
    saver.settle(values)
    if saver.dead and saver.config.warn:
        warnings.warn(saver.message(obj.name), stacklevel=2)
    snapshots[steps] = images
    hist = torch.stack(history).float().cpu() if history else torch.zeros(0, images.shape[0])
    return RenderResult(
        images,
        snapshots,
        hist,
        values.float().cpu(),
        obj,
        seed,
        param,
        dead_slots=saver.dead,
        transparency=None if loop.transparency is None else unit_scale(loop.transparency).cpu(),
    )


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
