"""Tests for captum_fv.attribution: Captum's methods driven by captum-fv selectors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, NeuronGradient, NeuronIntegratedGradients
from torch import nn

import captum_fv as fv
from captum_fv import registry
from captum_fv.attribution import Attribution, attribute
from captum_fv.heatmap import normalize_attribution, overlay
from captum_fv.mining import DatasetExamples

SIZE = 12


class Tiny(nn.Module):
    """conv -> BN -> ReLU -> conv ("conv2", 8 x 6 x 6) -> ReLU -> pool -> fc (5 logits)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu2(self.conv2(self.relu1(self.bn(self.conv1(x)))))
        return self.fc(self.pool(a).flatten(1))


@pytest.fixture
def model() -> Tiny:
    torch.manual_seed(0)
    m = Tiny()
    with torch.no_grad():
        m.bn.running_mean.uniform_(-0.2, 0.2)
        m.bn.running_var.uniform_(0.5, 2.0)
    return m.eval()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def no_hooks(m: nn.Module) -> bool:
    return all(
        not (mod._forward_hooks or mod._forward_pre_hooks or mod._backward_hooks or mod._backward_pre_hooks)
        for mod in m.modules()
    )


# ------------------------------------------------------------------ the real model


@pytest.fixture(scope="module")
def lite0() -> nn.Module:
    return fv.models.efficientnet_lite0()


@pytest.mark.slow
def test_integrated_gradients_completeness_on_top_examples(lite0):
    """IG with the default settings on the top examples of real units: |delta| < 5% of
    f(x) - f(baseline), for the strongest unit and for units whose integral 50 steps leave short."""
    ds = fv.data.sample_images(size=96, crops=2)
    ex = DatasetExamples(lite0, "_blocks.8").collect(ds, k=2, batch_size=16, progress=False)
    strongest = int(torch.stack([ex.top(c).activations[0] for c in range(len(ex))]).argmax())
    refined = 0
    for unit in (strongest, 1, 5):
        images = ex.images(unit)
        a = attribute(lite0, "_blocks.8", images, unit)
        assert a.attributions.shape == images.shape and a.method == "integrated_gradients"
        torch.testing.assert_close(a.activations, ex.top(unit).activations, rtol=1e-4, atol=1e-4)
        assert bool((a.activations - a.baseline_activations).abs().min() > 0.3)  # the unit moves
        assert bool((a.relative_delta < 0.05).all()), (unit, a.relative_delta)
        refined += int((a.n_steps > 50).sum())
    assert refined  # some example needed more than Captum's 50 steps: the refinement did it


# ------------------------------------------------------------------ every method, same call


@pytest.mark.parametrize("name", registry.list_attributions())
def test_every_registered_method_runs_through_the_same_call(model, x, name):
    extra = {"target": 0} if name == "conductance" else {}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    a = attribute(model, "conv2", x, (1, 2, 3), attribution=name, **extra)
    assert isinstance(a, Attribution) and a.method == name
    assert a.attributions.shape == x.shape and torch.isfinite(a.attributions).all()
    assert a.activations.shape == (2,)
    assert no_hooks(model) and not model.training
    assert all(p.requires_grad for p in model.parameters())  # unfrozen again
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k])
    if name in ("deeplift", "deeplift_shap"):  # exact on a ReLU network: summation to delta
        assert bool((a.relative_delta < 1e-3).all()), (name, a.relative_delta)
    if name == "integrated_gradients":  # a 50-step integral
        assert bool((a.relative_delta < 0.1).all()), a.relative_delta


@pytest.mark.parametrize("name", [n for n in registry.list_attributions() if n != "conductance"])
def test_channel_selectors_work_for_every_aggregating_method(model, x, name):
    a = attribute(model, "conv2", x, 4, attribution=name)
    assert a.attributions.shape == x.shape


def test_int_channel_means_captum_channel_selector(model, x):
    """Captum sees the same spatial-mean definition the visualization maximized."""
    ours = attribute(model, "conv2", x, 3, n_steps=20, tolerance=None)
    theirs = NeuronIntegratedGradients(model, model.conv2).attribute(x, neuron_selector=fv.channel(3), n_steps=20)
    torch.testing.assert_close(ours.attributions, theirs)
    with torch.no_grad():
        f = model.conv2(model.relu1(model.bn(model.conv1(x))))[:, 3].mean((1, 2))
    torch.testing.assert_close(ours.activations, f)


