"""The path-similarity curve of a unit's trust block as a small SVG drawing, for its page."""

from __future__ import annotations

import math
from html import escape
from typing import Any, List, Sequence, Tuple

#: The file the unit page shows (written into the unit's folder).
PLOT_FILE = "trust_path.svg"

WIDTH, HEIGHT = 380, 200
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 26, 52
TOP_COLOUR, RANDOM_COLOUR, GAP_COLOUR = "#1f5fa8", "#8a8a8a", "#cfe0f3"


def _range(values: Sequence[float]) -> Tuple[float, float]:
    """The y range: 0 to 1 at least, widened to whole tenths around the values."""
    lo, hi = min([0.0, *values]), max([1.0, *values])
    return math.floor(lo * 10) / 10, math.ceil(hi * 10) / 10


def _points(xs: List[float], ys: Sequence[float], y_of: Any) -> str:
    return " ".join(f"{x:.1f},{y_of(y):.1f}" for x, y in zip(xs, ys))


def path_plot(path: Any) -> str:
    """An SVG of ``path`` (a :class:`captum_fv.trust.PathSimilarity`): per layer, the Spearman
    correlation of the pictures with the unit's top examples (solid) and with random photos
    (dashed), the gap between them shaded, and the summary in the title."""
    layers, top, rand = list(path.layers), [float(v) for v in path.top], [float(v) for v in path.random]
    lo, hi = _range(top + rand)
    w, h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = max(len(layers), 1)
    xs = [LEFT + (w * (i + 0.5) / n) for i in range(len(layers))]

    def y_of(v: float) -> float:
        return TOP + h * (hi - v) / (hi - lo)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="system-ui, sans-serif" font-size="10">',
        f"<title>path similarity per layer (summary {path.summary:+.3f})</title>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="14" font-size="11">path similarity: mean gap (top − random) '
        f'<tspan font-weight="bold">{path.summary:+.3f}</tspan></text>',
    ]
    steps = int(round((hi - lo) / 0.25))
    for k in range(steps + 1):  # grid every 0.25
        v = lo + k * (hi - lo) / max(steps, 1)
        y = y_of(v)
        stroke = "#999" if abs(v) < 1e-9 else "#e4e4e4"
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + w}" y2="{y:.1f}" stroke="{stroke}"/>')
        out.append(f'<text x="{LEFT - 4}" y="{y + 3:.1f}" text-anchor="end" fill="#555">{v:.2f}</text>')
    if len(xs) > 1:
        poly = _points(xs, top, y_of) + " " + _points(xs[::-1], rand[::-1], y_of)
        out.append(f'<polygon points="{poly}" fill="{GAP_COLOUR}" opacity="0.7"/>')
    for ys, colour, dash in ((rand, RANDOM_COLOUR, ' stroke-dasharray="4 3"'), (top, TOP_COLOUR, "")):
        out.append(f'<polyline points="{_points(xs, ys, y_of)}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        out += [f'<circle cx="{x:.1f}" cy="{y_of(v):.1f}" r="3" fill="{colour}"/>' for x, v in zip(xs, ys)]
    for x, name in zip(xs, layers):
        label = escape(name if len(name) <= 14 else "…" + name[-13:])
        out.append(
            f'<text x="{x:.1f}" y="{TOP + h + 12}" text-anchor="end" fill="#333" '
            f'transform="rotate(-30 {x:.1f} {TOP + h + 12})">{label}</text>'
        )
    legend_y = HEIGHT - 6
    out += [
        f'<line x1="{LEFT}" y1="{legend_y - 3}" x2="{LEFT + 18}" y2="{legend_y - 3}" stroke="{TOP_COLOUR}" '
        'stroke-width="2"/>',
        f'<text x="{LEFT + 22}" y="{legend_y}">to the top examples</text>',
        f'<line x1="{LEFT + 140}" y1="{legend_y - 3}" x2="{LEFT + 158}" y2="{legend_y - 3}" '
        f'stroke="{RANDOM_COLOUR}" stroke-width="2" stroke-dasharray="4 3"/>',
        f'<text x="{LEFT + 162}" y="{legend_y}">to random photos (Spearman ρ)</text>',
        "</svg>",
    ]
    return "\n".join(out) + "\n"
