"""NeuronVisualization and neuron selectors: selector kinds, result layout, batching, errors,
Captum interoperability; with the real model, that diversity makes facets differ."""

from __future__ import annotations

import pytest
import torch
from captum.attr import NeuronGradient, NeuronIntegratedGradients
from conftest import assert_model_unchanged, model_state
from hypothesis import given, settings
from hypothesis import strategies as st

import captum_fv as fv
import captum_fv.visualization as viz_mod
from captum_fv import objectives as obj
from captum_fv.unit import Unit

KW = dict(size=32, steps=6, progress=False, transforms=[])
LAYER = "bn2"  # (24, 16, 16) at 32 px


def center_3x3(a):
    return a[:, 4, 7:10, 7:10].mean((1, 2))


SELECTORS = {
    "int": (5, lambda a: a[:, 5].mean((1, 2))),
    "tuple": ((5, 8, 8), lambda a: a[:, 5, 8, 8]),
    "callable": (center_3x3, center_3x3),
    "channel": (fv.channel(5), lambda a: a[:, 5].mean((1, 2))),
}


@pytest.mark.parametrize("kind", list(SELECTORS))
def test_selector_kinds_and_result_layout(tiny, kind):
    sel, manual = SELECTORS[kind]
    before = model_state(tiny)
    v = fv.NeuronVisualization(tiny, LAYER).visualize(sel, facets=2, negative=True, **KW)
    assert_model_unchanged(tiny, before)
    assert isinstance(v, fv.Visualization) and v.selector is sel and v.layer == LAYER
    assert v.positive.shape == (1, 3, 32, 32)
    assert v.facets.shape == (2, 3, 32, 32)
    assert v.negative.shape == (1, 3, 32, 32)
    for t in (v.positive, v.facets, v.negative):
        assert float(t.min()) >= 0 and float(t.max()) <= 1
    assert set(v.activation) == {"positive", "facets", "negative"}
    # each reported activation is the selector on fv.activations of that very image
    for role, imgs in [("positive", v.positive), ("facets", v.facets), ("negative", v.negative)]:
        want = manual(fv.activations(tiny, LAYER, imgs))
        torch.testing.assert_close(v.activation[role], want, rtol=1e-5, atol=1e-5)
    # positive is maximized and negative minimized
    start = manual(fv.activations(tiny, LAYER, v.snapshots[0]))
    assert v.activation["positive"][0] > start[0]
    assert v.activation["negative"][0] < start[0] < v.activation["positive"][0]
    assert (v.activation["facets"] > start[0]).all()
    assert v.history.shape == (6,)


def test_no_facets_no_negative(tiny):
    v = fv.NeuronVisualization(tiny, tiny.bn2).visualize(3, **KW)  # layer as a module
    assert v.positive.shape == (1, 3, 32, 32) and v.facets.shape == (0, 3, 32, 32)
    assert v.negative is None and v.layer == "bn2"
    assert v.activation["negative"].numel() == 0


class RenderSpy:
    def __init__(self, monkeypatch):
        self.batches = []
        real = viz_mod.render

        def spy(*args, **kwargs):
            self.batches.append(kwargs["param"]().shape[0])
            return real(*args, **kwargs)

        monkeypatch.setattr(viz_mod, "render", spy)


def test_list_of_selectors_in_one_batch(tiny, monkeypatch):
    spy = RenderSpy(monkeypatch)
    sels = [1, fv.channel(7), (3, 2, 2), center_3x3]
    out = fv.NeuronVisualization(tiny, LAYER).visualize(sels, facets=1, negative=True, **KW)
    assert spy.batches == [4 * 3]  # one render for all units
    assert isinstance(out, list) and len(out) == 4
    manual = [lambda a: a[:, 1].mean((1, 2)), lambda a: a[:, 7].mean((1, 2)), lambda a: a[:, 3, 2, 2], center_3x3]
    for v, sel, fn in zip(out, sels, manual):
        assert v.selector is sel
        assert v.positive.shape == (1, 3, 32, 32) and v.facets.shape == (1, 3, 32, 32)
        assert v.negative.shape == (1, 3, 32, 32)
        for role in ("positive", "facets", "negative"):
            imgs = getattr(v, role)
            torch.testing.assert_close(v.activation[role], fn(fv.activations(tiny, LAYER, imgs)), rtol=1e-5, atol=1e-5)
        assert v.activation["negative"][0] < v.activation["positive"][0]
    # every unit got its own images
    assert not torch.equal(out[0].positive, out[1].positive)


def test_max_batch_splits(tiny, monkeypatch):
    spy = RenderSpy(monkeypatch)
    sels = [0, 1, 2, 3, 4]
    out = fv.NeuronVisualization(tiny, LAYER).visualize(sels, facets=1, negative=True, max_batch=6, **KW)
    assert spy.batches == [6, 6, 3]  # 3 images per unit, at most 6 per batch
    assert [v.selector for v in out] == sels
    for v, c in zip(out, sels):
        torch.testing.assert_close(v.activation["positive"], fv.activations(tiny, LAYER, v.positive)[:, c].mean((1, 2)))
    one = fv.NeuronVisualization(tiny, LAYER).visualize([0], facets=3, max_batch=1, **KW)
    assert spy.batches[-1] == 4 and one[0].facets.shape[0] == 3  # a unit is never split