def test_callable_selector_and_baselines(model, x):
    def two(a: torch.Tensor) -> torch.Tensor:
        return a[:, 0].amax((1, 2)) + a[:, 1, 0, 0]

    a = attribute(model, "conv2", x, two, baselines=0.5, n_steps=64)
    assert a.attributions.shape == x.shape
    assert bool((a.relative_delta < 0.05).all())
    with torch.no_grad():
        assert torch.allclose(
            a.baseline_activations, two(model.conv2(model.relu1(model.bn(model.conv1(torch.full_like(x, 0.5))))))
        )


def test_class_logit_pairs_with_integrated_gradients(model, x):
    a = attribute(model, None, x, 2, n_steps=40, tolerance=None)
    ref, delta = IntegratedGradients(model).attribute(x, target=2, n_steps=40, return_convergence_delta=True)
    torch.testing.assert_close(a.attributions, ref)
    torch.testing.assert_close(a.delta, delta.abs())
    with torch.no_grad():
        torch.testing.assert_close(a.activations, model(x)[:, 2])
        torch.testing.assert_close(a.baseline_activations, model(torch.zeros_like(x))[:, 2])


def test_model_state_restored_and_no_hooks_left(x):
    m = Tiny().train()
    m.fc.weight.requires_grad_(False)
    grads = [p.requires_grad for p in m.parameters()]
    state = {k: v.clone() for k, v in m.state_dict().items()}
    for name in ("integrated_gradients", "deeplift", "guided_backprop", "feature_ablation"):
        attribute(m, "conv2", x, 1, attribution=name)
    assert m.training and all(mod.training for mod in m.modules())
    assert [p.requires_grad for p in m.parameters()] == grads
    assert no_hooks(m)
    for k, v in m.state_dict().items():
        assert torch.equal(v, state[k]), k


# ------------------------------------------------------------------ errors


def test_conductance_rejects_aggregating_selectors(model, x):
    with pytest.raises(ValueError, match=r"one neuron.*tuple such as \(c, y, x\)"):
        attribute(model, "conv2", x, 3, attribution="conductance", target=0)
    with pytest.raises(ValueError, match="target="):
        attribute(model, "conv2", x, (3, 1, 1), attribution="conductance")


def test_unknown_kwargs_and_methods(model, x):
    with pytest.raises(TypeError, match="does not take.*n_steps"):
        attribute(model, "conv2", x, 1, attribution="gradient", n_steps=3)
    with pytest.raises(LookupError, match="integrated_gradients"):
        attribute(model, "conv2", x, 1, attribution="integrated_gradient")


def test_hook_based_methods_need_the_module(model, x):
    with pytest.raises(TypeError, match="nn.Module"):
        attribute(lambda t: model(t), model.conv2, x, 1, attribution="deeplift")


@pytest.mark.parametrize("rule", ["riemann_trapezoid", "gausslegendre"])
def test_method_is_captums_integration_method(model, x, rule):
    a = attribute(model, "conv2", x, 1, n_steps=16, method=rule, tolerance=None)
    b = NeuronIntegratedGradients(model, model.conv2).attribute(x, fv.channel(1), n_steps=16, method=rule)
    torch.testing.assert_close(a.attributions, b)
    if rule == "riemann_trapezoid":  # another rule: other attributions, so method= reached Captum
        assert not torch.allclose(
            a.attributions, attribute(model, "conv2", x, 1, n_steps=16, tolerance=None).attributions
        )


def test_captum_vocabulary_keywords(model, x):
    a = attribute(forward_func=model, layer="conv2", inputs=x, neuron_selector=1, attribution="gradient")
    b = NeuronGradient(model, model.conv2).attribute(x.clone().requires_grad_(True), neuron_selector=fv.channel(1))
    torch.testing.assert_close(a.attributions, b)
    with pytest.raises(TypeError, match="attribution='deeplift'"):
        attribute(model, "conv2", x, 1, method="deeplift")  # the old spelling of our choice


def test_no_captum_warnings_leak(model, x):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        attribute(model, "conv2", x, 1, attribution="guided_backprop")
        attribute(model, "conv2", x, 1, attribution="deeplift")


# ------------------------------------------------------------------ heat maps


def test_normalization_matches_captum(x):
    vis = pytest.importorskip("captum.attr._utils.visualization")
    attr = torch.randn(3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    for sign in ("absolute_value", "positive", "negative", "all"):
        ours = normalize_attribution(attr, sign, 2)
        theirs = vis._normalize_attr(attr.permute(1, 2, 0).sum(2).numpy(), sign, 2)
        np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-5, atol=1e-6)


