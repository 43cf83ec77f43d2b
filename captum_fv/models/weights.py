"""Safe loading of saved weights: plain state_dicts only, never arbitrary pickled objects."""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from typing import Any, Union

import torch
from torch import Tensor

__all__ = ["load_checkpoint", "unwrap_state_dict"]


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
