"""Contact sheet of attribution maps: Captum's blended heat map beside the signed overlay, at thumbnail size.

    python benchmarks/sheet_attribution.py [--channels 12,40,77,101] [--thumb 112] [--quick]

The default model's top examples from the bundled photos (``sample_images(crops=4)``) for a few channels of
``_blocks.8``, integrated gradients (``n_steps=16``). Per example: the photo, ``fv.overlay`` (Captum's
absolute-value map in Blues over the grey photo, what reports drew before) and ``signed_overlay`` (one
scale per unit, its colour bar at the row's end), each shrunk to ``--thumb`` px as a page shows it.
Saved to benchmarks/out/attribution_maps.png; prints each unit's scale, blurred (what the colour bar
says) and not, and how far the maximum is above the 99th percentile. ``--quick``: two channels, 64 px
photos, one Captum call of 16 steps (no convergence retries), a smoke run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import List, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import captum_fv as fv  # noqa: E402
from captum_fv.heatmap import attribution_scale, colorbar, overlay, signed_overlay  # noqa: E402
from captum_fv.mining import DatasetExamples  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")
LAYER = "_blocks.8"


def _pil(rgb: torch.Tensor, thumb: int = 0) -> Image.Image:
    arr = (rgb.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    im = Image.fromarray(arr)
    # A browser shrinking a 224 px PNG into a thumbnail filters it; LANCZOS is close to what it shows.
    return im.resize((thumb, thumb * im.height // im.width), Image.LANCZOS) if thumb else im


def sheet(rows: Sequence[tuple], thumb: int) -> Image.Image:
    """rows: (channel, images (N, 3, H, W), attributions (N, 3, H, W), activations (N,))."""
    gap, label_w, head = 6, 34, 16
    n = max(len(r[1]) for r in rows)
    bar_w = thumb
    width = label_w + n * (3 * thumb + gap) + bar_w + gap
    height = head + len(rows) * (thumb + gap)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for j in range(n):
        x = label_w + j * (3 * thumb + gap)
        for k, name in enumerate(("photo", "before: fv.overlay", "signed_overlay")):
            draw.text((x + k * thumb + 2, 2), name if j == 0 or k == 0 else "", fill=(0, 0, 0))
    for r, (c, images, attributions, _) in enumerate(rows):
        y = head + r * (thumb + gap)
        draw.text((2, y + thumb // 2 - 5), f"ch {c}", fill=(0, 0, 0))
        scale = attribution_scale(attributions)
        new = signed_overlay(images, attributions, scale=scale).image
        for j, (img, att) in enumerate(zip(images, attributions)):
            x = label_w + j * (3 * thumb + gap)
            for k, rgb in enumerate((img, overlay(img, att), new[j])):
                canvas.paste(_pil(rgb, thumb), (x + k * thumb, y))
        canvas.paste(_pil(colorbar(scale, width=bar_w)), (label_w + n * (3 * thumb + gap), y + thumb // 2 - 10))
    return canvas


def main(argv: List[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--channels", default="12,40,77,101")
    p.add_argument("--thumb", type=int, default=112)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    channels = [int(c) for c in args.channels.split(",")][: 2 if args.quick else None]
    t0 = time.perf_counter()
    model = fv.models.efficientnet_lite0()
    ds = fv.data.sample_images(size=64 if args.quick else 224, crops=1 if args.quick else 4)
    ex = DatasetExamples(model, LAYER).collect(ds, k=2 if args.quick else 4, units=channels, progress=False)
    rows = []
    for c in channels:
        top = ex.top(c)
        images = torch.stack([ds[int(i)][0] for i in top.indices])
        # --quick skips the convergence retries (tolerance=None): one Captum call of 16 steps.
        tol = {"tolerance": None} if args.quick else {}
        a = fv.attribute(model, LAYER, images, c, attribution="integrated_gradients", n_steps=16, **tol)
        rows.append((c, images, a.attributions.detach(), top.activations))
    t1 = time.perf_counter()
    print(f"{len(channels)} channels x {len(rows[0][1])} top examples, mined and attributed in {t1 - t0:.1f} s")
    print("channel  scale drawn (blurred)  unblurred 99th pct |a|  unblurred max / 99th pct")
    for c, _, att, _ in rows:
        raw = attribution_scale(att, smooth=0)
        peak = float(att.sum(1).abs().max())
        print(f"{c:7d}  {attribution_scale(att):21.2g}  {raw:23.2g}  {peak / raw:24.1f}")
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "attribution_maps.png")
    sheet(rows, args.thumb).save(path)
    print(f"contact sheet: {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
