"""Headless Chromium loads the dashboard, runs the sample, and finds the rendered plotly plots.

Screenshots go to ``docs/screenshots/browser_*.png`` (regenerated on every run; the curated
README images are ``docs/screenshots/dashboard.png`` and ``align.png``). Skipped when
/usr/bin/chromium or Playwright is missing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs /usr/bin/chromium"),
]
playwright = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "docs" / "screenshots"
BUNDLED = ROOT / "assets" / "sample_synth.wav"
FALLBACK = ROOT / "tests" / "data" / "synth" / "festival_0001.wav"
SAMPLE = BUNDLED if BUNDLED.exists() else FALLBACK
ANALYZE_PLOTS = ["plot-timeline", "plot-transitions", "plot-loglik", "plot-durations", "plot-sweep", "plot-latency"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    port = _free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HMM_STUDIO_SAMPLE=str(SAMPLE))
    log = tmp_path_factory.mktemp("browser") / "app.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port)],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while True:
        if proc.poll() is not None:
            pytest.fail(f"app exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                break
        except OSError:
            if time.time() > deadline:
                proc.terminate()
                pytest.fail("app did not start")
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


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
    page.click("#align-button")
    page.wait_for_function(
        """() => { const el = document.querySelector('#plot-alignment .js-plotly-plot');
                   return el && el._fullData && el._fullData.some(t => t.name === 'accuracy'); }""",
        timeout=150_000)
    for elem_id in ("plot-align-timeline", "plot-alignment", "plot-align-latency"):
        assert _rendered(page, elem_id), elem_id
    page.screenshot(path=str(SHOTS / "browser_align_sample.png"), full_page=True)
    assert not page.errors, page.errors
