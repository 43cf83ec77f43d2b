"""The pass over the data: run the model to the layer, keep every unit's extremes and a sample,
merge the ranks' states, and build the :class:`ExampleSet`."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .. import distributed as dist_lib
from ..addressing import LayerLike, resolve_layer
from ..hooks import Capture, model_guard
from ..items import Source, as_args, batches, check_batch, forward_args_of
from ..modelinfo import infer_in_channels, model_device, model_dtype, module_of
from ..progress import progress_bar
from ..unit import Selector, as_units
from ._examples import ExampleSet, Mined, Ranked
from ._extremes import Extremes
from ._sample import Sample, nearest
from ._units import UnitReader, UnitStats, unravel


@dataclass(frozen=True)
class Settings:
    """What to mine: ``units`` as given (None: every channel), k examples per place, the
    quantile ``levels`` (Q,) estimated from a seeded sample of ``sample_size`` examples."""

    units: Optional[Any]
    k: int
    levels: torch.Tensor
    sample_size: int
    seed: int

    @classmethod
    def checked(
        cls, units: Optional[Any], k: int, quantiles: Sequence[float], sample_size: int, seed: int
    ) -> "Settings":
        """Settings from collect's arguments; errors before the pass, not after the first batch."""
        if not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if not isinstance(sample_size, numbers.Integral) or sample_size < 1:
            raise ValueError(f"sample_size must be a positive int, got {sample_size!r}")
        levels = torch.tensor([float(q) for q in quantiles], dtype=torch.float64)
        if bool(((levels < 0) | (levels > 1)).any()):
            raise ValueError(f"quantile levels must lie in [0, 1], got {list(quantiles)}")
        if units is not None:
            as_units(units)  # type errors now
        return cls(units, k, levels, sample_size, seed)


@dataclass
class MiningState:
    """One rank's running state: its extremes, its sample, how many examples it saw, the layer's
    output shape (None until a batch ran) and the largest size of the state so far."""

    top: Extremes
    bottom: Extremes
    sample: Sample
    seen: int = 0
    layer_shape: Optional[Tuple[int, ...]] = None
    state_bytes: int = 0

    @classmethod
    def empty(cls, s: Settings) -> "MiningState":
        return cls(Extremes(s.k, True), Extremes(s.k, False), Sample(s.sample_size, s.seed))

    def update(self, stats: UnitStats, index: torch.Tensor) -> None:
        self.top.update(stats.values, index, stats.peak)
        self.bottom.update(stats.values, index, stats.trough)
        self.sample.update(stats.values, index, stats.peak)
        self.seen += len(index)
        self.state_bytes = max(self.state_bytes, self.nbytes())

    def nbytes(self) -> int:
        parts = (self.top, self.bottom, self.sample)
        return sum(t.numel() * t.element_size() for p in parts for t in p.tensors())

    def portable(self) -> "GatheredState":
        return GatheredState(
            self.layer_shape,
            self.seen,
            self.top.tensors(),
            self.bottom.tensors(),
            self.sample.tensors(),
            self.state_bytes,
        )

    @classmethod
    def merged(cls, s: Settings, parts: Sequence["GatheredState"]) -> "MiningState":
        """The state one process would have after the whole pass (see :meth:`Extremes.merged`)."""
        shapes = [p.layer_shape for p in parts if p.layer_shape is not None]
        return cls(
            Extremes.merged(s.k, True, [p.top for p in parts]),
            Extremes.merged(s.k, False, [p.bottom for p in parts]),
            Sample.merged(s.sample_size, s.seed, [p.sample for p in parts]),
            sum(p.seen for p in parts),
            shapes[0] if shapes else None,
            max(p.state_bytes for p in parts),
        )


@dataclass
class GatheredState:
    """A rank's state as plain tensors, for the all-gather."""

    layer_shape: Optional[Tuple[int, ...]]
    seen: int
    top: List[torch.Tensor]
    bottom: List[torch.Tensor]
    sample: List[torch.Tensor]
    state_bytes: int


def fixed_args(args: Any, n: int, device: torch.device) -> Optional[Tuple[Any, ...]]:
    """``collect``'s additional_forward_args for a batch of ``n``: tensors with first dim 1 are
    broadcast to the batch (as Captum does), everything else is passed as given."""
    if args is None:
        return None
    return tuple(
        a.to(device).expand(n, *a.shape[1:]) if torch.is_tensor(a) and a.dim() > 0 and a.shape[0] == 1 else a
        for a in as_args(args)
    )


def item_args(batch: Any, device: torch.device) -> Optional[Tuple[Any, ...]]:
    """A batch's per-example forward arguments from its items, on the model's device."""
    args = forward_args_of(batch)
    return None if args is None else tuple(a.to(device) if torch.is_tensor(a) else a for a in args)


def first_example(args: Optional[Tuple[Any, ...]], n: int) -> Optional[Tuple[Any, ...]]:
    """The arguments of a batch's first example: per-example tensors (first dim ``n``) sliced."""
    if args is None:
        return None
    return tuple(a[:1] if torch.is_tensor(a) and a.dim() > 0 and a.shape[0] == n else a for a in args)


