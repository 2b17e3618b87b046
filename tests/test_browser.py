"""Headless Chromium loads the dashboard, runs the sample, and finds the rendered plotly plots.

Screenshots go to ``docs/screenshots/browser_*.png`` (regenerated on every run; the curated
README images are ``docs/screenshots/dashboard.png`` and ``align.png``). Skipped when
/usr/bin/chromium or Playwright is missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs /usr/bin/chromium"),
]
playwright = pytest.importorskip("playwright.sync_api")

from app_server import ROOT, running_app, sample_phone_models  # noqa: E402

SHOTS = ROOT / "docs" / "screenshots"
ANALYZE_PLOTS = ["plot-timeline", "plot-transitions", "plot-loglik", "plot-durations", "plot-sweep", "plot-latency"]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("browser")) as url:
        yield url


@pytest.fixture(scope="module")
def page(app_url):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        pg = browser.new_page(viewport={"width": 1500, "height": 1000})
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.goto(app_url, wait_until="domcontentloaded")
        pg.errors = errors
        yield pg
        browser.close()


def _rendered(page, elem_id: str) -> bool:
    return page.evaluate(
        """id => { const el = document.querySelector('#' + id + ' .js-plotly-plot');
                   return !!(el && el.querySelector('.main-svg') && el._fullData && el._fullData.length > 0); }""",
        elem_id,
    )


def test_sample_opens_with_every_figure_and_reruns(page):
    SHOTS.mkdir(parents=True, exist_ok=True)
    # precomputed sample: all six plots are drawn without pressing anything
    page.wait_for_function(
        """ids => ids.every(id => { const el = document.querySelector('#' + id + ' .js-plotly-plot');
                                   return el && el.querySelector('.main-svg'); })""",
        arg=ANALYZE_PLOTS, timeout=150_000)
    for elem_id in ANALYZE_PLOTS:
        assert _rendered(page, elem_id), elem_id
    # the timeline carries the spectrogram, posterior heatmap and Viterbi path traces
    kinds = page.evaluate("""() => document.querySelector('#plot-timeline .js-plotly-plot')
                                   ._fullData.map(t => t.type + ':' + (t.name || ''))""")
    assert "heatmap:spectrogram" in kinds and "heatmap:posterior" in kinds and "scatter:Viterbi path" in kinds
    page.screenshot(path=str(SHOTS / "browser_analyze_sample.png"), full_page=True)

    # run the sample again with 5 states: the figures are replaced by the new run's
    box = page.locator("#analyze-states input[type=number]")
    box.fill("5")
    box.press("Enter")
    page.click("#analyze-button")
    page.wait_for_function(
        """() => { const el = document.querySelector('#plot-timeline .js-plotly-plot');
                   return el && el.layout && el.layout.title && el.layout.title.text.includes('K=5'); }""",
        timeout=150_000)
    trans = page.evaluate("""() => document.querySelector('#plot-transitions .js-plotly-plot')._fullData[0].z.length""")
    assert trans == 5
    page.screenshot(path=str(SHOTS / "browser_analyze_k5.png"), full_page=False)
    assert not page.errors, page.errors


def test_align_tab_draws_tiers(page):
    page.get_by_role("tab", name="Align").click()
    # The bundled sample opens aligned and scored, before anything is pressed.
    page.wait_for_function(
        """() => { const el = document.querySelector('#plot-alignment .js-plotly-plot');
                   return el && el._fullData && el._fullData.some(t => t.name === 'accuracy'); }""",
        timeout=30_000)
    page.click("#align-button")
    page.wait_for_function(
        """() => { const el = document.querySelector('#plot-alignment .js-plotly-plot');
                   return el && el._fullData && el._fullData.some(t => t.name === 'accuracy'); }""",
        timeout=150_000)
    for elem_id in ("plot-align-timeline", "plot-alignment", "plot-align-latency"):
        assert _rendered(page, elem_id), elem_id
    page.screenshot(path=str(SHOTS / "browser_align_sample.png"), full_page=True)
    assert not page.errors, page.errors


def test_picking_a_phone_plays_its_audio(page):
    # After the alignment above, its phones fill the Align tab's dropdown; picking one
    # yields that phone's wav.
    pick = page.get_by_label("Play a phone").first
    pick.click()
    options = page.locator("ul[role=listbox] li")
    options.first.wait_for(timeout=20_000)
    assert options.count() > 1 and options.first.inner_text().startswith("0: ")
    options.nth(1).click()
    page.wait_for_function("() => document.body.innerHTML.includes('audio.wav')", timeout=20_000)
    assert not page.errors


def test_uploaded_phone_models_align_without_training(page, tmp_path):
    # Models from train-labelled (on the sample's own reference), uploaded under More: the
    # alignment runs with them, so the latency figure gains a "models" stage.
    models = sample_phone_models(tmp_path)
    page.get_by_role("tab", name="Align").click()
    page.locator("#align-more").get_by_text("More").first.click()  # closed accordions are not rendered
    page.locator("#align-models input[type=file]").set_input_files(str(models))
    page.wait_for_function("() => document.querySelector('#align-models').innerText.includes('phone_models.pt')",
                           timeout=20_000)
    page.click("#align-button")
    page.wait_for_function(
        """() => { const el = document.querySelector('#plot-align-latency .js-plotly-plot');
                   return el && el._fullData && JSON.stringify(el._fullData.map(t => [t.x, t.y, t.name]))
                                                    .includes('models'); }""",
        timeout=150_000)
    assert _rendered(page, "plot-alignment")
    assert not page.errors, page.errors
