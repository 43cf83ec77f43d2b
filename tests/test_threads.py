"""What agrees, and how closely, when only the number of threads per process changes.

N processes of 1 thread give the very bytes 1 process of 1 thread gives (tests/test_distributed.py).
Another thread count sums in another order: a ~1e-7 relative change per step, which gradient
ascent on the real model amplifies. This test pins the README's statement of the tolerances.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

import captum_fv as fv
from captum_fv.report import NeuronReport


@contextlib.contextmanager
def threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_thread_count_changes_only_what_the_readme_says(real_model):
    data = fv.data.sample_images(size=64, crops=4)
    kw = dict(size=64, steps=12, facets=1, k=2, progress=False, attribution_kwargs={"n_steps": 8, "tolerance": None})
    runs = []
    for n in (1, 2):
        with threads(n):
            runs.append(NeuronReport(real_model, "_blocks.8", data, **kw).build([0, 1]))
    one, two = runs
    for name in one.units:
        a, b = one.units[name].record, two.units[name].record
        # dataset examples: the same examples in the same order, activations to ~1e-6
        assert [e["index"] for e in a["top"] + a["bottom"]] == [e["index"] for e in b["top"] + b["bottom"]]
        for ea, eb in zip(a["top"] + a["bottom"], b["top"] + b["bottom"]):
            assert ea["activation"] == pytest.approx(eb["activation"], rel=1e-5, abs=1e-6)
        # attributions of the same photos: convergence deltas to ~1e-5 of the activation change
        for ea, eb in zip(a["top"], b["top"]):
            assert ea["delta"] == pytest.approx(eb["delta"], rel=1e-3, abs=1e-4 * abs(ea["activation"]) + 1e-6)
        # optimized images: chaotic amplification, so only their activations are bounded (3%)
        assert a["activation"]["positive"] == pytest.approx(b["activation"]["positive"], rel=0.03)
