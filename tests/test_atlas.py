"""Activation atlases (captum_fv.atlas) on a tiny random conv net and small images: sampling,
layout, grid means, batched cell renders, the page, the t-SNE fallback and a clean model/RNG."""

from __future__ import annotations

import importlib.machinery
import json
import os
import re
import shutil
import sys
import types

import numpy as np
import pytest
import torch
from conftest import make_tiny

import captum_fv as fv
from captum_fv.atlas import _layout, _render

LAYER = "conv3"  # 32 channels, an 8 x 8 map for 32 px images


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # The same result on one thread; on a shared machine two OpenMP threads spinning against other
    # processes measured 10x slower than one.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.stack([img for img, _ in fv.data.sample_images(size=32, crops=3)])  # 24 crops


@pytest.fixture(scope="module")
def model():
    return make_tiny()


@pytest.fixture(scope="module")
def atlas(model, images):
    return fv.atlas.build(
        model, LAYER, images, grid=4, samples=60, per_image=3, size=32, steps=24, min_count=1, progress=False
    )


def test_sampling_count_positions_and_determinism(model, images):
    s = fv.atlas.sample_activations(model, LAYER, images, samples=40, per_image=3, seed=1, batch_size=8)
    assert len(s) == 40 and s.n_images == len(images) and s.map_shape == (8, 8)
    assert s.vectors.shape == (40, 32) and s.patches.shape == (40, 3, 48, 48) and s.patches.dtype == torch.uint8
    # the border ring is never drawn, and no position is drawn twice in one image
    assert int(s.positions.min()) >= 1 and int(s.positions.max()) <= 6
    pairs = {(int(i), int(y), int(x)) for i, (y, x) in zip(s.image_index, s.positions)}
    assert len(pairs) == 40
    # each vector is the layer's activation at its image and position
    acts = fv.activations(model, LAYER, images)
    expect = acts[s.image_index, :, s.positions[:, 0], s.positions[:, 1]]
    torch.testing.assert_close(s.vectors, expect)
    # deterministic under the seed, whatever the batching; another seed draws other samples
    again = fv.atlas.sample_activations(model, LAYER, images, samples=40, per_image=3, seed=1, batch_size=5)
    assert torch.equal(again.vectors, s.vectors) and torch.equal(again.image_index, s.image_index)
    other = fv.atlas.sample_activations(model, LAYER, images, samples=40, per_image=3, seed=2)
    assert not torch.equal(other.image_index, s.image_index)
    # fewer drawn positions than the bound: all of them are kept
    assert len(fv.atlas.sample_activations(model, LAYER, images, samples=500, per_image=2)) == 2 * len(images)


def test_patch_is_the_image_around_the_position(model):
    # one white square on black: the patch around the square's position is bright, elsewhere dark
    x = torch.zeros(1, 3, 32, 32)
    x[:, :, 8:12, 20:24] = 1.0
    s = fv.atlas.sample_activations(model, LAYER, x, samples=64, per_image=64, patch=0.125, border=0)
    centre = {(int(y), int(x_)): p for (y, x_), p in zip(s.positions, s.patches)}
    assert centre[(2, 5)].float().mean() > 200 and centre[(6, 1)].float().mean() < 1
    assert 0 < fv.atlas.sample_activations(model, LAYER, x, samples=4).patch_fraction <= 1  # measured field


def test_bad_inputs_say_what_to_do(model, images):
    with pytest.raises(ValueError, match="samples must be a positive int"):
        fv.atlas.sample_activations(model, LAYER, images, samples=0)
    with pytest.raises(ValueError, match="convolutional layer"):
        fv.atlas.sample_activations(model, "fc", images, samples=4)
    with pytest.raises(ValueError, match="at most 20 x 20"):
        fv.atlas.grid_cells(fv.atlas.embed(torch.randn(8, 4), "tsne"), torch.randn(8, 4), grid=21)
    with pytest.raises(ValueError, match="no cell"):
        fv.atlas.build(model, LAYER, images[:2], grid=2, samples=4, per_image=2, min_count=5, progress=False)


def test_layout_is_2d_finite_and_seeded(model, images):
    s = fv.atlas.sample_activations(model, LAYER, images, samples=60, per_image=3)
    lay = fv.atlas.embed(s.vectors, "auto", seed=0)
    assert lay.points.shape == (60, 2) and bool(torch.isfinite(lay.points).all())
    assert float(lay.points.min()) == 0.0 and float(lay.points.max()) == 1.0
    assert torch.equal(fv.atlas.embed(s.vectors, "auto", seed=0).points, lay.points)
    # similar activations land near each other: a point's nearest neighbour in the layout is
    # much closer in activation space than a random other point
    d_layout = torch.cdist(lay.points, lay.points) + torch.eye(60) * 9
    unit = s.vectors / s.vectors.norm(dim=1, keepdim=True)
    d_act = torch.cdist(unit, unit)
    near = d_act[torch.arange(60), d_layout.argmin(1)].mean()
    assert near < 0.6 * d_act[~torch.eye(60, dtype=torch.bool)].mean()


