"""captum_fv.unit: the one reading of a neuron selector, many units from sequences, and the one
chunk planner / slot layout used by NeuronVisualization and NeuronReport."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import captum_fv as fv
from captum_fv import visualization as viz_mod
from captum_fv.objectives.base import spatial_mean
from captum_fv.unit import ChannelSelector, Unit, as_units, is_many
from captum_fv.visualization import SlotLayout, plan_chunks

KW = dict(size=32, steps=2, progress=False)


def center(a: torch.Tensor) -> torch.Tensor:
    return a[:, 0, 1, 1]


def test_parse_kinds_names_and_equality():
    assert fv.channel is not None and fv.ChannelSelector is ChannelSelector and fv.Unit is Unit
    c, n, f = Unit.parse(3), Unit.parse((3, 1, 2)), Unit.parse(center)
    assert (c.kind, n.kind, f.kind) == ("channel", "neuron", "function")
    assert (c.title, n.title, f.title) == ("channel 3", "neuron (3, 1, 2)", "center")
    assert (c.file_name, n.file_name, f.file_name) == ("channel_0003", "neuron_3_1_2", "fn_center")
    assert c == Unit.parse(fv.channel(3)) == Unit.parse(np.int64(3)) and c != Unit.parse(4)
    assert f.identity.startswith("fn_center:") and c.identity == "channel_0003"
    with pytest.raises(TypeError, match="cannot be a bool"):
        Unit.parse(True)
    with pytest.raises(TypeError, match="neuron selector"):
        Unit.parse("five")


def test_channel_is_the_spatial_mean_everywhere():
    a = torch.randn(2, 5, 4, 4)
    want = spatial_mean(a[:, 2])
    torch.testing.assert_close(fv.channel(2)(a), want)
    torch.testing.assert_close(Unit.parse(2).value(a), want)
    torch.testing.assert_close(Unit.parse(2).neuron_selector()(a), want)
    assert Unit.parse(2).neuron_selector(aggregates=False) == 2


def test_is_single():
    assert Unit.parse((1, 2, 3)).is_single((4, 5, 5))
    assert not Unit.parse((1, slice(None), 3)).is_single((4, 5, 5))
    assert not Unit.parse(1).is_single((4, 5, 5)) and Unit.parse(1).is_single((4,))
    assert not Unit.parse(center).is_single((4, 5, 5))


def test_as_units_sequences_and_tuples():
    assert [u.channel for u in as_units(range(3))] == [0, 1, 2]
    assert [u.channel for u in as_units(np.array([4, 5]))] == [4, 5]
    assert [u.channel for u in as_units(torch.tensor([6]))] == [6]
    assert as_units((1, 2, 2)) == [Unit.parse((1, 2, 2))]  # a tuple is one neuron
    assert is_many(range(2)) and is_many([0]) and not is_many((0, 1)) and not is_many(3)
    with pytest.raises(ValueError, match="no neuron selectors"):
        as_units([])


def test_visualize_takes_any_sequence_and_a_tuple_as_one_neuron(tiny):
    nv = fv.NeuronVisualization(tiny, "bn2")
    out = nv.visualize(range(3), **KW)
    assert isinstance(out, list) and [v.selector for v in out] == [0, 1, 2]
    arr = nv.visualize(np.array([1, 2]), **KW)
    assert [v.name for v in arr] == ["channel 1", "channel 2"]
    one = nv.visualize((1, 2, 2), **KW)
    assert isinstance(one, fv.Visualization) and one.name == "neuron (1, 2, 2)"
    torch.testing.assert_close(one.activation["positive"], fv.activations(tiny, "bn2", one.positive)[:, 1, 2, 2])


def test_plan_chunks_and_layout():
    assert plan_chunks(5, 3, 6) == [range(0, 2), range(2, 4), range(4, 5)]
    assert plan_chunks(2, 7, 4) == [range(0, 1), range(1, 2)]  # a unit is never split
    assert plan_chunks(0, 2, 8) == []
    lay = SlotLayout.of(2, facets=2, negative=True)
    assert (lay.positive, lay.facets, lay.negative) == ([8], [9, 10], [11])
    assert SlotLayout.per_unit(2, True) == 4 and lay.maximized == [8, 9, 10]
    assert SlotLayout.of(1, 0, False).roles() == {"positive": [1], "facets": [], "negative": []}


def test_visualize_uses_the_planner(tiny, monkeypatch):
    seen = []
    real = viz_mod.plan_chunks
    monkeypatch.setattr(viz_mod, "plan_chunks", lambda *a: seen.append(a) or real(*a))
    fv.NeuronVisualization(tiny, "bn2").visualize([0, 1, 2], facets=1, negative=True, max_batch=6, **KW)
    assert seen == [(3, 3, 6)]
