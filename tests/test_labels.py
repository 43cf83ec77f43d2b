"""Automatic unit labels (captum_fv.labels): output classes by zeroing a unit, soft-WPMI class and
concept labels, the records they return, and their errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image
from torch import nn

import captum_fv as fv
from captum_fv import labels
from tests.conftest import assert_model_unchanged, assert_rng_unchanged, make_tiny, model_state, rng_state

# -- output classes ---------------------------------------------------------------------------------


class Planted(nn.Module):
    """conv -> ReLU (layer "act") -> spatial mean -> linear head where only channel 2 feeds the
    logits: +3 into class 5, -2 into class 7."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1)
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.head = nn.Linear(4, 12)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.bias.fill_(0.5)
            self.head.weight[5, 2], self.head.weight[7, 2] = 3.0, -2.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.conv(x)).mean((2, 3)))


class Residual(nn.Module):
    """A block whose inner layer ("inner") is not a cut of the network: the skip reads the input."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(2)
            self.stem = nn.Conv2d(3, 6, 3, padding=1)
            self.inner = nn.Conv2d(6, 6, 3, padding=1)
            self.head = nn.Linear(6, 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(x))
        return self.head((h + torch.relu(self.inner(h))).mean((2, 3)))


def _brute_force(model: nn.Module, layer: nn.Module, x: torch.Tensor, zero) -> torch.Tensor:
    """Mean logit drop when ``zero`` (an index into the layer output) is set to 0: a full forward
    with a hook, written independently of the library."""

    def hook(mod, inp, out):
        out = out.clone()
        out[zero] = 0
        return out

    with torch.no_grad():
        clean = model(x)
        handle = layer.register_forward_hook(hook)
        try:
            ablated = model(x)
        finally:
            handle.remove()
    return (clean - ablated).mean(0)


def test_planted_channel_drives_its_class_first_with_the_right_sign():
    model, x = Planted().eval(), torch.rand(6, 3, 8, 8)
    lab = labels.output_classes(model, "act", x, 2, top=12)[0]
    assert lab.source == "output" and lab.label == "class 5" and lab.score > 0
    assert lab.top[-1][0] == "class 7" and lab.top[-1][1] < 0  # the class it suppresses comes last
    with torch.no_grad():
        mean_c2 = torch.relu(model.conv(x))[:, 2].mean((1, 2)).mean()
    assert lab.score == pytest.approx(3 * float(mean_c2), rel=1e-5)
    assert dict(lab.top)["class 7"] == pytest.approx(-2 * float(mean_c2), rel=1e-5)
    # a channel that feeds no logit drives no class
    quiet = labels.output_classes(model, "act", x, 0)[0]
    assert quiet.label == "" and quiet.score == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("layer_name, cut", [("inner", False), ("stem", True)])
def test_zeroing_matches_a_full_forward_whether_or_not_the_layer_is_a_cut(layer_name, cut):
    model, x = Residual().eval(), torch.rand(5, 3, 6, 6)
    layer = getattr(model, layer_name)
    units = [1, (4, 2, 3), (slice(None), 0, 0)]
    got = labels.output_classes(model, layer_name, x, units, top=9, batch_size=4)
    for unit, lab in zip(units, got):
        index = (slice(None), unit) if isinstance(unit, int) else (slice(None),) + unit
        want = _brute_force(model, layer, x, index)
        mine = torch.tensor([dict(lab.top)[f"class {i}"] for i in range(9)])
        assert torch.allclose(mine, want.float(), atol=1e-5), (layer_name, unit)


def test_one_batch_per_unit_equals_separate_calls_and_leaves_no_trace():
    model, x = make_tiny(), torch.rand(7, 3, 16, 16)
    before, rng = model_state(model), rng_state()
    both = labels.output_classes(model, "relu2", [x[:3], x[3:]], [4, 9], top=10, batch_size=4)
    assert [b.n_examples for b in both] == [3, 4]
    for lab, part, unit in zip(both, (x[:3], x[3:]), (4, 9)):
        alone = labels.output_classes(model, "relu2", part, unit, top=10)[0]
        assert lab.label == alone.label
        assert [n for n, _ in lab.top] == [n for n, _ in alone.top]
        assert torch.allclose(torch.tensor([v for _, v in lab.top]), torch.tensor([v for _, v in alone.top]), atol=1e-5)
    assert_model_unchanged(model, before)
    assert_rng_unchanged(rng)


def test_default_model_labels_channels_with_imagenet_names(real_model):
    photos = fv.data.sample_images(size=64)
    images = torch.stack([photos[i][0] for i in range(2)])
    labs = labels.output_classes(real_model, "_blocks.8", images, [3, 40], top=3)
    names = set(fv.models.imagenet_labels())
    for lab in labs:
        assert lab.label in names and lab.score > 0
        assert all(n in names for n, _ in lab.top)
        assert [v for _, v in lab.top] == sorted((v for _, v in lab.top), reverse=True)


def test_output_classes_errors_are_one_clear_line():
    model, x = Planted().eval(), torch.rand(2, 3, 8, 8)
    cases = [
        (lambda: labels.output_classes(model, "act", x, lambda a: a.mean((1, 2, 3))), TypeError, "callable"),
        (lambda: labels.output_classes(model, "act", [x, x], [1, 2, 3]), ValueError, "one batch per unit"),
        (lambda: labels.output_classes(model, "act", x, 9), IndexError, "out of range"),
        (lambda: labels.output_classes(model, "act", x, 1, classes=["a", "b"]), ValueError, "one name per logit"),
        (lambda: labels.output_classes(model, "act", torch.zeros(0, 3, 8, 8), 1), ValueError, "non-empty"),
        (lambda: labels.output_classes(model, "act", x, 1, top=0), ValueError, "top"),
        (lambda: labels.output_classes(model, None, x, 1), ValueError, "hidden layer"),
        (lambda: labels.output_classes(lambda t: model(t)[:, 0], model.act, x, 1), ValueError, "logits"),
    ]
    for call, kind, words in cases:
        with pytest.raises(kind) as err:
            call()
        msg = str(err.value)
        assert words in msg and "\n" not in msg, msg


# -- soft-WPMI --------------------------------------------------------------------------------------

CLASSES = [f"c{i}" for i in range(12)]


def _synthetic(n: int = 240, seed: int = 0):
    """Class labels (12 classes) and 3 units: one fires on class 3, one on class 7, one is noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 12
    noise = torch.randn(n, 3, generator=g)
    acts = noise.clone()
    acts[:, 0] += 6.0 * (y == 3)
    acts[:, 1] += 6.0 * (y == 7)
    return acts, torch.nn.functional.one_hot(y, 12).float(), y


