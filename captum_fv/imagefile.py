"""Image files: decoding any PIL mode to a working mode, and finding bad files before any work.

A folder of the user's images is checked when its dataset is made (:func:`check_image_file`, a
header and the file's last bytes: about 0.1 ms a file), so a zero-byte, non-image or truncated
file is found before an optimization runs, not at mining time. JPEGs much larger than the
dataset's items decode downscaled with PIL's draft mode (faster; very large ones: bounded
memory); other formats above PIL's decompression-bomb limit stop with :class:`ImageTooLargeError`.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np
from PIL import Image, ImageOps

__all__ = [
    "UnreadableImageError",
    "ImageTooLargeError",
    "check_image_file",
    "load_image",
    "oriented_size",
    "working_mode",
    "DRAFT_PIXELS",
    "DRAFT_GAP",
]

#: JPEGs with more pixels than this decode at a reduced scale (PIL's draft mode): still at least
#: the resolution the dataset asks for, but never the whole bitmap at once.
DRAFT_PIXELS = 50_000_000
#: Smaller JPEGs decode at a reduced scale only where it keeps this many times the resolution asked
#: for: the antialiased resize after it then looks the same (within a few levels of 255), and a
#: phone photo read for a 128 px item decodes several times faster.
DRAFT_GAP = 2

_JPEG_MAGIC = b"\xff\xd8\xff"
_TAIL = 4096  # bytes read from the end of a file to see that it was written to the end
_LIMIT_LOCK = threading.Lock()


class UnreadableImageError(OSError):
    """An image file that cannot be decoded: bad input (exit code 2 on the command line)."""


class ImageTooLargeError(ValueError):
    """An image above PIL's decompression-bomb limit in a format that cannot decode downscaled."""


def working_mode(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to one of L, LA, RGB, RGBA (8-bit) or F (float in [0, 1]).

    >>> working_mode(Image.new("CMYK", (2, 2))).mode
    'RGB'
    """
    mode = img.mode
    if mode == "F":
        return Image.fromarray(np.clip(np.asarray(img, dtype=np.float32), 0, 1), "F")
    if mode.startswith("I"):  # I, I;16, I;16B, ...: 16-bit grayscale, scaled by its full range
        arr = np.asarray(img).astype(np.float32) / 65535.0
        return Image.fromarray(np.clip(arr, 0, 1), "F")
    if mode in ("1", "L"):
        return img.convert("L")
    if mode in ("LA", "La"):
        return img.convert("LA")
    if mode == "P":  # palette: keep transparency if the file declares one
        return img.convert("RGBA" if "transparency" in img.info else "RGB")
    return img.convert("RGBA" if mode in ("PA", "RGBA", "RGBa") else "RGB")  # CMYK, YCbCr, ...


def _is_jpeg(path: Union[str, Path]) -> bool:
    with open(path, "rb") as f:
        return f.read(3) == _JPEG_MAGIC


def _open(path: Union[str, Path]) -> Image.Image:
    """``Image.open``; for a JPEG without PIL's pixel limit, since draft mode bounds its memory."""
    if not _is_jpeg(path):
        return Image.open(path)
    with _LIMIT_LOCK:  # PIL reads the limit from a module global
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def _too_large(path: Union[str, Path], size: Tuple[int, int]) -> ImageTooLargeError:
    limit = Image.MAX_IMAGE_PIXELS
    return ImageTooLargeError(
        f"image file '{path}' has {size[0]} x {size[1]} pixels, above PIL's decompression-bomb "
        f"limit of {limit}; downscale it, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file"
    )


def check_image_file(path: Union[str, Path]) -> Optional[str]:
    """Why ``path`` cannot be used as an image (``"empty file"``, ``"not an image"``,
    ``"truncated"``), or None when its header and its end look whole.

    Raises :class:`ImageTooLargeError` for a non-JPEG above PIL's pixel limit.
    """
    try:
        if os.path.getsize(path) == 0:
            return "empty file"
        with warnings.catch_warnings():  # above the limit: our own error below, not PIL's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _open(path) as img:
                fmt, size = img.format, img.size
    except Image.DecompressionBombError:
        raise _too_large(path, _header_size(path)) from None
    except (OSError, ValueError, SyntaxError) as err:
        return f"not an image ({type(err).__name__}: {str(err)[:80]})"
    limit = Image.MAX_IMAGE_PIXELS
    if fmt != "JPEG" and limit is not None and size[0] * size[1] > limit:
        raise _too_large(path, size)
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - _TAIL))
        tail = f.read()
    if fmt == "JPEG" and b"\xff\xd9" not in tail:
        return "truncated (no JPEG end marker)"
    if fmt == "PNG" and b"IEND" not in tail:
        return "truncated (no PNG end chunk)"
    return None


def _header_size(path: Union[str, Path]) -> Tuple[int, int]:
    with _LIMIT_LOCK:
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with Image.open(path) as img:
                return img.size
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def load_image(path: Union[str, Path], min_side: Optional[int] = None) -> Image.Image:
    """Decode an image file, upright (EXIF orientation applied), in a working mode.

    A JPEG above :data:`DRAFT_PIXELS` decodes at the smallest power-of-two reduction whose short
    side stays at least ``min_side`` (the whole image when ``min_side`` is None); a smaller one
    at the smallest that keeps :data:`DRAFT_GAP` times ``min_side`` (whole when None). Raises
    :class:`UnreadableImageError` naming the file when it is unreadable or corrupt.
    """
    try:
        with _open(path) as img:
            w, h = img.size
            if img.format == "JPEG":
                keep = (min_side or min(w, h)) if w * h > DRAFT_PIXELS else DRAFT_GAP * (min_side or min(w, h))
                if keep < min(w, h):
                    scale = keep / min(w, h)
                    img.draft("RGB", (max(1, int(w * scale + 0.999)), max(1, int(h * scale + 0.999))))
            elif Image.MAX_IMAGE_PIXELS and w * h > Image.MAX_IMAGE_PIXELS:
                raise _too_large(path, (w, h))
            img.load()
            img = ImageOps.exif_transpose(img)
            return working_mode(img)
    except ImageTooLargeError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise UnreadableImageError(
            f"cannot read image file '{path}' ({type(err).__name__}: {err}); replace or delete the file"
        ) from err


def oriented_size(path: Union[str, Path]) -> Tuple[int, int]:
    """``(width, height)`` of an image after EXIF orientation, from its header only."""
    with _open(path) as img:
        w, h = img.size
        rotated = img.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    return (h, w) if rotated else (w, h)
