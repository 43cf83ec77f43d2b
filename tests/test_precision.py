"""bf16 autocast and channels-last inputs for the render's forward (captum_fv/precision.py), on the CPU:
the forward really runs in bfloat16 / channels-last, optimization climbs like float32, images,
values and the model stay float32 and unchanged, rescue, hooks, truncation and extra forward
arguments keep working, bad options fail in one line."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import assert_model_unchanged, make_tiny, model_state
from torch import nn

import captum_fv as fv
from captum_fv import objectives as obj
from captum_fv.precision import Precision

CHANS = [0, 3, 7, 11]
KW = dict(batch=4, steps=16, size=32, progress=False, transforms=[], lr=0.1)
# Measured on TinyNet over seeds 0-2: |bf16 - fp32| final value <= 2% of the fp32 gain; 5x margin.
BF16_BAND = 0.1


def seen_by(module: nn.Module, pre: bool = False):
    """Records what ``module`` sees (input, pre=True) or makes (output) on every call; the test
    removes the hook itself."""
    seen = []

    def hook(mod, inp, out=None):
        seen.append(inp[0] if pre else out)

    handle = module.register_forward_pre_hook(hook) if pre else module.register_forward_hook(hook)
    return seen, handle


def chan_mean(net, layer, images):
    return fv.activations(net, layer, images)[torch.arange(len(CHANS)), CHANS].mean((1, 2))


def test_bf16_climbs_like_fp32_and_leaves_everything_float32():
    net = make_tiny()
    before = model_state(net)
    o = obj.channel("bn2", CHANS)
    ref = fv.render(net, o, **KW)
    outs, handle = seen_by(net.conv2)
    try:
        res = fv.render(net, o, autocast="bf16", **KW)
    finally:
        handle.remove()
    # the ascent forwards ran in bfloat16; the last forward (the final values) in float32
    assert {t.dtype for t in outs[:-1]} == {torch.bfloat16} and outs[-1].dtype == torch.float32
    gain = ref.values - ref.history[0]
    assert (gain > 0).all() and (res.values > res.history[0]).all()
    assert ((res.values - ref.values).abs() <= BF16_BAND * gain).all(), (res.values, ref.values)
    for t in (res.images, res.values, res.history, *res.snapshots.values()):
        assert t.dtype == torch.float32 and torch.isfinite(t).all()
    assert float(res.images.min()) >= 0 and float(res.images.max()) <= 1
    # values are the float32 objective on the final images, not the bf16 one
    torch.testing.assert_close(res.values, chan_mean(net, "bn2", res.images), rtol=0, atol=0)
    assert all(p.dtype == torch.float32 for p in res.param.parameters())
    assert all(p.dtype == torch.float32 and p.is_contiguous() for p in net.parameters())
    assert_model_unchanged(net, before)


def test_channels_last_inputs_match_the_default():
    net = make_tiny()
    before = model_state(net)
    o = obj.channel("bn2", CHANS)
    ref = fv.render(net, o, **KW)
    ins, handle = seen_by(net.conv1, pre=True)
    try:
        res = fv.render(net, o, channels_last=True, **KW)
    finally:
        handle.remove()
    cl = [x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() for x in ins]
    assert all(cl[:-1]) and not cl[-1]  # ascent steps channels-last; the final values as usual
    torch.testing.assert_close(res.values, ref.values, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(res.images, ref.images, rtol=0, atol=5e-3)  # measured <= 7e-4
    assert res.images.stride() == ref.images.stride()  # the images keep their layout
    assert all(p.is_contiguous() for p in net.parameters())
    assert_model_unchanged(net, before)


class FlatNet(nn.Module):
    """conv -> in-place ReLU -> 1x1 identity conv: channels 0 and 2 are flat (ReLU off) on grey."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.out = nn.Conv2d(4, 4, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(
                torch.rand(self.conv.weight.shape, generator=torch.Generator().manual_seed(0)) * 0.1 + 0.05
            )
            self.conv.bias.copy_(torch.tensor([-1.6, -0.3, -1.6, -0.3]))
            self.out.weight.copy_(torch.eye(4)[:, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.conv(x)))