def test_overlay_is_a_pure_rgb_image(x):
    attr = torch.zeros(3, SIZE, SIZE)
    attr[:, 2:4, 5:7] = 1.0
    img = x[0].clone()
    out = overlay(img, attr, alpha=0.5, sign="positive")
    assert out.shape == (3, SIZE, SIZE) and out.min() >= 0 and out.max() <= 1
    assert torch.equal(img, x[0])
    hot = out[:, 2, 5]
    assert hot[1] > hot[0] and hot[1] > hot[2]  # green where the attribution is
    assert overlay(x, torch.zeros_like(x)).shape == (2, 3, SIZE, SIZE)
    with pytest.raises(ValueError, match="sign"):
        overlay(img, attr, sign="both")


def test_overlay_matches_matplotlib_colormap(x):
    mpl = pytest.importorskip("matplotlib")
    attr = torch.randn(3, SIZE, SIZE, generator=torch.Generator().manual_seed(6))
    norm = normalize_attribution(attr, "absolute_value").numpy()
    grey = x[0].mean(0).numpy()
    grey = (grey - grey.min()) / (grey.max() - grey.min())
    expected = 0.5 * grey[..., None] + 0.5 * mpl.colormaps["Blues"](norm)[..., :3]
    got = overlay(x[0], attr).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, expected, atol=0.01)  # matplotlib's 256-entry table


