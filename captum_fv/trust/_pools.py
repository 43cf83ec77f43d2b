"""The natural images a unit's pictures are judged against: its top and bottom examples and a
seeded random sample of the dataset, with the source image of each and their forward arguments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

import numpy as np
import torch

from ..addressing import LayerLike
from ..items import collate, forward_args_of, image_of
from ..mining import DatasetExamples, ExampleSet
from ..unit import Unit
from ._features import ForwardFunc
from ._mis import MIN_EXAMPLES


class NotEnoughExamples(ValueError):
    """The dataset is too small for the trust measures (a report records the verdict
    ``"not enough examples"`` instead)."""


def needed(k: int = MIN_EXAMPLES) -> int:
    """Dataset items the measures need: ``k`` top and ``k`` bottom examples, none of them shared."""
    return 2 * k


def check_size(data: Any, k: int = MIN_EXAMPLES) -> None:
    """Raise :class:`NotEnoughExamples` unless ``data`` is indexable and holds ``needed(k)`` items."""
    if data is None or not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
        raise TypeError("trust needs an indexable dataset (or an ExampleSet whose data is one)")
    n = len(data)
    if n < needed(k):
        raise NotEnoughExamples(
            f"the trust measures need at least {needed(k)} dataset images ({k} top and {k} bottom "
            f"examples), the dataset has {n}: use a larger dataset, e.g. sample_images(crops=8)"
        )


def dataset_groups(data: Any, groups: Optional[Sequence[Any]] = None) -> Optional[Sequence[Any]]:
    """Which source image each dataset item came from: ``groups`` if given, else the dataset's
    ``.groups`` (:func:`captum_fv.data.sample_images` and ``image_folder`` say which file each
    crop came from); None when unknown."""
    if groups is not None:
        return groups
    return getattr(data, "groups", None)


@dataclass(frozen=True)
class Images:
    """Dataset images read back: the batch, each one's source image (None: unknown) and the
    items' own forward arguments (None: they carry none)."""

    images: torch.Tensor
    groups: Optional[List[Any]]
    args: Any = None


def read(data: Any, indices: Sequence[int], groups: Optional[Sequence[Any]]) -> Images:
    """Items ``indices`` of ``data``, each read once."""
    idx = [int(i) for i in indices]
    if not idx:
        return Images(torch.zeros(0), [] if groups is not None else None)
    batch = collate([data[i] for i in idx])
    return Images(image_of(batch), None if groups is None else [groups[i] for i in idx], forward_args_of(batch))


def random_indices(n: int, size: int, seed: int) -> List[int]:
    """A seeded sample of ``size`` dataset indices (sorted), the same for every unit."""
    pick = np.random.default_rng(seed).choice(n, size=min(size, n), replace=False)
    return sorted(int(i) for i in pick.tolist())


@dataclass(frozen=True)
class NaturalPools:
    """The natural images the measures compare with: the unit's top and bottom examples (best
    first) with the source image of each (``None``: unknown), and a seeded random sample;
    ``*_args``: the items' own forward arguments, one row per image (None: none)."""

    top: torch.Tensor
    bottom: torch.Tensor
    best: float
    top_groups: Optional[List[Any]]
    bottom_groups: Optional[List[Any]]
    random: torch.Tensor
    top_args: Any = None
    bottom_args: Any = None
    random_args: Any = None


def has_item_args(data: Any) -> bool:
    """Whether dataset items carry their own forward arguments."""
    try:
        return forward_args_of(data[0]) is not None
    except (TypeError, IndexError, KeyError, NotImplementedError):
        return False


def mined_for(
    forward_func: ForwardFunc,
    layer: LayerLike,
    unit: Unit,
    examples: Any,
    k: int = MIN_EXAMPLES,
    progress: bool = False,
    additional_forward_args: Any = None,
) -> ExampleSet:
    """``examples`` when it is an :class:`ExampleSet` holding the unit with at least ``k``
    examples a side, else ``k`` a side mined from the dataset (``examples`` or the set's data)."""
    data = examples.data if isinstance(examples, ExampleSet) else examples
    check_size(data, k)
    if isinstance(examples, ExampleSet) and examples.k >= k:
        try:
            examples.top(unit.selector)
            return examples
        except KeyError:
            pass
    fixed = None if has_item_args(data) else additional_forward_args
    return DatasetExamples(forward_func, layer).collect(
        data, k=k, units=[unit.selector], progress=progress, additional_forward_args=fixed
    )


def natural_pools(
    forward_func: ForwardFunc,
    layer: LayerLike,
    unit: Unit,
    examples: Any,
    k: int = MIN_EXAMPLES,
    n_random: int = MIN_EXAMPLES,
    groups: Optional[Sequence[Any]] = None,
    seed: int = 0,
    progress: bool = False,
    additional_forward_args: Any = None,
) -> NaturalPools:
    """The pools from a mined :class:`ExampleSet` holding the unit with at least ``k`` examples
    a side, else from mining ``k`` a side of the dataset (``examples`` or the set's data)."""
    mined = mined_for(forward_func, layer, unit, examples, k, progress, additional_forward_args)
    data = mined.data
    g = dataset_groups(data, groups)
    top, bottom = mined.top(unit.selector), mined.bottom(unit.selector)
    t, b = read(data, top.indices.tolist(), g), read(data, bottom.indices.tolist(), g)
    r = read(data, random_indices(len(data), n_random, seed), None)
    best = float(top.activations[0]) if len(top) else float("nan")
    return NaturalPools(t.images, b.images, best, t.groups, b.groups, r.images, t.args, b.args, r.args)
