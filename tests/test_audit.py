"""Whole-model audits: many layers in one report, one folder layout, the model index, unit lists
per layer, labels on the pages, the index kept current during a run, pages that stay small."""

from __future__ import annotations

import json
import re

import pytest
from conftest import make_tiny

import captum_fv as fv
from captum_fv import cli, cliargs
from captum_fv.report import NeuronReport, layer_folder, unit_folder, writer

OPTS = dict(size=32, steps=4, facets=0, k=2, progress=False, trust=False, attribution_kwargs={"n_steps": 4})


@pytest.fixture(scope="module")
def data():
    return fv.data.sample_images(size=32, crops=2)


@pytest.fixture(scope="module")
def audit(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("audit")
    rep = NeuronReport(make_tiny(), ["conv1:0", "conv2:1-2"], data, **OPTS)
    index = rep.run(None, out)
    return rep, out, index


def test_two_layers_one_layout(audit):
    rep, out, index = audit
    assert index == out / "index.html"
    report = json.loads((out / "report.json").read_text())
    assert [(e["layer"], e["units"], e["page"]) for e in report["layers"]] == [
        ("conv1", 1, "layers/conv1/index.html"),
        ("conv2", 2, "layers/conv2/index.html"),
    ]
    assert [(u["layer"], u["name"]) for u in report["units"]] == [
        ("conv1", "channel_0000"),
        ("conv2", "channel_0001"),
        ("conv2", "channel_0002"),
    ]
    for u in report["units"]:
        folder = unit_folder(out, u["layer"], u["name"])
        assert json.loads((folder / "unit.json").read_text())["name"] == u["name"]
        assert writer.load_unit(layer_folder(out, u["layer"]), u["name"]) is not None
    assert set(rep.units) == {"conv1/channel_0000", "conv2/channel_0001", "conv2/channel_0002"}
    assert rep.timings["optimization"] > 0 and rep.timings["labels"] > 0


def test_every_link_of_the_pages_resolves(audit):
    _, out, _ = audit
    pages = [
        out / "index.html",
        *sorted(out.glob("layers/*/index.html")),
        *sorted(out.glob("layers/*/units/*/index.html")),
    ]
    assert len(pages) == 1 + 2 + 3
    for page in pages:
        html = page.read_text()
        for target in re.findall(r'(?:href|src)="([^"#?]+)"', html):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.relative_to(out)} links to missing {target}"
    model = (out / "index.html").read_text()
    assert 'href="layers/conv1/index.html"' in model and 'href="layers/conv2/index.html"' in model
    unit = (unit_folder(out, "conv2", "channel_0001") / "index.html").read_text()
    assert 'src="../../units.js"' in unit and 'href="../../../../index.html"' in unit
    # the neighbours come from the layer's unit order, so a page kept by --resume stays current
    order = (layer_folder(out, "conv2") / "units.js").read_text()
    assert order == 'window.captumFvUnits = [["channel_0001", "channel 1"], ["channel_0002", "channel 2"]];\n'


def test_labels_are_in_the_records_and_on_the_pages(audit):
    _, out, _ = audit
    report = json.loads((out / "report.json").read_text())
    for u in report["units"]:
        (lab,) = [x for x in u["labels"] if x["source"] == "output"]
        assert lab["file_name"] == u["name"] and lab["n_examples"] == 2 and len(lab["top"]) == 5
        assert report["labels"][u["layer"]][u["name"]] == u["labels"]
        if u["label"]:
            page = (unit_folder(out, u["layer"], u["name"]) / "index.html").read_text()
            grid = (layer_folder(out, u["layer"]) / "index.html").read_text()
            assert u["label"] in page and f'data-label="{u["label"]}"' in grid


def test_resume_keeps_every_layer(audit, data):
    _, out, _ = audit
    again = NeuronReport(make_tiny(), ["conv1:0", "conv2:1-2"], data, **OPTS)
    again.run(None, out, resume=True)
    assert again.resumed.redo == {} and len(again.resumed.kept) == 3
    assert again.resumed.summary() == "resume: kept all 3 units"


def test_patterns_and_all_units(tmp_path, data):
    model = make_tiny()
    rep = NeuronReport(model, ["conv*"], data, **dict(OPTS, labels=False))
    assert list(rep.layers) == ["conv1", "conv2", "conv3"]
    every = rep._units_of("conv1", "all")
    assert every == list(range(fv.activations(model, "conv1", data[0][0][None]).shape[1]))
    with pytest.raises(ValueError, match="no units for layer 'conv1'"):
        rep.build(None)
    with pytest.raises(ValueError, match="matches no module"):
        NeuronReport(model, ["nothing.*"], data, **OPTS)


def test_the_index_is_rewritten_as_units_finish(tmp_path, data, monkeypatch):
    from captum_fv.report import core

    monkeypatch.setattr(core, "PROGRESS_EVERY_S", 0.0)
    rep = NeuronReport(make_tiny(), "conv2", data, **dict(OPTS, labels=False))
    seen = []
    part = rep.layers["conv2"]
    real = part._write_unit

    def write(out_dir, name):
        real(out_dir, name)
        index = tmp_path / "index.html"
        seen.append(index.read_text() if index.exists() else "")

    part._write_unit = write
    rep.run([0, 1, 2], tmp_path)
    # after the first unit, no index yet; after the second, one saying one unit is built
    assert seen[0] == "" and "In progress" in seen[1] and "1 of 3 units built" in seen[1]
    layer_page = (layer_folder(tmp_path, "conv2") / "index.html").read_text()
    assert "In progress" not in (tmp_path / "index.html").read_text() and "In progress" not in layer_page


