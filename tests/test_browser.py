"""The report in a real browser: headless Chromium loads index.html and a unit page, every image
loads (naturalWidth > 0) and the console shows no errors. CI installs Debian's chromium and
chromium-driver; without them this test skips locally and fails under CI."""

from __future__ import annotations

import os
import shutil

import pytest
from conftest import layer_dir, make_tiny, units_of

from captum_fv.report import NeuronReport

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    if not (CHROMIUM and DRIVER):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromedriver must be installed in CI (.ci/run installs them)")
        pytest.skip("chromium/chromedriver not installed")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager fetch drivers
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path_factory.mktemp('chrome')}",
        "--window-size=1280,1600",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield d
    d.quit()


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    import captum_fv as fv

    out = tmp_path_factory.mktemp("browser_report")
    ds = fv.data.sample_images(size=32, crops=2)
    NeuronReport(
        make_tiny(), "conv2", ds, size=32, steps=4, facets=2, k=2, progress=False, attribution_kwargs={"n_steps": 8}
    ).run([0, 1, 2], out)
    return out


def _check_page(driver, path, shot):
    driver.get(path.as_uri())
    driver.get_log("browser")  # nothing before this page
    driver.get(path.as_uri())
    import time

    # thumbnails load lazily: scroll them into view and give them a moment
    driver.execute_script("window.scrollTo(0, document.body.scrollHeight);")
    script = "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]);"
    for _ in range(50):
        state = driver.execute_script(script)
        if all(complete and width for _, complete, width in state):
            break
        time.sleep(0.1)
    assert state, f"no images on {path}"
    broken = [s for s, complete, width in state if not complete or width == 0]
    assert not broken, f"images failed to load on {path.name}: {broken}"
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors
    assert driver.save_screenshot(str(shot))
    return len(state)


def test_index_and_unit_page_render(driver, report_dir, tmp_path):
    n_index = _check_page(driver, report_dir / "index.html", tmp_path / "index.png")
    assert n_index == 3  # the model index of one layer shows its grid
    n_layer = _check_page(driver, layer_dir(report_dir) / "index.html", tmp_path / "layer.png")
    assert n_layer == 3
    n_unit = _check_page(driver, units_of(report_dir) / "channel_0001" / "index.html", tmp_path / "unit.png")
    assert n_unit >= 10
    # following the links: model index -> layer page -> unit page -> its neighbour -> back up
    driver.get((report_dir / "index.html").as_uri())
    driver.find_element("css selector", "a[href='layers/conv2/index.html']").click()
    assert driver.current_url.endswith("layers/conv2/index.html")
    driver.find_element("css selector", "a[href='units/channel_0001/index.html']").click()
    assert driver.current_url.endswith("layers/conv2/units/channel_0001/index.html")
    driver.find_element("css selector", "a[rel='next']").click()
    assert driver.current_url.endswith("units/channel_0002/index.html")
    driver.find_element("css selector", "nav a[href='../../../../index.html']").click()
    assert driver.current_url.endswith(report_dir.name + "/index.html")
    if os.environ.get("CAPTUM_FV_SCREENSHOTS"):
        shutil.copy(tmp_path / "unit.png", os.environ["CAPTUM_FV_SCREENSHOTS"])


def test_the_grid_sorts_filters_and_searches(driver, report_dir):
    import json

    from selenium.webdriver.support.ui import Select

    page = layer_dir(report_dir) / "index.html"
    ratios = {u["name"]: u["ratio"] for u in json.loads((report_dir / "report.json").read_text())["units"]}

    def shown():
        cards = driver.find_elements("css selector", "#units figure")
        return [c.get_attribute("data-name") for c in cards if c.is_displayed()]

    driver.get(page.as_uri())
    assert shown() == ["channel_0000", "channel_0001", "channel_0002"]
    Select(driver.find_element("css selector", "[data-role=sort]")).select_by_value("ratio")
    # units without a ratio (best photo not positive) come last either way
    assert shown() == sorted(ratios, key=lambda n: (ratios[n] is None, -(ratios[n] or 0)))
    Select(driver.find_element("css selector", "[data-role=sort]")).select_by_value("ratio-asc")
    assert shown() == sorted(ratios, key=lambda n: (ratios[n] is None, ratios[n] or 0))
    box = driver.find_element("css selector", "[data-role=search]")
    box.send_keys("channel 1")
    assert shown() == ["channel_0001"]
    assert driver.find_element("css selector", "[data-role=count]").text == "1 of 3 units"
    driver.get(page.as_uri() + "?q=no-such-unit")
    assert shown() == []
    verdicts = {c.get_attribute("data-verdict") for c in driver.find_elements("css selector", "#units figure")}
    (verdict,) = verdicts  # every unit of this tiny report has the same verdict
    driver.get(page.as_uri() + "?verdict=" + verdict.replace(" ", "%20"))
    assert len(shown()) == 3
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors
