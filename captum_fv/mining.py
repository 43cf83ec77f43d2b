"""Dataset examples: the images that drive a unit highest, lowest, and along the way between.

One streaming pass over a dataset keeps, for every unit at once, the top-k and bottom-k examples
(with where in the channel map the unit peaks) and the spectrum of the Distill article: examples
near chosen quantiles of the unit's activation distribution. Memory is O(units x k) plus a fixed
uniform sample for the quantiles, never O(dataset).

Inside a ``torch.distributed`` process group the pass is shared among the ranks: each reads and
runs its round-robin share of the batches, and the states are merged exactly (see
:meth:`DatasetExamples.collect`), so every rank gets the result one process would have found.

>>> ex = DatasetExamples(model, "_blocks.8").collect(fv.data.sample_images(crops=32), k=9)
>>> ex.top(12).indices, ex.names(12)[:2], ex.images(12, "bottom").shape
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, IterableDataset, SequentialSampler
from .progress import progress_bar

from . import distributed as dist_lib
from .hooks import Capture, model_guard
from .addressing import LayerLike, resolve_layer
from .modelinfo import infer_in_channels, model_device, model_dtype, module_of
from .selectors import Selector, as_callable, channel_index, describe

#: Keys under which a dict-style dataset item may hold its image.
IMAGE_KEYS: Tuple[str, ...] = ("image", "images", "img", "pixel_values", "input")

Which = Union[str, float]


# --------------------------------------------------------------------------- result types


@dataclass
class Examples:
    """Examples of one unit at one place of its distribution, best match first.

    ``indices``: dataset indices (k,); ``activations``: the unit's value on each (k,);
    ``positions``: (k, d) index of the peak (trough for bottom examples) in the unit's channel map,
    ``(y, x)`` for a conv layer, or None when the unit has no map (neurons, callables, 1-D layers).
    """

    indices: torch.Tensor
    activations: torch.Tensor
    positions: Optional[torch.Tensor]

    def __len__(self) -> int:
        return len(self.indices)

    def to_dict(self, names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "indices": self.indices.tolist(),
            "activations": self.activations.tolist(),
            "positions": None if self.positions is None else self.positions.tolist(),
        }
        if names is not None:
            out["names"] = [names[i] for i in out["indices"]]
        return out


class ExampleSet:
    """What :meth:`DatasetExamples.collect` found, per unit: top, bottom and quantile examples.

    Look a unit up by what you passed (an int channel, a tuple, the callable itself).
    ``which`` is ``"top"``, ``"bottom"`` or a quantile level such as ``0.25``.

    >>> ex.top(12).activations; ex.quantile(12, 0.5).indices; ex.spectrum(12)[0][0]
    'bottom'
    """

    def __init__(
        self,
        layer: str,
        units: List[Any],
        data: Any,
        n_examples: int,
        k: int,
        map_shape: Tuple[int, ...],
        top: Tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        bottom: Tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        levels: torch.Tensor,
        quantile_values: torch.Tensor,
        quantile_examples: Tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        sample_size: int,
        has_position: torch.Tensor,
        state_bytes: int,
    ) -> None:
        self.layer = layer
        self.units = units
        self.data = data
        self.n_examples = n_examples
        self.k = k
        self.map_shape = map_shape
        self._top = top  # each: indices (U, k), values (U, k), positions (U, k, d)
        self._bottom = bottom
        self.levels = levels
        self.quantile_values = quantile_values  # (U, Q)
        self._quantile = quantile_examples  # indices/values (U, Q, k), positions (U, Q, k, d)
        self.sample_size = sample_size
        #: Quantiles (and their examples) are exact when the whole dataset fit in the sample.
        self.exact_quantiles = n_examples <= sample_size
        self._has_position = has_position  # (U,) bool
        #: Largest size in bytes of the running state during the pass (independent of dataset size).
        self.state_bytes = state_bytes

    def __len__(self) -> int:
        return len(self.units)

    def __repr__(self) -> str:
        return (f"ExampleSet(layer={self.layer!r}, {len(self.units)} units, {self.n_examples} "
                f"examples, k={self.k}, levels={self.levels.tolist()})")

    def _row(self, unit: Any) -> int:
        c = channel_index(unit)
        for i, u in enumerate(self.units):
            if u is unit or (c is not None and channel_index(u) == c):
                return i
            if isinstance(unit, tuple) and isinstance(u, tuple) and u == unit:
                return i
        shown = ", ".join(describe(u) for u in self.units[:6]) + (" ..." if len(self.units) > 6 else "")
        raise KeyError(f"{describe(unit)} was not mined; mined units: {shown}")

    def _examples(self, state: Tuple[torch.Tensor, ...], row: int, *extra: int) -> Examples:
        idx, val, pos = (t[(row,) + extra] for t in state)
        return Examples(idx, val, pos if bool(self._has_position[row]) else None)

    def top(self, unit: Any) -> Examples:
        """The k examples with the highest activation (ties: lower dataset index first)."""
        return self._examples(self._top, self._row(unit))

    def bottom(self, unit: Any) -> Examples:
        """The k examples with the lowest activation (ties: lower dataset index first)."""
        return self._examples(self._bottom, self._row(unit))

    def quantile(self, unit: Any, level: float) -> Examples:
        """The k examples whose activation is nearest the unit's ``level`` quantile."""
        matches = (self.levels - float(level)).abs() < 1e-6
        if not bool(matches.any()):
            raise KeyError(f"quantile {level} was not mined; mined levels: {self.levels.tolist()}")
        return self._examples(self._quantile, self._row(unit), int(matches.nonzero()[0, 0]))

    def spectrum(self, unit: Any) -> List[Tuple[str, Examples]]:
        """The Distill spectrum, low to high: ``[("bottom", ...), ("q0.25", ...), ..., ("top", ...)]``."""
        quantiles = [(f"q{q:g}", self.quantile(unit, q)) for q in self.levels.tolist()]
        return [("bottom", self.bottom(unit))] + quantiles + [("top", self.top(unit))]

    def examples(self, unit: Any, which: Which = "top") -> Examples:
        if which == "top":
            return self.top(unit)
        if which == "bottom":
            return self.bottom(unit)
        if isinstance(which, numbers.Real):
            return self.quantile(unit, float(which))
        raise ValueError(f"which must be 'top', 'bottom' or a quantile level, got {which!r}")

    def images(self, unit: Any, which: Which = "top") -> torch.Tensor:
        """The examples' images, (k, C, H, W), read back from the dataset."""
        indices = self.examples(unit, which).indices.tolist()
        if self.data is None or not hasattr(self.data, "__getitem__"):
            raise TypeError("the mined data cannot be indexed (an IterableDataset or generator); "
                            "fetch the images yourself with the indices in .top(unit).indices")
        if not indices:
            return torch.zeros(0)
        return torch.stack([_image_of(self.data[i]) for i in indices])

    def names(self, unit: Any, which: Which = "top") -> List[str]:
        """The examples' names from the dataset's ``.names``, else ``'example <index>'``."""
        indices = self.examples(unit, which).indices.tolist()
        names = getattr(self.data, "names", None)
        return [names[i] if names is not None else f"example {i}" for i in indices]

    def to_dict(self) -> Dict[str, Any]:
        """Everything as JSON-ready lists (names included when the dataset has ``.names``)."""
        names = getattr(self.data, "names", None)
        units = []
        for i, u in enumerate(self.units):
            entry = {
                "unit": describe(u),
                "selector": _json_selector(u),
                "top": self.top(u).to_dict(names),
                "bottom": self.bottom(u).to_dict(names),
                "quantiles": [
                    {"level": q, "value": float(self.quantile_values[i, j]),
                     **self.quantile(u, q).to_dict(names)}
                    for j, q in enumerate(self.levels.tolist())
                ],
            }
            units.append(entry)
        return {
            "layer": self.layer,
            "n_examples": self.n_examples,
            "k": self.k,
            "map_shape": list(self.map_shape),
            "quantile_levels": self.levels.tolist(),
            "quantiles_exact": self.exact_quantiles,
            "sample_size": self.sample_size,
            "units": units,
        }


