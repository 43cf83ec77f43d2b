"""The network up to a layer as a model of its own, so attribution skips the rest."""
from __future__ import annotations

import torch
from torch import nn

from ..hooks import Capture


class Prefix(nn.Module):
    """The network up to a layer, as a model whose output is that layer's activation.

    Captum hooks ``probe`` (an identity on the captured activation), so a neuron method sees the
    same unit values and gradients as on the full model while the forward stops at the layer.
    """

    def __init__(self, run: Capture, key: str) -> None:
        super().__init__()
        object.__setattr__(self, "_run", run)  # not a submodule: the model is not ours to own
        self.key = key
        self.probe = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.probe(self._run(x)[self.key])
