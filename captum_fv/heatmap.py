"""Heat maps of attributions, drawn as Captum's visualization does (no matplotlib needed).

>>> a = fv.attribute(model, "_blocks.8", images[:1], 12, n_steps=8, tolerance=None)
>>> rgb = overlay(images[0], a.attributions[0], sign="positive")   # (3, H, W) in [0, 1]
"""

from __future__ import annotations

from typing import Dict, Sequence

import torch

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
