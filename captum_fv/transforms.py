"""Transformation robustness: random, differentiable, batched image transforms on torch alone.

An image that still excites a unit after being jittered, scaled and rotated a little cannot rely
on pixel-exact high-frequency patterns, so these transforms suppress adversarial noise. Each
transform is a callable ``t(images, generator) -> images``; every slot of the batch draws its own
random parameters from the given ``torch.Generator`` (never the global RNG).

>>> t = fv.transforms.compose(fv.transforms.pad(12), fv.transforms.jitter(8))
>>> out = t(images, torch.Generator().manual_seed(0))
>>> out.shape  # 64 px padded by 12 a side (88), then a random 80 px window
torch.Size([4, 3, 80, 80])
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _choice(values: Sequence[float], n: int, g: torch.Generator) -> torch.Tensor:
    vals = torch.as_tensor(list(values), dtype=torch.float32)
    return vals[torch.randint(len(vals), (n,), generator=g)]


def compose(*transforms: Transform) -> Transform:
    """Apply ``transforms`` in order."""

    def t(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        for tr in transforms:
            x = tr(x, g)
        return x

    return t


def pad(width: int, mode: str = "constant", value: float = 0.5) -> Transform:
    """Pad every side by ``width`` pixels (gray by default), so jitter and rotation bring in a
    neutral border instead of wrapping or cropping the image."""

    def t(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return (
            F.pad(x, (width,) * 4, mode=mode, value=value) if mode == "constant" else F.pad(x, (width,) * 4, mode=mode)
        )

    return t


def jitter(d: int) -> Transform:
    """Crop ``d`` pixels off each image, at a random offset per slot (a random shift of 0..d)."""

    def t(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        if d <= 0:
            return x
        if d >= min(h, w):
            raise ValueError(f"jitter({d}) is too large for {h}x{w} images")
        oy = torch.randint(d + 1, (b, 1), generator=g).to(x.device)
        ox = torch.randint(d + 1, (b, 1), generator=g).to(x.device)
        rows = oy + torch.arange(h - d, device=x.device)  # (b, h - d)
        cols = ox + torch.arange(w - d, device=x.device)
        bidx = torch.arange(b, device=x.device)[:, None, None]
        return x[bidx, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)

    return t


def random_affine(
    scales: Sequence[float] = (1.0,),
    degrees: Sequence[float] = (0.0,),
    mode: str = "bilinear",
) -> Transform:
    """Scale and rotate each slot by values drawn from ``scales`` and ``degrees``, in one
    resampling (two separate resamplings would blur twice)."""

    def t(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        s = _choice(scales, b, g)
        a = _choice(degrees, b, g) * (math.pi / 180)
        cos, sin = torch.cos(a) / s, torch.sin(a) / s
        # Rotate in pixel units, then map back to grid_sample's [-1, 1] coordinates per axis,
        # so non-square images rotate without shearing.
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * h / w
        theta[:, 1, 0], theta[:, 1, 1] = sin * w / h, cos
        grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=False)

    return t


def random_scale(scales: Sequence[float]) -> Transform:
    """Zoom each slot by a factor drawn from ``scales`` (1.1: 10% larger)."""
    return random_affine(scales=scales)


def random_rotate(degrees: Sequence[float]) -> Transform:
    """Rotate each slot by an angle (degrees) drawn from ``degrees``."""
    return random_affine(degrees=degrees)


def color_jitter(gain: float = 0.05, shift: float = 0.05) -> Transform:
    """Multiply each channel by ``1 + gain * N(0, 1)`` and add ``shift * N(0, 1)``, per slot."""

    def t(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        b, c = x.shape[:2]
        k = (1 + gain * torch.randn(b, c, 1, 1, generator=g)).to(x)
        o = (shift * torch.randn(b, c, 1, 1, generator=g)).to(x)
        return x * k + o

    return t


def standard(size: Optional[int] = None) -> Transform:
    """The default stack: pad 12 (gray), jitter 8, scale 0.9..1.1, rotate -10..10 degrees, jitter 4.

    ``size`` (the image side) scales the pixel amounts for images far from 128-224 px.
    """
    k = 1.0 if size is None else max(size / 160, 0.25)
    return compose(
        pad(round(12 * k)),
        jitter(max(1, round(8 * k))),
        random_affine(scales=[1 + (i - 5) / 50 for i in range(11)], degrees=range(-10, 11)),
        jitter(max(1, round(4 * k))),
    )


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur each channel with a Gaussian of std ``sigma`` pixels (reflect-padded, separable)."""
    if sigma <= 0:
        return x
    r = max(1, math.ceil(2 * sigma))
    k = torch.exp(-(torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) ** 2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    mode = "reflect" if min(x.shape[-2:]) > r else "replicate"
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode=mode), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode=mode), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def crops(
    n: int,
    scale: Tuple[float, float] = (0.25, 1.0),
    size: Union[None, int, Tuple[int, int]] = None,
    noise: float = 0.0,
) -> Transform:
    """``n`` random crops of every slot, resized to ``size`` (default: the image's own), in ONE
    batch: (B, C, H, W) -> (n * B, C, h, w), crop-major (row ``k * B + b`` is crop k of slot b).

    Each crop keeps the image's aspect, a fraction of its side drawn uniformly from ``scale``,
    anywhere inside it; ``noise``: std of Gaussian pixel noise added to every crop (MaCo).
    The render loop scores a slot by the mean of its objective over its n crops, so per-slot
    objectives keep meaning "this slot".

    >>> t = fv.transforms.crops(8, noise=0.05)
    >>> t(torch.rand(2, 3, 64, 64), torch.Generator().manual_seed(0)).shape
    torch.Size([16, 3, 64, 64])
    """
    lo, hi = (float(s) for s in scale)
    if n < 1:
        raise ValueError(f"crops needs n >= 1, got {n}")
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"crop scale must satisfy 0 < low <= high <= 1, got {scale}")

    def t(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        b, c, h, w = x.shape
        out_hw = (h, w) if size is None else ((size, size) if isinstance(size, int) else tuple(size))
        m = n * b
        s = lo + (hi - lo) * torch.rand(m, generator=g)
        # centres in grid_sample's [-1, 1] coordinates, so that the whole crop lies inside
        cx, cy = ((torch.rand(2, m, generator=g) * 2 - 1) * (1 - s)).unbind(0)
        theta = torch.zeros(m, 2, 3)
        theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2] = s, s, cx, cy
        grid = F.affine_grid(theta.to(x), [m, c, *out_hw], align_corners=False)
        out = F.grid_sample(x.repeat(n, 1, 1, 1), grid, mode="bilinear", padding_mode="border", align_corners=False)
        if noise > 0:
            # drawn on the images' device from a seed of g: reproducible, and no large CPU draw
            seed = int(torch.randint(2**62, (1,), generator=g))
            dev = torch.Generator(device=x.device).manual_seed(seed)
            out = out + noise * torch.randn(out.shape, generator=dev, device=x.device, dtype=out.dtype)
        return out

    return t
