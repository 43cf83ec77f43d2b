"""NeuronReport: contents, report.json as the single source of numbers, atomic units, --resume."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import layer_dir, make_tiny, units_of

import captum_fv as fv
from captum_fv.report import NeuronReport, unit_name, writer

KW = dict(size=32, steps=6, facets=2, k=2, progress=False, attribution_kwargs={"n_steps": 8})


class NamedImages(torch.utils.data.Dataset):
    """Random images whose names hold HTML, to check escaping."""

    def __init__(self, n: int = 12):
        g = torch.Generator().manual_seed(0)
        self.x = torch.rand(n, 3, 32, 32, generator=g)
        self.names = [f'<b>img{i}</b>&"q"' for i in range(n)]

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], 0


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    rep = NeuronReport(make_tiny(), "conv2", NamedImages(), **KW)
    index = rep.run([0, 3], out)
    return rep, out, index


def test_report_files_and_json(built):
    rep, out, index = built
    assert index == out / "index.html" and index.exists()
    report = json.loads((out / "report.json").read_text())
    assert [u["name"] for u in report["units"]] == ["channel_0000", "channel_0003"]
    for u in report["units"]:
        folder = units_of(out) / u["name"]
        assert len(u["activation"]["facets"]) == 2 and u["activation"]["negative"] is not None
        assert len(u["top"]) == 2 and len(u["bottom"]) == 2 and u["spectrum"]
        assert u["top"][0]["activation"] >= u["top"][1]["activation"] >= u["bottom"][0]["activation"]
        # every file the page refers to exists and is listed with its hash
        page = (folder / "index.html").read_text()
        for src in re.findall(r'src="([^"]+)"', page):
            assert (folder / src).exists(), src
            # the unit's own files are listed; the layer's unit order (units.js) lives above it
            assert src in u["files"] or src == "../../units.js", src
        # the numbers on the page are report.json's numbers
        shown = [u["activation"]["positive"], u["dataset_max"], u["dataset_min"]]
        shown += [e["activation"] for e in u["top"] + u["bottom"]]
        for x in shown:
            assert writer.format_number(float(x)) in page
        # positive activation really is what the model gives on the saved image (up to PNG rounding)
        import numpy as np
        from PIL import Image

        img = torch.from_numpy(np.array(Image.open(folder / "positive.png"))).permute(2, 0, 1).float() / 255
        act = fv.activations(rep.forward_func, "conv2", img[None])[0, int(u["name"][-4:])].mean()
        assert act.item() == pytest.approx(u["activation"]["positive"], rel=0.05, abs=0.05)


def test_index_links_every_unit_and_escapes_html(built):
    _, out, index = built
    html, grid = index.read_text(), (layer_dir(out) / "index.html").read_text()
    for name in ("channel_0000", "channel_0003"):
        assert f'href="layers/conv2/units/{name}/index.html"' in html  # one layer: its grid on the model index
        assert f'href="units/{name}/index.html"' in grid
    page = (units_of(out) / "channel_0000" / "index.html").read_text()
    assert "<b>img" not in page and "&lt;b&gt;img" in page


def test_figure_for_notebooks(built):
    rep, _, _ = built
    import matplotlib

    matplotlib.use("Agg")
    fig = rep.figure(0)
    assert len(fig.axes) >= 4
    with pytest.raises(KeyError, match="not built"):
        rep.figure(5)


def test_interrupted_run_leaves_no_half_unit_and_resume_finishes(tmp_path):
    rep = NeuronReport(make_tiny(), "conv2", NamedImages(), **KW)
    calls = []
    real = rep.layers["conv2"]._write_unit

    def write_then_die(out_dir, name):
        real(out_dir, name)
        calls.append(name)
        if len(calls) == 1:
            raise KeyboardInterrupt

    rep.layers["conv2"]._write_unit = write_then_die
    with pytest.raises(KeyboardInterrupt):
        rep.run([1, 2], tmp_path)
    units = sorted(p.name for p in units_of(tmp_path).iterdir())
    assert units == ["channel_0001"]  # no temporary or half-written folder left
    assert writer.load_unit(layer_dir(tmp_path), "channel_0001", rep.fingerprint) is not None

    rep2 = NeuronReport(make_tiny(), "conv2", NamedImages(), **KW)
    written = []
    real2 = rep2.layers["conv2"]._write_unit
    rep2.layers["conv2"]._write_unit = lambda out_dir, name: written.append(name) or real2(out_dir, name)
    rep2.run([1, 2], tmp_path, resume=True)
    assert written == ["channel_0002"]  # unit 1 was complete: kept as it was
    resumed = json.loads((tmp_path / "report.json").read_text())
    assert [u["name"] for u in resumed["units"]] == ["channel_0001", "channel_0002"]
    assert resumed["missing"] == []

    # the same final result as a run that was never interrupted
    fresh = tmp_path / "fresh"
    NeuronReport(make_tiny(), "conv2", NamedImages(), **KW).run([1, 2], fresh)
    expected = json.loads((fresh / "report.json").read_text())
    assert resumed["units"] == expected["units"]


def test_resume_redoes_corrupted_unit_and_changed_settings(tmp_path):
    rep = NeuronReport(make_tiny(), "conv2", NamedImages(), **KW)
    rep.run([1], tmp_path)
    png = units_of(tmp_path) / "channel_0001" / "positive.png"
    png.write_bytes(png.read_bytes()[:-10])  # truncated file
    assert writer.load_unit(layer_dir(tmp_path), "channel_0001", rep.fingerprint) is None
    seen = []
    rep2 = NeuronReport(make_tiny(), "conv2", NamedImages(), **KW)
    orig = rep2.layers["conv2"].viz.visualize
    rep2.layers["conv2"].viz.visualize = lambda sels, **kw: seen.append(list(sels)) or orig(sels, **kw)
    rep2.run([1], tmp_path, resume=True)
    assert seen == [[1]]
    assert writer.load_unit(layer_dir(tmp_path), "channel_0001", rep2.fingerprint) is not None
    # different settings: the unit on disk is not reused
    rep3 = NeuronReport(make_tiny(), "conv2", NamedImages(), **dict(KW, steps=7))
    seen3 = []
    orig3 = rep3.layers["conv2"].viz.visualize
    rep3.layers["conv2"].viz.visualize = lambda sels, **kw: seen3.append(list(sels)) or orig3(sels, **kw)
    rep3.run([1], tmp_path, resume=True)
    assert seen3 == [[1]]


def test_unit_names_are_safe():
    assert unit_name(3) == "channel_0003"
    assert unit_name(fv.channel(12)) == "channel_0012"
    assert unit_name((1, 2, 3)) == "neuron_1_2_3"

    def evil(a):
        return a[:, 0].mean((1, 2))

    evil.__name__ = "../../etc/passwd"
    name = unit_name(evil)
    assert "/" not in name and writer.safe_child(Path("/tmp/x"), name).parent == Path("/tmp/x").resolve()
    with pytest.raises(ValueError):
        writer.safe_child(Path("/tmp/x"), "..")


def test_attribution_kwargs_are_settings_that_resume_checks():
    def settings(**kw):
        return NeuronReport(make_tiny(), "conv2", NamedImages(), attribution_kwargs=kw).settings

    zeros, ones = torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 8, 8)
    assert settings(baselines=zeros) == settings(baselines=zeros.clone())  # same contents
    assert settings(baselines=zeros) != settings(baselines=ones)
    assert settings(n_steps=8) != settings(n_steps=16) != settings()
    assert json.loads(json.dumps(settings(baselines=zeros.bfloat16(), n_steps=8))) == settings(
        baselines=zeros.bfloat16(), n_steps=8
    )


# --------------------------------------------------------------------------- the trust block


class Grouped(torch.utils.data.Dataset):
    """64 random images, four crops (of a sort) per source image, as ``.groups`` says."""

    def __init__(self, n: int = 64):
        g = torch.Generator().manual_seed(1)
        self.x = torch.rand(n, 3, 32, 32, generator=g)
        self.groups = [i // 4 for i in range(n)]

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i]


@pytest.fixture(scope="module")
def trusted(tmp_path_factory):
    out = tmp_path_factory.mktemp("trusted")
    rep = NeuronReport(make_tiny(), "relu2", Grouped(), **KW)
    rep.run([1, 4], out)
    return rep, out


def test_every_unit_has_a_trust_block_in_both_jsons(trusted):
    rep, out = trusted
    report = json.loads((out / "report.json").read_text())
    for u in report["units"]:
        t = u["trust"]
        assert t == json.loads((units_of(out) / u["name"] / "unit.json").read_text())["trust"]
        assert t["verdict"] in fv.trust.VERDICTS and t["verdict"] != fv.trust.NOT_ENOUGH and t["reason"]
        assert t["n_top"] == t["n_bottom"] == fv.trust.MIN_EXAMPLES  # mined once, 29 a side
        assert len(t["ratios"]) == 1 + KW["facets"]  # the positive optimum and each facet
        best = u["dataset_max"]
        assert t["ratios"][0] == pytest.approx(u["activation"]["positive"] / best)  # activations reused
        assert t["sources_known"] and t["mis_natural"]["leak_free"] == 1.0
        assert t["path_similarity"]["layers"][-1] == "relu2"
        assert len(u["top"]) == KW["k"]  # the pages still show k examples
    # the index's data: one summary per unit, the verdicts counted
    rows = report["trust"]["units"]
    assert [r["name"] for r in rows] == ["channel_0001", "channel_0004"]
    assert sum(report["trust"]["verdicts"].values()) == 2
    assert rows[0]["path"] == report["units"][0]["trust"]["path_similarity"]["summary"]
    assert report["fingerprint"]["trust"] and report["settings"]["trust"]["k"] == fv.trust.MIN_EXAMPLES


def test_the_pages_show_the_verdict_the_numbers_and_the_plot(trusted):
    rep, out = trusted
    report = json.loads((out / "report.json").read_text())
    index = (layer_dir(out) / "index.html").read_text()
    for u in report["units"]:
        t = u["trust"]
        page = (units_of(out) / u["name"] / "index.html").read_text()
        assert f">{t['verdict']}<" in page and "DreamSim" in page
        for x in (t["ratio"], t["path_similarity"]["summary"], t["mis_fv"]["score"], t["mis_natural"]["score"]):
            if x is not None:
                assert writer.format_number(float(x)) in page
        assert 'src="trust_path.svg"' in page and "trust_path.svg" in u["files"]
        svg = (units_of(out) / u["name"] / "trust_path.svg").read_text()
        n = len(t["path_similarity"]["layers"])
        assert svg.startswith("<svg") and svg.count("<polyline") == 2 and svg.count("<circle") == 2 * n
        assert f'data-unit="{u["name"]}" data-verdict="{t["verdict"]}"' in index
    assert "How far to trust" in index


def test_trust_changes_nothing_else_and_resume_names_it(trusted, tmp_path):
    rep, out = trusted
    plain = NeuronReport(make_tiny(), "relu2", Grouped(), trust=False, **KW)
    plain.build([1, 4])
    skip = ("trust", "files", "files_layout", "fingerprint", "settings")
    for name, built in plain.units.items():
        a = {k: v for k, v in rep.units[name].record.items() if k not in skip}
        assert a == {k: v for k, v in built.record.items() if k not in skip}
        assert "trust" not in built.record and "trust" not in plain.settings
    other = NeuronReport(make_tiny(), "relu2", Grouped(), transfer_models=[make_tiny(seed=4)], **KW)
    from captum_fv.report import resume

    assert resume.plan(layer_dir(out), ["channel_0001"], other.fingerprint).redo == {"channel_0001": "trust changed"}


def test_a_recipe_held_to_natural_statistics_gets_a_fourier_probe_in_its_trust_block(trusted, tmp_path):
    from captum_fv.addressing import OUTPUT
    from captum_fv.report.budget import TRUST_PROBE_STEPS
    from captum_fv.report.trustblock import probe_steps

    # hidden units of maco and aligned: what the probe was calibrated on; class units keep none
    assert [probe_steps(r, "relu2") for r in ("fourier", "maco", "aligned")] == [
        0,
        TRUST_PROBE_STEPS,
        TRUST_PROBE_STEPS,
    ]
    assert probe_steps("maco", OUTPUT) == 0
    rep, _ = trusted
    assert "probe_steps" not in rep.settings["trust"]  # fourier: its own pictures are the probe
    maco = NeuronReport(make_tiny(), "relu2", Grouped(), recipe="maco", **KW)
    maco.build([1, 4])
    assert maco.settings["trust"]["probe_steps"] == TRUST_PROBE_STEPS
    probe = fv.NeuronVisualization(make_tiny(), "relu2").visualize(
        [1, 4], size=KW["size"], steps=TRUST_PROBE_STEPS, seed=0, recipe="fourier", max_batch=2, progress=False
    )
    for name, v in zip(["channel_0001", "channel_0004"], probe):  # the probe: one seeded render of the chunk
        t, best = maco.units[name].record["trust"], maco.units[name].record["dataset_max"]
        assert t["probe_ratio"] == pytest.approx(float(v.activation["positive"][0]) / best, rel=1e-5)


def test_a_dataset_too_small_says_so_without_nan(built):
    _, out, _ = built
    for u in json.loads((out / "report.json").read_text())["units"]:
        t = u["trust"]
        assert t["verdict"] == fv.trust.NOT_ENOUGH and "58" in t["reason"] and "nan" not in t["reason"]
        assert t["path_similarity"] is None and t["ratio"] is None
        page = (units_of(out) / u["name"] / "index.html").read_text()
        assert "not enough examples" in page and "trust_path.svg" not in page