def test_selector_errors(tiny):
    nv = fv.NeuronVisualization(tiny, LAYER)
    with pytest.raises(ValueError, match=r"2 indices.*\(24, 16, 16\)"):
        nv.visualize((1, 2), **KW)
    with pytest.raises(ValueError, match=r"returned shape \(1, 24\).*one value per example"):
        nv.visualize(lambda a: a.mean((2, 3)), **KW)
    with pytest.raises(IndexError, match="24 channels"):
        nv.visualize(24, **KW)
    with pytest.raises(IndexError, match="24 channels"):
        nv.visualize(fv.channel(30), **KW)
    with pytest.raises(IndexError, match="size 16"):
        nv.visualize((0, 16, 0), **KW)
    with pytest.raises(TypeError, match="neuron selector"):
        nv.visualize("five", **KW)
    with pytest.raises(ValueError, match="non-negative"):
        fv.channel(-1)
    with pytest.raises(ValueError, match="no neuron selectors"):
        nv.visualize([], **KW)
    with pytest.raises(ValueError, match="facets"):
        nv.visualize(0, facets=-1, **KW)
    with pytest.raises(ValueError, match="no layer named"):
        fv.NeuronVisualization(tiny, "bn9")


def test_channel_selector_in_captum(tiny):
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    sel = fv.channel(3)
    a = fv.activations(tiny, LAYER, x)
    torch.testing.assert_close(sel(a), a[:, 3].mean((1, 2)))
    assert sel == fv.channel(3) and sel != fv.channel(4) and repr(sel) == "channel(3)"
    # NeuronGradient: the gradient of the selected value, which we compute by hand
    grad = NeuronGradient(tiny, tiny.bn2).attribute(x.clone().requires_grad_(True), neuron_selector=sel)
    xr = x.clone().requires_grad_(True)
    h = tiny.bn2(tiny.conv2(tiny.relu1(tiny.bn1(tiny.conv1(xr)))))
    (want,) = torch.autograd.grad(h[:, 3].mean((1, 2)).sum(), xr)
    torch.testing.assert_close(grad, want, rtol=1e-4, atol=1e-6)
    # NeuronIntegratedGradients: completeness, sum of attributions = value(x) - value(baseline)
    ig = NeuronIntegratedGradients(tiny, tiny.bn2)
    attr = ig.attribute(x, neuron_selector=sel, baselines=torch.zeros_like(x), n_steps=200)
    assert attr.shape == x.shape
    gap = sel(a) - sel(fv.activations(tiny, LAYER, torch.zeros_like(x)))
    torch.testing.assert_close(attr.flatten(1).sum(1), gap, rtol=0.05, atol=0.02)


@settings(max_examples=30, deadline=None)
@given(c=st.integers(-24, 23), y=st.integers(-16, 15), x=st.integers(-16, 15), seed=st.integers(0, 99))
def test_tuple_selector_equals_direct_indexing(c, y, x, seed):
    a = torch.randn(3, 24, 16, 16, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(Unit.parse((c, y, x)).value(a), a[:, c, y, x])


def test_tuple_selector_with_slices_sums_like_captum():
    a = torch.randn(2, 4, 5, 5)
    v = Unit.parse((1, slice(0, 2), slice(1, 3))).value(a)
    torch.testing.assert_close(v, a[:, 1, 0:2, 1:3].sum((1, 2)))


# --------------------------------------------------------------------------- real model


@pytest.mark.slow
def test_real_diversity_makes_facets_less_alike(real_model):
    layer, c, size, steps, facets = "_blocks.8", 2, 64, 24, 3

    def mean_pairwise_similarity(images):
        s = obj.similarity(fv.activations(real_model, layer, images))
        n = len(images)
        return float((s.sum() - s.diagonal().sum()) / (n * (n - 1)))

    nv = fv.NeuronVisualization(real_model, layer)
    kw = dict(facets=facets, size=size, steps=steps, progress=False)
    default = nv.visualize(c, **kw)
    strong = nv.visualize(c, diversity_weight=2.0, **kw)
    independent = torch.cat(
        [
            fv.render(real_model, obj.channel(layer, c), size=size, steps=steps, seed=s, progress=False).images
            for s in range(facets)
        ]
    )
    sim_ind = mean_pairwise_similarity(independent)
    sim_def = mean_pairwise_similarity(default.facets)
    sim_strong = mean_pairwise_similarity(strong.facets)
    assert sim_def < sim_ind - 0.1  # the default weight already separates them
    assert sim_strong < 0.6 * sim_ind  # and a larger weight much more
    # facets still excite the unit: well above its value on the starting noise
    start = float(fv.activations(real_model, layer, default.snapshots[0])[:, c].mean())
    assert (strong.activation["facets"] > start + 5).all()


def test_forward_function_like_captum(tiny):
    """A plain forward function with the layer as a module, as Captum's (forward_func, layer)."""
    by_fn = fv.NeuronVisualization(lambda x: tiny(x), tiny.bn2).visualize([2, (1, 3, 3)], **KW)
    by_module = fv.NeuronVisualization(tiny, "bn2").visualize([2, (1, 3, 3)], **KW)
    for a, b in zip(by_fn, by_module):
        assert torch.equal(a.positive, b.positive)
        torch.testing.assert_close(a.activation["positive"], b.activation["positive"])
    assert all(p.grad is None for p in tiny.parameters())
