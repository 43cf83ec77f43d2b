"""The render loop: outputs, snapshots, reproducibility, leaving the world as it was, errors,
options; and, with the real model, that optimization really finds what excites a unit."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_model_unchanged, assert_rng_unchanged, model_state, rng_state

import captum_fv as fv
from captum_fv import objectives as obj
from captum_fv import param as param_lib
from captum_fv import transforms as tf
from captum_fv.objectives import Objective

KW = dict(size=32, progress=False)


def chan_mean(net, layer, images, c):
    return fv.activations(net, layer, images)[:, c].mean((1, 2))


def test_result_shapes_and_range(tiny):
    res = fv.render(tiny, obj.channel("bn2", 3), batch=2, steps=5, **KW)
    assert res.images.shape == (2, 3, 32, 32) and res.images.dtype == torch.float32
    assert float(res.images.min()) >= 0 and float(res.images.max()) <= 1
    assert res.history.shape == (5, 2)
    assert res.values.shape == (2,)
    assert res.seed == 0 and res.objective.name.startswith("channel")
    ns = fv.render(tiny, obj.channel("bn2", 3), steps=2, size=(24, 40), progress=False)
    assert ns.images.shape == (1, 3, 24, 40)


def test_values_are_the_objective_on_final_images_without_transforms(tiny):
    res = fv.render(tiny, obj.channel("bn2", 3), batch=2, steps=6, **KW)
    torch.testing.assert_close(res.values, chan_mean(tiny, "bn2", res.images, 3))
    # history is per step on the images being optimized: with no transforms its first row is
    # the objective on the initial image, and optimization raises it
    res2 = fv.render(tiny, obj.channel("bn2", 3), batch=2, steps=12, transforms=[], lr=0.1, **KW)
    torch.testing.assert_close(res2.history[0], chan_mean(tiny, "bn2", res2.snapshots[0], 3))
    assert (res2.history[-1] > res2.history[0]).all()
    assert (res2.values > res2.history[0]).all()


def test_snapshots(tiny):
    o = obj.channel("bn2", 3)
    res = fv.render(tiny, o, steps=6, thresholds=[0, 2, 5, 99], **KW)
    assert sorted(res.snapshots) == [0, 2, 5, 6]
    start = param_lib.image(32, seed=0)().detach()
    assert torch.equal(res.snapshots[0], start)  # 0 is the initial image
    assert torch.equal(res.snapshots[6], res.images)  # the final step is the result
    assert not torch.equal(res.snapshots[2], res.snapshots[0])
    # snapshot k is the image after k updates: the same as a k-step run
    short = fv.render(tiny, o, steps=2, thresholds=[], **KW)
    assert torch.equal(res.snapshots[2], short.images)
    default = fv.render(tiny, o, steps=6, **KW)
    assert sorted(default.snapshots) == [0, 4, 6]  # DEFAULT_THRESHOLDS below steps, plus the end


def test_same_seed_bit_identical_different_seed_differs(tiny):
    o = obj.channel("bn2", 3) - 0.1 * obj.l1()
    a = fv.render(tiny, o, steps=4, seed=3, **KW)
    b = fv.render(tiny, o, steps=4, seed=3, **KW)
    c = fv.render(tiny, o, steps=4, seed=4, **KW)
    assert torch.equal(a.images, b.images) and torch.equal(a.history, b.history)
    assert not torch.equal(a.images, c.images)
    # the seed also drives the transforms, not just the initial noise
    p1, p2 = param_lib.image(32, seed=0), param_lib.image(32, seed=0)
    d = fv.render(tiny, o, param=p1, steps=3, seed=1, **KW)
    e = fv.render(tiny, o, param=p2, steps=3, seed=2, **KW)
    assert not torch.equal(d.images, e.images)


def test_global_rng_untouched(tiny):
    before = rng_state()
    fv.render(tiny, obj.channel("bn2", 3) + 0.1 * obj.diversity("bn2"), batch=2, steps=3, **KW)
    assert_rng_unchanged(before)


def test_model_left_as_found(tiny):
    tiny.train()  # BatchNorm would update its running stats in train mode
    tiny.bn1.eval()
    tiny.conv1.weight.requires_grad_(False)
    before = model_state(tiny)
    res = fv.render(tiny, obj.channel("bn3", 1), steps=3, **KW)
    assert_model_unchanged(tiny, before)
    assert tiny.training and not tiny.bn1.training and tiny.bn2.training
    assert tiny.conv1.weight.grad is None and tiny.conv2.weight.grad is None
    # the result was computed in eval mode (running stats), not on batch statistics
    tiny.eval()
    torch.testing.assert_close(res.values, chan_mean(tiny, "bn3", res.images, 1))


def test_nan_objective_raises_with_last_finite_images(tiny):
    before = model_state(tiny)
    base = obj.channel("bn2", 3)

    def fn(ctx):
        v = base(ctx)
        return v * float("nan") if ctx.step >= 3 else v

    with pytest.raises(fv.NonFiniteObjectiveError, match="step 3") as info:
        fv.render(tiny, Objective(fn, base.layers, "nan@3"), steps=8, **KW)
    err = info.value
    assert err.step == 3
    assert torch.isfinite(err.images).all() and err.images.shape == (1, 3, 32, 32)
    ref = fv.render(tiny, base, steps=3, thresholds=[2], **KW)
    assert torch.equal(err.images, ref.snapshots[2])  # the images of the last finite step
    assert_model_unchanged(tiny, before)
    with pytest.raises(fv.NonFiniteObjectiveError) as info0:
        fv.render(tiny, base * float("inf") - base * float("inf"), steps=2, **KW)
    assert info0.value.step == 0 and torch.isfinite(info0.value.images).all()


def test_objective_independent_of_input_raises(tiny):
    const = Objective(lambda ctx: torch.ones(ctx.batch_size), ["bn2"], "const")
    with pytest.raises(ValueError, match="does not depend on the input"):
        fv.render(tiny, const, steps=3, **KW)
    detached = Objective(lambda ctx: ctx.acts("bn2").detach()[:, 0].mean((1, 2)), ["bn2"], "det")
    with pytest.raises(ValueError, match="does not depend on the input"):
        fv.render(tiny, detached, steps=3, **KW)
    zero = 0 * obj.channel("bn2", 3)  # connected to the graph, but its gradient is always zero
    with pytest.raises(ValueError, match="zero gradient"):
        fv.render(tiny, zero, steps=12, **KW)
    before = model_state(tiny)
    with pytest.raises(ValueError):
        fv.render(tiny, zero, steps=12, **KW)
    assert_model_unchanged(tiny, before)


def test_objective_shape_and_batch_errors(tiny):
    bad = Objective(lambda ctx: ctx.acts("bn2").mean(), ["bn2"], "scalar")
    with pytest.raises(ValueError, match=r"one value per batch slot"):
        fv.render(tiny, bad, steps=2, **KW)
    with pytest.raises(ValueError, match="batch >= 3"):
        fv.render(tiny, obj.channel("bn2", 0, batch=2), param=param_lib.image(32), steps=2, **KW)
    res = fv.render(tiny, obj.channel("bn2", 0, batch=2), steps=2, **KW)
    assert res.images.shape[0] == 3  # the default batch fits the objective


def test_blur_every_smooths(tiny):
    still = lambda ps: torch.optim.SGD(ps, lr=0.0)  # noqa: E731  (isolate the blur)
    o = obj.channel("bn2", 3)
    plain = fv.render(
        tiny, o, param=param_lib.image(32, fft=False, sd=1.0), optimizer=still, steps=5, transforms=[], **KW
    )
    blurred = fv.render(
        tiny,
        o,
        param=param_lib.image(32, fft=False, sd=1.0),
        optimizer=still,
        steps=5,
        transforms=[],
        blur_every=2,
        blur_sigma=1.0,
        **KW,
    )
    assert torch.equal(plain.images, plain.snapshots[0])
    tv = lambda x: float(obj.total_variation()(obj.Context(x, x, {}, {})).sum())  # noqa: E731
    assert tv(blurred.images) < 0.5 * tv(plain.images)
    assert torch.equal(blurred.snapshots[0], plain.snapshots[0])


def test_custom_optimizer_factory_is_used(tiny):
    made = []

    class Counting(torch.optim.SGD):
        steps = 0

        def step(self, closure=None):
            Counting.steps += 1
            return super().step(closure)

    def factory(params):
        params = list(params)
        made.append(params)
        return Counting(params, lr=0.0)

    p = param_lib.image(32)
    res = fv.render(tiny, obj.channel("bn2", 3), param=p, optimizer=factory, steps=4, **KW)
    assert len(made) == 1 and Counting.steps == 4
    assert {id(t) for t in made[0]} == {id(t) for t in p.parameters()}
    assert torch.equal(res.images, res.snapshots[0])  # lr 0: the factory's optimizer ran, not Adam
    moved = fv.render(tiny, obj.channel("bn2", 3), steps=4, **KW)
    assert not torch.equal(moved.images, moved.snapshots[0])


def test_transform_list_and_empty(tiny):
    o = obj.channel("bn2", 3)
    listed = fv.render(tiny, o, transforms=[tf.pad(2), tf.jitter(3)], steps=3, **KW)
    composed = fv.render(tiny, o, transforms=tf.compose(tf.pad(2), tf.jitter(3)), steps=3, **KW)
    assert torch.equal(listed.images, composed.images)
    seen = []
    spy = lambda x, g: seen.append(tuple(x.shape)) or x  # noqa: E731
    fv.render(tiny, o, transforms=[spy, tf.jitter(4)], steps=2, **KW)
    assert seen == [(1, 3, 32, 32)] * 2
    none = fv.render(tiny, o, transforms=[], steps=3, **KW)
    default = fv.render(tiny, o, transforms=None, steps=3, **KW)
    assert not torch.equal(none.images, default.images)
    torch.testing.assert_close(none.history[0], chan_mean(tiny, "bn2", none.snapshots[0], 3))


def test_forward_function_and_module_layer(tiny):
    """A plain function (Captum's forward_func) with the layer given as a module object."""
    o = obj.channel(tiny.bn2, 3)
    before = model_state(tiny)
    res = fv.render(lambda x: tiny(x), o, steps=3, **KW)
    assert res.images.shape == (1, 3, 32, 32)
    # nothing can freeze the parameters behind a plain function, yet none gets a .grad
    assert all(p.grad is None for p in tiny.parameters())
    assert_model_unchanged(tiny, before)
    ref = fv.render(tiny, obj.channel("bn2", 3), steps=3, **KW)
    assert torch.equal(res.images, ref.images)


# --------------------------------------------------------------------------- real model

LAYER = "_blocks.8"
RKW = dict(size=96, progress=False)


@pytest.mark.slow
def test_real_channel_lifted_far_above_start(real_model):
    res = fv.render(real_model, obj.channel(LAYER, 2), steps=24, **RKW)
    start = float(chan_mean(real_model, LAYER, res.snapshots[0], 2))
    end = float(res.values)
    assert end > 5 * abs(start) and end > start + 10


@pytest.mark.slow
def test_real_negative_optimum_below_every_sample(real_model, sample_batch):
    c = 0
    res = fv.render(real_model, -obj.channel(LAYER, c), steps=24, **RKW)
    lowest = float(chan_mean(real_model, LAYER, sample_batch, c).min())
    reached = float(chan_mean(real_model, LAYER, res.images, c))
    torch.testing.assert_close(res.values, -chan_mean(real_model, LAYER, res.images, c))
    assert reached < lowest - 1.0


@pytest.mark.slow
def test_real_joint_optimization_raises_both(real_model, sample_batch):
    a, b = 2, 5
    res = fv.render(real_model, obj.channel(LAYER, a) + obj.channel(LAYER, b), steps=24, **RKW)
    acts = fv.activations(real_model, LAYER, torch.cat([res.snapshots[0], res.images]))
    start, end = acts.mean((2, 3))
    data_max = fv.activations(real_model, LAYER, sample_batch).mean((2, 3)).max(0).values
    for u in (a, b):
        assert end[u] > start[u] + 3
        assert end[u] > data_max[u]  # both beyond anything the sample photos reach


@pytest.mark.slow
def test_real_class_logit_and_probability_raise_their_class(real_model):
    k = 530  # an ImageNet class index (digital clock)
    out = {}
    for name, o in [("logit", obj.class_logit(k)), ("prob", obj.class_probability(k))]:
        res = fv.render(real_model, o, steps=24, lr=0.08, recipe="fourier", **RKW)  # the objective, 24 steps
        with torch.no_grad():
            logits = real_model(torch.cat([res.snapshots[0], res.images]))
        probs = torch.softmax(logits, 1)[:, k]
        out[name] = (logits[:, k], probs, res)
        assert logits[1, k] > logits[0, k] + 5
        assert probs[1] > 0.5 > 10 * probs[0]
        assert int(logits[1].argmax()) == k
    torch.testing.assert_close(out["logit"][2].values, out["logit"][0][1:], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out["prob"][2].values, out["prob"][1][1:], rtol=1e-4, atol=1e-5)
