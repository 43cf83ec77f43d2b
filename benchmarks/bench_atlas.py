"""Activation atlas cost on the default model (EfficientNet-Lite0). Prints figures measured in one run.

    python benchmarks/bench_atlas.py [--quick] [--layer _blocks.8] [--out DIR]

* build:    an atlas of the layer over 256 crops of the bundled photos (1024 sampled activations,
            a 10 x 10 grid, 80 px, 96 steps; --quick: 512 samples, 8 x 8, 64 px, 32 steps): seconds
            per phase, render seconds per cell, and the render time over ``steps`` bare truncated
            forward+backward passes of the same batches (1.0 would be no overhead at all).
* batching: seconds per cell with 16 cells sharing one optimization vs each cell alone.

The page is written to --out (default benchmarks/out/atlas) for a look in a browser.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

import captum_fv as fv

OUT = os.path.join(os.path.dirname(__file__), "out", "atlas")


def build(model: torch.nn.Module, layer: str, quick: bool, out: str) -> fv.atlas.Atlas:
    kw = dict(samples=512, grid=8, size=64, steps=32) if quick else dict(samples=1024, grid=10, size=80, steps=96)
    photos = fv.data.sample_images(size=160, crops=32)
    atlas = fv.atlas.build(model, layer, photos, per_image=4, progress=False, **kw)
    c = atlas.cost
    print(
        f"[build] {layer}: {len(atlas.samples)} samples of {atlas.samples.n_images} images, "
        f"{atlas.layout.method} layout, {kw['grid']}x{kw['grid']} grid -> {c.cells} cells in batches {c.batches}"
    )
    print(
        f"[build] sampling {c.sample_s:.1f} s, layout {c.layout_s:.1f} s, render {c.render_s:.1f} s "
        f"({c.per_cell_s:.2f} s per cell, {kw['steps']} steps at {kw['size']} px); total {c.total_s:.1f} s"
    )
    print(
        f"[build] render vs bare forward+backward of the same batches: {c.render_s:.1f} s vs "
        f"{c.bare_s:.1f} s: ratio {c.ratio:.2f}"
    )
    raised = sum(cell.projection > cell.projection_start for cell in atlas.cells)
    print(f"[build] cells whose projection rose above the start: {raised} of {c.cells}")
    page = atlas.write(out)
    print(f"[build] page {page} ({page.stat().st_size / 1e3:.0f} kB)")
    return atlas


def batching(model: torch.nn.Module, atlas: fv.atlas.Atlas, layer: str, quick: bool) -> None:
    vectors = torch.stack([c.vector for c in atlas.cells[:16]])
    n, steps, size = len(vectors), 8 if quick else 16, 64
    fv.atlas.render_cells(model, layer, vectors[:1], size=size, steps=2)  # warm-up
    t = time.perf_counter()
    fv.atlas.render_cells(model, layer, vectors, size=size, steps=steps)
    shared = (time.perf_counter() - t) / n
    t = time.perf_counter()
    for i in range(n):
        fv.atlas.render_cells(model, layer, vectors[i : i + 1], size=size, steps=steps)
    alone = (time.perf_counter() - t) / n
    print(
        f"[batching] {n} cells, {steps} steps at {size} px: {shared:.2f} s per cell sharing one "
        f"optimization vs {alone:.2f} s alone: {alone / shared:.1f}x faster shared"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--layer", default="_blocks.8")
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args()
    fv.tune_cpu_allocator()
    model = fv.models.efficientnet_lite0()
    atlas = build(model, args.layer, args.quick, args.out)
    batching(model, atlas, args.layer, args.quick)


if __name__ == "__main__":
    main()
