"""Parameterizations: how an image is represented while it is optimized.

An :class:`ImageParam` maps unconstrained parameters to a batch of images in [0, 1]:

    basis (pixels, or a Fourier spectrum scaled by 1/f)  ->  colour decorrelation  ->  sigmoid

The Fourier basis with 1/f scaling makes gradient steps spatially decorrelated (every frequency
moves at the same pace), and the colour matrix does the same across RGB channels; together they
are the preconditioning that lets the optimizer find features instead of high-frequency noise.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .data import sample_images

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

    >>> p = fv.param.image(128, batch=4)
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


# --------------------------------------------------------------------------- MaCo (phase only)

#: The shipped default magnitude spectrum: the bundled photos at 256 px, decorrelated colour.
DEFAULT_MAGNITUDE_FILE = Path(__file__).parent / "spectra" / "photos_256.pt"
MAGNITUDE_REFERENCE_SIZE = 256


def _hermitian_columns(h: int, w: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """For an rfft2 half-spectrum of an (h, w) image: a (1, w//2+1) mask of the columns that must
    be Hermitian along y on their own (0, and w/2 when w is even), and the row index of -fy."""
    cols = torch.zeros(1, w // 2 + 1, dtype=torch.bool)
    cols[0, 0] = True
    if w % 2 == 0:
        cols[0, -1] = True
    return cols, (-torch.arange(h)) % h


class PhaseBasis(nn.Module):
    """A real-FFT spectrum with a FIXED magnitude and a free phase (MaCo, Fel et al. 2023),
    standardized per slot.

    Only the phase is a parameter: an image's energy at each frequency stays the natural one,
    so the optimizer can move structure around but cannot add high-frequency noise.
    """

    def __init__(self, shape: Tuple[int, int, int, int], magnitude: torch.Tensor, generator: torch.Generator):
        super().__init__()
        b, c, h, w = shape
        self.hw = (h, w)
        cols, neg = _hermitian_columns(h, w)
        mag = magnitude.float().clone()
        # In the self-Hermitian columns X(-fy) = conj(X(fy)): a symmetric magnitude and (below)
        # an antisymmetric phase make the spectrum one of a real image, so rfft2(irfft2(X)) == X
        # and the image's spectrum is exactly the fixed one (up to the standardization).
        mag = torch.where(cols, (mag + mag[:, neg]) / 2, mag)
        mag[:, 0, 0] = 0  # no DC: the mean is the standardization's (grey), not a phase's
        self.register_buffer("magnitude", mag, persistent=False)
        self.register_buffer("cols", cols, persistent=False)
        self.register_buffer("neg", neg, persistent=False)
        # Uniform phases give a stationary natural-noise start; Gaussian ones around 0 would add
        # a coherent bright peak at the origin pixel.
        self.phase = nn.Parameter((torch.rand(b, c, h, w // 2 + 1, generator=generator) * 2 - 1) * math.pi)

    def _phase(self) -> torch.Tensor:
        return torch.where(self.cols, (self.phase - self.phase[:, :, self.neg]) / 2, self.phase)

    def forward(self) -> torch.Tensor:
        z = torch.fft.irfft2(torch.polar(self.magnitude.expand_as(self.phase), self._phase()), s=self.hw, norm="ortho")
        z = z - z.mean(dim=(1, 2, 3), keepdim=True)
        # One scale per slot (not per channel) keeps the channels' relative energy, so the
        # spectrum stays proportional to the fixed magnitude.
        return z / (z.std(dim=(1, 2, 3), keepdim=True) + 1e-4)

    @torch.no_grad()
    def assign(self, z: torch.Tensor) -> None:
        """Keep the magnitude, take the phase of ``z`` (a blur, which changes no phase, is a no-op)."""
        self.phase.copy_(torch.angle(torch.fft.rfft2(z, norm="ortho")))


def _spectrum_grid(h: int, w: int, edge: float) -> torch.Tensor:
    """grid_sample coordinates of an (h, w) image's rfft2 frequencies on a reference spectrum
    whose rows run over fy in [-edge, edge] and whose columns run over fx in [0, 0.5]."""
    fy = torch.fft.fftfreq(h)[:, None].expand(h, w // 2 + 1)
    fx = torch.fft.rfftfreq(w)[None, :].expand(h, w // 2 + 1)
    return torch.stack([fx * 4 - 1, (fy / edge).clamp(-1, 1)], dim=-1)[None]


def resize_magnitude(magnitude: torch.Tensor, size: Size) -> torch.Tensor:
    """A magnitude spectrum (C, H0, W0//2+1) resampled at the frequencies of another size.

    Interpolates the log-magnitude (power laws are near-linear there) as a function of
    frequency in cycles per pixel, which natural images' scale invariance makes size-free.
    The reference width is taken to be even (its last column at fx = 0.5).
    """
    h, w = _hw(size)
    h0 = magnitude.shape[-2]
    ref = torch.fft.fftshift(magnitude.float().clamp(min=1e-8).log(), dim=-2)
    if h0 % 2 == 0:  # rows from -0.5; +0.5 is -0.5 again (periodic), so append it
        ref, edge = torch.cat([ref, ref[:, :1]], dim=-2), 0.5
    else:
        edge = (h0 - 1) / (2 * h0)
    out = F.grid_sample(
        ref[None], _spectrum_grid(h, w, edge), mode="bilinear", padding_mode="border", align_corners=True
    )
    return out[0].exp()


def periodic_spectrum(x: torch.Tensor) -> torch.Tensor:
    """rfft2 (ortho) of the periodic component of images (..., H, W) (Moisan 2011).

    The FFT treats an image as periodic, so the jump between opposite borders adds a bright
    cross along fx = 0 and fy = 0 to its spectrum; a MaCo image with that magnitude shows
    horizontal and vertical streaks. The periodic component is the image minus the smooth
    image whose Laplacian is that border jump.
    """
    h, w = x.shape[-2:]
    v = torch.zeros_like(x)
    v[..., 0, :] += x[..., -1, :] - x[..., 0, :]
    v[..., -1, :] -= x[..., -1, :] - x[..., 0, :]
    v[..., :, 0] += x[..., :, -1] - x[..., :, 0]
    v[..., :, -1] -= x[..., :, -1] - x[..., :, 0]
    fy = torch.fft.fftfreq(h, dtype=x.dtype)[:, None]
    fx = torch.fft.rfftfreq(w, dtype=x.dtype)[None, :]
    denom = 2 * torch.cos(2 * math.pi * fy) + 2 * torch.cos(2 * math.pi * fx) - 4
    denom[0, 0] = 1.0
    smooth = torch.fft.rfft2(v, norm="ortho") / denom
    smooth[..., 0, 0] = 0
    return torch.fft.rfft2(x, norm="ortho") - smooth


def _images_of(dataset: Iterable[Any]) -> Iterator[torch.Tensor]:
    for item in dataset:
        yield item[0] if isinstance(item, (tuple, list)) else item


def magnitude_spectrum(
    dataset: Iterable[Any],
    size: Optional[Size] = MAGNITUDE_REFERENCE_SIZE,
    decorrelate: bool = True,
    periodic: bool = True,
) -> torch.Tensor:
    """The average magnitude spectrum (C, H, W//2+1) of a dataset's images, per colour channel.

    ``dataset`` yields images (C, H, W) in [0, 1] or ``(image, label)``; each is resized to
    ``size`` (None: as it is); ``decorrelate``: in the decorrelated colour coordinates that
    :func:`maco` optimizes in (3 channels only), so its images get RGB's natural correlations;
    ``periodic``: of each image's periodic component (:func:`periodic_spectrum`), without the
    border cross (False: the plain ``|rfft2(image)|``).

    >>> mag = fv.param.magnitude_spectrum(fv.data.sample_images(size=64, crops=2), size=64)
    >>> mag.shape  # (C, h, w // 2 + 1)
    torch.Size([3, 64, 33])
    """
    total, n = None, 0
    inv = torch.linalg.inv(color_correlation())
    for img in _images_of(dataset):
        x = img.float()[None] if img.dim() == 3 else img.float()
        if size is not None and tuple(x.shape[-2:]) != _hw(size):
            x = F.interpolate(x, size=_hw(size), mode="bilinear", align_corners=False, antialias=True)
        if decorrelate and x.shape[1] == 3:
            x = torch.einsum("ij,bjhw->bihw", inv, x)
        mag = (periodic_spectrum(x) if periodic else torch.fft.rfft2(x, norm="ortho")).abs().sum(0)
        if total is not None and mag.shape != total.shape:
            raise ValueError(
                f"images of different sizes ({tuple(x.shape[-2:])} after others): pass size= to resize them all"
            )
        total, n = (mag if total is None else total + mag), n + x.shape[0]
    if total is None:
        raise ValueError("the dataset has no images to compute a magnitude spectrum from")
    return total / n


def write_default_magnitude(path: Union[str, Path] = DEFAULT_MAGNITUDE_FILE, crops: int = 32) -> torch.Tensor:
    """Recompute the shipped default spectrum from the bundled photos (``crops`` seeded random
    crops of each, at 256 px) and save it to ``path`` (float16, ~200 kB).

    Regenerate with ``python -c "import captum_fv as fv; fv.param.write_default_magnitude()"``.
    """
    mag = magnitude_spectrum(sample_images(size=MAGNITUDE_REFERENCE_SIZE, crops=crops, seed=0))
    torch.save(mag.half(), path)
    default_magnitude.cache_clear()
    return mag


@functools.lru_cache(maxsize=None)
def default_magnitude() -> torch.Tensor:
    """The shipped spectrum of the bundled photos (3, 256, 129), decorrelated colour."""
    return torch.load(DEFAULT_MAGNITUDE_FILE, weights_only=True).float()


def maco(
    size: Size,
    batch: int = 1,
    magnitude: Optional[torch.Tensor] = None,
    seed: int = 0,
    decorrelate: bool = True,
    device: Union[str, torch.device, None] = None,
) -> ImageParam:
    """MaCo images: a fixed magnitude spectrum, a free phase (per slot), standardized, colour
    recorrelated, then a sigmoid into [0, 1].

    ``magnitude`` (C, h, w//2+1) at any size (default: the bundled photos' spectrum, computed
    by :func:`magnitude_spectrum` with the same ``decorrelate``); resampled to ``size``.
    The sigmoid, not clipping (the paper allows either): the standardized image is mostly in
    its near-linear range, so the spectrum is barely bent, and no pixel loses its gradient.

    >>> p = fv.param.maco(128, batch=4)
    >>> p().shape
    torch.Size([4, 3, 128, 128])
    """
    h, w = _hw(size)
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    mag = default_magnitude() if magnitude is None else magnitude
    if mag.dim() != 3:
        raise ValueError(f"magnitude must be (C, H, W//2+1), got shape {tuple(mag.shape)}")
    if tuple(mag.shape[-2:]) != (h, w // 2 + 1):
        mag = resize_magnitude(mag, (h, w))
    g = torch.Generator().manual_seed(seed)
    p = ImageParam(PhaseBasis((batch, mag.shape[0], h, w), mag, g), mag.shape[0], decorrelate)
    return p.to(device) if device is not None else p
