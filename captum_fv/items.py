"""Dataset items and batches: where the image of an item is, how items are batched, how a batch
is checked, and how a pass over data is dealt among ranks.

A dataset item is an image tensor ``(C, H, W)``, a tuple/list whose first element is the image
(``(image, label)``), or a dict holding the image under one of :data:`IMAGE_KEYS`. A dict item
may also hold ``"additional_forward_args"``: a tuple (or one value) of extra model arguments for
that example, which :func:`collate` batches element-wise and :func:`forward_args_of` reads back.

>>> image_of({"image": torch.zeros(3, 8, 8), "label": 1}).shape
torch.Size([3, 8, 8])
"""

from __future__ import annotations

import multiprocessing
import numbers
import os
from typing import Any, Iterable, Iterator, List, NamedTuple, Optional, Tuple

import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    IterableDataset,
    SequentialSampler,
    default_collate,
)

from .data import ImageDataset

__all__ = [
    "FORWARD_ARGS_KEY",
    "IMAGE_KEYS",
    "Batch",
    "Share",
    "Source",
    "as_args",
    "batches",
    "check_batch",
    "collate",
    "dealt",
    "default_workers",
    "forward_args_of",
    "image_of",
]

#: Keys under which a dict-style dataset item may hold its image.
IMAGE_KEYS: Tuple[str, ...] = ("image", "images", "img", "pixel_values", "input")
#: Key under which a dict-style item may hold its extra model arguments (Captum's name).
FORWARD_ARGS_KEY = "additional_forward_args"


def image_of(item: Any) -> torch.Tensor:
    """The image of one dataset item (or batch): the item itself, its first element, or a dict entry."""
    x = item
    if isinstance(x, (tuple, list)) and x:
        x = x[0]  # (image, label, ...)
    elif isinstance(x, dict):
        key = next((key for key in IMAGE_KEYS if key in x), None)
        if key is None:
            raise KeyError(
                f"a dataset item is a dict with keys {sorted(x)}, none of which holds "
                f"the image; put it under one of {list(IMAGE_KEYS)}"
            )
        x = x[key]
    if torch.is_tensor(x):
        return x
    kind = type(x).__name__
    fix = (
        "add torchvision.transforms.ToTensor() to the dataset's transform"
        if "Image" in kind
        else "convert it to a float tensor (C, H, W) in [0, 1], e.g. "
        "torch.from_numpy(a).permute(2, 0, 1).float() / 255 for an (H, W, C) uint8 array"
    )
    raise TypeError(f"a dataset item holds a {kind}, not an image tensor; {fix}")


