"""The hook engine (captum_fv.hooks): what it captures (pre in-place ops, one call of a reused
module, the first tensor of a tuple), where it stops the forward pass (truncation), and that
Capture / model_guard / fv.render / fv.activations / fv.layers leave no trace on the model or
the global RNGs, whatever ends them (normal exit, exception, KeyboardInterrupt)."""

from __future__ import annotations

import copy
import random
from contextlib import contextmanager
from typing import Callable, Dict, Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.nn.modules import module as torch_module

import captum_fv as fv
from captum_fv.addressing import resolve_layer
from captum_fv.hooks import Capture, _StopForward, model_guard
from captum_fv.objectives import Objective, channel

HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
GLOBAL_HOOKS = (
    "_global_forward_hooks",
    "_global_forward_pre_hooks",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
)


# ----------------------------------------------------------------------------- helpers


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def build(name: str) -> nn.Module:
    """A torchvision architecture with random init (never ``weights=``: no internet), built
    deterministically without consuming the global RNG."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)()
        for m in model.modules():  # non-trivial BN statistics, so eval and train BN differ
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def _resnet18() -> nn.Module:
    return build("resnet18")


@pytest.fixture
def resnet18(_resnet18) -> nn.Module:
    return copy.deepcopy(_resnet18)


@pytest.fixture(scope="module")
def _mobilenet() -> nn.Module:
    return build("mobilenet_v3_small")


@pytest.fixture
def mobilenet(_mobilenet) -> nn.Module:
    return copy.deepcopy(_mobilenet)


def seeded(factory: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    """A small model built deterministically, without consuming the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory().eval()


def image(n: int = 1, size: int = 64, channels: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=gen(seed))


def hooks_of(model: nn.Module) -> list:
    mods = model.named_modules(remove_duplicate=False)
    return [(n, {k: dict(getattr(m, k)) for k in HOOK_DICTS}) for n, m in mods]


def global_hooks() -> dict:
    return {k: dict(getattr(torch_module, k)) for k in GLOBAL_HOOKS if hasattr(torch_module, k)}


def rng_state() -> tuple:
    return torch.get_rng_state(), np.random.get_state(), random.getstate()


def assert_rng_unchanged(before: tuple) -> None:
    t, n, r = before
    assert torch.equal(t, torch.get_rng_state()), "torch global RNG was used"
    now = np.random.get_state()
    assert n[0] == now[0] and np.array_equal(n[1], now[1]) and n[2:] == now[2:], "numpy RNG used"
    assert r == random.getstate(), "random RNG was used"


def snapshot(model: nn.Module) -> dict:
    return {
        "hooks": hooks_of(model),
        "global_hooks": global_hooks(),
        "training": [(n, m.training) for n, m in model.named_modules(remove_duplicate=False)],
        "requires_grad": [(n, p.requires_grad) for n, p in model.named_parameters()],
        "grads": [(n, p.grad) for n, p in model.named_parameters()],
        "tensors": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "rng": rng_state(),
    }


def assert_restored(model: nn.Module, before: dict, tensors: bool = True, rng: bool = True) -> None:
    after = snapshot(model)
    assert after["hooks"] == before["hooks"], "hooks left on (or removed from) modules"
    assert after["global_hooks"] == before["global_hooks"]
    assert after["training"] == before["training"], "train/eval flags not restored"
    assert after["requires_grad"] == before["requires_grad"], "requires_grad not restored"
    if tensors:
        assert all(a is None and b is None for (_, a), (_, b) in zip(before["grads"], after["grads"]))
        for k, v in before["tensors"].items():
            assert torch.equal(v, after["tensors"][k]), f"{k} changed"
    if rng:
        assert_rng_unchanged(before["rng"])