def _reference(acts, concepts, unit, concept, k, prior_rows):
    """The soft-WPMI formula written out in plain Python (chance-level prior from ``prior_rows``)."""
    probs = torch.softmax(10 * concepts.double(), 1)
    order = sorted(range(len(acts)), key=lambda i: (-float(acts[i, unit]), i))[:k]
    p_in = [0.998 - r / k * (0.998 - 0.97) for r in range(k)]
    cond = sum(math.log(1 - p_in[r] * (1 - float(probs[i, concept])) + 1e-7) for r, i in enumerate(order))
    m = float(probs[prior_rows, concept].mean())
    prior = sum(math.log(1 - p * (1 - m) + 1e-7) for p in p_in)
    return cond - prior


def test_soft_wpmi_labels_the_class_a_unit_fires_on_and_matches_the_formula():
    acts, onehot, _ = _synthetic()
    labs = labels.dissect(acts, onehot, CLASSES, top_k=10)
    assert [lab.label for lab in labs[:2]] == ["c3", "c7"]
    assert labs[0].support == pytest.approx(1.0, abs=1e-3) and labs[0].score > 0
    assert labs[2].score < 0 < labs[1].score  # the noise unit: below chance, whatever its best class
    scores = labels.soft_wpmi(acts, onehot, top_k=10)
    assert scores.shape == (3, 12) and int(scores[0].argmax()) == 3
    for unit, concept in [(0, 3), (1, 5), (2, 0)]:
        want = _reference(acts, onehot, unit, concept, 10, slice(None))
        assert float(scores[unit, concept]) == pytest.approx(want, rel=1e-4, abs=1e-3)