def _json_selector(unit: Any) -> Any:
    c = channel_index(unit)
    if c is not None:
        return c
    if isinstance(unit, tuple) and all(isinstance(i, numbers.Integral) for i in unit):
        return [int(i) for i in unit]
    return None  # slices and callables: only the description is portable


# --------------------------------------------------------------------------- running state


class _Extremes:
    """Running top-k (or bottom-k) per unit over a stream of batches.

    A stable sort of [kept; new] keeps ties in dataset-index order: the kept rows are already in
    that order and precede every new row. (``torch.topk`` promises no order among ties.)
    """

    def __init__(self, k: int, largest: bool) -> None:
        self.k, self.largest = k, largest
        self.values = torch.zeros(0, 0)
        self.index = torch.zeros(0, 0, dtype=torch.long)
        self.pos = torch.zeros(0, 0, dtype=torch.int32)

    def update(self, values: torch.Tensor, index: torch.Tensor, pos: torch.Tensor) -> None:
        if self.values.numel() == 0:
            self.values = values[:0]
            self.index = torch.zeros(0, values.shape[1], dtype=torch.long)
            self.pos = pos[:0]
        v = torch.cat([self.values, values])
        i = torch.cat([self.index, index[:, None].expand_as(values)])
        p = torch.cat([self.pos, pos])
        order = torch.sort(v, dim=0, descending=self.largest, stable=True).indices[: self.k]
        self.values, self.index, self.pos = v.gather(0, order), i.gather(0, order), p.gather(0, order)

    def tensors(self) -> List[torch.Tensor]:
        return [self.values, self.index, self.pos]

    @classmethod
    def merged(cls, k: int, largest: bool, parts: Sequence[Sequence[torch.Tensor]]) -> "_Extremes":
        """The state one pass over everything would have: each part is another pass's
        ``tensors()`` over disjoint examples. A part's top-k holds every one of its examples that
        can be in the overall top-k, and sorting by (value, then lower index) is the stream's
        order, so the result is exact, ties included."""
        out = cls(k, largest)
        parts = [p for p in parts if p[0].shape[0] > 0]
        if parts:
            v, i, p = (torch.cat(t) for t in zip(*parts))
            order = _lexsort(v, i, descending=largest)[:k]
            out.values, out.index, out.pos = v.gather(0, order), i.gather(0, order), p.gather(0, order)
        return out


