"""Image parameterizations: shapes, range, bases, colour decorrelation, assign/init round trips,
shared components, seeding, and the Fourier basis's low-frequency preconditioning."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from captum_fv import param
from captum_fv.param import FourierBasis, PixelBasis


@pytest.fixture(autouse=True, scope="module")
def _no_grad():
    """These tests only read images; no autograd graph needed."""
    with torch.no_grad():
        yield


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def hf_fraction(x: torch.Tensor, cutoff: float = 0.25) -> float:
    """Share of the (mean-removed) spectral energy at normalized frequencies above ``cutoff``."""
    x = x - x.mean((-2, -1), keepdim=True)
    spec = torch.fft.fft2(x).abs().pow(2)
    h, w = x.shape[-2:]
    f = (torch.fft.fftfreq(h)[:, None] ** 2 + torch.fft.fftfreq(w)[None, :] ** 2).sqrt()
    return float(spec[..., f > cutoff].sum() / spec.sum())


@pytest.mark.parametrize("fft", [True, False])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_shapes_and_range(fft, channels):
    p = param.image(24, batch=2, channels=channels, fft=fft)
    out = p()
    assert out.shape == (2, channels, 24, 24)
    assert p.shape == (2, channels, 24, 24)
    q = param.image((20, 33), batch=3, channels=channels, fft=fft)  # (H, W), odd width
    assert q().shape == (3, channels, 20, 33)
    # even with huge parameters the sigmoid keeps the images in [0, 1]
    big = param.image((17, 30), channels=channels, fft=fft, sd=50.0)
    y = big().detach()
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert float(y.min()) < 0.05 and float(y.max()) > 0.95  # the range is actually used


def test_bad_arguments():
    with pytest.raises(ValueError, match="positive"):
        param.image((0, 8))
    with pytest.raises(ValueError, match="batch"):
        param.image(8, batch=0)


def test_fft_vs_pixel_bases():
    f = param.image((16, 21), batch=2, fft=True)
    p = param.image((16, 21), batch=2, fft=False)
    assert isinstance(f.basis, FourierBasis) and isinstance(p.basis, PixelBasis)
    assert [t.shape for t in f.parameters()] == [torch.Size([2, 3, 16, 11, 2])]  # rfft spectrum
    assert [t.shape for t in p.parameters()] == [torch.Size([2, 3, 16, 21])]
    assert not torch.allclose(f(), p())
    # both start near middle gray
    assert abs(float(f().mean()) - 0.5) < 0.05 and abs(float(p().mean()) - 0.5) < 0.05


@pytest.mark.parametrize("fft", [True, False])
def test_decorrelate_mixes_colours_only_for_three_channels(fft):
    def response(channels, decorrelate):
        p = param.image(8, channels=channels, fft=False, decorrelate=decorrelate)
        with torch.no_grad():
            p.basis.pixels.zero_()
            p.basis.pixels[:, 0] = 1.0  # a step along the first (decorrelated) coordinate only
        return (p() - 0.5).abs().flatten(2).amax(2)[0]  # per output channel, how far from gray

    mixed = response(3, True)
    assert (mixed > 0.05).all()  # a colour coordinate moves every RGB channel
    plain = response(3, False)
    assert plain[0] > 0.2 and (plain[1:] == 0).all()
    for c in (1, 4):  # the ImageNet colour statistics are RGB's: no mixing for other counts
        r = response(c, True)
        assert r[0] > 0.2 and (r[1:] == 0).all()
    assert param.image(8, channels=3, fft=fft).decorrelate
    assert not param.image(8, channels=3, fft=fft, decorrelate=False).decorrelate
    assert not param.image(8, channels=4, fft=fft).decorrelate
    assert not param.image(8, channels=1, fft=fft).decorrelate


@pytest.mark.parametrize("size", [16, (15, 22), (20, 13)])
@pytest.mark.parametrize("fft", [True, False])
@pytest.mark.parametrize("decorrelate", [True, False])
def test_assign_reproduces_images(size, fft, decorrelate):
    p = param.image(size, batch=2, fft=fft, decorrelate=decorrelate)
    h, w = (size, size) if isinstance(size, int) else size
    img = rand(2, 3, h, w, seed=3)
    img[0, 0, 0, 0], img[1, 2, 1, 1] = 0.0, 1.0  # saturated pixels too
    p.assign(img)
    assert (p() - img).abs().max() < 1e-3


@pytest.mark.parametrize("channels", [1, 4])
def test_assign_other_channel_counts(channels):
    for fft in (True, False):
        p = param.image((12, 17), channels=channels, fft=fft)
        img = rand(1, channels, 12, 17, seed=5)
        p.assign(img)
        assert (p() - img).abs().max() < 1e-3


def test_init_from_image():
    img = rand(3, 20, 24, seed=8)  # without batch dim: every slot starts from it
    p = param.image((20, 24), batch=3, init=img)
    out = p()
    assert out.shape == (3, 3, 20, 24)
    assert (out - img).abs().max() < 1e-3
    q = param.image((20, 24), batch=1, init=img[None], fft=False)
    assert (q() - img).abs().max() < 1e-3
    with pytest.raises(ValueError, match="resize"):
        param.image(16, init=img)
    with pytest.raises(ValueError, match="channels"):
        param.image((20, 24), channels=1, init=img)
    with pytest.raises(ValueError, match="3 images do not fit .* 2 slots"):
        param.image((20, 24), batch=2, init=img[None].expand(3, -1, -1, -1))
    two = torch.stack([img, 1 - img])
    r = param.image((20, 24), batch=2, init=two)
    assert (r() - two).abs().max() < 1e-3  # one image per slot


@pytest.mark.parametrize("fft", [True, False])
def test_shared_component(fft):
    p = param.image(16, batch=4, shared=True, fft=fft)
    assert p.shared is not None
    with torch.no_grad():
        for t in p.shared.parameters():
            t.copy_(torch.randn(t.shape, generator=torch.Generator().manual_seed(1)))
    out = p()
    assert not torch.allclose(out[0], out[1])  # own components make the slots differ
    with torch.no_grad():
        for t in p.basis.parameters():
            t.zero_()
    same = p()
    for i in range(1, 4):
        torch.testing.assert_close(same[i], same[0])
    assert (same[0] - 0.5).abs().max() > 0.05  # what remains is the (non-trivial) shared part
    # the shared part is in every slot: zeroing it too gives plain gray
    with torch.no_grad():
        for t in p.shared.parameters():
            t.zero_()
    torch.testing.assert_close(p(), torch.full_like(same, 0.5))
    # assign still reproduces the images (the shared part is reset)
    img = rand(4, 3, 16, 16, seed=2)
    p.assign(img)
    assert (p() - img).abs().max() < 1e-3
    assert all(float(t.abs().max()) == 0 for t in p.shared.parameters())


def test_seed_reproduces():
    for fft in (True, False):
        a = param.image(16, batch=2, seed=3, fft=fft)()
        b = param.image(16, batch=2, seed=3, fft=fft)()
        c = param.image(16, batch=2, seed=4, fft=fft)()
        assert torch.equal(a, b) and not torch.allclose(a, c)
        assert not torch.allclose(a[0], a[1])  # slots get their own noise


def test_seed_does_not_touch_global_rng():
    from conftest import assert_rng_unchanged, rng_state

    before = rng_state()
    param.image(16, batch=2, seed=3, shared=True)()
    assert_rng_unchanged(before)


def test_fourier_basis_starts_low_frequency():
    f = param.image(64, batch=2, fft=True, seed=0)()
    p = param.image(64, batch=2, fft=False, seed=0)()
    hf_f, hf_p = hf_fraction(f), hf_fraction(p)
    assert hf_p > 0.5  # white noise: most energy above a quarter of the sampling rate
    # 1/f amplitudes (like natural images): energy spreads evenly per octave, so only the top
    # octave or so is above the cutoff
    assert hf_f < 0.3 * hf_p


def test_fourier_decay_power_controls_spectrum():
    flat = param.image(64, fft=True, decay_power=0.0)()
    steep = param.image(64, fft=True, decay_power=2.0)()
    assert hf_fraction(steep) < hf_fraction(flat)


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(8, 48),
    w=st.integers(8, 48),
    batch=st.integers(1, 3),
    channels=st.sampled_from([1, 3, 4]),
    fft=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_param_shape_range_roundtrip_property(h, w, batch, channels, fft, seed):
    p = param.image((h, w), batch=batch, channels=channels, fft=fft, seed=seed, sd=1.0)
    out = p().detach()
    assert out.shape == (batch, channels, h, w)
    assert float(out.min()) >= 0 and float(out.max()) <= 1 and torch.isfinite(out).all()
    img = rand(batch, channels, h, w, seed=seed)
    p.assign(img)
    assert (p() - img).abs().max() < 1e-3