def test_soft_wpmi_is_invariant_to_image_order_and_scores_noise_low():
    acts, onehot, _ = _synthetic()
    perm = torch.randperm(len(acts), generator=torch.Generator().manual_seed(5))
    a = labels.dissect(acts, onehot, CLASSES, top_k=10)
    b = labels.dissect(acts[perm], onehot[perm], CLASSES, top_k=10)
    assert [x.label for x in a] == [x.label for x in b]
    assert [x.score for x in a] == pytest.approx([x.score for x in b])
    # Uncorrelated units, many seeds: none scores above chance; every selective unit does.
    for seed in range(5):
        acts, onehot, _ = _synthetic(seed=seed)
        s = labels.soft_wpmi(acts, onehot, top_k=10)
        assert float(s[2].max()) < 0 < float(s[0, 3])


def test_the_papers_unit_prior_ranks_units_against_each_other():
    acts, onehot, _ = _synthetic()
    one = labels.soft_wpmi(acts[:, :1], onehot, top_k=10, prior="units")
    assert torch.allclose(one, torch.zeros_like(one), atol=1e-6)  # a unit alone: every score 0
    both = labels.dissect(acts, onehot, CLASSES, top_k=10, prior="units")
    assert [lab.label for lab in both[:2]] == ["c3", "c7"]


def test_concept_hook_takes_a_layer_output_and_selectors():
    g = torch.Generator().manual_seed(3)
    out = torch.randn(50, 6, 4, 4, generator=g)
    sims = torch.rand(50, 4, generator=g) * 0.3
    sims[:, 2] += out[:, 5].mean((1, 2)).clamp(min=0)  # concept "stripes" follows channel 5
    names = ["sky", "fur", "stripes", "text"]
    labs = labels.dissect(out, sims, names, [5, (1, 0, 0)], top_k=8)
    assert labs[0].label == "stripes" and labs[0].source == "concepts"
    by_matrix = labels.dissect(out[:, 5].mean((1, 2))[:, None], sims, names, top_k=8)[0]
    assert by_matrix.score == pytest.approx(labs[0].score) and by_matrix.label == "stripes"
    probs = labels.dissect(out, torch.softmax(10 * sims, 1), names, 5, top_k=8, scale=None)[0]
    assert probs.score == pytest.approx(labs[0].score, rel=1e-5)


def test_a_unit_whose_top_examples_tie_gets_no_label():
    acts, onehot, _ = _synthetic()
    acts[:, 1] = 0.0  # dead: its "top examples" would just be the first images
    lab = labels.dissect(acts, onehot, CLASSES, top_k=10)[1]
    assert lab.label == "" and lab.score == 0.0 and lab.top == []


def test_concept_errors_are_one_clear_line():
    acts, onehot, _ = _synthetic(n=24)
    cases = [
        (lambda: labels.dissect(acts, onehot[:20], CLASSES), "one row per image"),
        (lambda: labels.dissect(acts, onehot, CLASSES[:5]), "one name per column"),
        (lambda: labels.dissect(acts[:, 0], onehot, CLASSES), "2-D"),
        (lambda: labels.dissect(acts, onehot * float("nan"), CLASSES), "NaN"),
        (lambda: labels.dissect(acts, onehot, CLASSES, prior="layer"), "prior"),
        (lambda: labels.dissect(acts, onehot * 3, CLASSES, scale=None), "probabilities"),
        (lambda: labels.dissect(acts, onehot, CLASSES, top_k=0), "top_k"),
    ]
    for call, words in cases:
        with pytest.raises(ValueError) as err:
            call()
        msg = str(err.value)
        assert words in msg and "\n" not in msg, msg


# -- class labels from mined examples ---------------------------------------------------------------


