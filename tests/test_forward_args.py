"""Captum's ``additional_forward_args`` on the optimization path, and structured model outputs
(tuples, dicts, ModelOutput-like objects) read through ``modelinfo.select_output``."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

import captum_fv as fv
from captum_fv import objectives as obj
from captum_fv.addressing import resolve_layer
from captum_fv.hooks import Capture, batch_args, forward_args, model_guard
from captum_fv.modelinfo import select_output

KW = dict(size=16, steps=3, progress=False)


class Scaled(nn.Module):
    """``model(x, scale)``: the input is scaled before the first conv, so every layer sees it."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.Tanh()
        self.fc = nn.Linear(4, 5)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def features(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x * scale))

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x, scale).mean((2, 3)))


class DictOut(Scaled):
    def __init__(self, keys=("logits", "aux")) -> None:
        super().__init__()
        self.keys = keys

    def forward(self, x: torch.Tensor, scale: torch.Tensor = None) -> dict:
        h = self.features(x, 1.0 if scale is None else scale)
        return {self.keys[0]: self.fc(h.mean((2, 3))), self.keys[1]: -self.fc(h.mean((2, 3)))}


@dataclass
class Output:
    loss: torch.Tensor
    logits: torch.Tensor


class DataclassOut(Scaled):
    def forward(self, x: torch.Tensor) -> Output:
        logits = self.fc(self.features(x, 1.0).mean((2, 3)))
        return Output(logits.sum(), logits)


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_forward_args_follow_captum():
    s = torch.ones(1)
    assert forward_args(None) == () and forward_args((s, 2)) == (s, 2) and forward_args([s]) == ([s],)
    rows = torch.arange(5.0).view(5, 1)
    one = torch.full((1, 2), 7.0)
    cut = batch_args((rows, one, 3, torch.zeros(4)), total=5, start=1, stop=3)
    assert torch.equal(cut[0], rows[1:3]) and cut[1].shape == (2, 2) and cut[2] == 3
    assert cut[3].shape == (4,)  # neither per-row nor shared: as is


def test_capture_calls_forward_func_with_the_extra_args():
    m, x = Scaled(), images(2)
    scale = torch.tensor([2.0, 0.5]).view(2, 1, 1, 1)
    refs = [resolve_layer(m, "act"), resolve_layer(m, None)]
    with model_guard(m), Capture(m, m, refs) as run, torch.no_grad():
        tup, one = run(x, (scale,)), run(x, scale)  # a tuple is several args, anything else one
    want = m(x, scale)
    torch.testing.assert_close(tup[""], want)
    torch.testing.assert_close(one[""], want)
    torch.testing.assert_close(tup["act"], m.features(x, scale))


def test_activations_batch_per_row_args_with_the_inputs():
    m, x = Scaled(), images(5)
    scale = torch.linspace(0.5, 2, 5).view(5, 1, 1, 1)
    got = fv.activations(m, "act", x, batch_size=2, additional_forward_args=(scale,))
    torch.testing.assert_close(got, m.features(x, scale))
    shared = fv.activations(m, "act", x, batch_size=2, additional_forward_args=torch.full((1, 1, 1, 1), 3.0))
    torch.testing.assert_close(shared, m.features(x, torch.tensor(3.0)))


def test_render_and_visualize_pass_the_args_to_every_slot():
    m = Scaled()
    scale = torch.full((1, 1, 1, 1), 0.25)  # first dim 1: expanded along the batch
    res = fv.render(m, obj.channel("act", 1), batch=2, additional_forward_args=(scale,), **KW)
    want = fv.activations(m, "act", res.images, additional_forward_args=scale)[:, 1].mean((1, 2))
    torch.testing.assert_close(res.values, want)
    plain = fv.activations(m, "act", res.images, additional_forward_args=torch.ones(1, 1, 1, 1))
    assert not torch.allclose(res.values, plain[:, 1].mean((1, 2)))  # the args really mattered
    v = fv.NeuronVisualization(m, "act").visualize([0, 2], facets=1, additional_forward_args=scale, **KW)
    for u, c in zip(v, [0, 2]):
        got = fv.activations(m, "act", u.positive, additional_forward_args=scale)[:, c].mean((1, 2))
        torch.testing.assert_close(u.activation["positive"], got)


@pytest.mark.parametrize("name", ["integrated_gradients", "gradient"])
def test_attribute_passes_additional_forward_args(name):
    m, x = Scaled(), images(3)
    scale = torch.tensor([1.0, 2.0, 0.5]).view(3, 1, 1, 1)
    a = fv.attribute(m, "act", x, (1, 4, 4), attribution=name, additional_forward_args=(scale,))
    torch.testing.assert_close(a.activations, m.features(x, scale)[:, 1, 4, 4])
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(m.features(xr, scale)[:, 1, 4, 4].sum(), xr)
    if name == "gradient":  # the truncated prefix ran the model with the args
        torch.testing.assert_close(a.attributions, grad)
    else:
        assert a.relative_delta.max() < 0.05


def test_select_output_forms():
    t = torch.ones(2, 3)
    assert select_output(t) is t and select_output((t, 0)) is t
    assert select_output({"logits": t, "aux": 1}) is t and select_output(Output(t.sum(), t)) is t
    assert select_output({"a": 0, "b": t}, "b") is t and select_output((0, t), 1) is t
    assert select_output(Output(t.sum(), t), "logits") is t
    with pytest.raises(TypeError, match=r"dict \(keys \['a', 'b'\]\).*output=KEY_OR_INDEX"):
        select_output({"a": t, "b": t})
    with pytest.raises(KeyError, match="output='c'"):
        select_output({"a": t}, "c")


def test_class_objectives_on_structured_outputs():
    x = images(2)
    for model in (DictOut(), DataclassOut()):
        res = fv.render(model, obj.class_logit(3), **KW)
        logits = fv.activations(model, None, res.images)
        torch.testing.assert_close(res.values, logits[:, 3])
    ab = DictOut(keys=("a", "b"))
    with pytest.raises(TypeError, match="output=KEY_OR_INDEX"):
        fv.render(ab, obj.class_logit(3), **KW)
    res = fv.render(ab, obj.class_probability(2, output="b"), **KW)
    want = torch.softmax(fv.activations(ab, None, res.images, output="b"), 1)[:, 2]
    torch.testing.assert_close(res.values, want)
    torch.testing.assert_close(fv.activations(ab, None, x, output="b"), ab(x)["b"])
    with pytest.raises(ValueError, match="same output="):
        obj.class_logit(0, output="a") + obj.class_logit(1, output="b")


def test_attribute_reads_the_chosen_output():
    ab, x = DictOut(keys=("a", "b")), images(2)
    a = fv.attribute(ab, None, x, 1, output="b", n_steps=32)
    torch.testing.assert_close(a.activations, ab(x)["b"][:, 1])
    b = fv.attribute(ab, None, x, 1, output="a", n_steps=32)
    torch.testing.assert_close(a.attributions, -b.attributions, rtol=1e-4, atol=1e-6)  # b == -a
    with pytest.raises(TypeError, match="output=KEY_OR_INDEX"):
        fv.attribute(ab, None, x, 1)
