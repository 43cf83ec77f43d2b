"""Tests for captum_fv.registry: built-ins by name, one-line registration, catalog."""

from __future__ import annotations

import pytest
import torch
from captum.attr import NeuronGradient, NeuronIntegratedGradients
from torch import nn

from captum_fv import objectives, registry
from captum_fv.attribution import attribute
from captum_fv.objectives import Objective
from captum_fv.rendering import render

OBJECTIVES = [
    "channel",
    "neuron",
    "deepdream",
    "class_logit",
    "class_probability",
    "direction",
    "random_direction",
    "diversity",
    "channel_interpolate",
    "alignment",
    "inversion",
    "style",
    "l1",
    "l2",
    "total_variation",
    "blur",
    "feature_prior",
]
ATTRIBUTIONS = [
    "integrated_gradients",
    "gradient",
    "gradient_shap",
    "deeplift",
    "deeplift_shap",
    "guided_backprop",
    "deconvolution",
    "conductance",
    "feature_ablation",
]


@pytest.fixture(autouse=True)
def restore_registry():
    """Registrations made by a test do not leak into the next."""
    objs, attrs = dict(registry._OBJECTIVES), dict(registry._ATTRIBUTIONS)
    yield
    registry._OBJECTIVES.clear()
    registry._OBJECTIVES.update(objs)
    registry._ATTRIBUTIONS.clear()
    registry._ATTRIBUTIONS.update(attrs)


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 3),
    ).eval()


def test_builtins_are_prefilled():
    assert registry.list_objectives() == OBJECTIVES
    assert registry.list_attributions() == ATTRIBUTIONS
    for name in OBJECTIVES:
        assert registry.get_objective(name) is getattr(objectives, name)


def test_builtin_objectives_build_objectives():
    assert isinstance(registry.get_objective("channel")("2", 1), Objective)
    assert isinstance(registry.get_objective("total_variation")(), Objective)


def test_unknown_names_list_close_matches():
    with pytest.raises(LookupError, match="'channel'"):
        registry.get_objective("chanel")
    with pytest.raises(LookupError, match="'deeplift_shap'"):
        registry.get_attribution("deeplift_shapp")


def test_duplicates_raise_unless_overwrite():
    with pytest.raises(ValueError, match="overwrite=True"):
        registry.register_objective("channel", objectives.neuron)
    with pytest.raises(ValueError, match="overwrite=True"):
        registry.register_attribution("gradient", NeuronGradient)
    registry.register_objective("channel", objectives.neuron, overwrite=True)
    assert registry.get_objective("channel") is objectives.neuron


def test_bad_registrations():
    with pytest.raises(ValueError, match="non-empty"):
        registry.register_objective("", objectives.l1)
    with pytest.raises(TypeError, match="callable"):
        registry.register_objective("x", 3)
    with pytest.raises(TypeError, match="Neuron"):
        registry.register_attribution("x", 3)


def test_custom_objective_in_one_line_used_by_name(model):
    registry.register_objective("sharp_channel", lambda layer, c: objectives.channel(layer, c) - 0.1 * objectives.l1())
    obj = registry.get_objective("sharp_channel")("2", 1)
    assert isinstance(obj, Objective) and "sharp_channel" in registry.catalog()
    result = render(model, obj, steps=3, size=16, progress=False)
    assert result.images.shape[-2:] == (16, 16)


def test_custom_objective_as_decorator():
    @registry.register_objective("bright")
    def bright(batch=None):
        """Mean pixel value: brighter images score higher."""
        return Objective(lambda ctx: ctx.images.flatten(1).mean(1), [], "bright")

    assert registry.get_objective("bright") is bright
    assert "Mean pixel value: brighter images score higher." in registry.catalog()


def test_custom_adapter_in_one_line_used_by_name(model):
    x = torch.rand(2, 3, 10, 10)

    def input_times_half(forward_func, layer, selector, inputs, **kwargs):
        """Half the input: a stand-in attribution."""
        return inputs * 0.5

    registry.register_attribution("half", input_times_half)
    a = attribute(model, "2", x, 1, attribution="half")
    assert torch.equal(a.attributions, x * 0.5) and a.delta is None and a.method == "half"
    assert "Half the input: a stand-in attribution." in registry.catalog()


def test_custom_captum_class_in_one_line_used_by_name(model):
    x = torch.rand(2, 3, 10, 10)
    registry.register_attribution("my_ig", NeuronIntegratedGradients)
    a = attribute(model, "2", x, 1, attribution="my_ig", n_steps=10)
    b = attribute(model, "2", x, 1, attribution="integrated_gradients", n_steps=10, tolerance=None)
    torch.testing.assert_close(a.attributions, b.attributions)
    assert a.delta is None  # a bare class makes no completeness claim; the built-in does
    assert b.delta is not None


def test_catalog_lists_both_kinds_with_descriptions():
    text = registry.catalog()
    lines = text.splitlines()
    assert lines[0].split() == ["kind", "name", "description"]
    rows = lines[2:]
    assert len(rows) == len(OBJECTIVES) + len(ATTRIBUTIONS)
    for name in OBJECTIVES:
        assert any(r.split()[:2] == ["objective", name] and len(r.split()) > 2 for r in rows)
    for name in ATTRIBUTIONS:
        assert any(r.split()[:2] == ["attribution", name] and len(r.split()) > 2 for r in rows)
    assert all(len(r) <= 2 + 11 + 2 + 20 + 100 for r in rows)
