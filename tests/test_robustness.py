"""Robustness: half precision, unusual channel counts and sizes, inputs too small, unsafe weights."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny
from torch import nn

import captum_fv as fv


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_models_work(dtype):
    model = make_tiny().to(dtype)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = fv.render(model, "conv2:1", steps=6, size=32, progress=False)
    assert res.images.dtype == torch.float32 and torch.isfinite(res.images).all()
    assert res.history[-1, 0] > res.history[0, 0]  # it still optimizes
    acts = fv.activations(model, "conv2", torch.rand(3, 3, 32, 32))
    assert acts.dtype == dtype and acts.shape == (3, 24, 16, 16)
    ex = fv.DatasetExamples(model, "conv2").collect(torch.rand(10, 3, 32, 32), k=2, progress=False)
    assert len(ex.top(1)) == 2
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert next(model.parameters()).dtype == dtype


@pytest.mark.parametrize("channels", [1, 4])
def test_parameterization_follows_model_channels(channels):
    model = make_tiny(in_channels=channels)
    v = fv.NeuronVisualization(model, "conv2").visualize(0, size=(24, 40), steps=4, facets=2, progress=False)
    assert v.positive.shape == (1, channels, 24, 40)
    assert v.facets.shape == (2, channels, 24, 40)


def test_input_too_small_names_the_size_and_the_fix():
    model = nn.Sequential(nn.Conv2d(3, 8, 7), nn.ReLU(), nn.Conv2d(8, 8, 7)).eval()
    with pytest.raises(RuntimeError, match=r"too small.*larger size"):
        fv.render(model, "2:0", size=8, steps=2, transforms=[], progress=False)
    assert all(not m._forward_hooks for m in model.modules())


def test_pickled_module_weights_are_refused(tmp_path):
    class Evil(nn.Module):
        def __reduce__(self):  # would run code if unpickled without weights_only
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, path)
    with pytest.raises(Exception) as e:
        fv.models.torchvision_model("resnet18", weights=str(path))
    assert "pwned" not in str(e.value)