def test_a_layer_of_thousands_of_units_stays_small(tmp_path):
    """The grid of 3,000 units with labels and trust verdicts is under 2 MB and loads lazily;
    the trust table is left to report.json there (a small layer keeps it: other tests)."""
    from captum_fv.report import layerindex

    trust = {"verdict": "consistent", "ratio": 1.5, "path_similarity": {"summary": 0.31}, "mis_fv": {"score": 0.8}}
    records = [
        {
            "name": f"channel_{i:04d}",
            "title": f"channel {i}",
            "files_layout": {"positive": "positive.png"},
            "ratio": 1.0 + i / 1000,
            "label": "great white shark",
            "labels": [],
            "trust": trust,
        }
        for i in range(3000)
    ]
    head = {
        "version": fv.__version__,
        "model": "m",
        "layer": "_blocks.8",
        "settings": {"size": 128, "steps": 256, "facets": 4, "k": 6, "attribution": "integrated_gradients"},
        "dataset": {"size": 100, "name": "d"},
    }
    page = layerindex.write(tmp_path, head, records, [])
    html = page.read_text()
    assert page.stat().st_size < 2_000_000, page.stat().st_size
    assert html.count('loading="lazy"') == 3000 and html.count('data-verdict="consistent"') == 3000
    assert 'id="trust"' not in html and "numbers of all 3000 units" in html
    small = layerindex.write(tmp_path / "small", head, records[:5], []).read_text()
    assert 'id="trust"' in small and small.count('<tr data-unit="') == 5


def test_cli_many_layers(tmp_path, capsys):
    out = tmp_path / "r"
    argv = ["report", "--model", "conftest:make_tiny", "--data", "sample", "--size", "32", "--steps", "2"]
    argv += ["--facets", "0", "--k", "2", "--n-steps", "4", "--no-trust", "--quiet", "--out", str(out)]
    assert cli.main(argv + ["--layer", "conv?", "--units", "0-1", "--layer", "conv2:3"]) == 0
    report = json.loads((out / "report.json").read_text())
    # a pattern's own unit list wins for its layer; the others get --units
    assert [(e["layer"], e["units"]) for e in report["layers"]] == [("conv1", 2), ("conv2", 1), ("conv3", 2)]
    assert cli.main(argv + ["--layer", "conv9*"]) == 2
    assert "matches no module" in capsys.readouterr().err
    assert cli.main(argv + ["--layer", "conv1", "--units", "0-999"]) == 2
    assert "has" in capsys.readouterr().err


def test_an_atlas_per_layer_linked_from_the_pages(tmp_path, data):
    small = dict(grid=3, samples=32, size=16, steps=2, measure_cost=False)
    rep = NeuronReport(make_tiny(), "conv2:0-11", data, atlas=True, atlas_kwargs=small, **dict(OPTS, labels=False))
    rep.run(None, tmp_path)
    layer = layer_folder(tmp_path, "conv2")
    page = (layer / "atlas" / "atlas.html").read_text()
    assert 'href="atlas/atlas.html"' in (layer / "index.html").read_text()
    assert 'href="../index.html"' in page and 'href="../../../index.html"' in page  # back to the report
    entry = json.loads((tmp_path / "report.json").read_text())["layers"][0]
    assert entry["atlas"]["page"] == "layers/conv2/atlas/atlas.html" and entry["atlas"]["cells"] >= 1
    assert 'href="layers/conv2/atlas/atlas.html"' in (tmp_path / "index.html").read_text()
    # a strongest channel the report built links to its unit page (relative to the atlas folder)
    links = re.findall(r"\.\./units/(channel_\d+)/index\.html", page)
    assert links and all(int(n[-4:]) < 12 and (layer / "units" / n).is_dir() for n in links)
    assert rep.timings["atlas"] > 0


def test_cli_atlas_takes_its_grid(tmp_path, monkeypatch):
    """``--atlas N`` builds an N x N atlas; ``--atlas`` alone the default grid."""
    seen = []
    real = fv.atlas.build
    monkeypatch.setattr(fv.atlas, "build", lambda *a, **kw: seen.append(kw["grid"]) or real(*a, **dict(kw, steps=2)))
    argv = ["report", "--model", "conftest:make_tiny", "--data", "sample", "--size", "32", "--steps", "2"]
    argv += [
        "--facets",
        "0",
        "--k",
        "2",
        "--n-steps",
        "4",
        "--no-trust",
        "--no-labels",
        "--quiet",
        "--layer",
        "conv2:0",
    ]
    assert cli.main(argv + ["--atlas", "2", "--out", str(tmp_path / "a")]) == 0
    entry = json.loads((tmp_path / "a" / "report.json").read_text())["layers"][0]
    assert seen == [2] and 1 <= entry["atlas"]["cells"] <= 4
    assert cli.main(argv + ["--atlas", "--out", str(tmp_path / "b")]) == 0
    assert seen == [2, cliargs.ATLAS_GRID]
