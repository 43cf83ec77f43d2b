"""Recipes (fourier, maco, aligned): listing, override precedence, bit-identity of the default,
errors, and the "aligned" dataset prior (sorted matching of activation distributions)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import make_tiny, units_of
from PIL import Image
from torch import nn

import captum_fv as fv
from captum_fv import recipe as recipe_lib
from captum_fv.objectives import feature_prior
from captum_fv.objectives.prior import resample_sorted, sorted_distance, sorted_reference
from captum_fv.report import NeuronReport

FAST = dict(size=32, steps=8, progress=False)


def smooth_images(n: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return nn.functional.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=32, mode="bilinear")


def test_recipes_lists_names_with_one_line_descriptions():
    listed = fv.recipes()
    assert {"fourier", "maco", "aligned"} <= set(listed)
    assert all(isinstance(d, str) and d and "\n" not in d for d in listed.values())
    assert recipe_lib.get_recipe(None).name == "fourier"


def test_unknown_recipe_is_a_one_line_error_listing_them(tiny):
    with pytest.raises(ValueError, match=r"unknown recipe 'nope'; the recipes are: fourier, maco, aligned") as e:
        fv.render(tiny, "conv2:1", recipe="nope", **FAST)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="unknown recipe"):
        NeuronReport(tiny, "conv2", smooth_images(4), recipe="nope")


def test_no_recipe_and_fourier_are_bit_identical_to_the_explicit_defaults(tiny):
    plain = fv.render(tiny, "conv2:3", batch=2, **FAST)
    named = fv.render(tiny, "conv2:3", batch=2, recipe="fourier", **FAST)
    p = fv.param.image(32, batch=2, seed=0)
    explicit = fv.render(
        tiny,
        "conv2:3",
        param=p,
        transforms=fv.transforms.standard(32),
        lr=0.05,
        optimizer=lambda ps: torch.optim.Adam(ps, lr=0.05),
        **FAST,
    )
    assert torch.equal(plain.images, named.images) and torch.equal(plain.history, named.history)
    assert torch.equal(plain.images, explicit.images)


def test_each_objective_kind_gets_its_default_recipe(tiny, monkeypatch):
    cls, unit = fv.objectives.class_logit([1, 2], batch=[0, 1]), fv.objectives.channel("conv2", 3)
    assert recipe_lib.objective_kind(cls) == "class" and recipe_lib.objective_kind(unit) == "unit"
    assert recipe_lib.objective_kind(cls + 0.1 * unit) == "unit"  # a hidden layer read: not a class image
    assert recipe_lib.default_recipe(cls) == recipe_lib.DEFAULTS["class"]
    assert recipe_lib.default_recipe(unit) == recipe_lib.DEFAULTS["unit"] == recipe_lib.DEFAULT
    # with an explicit param the recipe's optimizer must suit Fourier images: the plain default
    assert recipe_lib.default_recipe(cls, param=fv.param.image(8)) == recipe_lib.DEFAULT
    # the render follows the table: no recipe means the kind's recipe, here made "maco" for classes
    monkeypatch.setitem(recipe_lib.DEFAULTS, "class", "maco")
    plain = fv.render(tiny, cls, batch=2, **FAST)
    named = fv.render(tiny, cls, batch=2, recipe="maco", **FAST)
    fourier = fv.render(tiny, cls, batch=2, recipe="fourier", **FAST)
    assert torch.equal(plain.images, named.images) and not torch.equal(plain.images, fourier.images)
    assert torch.equal(
        fv.render(tiny, "conv2:3", **FAST).images, fv.render(tiny, "conv2:3", recipe="fourier", **FAST).images
    )


def test_class_units_get_maco_by_default_where_the_model_takes_rgb(tiny):
    cls = fv.objectives.class_logit(1)
    assert recipe_lib.DEFAULTS["class"] == "maco" and recipe_lib.default_recipe(cls) == "maco"
    assert recipe_lib.default_recipe(cls, channels=1) == recipe_lib.DEFAULT  # maco's spectrum is RGB
    assert fv.NeuronVisualization(tiny, None).default_recipe(1) == "maco"
    assert fv.NeuronVisualization(tiny, "conv2").default_recipe(1) == recipe_lib.DEFAULT
    assert NeuronReport(tiny, None, smooth_images(4)).layers[""].recipe == "maco"
    plain = fv.NeuronVisualization(tiny, None).visualize(1, size=32, steps=4, progress=False)
    named = fv.NeuronVisualization(tiny, None).visualize(1, size=32, steps=4, progress=False, recipe="maco")
    assert torch.equal(plain.positive, named.positive)


def test_explicit_settings_override_the_recipe():
    spec = recipe_lib.ParamSpec(16, 2, 3, 0)
    mine = fv.param.image(16, batch=2, fft=False)
    made = recipe_lib.setup("fourier", spec, param=mine, transforms=[], lr=0.5)
    assert made.param is mine
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(made.transform(x, torch.Generator()), x)  # [] means no transform
    opt = made.optimizer([torch.zeros(1, requires_grad=True)])
    assert isinstance(opt, torch.optim.Adam) and opt.param_groups[0]["lr"] == 0.5
    custom = recipe_lib.setup("fourier", spec, optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1))
    assert isinstance(custom.optimizer([torch.zeros(1, requires_grad=True)]), torch.optim.SGD)
    default = recipe_lib.setup("fourier", spec)
    assert default.optimizer([torch.zeros(1, requires_grad=True)]).param_groups[0]["lr"] == 0.05


def test_a_recipe_needing_examples_says_so(tiny):
    with pytest.raises(ValueError, match="needs natural examples"):
        fv.render(tiny, "conv2:1", recipe="aligned", **FAST)
    with pytest.raises(ValueError, match="dataset="):
        fv.NeuronVisualization(tiny, "conv2").visualize(1, recipe="aligned", **FAST)


def test_prior_is_zero_at_a_match_and_positive_otherwise():
    acts = torch.randn(3, 5, 4, 4)
    ref = sorted_reference(acts)
    assert ref.shape == (5, 48)
    same = sorted_distance(acts.transpose(0, 1).reshape(1, 5, 48), ref)  # the same values, one image
    assert same.item() == 0.0
    other = sorted_distance(acts[:1] * 2 + 1, ref)
    assert other.item() > 0
    # a permutation of positions does not change a distribution
    assert sorted_distance(acts[:1].flip(-1), sorted_reference(acts[:1])).item() == 0.0
    assert torch.equal(resample_sorted(ref, 48), ref) and resample_sorted(ref, 7).shape == (5, 7)


def test_feature_prior_objective_on_images_equal_to_the_examples(tiny):
    ex = smooth_images(1)
    acts = recipe_lib.reference_activations(tiny, tiny, ["conv2"], ex)["conv2"]
    cost = feature_prior("conv2", sorted_reference(acts))
    ctx = fv.objectives.Context(ex, ex, {"conv2": acts}, {"conv2": "conv2"})
    assert cost(ctx).item() == 0.0
    moved = recipe_lib.reference_activations(tiny, tiny, ["conv2"], smooth_images(1, seed=5))["conv2"]
    assert cost(fv.objectives.Context(ex, ex, {"conv2": moved}, {"conv2": "conv2"})).item() > 0


def test_prior_layers_spread_over_the_numbered_container():
    seq = nn.Sequential(*[nn.Conv2d(3, 3, 1) for _ in range(9)])
    assert recipe_lib.prior_layers(seq, "8") == ["3", "5", "8"]
    nested = nn.Module()
    nested.blocks = nn.ModuleList([nn.Sequential(nn.Conv2d(3, 3, 1)) for _ in range(7)])
    assert recipe_lib.prior_layers(nested, "blocks.6.0") == ["blocks.2", "blocks.4", "blocks.6.0"]
    assert recipe_lib.prior_layers(make_tiny(), "conv3") == ["conv3"]  # no container: the layer only


def test_aligned_brings_the_statistics_closer_to_the_examples_than_fourier(tiny):
    ex = smooth_images(6)
    out = {}
    for name in ("fourier", "aligned"):
        r = fv.render(tiny, "conv3:5", recipe=name, examples=ex, steps=24, size=32, progress=False)
        acts = recipe_lib.reference_activations(tiny, tiny, ["conv3"], torch.cat([r.images, ex]))["conv3"]
        out[name] = sorted_distance(acts[:1], sorted_reference(acts[1:])).item()
    assert out["aligned"] < 0.7 * out["fourier"], out


def test_visualize_aligned_mines_each_units_examples(tiny):
    data = smooth_images(8)
    many = fv.NeuronVisualization(tiny, "conv2").visualize(
        [1, 2], recipe="aligned", dataset=data, k=2, facets=1, negative=True, **FAST
    )
    assert [v.positive.shape for v in many] == [(1, 3, 32, 32)] * 2
    given = fv.NeuronVisualization(tiny, "conv2").visualize(
        [1, 2],
        recipe="aligned",
        examples=[
            fv.DatasetExamples(tiny, "conv2").collect(data, k=2, units=[u], progress=False).images(u) for u in (1, 2)
        ],
        facets=1,
        negative=True,
        **FAST,
    )
    assert all(torch.equal(a.positive, b.positive) for a, b in zip(many, given))


def test_report_recipe_is_a_setting_and_aligned_runs(tmp_path, tiny):
    data = smooth_images(8)
    kw = dict(size=32, steps=4, facets=1, k=2, progress=False, attribution_kwargs={"n_steps": 4})
    assert "recipe" not in NeuronReport(tiny, "conv2", data, **kw).settings  # old reports still resume
    rep = NeuronReport(tiny, "conv2", data, recipe="aligned", **kw)
    assert rep.settings["recipe"] == "aligned"
    rep.run([0, 1], tmp_path / "r")
    assert (units_of(tmp_path / "r") / "channel_0001" / "positive.png").exists()
    assert "(recipe <code>aligned</code>)" in (tmp_path / "r" / "index.html").read_text()  # said where it is read


def test_a_maco_report_draws_each_units_transparency_map(tmp_path, tiny):
    kw = dict(size=32, steps=4, facets=1, k=2, progress=False, attribution="gradient", trust=False, labels=False)
    NeuronReport(tiny, "conv2", smooth_images(8), recipe="maco", **kw).run([0], tmp_path / "maco")
    unit = units_of(tmp_path / "maco") / "channel_0000"
    drawn = np.asarray(Image.open(unit / "positive_transparency.png"))
    assert drawn.shape == (32, 32, 3) and not np.array_equal(drawn, np.asarray(Image.open(unit / "positive.png")))
    assert "positive_transparency.png" in (unit / "index.html").read_text()
    NeuronReport(tiny, "conv2", smooth_images(8), **kw).run([0], tmp_path / "fourier")  # a recipe without one
    assert not (units_of(tmp_path / "fourier") / "channel_0000" / "positive_transparency.png").exists()


def test_maco_on_a_model_without_rgb_input_is_a_one_line_error_naming_the_fix():
    gray = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    with pytest.raises(ValueError, match="takes 1 input channels: use recipe='fourier'") as err:
        fv.render(gray, fv.objectives.class_logit(1), recipe="maco", size=32, steps=2, progress=False)
    assert "\n" not in str(err.value)
    spectrum = fv.param.magnitude_spectrum(torch.rand(4, 1, 32, 32), decorrelate=False)
    param = fv.param.maco(32, magnitude=spectrum, decorrelate=False)  # the fix the message names
    assert (
        fv.render(gray, fv.objectives.class_logit(1), param=param, recipe="maco", steps=2, progress=False).images.shape[
            1
        ]
        == 1
    )


def test_maco_refuses_settings_it_cannot_honour_and_visualize_takes_a_recipe_record(tiny):
    viz = fv.NeuronVisualization(tiny, "conv2")
    for bad in ({"fft": False}, {"decorrelate": False}):
        with pytest.raises(ValueError, match="do not apply to it"):
            viz.visualize(0, recipe="maco", size=32, steps=2, progress=False, **bad)
    mine = dataclasses.replace(recipe_lib.get_recipe("fourier"), name="mine", lr=0.2)  # not registered
    assert viz.visualize(0, recipe=mine, size=32, steps=2, progress=False).positive.shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="pass size= to resize them all"):
        fv.param.magnitude_spectrum([torch.rand(3, 32, 32), torch.rand(3, 24, 24)], size=None)


def test_maco_recipe_uses_the_phase_param_crops_and_nadam(tiny):
    made = recipe_lib.setup("maco", recipe_lib.ParamSpec(32, 2, 3, 0))
    x = made.param()
    assert x.shape == (2, 3, 32, 32)
    assert made.transform(x, torch.Generator().manual_seed(0)).shape[0] == 2 * recipe_lib.MACO_CROPS
    assert isinstance(made.optimizer(list(made.param.parameters())), torch.optim.NAdam)
    r = fv.render(tiny, "conv2:1", recipe="maco", steps=4, size=32, progress=False)
    assert r.images.shape == (1, 3, 32, 32) and torch.isfinite(r.values).all()
