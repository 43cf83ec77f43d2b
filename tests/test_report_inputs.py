"""Reports of models with more than one input or structured outputs: Captum's
``additional_forward_args`` reach optimization, mining and attribution (per example from dict
items), and a dict output is read by its logits or by ``output=``."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import captum_fv as fv
from captum_fv.report import NeuronReport

KW = dict(size=16, steps=3, facets=1, k=2, progress=False, attribution_kwargs={"n_steps": 4, "tolerance": None})


class Scaled(nn.Module):
    """``model(x, scale)``: the input is scaled before the first conv (scale (N, 1, 1, 1) or (1, ...))."""

    def __init__(self, dict_out: bool = False) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.Tanh()
        self.fc = nn.Linear(4, 5)
        self.dict_out = dict_out
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x: torch.Tensor, scale: torch.Tensor):
        logits = self.fc(self.act(self.conv(x * scale)).mean((2, 3)))
        return {"logits": logits, "aux": -logits} if self.dict_out else logits


class Items(torch.utils.data.Dataset):
    """Dict items, each with its own ``scale`` as Captum's additional_forward_args."""

    def __init__(self, n: int = 6) -> None:
        g = torch.Generator().manual_seed(1)
        self.x = torch.rand(n, 3, 16, 16, generator=g)
        self.scale = torch.linspace(0.2, 2.0, n).view(n, 1, 1, 1)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return {"image": self.x[i], "additional_forward_args": (self.scale[i],)}


@torch.no_grad()
def _conv_means(model, x, scale):
    return torch.tanh(model.conv(x * scale)).mean((2, 3))


def test_per_example_arguments_reach_mining_and_attribution(tmp_path):
    model, data = Scaled(), Items()
    # the report's arguments serve the optimization; each item's own serve mining and attribution
    rep = NeuronReport(model, "act", data, additional_forward_args=(torch.ones(1, 1, 1, 1),), **KW)
    rep.run([1], tmp_path / "r")
    unit = json.loads((tmp_path / "r" / "report.json").read_text())["units"][0]
    want = _conv_means(model, data.x, data.scale)[:, 1]
    order = torch.argsort(want, descending=True)[:2].tolist()
    assert [e["index"] for e in unit["top"]] == order
    assert [e["activation"] for e in unit["top"]] == pytest.approx(want[order].tolist(), rel=1e-5)
    # the convergence delta is only small when IG integrated model(x, scale_i): check completeness
    assert all(abs(e["delta"]) < 0.2 * abs(e["activation"]) + 1e-3 for e in unit["top"])


def test_report_wide_arguments_serve_every_input(tmp_path):
    model = Scaled()
    x = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    data = torch.utils.data.TensorDataset(x)
    half = torch.full((1, 1, 1, 1), 0.5)
    rep = NeuronReport(model, "act", data, additional_forward_args=(half,), **KW)
    rep.run([0], tmp_path / "r")
    unit = json.loads((tmp_path / "r" / "report.json").read_text())["units"][0]
    assert unit["dataset_max"] == pytest.approx(float(_conv_means(model, x, half)[:, 0].max()), rel=1e-5)
    v = rep.units["channel_0000"].visualization
    assert unit["activation"]["positive"] == pytest.approx(float(_conv_means(model, v.positive, half)[0, 0]), rel=1e-4)
    other = NeuronReport(model, "act", data, additional_forward_args=(half * 2,), **KW)
    assert other.fingerprint["settings"] != rep.fingerprint["settings"]  # resume tells them apart


def test_dict_outputs_read_by_logits_or_by_key():
    model = Scaled(dict_out=True)
    x = torch.rand(2, 3, 16, 16)
    one = torch.ones(1, 1, 1, 1)
    v = fv.render(model, fv.objectives.class_logit(3), size=16, steps=2, progress=False, additional_forward_args=(one,))
    assert torch.isfinite(v.values).all()
    logits = fv.activations(model, None, x, additional_forward_args=(one.expand(2, -1, -1, -1),))
    assert torch.allclose(logits, model(x, one)["logits"])
    aux = fv.activations(model, None, x, additional_forward_args=(one.expand(2, -1, -1, -1),), output="aux")
    assert torch.allclose(aux, -logits)


def test_the_trust_block_runs_the_model_with_its_arguments(tmp_path):
    """Per-item arguments serve the photos, the report's the pictures: the trust block judges
    (no "not enough examples") and its ratios are the report's own."""
    model = Scaled()
    rep = NeuronReport(model, "act", Items(60), additional_forward_args=(torch.ones(1, 1, 1, 1),), **KW)
    rep.run([2], tmp_path / "items")
    wide = NeuronReport(
        model,
        "act",
        torch.utils.data.TensorDataset(Items(60).x),
        additional_forward_args=(torch.ones(1, 1, 1, 1),),
        **KW,
    )
    wide.run([2], tmp_path / "wide")
    for out in ("items", "wide"):
        unit = json.loads((tmp_path / out / "report.json").read_text())["units"][0]
        t = unit["trust"]
        assert t["verdict"] in fv.trust.VERDICTS and t["verdict"] != fv.trust.NOT_ENOUGH, t["reason"]
        assert t["path_similarity"]["layers"] == ["conv", "act"]
        assert t["ratios"][0] == pytest.approx(unit["activation"]["positive"] / unit["dataset_max"])
