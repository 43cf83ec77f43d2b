"""Reduced precision and memory format for the optimization forward of a render.

``autocast="bf16"`` runs each ascent step's forward (and so its backward) under
``torch.autocast(<the model's device type>, torch.bfloat16)``; ``channels_last=True`` hands the
model its input in channels-last memory format (convolutions then keep that layout through the
network). Everything else stays as it was: the parameterization, the images, the optimizer state,
the objective (captured activations are cast back to float32 before it reads them) and the loss
are float32, and the final values a render reports are computed in float32 without either option.
The model is never converted: for channels-last weights too, call
``model.to(memory_format=torch.channels_last)`` yourself (and undo it yourself).

bfloat16 rather than float16: it has float32's exponent range, so gradients neither underflow nor
overflow without a loss scaler. Both options are off by default; on a CPU they are rarely faster.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Dict, Optional

import torch

_BF16_NAMES = {"bf16", "bfloat16"}


@dataclass(frozen=True)
class Precision:
    """How a render's ascent forward runs: under autocast to ``dtype`` (None: the model's own
    dtype throughout), with a ``channels_last`` input, on ``device_type`` (autocast's device)."""

    dtype: Optional[torch.dtype] = None
    channels_last: bool = False
    device_type: str = "cpu"

    @classmethod
    def of(cls, autocast: Any = None, channels_last: Any = False, device: Any = "cpu") -> "Precision":
        """Checked options: ``autocast`` None/False (off), ``"bf16"``/``"bfloat16"``/``torch.bfloat16``;
        ``channels_last`` a bool; ``device`` the model's device (autocast follows its type)."""
        if not isinstance(channels_last, bool):
            raise TypeError(f"channels_last must be True or False, got {channels_last!r}")
        device_type = torch.device(device).type
        if autocast is None or autocast is False:
            return cls(None, channels_last, device_type)
        if autocast is torch.bfloat16 or (isinstance(autocast, str) and autocast.lower() in _BF16_NAMES):
            if not torch.amp.is_autocast_available(device_type):
                raise ValueError(
                    f"autocast is not available on device type {device_type!r} (the model's); use autocast=None"
                )
            return cls(torch.bfloat16, channels_last, device_type)
        hint = " (float16 needs loss scaling to keep gradients finite)" if _is_fp16(autocast) else ""
        raise ValueError(f"autocast must be None or 'bf16', got {autocast!r}{hint}; use autocast='bf16' or None")

    @property
    def name(self) -> str:
        """``"fp32"``, ``"bf16"``, ``"fp32+channels_last"``, ...: for tables and records."""
        base = "bf16" if self.dtype is torch.bfloat16 else "fp32"
        return base + ("+channels_last" if self.channels_last else "")

    def autocast(self) -> ContextManager[Any]:
        """The autocast region for the forward (a no-op context when off)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the input memory format (a 4-D batch only; anything else as is)."""
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(
        self, run: Callable[[torch.Tensor, Any], Dict[str, torch.Tensor]], x: torch.Tensor, args: Any
    ) -> Dict[str, torch.Tensor]:
        """``run(x, args)`` (a :class:`captum_fv.hooks.Capture`) under these options; with autocast,
        the captured floating tensors come back in float32, so objectives reduce in float32."""
        with self.autocast():
            acts = run(self.layout(x), args)
        if self.dtype is None:
            return acts
        return {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in acts.items()}


def attribution_layout(x: torch.Tensor) -> torch.Tensor:
    """The inputs of an attribution in the memory format measured faster for them: channels-last
    for a 4-D batch on a CPU (integrated gradients, 6 top examples x 50 steps of the default
    model's ``_blocks.8``: 1.68 s a unit against 2.21, 2 cores; attributions equal to float
    rounding); anything else as is. Unlike a render's ascent, whose objective gradients come back
    in the default format, Captum's path batches keep the layout end to end."""
    if x.dim() == 4 and x.device.type == "cpu":
        return x.contiguous(memory_format=torch.channels_last)
    return x


def _is_fp16(value: Any) -> bool:
    return value is torch.float16 or (isinstance(value, str) and value.lower() in {"fp16", "float16", "half"})
