"""FeatureEvolution and `captum-fv evolve`: the same units across checkpoints.

A tiny CNN is trained for a few steps on scikit-learn's digits (8x8, upscaled to 16 px) once per
module; its checkpoints are what the tests compare.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import layer_dir
from torch import nn

import captum_fv as fv
from captum_fv import cli
from captum_fv.evolution import measures

SIZE, STEPS, K = 16, 24, 3
UNITS = [0, 1, 2, 3]


def tiny_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


def digits() -> tuple:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16
    return nn.functional.interpolate(x, size=SIZE, mode="bilinear", align_corners=False), torch.tensor(d.target)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """Checkpoints of one training run: a re-initialization, two late steps (80, 90), final (100)."""
    root = tmp_path_factory.mktemp("ckpt")
    x, y = digits()
    torch.manual_seed(0)
    model = tiny_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    paths = {}
    torch.manual_seed(1)
    torch.save(tiny_cnn().state_dict(), root / "reinit.pt")
    paths["reinit"] = root / "reinit.pt"
    g = torch.Generator().manual_seed(0)
    for step in range(1, 101):
        idx = torch.randint(0, len(x), (64,), generator=g)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step in (80, 90, 100):
            paths[f"step{step}"] = root / f"step{step}.pt"
            torch.save(model.state_dict(), paths[f"step{step}"])
    return {"paths": paths, "data": x[:96], "model": model}


def evolution(model, paths, data, **kw) -> fv.FeatureEvolution:
    return fv.FeatureEvolution(model, "3", paths, data, size=SIZE, steps=STEPS, k=K, progress=False, **kw)


def test_measures_are_pure_functions_of_the_vectors():
    v = torch.tensor([[0.0, 1.0], [1.0, 1.0], [1.0, 0.1], [1.0, 0.0]])
    m = measures.measure(v, [[1, 2, 3], [1, 2, 4], [5, 6, 7], [5, 6, 8]])
    assert m.similarity[-1] == pytest.approx(1.0) and m.similarity[0] == pytest.approx(0.0)
    assert m.overlap == [None, pytest.approx(2 / 3), 0.0, pytest.approx(2 / 3)]
    assert m.settled == 2  # 0.995 and 1.0 from index 2 on; 0.707 before
    assert m.change == pytest.approx((1 + (1 - 2**-0.5) + (1 - m.similarity[2])) / 3)
    assert measures.settled_at([0.95, 0.5, 0.92, 1.0]) == 2


def test_reinitialized_weights_are_far_below_two_late_checkpoints(trained):
    """Measured on channels 0-3 of the tiny CNN's second conv: re-initialized vs final -0.08,
    -0.14, 1.00, 0.16 (mean 0.24); step 90 vs final 0.993-1.000 (mean 0.997). Tested with a wide
    margin (late mean > 0.9, re-initialized mean at least 0.25 below it)."""
    p = trained["paths"]
    ev = evolution(tiny_cnn(), [p["reinit"], p["step90"], p["step100"]], trained["data"]).build(UNITS)
    reinit = [u.record["similarity"][0] for u in ev.units.values()]
    late = [u.record["similarity"][1] for u in ev.units.values()]
    print("reinit", [round(s, 3) for s in reinit], "late", [round(s, 3) for s in late])
    assert sum(late) / len(late) > 0.9
    assert sum(reinit) / len(reinit) < sum(late) / len(late) - 0.25
    for u in ev.units.values():  # settled: from step 90 on, unless even the re-initialized optimum is close
        sim = u.record["similarity"]
        assert u.record["settled"] == ("reinit" if sim[0] >= 0.9 else "step90" if sim[1] >= 0.9 else "step100")


def test_the_same_checkpoint_twice_gives_identical_strips(trained, tmp_path):
    p = trained["paths"]["step100"]
    ev = evolution(tiny_cnn(), [p, p], trained["data"], labels=["a", "b"], facets=1).build(UNITS[:2])
    for u in ev.units.values():
        a, b = u.stages
        assert a.stats == b.stats
        assert a.arrays.keys() == b.arrays.keys()
        assert all((a.arrays[k] == b.arrays[k]).all() for k in a.arrays)
        assert u.record["similarity"] == pytest.approx([1.0, 1.0]) and u.record["overlap"][1] == 1.0
        assert u.record["change"] == pytest.approx(0.0, abs=1e-9) and u.record["settled"] == "a"


def test_a_recipe_renders_every_checkpoint_and_is_a_setting(trained):
    p = trained["paths"]
    plain = evolution(tiny_cnn(), [p["reinit"], p["step100"]], trained["data"])
    assert "recipe" not in plain.settings  # runs made before recipes still resume
    ev = evolution(tiny_cnn(), [p["reinit"], p["step100"]], trained["data"], recipe="aligned")
    assert ev.settings["recipe"] == "aligned"
    ev.build(UNITS[:1])
    base = plain.build(UNITS[:1])
    # the dataset prior changes the optima: the same seeds, other images
    assert not torch.equal(ev.units["channel_0000"].optima(), base.units["channel_0000"].optima())
    with pytest.raises(ValueError, match="unknown recipe 'lucid'"):
        evolution(tiny_cnn(), [p["step100"]], trained["data"], recipe="lucid")


def test_the_model_gets_its_own_weights_back(trained, tmp_path):
    model = tiny_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    evolution(model, [trained["paths"]["reinit"], trained["paths"]["step100"]], trained["data"]).build([0])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    wrong = tmp_path / "other.pt"
    torch.save(nn.Linear(2, 2).state_dict(), wrong)
    with pytest.raises(ValueError, match="does not fit the model"):
        evolution(model, [trained["paths"]["step100"], wrong], trained["data"]).build([0])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_live_state_dict_of_the_model_is_a_checkpoint_like_a_file(trained):
    # model.state_dict() shares storage with the parameters; loading the first checkpoint must not rewrite it.
    p = trained["paths"]
    model = tiny_cnn()
    model.load_state_dict(torch.load(p["step100"], weights_only=True))
    live = evolution(model, [p["reinit"], model.state_dict()], trained["data"], labels=["r", "f"]).build([0, 1])
    files = evolution(tiny_cnn(), [p["reinit"], p["step100"]], trained["data"], labels=["r", "f"]).build([0, 1])
    for name, unit in files.units.items():
        assert live.units[name].record["similarity"] == pytest.approx(unit.record["similarity"])
        assert unit.record["similarity"][0] < 0.99  # the two checkpoints do differ


def _pages(out: Path) -> dict:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != ".captum-fv.json"
    }


def test_resume_after_an_interrupt_redoes_only_what_is_missing(trained, tmp_path, monkeypatch):
    p = trained["paths"]
    ckpts = [p["reinit"], p["step80"], p["step100"]]
    out = tmp_path / "evo"
    evolution(tiny_cnn(), ckpts, trained["data"]).run(UNITS, out)
    full = _pages(out)
    # an interrupt: unit 2 optimized under every checkpoint but its folder not written; unit 3
    # missing its step80 stage too
    layer = layer_dir(out)  # the report's layout: layers/<layer>/units, .../checkpoints/<label>/units
    shutil.rmtree(layer / "units" / "channel_0002")
    shutil.rmtree(layer / "units" / "channel_0003")
    shutil.rmtree(layer / "checkpoints" / "step80" / "units" / "channel_0003")
    ev = evolution(tiny_cnn(), ckpts, trained["data"])
    optimized = []
    real = ev.viz.visualize
    monkeypatch.setattr(ev.viz, "visualize", lambda sel, **kw: optimized.append(list(sel)) or real(sel, **kw))
    ev.run(UNITS, out, resume=True)
    assert ev.resumed.kept == ["channel_0000", "channel_0001"]
    assert ev.resumed.redo == {"channel_0002": "missing", "channel_0003": "missing"}
    assert optimized == [UNITS]  # one chunk under one checkpoint (step80): nothing else redone
    assert _pages(out) == full  # byte for byte what the uninterrupted run wrote
    changed = evolution(tiny_cnn(), ckpts, trained["data"], seed=1)
    changed.run(UNITS[:1], out, resume=True)
    assert changed.resumed.redo == {"channel_0000": "settings changed"}


def test_cli_evolve_writes_the_same_pages_as_the_api(trained, tmp_path, monkeypatch, capsys):
    p = trained["paths"]
    (tmp_path / "evo_models.py").write_text(
        textwrap.dedent("""
        from tests.test_evolution import tiny_cnn
        def model():
            return tiny_cnn().eval()
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    folder = tmp_path / "digits"
    folder.mkdir()
    from PIL import Image

    for i, img in enumerate(trained["data"][:12]):
        Image.fromarray((img[0] * 255).round().byte().numpy()).save(folder / f"d{i:02d}.png")
    code = cli.main(
        [
            "evolve",
            "--model",
            "evo_models:model",
            "--checkpoint",
            str(p["reinit"]),
            "--checkpoint",
            str(p["step100"]),
            "--layer",
            "3",
            "--units",
            "0-1",
            "--data",
            str(folder),
            "--size",
            str(SIZE),
            "--steps",
            str(STEPS),
            "--k",
            str(K),
            "--out",
            str(tmp_path / "cli"),
            "--quiet",
            "--device",
            "cpu",
        ]
    )
    assert code == 0, capsys.readouterr().err
    dataset = fv.data.image_folder(folder, size=SIZE, channels=1)
    api = fv.FeatureEvolution(
        tiny_cnn().eval(),
        "3",
        [p["reinit"], p["step100"]],
        dataset,
        size=SIZE,
        steps=STEPS,
        k=K,
        model_name="evo_models:model",
        progress=False,
    )
    api.run([0, 1], tmp_path / "api")
    cli_pages, api_pages = _pages(tmp_path / "cli"), _pages(tmp_path / "api")
    assert cli_pages.keys() == api_pages.keys() and "index.html" in cli_pages
    assert cli_pages == api_pages
    report = json.loads(cli_pages["report.json"])
    assert [u["change"] for u in report["units"]] == sorted((u["change"] for u in report["units"]), reverse=True)
    assert cli.main(["evolve", "--layer", "3", "--checkpoint", str(tmp_path / "nope.pt")]) == 2
