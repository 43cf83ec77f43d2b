"""Offline datasets of natural images for mining the dataset examples that most activate a neuron.

Every dataset yields ``(image, label)``: ``image`` a float32 tensor ``(C, H, W)`` in ``[0, 1]``,
``label`` an int. It also has ``.names`` (one human-readable description per index) and
``.classes`` (one name per label).

* :func:`sample_images`: the colour photos that ship inside installed packages (scikit-image,
  scikit-learn, matplotlib), optionally as many seeded random crops: no download, ever.
* :func:`image_folder`: a folder of your own images, flat or with class subfolders.

Pixels are decoded lazily in ``__getitem__``; random crops are drawn once at construction from a
local generator, so a seed fixes the dataset and the global RNGs are never touched.
"""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .imagefile import UnreadableImageError, check_image_file, load_image, oriented_size

__all__ = ["ImageDataset", "sample_images", "image_folder", "IMAGE_EXTENSIONS", "SkippedFile"]

SizeLike = Union[int, Tuple[int, int], None]

#: Extensions :func:`image_folder` looks for by default (matched case-insensitively).
IMAGE_EXTENSIONS: Tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
    ".pbm",
)

# Natural colour photos shipped on disk by installed packages: (name, package, path in package).
# Left out on purpose: scikit-image's motorcycle_right (a stereo twin of motorcycle_left),
# hubble_deep_field, retina and ihc (scientific imaging, not everyday scenes), color/horse/logo
# (synthetic or silhouettes) and its grayscale images. Files scikit-image fetches with pooch are
# never requested: we only read files that already exist.
_PHOTOS: Tuple[Tuple[str, str, str], ...] = (
    ("astronaut", "skimage", "data/astronaut.png"),
    ("chelsea", "skimage", "data/chelsea.png"),
    ("coffee", "skimage", "data/coffee.png"),
    ("rocket", "skimage", "data/rocket.jpg"),
    ("motorcycle", "skimage", "data/motorcycle_left.png"),
    ("china", "sklearn", "datasets/images/china.jpg"),
    ("flower", "sklearn", "datasets/images/flower.jpg"),
    ("grace_hopper", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
)

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, the weights PIL's "L" conversion uses


class _Crop(NamedTuple):
    """A crop relative to the image: ``scale`` of the largest box of the output's aspect that
    fits, top-left at fractions ``u``, ``v`` of the free room, and a horizontal flip."""

    scale: float
    u: float
    v: float
    flip: bool = False


_CENTRE = _Crop(1.0, 0.5, 0.5, False)


class SkippedFile(NamedTuple):
    """A file of an image folder left out because it cannot be decoded."""

    path: str  # relative to the folder
    reason: str  # "empty file", "not an image (...)", "truncated (...)"


# --------------------------------------------------------------------------- argument checks


def _check_size(size: SizeLike, allow_none: bool) -> Optional[Tuple[int, int]]:
    """Normalise ``size`` to ``(H, W)``; an int means a square."""
    if size is None:
        if allow_none:
            return None
        raise ValueError(
            "size=None is not supported here: images of different sizes cannot be "
            "batched; pass an int or (height, width)"
        )
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(hw) != 2 or not all(isinstance(s, int) and s > 0 for s in hw):
        raise ValueError(f"size must be a positive int or (height, width) of positive ints, got {size!r}")
    return hw  # type: ignore[return-value]


def _check_common(crops: int, channels: int, min_scale: float) -> None:
    if not isinstance(crops, int) or crops < 0:
        raise ValueError(f"crops must be an int >= 0 (0: one centre crop per image), got {crops!r}")
    if channels not in (1, 3, 4):
        raise ValueError(f"channels must be 1 (grayscale), 3 (RGB) or 4 (RGBA), got {channels!r}")
    if not 0 < min_scale <= 1:
        raise ValueError(f"min_scale must be in (0, 1], got {min_scale!r}")


# --------------------------------------------------------------------------- pixels


def _crop_box(w: int, h: int, crop: _Crop, aspect: float) -> Tuple[float, float, float, float]:
    """Pixel box ``(x0, y0, x1, y1)`` of ``crop`` in a ``w`` x ``h`` image; aspect = width/height.

    >>> _crop_box(400, 200, _CENTRE, 1.0)
    (100.0, 0.0, 300.0, 200.0)
    """
    bw = min(float(w), h * aspect) * crop.scale
    bh = bw / aspect
    x0, y0 = crop.u * (w - bw), crop.v * (h - bh)
    return (x0, y0, x0 + bw, y0 + bh)


def _match_channels(colour: torch.Tensor, alpha: Optional[torch.Tensor], channels: int) -> torch.Tensor:
    """Grey or RGB ``colour`` (+ optional alpha) to 1 (luma), 3 (RGB) or 4 (RGBA) channels."""
    if channels == 1:
        if colour.shape[0] == 1:
            return colour
        return torch.tensordot(torch.tensor(_LUMA), colour, dims=1).unsqueeze(0)
    rgb = colour.expand(3, -1, -1) if colour.shape[0] == 1 else colour
    if channels == 3:
        return rgb
    return torch.cat([rgb, alpha if alpha is not None else torch.ones_like(rgb[:1])])


def _to_tensor(img: Image.Image, channels: int) -> torch.Tensor:
    """Working-mode PIL image to a float32 ``(channels, H, W)`` tensor in [0, 1].

    Alpha is kept only for ``channels=4`` (like torchvision's loader, 1 and 3 just drop it).
    """
    arr = np.array(img, dtype=np.float32)  # a copy: writable, owned by the tensor
    if img.mode != "F":
        arr /= 255.0
    x = torch.from_numpy(arr if arr.ndim == 3 else arr[..., None]).permute(2, 0, 1)
    colour, alpha = (x[:-1], x[-1:]) if img.mode in ("LA", "RGBA") else (x, None)
    return _match_channels(colour, alpha, channels).clamp(0, 1).contiguous()


def _render(img: Image.Image, size: Optional[Tuple[int, int]], crop: Optional[_Crop], channels: int) -> torch.Tensor:
    """Crop (centre crop when ``crop`` is None), resize with antialiasing, flip, convert.

    ``size`` None keeps the pixels' own resolution (and the whole image when ``crop`` is None).

    >>> _render(Image.new("RGB", (640, 480)), (224, 224), None, 3).shape
    torch.Size([3, 224, 224])
    """
    if size is None:
        box = None if crop is None else _crop_box(*img.size, crop, 1.0)
        out = img if box is None else img.crop(tuple(round(b) for b in box))
    else:
        box = _crop_box(*img.size, crop or _CENTRE, size[1] / size[0])
        # PIL's bicubic widens its kernel when shrinking, i.e. it antialiases; `box` resamples
        # the crop straight from the full image in one pass.
        out = img.resize((size[1], size[0]), Image.BICUBIC, box=box)
    x = _to_tensor(out, channels)
    return x.flip(-1) if crop is not None and crop.flip else x


def _random_crops(n_images: int, crops: int, seed: int, min_scale: float) -> List[List[_Crop]]:
    """``crops`` seeded random crops per image, from a local generator (global RNGs untouched)."""
    rng = np.random.default_rng(seed)
    draws = rng.random((n_images, crops, 4))
    scale = min_scale + (1.0 - min_scale) * draws[..., 0]  # side uniform in [min_scale, 1]
    return [
        [
            _Crop(float(scale[i, k]), float(draws[i, k, 1]), float(draws[i, k, 2]), bool(draws[i, k, 3] < 0.5))
            for k in range(crops)
        ]
        for i in range(n_images)
    ]


# --------------------------------------------------------------------------- dataset


class ImageDataset(Dataset):
    """Images from files, each rendered as one centre crop or several precomputed crops.

    Built by :func:`sample_images` or :func:`image_folder`; items are ``(image, label)``.

    >>> ds = sample_images(crops=4)
    >>> image, label = ds[0]; ds.names[0], ds.classes[label]
    ('astronaut (crop 0: x=... y=... side=...)', 'astronaut')
    """

    def __init__(
        self,
        files: Sequence[Path],
        items: Sequence[Tuple[int, Optional[_Crop]]],
        labels: Sequence[int],
        names: Sequence[str],
        classes: Sequence[str],
        size: Optional[Tuple[int, int]],
        channels: int,
        cache: bool = False,
        root: Optional[Path] = None,
        skipped: Sequence["SkippedFile"] = (),
    ) -> None:
        # Per-item records are what grows with the dataset: paths are kept as strings and crops as
        # one float array (N, 4), a few times smaller than Path objects and crop tuples, and with
        # fewer Python objects that a forked loader worker copies by touching their refcounts.
        self._paths = [str(f) for f in files]
        #: The file each item came from (crops of one photo share it): captum_fv.trust keeps
        #: references and queries of its 2AFC from different photos with it.
        self.groups = [i for i, _ in items]
        cropped = [c for _, c in items if c is not None]
        if cropped and len(cropped) != len(self.groups):
            raise ValueError("either every item of an ImageDataset has a crop or none has")
        self._crops: Optional[np.ndarray] = np.array(cropped, dtype=np.float64).reshape(-1, 4) if cropped else None
        self.labels = list(labels)
        self.names = list(names)
        self.classes = list(classes)
        self.size = size
        self.channels = channels
        self.root = root
        self.skipped = list(skipped)
        self._cache: Optional[Dict[int, Image.Image]] = {} if cache else None
        # Draft-mode decoding of huge JPEGs keeps at least this short side: the smallest crop,
        # resized to ``size``, is never upsampled from a reduced bitmap.
        smallest = float(self._crops[:, 0].min()) if self._crops is not None and len(self._crops) else 1.0
        self._min_side = None if size is None else int(max(size) / smallest + 0.999)

    @property
    def cached(self) -> bool:
        """Whether decoded files are kept in memory (the bundled photos): items are then cheap."""
        return self._cache is not None

    @property
    def files(self) -> List[Path]:
        """The image files, one per photo (an item is one of them, or a crop of one)."""
        return [Path(p) for p in self._paths]

    def item(self, index: int) -> Tuple[int, Optional[_Crop]]:
        """Item ``index`` as (file index, crop or None for the centre crop)."""
        if self._crops is None:
            return self.groups[index], None
        scale, u, v, flip = self._crops[index].tolist()
        return self.groups[index], _Crop(scale, u, v, bool(flip))

    def fingerprint(self) -> str:
        """What identifies this dataset for ``--resume``: each file's path (relative to the
        folder), size and modification time, the crops drawn from them, size and channels."""

        def rel(f: Path) -> str:
            return f.relative_to(self.root).as_posix() if self.root is not None else f.name

        stats = [(rel(f), st.st_size, st.st_mtime_ns) for f in self.files for st in (os.stat(f),)]
        return json.dumps(
            {
                "files": stats,
                "items": [(i, None if c is None else list(c)) for i, c in map(self.item, range(len(self)))],
                "labels": self.labels,
                "size": self.size,
                "channels": self.channels,
            }
        )

    def __len__(self) -> int:
        return len(self.groups)

    def _image(self, file_index: int) -> Image.Image:
        if self._cache is None:
            return load_image(self._paths[file_index], self._min_side)
        if file_index not in self._cache:  # decode each photo once
            self._cache[file_index] = load_image(self._paths[file_index])
        return self._cache[file_index]

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        file_index, crop = self.item(index)
        return _render(self._image(file_index), self.size, crop, self.channels), self.labels[index]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self)} items, {len(self.classes)} classes, "
            f"size={self.size}, channels={self.channels})"
        )


