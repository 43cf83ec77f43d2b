"""Transforms: sizes, values, geometry, statistics, differentiability and seeding."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_rng_unchanged, rng_state

from captum_fv import transforms as tf


def G(seed=0):
    return torch.Generator().manual_seed(seed)


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=G(seed))


def hf_energy(x):
    spec = torch.fft.fft2(x - x.mean((-2, -1), keepdim=True)).abs().pow(2)
    h, w = x.shape[-2:]
    f = (torch.fft.fftfreq(h)[:, None] ** 2 + torch.fft.fftfreq(w)[None, :] ** 2).sqrt()
    return float(spec[..., f > 0.25].sum())


def test_pad_size_and_value():
    x = rand(2, 3, 10, 14)
    y = tf.pad(3, value=0.25)(x, G())
    assert y.shape == (2, 3, 16, 20)
    assert torch.equal(y[:, :, 3:-3, 3:-3], x)
    border = torch.ones(16, 20, dtype=torch.bool)
    border[3:-3, 3:-3] = False
    assert (y[:, :, border] == 0.25).all()
    assert (tf.pad(2)(x, G())[:, :, 0] == 0.5).all()  # gray by default
    r = tf.pad(2, mode="reflect")(x, G())
    assert r.shape == (2, 3, 14, 18) and torch.equal(r[:, :, 0, 2:-2], x[:, :, 2])


def _find_offset(crop, full, d):
    for oy in range(d + 1):
        for ox in range(d + 1):
            if torch.equal(crop, full[:, oy : oy + crop.shape[1], ox : ox + crop.shape[2]]):
                return oy, ox
    return None


def test_jitter_size_crops_and_independent_slots():
    d = 4
    img = rand(1, 3, 12, 15)
    x = img.expand(16, -1, -1, -1).contiguous()
    y = tf.jitter(d)(x, G(1))
    assert y.shape == (16, 3, 12 - d, 15 - d)
    offsets = [_find_offset(y[i], img[0], d) for i in range(16)]
    assert all(o is not None for o in offsets)  # every slot is an exact crop
    assert len(set(offsets)) > 4  # each slot draws its own shift
    assert {o[0] for o in offsets} - {0} and {o[1] for o in offsets} - {0}
    assert tf.jitter(0)(x, G()) is x
    with pytest.raises(ValueError, match="too large"):
        tf.jitter(12)(x, G())


def test_random_affine_identity():
    x = rand(3, 3, 17, 24)
    y = tf.random_affine(scales=[1.0], degrees=[0.0])(x, G())
    torch.testing.assert_close(y, x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("hw", [(20, 20), (20, 32), (32, 20)])
def test_rotation_by_90_rotates_pattern(hw):
    h, w = hw
    s = min(h, w)
    x = torch.zeros(1, 1, h, w)
    top, left = (h - s) // 2, (w - s) // 2
    pattern = rand(1, 1, s, s, seed=4)
    x[:, :, top : top + s, left : left + s] = pattern  # an asymmetric pattern in the centre
    crop = (slice(None), slice(None), slice(top, top + s), slice(left, left + s))
    for deg, k in [(90, 1), (-90, -1)]:
        y = tf.random_rotate([deg])(x, G())
        assert y.shape == x.shape
        # positive angles turn counter-clockwise (as torchvision's rotate), without shearing
        torch.testing.assert_close(y[crop], torch.rot90(pattern, k, dims=(2, 3)), atol=1e-5, rtol=0)
    small = tf.random_rotate([10])(x, G())
    assert not torch.allclose(small, x, atol=1e-3)


def test_random_scale_zooms_about_centre():
    w = 33
    ramp = torch.arange(w, dtype=torch.float32).expand(1, 1, 9, w).contiguous()
    y = tf.random_scale([2.0])(ramp, G())
    mid = y[0, 0, 4]
    assert abs(float(mid[w // 2]) - w // 2) < 1e-4  # the centre stays put
    slope = float(mid[w // 2 + 4] - mid[w // 2 - 4]) / 8
    assert abs(slope - 0.5) < 1e-4  # 2x larger: the ramp rises half as fast


def test_random_affine_draws_per_slot():
    x = rand(1, 3, 16, 16).expand(12, -1, -1, -1)
    y = tf.random_affine(scales=[0.8, 1.0, 1.25], degrees=[-20, 0, 20])(x, G(2))
    distinct = {tuple(y[i].flatten()[:50].tolist()) for i in range(12)}
    assert len(distinct) > 2


def test_color_jitter_statistics():
    n = 4000
    ones = torch.ones(n, 3, 2, 2)
    gains = tf.color_jitter(gain=0.1, shift=0.0)(ones, G(0))
    assert torch.equal(gains[:, :, 0, 0], gains[:, :, 1, 1])  # one factor per slot and channel
    k = gains[:, :, 0, 0]
    assert abs(float(k.mean()) - 1) < 0.01 and abs(float(k.std()) - 0.1) < 0.01
    zeros = torch.zeros(n, 3, 2, 2)
    o = tf.color_jitter(gain=0.3, shift=0.05)(zeros, G(1))[:, :, 0, 0]
    assert abs(float(o.mean())) < 0.005 and abs(float(o.std()) - 0.05) < 0.005
    # channels and slots are independent
    assert abs(float(torch.corrcoef(o.T)[0, 1])) < 0.1
    x = rand(2, 3, 4, 4)
    y = tf.color_jitter(0.1, 0.1)(x, G(3))
    # per slot and channel, an affine map of the pixel values: y = k * x + o everywhere
    kk = (y[:, :, 0, 0] - y[:, :, 1, 1]) / (x[:, :, 0, 0] - x[:, :, 1, 1])
    oo = y - x * kk[..., None, None]
    torch.testing.assert_close(oo, oo[:, :, :1, :1].expand_as(oo), atol=1e-5, rtol=0)
    assert not torch.allclose(kk[0], kk[1])


ALL = {
    "pad": tf.pad(3),
    "jitter": tf.jitter(3),
    "affine": tf.random_affine([0.9, 1.1], [-15, 15]),
    "scale": tf.random_scale([1.1, 1.2, 1.3]),
    "rotate": tf.random_rotate([-30, 0, 30]),
    "color": tf.color_jitter(),
    "standard": tf.standard(),
    "standard32": tf.standard(32),
    "compose": tf.compose(tf.pad(2), tf.jitter(2), tf.color_jitter()),
}


@pytest.mark.parametrize("name", list(ALL))
def test_differentiable(name):
    x = rand(2, 3, 32, 32).requires_grad_(True)
    y = ALL[name](x, G())
    (y * torch.linspace(0, 1, y.shape[-1])).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert float(x.grad[0].abs().sum()) > 0 and float(x.grad[1].abs().sum()) > 0


@pytest.mark.parametrize("name", list(ALL))
def test_seeded_and_global_rng_untouched(name):
    x = rand(4, 3, 32, 32)
    before = rng_state()
    a = ALL[name](x, G(7))
    b = ALL[name](x, G(7))
    assert_rng_unchanged(before)
    assert torch.equal(a, b)
    if name != "pad":  # pad is deterministic; everything else draws
        c = ALL[name](x, G(8))
        assert a.shape != c.shape or not torch.equal(a, c)


def test_gaussian_blur():
    const = torch.full((2, 3, 15, 22), 0.37)
    torch.testing.assert_close(tf.gaussian_blur(const, 2.0), const)
    torch.testing.assert_close(tf.gaussian_blur(torch.full((1, 1, 3, 3), 0.6), 3.0), torch.full((1, 1, 3, 3), 0.6))
    noise = rand(2, 3, 32, 40)
    blurred = tf.gaussian_blur(noise, 1.0)
    assert blurred.shape == noise.shape
    assert hf_energy(blurred) < 0.1 * hf_energy(noise)
    assert abs(float(blurred.mean() - noise.mean())) < 0.01
    more = tf.gaussian_blur(noise, 2.0)
    assert hf_energy(more) < hf_energy(blurred)
    assert tf.gaussian_blur(noise, 0) is noise
    # a blurred impulse spreads symmetrically and keeps its mass
    imp = torch.zeros(1, 1, 21, 21)
    imp[0, 0, 10, 10] = 1
    b = tf.gaussian_blur(imp, 1.5)[0, 0]
    torch.testing.assert_close(b, b.T)
    torch.testing.assert_close(b, b.flip(0).flip(1))
    torch.testing.assert_close(b.sum(), torch.tensor(1.0))


def test_standard_output_size():
    # documented amounts at 128-224 px: pad 12, jitter 8, scale/rotate, jitter 4 -> +24 - 12
    assert tf.standard()(rand(1, 3, 128, 128), G()).shape == (1, 3, 140, 140)
    assert tf.standard(160)(rand(2, 3, 160, 160), G()).shape == (2, 3, 172, 172)
    for size in (32, 48, 64, 96, 224):
        shapes = {tf.standard(size)(rand(2, 3, size, size), G(s)).shape for s in range(3)}
        assert len(shapes) == 1  # independent of the draw
        (shape,) = shapes
        assert shape[:2] == (2, 3) and shape[2] == shape[3]
        assert size <= shape[2] <= size + 24  # never crops into the image, small pads when small
    ns = tf.standard(48)(rand(1, 3, 40, 56), G())
    assert ns.shape[2] - 40 == ns.shape[3] - 56  # non-square keeps its aspect
