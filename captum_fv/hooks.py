"""The hook engine: capture chosen layers' activations, stop the forward pass early, leave no trace.

Rules it enforces (each has a test):

* Only the layers an objective needs are hooked, and what a hook captures is cloned, so an
  in-place op after the layer (``ReLU(inplace=True)``) cannot alter captured values or gradients.
* A module that runs more than once per forward is never silently mixed: asking for it without
  a call index raises, and ``"name#k"`` picks its k-th call.
* Once every needed activation has been captured the forward stops (a truncated forward), so a
  step costs about a forward+backward of the network prefix only.
* :func:`model_guard` removes every hook and restores train/eval mode and each parameter's
  ``requires_grad``, also when an exception or KeyboardInterrupt passes through.

Extra model arguments follow Captum's ``additional_forward_args``: the model is called as
``forward_func(x, *args)``, where a tuple is several arguments and anything else one
(:func:`forward_args`); :func:`batch_args` fits them to a batch.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .addressing import OUTPUT, LayerRef
from .modelinfo import OutputKey, select_output, unwrap


class _StopForward(BaseException):
    """Raised by a hook once all needed activations are in; BaseException so that a model's
    own ``except Exception`` cannot swallow it."""


class _Guard:
    def __init__(self) -> None:
        self.handles: List[RemovableHandle] = []

    def add_hook(self, handle: RemovableHandle) -> None:
        self.handles.append(handle)


@contextlib.contextmanager
def model_guard(model: Any, eval_mode: bool = True, freeze: bool = True) -> Iterator[_Guard]:
    """Run code against ``model`` and put it back exactly as it was afterwards.

    Inside, the model is in eval mode (BatchNorm statistics stay untouched, dropout is off) and its
    parameters do not require grad (only the input gets gradients, which is also faster). Hooks
    registered through ``guard.add_hook`` are removed on exit, whatever ends the block.
    """
    guard = _Guard()
    modules = list(model.modules()) if isinstance(model, nn.Module) else []
    params = list(model.parameters()) if isinstance(model, nn.Module) else []
    training = [m.training for m in modules]
    grads = [p.requires_grad for p in params]
    try:
        if eval_mode and modules:
            model.train(False)  # through train(), so wrappers that override it follow
        if freeze:
            for p in params:
                p.requires_grad_(False)
        yield guard
    finally:
        for h in guard.handles:
            h.remove()
        if modules:
            model.train(training[0])  # lets overriding wrappers restore their inner model
        for m, t in zip(modules, training):
            m.training = t
        for p, g in zip(params, grads):
            p.requires_grad_(g)


def _as_tensor(out: Any, name: str) -> torch.Tensor:
    if torch.is_tensor(out):
        return out
    if isinstance(out, (tuple, list)) and out and torch.is_tensor(out[0]):
        return out[0]  # RNN-style (output, state): the output is what a unit means
    raise TypeError(
        f"layer {name!r} returned {type(out).__name__}, not a tensor; choose a submodule that "
        "returns a tensor (see captum_fv.layers(model))"
    )


def forward_args(additional_forward_args: Any) -> Tuple[Any, ...]:
    """Captum's convention: None is no extra argument, a tuple several, anything else one."""
    if additional_forward_args is None:
        return ()
    if isinstance(additional_forward_args, tuple):
        return additional_forward_args
    return (additional_forward_args,)


def batch_args(
    args: Tuple[Any, ...], total: int, start: int = 0, stop: Optional[int] = None, rows: Optional[torch.Tensor] = None
) -> Tuple[Any, ...]:
    """The extra arguments for rows ``start:stop`` (or the index tensor ``rows``) of a batch of
    ``total`` inputs.

    A tensor whose first dim is ``total`` holds one row per input and is sliced; one whose first
    dim is 1 serves every row and is expanded (so during optimization the same arguments serve
    every batch slot); anything else is passed as is.
    """
    stop = total if stop is None else stop
    count = stop - start if rows is None else len(rows)
    out = []
    for a in args:
        if torch.is_tensor(a) and a.dim() > 0 and a.shape[0] == 1:
            a = a.expand(count, *a.shape[1:])
        elif torch.is_tensor(a) and a.dim() > 0 and a.shape[0] == total:
            a = a[start:stop] if rows is None else a[rows.to(a.device)]
        out.append(a)
    return tuple(out)


