"""Tests for captum_fv.mining: one streaming pass equals a brute-force sort of all activations."""

from __future__ import annotations

import json
import multiprocessing

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import captum_fv as fv
from captum_fv.mining import DatasetExamples, ExampleSet
from captum_fv.mining._extremes import Extremes

N, SIZE = 37, 12  # 37 is prime: no batch size below divides it; (N - 1) * q is whole for quartiles


class Tiny(nn.Module):
    """conv -> BN -> ReLU -> conv ("conv2", 8 channels, 6x6 map) -> head that counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
        self.head_batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv2(self.relu(self.bn(self.conv1(x))))
        self.head_batches.append(len(x))
        return self.head(a)


class Labeled(Dataset):
    """(image, label) items with .names."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images
        self.names = [f"img{i}" for i in range(len(images))]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], i % 3


class Bare(Labeled):
    def __getitem__(self, i: int):
        return self.images[i]


class Dicts(Labeled):
    def __getitem__(self, i: int):
        return {"image": self.images[i], "label": i}


@pytest.fixture(scope="module")
def model() -> Tiny:
    torch.manual_seed(0)
    m = Tiny()
    with torch.no_grad():  # non-trivial BN statistics, so eval vs train mode would differ
        m.bn.running_mean.uniform_(-0.2, 0.2)
        m.bn.running_var.uniform_(0.5, 2.0)
    return m.eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(N, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def layer_output(model: Tiny, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.conv2(model.relu(model.bn(model.conv1(x))))


def brute(values: torch.Tensor, maps: torch.Tensor | None, k: int, levels=(0.25, 0.5, 0.75)):
    """Reference: every value at once, sorted in Python with ties to the lower index."""
    v = values.tolist()
    n = len(v)
    top = sorted(range(n), key=lambda i: (-v[i], i))[:k]
    bottom = sorted(range(n), key=lambda i: (v[i], i))[:k]
    qs = torch.quantile(values.double(), torch.tensor(levels, dtype=torch.float64)).tolist()
    near = [sorted(range(n), key=lambda i: (abs(v[i] - q), i))[:k] for q in qs]
    pos = None
    if maps is not None:
        w = maps.shape[-1]
        flat = maps.flatten(1)
        pos = {
            "top": [divmod(int(flat[i].argmax()), w) for i in top],
            "bottom": [divmod(int(flat[i].argmin()), w) for i in bottom],
            "near": [[divmod(int(flat[i].argmax()), w) for i in ids] for ids in near],
        }
    return top, bottom, near, qs, pos


def check_unit(ex: ExampleSet, unit, values: torch.Tensor, maps, k: int) -> None:
    top, bottom, near, qs, pos = brute(values, maps, k)
    assert ex.top(unit).indices.tolist() == top
    assert ex.bottom(unit).indices.tolist() == bottom
    torch.testing.assert_close(ex.top(unit).activations, values[top])
    torch.testing.assert_close(ex.bottom(unit).activations, values[bottom])
    for level, ids, q in zip((0.25, 0.5, 0.75), near, qs):
        got = ex.quantile(unit, level)
        assert got.indices.tolist() == ids
        torch.testing.assert_close(got.activations, values[ids])
        assert abs(ex.quantile_values[ex._row(unit), [0.25, 0.5, 0.75].index(level)] - q) < 1e-5
    if maps is None:
        assert ex.top(unit).positions is None
    else:
        assert [tuple(p) for p in ex.top(unit).positions.tolist()] == pos["top"]
        assert [tuple(p) for p in ex.bottom(unit).positions.tolist()] == pos["bottom"]
        for level, p in zip((0.25, 0.5, 0.75), pos["near"]):
            assert [tuple(q) for q in ex.quantile(unit, level).positions.tolist()] == p


def mine(model, data, **kw) -> ExampleSet:
    kw.setdefault("progress", False)
    return DatasetExamples(model, "conv2").collect(data, **kw)


# ------------------------------------------------------------------ equality with brute force


@pytest.mark.parametrize("batch_size", [5, 8])
@pytest.mark.parametrize("kind", ["labeled", "bare", "loader", "dicts"])
def test_all_channels_match_brute_force(model, images, batch_size, kind):
    data = {
        "labeled": Labeled(images),
        "bare": Bare(images),
        "dicts": Dicts(images),
        "loader": DataLoader(Labeled(images), batch_size=batch_size),
    }[kind]
    ex = mine(model, data, k=4, batch_size=batch_size)
    acts = layer_output(model, images)
    assert ex.units == list(range(8)) and ex.n_examples == N and ex.map_shape == (6, 6)
    assert ex.exact_quantiles
    for c in range(8):
        check_unit(ex, c, acts[:, c].flatten(1).mean(1), acts[:, c], k=4)


def test_neuron_tuples_and_callable_selectors_match_brute_force(model, images):
    def corner(a: torch.Tensor) -> torch.Tensor:
        return a[:, 2, :3, :3].flatten(1).amax(1) - a[:, 5].mean((1, 2))

    units = [(3, 1, 4), (0, slice(0, 2), 5), corner, fv.channel(6), 1]
    ex = mine(model, TensorDataset(images), k=5, batch_size=6, units=units)
    acts = layer_output(model, images)
    check_unit(ex, (3, 1, 4), acts[:, 3, 1, 4], None, k=5)
    check_unit(ex, (0, slice(0, 2), 5), acts[:, 0, 0:2, 5].sum(1), None, k=5)
    check_unit(ex, corner, corner(acts), None, k=5)
    check_unit(ex, fv.channel(6), acts[:, 6].flatten(1).mean(1), acts[:, 6], k=5)
    check_unit(ex, 6, acts[:, 6].flatten(1).mean(1), acts[:, 6], k=5)  # same unit, by int
    check_unit(ex, 1, acts[:, 1].flatten(1).mean(1), acts[:, 1], k=5)


def test_tensor_input_and_k_larger_than_dataset(model, images):
    ex = mine(model, images[:4], k=9, batch_size=3, units=[2])
    assert ex.k == 4 and len(ex.top(2)) == 4 and len(ex.quantile(2, 0.5)) == 4


def test_ties_go_to_the_lower_index(model):
    same = torch.full((11, 3, SIZE, SIZE), 0.3)  # identical images: every activation ties
    ex = mine(model, same, k=4, batch_size=3, units=[0, (1, 2, 2)])
    for unit in (0, (1, 2, 2)):
        assert ex.top(unit).indices.tolist() == [0, 1, 2, 3]
        assert ex.bottom(unit).indices.tolist() == [0, 1, 2, 3]
        assert ex.quantile(unit, 0.5).indices.tolist() == [0, 1, 2, 3]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5), st.lists(st.integers(1, 7), min_size=1, max_size=8), st.data())
