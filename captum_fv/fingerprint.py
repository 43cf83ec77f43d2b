"""Fingerprints: what determines a unit's images and numbers, so ``--resume`` keeps a unit only
when every one of them matches.

A report's fingerprint has one digest per part (the parts are named so a resumed run can say why
a unit was redone):

* ``results``: :data:`RESULTS_VERSION`, raised whenever a change to captum-fv alters what a unit's
  images or numbers would be;
* ``architecture``: module classes, parameter and buffer names, shapes and dtypes;
* ``weights``: the values of every parameter and buffer;
* ``dataset``: for an image folder, its sorted relative paths with sizes and modification times
  (and the crops drawn from them); for any other dataset, its length and a digest of a seeded
  sample of items (a dataset may define ``fingerprint() -> str`` to say it better);
* ``settings``: every report setting, the layer included;
* ``trust``: the trust block's settings (:func:`captum_fv.trust.settings`, and the architecture
  and weights of each transfer model), when the report measures trust;
* ``unit``: the unit itself (added per unit).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Dict, Iterable, List, Optional

import numpy as np
import torch
from torch import nn

#: Raise whenever a change alters what a unit's images or numbers would be: units written under
#: another version are redone by ``--resume``.
RESULTS_VERSION = 1

#: Items of an in-memory dataset hashed for its fingerprint (plus its first and last item).
SAMPLED_ITEMS = 16

#: The order in which parts are compared and named when a unit is redone.
PARTS = ("results", "architecture", "weights", "dataset", "settings", "trust", "unit")


def _sha(chunks: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()[:32]


def _text(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, default=repr).encode()


def tensor_bytes(t: torch.Tensor) -> bytes:
    """The raw bytes of a tensor (any dtype, bf16 included), on the CPU, with its shape and dtype."""
    t = t.detach()
    if t.is_sparse or t.layout != torch.strided:
        t = t.to_dense()
    t = t.cpu().contiguous()
    head = f"{tuple(t.shape)}|{t.dtype}|".encode()
    if t.numel() == 0:
        return head
    return head + t.reshape(-1).view(torch.uint8).numpy().tobytes()


def _state(module: nn.Module) -> List[tuple]:
    """(name, tensor) for every parameter and buffer, shared ones once, in a stable order."""
    seen = set()
    named = list(module.named_parameters(remove_duplicate=False))
    named += list(module.named_buffers(remove_duplicate=False))
    out = []
    for name, t in named:
        if t is None or id(t) in seen:
            continue
        seen.add(id(t))
        out.append((name, t))
    return sorted(out, key=lambda p: p[0])


def architecture_digest(module: Optional[nn.Module], forward_func: Any = None) -> str:
    """Module classes by name, and parameter and buffer names, shapes and dtypes. A plain function
    with no module is known only by its qualified name."""
    if module is None:
        fn = forward_func
        return _sha([_text(f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}")])
    mods = [(n, f"{type(m).__module__}.{type(m).__qualname__}") for n, m in module.named_modules()]
    shapes = [(n, list(t.shape), str(t.dtype)) for n, t in _state(module)]
    return _sha([_text(mods), _text(shapes)])


def weights_digest(module: Optional[nn.Module]) -> str:
    """A digest of every parameter and buffer value (the default model: ~0.05 s)."""
    if module is None:
        return "none"
    return _sha(n.encode() + tensor_bytes(t) for n, t in _state(module))


def _item_bytes(item: Any) -> bytes:
    if torch.is_tensor(item):
        return tensor_bytes(item)
    if isinstance(item, np.ndarray):
        return item.tobytes() + str(item.shape).encode()
    if isinstance(item, dict):
        return b"".join(_text(k) + _item_bytes(v) for k, v in sorted(item.items(), key=lambda kv: str(kv[0])))
    if isinstance(item, (list, tuple)):
        return b"[" + b",".join(_item_bytes(v) for v in item) + b"]"
    return _text(item)


def dataset_digest(dataset: Any, seed: int = 0) -> str:
    """The dataset's own ``fingerprint()`` when it has one, else its length and a digest of a
    seeded sample of its items (first and last included)."""
    own = getattr(dataset, "fingerprint", None)
    if callable(own):
        return _sha([b"own|", str(own()).encode()])
    n = len(dataset)
    if n == 0:
        return _sha([b"empty"])
    rng = np.random.default_rng(seed)
    picks = sorted({0, n - 1, *rng.choice(n, size=min(n, SAMPLED_ITEMS), replace=False).tolist()})
    return _sha([f"{type(dataset).__qualname__}|{n}|".encode()] + [_item_bytes(dataset[i]) for i in picks])


def settings_digest(settings: Dict[str, Any]) -> str:
    return _sha([_text(settings)])


def model_digest(module: Optional[nn.Module], forward_func: Any = None) -> Dict[str, str]:
    """A model by its architecture and weights digests (how a report names a transfer model)."""
    return {"architecture": architecture_digest(module, forward_func), "weights": weights_digest(module)}


def fingerprint(
    module: Optional[nn.Module], forward_func: Any, dataset: Any, settings: Dict[str, Any]
) -> Dict[str, str]:
    """The parts of a report's fingerprint that every unit shares (see the module docstring).
    A ``"trust"`` entry of ``settings`` is its own part (absent when the report has none)."""
    rest = {k: v for k, v in settings.items() if k != "trust"}
    parts = {
        "results": str(RESULTS_VERSION),
        "architecture": architecture_digest(module, forward_func),
        "weights": weights_digest(module),
        "dataset": dataset_digest(dataset),
        "settings": settings_digest(rest),
    }
    if "trust" in settings:
        parts["trust"] = settings_digest(settings["trust"])
    return parts


def differences(stored: Any, current: Dict[str, str]) -> List[str]:
    """The parts of ``current`` that ``stored`` does not match, in :data:`PARTS` order (a unit
    written before fingerprints existed differs in all of them)."""
    if not isinstance(stored, dict):
        return [p for p in PARTS if p in current]
    return [p for p in PARTS if p in current and stored.get(p) != current[p]]
