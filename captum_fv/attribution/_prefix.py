"""The network up to a layer as a model of its own, so attribution skips the rest; and the
model with one chosen output tensor, for units of a structured model output."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ..hooks import Capture
from ..modelinfo import OutputKey, module_of, select_output


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

    def forward(self, x: torch.Tensor, *args: Any) -> torch.Tensor:
        return self.probe(self._run(x, args)[self.key])  # Captum's additional_forward_args


class SelectedOutput(nn.Module):
    """A model whose output is the tensor :func:`select_output` picks from the model's own.
    The model is a submodule, so methods with per-module rules (DeepLIFT) still see its layers."""

    def __init__(self, forward_func: Callable[..., Any], owner: nn.Module, output: OutputKey) -> None:
        super().__init__()
        self.owner = owner
        object.__setattr__(self, "_forward", forward_func)  # the owner itself, or its bound method
        self.output = output

    def forward(self, x: torch.Tensor, *args: Any) -> torch.Tensor:
        return select_output(self._forward(x, *args), self.output)


def output_model(forward_func: Callable[..., Any], output: OutputKey) -> Callable[..., torch.Tensor]:
    """``forward_func`` returning one output tensor (a module when it has one behind it)."""
    owner = module_of(forward_func)
    if owner is not None:
        return SelectedOutput(forward_func, owner, output)

    def selected(x: torch.Tensor, *args: Any) -> torch.Tensor:
        return select_output(forward_func(x, *args), output)

    return selected