def mixed_state(model: nn.Module) -> nn.Module:
    """Train mode with one BatchNorm in eval, and a mix of frozen and trainable parameters."""
    model.train()
    next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d)).eval()
    params = list(model.parameters())
    for p in params[: len(params) // 3]:
        p.requires_grad_(False)
    flags = [m.training for m in model.modules()]
    grads = [p.requires_grad for p in params]
    assert any(flags) and not all(flags) and any(grads) and not all(grads)
    return model


@contextmanager
def count_calls(model: nn.Module) -> Iterator[Dict[str, int]]:
    """Count forward calls of every named module (with our own pre-hooks, removed after)."""
    counts: Dict[str, int] = {}
    handles = []
    for name, mod in model.named_modules():
        if name:

            def pre(m, inp, name=name):
                counts[name] = counts.get(name, 0) + 1

            handles.append(mod.register_forward_pre_hook(pre))
    try:
        yield counts
    finally:
        for h in handles:
            h.remove()


def capture(model: nn.Module, layers, x: torch.Tensor, calls: int = 1, **kw) -> list:
    """Run a Capture of ``layers`` ``calls`` times under model_guard; return each call's dict."""
    refs = [resolve_layer(model, layer) for layer in layers]
    with model_guard(model), Capture(model, model, refs, **kw) as run:
        return [dict(run(x)) for _ in range(calls)]


class Bomb(nn.Module):
    """Wraps a module and raises ``exc`` at its ``at``-th call (1-based)."""

    def __init__(self, inner: nn.Module, at: int, exc: BaseException) -> None:
        super().__init__()
        self.inner, self.at, self.exc, self.n = inner, at, exc, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.n += 1
        if self.n == self.at:
            raise self.exc
        return self.inner(x)


def non_inplace_copy(model: nn.Module) -> nn.Module:
    clean = copy.deepcopy(model)
    for m in clean.modules():
        if getattr(m, "inplace", False):
            m.inplace = False
    return clean


# ------------------------------------------------------------------ 2. in-place activations


def _resnet_bn1(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return m.bn1(m.conv1(x))


def _mobilenet_bn(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return m.features[0][1](m.features[0][0](x))  # BN before Hardswish(inplace=True)


def _squeezenet_conv(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return m.features[0](x)  # conv before ReLU(inplace=True)


@pytest.mark.parametrize("need_output", [False, True], ids=["truncated", "with-output"])
@pytest.mark.parametrize(
    "arch, layer, manual",
    [
        ("resnet18", "bn1", _resnet_bn1),
        ("mobilenet_v3_small", "features.0.1", _mobilenet_bn),
        ("squeezenet1_1", "features.0", _squeezenet_conv),
    ],
    ids=["resnet18", "mobilenet", "squeezenet"],
)
def test_inplace_activation_after_layer_does_not_alter_capture_or_gradient(
    arch, layer, manual, need_output, _resnet18, _mobilenet
):
    model = {"resnet18": _resnet18, "mobilenet_v3_small": _mobilenet}.get(arch) or build(arch)
    assert any(getattr(m, "inplace", False) for m in model.modules())  # the hazard is there
    clean = non_inplace_copy(model).eval()
    x = image(1, seed=1)
    w = torch.randn(manual(clean, x).shape, generator=gen(2))
    refs = [resolve_layer(model, layer)] + ([resolve_layer(model, None)] if need_output else [])
    with model_guard(model), Capture(model, model, refs) as run:
        for call in range(2):  # the probing (full) call, then the truncated one
            xi = x.clone().requires_grad_(True)
            acts = run(xi)
            a = acts[layer]
            assert (a < 0).any(), f"call {call}: captured values were rectified in place"
            xr = x.clone().requires_grad_(True)
            expected = manual(clean, xr)
            torch.testing.assert_close(a, expected, rtol=0, atol=0)
            (g,) = torch.autograd.grad((a * w).sum(), xi)
            (g_ref,) = torch.autograd.grad((expected * w).sum(), xr)
            torch.testing.assert_close(g, g_ref, rtol=1e-6, atol=1e-7)
            assert g.abs().sum() > 0
            if need_output:
                torch.testing.assert_close(acts[""], clean(x), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------- 3. reused modules


def _layer1_relu_calls(m: nn.Module, x: torch.Tensor) -> tuple:
    """The two outputs of resnet18's layer1.0.relu, computed by hand (no in-place ops)."""
    h = m.maxpool(F.relu(m.bn1(m.conv1(x))))
    b = m.layer1[0]
    r0 = F.relu(b.bn1(b.conv1(h)))
    r1 = F.relu(b.bn2(b.conv2(r0)) + h)
    return r0, r1


def test_reused_module_without_index_raises_with_count_and_fix(resnet18):
    for spec in ("layer1.0.relu", resnet18.layer1[0].relu):
        with pytest.raises(RuntimeError) as err:
            capture(resnet18, [spec], image())
        msg = str(err.value)
        assert "'layer1.0.relu'" in msg and "runs 2 times" in msg
        assert "'layer1.0.relu#0'" in msg and "'layer1.0.relu#1'" in msg


def test_reused_module_call_index_picks_that_call(resnet18):
    x = image(seed=3)
    with torch.no_grad():
        r0, r1 = _layer1_relu_calls(resnet18, x)
    assert not torch.equal(r0, r1)
    both = capture(resnet18, ["layer1.0.relu#0", "layer1.0.relu#1"], x, calls=2)
    for acts in both:  # probing call and truncated call
        torch.testing.assert_close(acts["layer1.0.relu#0"], r0, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(acts["layer1.0.relu#1"], r1, rtol=1e-5, atol=1e-6)
    # alone, #1 (which needs the forward to go on past call 0) and via fv.activations
    (acts,) = capture(resnet18, ["layer1.0.relu#1"], x)
    torch.testing.assert_close(acts["layer1.0.relu#1"], r1, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fv.activations(resnet18, "layer1.0.relu#1", x), r1, rtol=1e-5, atol=1e-6)


def test_reused_module_call_index_out_of_range_raises(resnet18):
    with pytest.raises(RuntimeError, match=r"layer1\.0\.relu#2.*runs only 2 time"):
        capture(resnet18, ["layer1.0.relu#2"], image())


def test_same_call_under_two_keys_is_captured_for_both():
    """'conv' and 'conv#0' are the same call of a module that runs once; both keys get it
    (the engine once kept only one of them, so an objective reading the other got a KeyError)."""
    model = seeded(TwoConv)
    x = image(2, 12)
    for acts in capture(model, ["a", "a#0", model.a], x, calls=2):
        assert set(acts) == {"a", "a#0"}
        torch.testing.assert_close(acts["a"], model.a(x))
        torch.testing.assert_close(acts["a#0"], model.a(x))
    obj = channel("a", 0) + channel("a#0", 1)
    fv.render(model, obj, steps=2, size=12, progress=False, transforms=[])


# ---------------------------------------------------------------------------- 4. truncation


def test_truncated_forward_stops_after_needed_layer(resnet18):
    x = image()
    refs = [resolve_layer(resnet18, "layer1.0.conv1")]
    names = [n for n, _ in resnet18.named_modules() if n]
    with model_guard(resnet18), Capture(resnet18, resnet18, refs) as run:
        with count_calls(resnet18) as full:
            run(x)
        with count_calls(resnet18) as cut:
            acts = run(x)
    assert full["fc"] == 1 and full["layer4.1.conv2"] == 1  # probing call: whole model
    for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer1.0", "layer1.0.conv1"):
        assert cut.get(name) == 1, name
    for name in ("layer1.0.bn1", "layer1.0.relu", "layer1.1.conv1", "layer2", "fc", "avgpool"):
        assert cut.get(name, 0) == 0, f"{name} ran after the last needed layer"
    assert sum(cut.values()) < sum(full.values()) / 10  # cost: a tenth of the module calls
    torch.testing.assert_close(
        acts["layer1.0.conv1"],
        resnet18.layer1[0].conv1(resnet18.maxpool(resnet18.relu(resnet18.bn1(resnet18.conv1(x))))),
    )
    assert len(names) == len(full)  # every module ran once at least in the probe


def test_truncation_stops_at_the_deepest_of_several_layers(resnet18):
    x = image()
    # given deepest first: where it stops must not depend on the order of the request
    refs = [resolve_layer(resnet18, n) for n in ("layer2.0.conv1", "layer1.0.relu#1", "bn1")]
    with model_guard(resnet18), Capture(resnet18, resnet18, refs) as run:
        run(x)
        with count_calls(resnet18) as cut:
            acts = run(x)
    assert set(acts) == {"layer2.0.conv1", "layer1.0.relu#1", "bn1"}
    assert cut["layer2.0.conv1"] == 1 and cut["layer1.1.conv2"] == 1
    assert cut.get("layer2.0.bn1", 0) == 0 and cut.get("layer2.0.downsample.0", 0) == 0
    assert cut.get("fc", 0) == 0


def test_truncation_at_a_reused_module_stops_after_the_chosen_call(resnet18):
    x = image()
    with model_guard(resnet18), Capture(resnet18, resnet18, [resolve_layer(resnet18, "layer1.0.relu#0")]) as run:
        run(x)
        with count_calls(resnet18) as cut:
            run(x)
    assert cut["layer1.0.relu"] == 1 and cut.get("layer1.0.conv2", 0) == 0


def test_no_truncation_when_model_output_is_needed_or_disabled(resnet18):
    x = image()
    for layers, kw in ([["layer1.0.conv1", None], {}], [["layer1.0.conv1"], {"truncate": False}]):
        refs = [resolve_layer(resnet18, layer) for layer in layers]
        with model_guard(resnet18), Capture(resnet18, resnet18, refs, **kw) as run:
            with count_calls(resnet18) as counts:
                for _ in range(3):
                    acts = run(x)
        assert counts["fc"] == 3 and counts["layer4.1.conv2"] == 3
        if None in layers:
            torch.testing.assert_close(acts[""], resnet18(x))


def test_render_and_activations_truncate_after_the_probe():
    """Across a whole render (every step) and fv.activations (every chunk), the modules after
    the objective's layer run only once: in the probing call."""
    model = build("squeezenet1_1")
    with count_calls(model) as counts:
        fv.render(model, "features.3.squeeze:0", steps=4, size=64, progress=False)
    assert counts["features.3.squeeze"] == 5  # 4 steps + the final evaluation
    assert counts["classifier.1"] == 1 and counts["features.3.expand1x1"] == 1
    with count_calls(model) as counts:
        fv.activations(model, "features.0", image(4), batch_size=1)
    assert counts["features.0"] == 4 and counts["features.1"] == 1 and counts["classifier.1"] == 1


def test_truncation_on_a_module_that_would_raise_after_the_layer():
    model = seeded(TwoConv)
    x = image(1, 12)
    refs = [resolve_layer(model, "a")]
    with model_guard(model), Capture(model, model, refs) as run:
        run(x)  # the probe runs everything
        model.b.armed = True
        acts = run(x)  # would raise if b ran
    torch.testing.assert_close(acts["a"], model.a(x))
    with pytest.raises(AssertionError, match="b ran"):
        model(x)


# ------------------------------------------------------- 5. clean-up, whatever ends the block


def _wrap_bomb(model: nn.Module, at: int, exc: BaseException) -> Bomb:
    bomb = Bomb(model.features[1], at, exc)  # before the captured layer: fires when truncated
    model.features[1] = bomb
    return bomb


LAYER = "features.2"  # mobilenet_v3_small block whose output is pre-activation


def _entry(kind: str, model: nn.Module, fail: str) -> None:
    x = image(2)
    if kind == "model_guard":
        with model_guard(model) as guard:
            # inside: eval mode, frozen parameters
            assert not any(m.training for m in model.modules())
            assert not any(p.requires_grad for p in model.parameters())
            guard.add_hook(model.features[0].register_forward_hook(lambda *a: None))
            guard.add_hook(model.features[0].register_forward_pre_hook(lambda *a: None))
            xi = x.clone().requires_grad_(True)
            model(xi).sum().backward()
            assert xi.grad is not None
            if fail == "block":
                raise ValueError("boom in block")
            if fail == "keyboard_block":
                raise KeyboardInterrupt
    elif kind == "capture":
        refs = [resolve_layer(model, LAYER), resolve_layer(model, "features.0.0")]
        with model_guard(model), Capture(model, model, refs) as run:
            for _ in range(3):
                run(x.clone().requires_grad_(True))[LAYER].sum().backward()
            if fail == "block":
                raise ValueError("boom in block")
    elif kind == "render":
        obj = base = channel(LAYER, 1)
        if fail == "keyboard_objective":

            def fn(ctx):
                if ctx.step == 2:
                    raise KeyboardInterrupt
                return base(ctx)

            obj = Objective(fn, base.layers, "interrupted")
        fv.render(model, obj, steps=4, size=64, progress=False)
    elif kind == "activations":
        fv.activations(model, LAYER, x, batch_size=1)
    elif kind == "layers":
        fv.layers(model, input_size=64)


CASES = [
    ("model_guard", "none", None),
    ("model_guard", "block", ValueError),
    ("model_guard", "keyboard_block", KeyboardInterrupt),
    ("model_guard", "keyboard_model", KeyboardInterrupt),
    ("capture", "none", None),
    ("capture", "block", ValueError),
    ("capture", "model", ValueError),
    ("capture", "keyboard_model", KeyboardInterrupt),
    ("render", "none", None),
    ("render", "model", ValueError),
    ("render", "keyboard_model", KeyboardInterrupt),
    ("render", "keyboard_objective", KeyboardInterrupt),
    ("activations", "none", None),
    ("activations", "model", ValueError),
    ("activations", "keyboard_model", KeyboardInterrupt),
    ("layers", "none", None),
    ("layers", "model", ValueError),
    ("layers", "keyboard_model", KeyboardInterrupt),
]
# the forward call at which the model raises: mid-run, with the engine's hooks installed
BOMB_AT = {"model_guard": 1, "capture": 2, "render": 3, "activations": 2, "layers": 1}


@pytest.mark.parametrize("kind, fail, exc", CASES, ids=[f"{k}-{f}" for k, f, _ in CASES])
def test_clean_up_restores_model_and_rng(kind, fail, exc, mobilenet):
    model = mobilenet
    if fail in ("model", "keyboard_model"):
        bomb = _wrap_bomb(model, BOMB_AT[kind], KeyboardInterrupt() if fail == "keyboard_model" else ValueError("boom"))
    mixed_state(model)
    # a hook of the user's own must survive untouched
    mine = model.features[2].register_forward_hook(lambda *a: None)
    before = snapshot(model)
    try:
        if exc is None:
            _entry(kind, model, fail)
        else:
            with pytest.raises(exc):
                _entry(kind, model, fail)
        assert_restored(model, before)
        if fail in ("model", "keyboard_model"):
            assert bomb.n == bomb.at  # it really went off mid-run
    finally:
        mine.remove()


def test_capture_alone_removes_its_hooks_and_keeps_modes(mobilenet):
    """Capture does not touch modes (model_guard does); it only adds and removes hooks."""
    model = mixed_state(mobilenet)
    bomb = _wrap_bomb(model, 2, KeyboardInterrupt())
    before = snapshot(model)
    refs = [resolve_layer(model, LAYER)]
    with pytest.raises(KeyboardInterrupt):
        with torch.no_grad(), Capture(model, model, refs) as run:
            assert hooks_of(model) != before["hooks"]  # hooks are on inside
            run(image(2))
            run(image(2))
    assert bomb.n == 2
    # in train mode BN updates and Dropout draws random numbers: modes are model_guard's job
    assert_restored(model, before, tensors=False, rng=False)
    with pytest.raises(RuntimeError, match="with"):
        Capture(model, model, refs)(image(1))


def test_stop_signal_does_not_leak_out_of_capture():
    model = seeded(TwoConv)
    refs = [resolve_layer(model, "a")]
    with model_guard(model), Capture(model, model, refs) as run:
        for _ in range(2):
            run(image(1, 12))  # a _StopForward escaping would fail here
    assert issubclass(_StopForward, BaseException) and not issubclass(_StopForward, Exception)


# ------------------------------------------------------- 6. models that catch Exception


class CatchesExceptions(nn.Module):
    """Wraps its first sub-call in ``try/except Exception`` with a fallback, as some model code
    does; the stop signal must not be swallowed (else ``tail`` would run on the fallback)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3))
        self.tail = nn.Conv2d(4, 2, 1)
        self.fallbacks = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            h = self.inner(x)
        except Exception:
            self.fallbacks += 1
            h = torch.zeros(x.shape[0], 4, x.shape[2] - 4, x.shape[3] - 4)
        return self.tail(h)


def test_model_catching_exception_still_truncates():
    model = seeded(CatchesExceptions)
    x = image(2, 10)
    with model_guard(model), Capture(model, model, [resolve_layer(model, "inner.0")]) as run:
        run(x)
        with count_calls(model) as cut:
            acts = run(x)
    assert model.fallbacks == 0
    assert cut.get("tail", 0) == 0 and cut.get("inner.1", 0) == 0
    torch.testing.assert_close(acts["inner.0"], model.inner[0](x))


# ------------------------------------------------------- 7. functional activations


class FunctionalRelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.conv(x)))


def test_functional_relu_after_hooked_conv_captures_pre_activation_and_render_has_gradient():
    """A hook sees module outputs only: with ``F.relu`` applied in forward after ``conv``, the
    activation of 'conv' is the conv output, before the ReLU (negatives included); rendering a
    channel of it still gets gradient everywhere, even where the ReLU would be off."""
    model = seeded(FunctionalRelu)
    x = image(2, 12)
    acts = fv.activations(model, "conv", x)
    assert (acts < 0).any()
    torch.testing.assert_close(acts, model.conv(x))
    res = fv.render(model, "conv:1", steps=5, size=12, progress=False, transforms=[])
    grads = [p.grad for p in res.param.parameters()]
    assert all(g is not None for g in grads) and any(bool(g.any()) for g in grads)
    assert res.values[0] > res.history[0, 0]  # it climbed


# ------------------------------------------------------- 8. odd layers


class TwoConv(nn.Module):
    """a -> b, plus a module that never runs, one returning a tuple and one returning a dict."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3)
        self.b = Armed(4, 2)
        self.never = nn.Conv2d(3, 3, 1)
        self.pair = PairOut()
        self.mapping = DictOut()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.b(self.a(x))
        first, _ = self.pair(h)
        return first + self.mapping(h)["y"]


class Armed(nn.Conv2d):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(cin, cout, 1)
        self.armed = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert not self.armed, "b ran"
        return super().forward(x)


class PairOut(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple:
        return x * 2 - 1, torch.full_like(x, 99.0)


class DictOut(nn.Module):
    def forward(self, x: torch.Tensor) -> dict:
        return {"y": x * 3}


def test_layer_that_does_not_run_raises_clearly():
    model = seeded(TwoConv)
    before = hooks_of(model)
    for call in (
        lambda: capture(model, ["never"], image(1, 12)),
        lambda: fv.activations(model, "never", image(1, 12)),
        lambda: fv.render(model, "never:0", steps=2, size=12, progress=False),
    ):
        with pytest.raises(RuntimeError, match="'never' did not run"):
            call()
    assert hooks_of(model) == before


def test_layer_returning_tuple_uses_its_first_tensor():
    model = seeded(TwoConv)
    x = image(2, 12)
    h = model.b(model.a(x))
    acts = fv.activations(model, "pair", x)
    torch.testing.assert_close(acts, h * 2 - 1)
    res = fv.render(model, "pair:0", steps=2, size=12, progress=False, transforms=[])
    assert res.values.shape == (1,)


def test_layer_returning_non_tensor_raises_type_error():
    model = seeded(TwoConv)
    before = hooks_of(model)
    with pytest.raises(TypeError, match="'mapping' returned dict, not a tensor"):
        fv.activations(model, "mapping", image(1, 12))
    with pytest.raises(TypeError, match="'mapping' returned dict"):
        capture(model, ["mapping"], image(1, 12))
    assert hooks_of(model) == before


def test_two_captures_on_one_model_do_not_interfere():
    """Each Capture's hooks act only during its own call: one cannot truncate the other."""
    from torch import nn

    from captum_fv.addressing import resolve_layer
    from captum_fv.hooks import Capture

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    x = torch.rand(2, 3, 12, 12)
    model(x)
    ref = resolve_layer(model, "0")
    with Capture(model, model, [ref]) as cut, Capture(model, model, [ref, resolve_layer(model, None)]) as full:
        for _ in range(3):
            cut(x)
            acts = full(x)
            assert acts[""].shape == (2, 2)  # the full forward ran to the end
            assert torch.equal(acts["0"], cut(x)["0"])
