"""Safe loading of saved weights: plain state_dicts only, never arbitrary pickled objects."""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

import torch
from torch import Tensor

__all__ = ["load_checkpoint", "unwrap_state_dict", "Mismatch", "mismatch", "load_weights"]


def load_checkpoint(path: Union[str, os.PathLike]) -> Any:
    """Load a local checkpoint with ``weights_only=True``: tensors and containers, no code.

    A pickled module (``torch.save(model)``) is refused with a hint, since unpickling it
    could run arbitrary code.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"weights file not found: {path!r} (only local state_dict files are supported; nothing is downloaded)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path!r} is not a plain state_dict; save it with torch.save(model.state_dict(), path)"
        ) from err


def unwrap_state_dict(checkpoint: Any) -> dict[str, Tensor]:
    """The state_dict inside a checkpoint, without a DataParallel 'module.' prefix.

    >>> unwrap_state_dict({"model": {"module.fc.bias": 0}})
    {'fc.bias': 0}
    """
    if isinstance(checkpoint, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(checkpoint.get(key), Mapping):
                checkpoint = checkpoint[key]
                break
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"expected a state_dict (a mapping of names to tensors), got {type(checkpoint).__name__}")
    state = dict(checkpoint)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


@dataclass(frozen=True)
class Mismatch:
    """How a state_dict does not fit a model: keys it lacks, keys it has in excess, and tensors
    of another shape (key, shape in the weights, shape in the model). False when it fits."""

    missing: list[str]
    unexpected: list[str]
    resized: list[tuple[str, tuple[int, ...], tuple[int, ...]]]

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.resized)

    def lines(self, shown: int = 5) -> list[str]:
        """One line per kind (each resized tensor up to ``shown``)."""
        out = [f"  {len(self.missing)} missing keys, e.g. {self.missing[:shown]}"] if self.missing else []
        out += [f"  {len(self.unexpected)} unexpected keys, e.g. {self.unexpected[:shown]}"] if self.unexpected else []
        return out + [f"  {k}: weights {a} vs model {b}" for k, a, b in self.resized[:shown]]


def mismatch(model: torch.nn.Module, state: Mapping[str, Tensor]) -> Mismatch:
    """How ``state`` does not fit ``model`` (a :class:`Mismatch`, False when it fits)."""
    expected = model.state_dict()
    return Mismatch(
        [k for k in expected if k not in state],
        [k for k in state if k not in expected],
        [
            (k, tuple(state[k].shape), tuple(expected[k].shape))
            for k in expected
            if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(expected[k].shape)
        ],
    )


def load_weights(model: torch.nn.Module, path: Union[str, os.PathLike], what: str) -> None:
    """Load the state_dict file ``path`` into ``model`` (``what`` names it in errors): a plain
    state_dict only, and a ValueError listing the keys and shapes that do not fit."""
    state = unwrap_state_dict(load_checkpoint(path))
    problem = mismatch(model, state)
    if problem:
        raise ValueError("\n".join([f"weights {os.fspath(path)!r} do not fit {what}:", *problem.lines()]))
    model.load_state_dict(state, strict=True)
