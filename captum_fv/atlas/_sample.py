"""Sampling a layer's spatial activations over a dataset: a few seeded positions per image, at
most ``samples`` kept in all (the smallest random keys win, so memory stays bounded whatever the
dataset's length), each with a small crop of its image around the position."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..addressing import LayerLike, LayerRef, resolve_layer
from ..hooks import Capture, batch_args, forward_args, model_guard
from ..items import batches, check_batch, forward_args_of
from ..modelinfo import infer_in_channels, model_device, model_dtype, module_of
from ..progress import progress_bar

#: Side of the dataset-patch thumbnails kept with each sample, in pixels.
PATCH_PIXELS = 48
#: Share of a position's input-gradient mass the measured receptive field holds.
RF_MASS = 0.9


@dataclass
class AtlasSamples:
    """Spatial activations sampled over a dataset.

    ``vectors`` (N, C): the layer's activation vector at each sampled position; ``image_index``
    (N,): the dataset index of its image; ``positions`` (N, 2): (y, x) in the layer's map of
    ``map_shape``; ``patches`` (N, 3, P, P) uint8: the image around the position, a square of
    side ``patch_fraction`` of the image's short side; ``n_images``: how many images were read.
    """

    layer: str
    vectors: torch.Tensor
    image_index: torch.Tensor
    positions: torch.Tensor
    patches: torch.Tensor
    map_shape: Tuple[int, int]
    patch_fraction: float
    n_images: int

    def __len__(self) -> int:
        return len(self.vectors)


def _key_seed(seed: int, index: int) -> int:
    # One generator per image, seeded by (seed, index): the draws do not depend on batching.
    return (int(seed) * 1_000_003 + int(index) * 7_919 + 1) % (2**63 - 1)


def draw_positions(
    seed: int, index: int, map_shape: Tuple[int, int], per_image: int, border: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``per_image`` distinct positions (k, 2) of a map, away from a ``border`` ring when the map
    is large enough, and a random key per position (k,)."""
    h, w = map_shape
    b = border if min(h, w) > 2 * border + 1 else 0
    ys, xs = torch.meshgrid(torch.arange(b, h - b), torch.arange(b, w - b), indexing="ij")
    grid = torch.stack([ys.flatten(), xs.flatten()], 1)
    g = torch.Generator().manual_seed(_key_seed(seed, index))
    pick = torch.randperm(len(grid), generator=g)[:per_image]
    return grid[pick], torch.rand(len(pick), generator=g, dtype=torch.float64)


def crop_patches(images: torch.Tensor, centres: torch.Tensor, side: float, out: int = PATCH_PIXELS) -> torch.Tensor:
    """Square crops of ``images`` (n, C, H, W) of ``side`` pixels around ``centres`` (n, 2) as
    (y, x) pixels, moved inside the image where they would leave it, resized to ``out`` px uint8."""
    n, _, h, w = images.shape
    s = max(1, min(int(round(side)), h, w))
    crops = []
    for img, (cy, cx) in zip(images, centres.tolist()):
        top = int(min(max(round(cy - s / 2), 0), h - s))
        left = int(min(max(round(cx - s / 2), 0), w - s))
        crops.append(img[:3, top : top + s, left : left + s])
    x = torch.stack(crops).float() if crops else images.new_zeros(0, 3, s, s).float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    x = F.interpolate(x, size=(out, out), mode="bilinear", antialias=s > out, align_corners=False)
    return x.clamp(0, 1).mul(255).round().to(torch.uint8)


def receptive_fraction(
    forward_func: Callable[..., Any], module: Optional[nn.Module], ref: LayerRef, image: torch.Tensor, args: Any = None
) -> float:
    """The side of a central position's effective receptive field, as a fraction of the image's
    short side: the smallest centred square holding ``RF_MASS`` of the gradient of that
    position's activation with respect to a seeded noise image of ``image``'s shape."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(image.shape, generator=g).to(image.device, image.dtype).requires_grad_(True)
    with model_guard(module), Capture(module, forward_func, [ref]) as run:
        a = run(x, args)[ref.key]
        if a.dim() != 4:
            raise ValueError(
                f"layer {ref.key!r} gives activations of shape {tuple(a.shape)}; an atlas needs a "
                "convolutional layer with (N, C, H, W) activations"
            )
        h, w = a.shape[-2:]
        (grad,) = torch.autograd.grad(a[0, :, h // 2, w // 2].sum(), x, allow_unused=True)
    img_h, img_w = image.shape[-2:]
    short = min(img_h, img_w)
    stride = short / min(h, w)
    if grad is None or not bool(grad.abs().sum() > 0):
        return min(1.0, 2 * stride / short)
    m = grad.detach().abs().sum((0, 1)).double()  # (H, W)
    cy, cx = (h // 2 + 0.5) * img_h / h, (w // 2 + 0.5) * img_w / w
    yy = (torch.arange(img_h, dtype=torch.float64)[:, None] + 0.5 - cy).abs()
    xx = (torch.arange(img_w, dtype=torch.float64)[None, :] + 0.5 - cx).abs()
    radius = torch.maximum(yy, xx).flatten()  # square (Chebyshev) distance from the centre
    order = torch.argsort(radius)
    mass = torch.cumsum(m.flatten()[order], 0)
    k = int(torch.searchsorted(mass, RF_MASS * mass[-1]))
    side = 2 * float(radius[order[min(k, len(order) - 1)]])
    return float(min(1.0, max(side, stride) / short))


class _Kept:
    """The ``size`` samples with the smallest keys so far (ties: the earlier sample)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.parts: List[Tuple[torch.Tensor, ...]] = []

    def offer(self, keys: torch.Tensor, *tensors: torch.Tensor) -> None:
        self.parts.append((keys, *tensors))
        if sum(len(p[0]) for p in self.parts) > 2 * self.size:
            self.parts = [self.tensors()]

    def tensors(self) -> Tuple[torch.Tensor, ...]:
        cat = [torch.cat(column) for column in zip(*self.parts)]
        order = torch.sort(cat[0], stable=True).indices[: self.size]
        return tuple(t[order] for t in cat)