def test_running_extremes_equal_a_full_sort(k, batch_sizes, data):
    """Integer values force many ties; any batching gives the full sort's answer."""
    n, units = sum(batch_sizes), 3
    values = torch.tensor(
        data.draw(st.lists(st.integers(-2, 2), min_size=n * units, max_size=n * units)), dtype=torch.float32
    ).view(n, units)
    top, bottom, start = Extremes(k, True), Extremes(k, False), 0
    for b in batch_sizes:
        idx = torch.arange(start, start + b)
        pos = idx[:, None].expand(b, units).int()
        top.update(values[idx], idx, pos)
        bottom.update(values[idx], idx, pos)
        start += b
    for u in range(units):
        v = values[:, u].tolist()
        assert top.index[:, u].tolist() == sorted(range(n), key=lambda i: (-v[i], i))[:k]
        assert bottom.index[:, u].tolist() == sorted(range(n), key=lambda i: (v[i], i))[:k]
        assert top.pos[:, u].tolist() == top.index[:, u].tolist()


# ------------------------------------------------------------------ one pass, bounded memory


def test_state_does_not_grow_with_the_dataset(model):
    gen = torch.Generator().manual_seed(2)
    small = torch.rand(30, 3, 8, 8, generator=gen)
    large = torch.rand(300, 3, 8, 8, generator=gen)
    a = mine(model, small, k=3, batch_size=16, sample_size=16)
    b = mine(model, large, k=3, batch_size=16, sample_size=16)
    assert a.state_bytes == b.state_bytes > 0
    assert not b.exact_quantiles and b.n_examples == 300