def test_tsne_is_the_fallback_when_umap_is_missing(monkeypatch):
    v = torch.randn(30, 6)
    monkeypatch.setattr(_layout, "umap_available", lambda: False)
    assert fv.atlas.embed(v, "auto").method == "tsne"
    with pytest.raises(ValueError, match=r"pip install 'captum-fv\[atlas\]'"):
        fv.atlas.embed(v, "umap")
    # with umap importable, "auto" asks it for the layout, seeded
    calls = []

    class FakeUMAP:
        def __init__(self, **kw):
            calls.append(kw)

        def fit_transform(self, x):
            return x[:, :2] * 3.0

    fake = types.ModuleType("umap")
    fake.UMAP = FakeUMAP
    fake.__spec__ = importlib.machinery.ModuleSpec("umap", None)
    monkeypatch.setitem(sys.modules, "umap", fake)
    monkeypatch.setattr(_layout, "umap_available", lambda: True)
    lay = fv.atlas.embed(v, "auto", seed=5)
    assert lay.method == "umap" and calls and calls[0]["random_state"] == 5 and calls[0]["n_components"] == 2


def test_grid_cells_are_means_of_their_members(atlas):
    cells, s = atlas.cells, atlas.samples
    assert 1 <= len(cells) <= 16 and len({(c.row, c.col) for c in cells}) == len(cells)
    assert sorted(torch.cat([c.members for c in cells]).tolist()) == list(range(len(s)))  # min_count=1
    rows, cols = _layout.cell_of(atlas.layout.points, 4)
    for c in cells:
        torch.testing.assert_close(c.vector, s.vectors[c.members].mean(0))
        assert bool((rows[c.members] == c.row).all()) and bool((cols[c.members] == c.col).all())
        assert c.units[0][1] == float(c.vector.max()) and len(c.units) == 5
        d = (s.vectors[c.members] - c.vector).norm(dim=1)
        assert bool((d[1:] >= d[:-1] - 1e-6).all())  # nearest the mean first
    dropped = fv.atlas.grid_cells(atlas.layout, s.vectors, grid=4, min_count=4)
    assert all(c.count >= 4 for c in dropped) and len(dropped) < len(cells)