def as_args(value: Any) -> Tuple[Any, ...]:
    """Extra forward arguments as a tuple: a tuple or list is several, anything else one."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def forward_args_of(batch: Any) -> Optional[Tuple[Any, ...]]:
    """A batch's per-example extra forward arguments (a dict batch's ``"additional_forward_args"``),
    as a tuple, or None when it has none."""
    if isinstance(batch, dict) and FORWARD_ARGS_KEY in batch:
        return as_args(batch[FORWARD_ARGS_KEY])
    return None


def collate(items: List[Any]) -> Any:
    """Stack the items' images into (N, C, H, W); with per-item forward arguments, a dict
    ``{"image": images, "additional_forward_args": (...)}``, each argument collated across items."""
    images = [image_of(it) for it in items]
    shapes = {tuple(img.shape) for img in images}
    if len(shapes) > 1:
        raise ValueError(
            f"images in one batch have different shapes {sorted(shapes)}; resize them "
            "to one size in the dataset (e.g. sample_images(size=...) or a Resize)"
        )
    stacked = torch.stack(images)
    with_args = [isinstance(it, dict) and FORWARD_ARGS_KEY in it for it in items]
    if not any(with_args):
        return stacked
    if not all(with_args):
        raise ValueError(
            f"some dataset items of one batch have {FORWARD_ARGS_KEY!r} and some do not; give every item its arguments"
        )
    per_item = [as_args(it[FORWARD_ARGS_KEY]) for it in items]
    if len({len(a) for a in per_item}) > 1:
        raise ValueError(
            f"dataset items give different numbers of {FORWARD_ARGS_KEY!r}: {sorted({len(a) for a in per_item})}"
        )
    args = tuple(default_collate(list(column)) for column in zip(*per_item))
    return {IMAGE_KEYS[0]: stacked, FORWARD_ARGS_KEY: args}


def check_batch(x: Any, channels: Optional[int]) -> torch.Tensor:
    """Validate a batch of images, with the problem and the fix in the message."""
    x = image_of(x)  # a DataLoader's (images, labels) or {"image": ...} batch, or the images
    shape = tuple(x.shape)
    if x.dim() != 4:
        hint = (
            "for one image add the batch dim (x[None]); for grayscale maps (N, H, W) add a "
            "channel dim (x.unsqueeze(1)) or use 3-channel images"
            if x.dim() == 3
            else "the data should yield images (C, H, W), batched to (N, C, H, W)"
        )
        raise ValueError(f"expected a batch of images (N, C, H, W), got shape {shape}; {hint}")
    if x.dtype == torch.uint8:
        raise TypeError(
            "images are uint8 (0..255); the model takes float in [0, 1]: convert with "
            "x.float() / 255 (torchvision.transforms.ToTensor() does this)"
        )
    if not x.is_floating_point():
        raise TypeError(f"images have dtype {x.dtype}; convert them to float in [0, 1]")
    if channels is not None and shape[1] != channels:
        hint = (
            "they look channels-last: permute them to (C, H, W)"
            if shape[-1] == channels
            else f"use {channels}-channel images (e.g. sample_images(channels={channels}))"
        )
        raise ValueError(
            f"images have {shape[1]} channels (shape {shape}) but the model's first conv takes {channels}; {hint}"
        )
    return x


class Batch(NamedTuple):
    """One batch as read (a tensor, a collated dict, a DataLoader's (images, labels)) and the
    dataset index of its first example."""

    data: Any
    start: int


class Source(NamedTuple):
    """This rank's batches, the indexable dataset (None for streams), and how many examples this
    rank reads (None when unknown)."""

    batches: Iterable[Batch]
    dataset: Any
    total: Optional[int]


def default_workers(data: Any, batch_size: int, world: int = 1) -> int:
    """DataLoader workers that decode ``data`` when none are asked for: one for an image folder of
    this package (:func:`~captum_fv.data.image_folder`, files decoded per item) that gives this
    rank two batches or more, where processes fork and there are two cores or more; none
    otherwise (a tensor, your own datasets, the bundled photos, a single batch, a daemonic process).

    One worker decodes the next batch while the model runs on this one, which measured faster on
    2 cores for JPEG folders (``benchmarks/bench_scale.py``); workers fork from this process, so
    nothing is pickled. The bundled photos are decoded once and kept (``cache``): cutting a crop
    is cheap, and a worker measured no faster on a quiet machine (0.99-1.27x the time of none,
    256 and 1,024 crops, ``benchmarks/bench_mining.py``), so they get none.
    """
    if not isinstance(data, ImageDataset) or data.cached or len(Share(len(data), batch_size, 0, world)) < 2:
        return 0
    forks = (multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]) == "fork"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return 1 if forks and cores >= 2 and not multiprocessing.current_process().daemon else 0


def batches(data: Any, batch_size: int, num_workers: Optional[int] = 0, rank: int = 0, world: int = 1) -> Source:
    """This rank's share of a pass over ``data`` (a tensor, Dataset, IterableDataset or DataLoader);
    rejects orders that lose indices. ``num_workers``: DataLoader workers for a Dataset (None:
    :func:`default_workers`); a DataLoader keeps its own.

    The batches are those one process would read, in order; rank ``r`` of ``world`` takes
    batches ``r, r + world, ...`` (``DistributedSampler(shuffle=False)``'s round-robin, dealt by
    batch, never padded). Every forward pass then sees exactly the batch one process would see,
    so activations match bit for bit even where kernels depend on the batch's size or content.
    """
    if not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if num_workers is None:
        num_workers = default_workers(data, batch_size, world)
    if not isinstance(num_workers, numbers.Integral) or num_workers < 0:
        raise ValueError(f"num_workers must be an int >= 0 (0: read in this process), got {num_workers!r}")
    if torch.is_tensor(data):
        parts = [Batch(x, b * batch_size) for b, x in enumerate(data.split(batch_size))][rank::world]
        return Source(parts, data, sum(len(p.data) for p in parts))
    if isinstance(data, DataLoader):
        bs = data.batch_sampler
        sequential = (
            isinstance(data.dataset, IterableDataset)
            or (isinstance(bs, BatchSampler) and isinstance(bs.sampler, SequentialSampler))
            or (bs is None and isinstance(data.sampler, SequentialSampler))
        )
        if not sequential:
            raise ValueError(
                "the DataLoader does not read the dataset in order (shuffle=True or a "
                "custom sampler), so example indices would be lost; build it with "
                "shuffle=False, or pass the Dataset itself"
            )
        ds = data.dataset
        n = len(ds) if hasattr(ds, "__len__") and not isinstance(ds, IterableDataset) else None
        return Source(dealt(data, rank, world), ds, n if world == 1 else None)
    if isinstance(data, IterableDataset):
        if num_workers:
            raise ValueError(
                "num_workers applies to a map-style Dataset; every worker would read an IterableDataset "
                "in full and repeat its examples: pass num_workers=0, or a DataLoader of your own whose "
                "dataset splits itself among its workers"
            )
        loader = DataLoader(data, batch_size=batch_size, collate_fn=collate)
        n = len(data) if hasattr(data, "__len__") and world == 1 else None
        return Source(dealt(loader, rank, world), None, n)
    if isinstance(data, Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        share = Share(len(data), batch_size, rank, world)
        loader = DataLoader(data, batch_sampler=share, num_workers=num_workers, collate_fn=collate)
        # A DataLoader with workers still yields the batches in the sampler's order.
        read = (Batch(b, start) for b, start in zip(loader, share.starts()))
        return Source(read, data, share.examples())
    raise TypeError(
        f"cannot mine a {type(data).__name__}; pass a Dataset or DataLoader yielding "
        "images or (image, label) pairs, or a tensor (N, C, H, W)"
    )


class Share:
    """Rank ``rank`` of ``world``'s batches of a map-style dataset of ``n`` examples, as index lists:
    batches ``rank, rank + world, ...`` of ``batch_size`` consecutive indices. A DataLoader's
    ``batch_sampler``; each list is made when it is read, so its memory does not grow with ``n``.

    >>> list(Share(7, 3, rank=1, world=2)), list(Share(7, 3, rank=0, world=2).starts())
    ([[3, 4, 5]], [0, 6])
    """

    def __init__(self, n: int, batch_size: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.batch_size = n, batch_size
        self.numbers = range(rank, -(-n // batch_size), world)  # this rank's batch numbers

    def __len__(self) -> int:
        return len(self.numbers)

    def __iter__(self) -> Iterator[List[int]]:
        return (list(range(s, min(s + self.batch_size, self.n))) for s in self.starts())

    def starts(self) -> Iterator[int]:
        """The dataset index of each batch's first example."""
        return (b * self.batch_size for b in self.numbers)

    def examples(self) -> int:
        """How many examples this rank reads."""
        return sum(min(self.batch_size, self.n - s) for s in self.starts())


def dealt(loader: Iterable, rank: int, world: int) -> Iterator[Batch]:
    """Batches ``rank, rank + world, ...`` of a stream. Each rank still reads the whole stream
    (a stream cannot skip), but runs the model on its own batches only."""
    start = 0
    for b, batch in enumerate(loader):
        if b % world == rank:
            yield Batch(batch, start)
        start += len(image_of(batch))
