"""The verdict: one word and one sentence from the measures, with thresholds chosen by the
calibration in ``benchmarks/bench_trust.py`` (README, "How far to trust a picture")."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

#: Path similarity (mean of top - random Spearman over the path) below which the picture is
#: processed no more like the unit's top examples than like any photo.
PATH_OFF = 0.0
#: Path similarity from which it is processed clearly like them.
PATH_OK = 0.02
#: MIS of the visualizations at or below which they predict the unit no better than chance.
MIS_OFF = 0.6
#: MIS of the visualizations from which they predict it well.
MIS_OK = 0.75
#: MIS of natural examples below which the unit is not predictable from photos at all, so a
#: picture of it cannot be checked against them.
MIS_NATURAL_MIN = 0.6
#: Activation over the best natural one above which the picture reaches values no photo comes
#: near: the unit may answer to something photos never show.
RATIO_MAX = 20.0

CONSISTENT, CHECK, OFF_NATURAL = "consistent", "check", "off-natural"


@dataclass(frozen=True)
class Verdict:
    label: str   # "consistent", "check" or "off-natural"
    reason: str  # one sentence saying why


def verdict(path: float, mis_fv: float, mis_natural: float, ratio: Optional[float]) -> Verdict:
    """The verdict from the path similarity summary, both interpretability scores and the ratio."""
    far = ratio is not None and ratio > RATIO_MAX
    if path < PATH_OFF and (mis_fv <= MIS_OFF or far):
        return Verdict(OFF_NATURAL, f"the network processes the picture less like the unit's top examples "
                       f"than like random photos (path {path:+.3f}) and it "
                       + (f"drives the unit to {ratio:.0f}x its best photo" if far else
                          f"predicts the unit at chance (MIS {mis_fv:.2f})") + ".")
    if far:
        # Far beyond every photo: the unit answers to something photos never show (a planted
        # branch does exactly this), so the picture is not what the unit does on real data.
        return Verdict(OFF_NATURAL, f"the picture drives the unit to {ratio:.0f}x its best photo: it shows "
                       "something no photo contains.")
    if mis_fv <= MIS_OFF and mis_natural >= MIS_NATURAL_MIN:
        return Verdict(OFF_NATURAL, f"the picture tells top from bottom examples at chance (MIS {mis_fv:.2f}) "
                       f"while the unit's own photos do (MIS {mis_natural:.2f}).")
    if mis_natural < MIS_NATURAL_MIN:
        return Verdict(CHECK, f"even the unit's top photos barely predict it (MIS {mis_natural:.2f}), so "
                       "the picture cannot be checked against them.")
    if path >= PATH_OK and mis_fv >= MIS_OK:
        return Verdict(CONSISTENT, f"the picture travels the network like the unit's top examples "
                       f"(path {path:+.3f}) and predicts them (MIS {mis_fv:.2f}, photos {mis_natural:.2f}).")
    return Verdict(CHECK, f"the measures are between the thresholds (path {path:+.3f}, MIS {mis_fv:.2f}, "
                   f"photos {mis_natural:.2f}): compare the picture with the top examples yourself.")