def _lexsort(primary: torch.Tensor, index: torch.Tensor, descending: bool) -> torch.Tensor:
    """Order along dim 0 by ``primary`` (per column), ties by lower ``index``."""
    by_index = torch.sort(index, dim=0, stable=True).indices
    order = torch.sort(primary.gather(0, by_index), dim=0, descending=descending, stable=True).indices
    return by_index.gather(0, order)


class _Sample:
    """A uniform sample of at most ``size`` examples (all units' values for each), one pass.

    Each example gets a random key and the ``size`` smallest keys are kept (ties: lower index):
    a uniform sample without replacement, whatever the dataset length (bottom-k sampling). The
    key of the example at dataset index ``i`` is the ``i``-th draw of a generator seeded with
    ``seed``: it depends on the seed and the index only, not on batching or on which process
    reads the example, so samples taken by several processes merge into the one-process sample.
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.gen = torch.Generator().manual_seed(seed)
        self.drawn = 0  # keys drawn so far = index of the next key
        self.keys = torch.zeros(0)
        self.index = torch.zeros(0, dtype=torch.long)
        self.values = torch.zeros(0, 0)
        self.pos = torch.zeros(0, 0, dtype=torch.int32)

    def _keys(self, start: int, n: int) -> torch.Tensor:
        """Keys of the examples ``start .. start + n - 1`` (indices only ever increase)."""
        if start < self.drawn:
            raise RuntimeError(f"examples arrived out of order (index {start} after {self.drawn - 1})")
        while self.drawn < start:  # another process's examples: draw their keys, unused
            skip = min(start - self.drawn, 1 << 20)
            torch.rand(skip, generator=self.gen)
            self.drawn += skip
        self.drawn += n
        return torch.rand(n, generator=self.gen)

    def update(self, values: torch.Tensor, index: torch.Tensor, pos: torch.Tensor) -> None:
        """Offer examples ``index`` (consecutive dataset indices) with their values."""
        if self.values.numel() == 0:
            self.values, self.pos = values[:0], pos[:0]
        keys = torch.cat([self.keys, self._keys(int(index[0]), len(index))])
        order = torch.sort(keys, stable=True).indices[: self.size]
        if len(self.keys) == len(order) and bool((order < len(self.keys)).all()):
            return  # nothing new got in
        self.keys = keys[order]
        self.index = torch.cat([self.index, index])[order]
        self.values = torch.cat([self.values, values])[order]
        self.pos = torch.cat([self.pos, pos])[order]

    def tensors(self) -> List[torch.Tensor]:
        return [self.keys, self.index, self.values, self.pos]

    @classmethod
    def merged(cls, size: int, seed: int, parts: Sequence[Sequence[torch.Tensor]]) -> "_Sample":
        """The sample one pass over everything would keep: the ``size`` smallest (key, index)
        among the parts' samples (each part's sample holds all of its examples that can be)."""
        out = cls(size, seed)
        parts = [p for p in parts if len(p[0]) > 0]
        if parts:
            keys, index, values, pos = (torch.cat(t) for t in zip(*parts))
            order = _lexsort(keys, index, descending=False)[:size]
            out.keys, out.index, out.values, out.pos = keys[order], index[order], values[order], pos[order]
        return out


def _nearest(sample: _Sample, levels: torch.Tensor, k: int) -> Tuple[torch.Tensor, ...]:
    """Each unit's quantiles of the sample and the k sampled examples nearest each: (U, Q) values,
    then indices, activations (U, Q, k) and positions (U, Q, k)."""
    by_index = torch.argsort(sample.index, stable=True)  # so distance ties go to lower indices
    index, values, pos = sample.index[by_index], sample.values[by_index], sample.pos[by_index]
    n, u = values.shape
    if n == 0 or len(levels) == 0:
        empty = torch.zeros(u, len(levels), 0)
        return (torch.zeros(u, len(levels)), empty.long(), empty, empty.int())
    q = torch.quantile(values.double(), levels.double(), dim=0)  # (Q, U)
    dist = (values.double()[None] - q[:, None]).abs()  # (Q, n, U)
    order = torch.sort(dist, dim=1, stable=True).indices[:, :k]  # (Q, k, U)

    def pick(t: torch.Tensor) -> torch.Tensor:
        return t[None].expand(len(levels), n, u).gather(1, order).permute(2, 0, 1)

    return (q.float().T, pick(index[:, None].expand(n, u)), pick(values), pick(pos))


# --------------------------------------------------------------------------- units


class _Units:
    """Reads every unit's value, peak and trough position from a layer output, in one go.

    Channel units (ints, ``channel(c)``) are vectorized: spatial mean and arg-max/min of the map.
    Tuples and callables go through :func:`selectors.as_callable` and have no position.
    """

    def __init__(self, units: Optional[Sequence[Selector]], layer_shape: Tuple[int, ...], layer: str):
        if len(layer_shape) < 1:
            raise ValueError(f"layer {layer!r} outputs one value per example; there are no units "
                             "to mine, pick a layer with channels")
        n_channels = layer_shape[0]
        self.layer_shape = tuple(layer_shape)
        self.units: List[Any] = list(range(n_channels)) if units is None else list(units)
        if not self.units:
            raise ValueError("units is empty; pass None for every channel, or a list of units")
        self.map_shape = tuple(layer_shape[1:])
        chans = [channel_index(u) for u in self.units]
        for u, c in zip(self.units, chans):
            if c is not None and c >= n_channels:
                raise IndexError(f"channel {c} is out of range for layer {layer!r}, which has "
                                 f"{n_channels} channels (0..{n_channels - 1})")
        self.chan_rows = [i for i, c in enumerate(chans) if c is not None]
        self.chan_index = torch.tensor([c for c in chans if c is not None], dtype=torch.long)
        self.all_channels = self.chan_index.tolist() == list(range(n_channels)) and len(chans) == n_channels
        self.others = [(i, as_callable(u)) for i, (u, c) in enumerate(zip(self.units, chans)) if c is None]
        self.has_position = torch.tensor([c is not None and bool(self.map_shape) for c in chans])

    def __call__(self, acts: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(values, argmax, argmin), each (B, U); positions are flat map indices, -1 if none."""
        b, n = acts.shape[0], len(self.units)
        if self.all_channels:
            return _channel_stats(acts)
        values = acts.new_zeros(b, n, dtype=torch.float32)
        hi = torch.full((b, n), -1, dtype=torch.int32, device=acts.device)
        lo = hi.clone()
        if self.chan_rows:
            rows = torch.tensor(self.chan_rows, device=acts.device)
            v, a, z = _channel_stats(acts[:, self.chan_index.to(acts.device)])
            values[:, rows], hi[:, rows], lo[:, rows] = v, a, z
        for row, fn in self.others:
            values[:, row] = fn(acts).float()
        return values, hi, lo


