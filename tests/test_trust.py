"""The trust measures can tell: a planted unit's own picture is off-natural, honest pictures and
natural top examples are not, noise is off-natural; invariants of the 2AFC score."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import captum_fv as fv
from captum_fv import trust

LAYER, UNIT, OTHER, SIZE = "_blocks.8", 12, 30, 64


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU()),
        )
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x).mean((2, 3)))


@pytest.fixture(scope="module")
def real():
    torch.manual_seed(0)
    model = fv.models.efficientnet_lite0()
    ds = fv.data.sample_images(size=SIZE, crops=8)
    ex = fv.DatasetExamples(model, LAYER).collect(ds, k=trust.MIN_EXAMPLES, units=[UNIT, OTHER], progress=False)
    nat = torch.stack([ds[i][0] for i in range(len(ds))])
    planted = trust.plant(model, LAYER, UNIT, nat)
    viz = fv.NeuronVisualization(model, LAYER).visualize([UNIT, OTHER], size=SIZE, steps=48, facets=1, progress=False)
    pviz = fv.NeuronVisualization(planted, LAYER).visualize(UNIT, size=SIZE, steps=48, facets=1, progress=False)
    return dict(model=model, ds=ds, ex=ex, planted=planted, viz=viz, pviz=pviz)


def pics(v) -> torch.Tensor:
    return torch.cat([v.positive, v.facets])


def test_planted_unit_keeps_its_natural_behaviour(real):
    x = torch.stack([real["ds"][i][0] for i in range(len(real["ds"]))])
    a = fv.activations(real["model"], LAYER, x)
    b = fv.activations(real["planted"], LAYER, x)
    assert torch.equal(a, b)  # the branch is exactly zero on every photo
    # ... but its optimized image holds the grating, above the gate
    amp = trust.grating_amplitude(real["pviz"].positive).mean()
    assert float(amp) > real["planted"].plant.gate


def test_planted_units_own_picture_is_off_natural(real):
    pex = fv.DatasetExamples(real["planted"], LAYER).collect(
        real["ds"], k=trust.MIN_EXAMPLES, units=[UNIT], progress=False
    )
    assert torch.equal(pex.top(UNIT).indices, real["ex"].top(UNIT).indices)  # same dataset examples
    r = trust.score(real["planted"], LAYER, pics(real["pviz"]), UNIT, pex)
    assert r.verdict == trust.OFF_NATURAL, r.reason
    assert r.ratio > trust.RATIO_MAX
    # the planted unit's natural top examples are not judged off-natural
    held = fv.data.sample_images(size=SIZE, crops=2, seed=5)
    top = fv.DatasetExamples(real["planted"], LAYER).collect(held, k=3, units=[UNIT], progress=False).images(UNIT)
    assert trust.score(real["planted"], LAYER, top, UNIT, pex).verdict != trust.OFF_NATURAL


@pytest.mark.parametrize("which", [0, 1])
def test_honest_pictures_of_other_units_are_not_off_natural(real, which):
    u = (UNIT, OTHER)[which]
    r = trust.score(real["model"], LAYER, pics(real["viz"][which]), u, real["ex"])
    assert r.verdict != trust.OFF_NATURAL, r.reason
    assert r.mis_fv.score > 0.6


def test_noise_replacing_a_picture_is_off_natural(real):
    noise = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    r = trust.score(real["model"], LAYER, noise, UNIT, real["ex"])
    assert r.verdict == trust.OFF_NATURAL, r.reason
    assert abs(r.mis_fv.score - 0.5) < 0.1


def test_record_is_json_with_the_path_curve(real):
    r = trust.score(real["model"], LAYER, pics(real["viz"][0]), UNIT, real["ex"])
    d = json.loads(json.dumps(r.to_dict()))
    curve = d["path_similarity"]
    assert curve["layers"][-1] == LAYER and len(curve["layers"]) == len(curve["top"]) == len(curve["random"])
    assert d["verdict"] in (trust.CONSISTENT, trust.CHECK, trust.OFF_NATURAL) and d["reason"]
    assert d["n_top"] >= 29 and d["n_bottom"] >= 29
    assert len(d["mis_fv"]["probabilities"]) == trust.TRIALS
    assert "DreamSim" in d["similarity"]


def test_reinitialized_weights_are_not_consistent():
    """Re-initialized weights (a tiny random network): pictures of its units are never judged
    consistent; the photos themselves hardly predict the unit, so the verdict is "check" or
    "off-natural"."""
    torch.manual_seed(1)
    model = Tiny()
    ds = fv.data.sample_images(size=32, crops=8)
    v = fv.NeuronVisualization(model, "blocks.2").visualize(3, size=32, steps=16, facets=1, progress=False)
    r = trust.score(model, "blocks.2", pics(v), 3, ds)
    assert r.verdict in (trust.CHECK, trust.OFF_NATURAL), r.reason
    assert r.path.layers == ["blocks.0", "blocks.1", "blocks.2"]


def test_class_unit_reports_top1_top5_of_each_model():
    torch.manual_seed(0)
    model, other = Tiny(), Tiny()
    ds = fv.data.sample_images(size=32, crops=8)
    x = torch.rand(2, 3, 32, 32)
    best = int(model(x).argmax(1)[0])
    r = trust.score(model, None, x, best, ds, transfer_models=[other], transfer_names=["other"])
    c = r.classes
    assert c.models == ["model", "other"] and c.class_index == best
    assert c.top1[0] >= 0.5 and all(0 <= a <= b <= 1 for a, b in zip(c.top1, c.top5))


def test_trials_keep_references_off_the_queries_source_images():
    groups = [i // 8 for i in range(40)]
    for t in trust.plan_trials(40, 40, groups, groups, seed=3):
        assert t.leak_free
        banned = {groups[t.query_top], groups[t.query_bottom]}
        assert not banned & {groups[i] for i in t.refs_top + t.refs_bottom}
        assert len(t.refs_top) == trust.REFERENCES


feats = st.integers(min_value=0, max_value=2**16).map(
    lambda s: torch.nn.functional.normalize(torch.randn(12, 6, generator=torch.Generator().manual_seed(s)), dim=1)
)


@settings(max_examples=30, deadline=None)
@given(feats, st.floats(min_value=0.01, max_value=1.0))
def test_identical_explanations_on_both_sides_give_chance(f, scale):
    assert trust.trial_probability(f[0], f[1], f[2:5], f[2:5], scale) == pytest.approx(0.5)
    trials = trust.plan_trials(6, 6, trials=5, references=3)
    m = trust.mis(f[:6], f[6:], trials, explanations=f[:3], negative_explanations=f[:3], scale=scale)
    assert m.score == pytest.approx(0.5)


@settings(max_examples=30, deadline=None)
@given(feats, st.permutations(list(range(5))), st.integers(0, 100))
def test_score_in_unit_interval_and_blind_to_reference_order(f, perm, seed):
    trials = trust.plan_trials(6, 6, trials=8, references=3, seed=seed)
    e = f[:5]
    a = trust.mis(f[:6], f[6:], trials, explanations=e, negative_explanations=f[7:9])
    b = trust.mis(f[:6], f[6:], trials, explanations=e[perm], negative_explanations=f[7:9].flip(0))
    assert 0.0 <= a.score <= 1.0
    assert a.score == pytest.approx(b.score, abs=1e-6)
    assert 0.0 <= trust.mis(f[:6], f[6:], trials).score <= 1.0


def test_spearman_matches_scipy():
    from scipy.stats import spearmanr

    a, b = torch.randn(3, 20), torch.randn(4, 20)
    a[0, :5] = 0  # ties
    rho = trust.spearman(a, b)
    for i in range(3):
        for j in range(4):
            assert float(rho[i, j]) == pytest.approx(spearmanr(a[i], b[j]).statistic, abs=1e-5)
