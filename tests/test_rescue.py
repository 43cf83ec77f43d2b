"""Dead-unit rescue: units flat at the starting image still optimize (redirected ReLU/ReLU6
gradients, module, in-place and functional forms), dead slots are retried or reported, an
objective that ignores the input still raises, live units are bit-identical, the model is
left exactly as found."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_model_unchanged, model_state
from torch import nn

import captum_fv as fv
from captum_fv import objectives as obj
from captum_fv.rescue import RescueConfig, redirect_grad, redirected

KW = dict(size=16, progress=False)
DEAD = [0, 2, 5]  # channels whose bias puts them on a flat side of the activation at grey


class DeadNet(nn.Module):
    """conv (positive weights; some biases make channels flat on a grey image, yet reachable on a
    brighter/darker one) -> activation -> 1x1 identity conv, so ``out`` channel c reads act c."""

    def __init__(self, act: str = "relu", bias: float = -1.6) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.kind = act
        self.act = {"relu": nn.ReLU(inplace=True), "relu6": nn.ReLU6(inplace=True)}.get(act, nn.Identity())
        self.out = nn.Conv2d(8, 8, 1, bias=False)
        with torch.no_grad():
            g = torch.Generator().manual_seed(0)
            self.conv.weight.copy_(torch.rand(self.conv.weight.shape, generator=g) * 0.1 + 0.05)
            self.conv.bias.fill_(-0.5)  # live at grey
            self.conv.bias[DEAD] = bias
            self.out.weight.copy_(torch.eye(8)[:, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.kind == "functional":
            x = F.relu(x)
        elif self.kind == "torch.relu_":
            x = torch.relu_(x)
        else:
            x = self.act(x)
        return self.out(x)


def _sweep(net: nn.Module, rescue, steps: int = 40):
    viz = fv.NeuronVisualization(net, "out")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vs = viz.visualize(list(range(8)), steps=steps, rescue=rescue, **KW)
    return torch.stack([v.activation["positive"][0] for v in vs]), vs, caught


def test_flat_units_are_rescued_and_live_ones_bit_identical():
    net = DeadNet("relu")
    before = model_state(net)
    plain, off, caught_off = _sweep(net, False)
    assert (plain[DEAD] == 0).all() and (plain[[1, 3, 4]] > 0).all()  # what HEAD returned: blanks
    # with the rescue off the blanks are still reported, never silent
    assert [v.dead for v in off] == [c in DEAD for c in range(8)]
    assert [str(w.message) for w in caught_off if "rescue off" in str(w.message)], caught_off
    acts, on, caught = _sweep(net, True)
    assert (acts > 0).all(), acts
    assert not any(v.dead for v in on) and not caught
    for c in (1, 3, 4, 6, 7):  # live channels in the same batch: redirection leaves them alone
        assert torch.equal(on[c].positive, off[c].positive)
    assert_model_unchanged(net, before)


@pytest.mark.parametrize("kind", ["functional", "torch.relu_"])
def test_functional_forms_are_rescued(kind):
    acts, vs, caught = _sweep(DeadNet(kind), True, steps=34)
    assert (acts > 0).all(), acts


def test_live_units_are_bit_identical_with_rescue(tiny):
    """Redirection applies only in rows whose ordinary gradient is zero: live slots do not move."""
    both = obj.channel("relu2", 3, batch=0) + obj.channel("relu2", 4, batch=1)
    a = fv.render(tiny, both, batch=2, steps=12, rescue=True, **KW)
    b = fv.render(tiny, both, batch=2, steps=12, rescue=False, **KW)
    assert torch.equal(a.images, b.images) and torch.equal(a.history, b.history)


def test_relu6_upper_flat_side():
    net = DeadNet("relu6", bias=5.5)  # > 6 on grey even at the border, < 6 on a darker image
    down = -obj.channel("out", 0)  # maximize -relu6(x): wants x below 6
    with pytest.warns(UserWarning, match="rescue is off"):
        plain = fv.render(net, down, steps=36, lr=0.2, rescue=False, **KW)
    assert float(plain.values[0]) == -6.0 and plain.dead_slots == [0]
    res = fv.render(net, down, steps=36, lr=0.2, **KW)
    assert float(res.values[0]) > -6.0 and res.dead_slots == []


def test_no_redirected_steps_means_no_restart_either():
    """steps=0 only finds and reports: the dead slot is not restarted from new noise."""
    net = DeadNet("relu")
    dead = obj.channel("out", DEAD[0])
    off = fv.render(net, dead, steps=20, rescue=RescueConfig(steps=0, warn=False), **KW)
    with pytest.warns(UserWarning, match="rescue is off"):
        plain = fv.render(net, dead, steps=20, rescue=False, **KW)
    assert off.dead_slots == plain.dead_slots == [0] and torch.equal(off.images, plain.images)


def test_redirect_grad_rule():
    y = torch.tensor([[0.0, 0.0, 6.0, 3.0]])
    g = torch.tensor([[-1.0, 1.0, 1.0, 0.0]])  # a loss gradient: a step moves by -g
    # row flat for the ordinary gradient: pass only what points back to the active region
    assert redirect_grad(g, y, 6.0).tolist() == [[-1.0, 0.0, 1.0, 0.0]]
    # ReLU, per row: row 0 is flat (redirected), row 1 lets its ordinary gradient through
    y2, g2 = torch.tensor([[0.0, 0.0], [0.0, 2.0]]), torch.tensor([[-1.0, 1.0], [-1.0, 1.0]])
    assert redirect_grad(g2, y2, None).tolist() == [[-1.0, 0.0], [0.0, 1.0]]
    live = torch.tensor([[-1.0, 1.0, 1.0, 2.0]])
    assert redirect_grad(live, y, 6.0).tolist() == [[0.0, 0.0, 0.0, 2.0]]  # ordinary


def test_unreachable_unit_is_reported_once_per_call():
    net = DeadNet("relu", bias=-20.0)  # no image in [0, 1] lifts it
    viz = fv.NeuronVisualization(net, "out")
    with pytest.warns(UserWarning, match="never got a gradient") as caught:
        vs = viz.visualize(list(range(8)), steps=20, max_batch=4, **KW)
    assert len([w for w in caught if "never got a gradient" in str(w.message)]) == 1
    assert "channel 0" in str(caught[0].message)
    assert [v.dead for v in vs] == [c in DEAD for c in range(8)]
    both = obj.channel("out", 0) + obj.channel("out", 1, batch=1)
    res = fv.render(net, both, batch=2, steps=20, rescue=RescueConfig(warn=False, slots=(0, 1)), **KW)
    assert res.dead_slots == [0]
    # unnamed slots: a constant one may be a slot the objective does not read, not reported
    assert fv.render(net, both, batch=2, steps=20, rescue=RescueConfig(warn=False), **KW).dead_slots == []


def test_objective_that_ignores_the_input_still_raises():
    net = DeadNet("relu", bias=-20.0)
    with pytest.raises(ValueError, match="does not depend on the input"):
        fv.render(net, 0 * obj.channel("out", 1), steps=12, **KW)


def test_model_and_torch_state_restored_after_an_exception():
    net = DeadNet("relu")
    before = model_state(net)
    forwards = {n: m.__dict__.get("forward") for n, m in net.named_modules()}
    base = obj.channel("out", 0)

    def boom(ctx):
        if ctx.step == 3:
            raise RuntimeError("boom")
        return base(ctx)

    with pytest.raises(RuntimeError, match="boom"):
        fv.render(net, fv.objectives.Objective(boom, base.layers, "boom"), steps=10, **KW)
    assert_model_unchanged(net, before)
    assert {n: m.__dict__.get("forward") for n, m in net.named_modules()} == forwards
    assert all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks for m in net.modules())
    assert torch._C._len_torch_function_stack() == 0  # no redirect mode left active
    x = torch.zeros(1, 8, 2, 2, requires_grad=True) - 1
    x.retain_grad()
    F.relu(x).sum().backward()
    assert not x.grad.any()  # plain ReLU gradient again
    with redirected():
        y = torch.zeros(1, 4, requires_grad=True)
        (-F.relu(y - 1)).sum().backward()  # loss falls as relu rises: redirected through
        assert y.grad.tolist() == [[-1.0] * 4]


def test_a_render_whose_slots_all_get_a_gradient_redirects_nothing(monkeypatch):
    """Step 0 is a plain probe: with every slot live no backward is redirected (no cost); with a
    flat slot the redirected phase runs."""
    from captum_fv import rescue as rescue_lib

    calls = []
    real = rescue_lib.redirect_grad
    monkeypatch.setattr(rescue_lib, "redirect_grad", lambda *a: calls.append(1) or real(*a))
    viz = fv.NeuronVisualization(DeadNet("relu"), "out")
    live = [c for c in range(8) if c not in DEAD]
    viz.visualize(live, steps=24, **KW)
    assert calls == []
    viz.visualize([DEAD[0]] + live, steps=24, **KW)
    assert calls  # the flat slot got its redirected phase