def _expand(
    files: Sequence[Path], labels: Sequence[int], crops: int, seed: int, min_scale: float
) -> Tuple[List[Tuple[int, Optional[_Crop]]], List[int]]:
    """Items (file index, crop) and their labels: one centre crop per file, or ``crops`` each."""
    if crops == 0:
        return [(i, None) for i in range(len(files))], list(labels)
    per_file = _random_crops(len(files), crops, seed, min_scale)
    items = [(i, c) for i, cs in enumerate(per_file) for c in cs]
    return items, [labels[i] for i, _ in items]


def _describe_pixels(w: int, h: int, crop: _Crop, aspect: float) -> str:
    x0, y0, x1, y1 = _crop_box(w, h, crop, aspect)
    extent = f"side={x1 - x0:.0f}" if aspect == 1.0 else f"w={x1 - x0:.0f} h={y1 - y0:.0f}"
    return f"x={x0:.0f} y={y0:.0f} {extent}" + (" flipped" if crop.flip else "")


def _describe_relative(crop: _Crop) -> str:
    flip = " flipped" if crop.flip else ""
    return f"scale={crop.scale:.2f} u={crop.u:.2f} v={crop.v:.2f}{flip}"


# --------------------------------------------------------------------------- sample photos


def _package_file(package: str, relative: str) -> Optional[Path]:
    """Path of a data file inside an installed package, or None; never imports or downloads."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / relative
        if path.is_file():
            return path
    return None


def _sample_photo_files() -> List[Tuple[str, Path]]:
    """The bundled photos that exist on disk here, as (name, path); missing ones are skipped."""
    found = [(name, _package_file(pkg, rel)) for name, pkg, rel in _PHOTOS]
    return [(name, path) for name, path in found if path is not None]


def sample_images(
    size: SizeLike = 224, crops: int = 0, seed: int = 0, channels: int = 3, min_scale: float = 0.25
) -> ImageDataset:
    """Natural colour photos bundled with installed packages; label = photo index.

    ``crops=0``: one item per photo, short side resized to ``size`` then centre-cropped
    (``size=None``: the original photo). ``crops=N``: N seeded random crops per photo (side
    uniform in ``[min_scale, 1]`` of the short side, random position and horizontal flip), each
    resized to ``size``. ``size`` is an int (square) or ``(height, width)``.

    >>> ds = sample_images(crops=64)  # hundreds of natural examples, offline
    >>> ds[0][0].shape, ds.classes[:2]
    (torch.Size([3, 224, 224]), ['astronaut', 'chelsea'])
    """
    hw = _check_size(size, allow_none=True)
    _check_common(crops, channels, min_scale)
    photos = _sample_photo_files()
    if not photos:
        raise FileNotFoundError(
            "none of the sample photos were found in the installed "
            "scikit-image, scikit-learn or matplotlib; reinstall one of them "
            "or use image_folder() with your own images"
        )
    classes = [name for name, _ in photos]
    files = [path for _, path in photos]
    items, labels = _expand(files, range(len(files)), crops, seed, min_scale)
    aspect = 1.0 if hw is None else hw[1] / hw[0]
    sizes = [oriented_size(path) for path in files] if crops else []  # headers only
    names = [
        classes[i] if crop is None else f"{classes[i]} (crop {k % crops}: {_describe_pixels(*sizes[i], crop, aspect)})"
        for k, (i, crop) in enumerate(items)
    ]
    return ImageDataset(files, items, labels, names, classes, hw, channels, cache=True)


# --------------------------------------------------------------------------- user folders


def _normalise_extensions(extensions: Sequence[str]) -> Tuple[str, ...]:
    if isinstance(extensions, str):
        extensions = (extensions,)
    return tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)


def _is_image(name: str, extensions: Tuple[str, ...]) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in extensions


def _images_in(folder: Path, extensions: Tuple[str, ...], recursive: bool) -> List[Path]:
    """Sorted visible image files in ``folder`` (and its visible subfolders if ``recursive``)."""
    found: List[Path] = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        found += [Path(root) / n for n in sorted(names) if _is_image(n, extensions) and (Path(root) / n).is_file()]
    return found


def _discover(root: Path, extensions: Tuple[str, ...]) -> Tuple[List[Path], List[int], List[str]]:
    """Files, labels and classes: class subfolders if any hold images, else the flat folder."""
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    per_class = [(d.name, _images_in(d, extensions, recursive=True)) for d in subdirs]
    per_class = [(name, files) for name, files in per_class if files]  # empty folders: no class
    loose = _images_in(root, extensions, recursive=False)
    if not per_class:
        return loose, [0] * len(loose), [root.name]
    if loose:  # ImageFolder layout ignores loose files, but say so rather than drop them silently
        warnings.warn(
            f"ignoring {len(loose)} image(s) directly in '{root}' because it has class "
            f"subfolders; move them into a class subfolder to use them",
            stacklevel=3,
        )
    files = [f for _, fs in per_class for f in fs]
    labels = [label for label, (_, fs) in enumerate(per_class) for _ in fs]
    return files, labels, [name for name, _ in per_class]


def _usable(
    root: Path, files: Sequence[Path], labels: Sequence[int], on_error: str
) -> Tuple[List[Path], List[int], List[SkippedFile]]:
    """The files that decode as images, their labels, and the skipped ones; with
    ``on_error="raise"`` the first bad file raises UnreadableImageError naming every bad one."""
    keep, kept_labels, skipped = [], [], []
    for f, label in zip(files, labels):
        reason = check_image_file(f)
        if reason is None:
            keep.append(f)
            kept_labels.append(label)
        else:
            skipped.append(SkippedFile(f.relative_to(root).as_posix(), reason))
    if skipped:
        listed = "; ".join(f"{s.path} ({s.reason})" for s in skipped)
        if on_error == "raise":
            raise UnreadableImageError(
                f"{len(skipped)} unreadable image file(s) in '{root}': {listed}; "
                "replace or delete them, or pass on_error='skip'"
            )
        warnings.warn(f"skipped {len(skipped)} unreadable image file(s) in '{root}': {listed}", stacklevel=3)
    return keep, kept_labels, skipped


def image_folder(
    path: Union[str, os.PathLike],
    size: Union[int, Tuple[int, int]] = 224,
    crops: int = 0,
    seed: int = 0,
    channels: int = 3,
    min_scale: float = 0.25,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    on_error: str = "skip",
) -> ImageDataset:
    """A folder of your images: class subfolders (label = sorted class index) or flat (label 0).

    Hidden and non-image files are skipped; class folders are searched recursively. Every file is
    checked when the dataset is made (its header and its last bytes): a zero-byte, non-image or
    truncated file is left out with one warning naming every such file (listed in ``.skipped``),
    or, with ``on_error="raise"``, raises UnreadableImageError naming them. A non-JPEG above PIL's
    decompression-bomb limit raises ImageTooLargeError; very large JPEGs decode downscaled.
    Images are decoded lazily. ``size``, ``crops``, ``seed``, ``channels`` and ``min_scale`` work
    as in :func:`sample_images`.

    >>> ds = image_folder("photos/", crops=8)  # photos/cats/*.jpg, photos/dogs/*.png
    >>> ds.classes, ds.names[0]
    (['cats', 'dogs'], 'cats/a.jpg (crop 0: scale=0.73 u=0.27 v=0.04 flipped)')
    """
    hw = _check_size(size, allow_none=False)
    _check_common(crops, channels, min_scale)
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(
            f"image folder '{root}' does not exist; pass the path of a folder "
            f"of images or of class subfolders of images"
        )
    if not root.is_dir():
        raise NotADirectoryError(
            f"'{root}' is not a directory; pass the folder that contains the image (or class subfolders), not a file"
        )
    exts = _normalise_extensions(extensions)
    files, file_labels, classes = _discover(root, exts)
    files, file_labels, skipped = _usable(root, files, file_labels, on_error)
    if not files:
        found = f" ({len(skipped)} unreadable file(s) skipped)" if skipped else ""
        raise FileNotFoundError(
            f"no image files found in '{root}'{found} (looked for {', '.join(exts)}, "
            f"hidden files skipped); add images there or in class subfolders, "
            f"or pass extensions=... to match your files"
        )
    items, labels = _expand(files, file_labels, crops, seed, min_scale)
    rel = [f.relative_to(root).as_posix() for f in files]
    names = [
        rel[i] if crop is None else f"{rel[i]} (crop {k % crops}: {_describe_relative(crop)})"
        for k, (i, crop) in enumerate(items)
    ]
    return ImageDataset(files, items, labels, names, classes, hw, channels, root=root, skipped=skipped)
