"""Parameterizations: how an image is represented while it is optimized.

An :class:`ImageParam` maps unconstrained parameters to a batch of images in [0, 1]:

    basis (pixels, or a Fourier spectrum scaled by 1/f)  ->  colour decorrelation  ->  sigmoid

The Fourier basis with 1/f scaling makes gradient steps spatially decorrelated (every frequency
moves at the same pace), and the colour matrix does the same across RGB channels; together they
are the preconditioning that lets the optimizer find features instead of high-frequency noise.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import nn

Size = Union[int, Tuple[int, int], Sequence[int]]

# ImageNet RGB covariance as published with AlexNet's PCA lighting augmentation (pixels in [0, 1]).
_EIGVAL = (0.2175, 0.0188, 0.0045)
_EIGVEC = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))
_EPS = 1e-4  # keeps logit() finite when inverting a saturated image


def color_correlation() -> torch.Tensor:
    """A square root of ImageNet's RGB covariance (3x3), scaled to a largest column norm of 1.

    It maps decorrelated colour coordinates to RGB: a unit step along any coordinate is a step
    along one principal colour axis, scaled by how much natural images vary along it.
    """
    m = torch.tensor(_EIGVEC) @ torch.diag(torch.tensor(_EIGVAL).sqrt())
    return m / m.norm(dim=0).max()


def _hw(size: Size) -> Tuple[int, int]:
    if isinstance(size, int):
        h = w = size
    else:
        h, w = (int(s) for s in size)
    if h < 1 or w < 1:
        raise ValueError(f"image size must be positive, got {h}x{w}")
    return h, w


class PixelBasis(nn.Module):
    """One free parameter per pixel and channel."""

    def __init__(self, shape: Tuple[int, int, int, int], sd: float, generator: torch.Generator):
        super().__init__()
        self.pixels = nn.Parameter(torch.randn(shape, generator=generator) * sd)

    def forward(self) -> torch.Tensor:
        return self.pixels

    @torch.no_grad()
    def assign(self, z: torch.Tensor) -> None:
        self.pixels.copy_(z)


class FourierBasis(nn.Module):
    """A real-FFT spectrum whose frequency f is scaled by ``1 / max(f, 1/max(H, W)) ** decay``.

    Natural images have ~1/f amplitude spectra; scaling by it means Adam's equal-sized steps on
    every coefficient produce natural-looking, low-frequency-first changes in pixel space.
    """

    def __init__(
        self,
        shape: Tuple[int, int, int, int],
        sd: float,
        generator: torch.Generator,
        decay_power: float = 1.0,
    ):
        super().__init__()
        b, c, h, w = shape
        self.hw = (h, w)
        fy = torch.fft.fftfreq(h)[:, None]
        fx = torch.fft.rfftfreq(w)[None, :]
        freq = (fy**2 + fx**2).sqrt()
        lowest = 1.0 / max(h, w)
        # DC gets scale 1; the gain makes one unit of a coefficient move a pixel by ~1/4 of the
        # sigmoid's range, whatever the size (ortho FFT spreads a coefficient over sqrt(HW) pixels).
        scale = (lowest / freq.clamp(min=lowest)) ** decay_power * math.sqrt(h * w) / 4
        self.register_buffer("scale", scale, persistent=False)
        self.spectrum = nn.Parameter(torch.randn(b, c, *freq.shape, 2, generator=generator) * sd)

    def forward(self) -> torch.Tensor:
        spec = torch.view_as_complex(self.spectrum) * self.scale
        return torch.fft.irfft2(spec, s=self.hw, norm="ortho")

    @torch.no_grad()
    def assign(self, z: torch.Tensor) -> None:
        spec = torch.fft.rfft2(z, norm="ortho") / self.scale
        self.spectrum.copy_(torch.view_as_real(spec))


class ImageParam(nn.Module):
    """A batch of images in [0, 1] built from a basis, optional colour decorrelation and a sigmoid.

    ``param()`` returns the images (B, C, H, W); ``param.assign(images)`` sets the parameters so
    that ``param()`` reproduces given images (initialization from a photo, periodic blur).
    """

    def __init__(
        self,
        basis: nn.Module,
        channels: int,
        decorrelate: bool = True,
        shared: Optional[nn.Module] = None,
    ):
        super().__init__()
        self.basis = basis
        self.shared = shared
        self.decorrelate = decorrelate and channels == 3  # the statistics are RGB's
        self.register_buffer("color", color_correlation(), persistent=False)

    def _to_rgb(self, z: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ij,bjhw->bihw", self.color, z) if self.decorrelate else z

    def forward(self) -> torch.Tensor:
        z = self.basis()
        if self.shared is not None:
            z = z + self.shared()  # one component common to every slot
        return torch.sigmoid(self._to_rgb(z))

    @torch.no_grad()
    def assign(self, images: torch.Tensor) -> None:
        images = images.to(self.color.device, torch.float32)
        target = self().shape
        if images.dim() == 3:
            images = images.unsqueeze(0)
        if images.shape[1:] != target[1:]:
            raise ValueError(
                f"image of shape {tuple(images.shape[1:])} does not fit this parameterization "
                f"{tuple(target[1:])}; resize it to {target[2]}x{target[3]} with {target[1]} channels"
            )
        if images.shape[0] not in (1, target[0]):
            raise ValueError(
                f"{images.shape[0]} images do not fit this parameterization's {target[0]} slots; "
                f"give one image (shared by every slot) or {target[0]}"
            )
        z = torch.logit(images.clamp(_EPS, 1 - _EPS)).expand(target).contiguous()
        if self.decorrelate:
            z = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(self.color), z)
        self.basis.assign(z)
        if self.shared is not None:
            self.shared.assign(torch.zeros_like(z[:1]))

    @property
    def shape(self) -> Tuple[int, ...]:
        with torch.no_grad():
            return tuple(self().shape)


def image(
    size: Size,
    batch: int = 1,
    channels: int = 3,
    fft: bool = True,
    decorrelate: bool = True,
    sd: float = 0.01,
    init: Optional[torch.Tensor] = None,
    shared: bool = False,
    seed: int = 0,
    decay_power: float = 1.0,
    device: Union[str, torch.device, None] = None,
) -> ImageParam:
    """A batch of ``batch`` images of ``size`` (int or (H, W)) with ``channels`` channels.

    ``fft``: Fourier basis with 1/f scaling (else pixels); ``decorrelate``: ImageNet colour
    decorrelation (3 channels only); ``init``: start from these images in [0, 1] (DeepDream on a
    photo); ``shared``: add a component common to all slots (smooth interpolations); ``seed``:
    initial noise, from a local generator.

    >>> p = param.image(128, batch=4)
    >>> p().shape
    torch.Size([4, 3, 128, 128])
    """
    h, w = _hw(size)
    if batch < 1 or channels < 1:
        raise ValueError(f"batch and channels must be >= 1, got batch={batch}, channels={channels}")
    g = torch.Generator().manual_seed(seed)

    def make(b: int) -> nn.Module:
        shape = (b, channels, h, w)
        return FourierBasis(shape, sd, g, decay_power) if fft else PixelBasis(shape, sd, g)

    p = ImageParam(make(batch), channels, decorrelate, make(1) if shared else None)
    if init is not None:
        p.assign(init)
    return p.to(device) if device is not None else p
