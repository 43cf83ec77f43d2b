"""Shared fixtures: a tiny random conv net for logic tests, the real default model for the few
tests whose claim is about real features, and helpers to snapshot global state."""

from __future__ import annotations

import random
from typing import Any, Dict, Tuple

import numpy as np
import pytest
import torch
from torch import nn


class TinyNet(nn.Module):
    """3 conv layers (BatchNorm + ReLU each), 16-32 channels, then a linear classifier.

    Every module runs exactly once per forward, so each is addressable by its name:
    ``conv1 bn1 relu1 conv2 bn2 relu2 conv3 bn3 relu3 pool fc``.
    """

    def __init__(self, in_channels: int = 3, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 24, 3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(24)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(24, 32, 3, stride=2, padding=1)
        self.bn3 = nn.BatchNorm2d(32)
        self.relu3 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.relu3(self.bn3(self.conv3(x)))
        return self.fc(self.pool(x).flatten(1))


def make_tiny(in_channels: int = 3, seed: int = 0, classes: int = 10) -> TinyNet:
    """A deterministic TinyNet with non-trivial BatchNorm statistics, built without touching the
    global RNG (so tests that check the global RNG are not disturbed by fixtures)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = TinyNet(in_channels, classes)
        for bn in (net.bn1, net.bn2, net.bn3):
            bn.running_mean.copy_(torch.randn_like(bn.running_mean) * 0.1)
            bn.running_var.copy_(torch.rand_like(bn.running_var) * 0.5 + 0.5)
            bn.weight.data.copy_(torch.rand_like(bn.weight) + 0.5)
            bn.bias.data.copy_(torch.randn_like(bn.bias) * 0.1)
    return net.eval()


@pytest.fixture
def tiny() -> TinyNet:
    """A fresh tiny random model per test (tests may mutate it)."""
    return make_tiny()


@pytest.fixture(scope="session")
def real_model() -> nn.Module:
    """The real default model (pretrained EfficientNet-Lite0), loaded once per session."""
    import captum_fv

    return captum_fv.models.efficientnet_lite0()


@pytest.fixture(scope="session")
def sample_batch() -> torch.Tensor:
    """The bundled sample photos at 96 px with 8 random crops each, as one batch."""
    import captum_fv

    ds = captum_fv.data.sample_images(size=96, crops=8)
    return torch.stack([ds[i][0] for i in range(len(ds))])


def rng_state() -> Tuple[Any, ...]:
    return torch.get_rng_state().clone(), np.random.get_state(), random.getstate()


def assert_rng_unchanged(before: Tuple[Any, ...]) -> None:
    t, n, p = before
    assert torch.equal(torch.get_rng_state(), t), "the global torch RNG was consumed"
    now = np.random.get_state()
    assert now[0] == n[0] and np.array_equal(now[1], n[1]) and now[2:] == n[2:], "numpy RNG moved"
    assert random.getstate() == p, "python's random module was consumed"


def model_state(model: nn.Module) -> Dict[str, Any]:
    """Everything render/visualize must leave as it was."""
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
    }


def hook_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + len(getattr(m, "_backward_pre_hooks", {}))
        for m in model.modules()
    )


def assert_model_unchanged(model: nn.Module, before: Dict[str, Any]) -> None:
    after = model_state(model)
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert after["state"].keys() == before["state"].keys()
    for k, v in before["state"].items():
        assert torch.equal(after["state"][k], v), f"state_dict entry {k} changed"
    assert hook_count(model) == 0


def layer_dir(root, layer=None):
    """The folder of ``layer`` in a report written to ``root`` (None: its only layer)."""
    from pathlib import Path

    from captum_fv.report import LAYERS_DIR, layer_folder

    if layer is not None:
        return layer_folder(root, layer)
    found = sorted(p for p in (Path(root) / LAYERS_DIR).iterdir() if p.is_dir())
    assert len(found) == 1, f"expected one layer folder in {root}, found {[p.name for p in found]}"
    return found[0]


def units_of(root, layer=None):
    """The ``units`` folder of ``layer`` in a report written to ``root`` (None: its only layer)."""
    return layer_dir(root, layer) / "units"