def test_sampled_quantiles_are_real_examples_near_the_true_quantile(model):
    x = torch.rand(200, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    ex = mine(model, x, k=3, batch_size=32, sample_size=64, units=[4])
    values = layer_output(model, x)[:, 4].flatten(1).mean(1)
    for j, level in enumerate((0.25, 0.5, 0.75)):
        got = ex.quantile(4, level)
        torch.testing.assert_close(got.activations, values[got.indices])  # exact values
        rank = float((values < ex.quantile_values[0, j]).float().mean())
        assert abs(rank - level) < 0.15  # a 64-example sample: a few percent of rank error


def test_sample_is_seeded(model):
    x = torch.rand(100, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    a, b = (mine(model, x, k=2, sample_size=10, seed=7, units=[0]) for _ in range(2))
    assert a.quantile(0, 0.5).indices.tolist() == b.quantile(0, 0.5).indices.tolist()


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory):
    """24 small JPEGs of random colour blocks: decoded, cropped and resized by loader workers."""
    from PIL import Image

    root = tmp_path_factory.mktemp("jpegs")
    gen = torch.Generator().manual_seed(6)
    for i in range(24):
        blocks = (torch.rand(4, 4, 3, generator=gen) * 255).to(torch.uint8).numpy()
        Image.fromarray(blocks).resize((20, 16), Image.NEAREST).save(root / f"{i:02d}.jpg", quality=90)
    return root


def test_loader_workers_find_the_same_examples(model, jpeg_folder):
    ds = fv.data.image_folder(jpeg_folder, size=SIZE, crops=2)  # 48 items, 6 batches of 8
    kw = dict(k=3, batch_size=8, sample_size=16)  # the sample holds a third: its order matters
    alone = mine(model, ds, num_workers=0, **kw)
    assert mine(model, ds, **kw).to_dict() == alone.to_dict()  # the default: one worker here
    assert mine(model, ds, num_workers=2, **kw).to_dict() == alone.to_dict()  # batches interleave over workers
    assert not alone.exact_quantiles and alone.n_examples == 48


def test_an_error_mid_pass_ends_the_loader_workers(model, jpeg_folder):
    ds = fv.data.image_folder(jpeg_folder, size=SIZE)  # 24 items: 6 batches of 4, one worker

    def flaky(x):  # the probe, one batch, then a failure while the worker reads ahead
        flaky.calls += 1
        if flaky.calls > 2:
            raise RuntimeError("model failed")
        return model(x)

    flaky.calls = 0
    with pytest.raises(RuntimeError, match="model failed") as failure:
        DatasetExamples(flaky, model.conv2).collect(ds, k=2, batch_size=4, progress=False)
    assert failure.value.__traceback__ is not None  # the pass's frames are still referenced...
    assert multiprocessing.active_children() == []  # ...but its worker is gone


# ------------------------------------------------------------------ truncation and model state


def test_forward_stops_after_the_layer(model, images):
    model.head_batches.clear()
    mine(model, Labeled(images), k=2, batch_size=5)
    assert model.head_batches == [1]  # only the 1-image probe that checks the layer; no batch


def test_model_state_is_restored(images):
    m = Tiny()
    m.train()
    m.conv1.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    grads = [p.requires_grad for p in m.parameters()]
    mine(m, images, k=2, batch_size=8)
    assert m.training and all(mod.training for mod in m.modules())
    assert [p.requires_grad for p in m.parameters()] == grads
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k  # BN statistics untouched: eval mode during the pass
    assert all(not mod._forward_hooks and not mod._forward_pre_hooks for mod in m.modules())


# ------------------------------------------------------------------ result object


def test_images_names_spectrum_and_json(model, images):
    ds = Labeled(images)
    ex = mine(model, ds, k=3, batch_size=8)
    top = ex.top(2).indices.tolist()
    assert torch.equal(ex.images(2), images[top])
    assert ex.names(2) == [f"img{i}" for i in top]
    assert ex.names(2, 0.5) == [f"img{i}" for i in ex.quantile(2, 0.5).indices.tolist()]
    spectrum = ex.spectrum(2)
    assert [name for name, _ in spectrum] == ["bottom", "q0.25", "q0.5", "q0.75", "top"]
    means = [float(e.activations.mean()) for _, e in spectrum]
    assert means == sorted(means)
    d = json.loads(json.dumps(ex.to_dict()))
    assert d["layer"] == "conv2" and len(d["units"]) == 8
    assert d["units"][2]["top"]["indices"] == top and d["units"][2]["top"]["names"][0] == f"img{top[0]}"
    assert len(d["units"][2]["top"]["positions"][0]) == 2
    with pytest.raises(KeyError, match="not mined"):
        ex.top(99)
    with pytest.raises(KeyError, match="quantile 0.9"):
        ex.quantile(2, 0.9)


def test_output_layer_mines_class_logits(model, images):
    ex = DatasetExamples(model, None).collect(images, k=3, units=[1], progress=False)
    with torch.no_grad():
        logits = model(images)[:, 1]
    assert ex.top(1).indices.tolist() == logits.argsort(descending=True)[:3].tolist()
    assert ex.top(1).positions is None


def test_sample_images_dataset_works(model):
    ds = fv.data.sample_images(size=24, crops=2)
    ex = mine(model, ds, k=2, batch_size=5, units=[0])
    assert ex.n_examples == len(ds) and ex.names(0)[0] in ds.names


# ------------------------------------------------------------------ errors that say the fix


class Items(Dataset):
    def __init__(self, items: list) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


@pytest.mark.parametrize(
    "items, error, text",
    [
        ([torch.zeros(3, 8, 8, dtype=torch.uint8)] * 2, TypeError, r"float\(\) / 255"),
        ([torch.zeros(8, 8, 3)] * 2, ValueError, "channels-last"),
        ([torch.zeros(1, 8, 8)] * 2, ValueError, "3-channel"),
        ([torch.zeros(8, 8)] * 2, ValueError, r"unsqueeze\(1\)"),
        ([torch.zeros(3, 8, 8), torch.zeros(3, 9, 9)], ValueError, "resize"),
        ([{"pixels": torch.zeros(3, 8, 8)}] * 2, KeyError, "'image'"),
        (["not an image"] * 2, TypeError, r"float tensor \(C, H, W\)"),
    ],
)
def test_bad_data_errors_name_the_fix(model, items, error, text):
    with pytest.raises(error, match=text):
        mine(model, Items(items), k=1)


def test_pil_images_suggest_to_tensor(model):
    pil = pytest.importorskip("PIL.Image")
    with pytest.raises(TypeError, match="ToTensor"):
        mine(model, Items([pil.new("RGB", (8, 8))] * 2), k=1)


def test_shuffled_loader_is_refused(model, images):
    with pytest.raises(ValueError, match="shuffle=False"):
        mine(model, DataLoader(TensorDataset(images), batch_size=4, shuffle=True))


def test_bad_arguments(model, images):
    with pytest.raises(ValueError, match="k must"):
        mine(model, images, k=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mine(model, images, quantiles=(1.5,))
    with pytest.raises(IndexError, match="8 channels"):
        mine(model, images, units=[8])
    with pytest.raises(ValueError, match="empty"):
        mine(model, images[:0])


# ------------------------------------------------------------------ additional_forward_args


class Scaled(nn.Module):
    """model(x, scale): a conv whose output is multiplied by a per-example ``scale`` (N,)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.post = nn.Identity()

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.post(self.conv(x) * scale.view(-1, 1, 1, 1))


class WithScale(Dataset):
    """Dict items with a per-example scale, as a 1-tuple or as one value."""

    def __init__(self, images: torch.Tensor, scales: torch.Tensor, as_tuple: bool) -> None:
        self.images, self.scales, self.as_tuple = images, scales, as_tuple

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        s = self.scales[i]
        return {"image": self.images[i], "additional_forward_args": (s,) if self.as_tuple else s}


@pytest.fixture(scope="module")
def scaled() -> Scaled:
    torch.manual_seed(5)
    return Scaled().eval()


def post_values(model: Scaled, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x, scale).flatten(2).mean(2)  # (N, 4): every channel's spatial mean


@pytest.mark.parametrize("as_tuple", [True, False])
@pytest.mark.parametrize("loader", [False, True])
def test_per_item_forward_args_reach_the_model(scaled, images, as_tuple, loader):
    scales = torch.linspace(-2.0, 3.0, N)  # negative scales flip the order: visible in the results
    data = WithScale(images, scales, as_tuple)
    data = DataLoader(data, batch_size=6) if loader else data
    ex = DatasetExamples(scaled, "post").collect(data, k=4, batch_size=6, progress=False)
    want = post_values(scaled, images, scales)
    for c in range(4):
        check_unit(ex, c, want[:, c], scaled(images, scales).detach()[:, c], k=4)


def test_collect_forward_args_are_broadcast_to_every_example(scaled, images):
    ex = DatasetExamples(scaled, "post").collect(
        images, k=3, batch_size=8, units=[1, (2, 0, 0)], additional_forward_args=torch.tensor([-1.5]), progress=False
    )
    out = scaled(images, torch.full((N,), -1.5)).detach()
    check_unit(ex, 1, out[:, 1].flatten(1).mean(1), out[:, 1], k=3)
    check_unit(ex, (2, 0, 0), out[:, 2, 0, 0], None, k=3)


def test_forward_args_in_two_places_are_refused(scaled, images):
    data = WithScale(images, torch.ones(N), as_tuple=True)
    with pytest.raises(ValueError, match="one place"):
        DatasetExamples(scaled, "post").collect(data, k=1, additional_forward_args=torch.ones(1), progress=False)