class Capture:
    """Runs ``forward_func`` and returns the activations of ``refs`` as ``{ref.key: tensor}``.

    The model output (the OUTPUT ref) is read with :func:`modelinfo.select_output` and ``output``,
    so a model returning a tuple, a dict or a ``ModelOutput`` has one output tensor.

    Use as a context manager (hooks live only inside it) and call it with an input batch::

        with Capture(model, model, [resolve_layer(model, "_blocks.8")]) as run:
            acts = run(x)["_blocks.8"]

    The first call runs the whole model to count how often each hooked module runs; later calls
    stop as soon as every needed activation is captured (unless the model output is needed).
    """

    def __init__(
        self,
        model: Optional[nn.Module],
        forward_func: Callable[..., Any],
        refs: Sequence[LayerRef],
        truncate: bool = True,
        output: OutputKey = None,
    ) -> None:
        self.output = output
        self.model = unwrap(model)
        self.forward_func = unwrap(forward_func)  # compiled / DataParallel models run eagerly
        self.refs = list({r.key: r for r in refs}.values())
        self.need_output = any(r.name == OUTPUT for r in self.refs)
        self.truncate = truncate and not self.need_output
        # name -> {call index -> keys}; "x" and "x#0" are one call under two keys
        self._wanted: Dict[str, Dict[int, List[str]]] = {}
        self._modules: Dict[str, nn.Module] = {}
        for r in self.refs:
            if r.name != OUTPUT:
                self._wanted.setdefault(r.name, {}).setdefault(r.call or 0, []).append(r.key)
                self._modules[r.name] = r.module
        self._n_wanted = sum(len(keys) for v in self._wanted.values() for keys in v.values())
        self._counts: Dict[str, int] = {}
        self._store: Dict[str, torch.Tensor] = {}
        self._checked = False
        self._running = False
        self._stack: Optional[contextlib.ExitStack] = None

    def _hook(self, name: str) -> Callable:
        wanted = self._wanted[name]

        def hook(mod: nn.Module, inp: Any, out: Any) -> None:
            if not self._running:  # another forward of the same model (a nested or other Capture)
                return
            k = self._counts.get(name, 0)
            self._counts[name] = k + 1
            keys = wanted.get(k)
            if not keys:
                return
            # Clone: a later in-place op must not change what we hold nor its gradient.
            t = _as_tensor(out, name).clone()
            for key in keys:
                self._store[key] = t
            if self._checked and self.truncate and len(self._store) == self._n_wanted:
                raise _StopForward

        return hook

    def __enter__(self) -> "Capture":
        self._stack = contextlib.ExitStack()
        try:
            for name, mod in self._modules.items():
                self._stack.callback(mod.register_forward_hook(self._hook(name)).remove)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None
        self._store = {}

    def _check_calls(self) -> None:
        for r in self.refs:
            if r.name == OUTPUT:
                continue
            n = self._counts.get(r.name, 0)
            if n == 0:
                raise RuntimeError(
                    f"layer {r.name!r} did not run during the forward pass, so it has no "
                    "activation; pick a layer that forward() uses (see captum_fv.layers(model))"
                )
            if r.call is None and n > 1:
                raise RuntimeError(
                    f"layer {r.name!r} runs {n} times in one forward pass (a reused module, like "
                    f"ResNet's shared relu), so its activation is ambiguous; pick one call with "
                    f"'{r.name}#0' ... '{r.name}#{n - 1}', or a module that runs once"
                )
            if r.call is not None and r.call >= n:
                raise RuntimeError(
                    f"{r.key!r} asks for call {r.call} of layer {r.name!r}, which runs only {n} "
                    f"time(s) per forward; use an index below {n}"
                )
        self._checked = True

    def __call__(self, x: torch.Tensor, additional_forward_args: Any = None) -> Dict[str, torch.Tensor]:
        """Activations for input ``x``; the model runs as ``forward_func(x, *args)`` (see
        :func:`forward_args`)."""
        if self._stack is None:
            raise RuntimeError("Capture must be used inside a 'with' block")
        self._counts = {}
        self._store = {}
        out = None
        self._running = True
        try:
            out = self.forward_func(x, *forward_args(additional_forward_args))
        except _StopForward:
            pass
        except RuntimeError as e:
            if "size" in str(e).lower() or "kernel" in str(e).lower():
                raise RuntimeError(
                    f"the model failed on an input of shape {tuple(x.shape)}: {e}. If the image "
                    "is too small for the model, use a larger size."
                ) from e
            raise
        finally:
            self._running = False
        if not self._checked:
            self._check_calls()
        if self.need_output:
            self._store[OUTPUT] = select_output(out, self.output)
        return self._store
