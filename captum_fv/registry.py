"""Registry: visualization objectives and attribution methods by name, built-ins included.

A user's own objective or attribution registers in one line and is then used by name through
the same calls as the built-ins.

>>> register_objective("sparse_channel", lambda layer, c: obj.channel(layer, c) - 0.1 * obj.l1())
<function <lambda> at 0x...>
>>> get_objective("sparse_channel")("_blocks.8", 3)
Objective(...)
>>> register_attribution("my_ig", captum.attr.NeuronIntegratedGradients)
NeuronMethod(NeuronIntegratedGradients)
>>> a = fv.attribute(model, "_blocks.8", images, 3, attribution="my_ig")
>>> a.attributions.shape
torch.Size([4, 3, 64, 64])
>>> print(catalog())
kind         name                  description
-----------  --------------------  -----------
objective    channel               Mean activation of channel unit over all positions.
...
objective    sparse_channel        (no description)
...
attribution  my_ig                 Approximates the integral of gradients for a particular neuron

A leaf: it imports no other captum_fv module. The built-ins register themselves where they are
defined (objectives through ``captum_fv.objectives.objective``, attribution methods in
``captum_fv.attribution``), and so does the adapter that wraps a Captum class.
"""

from __future__ import annotations

import difflib
import inspect
import re
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

_OBJECTIVES: Dict[str, Callable[..., Any]] = {}
_ATTRIBUTIONS: Dict[str, Any] = {}
_CLASS_ADAPTER: List[Callable[[type], Any]] = []  # set once by captum_fv.attribution


def _check_name(name: Any, table: Dict[str, Any], kind: str, overwrite: bool) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a {kind} name must be a non-empty string, got {name!r}")
    if name in table and not overwrite:
        raise ValueError(f"{kind} {name!r} is already registered; pass overwrite=True to replace it")


def _lookup(name: str, table: Dict[str, Any], kind: str) -> Any:
    if name in table:
        return table[name]
    close = difflib.get_close_matches(str(name), list(table), n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    raise LookupError(f"no {kind} named {name!r}{hint} Registered: {', '.join(table)}")


def register_objective(name: str, factory: Optional[Callable[..., Any]] = None, *, overwrite: bool = False) -> Any:
    """Register ``factory(*args) -> Objective`` under ``name``; without ``factory``, a decorator.

    >>> register_objective("bright", lambda: obj.l2(0.0))  # maximized: far from black
    <function <lambda> at 0x...>
    """
    if factory is None:
        return lambda f: register_objective(name, f, overwrite=overwrite)
    _check_name(name, _OBJECTIVES, "objective", overwrite)
    if not callable(factory):
        raise TypeError(f"an objective factory must be callable, got {type(factory).__name__}")
    _OBJECTIVES[name] = factory
    return factory


def set_class_adapter(wrap: Callable[[type], Any]) -> None:
    """How :func:`register_attribution` turns a Captum ``Neuron*`` class into an adapter
    (``captum_fv.attribution`` sets its ``NeuronMethod``)."""
    _CLASS_ADAPTER[:] = [wrap]


def register_attribution(name: str, method: Any, *, overwrite: bool = False) -> Any:
    """Register a Captum ``Neuron*`` class or an adapter under ``name``:
    ``adapter(forward_func, layer, selector, inputs, **kwargs) -> attributions`` (or
    ``(attributions, delta)``), ``layer`` being a module or None for the model output.

    An adapter may set ``completeness = True`` to get a convergence delta, and ``check(selector,
    layer_shape)`` to reject selectors early. Returns what was stored.

    >>> register_attribution("ig", captum.attr.NeuronIntegratedGradients)
    NeuronMethod(NeuronIntegratedGradients)
    """
    _check_name(name, _ATTRIBUTIONS, "attribution", overwrite)
    if inspect.isclass(method) and hasattr(method, "attribute"):
        if not _CLASS_ADAPTER:
            raise RuntimeError(
                "import captum_fv (or captum_fv.attribution) before registering "
                "a Captum class: it provides the adapter that runs it"
            )
        method = _CLASS_ADAPTER[0](method)
    elif not callable(method):
        raise TypeError(
            "an attribution method must be a Captum Neuron* class or a callable "
            "adapter(forward_func, layer, selector, inputs, **kwargs); got "
            f"{type(method).__name__}"
        )
    _ATTRIBUTIONS[name] = method
    return method


def get_objective(name: str) -> Callable[..., Any]:
    """The objective factory registered as ``name``, e.g. ``get_objective("channel")(layer, 3)``."""
    return _lookup(name, _OBJECTIVES, "objective")


def get_attribution(name: str) -> Any:
    """The attribution adapter registered as ``name`` (what :func:`attribute` runs)."""
    return _lookup(name, _ATTRIBUTIONS, "attribution method")


def list_objectives() -> List[str]:
    return list(_OBJECTIVES)


def list_attributions() -> List[str]:
    return list(_ATTRIBUTIONS)


def describe_entry(entry: Any) -> str:
    """One line: an adapter's ``description``, else the first line of its docstring."""
    text = getattr(entry, "description", None) or _summary(getattr(entry, "__doc__", None))
    return text or "(no description)"


def _summary(doc: Optional[str]) -> str:
    """The first sentence of a docstring's first paragraph, on one line."""
    paragraph = " ".join((doc or "").strip().split("\n\n")[0].split())
    return re.split(r"(?<=[.!?])\s", paragraph, maxsplit=1)[0]


def catalog(width: int = 100, extra: Sequence[Tuple[str, str, str]] = ()) -> str:
    """A table of every objective and attribution method with a one-line description
    (descriptions longer than ``width`` characters are shortened), then the ``extra`` rows
    (kind, name, description).

    >>> print(catalog())
    kind         name                  description
    -----------  --------------------  -----------
    objective    channel               Mean activation of channel unit over all positions.
    ...
    """
    rows = [("objective", n, describe_entry(f)) for n, f in _OBJECTIVES.items()]
    rows += [("attribution", n, describe_entry(m)) for n, m in _ATTRIBUTIONS.items()]
    rows += list(extra)
    rows = [(k, n, d.replace("``", "")) for k, n, d in rows]  # plain text: no reST literals
    rows = [(k, n, d if len(d) <= width else d[: width - 3].rstrip() + "...") for k, n, d in rows]
    wk = max(len("kind"), *(len(r[0]) for r in rows))
    wn = max(len("name"), *(len(r[1]) for r in rows))
    lines = [f"{'kind':<{wk}}  {'name':<{wn}}  description", f"{'-' * wk}  {'-' * wn}  {'-' * 11}"]
    lines += [f"{k:<{wk}}  {n:<{wn}}  {d}" for k, n, d in rows]
    return "\n".join(lines)
