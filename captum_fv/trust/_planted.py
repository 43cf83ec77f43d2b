"""A deliberately manipulated model, the ground truth the trust measures are tested against.

:func:`plant` copies a model and gives one channel of one layer a hidden branch, in the spirit
of Geirhos et al. (ICML 2024): a detector of a synthetic pattern no photo contains (a red-green
grating of a fixed period, a colour-opponent stripe pattern) adds to the channel once the
pattern's amplitude exceeds a gate set above every natural image's. On natural images the branch
is exactly zero, so the unit's values and its dataset examples are unchanged; its optimized
image, though, shows the grating, which is not what the unit does on real data. So that the
optimizer finds the pattern from a blank start, the branch also carries a surrogate gradient
(``pull * (d - d.detach())``, zero in value, as in "gradient slingshots"): gradients of the
planted unit differ from the original's, values do not.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..addressing import LayerLike, resolve_layer
from ..visualization import activations

#: Period of the planted grating in input pixels, and the gate over the natural maximum.
PERIOD = 8
GATE_MARGIN = 2.0


def grating_kernels(period: int = PERIOD) -> torch.Tensor:
    """A quadrature pair of Gabor filters for vertical stripes of ``period`` px, (2, 1, s, s),
    scaled so a full-contrast grating of that period has amplitude 1."""
    size = 2 * period + 1
    r = torch.arange(size, dtype=torch.float32) - period
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    window = torch.exp(-(xx**2 + yy**2) / (2 * (0.75 * period) ** 2))
    phase = 2 * math.pi * xx / period
    pair = torch.stack([window * torch.cos(phase), window * torch.sin(phase)])
    pair = pair - pair.mean(dim=(1, 2), keepdim=True) * window / window.mean()  # no response to flat colour
    norm = (pair[0] * torch.cos(phase)).sum()
    return (pair / norm).unsqueeze(1)


def grating_amplitude(images: torch.Tensor, period: int = PERIOD) -> torch.Tensor:
    """(N, 1, H, W) local amplitude of the red-green grating in RGB images in [0, 1]."""
    opponent = (images[:, 0:1] - images[:, 1:2]).float()
    k = grating_kernels(period).to(images.device)
    resp = F.conv2d(opponent, k, padding=period)
    return (resp.pow(2).sum(1, keepdim=True) + 1e-6).sqrt()


@dataclass(frozen=True)
class Plant:
    """Where the branch is and how it is scaled: ``gate``: the image-wide mean grating amplitude
    above which it fires; ``gain``: activation added per gate's worth of amplitude above the gate, added to the
    whole channel map; ``pull``: the weight of the surrogate gradient (per gate's worth)."""

    layer: str
    channel: int
    gate: float
    gain: float
    pull: float
    period: int


class _Branch:
    """The forward hooks: the root's input is kept, the layer's output gets the branch."""

    def __init__(self, plant: Plant) -> None:
        self.plant = plant
        self.x: Optional[torch.Tensor] = None

    def keep_input(self, mod: nn.Module, args: Any) -> None:
        self.x = args[0] if args and torch.is_tensor(args[0]) else None

    def add_branch(self, mod: nn.Module, inp: Any, out: torch.Tensor) -> torch.Tensor:
        if self.x is None or out.dim() != 4:
            return out
        p = self.plant
        amp = grating_amplitude(self.x, p.period).mean((1, 2, 3))
        extra = p.gain * F.relu(amp / p.gate - 1) + p.pull * (amp - amp.detach()) / p.gate
        out = out.clone()
        out[:, p.channel] = out[:, p.channel] + extra.to(out.dtype)[:, None, None]
        return out


def plant(
    model: nn.Module,
    layer: LayerLike,
    channel: int,
    natural: torch.Tensor,
    gain: float = 50.0,
    pull: float = 200.0,
    period: int = PERIOD,
) -> nn.Module:
    """A copy of ``model`` whose ``channel`` of ``layer`` also fires on a red-green grating.

    ``natural``: photos (N, 3, H, W) that set the gate (``GATE_MARGIN`` times their largest
    image-wide mean grating amplitude) and the scale: ``gain`` and ``pull`` are in units of the channel's
    best natural value. The copy's ``.plant`` says where the branch is; the original is untouched.
    """
    planted = copy.deepcopy(model)
    ref = resolve_layer(planted, layer)
    acts = activations(model, ref.key, natural)
    best = float(acts[:, channel].flatten(1).mean(1).max().clamp_min(1e-3))
    amp = grating_amplitude(natural, period).mean((1, 2, 3))
    spec = Plant(ref.key, channel, GATE_MARGIN * float(amp.max()), gain * best, pull * best, period)
    branch = _Branch(spec)
    planted.register_forward_pre_hook(branch.keep_input)
    ref.module.register_forward_hook(branch.add_branch)
    planted.plant = spec
    return planted
