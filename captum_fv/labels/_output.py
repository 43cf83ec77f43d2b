"""Output-class labels: the logits a unit drives, read by zeroing the unit (an ablation).

One full forward over the examples captures the layer's activation and the clean logits. Then,
per batch of units, the layer's output is replaced by that activation with each unit zeroed
(a forward hook) and only the network's tail matters: when the layer is a cut of the network
(nothing after it reads the input by another path, checked once on the data), the forward runs
the prefix on a single stand-in image, so the cost is about one tail forward per example and unit.
Otherwise every example runs whole, which gives the same numbers at the price of the prefix.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..addressing import OUTPUT, LayerLike, LayerRef, resolve_layer
from ..hooks import Capture, batch_args, forward_args, model_guard
from ..items import image_of
from ..modelinfo import OutputKey, model_device, model_dtype, module_of, select_output, unwrap
from ..unit import Selector, Unit, as_units
from ._records import UnitLabel

Inputs = Union[torch.Tensor, Sequence[torch.Tensor]]

#: How many rows the stand-in check compares (rows that differ from the stand-in image).
CHECK_ROWS = 8


def output_classes(
    forward_func: Union[nn.Module, Callable[..., Any]],
    layer: LayerLike,
    inputs: Inputs,
    neuron_selector: Union[Selector, Sequence[Selector]],
    *,
    classes: Optional[Sequence[str]] = None,
    top: int = 5,
    batch_size: int = 64,
    additional_forward_args: Any = None,
    output: OutputKey = None,
) -> List[UnitLabel]:
    """The output classes each unit drives most: the drop of every logit when the unit is zeroed
    at ``layer``, averaged over the unit's examples (positive: the unit raises that logit); the
    label is the class of the largest drop, empty when zeroing the unit lowers no logit.

    ``inputs``: one batch ``(N, C, H, W)`` for every unit, or one batch per unit (e.g. each
    unit's top examples). Units are channels (the whole map is zeroed) or neurons (tuples,
    slices included); a callable selector cannot be zeroed. ``classes``: one name per logit;
    None gives the ImageNet names for a 1000-way output, else ``"class i"``. ``top``: how many
    classes each label lists. ``additional_forward_args``: as in Captum, the same for every
    input (a tensor with first dim 1, or one row per input when ``inputs`` is one batch).

    >>> labs = fv.labels.output_classes(model, "_blocks.8", images, [3, 7], top=3)
    >>> [lab.source for lab in labs], len(labs[0].top), labs[0].label in fv.models.imagenet_labels()
    (['output', 'output'], 3, True)
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"top must be an int >= 1 (how many classes a label lists), got {top!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    units = as_units(neuron_selector)
    for u in units:
        if u.kind == "function":
            raise TypeError(
                f"output_classes zeroes a unit at the layer, and {u.title} is a callable with no "
                "positions to zero; pass a channel (int) or a neuron index (tuple)"
            )
    x, rows = _stack(inputs, len(units))
    module = module_of(forward_func)
    ref = resolve_layer(module, layer)
    if ref.name == OUTPUT:
        raise ValueError("layer is the model output; pass a hidden layer whose units feed the logits")
    args = forward_args(additional_forward_args)
    if args and not torch.is_tensor(inputs):
        for a in args:
            if torch.is_tensor(a) and a.dim() and a.shape[0] != 1:
                raise ValueError(
                    "with one batch of inputs per unit, additional_forward_args must serve every input "
                    "(tensors with first dim 1); pass one shared batch for per-row arguments"
                )
    device, dtype = model_device(module), model_dtype(module)
    with model_guard(module) as guard, torch.no_grad():
        acts, logits = _clean_pass(module, forward_func, ref, x, args, batch_size, output, device, dtype)
        for u in units:
            u.check(acts.shape[1:], layer)
        names = _class_names(classes, logits)
        tail = _Tail(forward_func, ref, output)
        guard.add_hook(ref.module.register_forward_hook(tail.hook))
        stand_in = not args and tail.is_cut(x, acts, logits, device, dtype)
        sums = torch.zeros(len(units), logits.shape[1], dtype=torch.float64)
        for batch in _batches(rows, batch_size):
            idx = torch.cat([r for _, r in batch])
            zeroed = torch.cat([_zeroed(acts[r], units[i]) for i, r in batch])
            feed = x[:1] if stand_in else x[idx]
            drop = (logits[idx] - tail(feed, zeroed, batch_args(args, len(x), rows=idx), device, dtype)).double()
            start = 0
            for i, r in batch:
                sums[i] += drop[start : start + len(r)].sum(0)
                start += len(r)
    labels = []
    for i, u in enumerate(units):
        mean = sums[i] / len(rows[i])
        best = torch.argsort(mean, descending=True, stable=True)[:top].tolist()
        ranked = [(names[c], float(mean[c])) for c in best]
        label = ranked[0][0] if ranked[0][1] > 0 else ""  # a unit that raises no logit drives no class
        labels.append(UnitLabel(u, label, ranked[0][1], "output", ranked, None, len(rows[i])))
    return labels


