"""Feature accentuation: raises the unit on given photos while staying close to them, batched
across units and images; in the report, beside each top example's attribution."""

from __future__ import annotations

import json

import torch
from conftest import make_tiny, units_of
from torch import nn

import captum_fv as fv
from captum_fv.report import NeuronReport


def photos(n: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    return nn.functional.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=32, mode="bilinear")


def test_accentuate_raises_the_unit_and_stays_closer_than_unconstrained(tiny):
    x = photos(2)
    kept = fv.accentuate(tiny, "conv3", x, [1, 5], steps=12)
    free = fv.accentuate(tiny, "conv3", x, [1, 5], steps=12, reg_weight=0)
    assert kept.images.shape == (2, 2, 3, 32, 32) and kept.before.shape == kept.after.shape == (2, 2)
    assert kept.reg_layer == "conv1"
    assert bool((kept.after > kept.before).all())
    assert float(kept.distance.mean()) < float(free.distance.mean())
    assert (kept.images - x).abs().mean() < (free.images - x).abs().mean()


def test_accentuate_one_selector_and_per_unit_photos(tiny):
    x = photos(2)
    one = fv.accentuate(tiny, "conv2", x, 3, steps=4)
    assert one.images.shape == (2, 3, 32, 32) and one.before.shape == (2,)
    per_unit = fv.accentuate(tiny, "conv2", [x, x.flip(0)], [3, 4], steps=4)
    assert per_unit.images.shape == (2, 2, 3, 32, 32)


def test_report_with_accentuation_writes_files_and_fields(tmp_path):
    kw = dict(size=32, steps=4, facets=1, k=2, progress=False, attribution_kwargs={"n_steps": 4})
    assert NeuronReport(make_tiny(), "conv2", photos(8), **kw).layers["conv2"].accentuate  # on by default
    rep = NeuronReport(make_tiny(), "conv2", photos(8), accentuate_steps=4, **kw)
    index = rep.run([0, 1], tmp_path / "r")
    unit = units_of(tmp_path / "r") / "channel_0001"
    rec = json.loads((unit / "unit.json").read_text())
    assert rec["accentuation"]["reg_layer"] == "conv1"
    assert all((unit / e["accentuated"]).exists() and "accentuated_after" in e for e in rec["top"])
    assert 'alt="accentuation of' in (unit / "index.html").read_text()
    assert rep.timings["accentuation"] > 0 and index.exists()
    assert rep.settings["accentuate_steps"] == 4
    off = NeuronReport(make_tiny(), "conv2", photos(8), accentuate=False, **kw)
    off.run([1], tmp_path / "off")
    assert not list((units_of(tmp_path / "off") / "channel_0001").glob("*_acc.png"))
    assert "accentuation" not in off.timings and "accentuate_steps" not in off.settings


def test_a_unit_of_the_first_convolution_stays_close_in_that_same_layer(tiny):
    """No earlier layer to regularize in: the unit's own layer, read once (it was read twice)."""
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    acc = fv.accentuate(tiny, "conv1", [x, x], [1, 2], steps=2)
    assert acc.reg_layer == "conv1" and acc.images.shape == (2, 2, 3, 32, 32)