def test_cells_share_batched_optimizations(model, images, monkeypatch):
    batches = []
    real = _render.render

    def counting(*args, **kw):
        batches.append(kw["batch"])
        return real(*args, **kw)

    monkeypatch.setattr(_render, "render", counting)
    kw = dict(grid=4, samples=60, per_image=3, size=24, steps=2, min_count=1, progress=False, measure_cost=False)
    a = fv.atlas.build(model, LAYER, images, **kw)
    assert batches == [len(a.cells)] and len(a.cells) > 4  # every cell in one optimization
    batches.clear()
    b = fv.atlas.build(model, LAYER, images, max_batch=4, **kw)
    assert batches == [4] * (len(b.cells) // 4) + ([len(b.cells) % 4] if len(b.cells) % 4 else [])
    assert b.cost.batches == batches


def test_rendered_cells_raise_their_projection(model, atlas):
    assert atlas.images.shape == (len(atlas.cells), 3, 32, 32)
    for c in atlas.cells:
        assert c.projection > c.projection_start, c.name
    # the stored projection is the image's mean activation along the cell's unit direction
    acts = fv.activations(model, LAYER, atlas.images).flatten(2).mean(2)
    vec = torch.stack([c.vector for c in atlas.cells])
    expect = (acts * vec / vec.norm(dim=1, keepdim=True)).sum(1)
    torch.testing.assert_close(torch.tensor([c.projection for c in atlas.cells]), expect, rtol=1e-4, atol=1e-5)
    cost = atlas.cost
    assert cost.cells == len(atlas.cells) and cost.render_s > 0 and cost.bare_s > 0
    assert cost.per_cell_s == pytest.approx(cost.render_s / cost.cells) and cost.ratio > 0


def test_build_is_seeded_and_leaves_model_and_rngs_alone(images):
    model = make_tiny()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    kw = dict(grid=3, samples=30, per_image=2, size=24, steps=3, min_count=1, progress=False, measure_cost=False)
    a = fv.atlas.build(model, LAYER, images, **kw)
    b = fv.atlas.build(model, LAYER, images, **kw)
    assert torch.equal(a.images, b.images) and torch.equal(a.layout.points, b.layout.points)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert all(np.array_equal(x, y) for x, y in zip(np.random.get_state(), np_state))
    assert not any(m._forward_hooks for m in model.modules())


def test_page_has_one_hoverable_entry_per_cell(atlas, tmp_path):
    page = atlas.write(tmp_path / "atlas", unit_link=lambda u: f"../units/{u}/index.html")
    html = page.read_text()
    assert page.name == "atlas.html" and page.stat().st_size < 2_000_000
    data = json.loads(re.search(r'<script id="atlas-data" type="application/json">(.*?)</script>', html, re.S)[1])
    assert len(data) == len(atlas.cells) == html.count('<img class="cell"') == html.count('loading="lazy"')
    assert "http://" not in html and "https://" not in html  # offline: nothing external
    for rec, cell in zip(data, atlas.cells):
        assert (rec["row"], rec["col"], rec["count"]) == (cell.row, cell.col, cell.count)
        assert (page.parent / rec["image"]).is_file() and (page.parent / rec["patches"]).is_file()
        assert [u["unit"] for u in rec["units"]] == [u for u, _ in cell.units]
        assert rec["units"][0]["href"] == f"../units/{cell.units[0][0]}/index.html"
        assert 1 <= len(rec["examples"]) == min(8, cell.count)
        assert rec["examples"][0]["index"] == int(atlas.samples.image_index[cell.members[0]])
    summary = json.loads((page.parent / "atlas.json").read_text())
    assert summary["cost"]["cells"] == len(atlas.cells) and summary["layout"] == atlas.layout.method
    from PIL import Image

    with Image.open(page.parent / "atlas.png") as im:
        assert im.size == (4 * 32, 4 * 32)
    sheet = atlas.sheet(tile=32)
    c = atlas.cells[0]
    tile = sheet[:, c.row * 32 : (c.row + 1) * 32, c.col * 32 : (c.col + 1) * 32]
    torch.testing.assert_close(tile, atlas.images[0], atol=2e-2, rtol=0)


def test_page_of_a_full_20_by_20_grid_stays_under_2_mb(tmp_path):
    # 400 cells, 8 examples each with long names: the page itself stays far below 2 MB
    n, grid = 1200, 20
    k = torch.arange(400).repeat_interleave(3)  # three samples in each cell's centre
    points = (torch.stack([k % grid, k // grid], 1).float() + 0.5) / grid
    samples = fv.atlas.AtlasSamples(
        "_blocks.8", torch.randn(n, 112), torch.arange(n), torch.zeros(n, 2, dtype=torch.long),
        torch.zeros(n, 3, 48, 48, dtype=torch.uint8), (14, 14), 0.5, n,
    )  # fmt: skip
    layout = fv.atlas.AtlasLayout(points, "tsne")
    cells = fv.atlas.grid_cells(layout, samples.vectors, grid=grid, min_count=1)
    assert len(cells) == 400
    cost = fv.atlas.AtlasCost(400, [64] * 6 + [16], 8, 8, render_s=1.0, bare_s=0.5)
    name = "grace_hopper (crop 29: x=132 y=219 side=340 flipped)"
    atlas = fv.atlas.Atlas("_blocks.8", grid, samples, layout, cells, torch.rand(400, 3, 8, 8), cost,
                           {"per_image": 4}, names=lambda i: name)  # fmt: skip
    page = atlas.write(tmp_path / "full")
    assert page.read_text().count('<img class="cell"') == 400
    assert page.stat().st_size < 2_000_000


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.mark.browser
def test_hover_shows_patches_and_units(atlas, tmp_path):
    if not (CHROMIUM and DRIVER):
        pytest.skip("chromium/chromedriver not installed")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    page = atlas.write(tmp_path / "atlas")
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager fetch drivers
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"):
        opts.add_argument(arg)
    opts.add_argument(f"--user-data-dir={tmp_path / 'chrome'}")
    d = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        d.get(page.as_uri())
        cell = d.find_elements(By.CSS_SELECTOR, ".cell")[-1]
        ActionChains(d).move_to_element(cell).perform()
        c = atlas.cells[-1]
        assert d.find_element(By.ID, "d-title").text == f"Cell ({c.row}, {c.col})"
        units = d.find_elements(By.CSS_SELECTOR, "#d-units tr")
        assert len(units) == 5 and units[0].text.startswith(f"unit {c.units[0][0]}")
        loaded = d.execute_script("var i = document.getElementById('d-patches'); return [i.complete, i.naturalWidth];")
        assert loaded[0] and loaded[1] > 0
    finally:
        d.quit()