def _stack(inputs: Inputs, n_units: int) -> Tuple[torch.Tensor, List[torch.Tensor]]:
    """All inputs as one batch, and each unit's rows of it."""
    if torch.is_tensor(inputs):
        _check_batch(inputs, "inputs")
        return inputs, [torch.arange(len(inputs))] * n_units
    if not isinstance(inputs, (list, tuple)) or not all(torch.is_tensor(t) for t in inputs):
        raise TypeError(
            f"inputs must be a tensor (N, C, H, W) or a list of them, one per unit; got {type(inputs).__name__}"
        )
    if len(inputs) != n_units:
        raise ValueError(
            f"got {len(inputs)} input batches for {n_units} units; pass one batch per unit, or one tensor for all"
        )
    for i, t in enumerate(inputs):
        _check_batch(t, f"inputs[{i}]")
        if t.shape[1:] != inputs[0].shape[1:]:
            raise ValueError(
                f"inputs[{i}] has examples of shape {tuple(t.shape[1:])}, inputs[0] of "
                f"{tuple(inputs[0].shape[1:])}; give every unit examples of one size"
            )
    ends = torch.tensor([len(t) for t in inputs]).cumsum(0).tolist()
    rows = [torch.arange(end - len(t), end) for t, end in zip(inputs, ends)]
    return torch.cat(list(inputs)), rows


def _check_batch(t: torch.Tensor, what: str) -> None:
    if t.dim() < 2 or len(t) == 0:
        raise ValueError(f"{what} must be a non-empty batch of examples (N, C, H, W); got shape {tuple(t.shape)}")