def _colour_folder(root, n_classes: int):
    """Class folders of flat-colour images; class 4 is red, class 6 green, the rest grey-blue."""
    for c in range(n_classes):
        colour = {4: (230, 20, 20), 6: (20, 230, 20)}.get(c, (60 + 8 * c, 60 + 8 * c, 120))
        for j in range(2):
            path = root / f"k{c:02d}" / f"{j}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (12, 12), tuple(int(v * (1 - 0.1 * j)) for v in colour)).save(path)
    return fv.data.image_folder(root, size=8)


class ColourNet(nn.Module):
    """A 1x1 conv whose channel 0 is red minus the rest, channel 1 green minus the rest."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1, bias=False)
        with torch.no_grad():
            self.conv.weight[:, :, 0, 0] = torch.tensor([[1.0, -0.5, -0.5], [-0.5, 1.0, -0.5]])
        self.head = nn.Linear(2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean((2, 3)))


def test_class_labels_from_mined_examples(tmp_path):
    ds = _colour_folder(tmp_path / "photos", 11)
    model = ColourNet().eval()
    ex = fv.DatasetExamples(model, "conv").collect(ds, k=2, units=[0, 1], progress=False)
    labs = labels.class_labels(ex)
    assert [(lab.label, lab.source) for lab in labs] == [("k04", "classes"), ("k06", "classes")]
    assert all(lab.support == 1.0 and lab.score > 0 and lab.n_examples == 2 for lab in labs)
    assert labels.class_labels(ex, 1)[0].label == "k06"
    blob = json.loads(json.dumps(labels.to_json(labs)))
    assert blob["channel_0000"][0]["label"] == "k04" and blob["channel_0001"][0]["top"][0][0] == "k06"


def test_class_labels_need_ten_labelled_classes(tmp_path):
    ds = _colour_folder(tmp_path / "few", 9)
    model = ColourNet().eval()
    ex = fv.DatasetExamples(model, "conv").collect(ds, k=2, units=[0], progress=False)
    with pytest.raises(ValueError, match="at least 10 classes, and the dataset has 9") as err:
        labels.class_labels(ex)
    assert "\n" not in str(err.value)
    unlabelled = fv.DatasetExamples(model, "conv").collect(torch.rand(6, 3, 8, 8), k=2, units=[0], progress=False)
    with pytest.raises(ValueError, match="no class labels"):
        labels.class_labels(unlabelled)
    with pytest.raises(TypeError, match="DatasetExamples"):
        labels.class_labels(torch.zeros(3))


def test_class_units_of_an_imagenet_output_are_titled_by_name(tmp_path):
    kw = dict(size=32, steps=2, facets=0, k=2, progress=False, attribution="gradient", trust=False, labels=False)
    data = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    fv.NeuronReport(make_tiny(classes=1000), None, data, recipe="fourier", **kw).run([3], tmp_path / "in1k")
    titles = [u["title"] for u in json.loads((tmp_path / "in1k" / "report.json").read_text())["units"]]
    assert titles == [f"class 3: {fv.models.imagenet_labels()[3]}"]
    fv.NeuronReport(make_tiny(classes=10), None, data, recipe="fourier", **kw).run([3], tmp_path / "ten")
    titles = [u["title"] for u in json.loads((tmp_path / "ten" / "report.json").read_text())["units"]]
    assert titles == ["channel 3"]  # no names to know for a 10-way output
    assert labels.known_class_names(10) is None and len(labels.known_class_names(1000)) == 1000


def test_output_names_leave_the_model_as_found_follow_its_dtype_and_never_fail_a_report():
    data = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    net = make_tiny(classes=1000).train()
    before = model_state(net)
    assert labels.output_names(net, data) == fv.models.imagenet_labels()
    assert_model_unchanged(net, before)  # BatchNorm statistics untouched, still in training mode
    assert labels.output_names(make_tiny(classes=1000).to(torch.bfloat16), data) is not None
    assert labels.output_names(make_tiny(classes=1000), torch.rand(2, 5, 32, 32)) is None  # fails: no names
