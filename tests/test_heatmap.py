"""Tests for captum_fv.heatmap's signed maps: signed_overlay, attribution_scale, diverging, colorbar."""

from __future__ import annotations

import pytest
import torch

from captum_fv.heatmap import Overlay, attribution_scale, colorbar, diverging, signed_overlay

H = W = 16


def _grey(value: float = 0.5) -> torch.Tensor:
    return torch.full((3, H, W), value)


def _rand(seed: int, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def test_positive_attribution_paints_only_warm_and_negative_only_cool():
    photo = _grey()
    a = _rand(0, 3, H, W)
    warm = signed_overlay(photo, a).image
    cool = signed_overlay(photo, -a).image
    assert bool((warm[0] > warm[2]).all())  # red over blue on every pixel
    assert bool((cool[2] > cool[0]).all())
    # On a mid-grey photo the two signs move the pixel in opposite directions along red - blue.
    assert float((warm[0] - warm[2]).min()) > 0 and float((cool[0] - cool[2]).max()) < 0


def test_zero_attribution_leaves_the_photo_unchanged():
    photo = _rand(1, 3, H, W)
    a = _rand(2, 3, H, W) - 0.5
    a[:, :, : W // 2] = 0  # left half: nothing to show
    out = signed_overlay(photo, a, smooth=0).image
    assert torch.equal(out[:, :, : W // 2], photo[:, :, : W // 2])
    assert not torch.allclose(out[:, :, W // 2 :], photo[:, :, W // 2 :])
    blank = signed_overlay(photo, torch.zeros(3, H, W))
    assert blank.scale == 0.0 and torch.equal(blank.image, photo)


def test_channels_are_summed_keeping_the_sign():
    photo = _grey()
    a = torch.zeros(3, H, W)
    a[0, 0, 0], a[1, 0, 0] = 1.0, -1.0  # cancels: drawn as zero
    a[0, 1, 1], a[2, 1, 1] = 2.0, -1.0  # net +1: warm
    a[1, 2, 2], a[2, 2, 2] = 0.5, -1.5  # net -1: cool
    out = signed_overlay(photo, a, smooth=0).image
    assert torch.equal(out[:, 0, 0], photo[:, 0, 0])
    assert out[0, 1, 1] > out[2, 1, 1] and out[2, 2, 2] > out[0, 2, 2]


def test_blur_cancels_pixel_speckle_and_keeps_regions():
    photo = _grey()
    size = 64
    photo = torch.full((3, size, size), 0.5)
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    speckle = ((x + y) % 2 * 2 - 1).float()  # +1 / -1 on alternate pixels: no net sign anywhere
    region = torch.zeros(size, size)
    region[16:48, 16:48] = 1.0
    a = speckle + region  # a positive square under the speckle
    sharp = signed_overlay(photo, a, scale=1.0, smooth=0).image
    soft = signed_overlay(photo, a, scale=1.0).image
    corner = (slice(None), slice(0, 8), slice(0, 8))
    assert float((sharp[corner] - 0.5).abs().mean()) > 0.2  # unblurred: the speckle is painted
    assert float((soft[corner] - 0.5).abs().max()) < 0.02  # blurred: it cancels
    assert bool((soft[0, 24:40, 24:40] > soft[2, 24:40, 24:40] + 0.4).all())  # the square stays red


def test_opacity_grows_with_magnitude_and_saturates_at_the_scale():
    photo = _grey(0.3)
    ramp = torch.linspace(0, 2, W)[None].expand(H, W).clone()  # (H, W) maps are accepted too
    out = signed_overlay(photo, ramp, scale=1.0, smooth=0).image
    change = (out - photo).abs().sum(0)[0]
    assert bool((change[1:] >= change[:-1] - 1e-6).all()) and float(change[0]) == 0
    beyond = ramp[0] >= 1.0
    assert torch.allclose(out[:, 0, beyond], out[:, 0, beyond][:, :1].expand(-1, int(beyond.sum())))


def test_scale_is_robust_to_one_outlier_pixel():
    a = _rand(3, 3, 32, 32) - 0.5
    before = attribution_scale(a, smooth=0)
    spiked = a.clone()
    spiked[:, 5, 7] = 1e4
    after = attribution_scale(spiked, smooth=0)
    assert abs(after - before) / before < 0.02
    assert float(spiked.sum(0).abs().max()) / after > 1e3  # a max-based scale would be 1000x off
    photo = _rand(4, 3, 32, 32)
    clean, noisy = signed_overlay(photo, a, smooth=0).image, signed_overlay(photo, spiked, smooth=0).image
    noisy[:, 5, 7] = clean[:, 5, 7]
    assert float((clean - noisy).abs().max()) < 0.05  # the rest of the map looks the same
    # Blurred, the spike spreads over a few pixels of 224 x 224: still far under 1 %, still robust.
    big = _rand(11, 3, 224, 224) - 0.5
    spiked_big = big.clone()
    spiked_big[:, 100, 50] = 1e4
    assert attribution_scale(spiked_big) / attribution_scale(big) < 1.05


def test_percentile_is_over_nonzero_pixels_and_the_batch_shares_one_scale():
    sparse = torch.zeros(3, 64, 64)
    sparse[0, :4, :4] = 3.0  # 99 % of the map is zero: the scale is still the blob's value
    assert attribution_scale(sparse, smooth=0) == pytest.approx(3.0)
    photos = _rand(5, 2, 3, H, W)
    a = torch.stack([_rand(6, 3, H, W), 10 * _rand(7, 3, H, W)])
    both = signed_overlay(photos, a)
    assert both.scale == pytest.approx(attribution_scale(a))
    alone = signed_overlay(photos[1], a[1], scale=both.scale).image
    assert torch.allclose(both.image[1], alone)
    # The weak first map is drawn fainter than on its own scale: the shared scale compares the two.
    weak = (both.image[0] - photos[0]).abs().mean()
    assert weak < (signed_overlay(photos[0], a[0]).image - photos[0]).abs().mean()


def test_output_shape_range_dtype_and_the_input_untouched():
    photos = _rand(8, 2, 3, H, W)
    a = (_rand(9, 2, 3, H, W) - 0.5) * 1e-3
    kept_photos, kept_a = photos.clone(), a.clone()
    ov = signed_overlay(photos, a)
    assert isinstance(ov, Overlay) and isinstance(ov.scale, float) and ov.scale > 0
    assert ov.image.shape == (2, 3, H, W) and ov.image.dtype == torch.float32
    assert float(ov.image.min()) >= 0 and float(ov.image.max()) <= 1
    assert torch.equal(photos, kept_photos) and torch.equal(a, kept_a)
    grey = signed_overlay(photos[0, :1], a[0, :1]).image  # one-channel photo and attribution
    assert grey.shape == (3, H, W) and torch.equal(grey[0], grey[0])
    assert signed_overlay(photos.double(), a.double()).image.dtype == torch.float32


def test_bad_input_is_named():
    photo = _rand(10, 3, H, W)
    with pytest.raises(ValueError, match="does not match"):
        signed_overlay(photo, torch.zeros(3, H, W + 1))
    with pytest.raises(ValueError, match="image must be"):
        signed_overlay(photo[0, 0], torch.zeros(H, W))
    with pytest.raises(ValueError, match="percentile"):
        attribution_scale(photo, percentile=0)
    with pytest.raises(ValueError, match="scale must be"):
        signed_overlay(photo, photo, scale=-1.0)
    with pytest.raises(ValueError, match="max_alpha"):
        signed_overlay(photo, photo, max_alpha=1.5)
    with pytest.raises(ValueError, match="smooth"):
        signed_overlay(photo, photo, smooth=-0.1)


def test_colour_map_is_blue_white_red():
    ends = diverging(torch.tensor([[-1.0, 0.0, 1.0]]))[:, 0]  # (1, 3) values -> (3, 1, 3) RGB
    blue, white, red = ends[:, 0], ends[:, 1], ends[:, 2]
    assert torch.equal(white, torch.ones(3))
    assert blue[2] > blue[1] > blue[0] and red[0] > red[1] and red[0] > red[2]
    # The map is what signed_overlay paints over a white photo.
    a = torch.tensor([-1.0, 0.0, 1.0])[None].expand(H, -1)
    over_white = signed_overlay(torch.ones(3, H, 3), a, scale=1.0).image[:, 0]
    assert torch.allclose(over_white, ends)


def test_colorbar_ends_match_the_colour_map_and_it_is_labelled():
    bar = colorbar(0.0123, width=96, bar_height=10)
    assert bar.shape[0] == 3 and bar.shape[2] == 96 and bar.shape[1] > 10
    assert bar.dtype == torch.float32 and float(bar.min()) >= 0 and float(bar.max()) <= 1
    tol = 1.5 / 255  # the bar goes through 8-bit pixels
    ends = diverging(torch.tensor([[-1.0, 1.0]]))[:, 0]
    assert torch.allclose(bar[:, 5, 0], ends[:, 0], atol=tol)
    assert torch.allclose(bar[:, 5, -1], ends[:, 1], atol=tol)
    assert torch.allclose(bar[:, 5, 48], torch.ones(3), atol=0.05)
    text = bar[:, 11:].min(0).values < 0.5  # dark pixels under the bar: -scale, 0, +scale
    thirds = text.any(0).reshape(3, 32).any(1)
    assert bool(thirds.all())
    with pytest.raises(ValueError, match="width"):
        colorbar(0.1, width=4)
