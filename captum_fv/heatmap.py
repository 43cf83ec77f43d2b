"""Heat maps of attributions (no matplotlib needed): signed maps in a diverging colour map over the
photo in colour, with a colour bar (``signed_overlay``, ``colorbar``, what reports draw), and
Captum's blended heat map (``overlay``).

>>> a = fv.attribute(model, "_blocks.8", images[:1], 12, n_steps=8, tolerance=None)
>>> ov = signed_overlay(images[0], a.attributions[0])  # .image (3, H, W) in [0, 1], .scale
>>> bar = colorbar(ov.scale)                            # label the colours with values
>>> rgb = overlay(images[0], a.attributions[0], sign="positive")   # Captum's style
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

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


def normalize_attribution(
    attribution: torch.Tensor, sign: str = "absolute_value", outlier_perc: float = 2.0
) -> torch.Tensor:
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


def overlay(
    image: torch.Tensor,
    attribution: torch.Tensor,
    alpha: float = 0.5,
    sign: str = "absolute_value",
    outlier_perc: float = 2.0,
) -> torch.Tensor:
    """Captum's 'blended_heat_map' as an image: the heat map over the greyscaled image.

    ``image`` (C, H, W) in [0, 1] and ``attribution`` (C, H, W) or (H, W), or batches of both;
    ``sign``: 'absolute_value' (Blues), 'positive' (Greens), 'negative' (Reds) or 'all'
    (red-white-green). Returns RGB (3, H, W) (or (N, 3, H, W)) in [0, 1].

    >>> a = fv.attribute(model, "_blocks.8", images, 12, n_steps=16, tolerance=None)
    >>> rgb = overlay(images[0], a.attributions[0], sign="positive")
    >>> hwc = rgb.permute(1, 2, 0).numpy()  # for plt.imshow
    """
    if image.dim() == 4:
        pairs = zip(image, attribution)
        return torch.stack([overlay(i, a, alpha, sign, outlier_perc) for i, a in pairs])
    if image.dim() != 3:
        raise ValueError(f"image must be (C, H, W) or (N, C, H, W), got shape {tuple(image.shape)}")
    if tuple(attribution.shape[-2:]) != tuple(image.shape[-2:]):
        raise ValueError(
            f"attribution shape {tuple(attribution.shape)} does not match the image's "
            f"{tuple(image.shape)} in height and width"
        )
    norm = normalize_attribution(attribution, sign, outlier_perc)
    heat = _colormap((norm + 1) / 2 if sign == "all" else norm, sign)
    grey = image.detach().float().cpu().mean(0)
    lo, hi = grey.min(), grey.max()
    grey = (grey - lo) / (hi - lo) if hi > lo else torch.zeros_like(grey)  # imshow's autoscale
    return ((1 - alpha) * grey[None].expand(3, -1, -1) + alpha * heat).clamp(0, 1)


def checkerboard(height: int, width: int, square: int = 8) -> torch.Tensor:
    """A light grey checkerboard (3, H, W), the usual backdrop that shows transparency."""
    y = torch.arange(height)[:, None] // square
    x = torch.arange(width)[None, :] // square
    return (0.8 + 0.15 * ((x + y) % 2)).float().expand(3, height, width).clone()


def transparent(
    image: torch.Tensor, alpha: torch.Tensor, background: str = "checkerboard", square: int = 8
) -> torch.Tensor:
    """An image drawn with per-pixel opacity ``alpha`` in [0, 1] (MaCo's transparency map,
    ``render(..., transparency=True).transparency``) over a ``"checkerboard"`` or ``"white"``.

    ``image`` (C, H, W) or (N, C, H, W) in [0, 1]; ``alpha`` (1, H, W)/(H, W), or batched.
    Returns RGB of the same layout.

    >>> r = fv.render(model, "_blocks.8:12", transparency=True, size=64, steps=16, progress=False)
    >>> transparent(r.images, r.transparency).shape
    torch.Size([1, 3, 64, 64])
    """
    if image.dim() == 4:
        return torch.stack([transparent(i, a, background, square) for i, a in zip(image, alpha)])
    if background not in ("checkerboard", "white"):
        raise ValueError(f"background must be 'checkerboard' or 'white', got {background!r}")
    img = image.detach().float().cpu()
    img = img.expand(3, -1, -1) if img.shape[0] == 1 else img[:3]
    a = alpha.detach().float().cpu().reshape(1, *img.shape[-2:]).clamp(0, 1)
    h, w = img.shape[-2:]
    back = checkerboard(h, w, square) if background == "checkerboard" else torch.ones(3, h, w)
    return a * img + (1 - a) * back


# ------------------------------------------------------------------ signed maps

# ColorBrewer RdBu's strong ends (colour-blind safe: red and blue stay apart for red-green colour
# blindness, unlike Captum's red-white-green). Each hue is painted with an opacity that grows with
# |attribution|, so over white the ramp is RdBu's blue-white-red and over a photo small values
# leave the photo as it is.
_NEGATIVE = (0x21 / 255, 0x66 / 255, 0xAC / 255)
_POSITIVE = (0xB2 / 255, 0x18 / 255, 0x2B / 255)
# Opacity = max_alpha * |value / scale| ** 1.5: a little steeper than linear, so the weak,
# mixed-sign background of integrated-gradients maps fades and the photo stays readable there
# (contact sheet: benchmarks/sheet_attribution.py).
_OPACITY_POWER = 1.5


@dataclass(frozen=True)
class Overlay:
    """A signed attribution map drawn over its photo: ``image`` RGB (3, H, W) or (N, 3, H, W) in
    [0, 1]; ``scale``: the attribution drawn at full colour (a colour bar's ends are -scale, +scale)."""

    image: torch.Tensor
    scale: float


def _summed(attribution: torch.Tensor, image_dims: int) -> torch.Tensor:
    """Sum over colour channels keeping the sign: (C, H, W) -> (H, W), (N, C, H, W) -> (N, H, W)."""
    a = attribution.detach().float().cpu()
    return a.sum(-3) if a.dim() == image_dims else a


def _smoothed(summed: torch.Tensor, smooth: float) -> torch.Tensor:
    """A Gaussian blur of (..., H, W) maps, sigma ``smooth`` x the shorter side.

    Integrated gradients flip sign from pixel to pixel; unblurred, red and blue speckle averages to
    a faint purple once a page shrinks the map. Blurred, each region shows its net sign."""
    if smooth < 0:
        raise ValueError(f"smooth must be >= 0 (a fraction of the image side; 0: no blur), got {smooth}")
    h, w = summed.shape[-2:]
    sigma = smooth * min(h, w)
    if sigma < 0.3:  # below a third of a pixel the kernel is a delta anyway
        return summed
    r = max(1, int(3 * sigma))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    k = k / k.sum()

    def blur(m: torch.Tensor) -> torch.Tensor:
        m = F.conv2d(m, k.view(1, 1, 1, -1), padding=(0, r))
        return F.conv2d(m, k.view(1, 1, -1, 1), padding=(r, 0))

    # A weighted mean over the pixels inside the image (zero padding, divided by the kernel's
    # weight inside): no border fading, any map size, and speckle cancels up to the edge.
    m = summed.reshape(-1, 1, h, w)
    return (blur(m) / blur(torch.ones(1, 1, h, w))).reshape(summed.shape)


def attribution_scale(attributions: torch.Tensor, percentile: float = 99.0, smooth: float = 0.02) -> float:
    """The value :func:`signed_overlay` draws at full colour: the ``percentile`` of |attribution|
    (summed over colour channels, blurred by ``smooth``) over the nonzero pixels of every map given.

    A high percentile rather than the maximum, so the few most extreme pixels saturate instead of
    washing the rest out; the 99th leaves 1 % at full colour (in integrated-gradients maps of the
    default model the maximum is 4-6x the 99th percentile). 0.0 when everything is zero. ``attributions``: (C, H, W),
    (N, C, H, W) or one summed (H, W) map.

    >>> a = torch.zeros(3, 8, 8); a[0, 0, 0] = 2.0
    >>> attribution_scale(a, smooth=0)
    2.0
    """
    a = attributions.detach().float().cpu()
    a = a.sum(-3) if a.dim() >= 3 else a
    return _percentile(_smoothed(_clipped(a, percentile, smooth), smooth), percentile)


def _clipped(summed: torch.Tensor, percentile: float, smooth: float) -> torch.Tensor:
    """Before a blur, each map's pixels beyond its ``percentile`` are clipped to it: a blur would
    otherwise spread one extreme pixel over hundreds, past the percentile meant to ignore it.
    Per map, so a map is drawn the same alone or in a batch (given the same scale)."""
    if smooth <= 0:
        return summed
    maps = summed.reshape(-1, *summed.shape[-2:])
    limits = torch.tensor([_percentile(m, percentile) for m in maps]).view(-1, 1, 1)
    return torch.maximum(torch.minimum(maps, limits), -limits).reshape(summed.shape)


def _percentile(summed: torch.Tensor, percentile: float) -> float:
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    magnitude = summed.abs().flatten()
    magnitude = magnitude[magnitude > 0]
    if magnitude.numel() == 0:
        return 0.0
    # kthvalue, unlike torch.quantile, has no cap on the number of pixels.
    k = max(1, min(magnitude.numel(), int(round(percentile / 100 * magnitude.numel()))))
    return float(magnitude.kthvalue(k).values)


def _paint(t: torch.Tensor, max_alpha: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Signed values ``t`` in [-1, 1] (..., H, W) to a hue (..., 3, H, W) and an opacity (..., 1, H, W)."""
    hues = torch.tensor([_NEGATIVE, _POSITIVE])
    hue = hues[(t > 0).long()].movedim(-1, -3)
    return hue, (max_alpha * t.abs() ** _OPACITY_POWER).unsqueeze(-3)


def diverging(values: torch.Tensor, max_alpha: float = 0.85) -> torch.Tensor:
    """The colour map of :func:`signed_overlay` over white: ``values`` in [-1, 1] (..., H, W) to
    RGB (..., 3, H, W); -1 blue, 0 white, +1 red."""
    hue, alpha = _paint(values.float().clamp(-1, 1), max_alpha)
    return alpha * hue + (1 - alpha)


def signed_overlay(
    image: torch.Tensor,
    attribution: torch.Tensor,
    scale: Optional[float] = None,
    percentile: float = 99.0,
    smooth: float = 0.02,
    max_alpha: float = 0.85,
) -> Overlay:
    """Signed attributions over the photo in colour: red where a pixel raised the unit, blue where
    it lowered it, as strong as |attribution| / ``scale`` (clipped at 1); where the attribution is
    small the photo shows through unchanged.

    ``image`` (C, H, W) in [0, 1] with ``attribution`` (C, H, W) or (H, W), or batches of both
    (one scale for the batch, so the maps compare); ``scale``: None for
    :func:`attribution_scale` at ``percentile``, or a value to share between calls; ``smooth``:
    sigma of a Gaussian blur of the map, as a fraction of the image's shorter side (0: none), so
    each region shows its net sign; ``max_alpha``: the opacity at full colour.

    >>> a = fv.attribute(model, "_blocks.8", images[:2], 12, n_steps=8, tolerance=None)
    >>> ov = signed_overlay(images[:2], a.attributions)
    >>> ov.image.shape, ov.scale > 0
    (torch.Size([2, 3, 64, 64]), True)
    """
    if image.dim() not in (3, 4):
        raise ValueError(f"image must be (C, H, W) or (N, C, H, W), got shape {tuple(image.shape)}")
    a = _summed(attribution, image.dim())
    if a.dim() != image.dim() - 1 or tuple(a.shape) != tuple(image.shape[:-3]) + tuple(image.shape[-2:]):
        raise ValueError(
            f"attribution shape {tuple(attribution.shape)} does not match the image's {tuple(image.shape)}; "
            "give one (C, H, W) or (H, W) map per image"
        )
    if not 0 < max_alpha <= 1:
        raise ValueError(f"max_alpha must be in (0, 1], got {max_alpha}")
    a = _smoothed(_clipped(a, percentile, smooth), smooth)
    s = _percentile(a, percentile) if scale is None else float(scale)
    if s < 0:
        raise ValueError(f"scale must be >= 0, got {s}")
    img = image.detach().float().cpu()
    img = img.expand(*img.shape[:-3], 3, *img.shape[-2:]) if img.shape[-3] == 1 else img[..., :3, :, :]
    if s == 0:
        return Overlay(img.clamp(0, 1).clone(), 0.0)
    hue, alpha = _paint((a / s).clamp(-1, 1), max_alpha)
    return Overlay((alpha * hue + (1 - alpha) * img).clamp(0, 1), s)


def _tick(value: float) -> str:
    return "0" if value == 0 else f"{value:+.2g}".replace("e-0", "e-").replace("e+0", "e")


def colorbar(scale: float, width: int = 128, bar_height: int = 10, max_alpha: float = 0.85) -> torch.Tensor:
    """A horizontal colour bar for :func:`signed_overlay` maps of this ``scale``: the colour map from
    -scale (left) to +scale (right) over white, with -scale, 0 and +scale written under it.
    RGB (3, H, W) in [0, 1] on white.

    >>> colorbar(0.02).shape[0], colorbar(0.02, width=96).shape[2]
    (3, 96)
    """
    from PIL import Image, ImageDraw, ImageFont

    if width < 16 or bar_height < 1:
        raise ValueError(f"colorbar needs width >= 16 and bar_height >= 1, got {width} and {bar_height}")
    ramp = diverging(torch.linspace(-1, 1, width)[None].expand(bar_height, -1), max_alpha)
    size = max(8, bar_height + 1)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only its small bitmap font
        font = ImageFont.load_default()
    canvas = Image.new("RGB", (width, bar_height + size + 4), "white")
    canvas.paste(Image.fromarray((ramp.permute(1, 2, 0).numpy() * 255).round().astype("uint8")), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for text, where in ((_tick(-scale), 0.0), (_tick(0), 0.5), (_tick(scale), 1.0)):
        # Placed by measured width (not anchors, which Pillow's bitmap font lacks): left, centre, right.
        left, _, right, _ = draw.textbbox((0, 0), text, font=font)
        x = round(where * (width - (right - left))) - left
        draw.text((x, bar_height + 2), text, fill=(0, 0, 0), font=font)
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).float() / 255