def test_methods_warn_where_captum_has_no_rule_for_an_activation(x):
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU6(), nn.Conv2d(4, 4, 3), nn.ReLU()).eval()
    for name, missing in (("guided_backprop", "ReLU6"), ("deeplift", "ReLU6")):
        with pytest.warns(UserWarning, match=f"no rule for {missing}"):
            attribute(m, "2", x, 1, attribution=name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        attribute(m, "2", x, 1, attribution="integrated_gradients")


def test_neuron_methods_skip_the_network_after_the_layer():
    """IG through the truncated prefix: modules after the layer run only in the first (probing)
    call, and the attributions equal Captum's on the full model."""
    from captum.attr import NeuronIntegratedGradients
    from conftest import make_tiny

    model = make_tiny()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    counts = []
    for n_steps in (8, 32):
        calls = []
        handle = model.conv3.register_forward_hook(lambda *a: calls.append(1))
        try:
            ours = fv.attribute(model, "conv2", x, 3, n_steps=n_steps)
        finally:
            handle.remove()
        counts.append(len(calls))
    # only the one-off probing forwards reach conv3; IG's steps stop at conv2
    assert counts[0] == counts[1] < 8
    ours = fv.attribute(model, "conv2", x, 3, n_steps=16)
    ref = NeuronIntegratedGradients(model, model.conv2).attribute(x, neuron_selector=fv.channel(3), n_steps=16)
    assert torch.allclose(ours.attributions, ref, atol=1e-6, rtol=1e-4)


# ------------------------------------------------------------------ convergence of path methods


def test_unconverged_examples_are_integrated_again_with_more_steps(model):
    """Few steps leave some examples above the tolerance: only those are redone, with more
    steps, each row then equal to Captum's own result at the steps it reports."""
    g = torch.Generator().manual_seed(2)
    x = torch.rand(6, 3, SIZE, SIZE, generator=g)
    baselines = torch.rand(6, 3, SIZE, SIZE, generator=g) * 0.3  # per example: cut to the redone rows
    coarse = attribute(model, "conv2", x, 1, n_steps=2, baselines=baselines, tolerance=None)
    fine = attribute(model, "conv2", x, 1, n_steps=2, baselines=baselines, tolerance=0.05, max_steps=128)
    assert bool(((fine.relative_delta <= 0.05) | (fine.n_steps == 128)).all()), fine.relative_delta
    assert all(n == 2 or n % 8 == 0 for n in fine.n_steps.tolist())  # whole path batches
    kept = fine.n_steps == 2  # converged at once: untouched
    assert bool(kept.any()) and not bool(kept.all())
    torch.testing.assert_close(fine.attributions[kept], coarse.attributions[kept])
    ig = NeuronIntegratedGradients(model, model.conv2)
    for i, steps in enumerate(fine.n_steps.tolist()):
        ref = ig.attribute(x[i : i + 1], fv.channel(1), baselines=baselines[i : i + 1], n_steps=steps)
        torch.testing.assert_close(fine.attributions[i : i + 1], ref)
    assert bool((fine.delta <= coarse.delta + 1e-6).all())


def test_tolerance_none_is_one_captum_call(model, x):
    a = attribute(model, "conv2", x, 1, n_steps=2, tolerance=None)
    ref = NeuronIntegratedGradients(model, model.conv2).attribute(x, fv.channel(1), n_steps=2)
    torch.testing.assert_close(a.attributions, ref)
    assert a.n_steps.tolist() == [2] * len(x)


def test_methods_without_a_path_report_no_steps(model, x):
    assert attribute(model, "conv2", x, 1, attribution="gradient").n_steps is None


def test_inputs_go_channels_last_on_a_cpu_and_come_back_as_given(model, x, monkeypatch):
    """The faster memory format inside, the caller's layout outside, the same attributions."""
    from captum_fv.attribution import _attribute
    from captum_fv.precision import attribution_layout

    assert attribution_layout(x).is_contiguous(memory_format=torch.channels_last)
    assert attribution_layout(x[0, 0]).is_contiguous()  # not an image batch: as is
    fast = attribute(model, "conv2", x, 1, n_steps=8, tolerance=None)
    monkeypatch.setattr(_attribute, "attribution_layout", lambda t: t)
    plain = attribute(model, "conv2", x, 1, n_steps=8, tolerance=None)
    assert fast.attributions.is_contiguous()
    torch.testing.assert_close(fast.attributions, plain.attributions, rtol=1e-5, atol=1e-6)


def test_a_report_refines_integrated_gradients_to_its_own_budget():
    from captum_fv.report import REPORT_REFINEMENT
    from captum_fv.report.budget import report_attribution_kwargs

    assert report_attribution_kwargs("integrated_gradients", None) == REPORT_REFINEMENT
    assert report_attribution_kwargs("integrated_gradients", {"tolerance": None, "n_steps": 8}) == {
        **REPORT_REFINEMENT,
        "tolerance": None,
        "n_steps": 8,
    }
    assert report_attribution_kwargs("gradient", None) == {}  # no path, nothing to refine


# ------------------------------------------------------------------ a path cut into segments


def test_a_cut_path_is_captums_integral_over_each_segment(model, x):
    """path_cuts=(0.3,) with 6 steps: Captum's integral from b to b + 0.3 (x - b) with 3 steps
    plus the one from there to x with 3, per example baselines kept."""
    b = torch.rand(x.shape, generator=torch.Generator().manual_seed(3)) * 0.2
    a = attribute(model, "conv2", x, 1, n_steps=6, baselines=b, path_cuts=(0.3,), tolerance=None)
    ig = NeuronIntegratedGradients(model, model.conv2)
    mid = b + 0.3 * (x - b)
    ref = ig.attribute(mid, fv.channel(1), baselines=b, n_steps=3) + ig.attribute(
        x, fv.channel(1), baselines=mid, n_steps=3
    )
    torch.testing.assert_close(a.attributions, ref)
    total = a.attributions.flatten(1).sum(1)
    torch.testing.assert_close(a.delta, (total - (a.activations - a.baseline_activations)).abs())


class Steep(nn.Module):
    """A unit that saturates within the first few percent of the path from black: the integrand
    of integrated gradients lives near the baseline, as on the default model."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1, bias=False)
        with torch.no_grad():
            self.conv.weight.uniform_(0.0, 0.2, generator=torch.Generator().manual_seed(0))
        self.act = nn.Tanh()

    def forward(self, x: torch.Tensor, gain: torch.Tensor = torch.tensor(80.0)) -> torch.Tensor:
        return self.act(gain * self.conv(x)).mean((2, 3))


def test_cuts_near_the_baseline_converge_at_the_same_cost(x):
    m = Steep().eval()
    plain = attribute(m, "act", x, 0, n_steps=12, tolerance=None)
    cut = attribute(m, "act", x, 0, n_steps=12, path_cuts=(0.01, 0.05), tolerance=None)
    assert bool((cut.relative_delta < 0.1 * plain.relative_delta).all()), (cut.relative_delta, plain.relative_delta)
    exact = attribute(m, "act", x, 0, n_steps=400, tolerance=None)
    err_cut = (cut.attributions - exact.attributions).abs().sum()
    assert err_cut < (plain.attributions - exact.attributions).abs().sum()


def test_cut_paths_refine_with_per_example_arguments(x):
    """Per-example extra arguments follow their rows through the segments and the refinement."""
    m = Steep().eval()
    gain = torch.tensor([80.0, 10.0]).view(2, 1, 1, 1)
    a = attribute(m, "act", x, 0, additional_forward_args=(gain,), n_steps=6, path_cuts=(0.02,), tolerance=0.01)
    assert bool((a.relative_delta <= 0.01).all()) and bool((a.n_steps > 6).any())
    for i in range(2):
        one = attribute(
            m, "act", x[i : i + 1], 0, additional_forward_args=(gain[i : i + 1],), n_steps=400, tolerance=None
        )
        torch.testing.assert_close(a.attributions[i : i + 1], one.attributions, rtol=0.05, atol=2e-3)


def test_path_cuts_are_checked(model, x):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        attribute(model, "conv2", x, 1, path_cuts=(0.5, 0.2))
    with pytest.raises(ValueError, match="path methods"):
        attribute(model, "conv2", x, 1, attribution="gradient", path_cuts=(0.1,))