def test_rescue_under_autocast_revives_flat_units_of_an_inplace_relu_model():
    net = FlatNet()
    before = model_state(net)
    viz = fv.NeuronVisualization(net, "out")
    kw = dict(size=16, steps=34, progress=False)
    with pytest.warns(UserWarning, match="with rescue off"):
        plain = viz.visualize([0, 1, 2, 3], rescue=False, autocast="bf16", **kw)
    assert [float(v.activation["positive"][0]) == 0 for v in plain] == [True, False, True, False]
    assert [v.dead for v in plain] == [True, False, True, False]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vs = viz.visualize([0, 1, 2, 3], autocast="bf16", channels_last=True, **kw)
    assert not any(v.dead for v in vs) and not caught
    acts = torch.stack([v.activation["positive"][0] for v in vs])
    assert acts.dtype == torch.float32 and (acts > 0).all(), acts
    assert_model_unchanged(net, before)


class ArgNet(nn.Module):
    """conv -> scale by an extra argument -> head; counts how often the head runs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.head = nn.Conv2d(6, 6, 1)
        self.head_calls = 0

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        y = self.conv(x) * scale.view(-1, 1, 1, 1)
        self.head_calls += 1
        return self.head(y)


def test_extra_forward_args_and_truncation_under_autocast():
    net = ArgNet()
    o = obj.channel("conv", [1, 2])
    scale = torch.tensor([[2.0], [-1.0]])  # one row per slot: slot 1 climbs by lowering conv
    kw = dict(batch=2, steps=6, size=16, progress=False, transforms=[], lr=0.05, additional_forward_args=scale)
    ref = fv.render(net, o, **kw)
    net.head_calls = 0
    outs, handle = seen_by(net.conv)
    try:
        res = fv.render(net, o, autocast="bf16", channels_last=True, **kw)
    finally:
        handle.remove()
    assert net.head_calls == 1  # only the first forward, which counts calls; then truncated
    assert len(outs) == 6 + 1 and outs[0].dtype == torch.bfloat16  # 6 steps, the final values
    assert (res.values > res.history[0]).all()
    assert ((res.values - ref.values).abs() <= BF16_BAND * (ref.values - ref.history[0])).all()


def test_visualize_activation_is_float32_and_matches_activations():
    net = make_tiny()
    viz = fv.NeuronVisualization(net, "bn2")
    v = viz.visualize(3, facets=2, negative=True, size=32, steps=6, progress=False, autocast="bf16")
    acts = fv.activations(net, "bn2", torch.cat([v.positive, v.facets, v.negative]))[:, 3].mean((1, 2))
    assert all(a.dtype == torch.float32 for a in v.activation.values())
    torch.testing.assert_close(torch.cat([v.activation[r] for r in ("positive", "facets", "negative")]), acts)


@pytest.mark.parametrize(
    "kw, error, words",
    [
        (dict(autocast="fp16"), ValueError, "loss scaling"),
        (dict(autocast=torch.float16), ValueError, "autocast='bf16' or None"),
        (dict(autocast="int8"), ValueError, "autocast must be None or 'bf16'"),
        (dict(channels_last="yes"), TypeError, "channels_last must be True or False"),
    ],
)
def test_bad_options_fail_in_one_line_before_any_work(kw, error, words):
    net = make_tiny()
    with pytest.raises(error, match=words) as e:
        fv.render(net, "bn2:0", size=16, steps=1, progress=False, **kw)
    assert "\n" not in str(e.value)
    viz = fv.NeuronVisualization(net, "bn2")
    with pytest.raises(error, match=words):
        viz.visualize(0, size=16, steps=1, progress=False, recipe="aligned", **kw)  # before mining a dataset


def test_precision_options():
    assert Precision.of().name == "fp32" and Precision.of(None, True).name == "fp32+channels_last"
    for spelling in ("bf16", "BFloat16", torch.bfloat16):
        assert Precision.of(spelling).dtype is torch.bfloat16
    with pytest.raises(ValueError, match="not available on device type 'meta'"):
        Precision.of("bf16", device="meta")
    x = torch.rand(2, 3, 4, 4)
    assert Precision.of(None, True).layout(x).is_contiguous(memory_format=torch.channels_last)
    one = x[0]
    assert Precision.of(None, True).layout(one) is one  # not an image batch: left as it is
