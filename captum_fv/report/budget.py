"""What a report spends on each unit besides its optimization: the integrated-gradients budget
of its attributions and the length of its accentuations, decided here (issue 16's goal: the other
phases together at most a quarter of the optimization's time; README, "Cost").
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from ..registry import get_attribution

#: Integrated gradients in a report (explicit ``attribution_kwargs`` win): 24 path points over
#: a path cut at 1% and 5% of the way from the black baseline (where the default model's gradient
#: lives), refined to 10% of the activation change with at most 128 steps. On the top examples of
#: 16 channels spread over ``_blocks.8``: 92 of 96 within 10% at 1.55 s a unit (at most 200
#: steps: 93 at 1.73 s); the whole path from 50 steps to 10% / 200: 94 of 96 at 3.0 s
#: (``attribute``'s own: 5% / 800, uncut).
REPORT_REFINEMENT: Dict[str, Any] = {"n_steps": 24, "path_cuts": (0.01, 0.05), "tolerance": 0.1, "max_steps": 128}

#: Accentuation in a report: steps and learning rate. 12 steps at 0.1 raise a unit 3.7x on its
#: top photos (median, 4 channels of ``_blocks.8``; 16 at 0.08: 4.0x, 32 at 0.05: 4.8x), at the
#: same distance from the photo (median 0.50) and looking alike on a contact sheet, in a third of
#: the time of 32 steps.
ACCENTUATION_STEPS = 12
ACCENTUATION_LR = 0.1

#: Steps of the plain Fourier probe a report's trust block renders per unit for a recipe whose
#: pictures are held to natural statistics (``Recipe.trust_probe``: MaCo, the dataset prior):
#: one image a unit. In the trust calibration (96 px, 64 steps) planted units' Fourier pictures
#: reach 97-114x their best photo, honest ones 3-10x.
TRUST_PROBE_STEPS = 64


def report_attribution_kwargs(attribution: str, given: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The attribution arguments a report uses: :data:`REPORT_REFINEMENT` for a path method
    (integrated gradients), under the ones ``given``."""
    integrates = getattr(get_attribution(attribution), "integrates", False)
    return {**(REPORT_REFINEMENT if integrates else {}), **(given or {})}