def _clean_pass(
    module: Optional[nn.Module],
    forward_func: Callable[..., Any],
    ref: LayerRef,
    x: torch.Tensor,
    args: Tuple[Any, ...],
    batch_size: int,
    output: OutputKey,
    device: torch.device,
    dtype: torch.dtype,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The layer's activation and the logits for every example (one full forward each)."""
    out_ref = resolve_layer(module, None)
    acts, logits = [], []
    with Capture(module, forward_func, [ref, out_ref], output=output) as run:
        for i in range(0, len(x), batch_size):
            idx = torch.arange(i, min(i + batch_size, len(x)))
            got = run(x[idx].to(device, dtype), batch_args(args, len(x), rows=idx))
            acts.append(got[ref.key])
            logits.append(got[OUTPUT].float())
    out = torch.cat(logits)
    if out.dim() != 2:
        raise ValueError(
            f"output_classes reads logits (N, classes), but the model output has shape {tuple(out.shape)}; "
            "pass output= to pick the logits of a structured output"
        )
    return torch.cat(acts), out


def known_class_names(n_outputs: int) -> Optional[List[str]]:
    """The class names of an ``n_outputs``-way output when they can be known without being told:
    ImageNet's for 1000 outputs, else None."""
    if n_outputs != 1000:
        return None
    from ..models.labels import imagenet_labels  # torchvision is slow to import; only here

    return imagenet_labels()


def output_names(
    forward_func: Callable[..., torch.Tensor],
    dataset: Any,
    additional_forward_args: Any = None,
    output: OutputKey = None,
) -> Optional[List[str]]:
    """The class names of the model's output when they can be known (:func:`known_class_names`),
    its width read off one forward of the dataset's first item (model left as found; None when
    that forward fails: names are a nicety, never the reason a report stops)."""
    module = module_of(forward_func)
    x = image_of(dataset[0])[None].to(model_device(module), model_dtype(module))
    try:
        with model_guard(module), torch.no_grad():
            logits = select_output(forward_func(x, *forward_args(additional_forward_args)), output)
    except Exception:  # noqa: BLE001 - see the docstring
        return None
    return known_class_names(logits.shape[1]) if logits.dim() >= 2 else None


def _class_names(classes: Optional[Sequence[str]], logits: torch.Tensor) -> List[str]:
    n = logits.shape[1]
    if classes is None:
        return known_class_names(n) or [f"class {i}" for i in range(n)]
    names = [str(c) for c in classes]
    if len(names) != n:
        raise ValueError(f"classes has {len(names)} names but the model has {n} outputs; give one name per logit")
    return names


def _zeroed(acts: torch.Tensor, unit: Unit) -> torch.Tensor:
    """``acts`` with ``unit`` set to zero on every example."""
    out = acts.clone()
    if unit.kind == "channel":
        out[:, unit.channel] = 0
    else:
        out[(slice(None),) + tuple(unit.index)] = 0
    return out


def _batches(rows: List[torch.Tensor], batch_size: int) -> List[List[Tuple[int, torch.Tensor]]]:
    """(unit, rows) pieces packed into batches of at most ``batch_size`` rows, in unit order."""
    batches: List[List[Tuple[int, torch.Tensor]]] = [[]]
    room = batch_size
    for i, r in enumerate(rows):
        for piece in r.split(batch_size):
            if len(piece) > room:
                batches.append([])
                room = batch_size
            batches[-1].append((i, piece))
            room -= len(piece)
    return [b for b in batches if b]


class _Tail:
    """Runs the model with the layer's output replaced by given activations."""

    def __init__(self, forward_func: Callable[..., Any], ref: LayerRef, output: OutputKey) -> None:
        self.forward_func = unwrap(forward_func)  # compiled / DataParallel models run eagerly
        self.call = ref.call or 0
        self.output = output
        self.replacement: Optional[torch.Tensor] = None
        self.calls = 0

    def hook(self, module: nn.Module, inp: Any, out: Any) -> Any:
        if self.replacement is None:
            return None
        k, self.calls = self.calls, self.calls + 1
        if k != self.call:
            return None
        if isinstance(out, (tuple, list)):  # RNN-style (output, state): the output is what a unit means
            return type(out)([self.replacement, *out[1:]])
        return self.replacement

    def __call__(
        self, x: torch.Tensor, acts: torch.Tensor, args: Tuple[Any, ...], device: torch.device, dtype: torch.dtype
    ) -> torch.Tensor:
        self.replacement, self.calls = acts, 0
        try:
            out = self.forward_func(x.to(device, dtype), *args)
        finally:
            self.replacement = None
        return select_output(out, self.output).float()

    def is_cut(
        self, x: torch.Tensor, acts: torch.Tensor, logits: torch.Tensor, device: torch.device, dtype: torch.dtype
    ) -> bool:
        """Whether the logits depend on the input only through the layer: replaying the clean
        activations of examples that differ from ``x[0]``, with ``x[0]`` fed as the input, must
        give their clean logits back."""
        differs = (x.flatten(1) != x[:1].flatten(1)).any(1).nonzero().flatten()[:CHECK_ROWS]
        if len(differs) == 0:
            return True  # every example is the stand-in itself
        try:
            replay = self(x[:1], acts[differs], (), device, dtype)
        except Exception:  # e.g. a skip connection of the wrong batch size: not a cut
            return False
        want = logits[differs]
        return replay.shape == want.shape and bool(
            torch.allclose(replay, want, rtol=1e-4, atol=1e-4 * (1.0 + float(want.abs().max())))
        )
