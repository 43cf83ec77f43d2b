"""One unit of a report as a matplotlib figure, for notebooks."""

from __future__ import annotations

from typing import Any, List, Tuple

import numpy as np

from ..heatmap import attribution_scale, colorbar
from .records import BuiltUnit
from .writer import to_png_array


def _rows(built: BuiltUnit) -> List[Tuple[str, List[Tuple[np.ndarray, str]]]]:
    rec, arr = built.record, built.arrays
    lay = rec["files_layout"]
    act = rec["activation"]
    optima = [(arr[lay["positive"]], f"positive\n{act['positive']:.3g}")]
    optima += [(arr[f], f"facet {j + 1}\n{a:.3g}") for j, (f, a) in enumerate(zip(lay["facets"], act["facets"]))]
    if lay["negative"]:
        optima.append((arr[lay["negative"]], f"negative\n{act['negative']:.3g}"))
    snaps = [(arr[s["file"]], f"step {s['step']}") for s in lay["snapshots"]]
    top = []
    for e in rec["top"]:
        delta = "" if e["delta"] is None else f"δ {e['delta']:.2g}"
        top += [(arr[e["image"]], f"{e['activation']:.3g}"), (arr[e["overlay"]], delta)]
    if top and built.attribution is not None:
        # The overlays share one scale per unit (records.unit_arrays); the bar says what full colour means.
        scale = attribution_scale(built.attribution.attributions)
        top.append((to_png_array(colorbar(scale)), "attribution\nblue - / red +"))
    bottom = [(arr[e["image"]], f"{e['activation']:.3g}") for e in rec["bottom"]]
    return [
        ("optimized", optima),
        ("progress", snaps),
        ("top examples + attribution", top),
        ("bottom examples", bottom),
    ]


def unit_figure(built: BuiltUnit) -> Any:
    """Optima, facets, snapshots, top examples with their signed attribution overlays and a colour
    bar, bottom examples."""
    import matplotlib.pyplot as plt

    rows = [(t, r) for t, r in _rows(built) if r]
    cols = max(len(r) for _, r in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.6 * cols, 1.9 * len(rows)), squeeze=False)
    for (title, row), ax_row in zip(rows, axes):
        for ax, item in zip(ax_row, row + [None] * (cols - len(row))):
            ax.axis("off")
            if item is not None:
                img, caption = item
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
                ax.set_title(caption, fontsize=7)
        ax_row[0].text(
            -0.1, 0.5, title, transform=ax_row[0].transAxes, rotation=90, ha="right", va="center", fontsize=8
        )
    rec = built.record
    ratio = f"{rec['ratio']:.2f}x" if rec["ratio"] is not None else "n/a"
    fig.suptitle(f"{rec['title']} in {rec['layer']} (ratio to best dataset example: {ratio})", fontsize=10)
    fig.tight_layout()
    return fig
