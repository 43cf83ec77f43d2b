"""Layer addressing (captum_fv.addressing) and inspection (captum_fv.inspection): a module object
and its dotted ``named_modules()`` name address the same layer everywhere; unknown names fail
with suggestions; ``fv.layers`` lists the modules that run, in execution order, with their real
output shapes, and leaves the model as it found it."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import captum_fv as fv
from captum_fv.addressing import OUTPUT, LayerRef, resolve_layer
from captum_fv.inspection import LayerInfo
from captum_fv.modelinfo import infer_in_channels
from captum_fv.objectives import channel

HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


class OutOfOrder(nn.Module):
    """Registration order (head, act, stem, block, unused) differs from execution order
    (stem, act, block.0, block.1, block, act again, head); ``act`` runs twice; ``unused`` never
    runs. The stem is the first registered conv, as in real models (channel inference uses it)."""

    def __init__(self, in_ch: int = 3) -> None:
        super().__init__()
        self.head = nn.Linear(6, 5)
        self.act = nn.ReLU()
        self.stem = nn.Conv2d(in_ch, 4, 3)
        self.block = nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.BatchNorm2d(6))
        self.unused = nn.Conv2d(6, 6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.stem(x))
        x = self.act(self.block(x))
        return self.head(x.mean((2, 3)))


def manual_forward(model: OutOfOrder, x: torch.Tensor) -> dict:
    """Every intermediate of OutOfOrder.forward, written out by hand (eval-mode BN)."""
    s = model.stem(x)
    a0 = torch.relu(s)
    b0 = model.block[0](a0)
    b1 = torch.nn.functional.batch_norm(
        b0,
        model.block[1].running_mean,
        model.block[1].running_var,
        model.block[1].weight,
        model.block[1].bias,
        False,
        0.0,
        model.block[1].eps,
    )
    a1 = torch.relu(b1)
    return {
        "stem": s,
        "act#0": a0,
        "act#1": a1,
        "block.0": b0,
        "block.1": b1,
        "block": b1,
        "head": model.head(a1.mean((2, 3))),
    }


def make_model(in_ch: int = 3, seed: int = 0) -> OutOfOrder:
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        model = OutOfOrder(in_ch)
        # non-trivial BN statistics, so eval and train modes differ
        model.block[1].running_mean.uniform_(-1, 1)
        model.block[1].running_var.uniform_(0.5, 2)
    return model


def mixed_state(model: nn.Module) -> nn.Module:
    """Train mode with one submodule in eval, and a mix of frozen and trainable parameters."""
    model.train()
    model.block.eval()
    model.stem.weight.requires_grad_(False)
    return model


def state_of(model: nn.Module) -> dict:
    mods = list(model.named_modules(remove_duplicate=False))
    return {
        "hooks": [(n, {k: dict(getattr(m, k)) for k in HOOK_DICTS}) for n, m in mods],
        "training": [(n, m.training) for n, m in mods],
        "requires_grad": [(n, p.requires_grad) for n, p in model.named_parameters()],
        "grads": [(n, p.grad) for n, p in model.named_parameters()],
        "tensors": {k: v.detach().clone() for k, v in model.state_dict().items()},
    }


def assert_same_state(before: dict, after: dict) -> None:
    assert after["hooks"] == before["hooks"]
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert after["grads"] == before["grads"]
    assert before["tensors"].keys() == after["tensors"].keys()
    for k, v in before["tensors"].items():
        assert torch.equal(v, after["tensors"][k]), f"{k} changed"


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return torchvision.models.resnet18().eval()  # random init: never weights=


# --------------------------------------------------------------------------- resolve_layer


def test_name_and_module_resolve_to_the_same_layer_for_every_named_module(resnet18):
    seen = 0
    for name, mod in resnet18.named_modules():
        if not name:
            continue
        by_name, by_module = resolve_layer(resnet18, name), resolve_layer(resnet18, mod)
        assert by_name.module is mod
        assert by_module == by_name == LayerRef(name, mod, None)
        assert by_name.key == name
        seen += 1
    assert seen == len(list(resnet18.named_modules())) - 1


def test_call_index_suffix_selects_a_call_and_keeps_the_module():
    model = make_model()
    ref = resolve_layer(model, "act#1")
    assert (ref.name, ref.module, ref.call, ref.key) == ("act", model.act, 1, "act#1")
    assert resolve_layer(model, "block.0#0").module is model.block[0]
    for bad in ("act#x", "act#-1", "act#"):
        with pytest.raises(ValueError, match="name#k"):
            resolve_layer(model, bad)


def test_none_and_empty_name_mean_the_model_output():
    model = make_model()
    for spec in (None, ""):
        ref = resolve_layer(model, spec)
        assert ref.name == OUTPUT and ref.module is model


def test_unknown_name_suggests_closest_names(resnet18):
    with pytest.raises(ValueError) as err:
        resolve_layer(resnet18, "layer3.1.conv")
    msg = str(err.value)
    assert "'layer3.1.conv'" in msg and "'layer3.1.conv1'" in msg and "closest" in msg
    # an unrelated name is still rejected, with the listing hint
    with pytest.raises(ValueError, match="captum_fv.layers"):
        resolve_layer(resnet18, "no_such_thing_at_all")


def test_unknown_name_raises_with_suggestion_in_every_entry_point(resnet18):
    x = torch.rand(1, 3, 32, 32)
    calls = {
        "render": lambda: fv.render(resnet18, "layer3.1.conv:0", steps=1, progress=False),
        "render_objective": lambda: fv.render(resnet18, channel("layer3.1.conv", 0), steps=1, progress=False),
        "activations": lambda: fv.activations(resnet18, "layer3.1.conv", x),
        "NeuronVisualization": lambda: fv.NeuronVisualization(resnet18, "layer3.1.conv"),
    }
    for call in calls.values():
        with pytest.raises(ValueError, match=r"'layer3\.1\.conv1'"):
            call()


def test_module_not_in_model_raises_everywhere(resnet18):
    stranger = nn.Conv2d(3, 64, 7)  # same type and shape as resnet18.conv1, but not part of it
    x = torch.rand(1, 3, 32, 32)
    calls = {
        "resolve_layer": lambda: resolve_layer(resnet18, stranger),
        "render": lambda: fv.render(resnet18, channel(stranger, 0), steps=1, progress=False),
        "activations": lambda: fv.activations(resnet18, stranger, x),
        "NeuronVisualization": lambda: fv.NeuronVisualization(resnet18, stranger),
    }
    for call in calls.values():
        with pytest.raises(ValueError, match="not a submodule"):
            call()


def test_non_layer_spec_raises_type_error():
    with pytest.raises(TypeError, match="nn.Module, a dotted name"):
        resolve_layer(make_model(), 3)


# --------------------------------------------------------- same layer by name or by module


def test_activations_same_for_name_and_module_and_match_manual_forward():
    model = make_model().eval()
    x = torch.rand(3, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    ref = manual_forward(model, x)
    for name, mod in [("stem", model.stem), ("block.0", model.block[0]), ("block", model.block)]:
        by_name = fv.activations(model, name, x, batch_size=2)
        by_module = fv.activations(model, mod, x, batch_size=2)
        assert torch.equal(by_name, by_module)
        torch.testing.assert_close(by_name, ref[name], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fv.activations(model, "act#1", x), ref["act#1"])


def test_render_same_images_for_name_and_module():
    model = make_model().eval()
    kw = dict(steps=3, size=16, seed=3, progress=False, thresholds=[0])
    by_name = fv.render(model, channel("block.0", 2), **kw)
    by_module = fv.render(model, channel(model.block[0], 2), **kw)
    by_short = fv.render(model, "block.0:2", **kw)
    assert torch.equal(by_name.images, by_module.images)
    assert torch.equal(by_name.images, by_short.images)
    assert torch.equal(by_name.history, by_module.history)
    # the optimization did something, so equality is not trivial
    assert not torch.equal(by_name.images, by_name.snapshots[0])
    other = fv.render(model, channel("stem", 2), **kw)
    assert not torch.equal(other.images, by_name.images)


def test_neuron_visualization_same_for_name_and_module():
    model = make_model().eval()
    by_name = fv.NeuronVisualization(model, "block.0")
    by_module = fv.NeuronVisualization(model, model.block[0])
    assert by_name.layer == by_module.layer == LayerRef("block.0", model.block[0])
    kw = dict(steps=2, size=16, progress=False, thresholds=[])
    v1, v2 = by_name.visualize(1, **kw), by_module.visualize(1, **kw)
    assert v1.layer == v2.layer == "block.0"
    assert torch.equal(v1.positive, v2.positive)
    assert torch.equal(v1.activation["positive"], v2.activation["positive"])
    # the reported activation is the one of that layer on the returned image
    act = manual_forward(model, v1.positive)["block.0"][:, 1].mean((1, 2))
    torch.testing.assert_close(v1.activation["positive"], act, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------- layers()


def test_layers_rows_in_execution_order_with_manual_shapes():
    model = make_model().eval()
    rows = fv.layers(model, input_size=16)
    assert all(isinstance(r, LayerInfo) for r in rows)
    by_name = {r.name: r for r in rows}
    ref = manual_forward(model, torch.rand(1, 3, 16, 16))
    expected = {  # name -> (type, shape of first call, calls)
        "stem": ("Conv2d", ref["stem"].shape[1:], 1),
        "act": ("ReLU", ref["act#0"].shape[1:], 2),
        "block.0": ("Conv2d", ref["block.0"].shape[1:], 1),
        "block.1": ("BatchNorm2d", ref["block.1"].shape[1:], 1),
        "block": ("Sequential", ref["block"].shape[1:], 1),
        "head": ("Linear", ref["head"].shape[1:], 1),
    }
    for name, (typ, shape, calls) in expected.items():
        assert by_name[name] == LayerInfo(name, typ, tuple(shape), calls), name
    # execution order, not registration order (head and stem are registered first/last)
    names = [r.name for r in rows]
    leaves = [n for n in names if n in ("stem", "act", "block.0", "block.1", "head")]
    assert leaves == ["stem", "act", "block.0", "block.1", "head"]
    assert [n for n, _ in model.named_modules() if n in leaves][0] == "head"  # test is meaningful
    # every row names a real module of that type; the root is not a row
    for r in rows:
        assert type(resolve_layer(model, r.name).module).__name__ == r.type
    assert "" not in names and len(names) == len(set(names))


def test_layers_non_square_input_on_resnet18(resnet18):
    rows = fv.layers(resnet18, input_size=(64, 48))
    by_name = {r.name: r for r in rows}
    m = resnet18
    with torch.no_grad():
        x = torch.rand(1, 3, 64, 48)
        c1 = m.conv1(x)
        p = m.maxpool(m.relu(m.bn1(c1)))
        l1 = m.layer1(p)
        l2 = m.layer2(l1)
        l3 = m.layer3(l2)
        l4 = m.layer4(l3)
        pooled = m.avgpool(l4)
        fc = m.fc(pooled.flatten(1))
    for name, t in [
        ("conv1", c1),
        ("maxpool", p),
        ("layer1", l1),
        ("layer2", l2),
        ("layer3", l3),
        ("layer4", l4),
        ("avgpool", pooled),
        ("fc", fc),
    ]:
        assert by_name[name].shape == tuple(t.shape[1:]), name
    assert by_name["conv1"].shape[1] != by_name["conv1"].shape[2]  # really non-square
    assert by_name["layer1.0.relu"].calls == 2 and by_name["relu"].calls == 1
    order = [r.name for r in rows]
    top = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"]
    assert sorted(top, key=order.index) == top
    assert order.index("layer1.0.conv1") < order.index("layer1.0.conv2") < order.index("layer1.1.conv1")


def test_layers_one_channel_model_infers_channels_from_first_conv():
    model = make_model(in_ch=1).eval()
    assert infer_in_channels(model) == 1
    rows = {r.name: r for r in fv.layers(model, input_size=(10, 14))}
    ref = manual_forward(model, torch.rand(1, 1, 10, 14))
    assert rows["stem"].shape == tuple(ref["stem"].shape[1:]) == (4, 8, 12)
    assert rows["head"].shape == (5,)
    # explicit channels are honoured (3 channels into a 1-channel conv must fail)
    with pytest.raises(RuntimeError):
        fv.layers(model, input_size=8, channels=3)


def test_layers_bad_size_raises():
    with pytest.raises(ValueError, match="height, width"):
        fv.layers(make_model(), input_size=(8, 8, 8))


def test_layers_leaves_model_unchanged():
    model = mixed_state(make_model())
    before = state_of(model)
    rng = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    assert any(t for _, t in before["training"]) and not all(t for _, t in before["training"])
    assert any(g for _, g in before["requires_grad"]) and not all(g for _, g in before["requires_grad"])
    fv.layers(model, input_size=12)
    assert_same_state(before, state_of(model))
    assert torch.equal(rng[0], torch.get_rng_state())
    assert np.array_equal(rng[1], np.random.get_state()[1]) and rng[2] == random.getstate()


def test_layers_leaves_model_unchanged_when_forward_fails():
    model = mixed_state(make_model())
    before = state_of(model)
    with pytest.raises(RuntimeError):
        fv.layers(model, input_size=2)  # too small for the 3x3 stem
    assert_same_state(before, state_of(model))