class DatasetExamples:
    """Find the dataset examples that drive units of ``layer`` highest, lowest and in between.

    ``forward_func``: the model (or a function of the input); ``layer``: a module, its dotted
    name, or None for the model output (then int units are class logits).

    >>> ex = DatasetExamples(model, "_blocks.8").collect(dataset, k=4)
    >>> ex.top(12).indices.shape, ex.top(12).positions.shape  # positions: (y, x) in the layer's map
    (torch.Size([4]), torch.Size([4, 2]))
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
        num_workers: Optional[int] = None,
        distributed: Optional[bool] = None,
        additional_forward_args: Any = None,
    ) -> ExampleSet:
        """One pass over ``data``, under no_grad, the forward stopped after the layer.

        ``units``: None for every channel, else ints (channels), tuples (single neurons, e.g.
        ``(c, y, x)``) or callables (layer output -> (N,)); a list, range or array is many units.
        ``quantiles``: levels for the spectrum, estimated from a uniform sample of
        ``sample_size`` examples (exact when the dataset fits); their examples are the sampled
        ones nearest each estimate. ``batch_size`` and ``num_workers`` apply when ``data`` is a
        Dataset; a DataLoader keeps its own. ``num_workers``: DataLoader processes that read and
        decode the next batches while the model runs (the same examples, in the same order, as
        without); None: one for this package's image datasets where it pays, else none (see
        :func:`captum_fv.items.default_workers`).

        ``additional_forward_args``: extra arguments of the model, the same for every example
        (a tuple, or one value; a tensor with first dim 1 is broadcast to the batch, as in Captum).
        Per-example arguments come with the items instead (see :mod:`captum_fv.mining`).

        ``distributed``: inside a ``torch.distributed`` process group of several ranks (None: when
        there is one), every rank passes the same ``data`` and arguments, runs the model on its
        round-robin share of the batches (a Dataset or tensor is only read where it is used; a
        DataLoader or stream is read by every rank), and gets the merged result: the one a single
        process finds, top/bottom examples, ties, quantiles and sample included. ``False``: this
        process mines ``data`` alone, whatever the other ranks do.
        """
        settings = Settings.checked(units, k, quantiles, sample_size, seed)
        shared = dist_lib.is_distributed() and distributed is not False
        rank, world = (dist_lib.rank(), dist_lib.world_size()) if shared else (0, 1)
        source = batches(data, batch_size, num_workers, rank, world)
        state, error = MiningState.empty(settings), None
        try:
            self._run(source, settings, state, additional_forward_args, progress and rank == 0)
        except Exception as e:
            if not shared:
                raise
            error = e  # raised on every rank below, so that none waits for this one
        if shared:
            state = MiningState.merged(settings, dist_lib.all_gather_or_raise(state.portable(), error))
        if state.layer_shape is None:
            raise ValueError("the data is empty; there are no examples to mine")
        reader = UnitReader(settings.units, state.layer_shape, self.layer.key or "output")
        return ExampleSet(self._mined(reader, settings, state), source.dataset)

    def _run(self, source: Source, settings: Settings, state: MiningState, fixed: Any, progress: bool) -> None:
        """This rank's share of the pass, into ``state``."""
        module, ref = self.module, self.layer
        device, dtype = model_device(module), model_dtype(module)
        channels = infer_in_channels(module, default=None)
        reader: Optional[UnitReader] = None
        bar = progress_bar(total=source.total, desc=f"mining {ref.key or 'output'}", unit="img", disable=not progress)
        try:
            with model_guard(module), Capture(module, self.forward_func, [ref]) as run, torch.no_grad():
                for batch in source.batches:
                    x = check_batch(batch.data, channels).to(device, dtype)
                    if len(x) == 0:
                        continue
                    args = batch_args(batch.data, fixed, len(x), device)
                    if reader is None:
                        # A 1-image probe checks the layer runs once per forward and gives its
                        # shape; after it, Capture stops every forward right after the layer.
                        one = first_example(args, len(x))
                        probe = run(x[:1], additional_forward_args=one)[ref.key]
                        state.layer_shape = tuple(probe.shape[1:])
                        reader = UnitReader(settings.units, state.layer_shape, ref.key or "output")
                    acts = run(x, additional_forward_args=args)[ref.key]
                    stats = UnitStats(*(t.cpu() for t in reader(acts)))
                    index = torch.arange(batch.start, batch.start + len(x))
                    check_finite(stats.values, index, ref.key)
                    state.update(stats, index)
                    bar.update(len(x))
        finally:
            bar.close()
            close = getattr(source.batches, "close", None)
            if close is not None:  # a generator, maybe over loader workers: end them now, not at collection
                close()

    def _mined(self, reader: UnitReader, s: Settings, state: MiningState) -> Mined:
        shape = reader.map_shape

        def per_unit(e: Extremes) -> Ranked:
            return Ranked(e.index.T, e.values.T, unravel(e.pos.T, shape))

        near = nearest(state.sample, s.levels.float(), s.k)
        return Mined(
            layer=self.layer.key,
            selectors=reader.selectors,
            units=reader.units,
            map_shape=shape,
            n_examples=state.seen,
            k=min(s.k, state.seen),
            top=per_unit(state.top),
            bottom=per_unit(state.bottom),
            levels=s.levels.float(),
            quantile_values=near.values,
            quantiles=Ranked(near.indices, near.activations, unravel(near.positions, shape)),
            sample_size=state.sample.size,
            state_bytes=state.state_bytes,
        )


def batch_args(batch: Any, fixed: Any, n: int, device: torch.device) -> Optional[Tuple[Any, ...]]:
    """The extra forward arguments of a batch of ``n``: its items' own, or collect's."""
    own = item_args(batch, device)
    if own is not None and fixed is not None:
        raise ValueError(
            "additional_forward_args come both with the dataset items and as "
            "collect(additional_forward_args=...); give them in one place"
        )
    return own if own is not None else fixed_args(fixed, n, device)


def check_finite(values: torch.Tensor, index: torch.Tensor, layer: str) -> None:
    bad = ~torch.isfinite(values)
    if bool(bad.any()):
        rows = index[bad.any(1)].tolist()[:5]
        raise ValueError(
            f"the unit values at layer {layer!r} are NaN or infinite for dataset "
            f"examples {rows}; check those inputs (range, normalization) and the model"
        )
