"""MaCo (phase-only Fourier with a fixed magnitude), multi-crop batched augmentation and the
render loop's per-slot reduction over crops, and the transparency map."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import captum_fv as fv
from captum_fv import objectives as obj
from captum_fv import param
from captum_fv import transforms as tf
from captum_fv.heatmap import transparent
from captum_fv.objectives.base import Objective
from captum_fv.rendering import slot_values, view_args


def decorrelated_spectrum(p, images):
    """|rfft2| of the pre-sigmoid, decorrelated signal behind images of a maco param."""
    z = torch.logit(images.double())
    if p.decorrelate:
        z = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(p.color.double()), z)
    return torch.fft.rfft2(z, norm="ortho").abs()


@pytest.mark.parametrize("size", [32, (20, 27), (19, 24)])
def test_maco_range_parameters_and_spectrum(size):
    p = param.maco(size, batch=3, seed=1)
    with torch.no_grad():
        x = p()
    h, w = (size, size) if isinstance(size, int) else size
    assert x.shape == (3, 3, h, w)
    assert float(x.min()) >= 0 and float(x.max()) <= 1 and float(x.std()) > 0.05
    names = [n for n, _ in p.named_parameters()]
    assert names == ["basis.phase"]  # only the phase is a parameter
    assert p.basis.phase.shape == (3, 3, h, w // 2 + 1)
    mag = p.basis.magnitude.double()
    ratio = decorrelated_spectrum(p, x) / mag.clamp(min=1e-12)
    keep = (mag > 0).expand_as(ratio)
    per_slot = ratio[keep].view(3, -1)
    # the image's spectrum is the fixed one times one scale per slot (the standardization)
    spread = per_slot.max(1).values / per_slot.min(1).values
    assert float(spread.max()) < 1 + 1e-3
    assert not torch.allclose(x[0], x[1])  # slots have their own phases


def test_maco_optimizing_changes_phase_only():
    p = param.maco(24, batch=2)
    mag = p.basis.magnitude.clone()
    opt = torch.optim.NAdam(p.parameters(), lr=1.0)
    for _ in range(3):
        opt.zero_grad()
        (-p()[:, 0, :, :12].mean()).backward()
        opt.step()
    with torch.no_grad():
        x = p()
    torch.testing.assert_close(p.basis.magnitude, mag)
    ratio = (decorrelated_spectrum(p, x) / mag.clamp(min=1e-12))[(mag > 0).expand(2, -1, -1, -1)]
    assert float(ratio.max() / ratio.min()) < 1 + 1e-3 * 2


def test_maco_seed_magnitude_and_errors():
    a, b = param.maco(16, seed=0), param.maco(16, seed=0)
    torch.testing.assert_close(a(), b())
    assert not torch.allclose(a(), param.maco(16, seed=1)())
    flat = torch.ones(3, 16, 9)
    p = param.maco(16, magnitude=flat)
    torch.testing.assert_close(p.basis.magnitude[:, 1:], flat[:, 1:])
    assert float(p.basis.magnitude[:, 0, 0].abs().max()) == 0  # no DC
    grey = param.maco(16, magnitude=torch.ones(1, 16, 9))
    assert grey().shape == (1, 1, 16, 16)
    with pytest.raises(ValueError, match="magnitude"):
        param.maco(16, magnitude=torch.ones(16, 9))
    with pytest.raises(ValueError, match="batch"):
        param.maco(16, batch=0)


def test_magnitude_spectrum_of_one_image_is_its_spectrum():
    img = torch.rand(3, 16, 20, generator=torch.Generator().manual_seed(0))
    plain = param.magnitude_spectrum([(img, 0)], size=None, decorrelate=False, periodic=False)
    torch.testing.assert_close(plain, torch.fft.rfft2(img, norm="ortho").abs())
    inv = torch.linalg.inv(param.color_correlation())
    dec = param.magnitude_spectrum([img], size=None, periodic=False)
    torch.testing.assert_close(dec, torch.fft.rfft2(torch.einsum("ij,jhw->ihw", inv, img), norm="ortho").abs())
    two = param.magnitude_spectrum([img, 1 - img], size=None, decorrelate=False, periodic=False)
    torch.testing.assert_close(two[:, 1:], plain[:, 1:])  # 1 - x has the same spectrum but DC
    assert param.magnitude_spectrum([img], size=8).shape == (3, 8, 5)
    with pytest.raises(ValueError, match="no images"):
        param.magnitude_spectrum([])


def test_periodic_spectrum_removes_the_border_cross():
    ramp = torch.linspace(0, 1, 40).expand(3, 32, 40)  # one big jump between left and right borders
    plain = param.magnitude_spectrum([ramp], size=None, decorrelate=False, periodic=False)
    per = param.magnitude_spectrum([ramp], size=None, decorrelate=False)
    assert float(per[:, 0, 1:].max()) < 0.05 * float(plain[:, 0, 1:].max())
    flat = torch.full((3, 16, 16), 0.3)
    torch.testing.assert_close(param.periodic_spectrum(flat), torch.fft.rfft2(flat, norm="ortho"))


def test_default_magnitude_is_shipped_natural_and_resizes():
    mag = param.default_magnitude()
    assert mag.shape == (3, 256, 129) and param.DEFAULT_MAGNITUDE_FILE.is_file()
    assert param.DEFAULT_MAGNITUDE_FILE.stat().st_size < 400_000
    # natural images: ~1/f, so energy falls with frequency
    assert float(mag[0, 1, 1]) > 10 * float(mag[0, 64, 64])
    torch.testing.assert_close(param.resize_magnitude(mag, 256), mag, rtol=1e-4, atol=1e-6)
    small = param.resize_magnitude(mag, 64)
    assert small.shape == (3, 64, 33)
    torch.testing.assert_close(small[:, 0, 32], mag[:, 0, 128], rtol=1e-4, atol=1e-6)  # fx = 0.5
    torch.testing.assert_close(small[:, 16, 0], mag[:, 64, 0], rtol=1e-4, atol=1e-6)  # fy = 0.25
    torch.testing.assert_close(small[:, 32, 0], mag[:, 128, 0], rtol=1e-4, atol=1e-6)  # fy = -0.5
    assert param.resize_magnitude(mag, (33, 17)).shape == (3, 33, 9)


def test_maco_images_have_natural_high_frequency_energy():
    with torch.no_grad():
        x = param.maco(128, batch=4)()
    hfe = fv.metrics.high_frequency_energy(x)
    assert float(hfe.min()) > 0.005 and float(hfe.max()) < 0.07


def test_crops_shapes_order_and_determinism():
    x = torch.rand(2, 3, 32, 40, generator=torch.Generator().manual_seed(0))
    t = tf.crops(5, scale=(0.5, 1.0))
    out = t(x, torch.Generator().manual_seed(1))
    assert out.shape == (10, 3, 32, 40)
    torch.testing.assert_close(out, t(x, torch.Generator().manual_seed(1)))
    assert tf.crops(3, size=(16, 20))(x, torch.Generator()).shape == (6, 3, 16, 20)
    assert tf.crops(3, size=8)(x, torch.Generator()).shape == (6, 3, 8, 8)
    whole = tf.crops(3, scale=(1.0, 1.0))(x, torch.Generator())
    torch.testing.assert_close(whole, x.repeat(3, 1, 1, 1))  # crop-major: row k*B + b is slot b
    slots = torch.stack([torch.zeros(3, 32, 40), torch.ones(3, 32, 40)])
    rows = tf.crops(4)(slots, torch.Generator()).flatten(1).mean(1)
    torch.testing.assert_close(rows, torch.tensor([0.0, 1.0] * 4))
    noisy = tf.crops(2, scale=(1.0, 1.0), noise=0.1)(x, torch.Generator().manual_seed(0))
    assert 0.05 < float((noisy - x.repeat(2, 1, 1, 1)).std()) < 0.15
    with pytest.raises(ValueError):
        tf.crops(0)
    with pytest.raises(ValueError):
        tf.crops(2, scale=(0.5, 1.5))


def test_crops_are_differentiable_and_zoom_in():
    x = torch.zeros(1, 1, 32, 32, requires_grad=True)
    out = tf.crops(6, scale=(0.25, 0.25))(x, torch.Generator().manual_seed(0))
    out.sum().backward()
    assert x.grad is not None and 0 < int((x.grad > 0).sum()) < 32 * 32  # only the cropped parts
    ramp = torch.linspace(0, 1, 64).expand(1, 1, 64, 64)
    small = tf.crops(8, scale=(0.25, 0.25))(ramp, torch.Generator())
    spans = small[..., 0, -1] - small[..., 0, 0]
    assert float(spans.max()) < 0.3  # a quarter of the side: a quarter of the ramp


def test_slot_values_reduce_over_each_slots_crops():
    b, n = 2, 3
    images = torch.zeros(b, 1, 4, 4)
    inputs = torch.arange(n * b, dtype=torch.float32).view(n * b, 1, 1, 1).expand(-1, 1, 4, 4)
    seen = []

    def fn(ctx):
        seen.append(ctx.inputs.shape[0])
        return ctx.acts("x").flatten(1).mean(1) * torch.tensor([1.0, 10.0])  # slot-specific

    values = slot_values(Objective(fn, ["x"]), images, inputs, {"k": inputs}, {"x": "k"}, 0)
    # slot 0 saw rows 0, 2, 4 (mean 2); slot 1 rows 1, 3, 5 (mean 3)
    torch.testing.assert_close(values, torch.tensor([2.0, 30.0]))
    assert seen == [b] * n  # the objective always sees a batch of B slots
    plain = slot_values(Objective(fn, ["x"]), images, inputs[:b], {"k": inputs[:b]}, {"x": "k"}, 0)
    torch.testing.assert_close(plain, torch.tensor([0.0, 10.0]))
    with pytest.raises(ValueError, match="same number of views"):
        slot_values(Objective(fn, ["x"]), images, inputs[:5], {"k": inputs[:5]}, {"x": "k"}, 0)
    arg, shared = torch.tensor([[7.0], [8.0]]), torch.ones(3)
    rep = view_args((arg, shared, "s"), b, n)
    torch.testing.assert_close(rep[0], torch.tensor([[7.0], [8.0]] * 3))
    assert rep[1] is shared and rep[2] == "s"


class LeftHalf(nn.Module):
    """Channel c of ``conv`` reads only the left half of the image."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x[..., : x.shape[-1] // 2])


