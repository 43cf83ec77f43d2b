"""Objectives compute what they say, compose with + - * /, target slots, and are maximized.

Each built-in is compared to a manual computation on given activations through a Context, so a
wrong axis, sign, pooling or normalization shows up as a numeric mismatch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_rng_unchanged, make_tiny, rng_state
from hypothesis import given, settings
from hypothesis import strategies as st

import captum_fv as fv
from captum_fv import objectives as obj
from captum_fv.objectives import Context, Objective
from captum_fv.transforms import gaussian_blur


def ctx_of(acts, images=None, step=0):
    """A Context over given activations {layer name: tensor} ('' is the model output)."""
    if images is None:
        n = next(iter(acts.values())).shape[0]
        images = torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    return Context(images, images, acts, {k: k for k in acts}, step)


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def tiny_acts(net, x):
    """Every intermediate of the tiny net, computed by hand (no hooks), plus the output ''."""
    out = {}
    h = x
    for name in ["conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "conv3", "bn3", "relu3"]:
        h = getattr(net, name)(h)
        out[name] = h
    out[""] = net.fc(net.pool(h).flatten(1))
    return out


# --------------------------------------------------------------------------- units


def test_neuron_centre_and_position():
    a = randn(3, 6, 5, 7)  # non-square, so x/y swaps cannot go unnoticed
    ctx = ctx_of({"L": a})
    torch.testing.assert_close(obj.neuron("L", 4)(ctx), a[:, 4, 2, 3])
    torch.testing.assert_close(obj.neuron("L", 4, x=6, y=1)(ctx), a[:, 4, 1, 6])
    torch.testing.assert_close(obj.neuron("L", 0, x=0, y=4)(ctx), a[:, 0, 4, 0])
    with pytest.raises(IndexError, match="outside"):
        obj.neuron("L", 0, x=7, y=0)(ctx)  # x indexes the width (7)


def test_channel_is_spatial_mean():
    a = randn(4, 6, 5, 7)
    ctx = ctx_of({"L": a})
    torch.testing.assert_close(obj.channel("L", 5)(ctx), a[:, 5].mean((1, 2)))
    # one unit per slot
    v = obj.channel("L", [3, 0, 1, 5])(ctx)
    torch.testing.assert_close(v, torch.stack([a[i, u].mean() for i, u in enumerate([3, 0, 1, 5])]))
    with pytest.raises(IndexError, match="6 channels"):
        obj.channel("L", 6)(ctx)


def test_deepdream_is_mean_square():
    a = randn(3, 4, 5, 5)
    ctx = ctx_of({"L": a})
    torch.testing.assert_close(obj.deepdream("L")(ctx), a.pow(2).mean((1, 2, 3)))
    assert obj.layer is obj.deepdream


def test_class_logit_and_probability():
    logits = randn(3, 10) * 3
    ctx = ctx_of({"": logits})
    torch.testing.assert_close(obj.class_logit(7)(ctx), logits[:, 7])
    torch.testing.assert_close(obj.class_probability(7)(ctx), torch.softmax(logits, 1)[:, 7])
    total = sum(obj.class_probability(k)(ctx) for k in range(10))
    torch.testing.assert_close(total, torch.ones(3))
    # spatial logits at a named layer are averaged over positions
    sp = randn(2, 5, 3, 3)
    ctx2 = ctx_of({"head": sp})
    torch.testing.assert_close(obj.class_logit(2, layer="head")(ctx2), sp[:, 2].mean((1, 2)))
    with pytest.raises(IndexError, match="10 classs|0..9"):
        obj.class_logit(10)(ctx)


# --------------------------------------------------------------------------- directions


def test_direction_pooled_and_at_position():
    a = randn(2, 5, 4, 6)
    d = randn(5, seed=3)
    ctx = ctx_of({"L": a})
    dot = torch.einsum("nchw,c->nhw", a, d)
    torch.testing.assert_close(obj.direction("L", d)(ctx), dot.mean((1, 2)))
    torch.testing.assert_close(obj.direction("L", d, x=5, y=1)(ctx), dot[:, 1, 5])
    torch.testing.assert_close(obj.direction("L", d.tolist())(ctx), dot.mean((1, 2)))  # a list works
    with pytest.raises(ValueError, match="5 channels"):
        obj.direction("L", torch.ones(4))(ctx)


def test_direction_cossim_power():
    a = rand(2, 5, 4, 6) + 0.1  # positive, with a positive direction: cos well above the clamp
    d = rand(5, seed=4) + 0.1
    ctx = ctx_of({"L": a})
    dot = torch.einsum("nchw,c->nhw", a, d)
    cos = dot / (a.norm(dim=1) * d.norm())
    for n in (1.0, 3.0):
        want = (dot * cos**n).mean((1, 2))
        torch.testing.assert_close(obj.direction("L", d, cossim_pow=n)(ctx), want, rtol=1e-4, atol=1e-5)
    at = obj.direction("L", d, x=2, y=3, cossim_pow=2.0)(ctx)
    torch.testing.assert_close(at, dot[:, 3, 2] * cos[:, 3, 2] ** 2, rtol=1e-4, atol=1e-5)
    # cos^n < 1, so pointing slightly away from d costs: the value is below the plain dot
    assert (obj.direction("L", d, cossim_pow=2.0)(ctx) < dot.mean((1, 2))).all()


def test_direction_matrix_gives_each_slot_its_own_vector():
    a = randn(3, 4, 2, 2)
    m = randn(3, 4, seed=7)
    ctx = ctx_of({"L": a})
    want = torch.einsum("nchw,nc->n", a, m) / 4
    torch.testing.assert_close(obj.direction("L", m)(ctx), want)


def test_random_direction_seeded_unit_norm_and_rng_free():
    a = randn(2, 9, 3, 3)
    ctx = ctx_of({"L": a})
    before = rng_state()
    o1, o2, o3 = (obj.random_direction("L", seed=s) for s in (5, 5, 6))
    v1, v2, v3 = o1(ctx), o2(ctx), o3(ctx)
    assert_rng_unchanged(before)
    d1, d3 = o1.direction["d"], o3.direction["d"]
    assert d1.shape == (9,)
    assert abs(float(d1.norm()) - 1) < 1e-6 and abs(float(d3.norm()) - 1) < 1e-6
    assert torch.equal(d1, o2.direction["d"]) and torch.equal(v1, v2)
    assert not torch.allclose(d1, d3) and not torch.allclose(v1, v3)
    torch.testing.assert_close(v1, torch.einsum("nchw,c->n", a, d1) / 9)


# --------------------------------------------------------------------------- diversity


def _manual_gram_cos(a):
    n, c = a.shape[:2]
    g = [(a[i].reshape(c, -1) @ a[i].reshape(c, -1).T / a[i, 0].numel()).flatten() for i in range(n)]
    return torch.tensor([[float(F.cosine_similarity(g[i], g[j], dim=0)) for j in range(n)] for i in range(n)])


def test_gram_and_similarity():
    a = randn(3, 4, 5, 6)
    g = obj.gram(a)
    torch.testing.assert_close(g[1], a[1].reshape(4, -1) @ a[1].reshape(4, -1).T / 30)
    torch.testing.assert_close(obj.similarity(a), _manual_gram_cos(a), rtol=1e-4, atol=1e-5)


def test_diversity_is_minus_mean_gram_similarity_within_groups():
    a = randn(6, 4, 3, 3)
    sim = _manual_gram_cos(a)
    ctx = ctx_of({"L": a})
    want_all = torch.stack([-(sim[i].sum() - sim[i, i]) / 5 for i in range(6)])
    torch.testing.assert_close(obj.diversity("L")(ctx), want_all, rtol=1e-4, atol=1e-5)
    groups = [[0, 1, 2], [3, 4]]
    want = torch.zeros(6)
    for grp in groups:
        for i in grp:
            want[i] = -sum(sim[i, j] for j in grp if j != i) / (len(grp) - 1)
    got = obj.diversity("L", groups=groups)(ctx)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert got[5] == 0  # slot 5 is in no group
    assert obj.diversity("L", groups=groups).min_batch == 5


def test_diversity_is_lowest_for_identical_slots():
    a = randn(1, 4, 3, 3).expand(3, -1, -1, -1)
    v = obj.diversity("L")(ctx_of({"L": a}))
    torch.testing.assert_close(v, -torch.ones(3))  # alike: the worst score; maximizing pushes apart
    b = randn(3, 4, 3, 3)
    assert (obj.diversity("L")(ctx_of({"L": b})) > -1 + 1e-3).all()


# --------------------------------------------------------------------------- interpolation


def test_channel_interpolate_weights_sweep():
    a = randn(5, 4, 3, 3)
    ctx = ctx_of({"L": a})
    ma, mb = a[:, 1].mean((1, 2)), a[:, 3].mean((1, 2))
    t = torch.arange(5) / 4
    torch.testing.assert_close(obj.channel_interpolate("L", 1, 3)(ctx), (1 - t) * ma + t * mb)
    sub = obj.channel_interpolate("L", 1, 3, batch=[1, 2, 3])(ctx)
    t3 = torch.tensor([0.0, 0.5, 1.0])
    torch.testing.assert_close(sub[1:4], (1 - t3) * ma[1:4] + t3 * mb[1:4])
    assert sub[0] == 0 and sub[4] == 0
    with pytest.raises(IndexError, match="4 channels"):
        obj.channel_interpolate("L", 1, 4)(ctx)


def test_channel_interpolate_with_explicit_slots_sets_min_batch():
    o = obj.channel_interpolate("bn2", 0, 1, batch=[0, 1, 2, 3])
    assert o.min_batch == 4
    # render sizes its default batch from min_batch: all four frames exist and are optimized
    res = fv.render(make_tiny(), o, size=32, steps=2, transforms=[], progress=False)
    assert res.images.shape[0] == 4 and (res.values != 0).all()


def test_alignment_cost():
    a = randn(5, 3, 2, 2)
    ctx = ctx_of({"L": a})
    for decay, reach in [(2.0, 4), (3.0, 2), (1.0, 1)]:
        want = torch.zeros(5)
        for i in range(5):
            for j in range(5):
                d = abs(i - j)
                if 1 <= d <= reach:
                    want[i] += (a[i] - a[j]).pow(2).mean() * decay ** -(d - 1) / 2
        torch.testing.assert_close(obj.alignment("L", decay, reach)(ctx), want)
    assert (obj.alignment("L")(ctx) >= 0).all()
    same = randn(1, 3, 2, 2).expand(4, -1, -1, -1)
    torch.testing.assert_close(obj.alignment("L")(ctx_of({"L": same})), torch.zeros(4))


# --------------------------------------------------------------------------- matching


def test_inversion_zero_at_match_negative_otherwise():
    a = randn(3, 4, 5, 5)
    ctx = ctx_of({"L": a})
    torch.testing.assert_close(obj.inversion("L", a)(ctx), torch.zeros(3))
    target = a[1]  # without batch dim: every slot aims at it
    v = obj.inversion("L", target)(ctx)
    assert v[1] == 0 and v[0] < 0 and v[2] < 0
    want = -((a - target).pow(2).mean((1, 2, 3)) / target.pow(2).mean())
    torch.testing.assert_close(v, want)
    # a batch of targets: one per render slot, each targeted slot aims at its own row
    targets = torch.stack([a[0], a[2], a[2]])
    per = obj.inversion("L", targets, batch=[2, 0])(ctx)
    torch.testing.assert_close(per, torch.zeros(3))
    assert obj.inversion("L", targets)(ctx)[1] < 0
    with pytest.raises(ValueError, match="same size"):
        obj.inversion("L", randn(4, 3, 3))(ctx)


def test_style_zero_at_match_negative_otherwise():
    a = randn(3, 4, 5, 5)
    ctx = ctx_of({"L": a})
    g = obj.gram(a[0:1])
    v = obj.style("L", g)(ctx)
    assert abs(float(v[0])) < 1e-6 and (v[1:] < 0).all()
    ga = obj.gram(a)
    want = -((ga - g).pow(2).mean((1, 2)) / g.pow(2).mean())
    torch.testing.assert_close(v, want)
    # a batch of target Grams: one per render slot, also when only some slots are targeted
    per = obj.style("L", ga, batch=[0, 2])(ctx)
    torch.testing.assert_close(per, torch.zeros(3))
    # style ignores where things are: a spatially shuffled activation matches perfectly
    perm = torch.randperm(25, generator=torch.Generator().manual_seed(0))
    shuffled = a[0].flatten(1)[:, perm].reshape(1, 4, 5, 5)
    assert abs(float(obj.style("L", g)(ctx_of({"L": shuffled}))[0])) < 1e-6


# --------------------------------------------------------------------------- penalties


def test_l1_l2_around_constant():
    x = rand(3, 3, 6, 6)
    ctx = ctx_of({}, images=x)
    for c in (0.0, 0.5, 0.8):
        torch.testing.assert_close(obj.l1(c)(ctx), (x - c).abs().mean((1, 2, 3)))
        torch.testing.assert_close(obj.l2(c)(ctx), (x - c).pow(2).mean((1, 2, 3)).sqrt())
    flat = ctx_of({}, images=torch.full((2, 3, 4, 4), 0.3))
    assert obj.l1(0.3)(flat).abs().max() < 1e-6 and obj.l2(0.3)(flat).abs().max() < 1e-5
    torch.testing.assert_close(obj.l1(0.5)(flat), torch.full((2,), 0.2))
    torch.testing.assert_close(obj.l2(0.0)(flat), torch.full((2,), 0.3))
    assert obj.l1().layers == () and obj.l2().layers == ()


def test_total_variation():
    x = rand(2, 3, 5, 7)
    want = (x[..., 1:, :] - x[..., :-1, :]).abs().mean((1, 2, 3)) + (x[..., :, 1:] - x[..., :, :-1]).abs().mean(
        (1, 2, 3)
    )
    torch.testing.assert_close(obj.total_variation()(ctx_of({}, images=x)), want)
    flat = torch.full((1, 3, 8, 8), 0.7)
    checker = ((torch.arange(8)[:, None] + torch.arange(8)[None]) % 2).float().expand(1, 3, 8, 8)
    tv = obj.total_variation()
    assert float(tv(ctx_of({}, images=flat))) == 0
    torch.testing.assert_close(tv(ctx_of({}, images=checker)), torch.tensor([2.0]))


def test_blur_penalty():
    x = rand(2, 3, 16, 16)
    want = 0.5 * (x - gaussian_blur(x, 1.5)).pow(2).mean((1, 2, 3))
    b = obj.blur(1.5)
    torch.testing.assert_close(b(ctx_of({}, images=x)), want)
    assert (b(ctx_of({}, images=x)) > 0).all()
    flat = torch.full((1, 3, 16, 16), 0.4)
    assert float(b(ctx_of({}, images=flat))) < 1e-12
    # the gradient pulls the image towards its blur: a small descent step lowers high frequencies
    xr = x.clone().requires_grad_(True)
    b(ctx_of({}, images=xr)).sum().backward()
    stepped = x - 50 * xr.grad
    assert float(obj.total_variation()(ctx_of({}, images=stepped)).sum()) < float(
        obj.total_variation()(ctx_of({}, images=x)).sum()
    )


@pytest.mark.parametrize("pen", [obj.l1(), obj.l2(), obj.total_variation(), obj.blur()])
def test_penalties_are_nonnegative_costs(pen):
    for seed in range(3):
        x = rand(2, 3, 12, 12, seed=seed)
        assert (pen(ctx_of({}, images=x)) >= 0).all()


# --------------------------------------------------------------------------- arithmetic


def _probe(values):
    v = torch.as_tensor(values, dtype=torch.float32)
    return Objective(lambda ctx: v.clone(), ["L"], "probe")


def test_arithmetic_with_scalars_and_objectives():
    a = randn(3, 4, 2, 2)
    ctx = ctx_of({"L": a, "M": a * 2})
    A, B = obj.channel("L", 1), obj.channel("M", 2)
    va, vb = A(ctx), B(ctx)
    cases = {
        "a+b": (A + B, va + vb),
        "a-b": (A - B, va - vb),
        "a*b": (A * B, va * vb),
        "a/b": (A / B, va / vb),
        "a+2": (A + 2, va + 2),
        "2+a": (2 + A, 2 + va),
        "a-2": (A - 2, va - 2),
        "2-a": (2 - A, 2 - va),
        "3*a": (3 * A, 3 * va),
        "a*3": (A * 3, 3 * va),
        "a/4": (A / 4, va / 4),
        "4/a": (4 / A, 4 / va),
        "-a": (-A, -va),
        "+a": (+A, va),
        "sum": (sum([A, B, 2 * A]), va + vb + 2 * va),
        "a-0.5*b+'M:0'": (A - 0.5 * B + "M:0", va - 0.5 * vb + (a * 2)[:, 0].mean((1, 2))),
    }
    for name, (o, want) in cases.items():
        assert isinstance(o, Objective), name
        torch.testing.assert_close(o(ctx), want, msg=name)
    assert (A + B).layers == ("L", "M")
    assert (A + A * 2).layers == ("L",)  # each layer captured once
    assert (obj.channel("L", 0, batch=2) + obj.channel("L", 0)).min_batch == 3
    assert (obj.channel("L", 0) - obj.channel("L", 0, batch=2)).min_batch == 3
    assert (obj.channel("L", 0, batch=1) * obj.channel("L", 0, batch=[0, 3])).min_batch == 4
    assert sum([obj.l1(), obj.channel("L", 0, batch=4)]).min_batch == 5
    assert (-obj.channel("L", 0, batch=2)).min_batch == 3
    assert (obj.channel("L", 0, batch=2) * 2).min_batch == 3
    with pytest.raises(TypeError, match="Objective"):
        A + [1, 2]


finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False, width=32, allow_subnormal=False)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 5).flatmap(
        lambda n: st.tuples(st.lists(finite, min_size=n, max_size=n), st.lists(finite, min_size=n, max_size=n))
    )
)
def test_arithmetic_identities(pair):
    va, vb = pair
    a, b = _probe(va), _probe(vb)
    ctx = ctx_of({"L": torch.zeros(len(va), 1)})
    x = torch.tensor(va)
    torch.testing.assert_close((a + b - b)(ctx), x, atol=1e-2, rtol=1e-5)
    assert torch.equal((2 * a)(ctx), (a + a)(ctx))
    assert torch.equal((-(-a))(ctx), x)
    assert torch.equal((a / 2 * 2)(ctx), x)
    assert torch.equal((a - a)(ctx), torch.zeros(len(va)))
    assert torch.equal(sum([a, b])(ctx), (a + b)(ctx))


# --------------------------------------------------------------------------- batch targeting


def _targeted_objectives():
    d = torch.linspace(-1, 1, 24)
    return {
        "neuron": obj.neuron("conv2", 3, batch=1),
        "channel": obj.channel("bn2", 5, batch=1),
        "deepdream": obj.deepdream("conv3", batch=1),
        "class_logit": obj.class_logit(2, batch=1),
        "class_probability": obj.class_probability(2, batch=1),
        "direction": obj.direction("bn2", d, batch=1),
        "random_direction": obj.random_direction("bn2", batch=1),
        "inversion": obj.inversion("conv2", torch.ones(24, 8, 8), batch=1),
        "style": obj.style("conv2", torch.eye(24), batch=1),
        "l1": obj.l1(batch=1),
        "l2": obj.l2(batch=1),
        "total_variation": obj.total_variation(batch=1),
        "blur": obj.blur(batch=1),
    }


@pytest.mark.parametrize("name", list(_targeted_objectives()))
def test_batch_targets_exactly_that_slot(name):
    net = make_tiny()
    o = _targeted_objectives()[name]
    assert o.min_batch == 2
    x = rand(3, 3, 16, 16, seed=2).requires_grad_(True)
    acts = tiny_acts(net, x)
    v = o(Context(x, x, acts, {k: k for k in acts}))
    assert v.shape == (3,)
    assert v[0] == 0 and v[2] == 0 and v[1] != 0
    # the targeted slot's value is what the untargeted objective gives for it
    untargeted = {
        "neuron": obj.neuron("conv2", 3),
        "channel": obj.channel("bn2", 5),
        "deepdream": obj.deepdream("conv3"),
        "class_logit": obj.class_logit(2),
        "class_probability": obj.class_probability(2),
        "direction": obj.direction("bn2", torch.linspace(-1, 1, 24)),
        "random_direction": obj.random_direction("bn2"),
        "inversion": obj.inversion("conv2", torch.ones(24, 8, 8)),
        "style": obj.style("conv2", torch.eye(24)),
        "l1": obj.l1(),
        "l2": obj.l2(),
        "total_variation": obj.total_variation(),
        "blur": obj.blur(),
    }[name]
    torch.testing.assert_close(v[1], untargeted(Context(x, x, acts, {k: k for k in acts}))[1])
    (g,) = torch.autograd.grad(v.sum(), x)
    assert float(g[0].abs().max()) == 0 and float(g[2].abs().max()) == 0
    assert float(g[1].abs().max()) > 0


def test_batch_list_and_negative_slots():
    a = randn(4, 3, 2, 2)
    ctx = ctx_of({"L": a})
    v = obj.channel("L", 1, batch=[0, 2])(ctx)
    torch.testing.assert_close(v, torch.stack([a[0, 1].mean(), torch.tensor(0.0), a[2, 1].mean(), torch.tensor(0.0)]))
    w = obj.channel("L", [2, 0], batch=[3, 1])(ctx)  # unit i goes to slot batch[i]
    torch.testing.assert_close(w, torch.stack([torch.tensor(0.0), a[1, 0].mean(), torch.tensor(0.0), a[3, 2].mean()]))
    last = obj.channel("L", 1, batch=-1)(ctx)
    assert last[:3].abs().max() == 0 and last[3] == a[3, 1].mean()
    with pytest.raises(IndexError, match="batch"):
        obj.channel("L", 1, batch=4)(ctx)


# --------------------------------------------------------------------------- string shorthand


def test_string_shorthand_in_render():
    net = make_tiny()
    kw = dict(size=32, steps=3, transforms=[], progress=False)
    a = fv.render(net, "bn2:3", **kw)
    b = fv.render(net, obj.channel("bn2", 3), **kw)
    assert torch.equal(a.images, b.images)
    assert a.objective.layers == ("bn2",)
    assert torch.equal(
        obj.as_objective("bn2:3")(ctx_of({"bn2": randn(2, 5, 3, 3)})),
        obj.channel("bn2", 3)(ctx_of({"bn2": randn(2, 5, 3, 3)})),
    )


@pytest.mark.parametrize("bad", ["bn2", "bn2:", "bn2:x", "bn2:3.5", "", "3"])
def test_string_shorthand_rejects_garbage(bad):
    net = make_tiny()
    with pytest.raises(ValueError, match="layer:channel"):
        fv.render(net, bad, size=32, steps=1, progress=False)


def test_string_shorthand_unknown_layer_and_non_objectives():
    net = make_tiny()
    with pytest.raises(ValueError, match="no layer named 'bnn2'"):
        fv.render(net, "bnn2:3", size=32, steps=1, progress=False)
    with pytest.raises(IndexError, match="24 channels"):
        fv.render(net, "bn2:24", size=32, steps=1, progress=False, transforms=[])
    with pytest.raises(TypeError, match="Objective"):
        fv.render(net, 3, size=32, steps=1, progress=False)
