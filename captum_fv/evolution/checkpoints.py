"""Checkpoints: where each set of weights comes from, loading them one at a time, and putting the
model's own weights back afterwards."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

import torch
from torch import nn

from ..models.weights import load_checkpoint, unwrap_state_dict

CheckpointLike = Union[str, os.PathLike, Mapping]


@dataclass(frozen=True)
class Checkpoint:
    """One set of weights: a local state_dict file (read with ``weights_only=True`` when it is
    used) or a state_dict in memory, with the label its column carries."""

    label: str
    source: Any  # a path, or a state_dict

    @property
    def slug(self) -> str:
        """The label as a safe folder name."""
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.label).strip("._") or "checkpoint"

    def state_dict(self) -> Dict[str, torch.Tensor]:
        if isinstance(self.source, Mapping):
            return unwrap_state_dict(self.source)
        return unwrap_state_dict(load_checkpoint(self.source))


def as_checkpoints(checkpoints: Sequence[CheckpointLike], labels: Optional[Sequence[str]] = None) -> List[Checkpoint]:
    """Checkpoints with labels: the given ones, else a file's stem or ``checkpoint <i>``; labels
    must be unique (their folders would clash)."""
    if isinstance(checkpoints, (str, os.PathLike, Mapping)):
        raise TypeError("checkpoints must be a sequence (a list of paths or state_dicts), not one checkpoint")
    checkpoints = list(checkpoints)
    if not checkpoints:
        raise ValueError("give at least one checkpoint")
    if labels is not None and len(labels) != len(checkpoints):
        raise ValueError(f"{len(labels)} labels for {len(checkpoints)} checkpoints")
    out = []
    for i, c in enumerate(checkpoints):
        label = (
            labels[i]
            if labels is not None
            else (f"checkpoint {i}" if isinstance(c, Mapping) else Path(os.fspath(c)).stem)
        )
        out.append(Checkpoint(str(label), _snapshot(c) if isinstance(c, Mapping) else os.fspath(c)))
    slugs = [c.slug for c in out]
    if len(set(slugs)) != len(slugs):
        raise ValueError(f"checkpoint labels must differ (as folder names): {slugs}; pass labels=")
    return out


def _snapshot(state: Mapping) -> Dict[str, Any]:
    # model.state_dict() aliases the live parameters: loading an earlier checkpoint would rewrite it.
    return {k: v.detach().clone() if torch.is_tensor(v) else v for k, v in state.items()}


def load_into(module: nn.Module, checkpoint: Checkpoint) -> None:
    """Load ``checkpoint`` into ``module`` (strict: a checkpoint of another architecture fails)."""
    try:
        module.load_state_dict(checkpoint.state_dict(), strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise ValueError(f"checkpoint {checkpoint.label!r} does not fit the model: {first}") from e


@contextmanager
def restored(module: nn.Module) -> Iterator[None]:
    """Run a block that loads other weights into ``module``; its own are copied back afterwards."""
    saved = {k: v.detach().clone() for k, v in module.state_dict().items()}
    try:
        yield
    finally:
        module.load_state_dict(saved, strict=True)
