"""The verdict: one word and one sentence from the measures, with thresholds chosen by the
calibration in ``benchmarks/bench_trust.py`` (README, "How far to trust a picture")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

#: Path similarity (mean of top - random Spearman over the path) from which the picture travels the
#: network like the unit's top examples, and the stronger level that vouches for a picture
#: that does not beat the best photo (a natural image).
PATH_OK = 0.03
PATH_STRONG = 0.1
#: MIS of the pictures from which they predict the unit, and below which they are no help.
MIS_OK = 0.6
MIS_OFF = 0.5
#: MIS of natural examples below which the unit is hard to predict even from photos.
MIS_NATURAL_MIN = 0.6
#: Activation over the best natural one above which the picture reaches values no photo comes
#: near (a hidden pathway: the planted units reach 38-44x, honest pictures 3-10x) ...
RATIO_MAX = 20.0
#: ... and below which it is not an optimum of the unit at all (noise, another unit's picture).
RATIO_MIN = 1.5

CONSISTENT, CHECK, OFF_NATURAL = "consistent", "check", "off-natural"
#: The verdict of a unit the dataset is too small to judge (no measures computed).
NOT_ENOUGH = "not enough examples"
#: Every verdict, most trusted first (an index sorts by this order).
VERDICTS = (CONSISTENT, CHECK, OFF_NATURAL, NOT_ENOUGH)


def thresholds() -> Dict[str, float]:
    """The verdict's thresholds by name."""
    return {
        "PATH_OK": PATH_OK,
        "PATH_STRONG": PATH_STRONG,
        "MIS_OK": MIS_OK,
        "MIS_OFF": MIS_OFF,
        "MIS_NATURAL_MIN": MIS_NATURAL_MIN,
        "RATIO_MAX": RATIO_MAX,
        "RATIO_MIN": RATIO_MIN,
    }


@dataclass(frozen=True)
class Verdict:
    label: str  # "consistent", "check", "off-natural" (or "not enough examples")
    reason: str  # one sentence saying why


def verdict(
    path: float, mis_fv: float, mis_natural: float, ratio: Optional[float], probe_ratio: Optional[float] = None
) -> Verdict:
    """The verdict from the path similarity summary, both interpretability scores and the ratio
    (and ``probe_ratio``: a Fourier probe's, for pictures held to natural statistics).

    off-natural: the ratio or the probe's is above ``RATIO_MAX``, or below ``RATIO_MIN`` with a weak path
    (< ``PATH_OK``) or a useless MIS (< ``MIS_OFF``); consistent: path >= ``PATH_OK`` and MIS >=
    ``MIS_OK`` (path >= ``PATH_STRONG`` when the ratio is below ``RATIO_MIN``); else check."""
    numbers = f"path {path:+.3f}, MIS {mis_fv:.2f} (photos {mis_natural:.2f})"
    r = float("nan") if ratio is None else ratio
    if r > RATIO_MAX:
        return Verdict(
            OFF_NATURAL,
            f"the picture drives the unit to {r:.0f}x its best photo, a value no photo "
            f"comes near: the unit answers to something photos do not show ({numbers}).",
        )
    if probe_ratio is not None and probe_ratio > RATIO_MAX:
        return Verdict(
            OFF_NATURAL,
            f"a Fourier probe drives the unit to {probe_ratio:.0f}x its best photo, a value no photo comes near: "
            f"the unit answers to something photos do not show, which this picture does not fully draw "
            f"({numbers}).",
        )
    similar = path >= PATH_OK and mis_fv >= MIS_OK
    if similar and (r >= RATIO_MIN or path >= PATH_STRONG):
        return Verdict(
            CONSISTENT, f"the picture travels the network like the unit's top examples and predicts them ({numbers})."
        )
    undefined = "no photo drives the unit above zero (there is no ratio to judge by)"
    if not r >= RATIO_MIN and (path < PATH_OK or mis_fv < MIS_OFF):
        if ratio is None:
            return Verdict(OFF_NATURAL, f"{undefined}, and the picture does not resemble its top examples ({numbers}).")
        return Verdict(
            OFF_NATURAL,
            f"the picture neither drives the unit beyond its photos ({r:.2f}x) nor resembles its top examples "
            f"({numbers}).",
        )
    hard = " even its photos predict it poorly;" if mis_natural < MIS_NATURAL_MIN else ""
    if ratio is None:
        return Verdict(
            CHECK,
            f"{undefined}, and the picture resembles its top examples only weakly ({numbers});{hard} "
            "compare them yourself.",
        )
    return Verdict(
        CHECK,
        f"the picture drives the unit ({r:.1f}x its best photo) but the network processes "
        f"it unlike its top examples ({numbers});{hard} compare them yourself.",
    )