def sample_activations(
    forward_func: Union[nn.Module, Callable[..., torch.Tensor]],
    layer: LayerLike,
    dataset: Any,
    samples: int = 2048,
    per_image: int = 4,
    seed: int = 0,
    patch: Optional[float] = None,
    border: int = 1,
    batch_size: int = 32,
    progress: bool = False,
    additional_forward_args: Any = None,
) -> AtlasSamples:
    """One pass over ``dataset`` (a tensor, Dataset or DataLoader of images in [0, 1]) keeping
    ``per_image`` seeded positions of each image's activation map and at most ``samples`` in all
    (a uniform choice among every drawn position). ``patch``: the side of the dataset patches as a
    fraction of the image's short side (None: the measured effective receptive field);
    ``border``: ring of map positions never drawn (padding distorts them), when the map allows.

    >>> s = fv.atlas.sample_activations(model, "_blocks.8", images, samples=6, per_image=2)
    >>> s.vectors.shape, s.positions.shape, s.patches.shape
    (torch.Size([6, 112]), torch.Size([6, 2]), torch.Size([6, 3, 48, 48]))
    """
    for name, v in (("samples", samples), ("per_image", per_image)):
        if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if patch is not None and not 0 < float(patch) <= 1:
        raise ValueError(f"patch is a fraction of the image side in (0, 1], got {patch!r}")
    module = module_of(forward_func)
    ref = resolve_layer(module, layer)
    device, dtype = model_device(module), model_dtype(module)
    channels = infer_in_channels(module, default=None)
    fixed = forward_args(additional_forward_args)
    source = batches(dataset, batch_size)
    kept, seen, fraction, map_shape = _Kept(samples), 0, patch, None
    bar = progress_bar(total=source.total, desc=f"atlas samples {ref.key}", unit="img", disable=not progress)
    try:
        for batch in source.batches:
            x = check_batch(batch.data, channels).to(device, dtype)
            if len(x) == 0:
                continue
            own = forward_args_of(batch.data)
            args = tuple(own) if own is not None else batch_args(fixed, len(x))
            if fraction is None:
                one = batch_args(args, len(x), 0, 1)
                fraction = receptive_fraction(forward_func, module, ref, x[:1], one)
            with model_guard(module), Capture(module, forward_func, [ref]) as run, torch.no_grad():
                acts = run(x, args)[ref.key]
            if acts.dim() != 4:
                raise ValueError(
                    f"layer {ref.key!r} gives activations of shape {tuple(acts.shape)}; an atlas needs "
                    "a convolutional layer with (N, C, H, W) activations"
                )
            map_shape = tuple(acts.shape[-2:])
            _keep_batch(kept, x, acts, batch.start, seed, per_image, border, fraction)
            seen += len(x)
            bar.update(len(x))
    finally:
        bar.close()
    if map_shape is None:
        raise ValueError("the dataset is empty; an atlas needs images to sample activations from")
    _, index, pos, vectors, patches = kept.tensors()
    return AtlasSamples(ref.key, vectors, index, pos, patches, map_shape, float(fraction), seen)


def _keep_batch(
    kept: _Kept,
    x: torch.Tensor,
    acts: torch.Tensor,
    start: int,
    seed: int,
    per_image: int,
    border: int,
    fraction: float,
) -> None:
    h, w = acts.shape[-2:]
    img_h, img_w = x.shape[-2:]
    drawn = [draw_positions(seed, start + i, (h, w), per_image, border) for i in range(len(x))]
    pos = torch.cat([p for p, _ in drawn])
    keys = torch.cat([k for _, k in drawn])
    rows = torch.cat([torch.full((len(p),), i, dtype=torch.long) for i, (p, _) in enumerate(drawn)])
    vectors = acts.detach()[rows, :, pos[:, 0], pos[:, 1]].float().cpu()
    centres = torch.stack([(pos[:, 0] + 0.5) * img_h / h, (pos[:, 1] + 0.5) * img_w / w], 1)
    patches = crop_patches(x.detach().float().cpu()[rows], centres, fraction * min(img_h, img_w))
    kept.offer(keys, rows + start, pos, vectors, patches)