def test_render_with_crops_keeps_per_slot_meaning():
    model = LeftHalf()
    kw = dict(steps=6, progress=False, size=24, thresholds=())
    r = fv.render(model, obj.channel("conv", [0, 1, 2]), transforms=tf.crops(4, noise=0.01), **kw)
    assert r.history.shape == (6, 3) and r.images.shape == (3, 3, 24, 24)
    # every slot raised its own channel (the default lr is small; compare with the start)
    assert (r.history[-1] > r.history[0]).all()
    one = fv.render(model, obj.channel("conv", 1), transforms=tf.crops(4, noise=0.01), **kw)
    assert one.history.shape == (6, 1)


def test_render_maco_recipe_parts_raise_the_objective():
    model = LeftHalf()
    r = fv.render(
        model,
        obj.channel("conv", [0, 3]),
        param=param.maco(32, batch=2),
        transforms=tf.crops(4, scale=(0.5, 1.0)),
        optimizer=lambda ps: torch.optim.NAdam(ps, lr=1.0),
        steps=16,
        progress=False,
        thresholds=(),
    )
    start = fv.render(
        model, obj.channel("conv", [0, 3]), param=param.maco(32, batch=2), transforms=[], steps=0, progress=False
    ).values
    assert (r.values > start).all()
    assert float(r.images.min()) >= 0 and float(r.images.max()) <= 1


