"""Preprocessing inside the model: wrap a network so it takes RGB in [0, 1] and normalizes itself.

Optimized images then live in a fixed, model-independent range while layer names stay exactly
those of the underlying network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Callable, Union

import torch
from torch import Tensor, nn

from ..modelinfo import infer_in_channels

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Preprocessed", "with_preprocessing"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def _as_channel_tensor(values: Union[Sequence[float], Tensor], what: str) -> Tensor:
    """Validate mean/std values and shape them (1, C, 1, 1) for broadcasting."""
    t = torch.as_tensor(values, dtype=torch.float32).flatten()
    if t.numel() == 0:
        raise ValueError(f"{what} must have one value per input channel, got none")
    if not torch.isfinite(t).all():
        raise ValueError(f"{what} must be finite, got {t.tolist()}")
    return t.view(1, -1, 1, 1)


class Preprocessed(nn.Module):
    """A model that normalizes [0, 1] input, sharing the inner model's structure.

    The inner model's children, parameters and buffers are shared by reference,
    so names in ``named_modules()`` / ``state_dict()`` are identical to the
    inner model's; the inner model itself is not a registered submodule.
    Build it with :func:`with_preprocessing`.
    """

    def __init__(self, model: nn.Module, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        # object.__setattr__: a plain reference, invisible to named_modules().
        object.__setattr__(self, "_inner", model)
        self._modules.update(model._modules)
        self._parameters.update(model._parameters)
        self._buffers.update(model._buffers)
        # Non-persistent: moved by .to(), absent from state_dict().
        self.register_buffer("_fv_mean", mean, persistent=False)
        self.register_buffer("_fv_std", std, persistent=False)
        self.training = model.training

    @property
    def inner(self) -> nn.Module:
        """The wrapped model (it expects already-normalized input)."""
        return self._inner

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self._fv_mean.shape[1]:
            raise ValueError(f"expected NCHW input with {self._fv_mean.shape[1]} channels, got shape {tuple(x.shape)}")
        return self._inner((x - self._fv_mean) / self._fv_std, *args, **kwargs)

    def train(self, mode: bool = True) -> "Preprocessed":
        super().train(mode)  # shared children follow
        self._inner.training = mode
        return self

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> "Preprocessed":
        # Let the inner model convert its own tensors, then re-share them:
        # nn.Module._apply may replace dict entries (buffers) rather than mutate.
        self._inner._apply(fn, recurse)
        self._parameters.update(self._inner._parameters)
        self._buffers.update(self._inner._buffers)
        for name in ("_fv_mean", "_fv_std"):
            self._buffers[name] = fn(self._buffers[name])
        return self

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        # Root-level tensors are the inner model's, under its own rules.
        self._inner._save_to_state_dict(destination, prefix, keep_vars)

    def _load_from_state_dict(
        self,
        state_dict: Mapping,
        prefix: str,
        local_metadata: dict,
        strict: bool,
        missing_keys: list,
        unexpected_keys: list,
        error_msgs: list,
    ) -> None:
        self._inner._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        self._parameters.update(self._inner._parameters)  # assign=True replaces them
        self._buffers.update(self._inner._buffers)

    def extra_repr(self) -> str:
        mean = [round(v, 4) for v in self._fv_mean.flatten().tolist()]
        std = [round(v, 4) for v in self._fv_std.flatten().tolist()]
        return f"inner={type(self._inner).__name__}, mean={mean}, std={std}"


def with_preprocessing(
    model: nn.Module, mean: Union[Sequence[float], Tensor], std: Union[Sequence[float], Tensor]
) -> nn.Module:
    """Wrap ``model`` so it takes [0, 1] input and normalizes with mean/std inside.

    Layer names and state_dict keys are unchanged, and ``model`` itself is not
    modified; ``.eval()``/``.train()`` on the wrapper reach the model.

    >>> import torchvision
    >>> net = with_preprocessing(torchvision.models.resnet18(), IMAGENET_MEAN, IMAGENET_STD)
    >>> net.get_submodule("layer3.1.conv2") is net.inner.layer3[1].conv2
    True
    """
    mean_t = _as_channel_tensor(mean, "mean")
    std_t = _as_channel_tensor(std, "std")
    if mean_t.shape != std_t.shape:
        raise ValueError(f"mean and std must have the same length, got {mean_t.shape[1]} and {std_t.shape[1]}")
    if (std_t <= 0).any():
        raise ValueError(f"std must be > 0, got {std_t.flatten().tolist()}")
    channels = infer_in_channels(model, default=None, kinds=(nn.Conv2d,))
    if channels is not None and channels != mean_t.shape[1]:
        raise ValueError(f"mean/std have {mean_t.shape[1]} values but the model's first conv takes {channels} channels")
    return Preprocessed(model, mean_t, std_t)