def _channel_stats(acts: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per channel: spatial mean (the channel selector's value), flat arg-max and arg-min."""
    if acts.dim() == 2:  # (B, C): each channel is one neuron, no map
        none = torch.full(acts.shape, -1, dtype=torch.int32, device=acts.device)
        return acts.float(), none, none.clone()
    flat = acts.flatten(2)
    return flat.mean(2).float(), flat.argmax(2).int(), flat.argmin(2).int()


def _unravel(flat: torch.Tensor, shape: Tuple[int, ...]) -> torch.Tensor:
    """Flat map indices (...,) to coordinates (..., d); -1 stays -1."""
    coords = []
    rest = flat.long()
    for size in reversed(shape):
        coords.append(rest % size)
        rest = rest // size
    out = torch.stack(coords[::-1], -1) if coords else flat.long()[..., None][..., :0]
    return torch.where(flat.long()[..., None] < 0, torch.full_like(out, -1), out)


# --------------------------------------------------------------------------- data


def _image_of(item: Any) -> torch.Tensor:
    """The image of one dataset item: the item itself, its first element, or a dict entry."""
    x = item
    if isinstance(x, (tuple, list)) and x:
        x = x[0]  # (image, label, ...)
    elif isinstance(x, dict):
        key = next((key for key in IMAGE_KEYS if key in x), None)
        if key is None:
            raise KeyError(f"a dataset item is a dict with keys {sorted(x)}, none of which holds "
                           f"the image; put it under one of {list(IMAGE_KEYS)}")
        x = x[key]
    if torch.is_tensor(x):
        return x
    kind = type(x).__name__
    fix = ("add torchvision.transforms.ToTensor() to the dataset's transform"
           if "Image" in kind else
           "convert it to a float tensor (C, H, W) in [0, 1], e.g. "
           "torch.from_numpy(a).permute(2, 0, 1).float() / 255 for an (H, W, C) uint8 array")
    raise TypeError(f"a dataset item holds a {kind}, not an image tensor; {fix}")


def _collate(items: List[Any]) -> torch.Tensor:
    images = [_image_of(it) for it in items]
    shapes = {tuple(img.shape) for img in images}
    if len(shapes) > 1:
        raise ValueError(f"images in one batch have different shapes {sorted(shapes)}; resize them "
                         "to one size in the dataset (e.g. sample_images(size=...) or a Resize)")
    return torch.stack(images)


def _check_batch(x: Any, channels: Optional[int]) -> torch.Tensor:
    """Validate a batch of images, with the problem and the fix in the message."""
    x = _image_of(x)  # a DataLoader's (images, labels) or {"image": ...} batch, or the images
    shape = tuple(x.shape)
    if x.dim() != 4:
        hint = ("for one image add the batch dim (x[None]); for grayscale maps (N, H, W) add a "
                "channel dim (x.unsqueeze(1)) or use 3-channel images"
                if x.dim() == 3 else "the data should yield images (C, H, W), batched to (N, C, H, W)")
        raise ValueError(f"expected a batch of images (N, C, H, W), got shape {shape}; {hint}")
    if x.dtype == torch.uint8:
        raise TypeError("images are uint8 (0..255); the model takes float in [0, 1]: convert with "
                        "x.float() / 255 (torchvision.transforms.ToTensor() does this)")
    if not x.is_floating_point():
        raise TypeError(f"images have dtype {x.dtype}; convert them to float in [0, 1]")
    if channels is not None and shape[1] != channels:
        hint = ("they look channels-last: permute them to (C, H, W)" if shape[-1] == channels else
                f"use {channels}-channel images (e.g. sample_images(channels={channels}))")
        raise ValueError(f"images have {shape[1]} channels (shape {shape}) but the model's first "
                         f"conv takes {channels}; {hint}")
    return x


Batches = Iterable[Tuple[Any, int]]


def _batches(data: Any, batch_size: int, num_workers: int, rank: int = 0,
             world: int = 1) -> Tuple[Batches, Any, Optional[int]]:
    """(this rank's batches as (batch, dataset index of its first example), indexable dataset
    or None, number of examples this rank reads or None); rejects orders that lose indices.

    The batches are those one process would read, in order; rank ``r`` of ``world`` takes
    batches ``r, r + world, ...`` (``DistributedSampler(shuffle=False)``'s round-robin, dealt by
    batch, never padded). Every forward pass then sees exactly the batch one process would see,
    so activations match bit for bit even where kernels depend on the batch's size or content.
    """
    if torch.is_tensor(data):
        parts = [(x, b * batch_size) for b, x in enumerate(data.split(batch_size))][rank::world]
        return parts, data, sum(len(x) for x, _ in parts)
    if isinstance(data, DataLoader):
        bs = data.batch_sampler
        sequential = isinstance(data.dataset, IterableDataset) or (
            isinstance(bs, BatchSampler) and isinstance(bs.sampler, SequentialSampler)
        ) or (bs is None and isinstance(data.sampler, SequentialSampler))
        if not sequential:
            raise ValueError("the DataLoader does not read the dataset in order (shuffle=True or a "
                             "custom sampler), so example indices would be lost; build it with "
                             "shuffle=False, or pass the Dataset itself")
        ds = data.dataset
        n = len(ds) if hasattr(ds, "__len__") and not isinstance(ds, IterableDataset) else None
        return _dealt(data, rank, world), ds, n if world == 1 else None
    if isinstance(data, IterableDataset):
        loader = DataLoader(data, batch_size=batch_size, num_workers=num_workers, collate_fn=_collate)
        n = len(data) if hasattr(data, "__len__") and world == 1 else None
        return _dealt(loader, rank, world), None, n
    if isinstance(data, Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        n = len(data)
        ranges = [range(s, min(s + batch_size, n)) for s in range(0, n, batch_size)][rank::world]
        loader = DataLoader(data, batch_sampler=[list(r) for r in ranges], num_workers=num_workers,
                            collate_fn=_collate)
        return zip(loader, [r.start for r in ranges]), data, sum(len(r) for r in ranges)
    raise TypeError(f"cannot mine a {type(data).__name__}; pass a Dataset or DataLoader yielding "
                    "images or (image, label) pairs, or a tensor (N, C, H, W)")


def _dealt(loader: Iterable, rank: int, world: int) -> Batches:
    """Batches ``rank, rank + world, ...`` of a stream. Each rank still reads the whole stream
    (a stream cannot skip), but runs the model on its own batches only."""
    start = 0
    for b, batch in enumerate(loader):
        if b % world == rank:
            yield batch, start
        start += len(_image_of(batch))


# --------------------------------------------------------------------------- entry point


class DatasetExamples:
    """Find the dataset examples that drive units of ``layer`` highest, lowest and in between.

    ``forward_func``: the model (or a function of the input); ``layer``: a module, its dotted
    name, or None for the model output (then int units are class logits).

    >>> ex = DatasetExamples(model, "_blocks.8").collect(dataset, k=9)
    >>> ex.top(12).indices, ex.top(12).positions  # (9,), (9, 2) as (y, x) in the 8x8 map
    """

    def __init__(self, forward_func: Union[nn.Module, Callable[..., torch.Tensor]], layer: LayerLike):
        self.forward_func = forward_func
        self.module = module_of(forward_func)
        self.layer = resolve_layer(self.module, layer)

    def collect(
        self,
        data: Any,
        k: int = 9,
        batch_size: int = 64,
        units: Optional[Sequence[Selector]] = None,
        quantiles: Sequence[float] = (0.25, 0.5, 0.75),
        sample_size: int = 1024,
        seed: int = 0,
        progress: bool = True,
        num_workers: int = 0,
        distributed: Optional[bool] = None,
    ) -> ExampleSet:
        """One pass over ``data``, under no_grad, the forward stopped after the layer.

        ``units``: None for every channel, else ints (channels), tuples (single neurons, e.g.
        ``(c, y, x)``) or callables (layer output -> (N,)). ``quantiles``: levels for the spectrum,
        estimated from a uniform sample of ``sample_size`` examples (exact when the dataset fits);
        their examples are the sampled ones nearest each estimate. ``batch_size`` and
        ``num_workers`` apply when ``data`` is a Dataset; a DataLoader keeps its own.

        ``distributed``: inside a ``torch.distributed`` process group of several ranks (None: when
        there is one), every rank passes the same ``data`` and arguments, runs the model on its
        round-robin share of the batches (a Dataset or tensor is only read where it is used; a
        DataLoader or stream is read by every rank), and gets the merged result: the one a single
        process finds, top/bottom examples, ties, quantiles and sample included. ``False``: this
        process mines ``data`` alone, whatever the other ranks do.
        """
        if not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if not isinstance(sample_size, numbers.Integral) or sample_size < 1:
            raise ValueError(f"sample_size must be a positive int, got {sample_size!r}")
        levels = torch.tensor([float(q) for q in quantiles], dtype=torch.float64)
        if bool(((levels < 0) | (levels > 1)).any()):
            raise ValueError(f"quantile levels must lie in [0, 1], got {list(quantiles)}")
        for u in units or ():
            as_callable(u)  # type errors before the pass, not after the first batch
        shared = dist_lib.is_distributed() and distributed is not False
        rank, world = (dist_lib.rank(), dist_lib.world_size()) if shared else (0, 1)
        batches, dataset, total = _batches(data, batch_size, num_workers, rank, world)
        module, ref = self.module, self.layer
        device = model_device(module)
        dtype = model_dtype(module)
        channels = infer_in_channels(module, default=None)
        top, bottom, sample = _Extremes(k, True), _Extremes(k, False), _Sample(sample_size, seed)
        plan: Optional[_Units] = None
        seen, state_bytes = 0, 0
        bar = progress_bar(total=total, desc=f"mining {ref.key or 'output'}", unit="img",
                   disable=not progress or rank != 0)
        error: Optional[Exception] = None
        try:
            with model_guard(module), Capture(module, self.forward_func, [ref]) as run, torch.no_grad():
                for batch, start in batches:
                    x = _check_batch(batch, channels).to(device, dtype)
                    if len(x) == 0:
                        continue
                    if plan is None:
                        # A 1-image probe checks the layer runs once per forward and gives its
                        # shape; after it, Capture stops every forward right after the layer.
                        probe = run(x[:1])[ref.key]
                        plan = _Units(units, tuple(probe.shape[1:]), ref.key or "output")
                    values, hi, lo = (t.cpu() for t in plan(run(x)[ref.key]))
                    index = torch.arange(start, start + len(x))
                    _check_finite(values, index, ref.key)
                    top.update(values, index, hi)
                    bottom.update(values, index, lo)
                    sample.update(values, index, hi)
                    seen += len(x)
                    state_bytes = max(state_bytes, _nbytes(top, bottom, sample))
                    bar.update(len(x))
        except Exception as e:
            if not shared:
                raise
            error = e  # raised on every rank below, so that none waits for this one
        finally:
            bar.close()
        if shared:
            plan, seen, top, bottom, sample, state_bytes = self._merge(
                error, units, k, sample_size, seed, plan, seen, top, bottom, sample, state_bytes)
        if plan is None:
            raise ValueError("the data is empty; there are no examples to mine")
        return self._result(plan, dataset, seen, k, levels, top, bottom, sample, state_bytes)

    def _merge(self, error: Optional[Exception], units: Optional[Sequence[Selector]], k: int,
               sample_size: int, seed: int, plan: Optional[_Units], seen: int, top: _Extremes,
               bottom: _Extremes, sample: _Sample, state_bytes: int) -> Tuple[Any, ...]:
        """All-gather every rank's running state and merge it into the one-process state."""
        mine = {
            "layer_shape": None if plan is None else plan.layer_shape, "seen": seen,
            "top": top.tensors(), "bottom": bottom.tensors(), "sample": sample.tensors(),
            "state_bytes": state_bytes,
        }
        states = dist_lib.all_gather_or_raise(mine, error)
        shapes = [s["layer_shape"] for s in states if s["layer_shape"] is not None]
        if plan is None and shapes:  # this rank had no batches; another rank saw the layer
            plan = _Units(units, shapes[0], self.layer.key or "output")
        return (
            plan,
            sum(s["seen"] for s in states),
            _Extremes.merged(k, True, [s["top"] for s in states]),
            _Extremes.merged(k, False, [s["bottom"] for s in states]),
            _Sample.merged(sample_size, seed, [s["sample"] for s in states]),
            max(s["state_bytes"] for s in states),
        )

    def _result(self, plan: _Units, dataset: Any, seen: int, k: int, levels: torch.Tensor,
                top: _Extremes, bottom: _Extremes, sample: _Sample, state_bytes: int) -> ExampleSet:
        shape = plan.map_shape

        def per_unit(state: _Extremes) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            return state.index.T, state.values.T, _unravel(state.pos.T, shape)

        qv, qi, qa, qp = _nearest(sample, levels.float(), k)
        return ExampleSet(
            layer=self.layer.key, units=plan.units, data=dataset, n_examples=seen, k=min(k, seen),
            map_shape=shape, top=per_unit(top), bottom=per_unit(bottom), levels=levels.float(),
            quantile_values=qv, quantile_examples=(qi, qa, _unravel(qp, shape)),
            sample_size=sample.size, has_position=plan.has_position, state_bytes=state_bytes,
        )


def _check_finite(values: torch.Tensor, index: torch.Tensor, layer: str) -> None:
    bad = ~torch.isfinite(values)
    if bool(bad.any()):
        rows = index[bad.any(1)].tolist()[:5]
        raise ValueError(f"the unit values at layer {layer!r} are NaN or infinite for dataset "
                         f"examples {rows}; check those inputs (range, normalization) and the model")


def _nbytes(*states: Any) -> int:
    return sum(t.numel() * t.element_size() for s in states for t in s.tensors())