def test_transparency_shape_range_and_where_the_unit_looks():
    model = LeftHalf()
    kw = dict(steps=5, progress=False, size=32, batch=2, thresholds=())
    r = fv.render(model, obj.channel("conv", [0, 1]), transparency=True, transforms=[], **kw)
    t = r.transparency
    assert t.shape == (2, 1, 32, 32)
    assert float(t.min()) >= 0 and torch.allclose(t.flatten(1).amax(1), torch.ones(2))
    assert float(t[..., 16:].abs().max()) == 0 and float(t[..., :15].min()) > 0  # reads the left only
    crop = fv.render(model, obj.channel("conv", [0, 1]), transparency=True, transforms=tf.crops(4), **kw)
    left, right = crop.transparency[..., :16].mean(), crop.transparency[..., 16:].mean()
    assert float(left) > 1.5 * float(right)  # crops move pixels around, the left still dominates
    assert fv.render(model, obj.channel("conv", 0), steps=2, progress=False, size=16).transparency is None


def test_transparency_does_not_change_the_images():
    model = LeftHalf()
    kw = dict(steps=4, progress=False, size=16, thresholds=())
    a = fv.render(model, obj.channel("conv", 2), **kw)
    b = fv.render(model, obj.channel("conv", 2), transparency=True, **kw)
    assert torch.equal(a.images, b.images)


def test_transparent_drawing():
    img = torch.rand(2, 3, 16, 16)
    alpha = torch.zeros(2, 1, 16, 16)
    alpha[..., :8] = 1
    out = transparent(img, alpha)
    assert out.shape == (2, 3, 16, 16)
    torch.testing.assert_close(out[..., :8], img[..., :8])
    back = out[0, 0, :, 8:]
    assert back.unique().numel() == 2 and float(back.min()) >= 0.8  # the checkerboard shows
    white = transparent(img[0], alpha[0, 0], background="white")
    torch.testing.assert_close(white[:, :, 8:], torch.ones(3, 16, 8))
    with pytest.raises(ValueError, match="background"):
        transparent(img[0], alpha[0], background="black")
