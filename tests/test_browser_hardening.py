"""Headless Chromium: the Align tab forgets the sample's reference and "phones" setting when
the user brings their own clip, figures never stay up beside another clip, and errors stay
visible next to the button. Skipped without /usr/bin/chromium or Playwright."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs /usr/bin/chromium"),
]
playwright = pytest.importorskip("playwright.sync_api")

from app_server import SAMPLE, running_app  # noqa: E402


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("browser_hardening")) as url, playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu",
                                                                    "--disable-background-networking"])
        pg = browser.new_page(viewport={"width": 1500, "height": 1000})
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.goto(url, wait_until="domcontentloaded")
        pg.errors = errors
        yield pg
        browser.close()


def _own_clip(folder: Path) -> Path:
    x, sr = sf.read(SAMPLE, dtype="float32")
    x = (x if x.ndim == 1 else x.mean(1))[: int(1.5 * sr)]
    path = folder / "my_recording.wav"
    sf.write(path, x + 1e-4 * np.random.default_rng(0).standard_normal(x.size).astype(np.float32), sr)
    return path


def _kind(page) -> str:
    return page.evaluate("() => document.querySelector('#align-kind input[type=radio]:checked').value")


def test_own_clip_clears_reference_and_mode(page, tmp_path):
    page.get_by_role("tab", name="Align").click()
    page.wait_for_function(
        """() => { const el = document.querySelector('#plot-alignment .js-plotly-plot');
                   return el && el._fullData && el._fullData.some(t => t.name === 'accuracy'); }""",
        timeout=60_000)
    # The sample opens with its phones and its reference TextGrid.
    assert _kind(page) == "phones"
    assert ".TextGrid" in page.locator("#align-reference").inner_text()
    # The user's own clip: clear the sample (the player's Clear button), then upload.
    page.locator('#align-audio button[aria-label="Clear"]').click()
    page.locator("#align-audio input[type=file]").set_input_files(str(_own_clip(tmp_path)))
    page.wait_for_function("() => document.querySelector('#align-clip').innerText.includes('my_recording.wav')",
                           timeout=30_000)
    page.wait_for_function("() => !document.querySelector('#align-reference').innerText.includes('.TextGrid')",
                           timeout=20_000)
    assert _kind(page) == "text"
    assert page.locator("#align-transcript textarea").input_value() == ""
    assert "New clip" in page.locator("#align-clip").inner_text()
    # The previous clip's figures are gone until this one is aligned.
    assert page.evaluate("() => !document.querySelector('#plot-alignment .js-plotly-plot')")
    page.locator("#align-transcript textarea").fill("this is my own recording")
    page.click("#align-button")
    page.wait_for_function("() => document.querySelector('#align-clip').innerText.includes('Results for')",
                           timeout=150_000)
    assert "my_recording.wav" in page.locator("#align-clip").inner_text()
    assert not page.errors, page.errors


def test_errors_stay_next_to_the_button(page):
    page.get_by_role("tab", name="Align").click()
    page.locator("#align-transcript textarea").fill("")
    page.click("#align-button")
    note = page.locator("#align-error")
    note.wait_for(state="visible", timeout=60_000)
    assert "transcript is empty" in note.inner_text()
    page.wait_for_timeout(12_000)  # toasts used to vanish after 10 s
    assert note.is_visible() and "/tmp/" not in note.inner_text()
    assert page.locator("#align-cancel").is_visible() and page.locator("#analyze-cancel").count() == 1



def _long_clip(folder: Path, seconds: int = 50) -> Path:
    """Tones in noise, a new pitch each second: enough work for a 64-state mixture and a sweep."""
    sr, rng = 16000, np.random.default_rng(1)
    t = np.arange(sr) / sr
    x = np.concatenate([0.3 * np.sin(2 * np.pi * f * t) + 0.05 * rng.standard_normal(sr)
                        for f in rng.uniform(100, 3000, seconds)]).astype(np.float32)
    path = folder / "long_clip.wav"
    sf.write(path, x, sr)
    return path


def test_analyze_cancel_and_new_clip_in_the_run_bar(page, tmp_path):
    """A new clip clears the Analyze tab's figures, BIC/AIC note and caption; Cancel, in the sticky
    run bar beside Analyze, stops a long run: no figures of it appear and they are not left dimmed."""
    page.get_by_role("tab", name="Analyze").click()
    page.wait_for_function("() => document.querySelector('#plot-timeline .js-plotly-plot')", timeout=60_000)
    assert page.locator("#sweep-note").inner_text().strip() != ""
    page.locator('#analyze-audio button[aria-label="Clear"]').click()
    page.locator("#analyze-audio input[type=file]").set_input_files(str(_long_clip(tmp_path)))
    page.wait_for_function("() => document.querySelector('#analyze-clip').innerText.includes('long_clip.wav')",
                           timeout=30_000)
    assert "New clip" in page.locator("#analyze-clip").inner_text()
    assert page.evaluate("() => !document.querySelector('#plot-timeline .js-plotly-plot')")
    assert page.locator("#sweep-note").inner_text().strip() == ""
    # A run of several seconds at least: 64-state mixtures on 50 s and a sweep of seven sizes.
    page.get_by_text("Gaussian mixture", exact=True).first.click()
    box = page.locator("#analyze-states input[type=number]")
    box.fill("64")
    box.press("Enter")
    page.get_by_text("Model selection (BIC / AIC)", exact=True).first.click()
    page.get_by_label("Sweep state counts").fill("16,24,32,40,48,56,64")
    with page.expect_request(lambda r: "queue/join" in r.url, timeout=20_000):
        page.click("#analyze-button")
    page.wait_for_timeout(1000)
    with page.expect_request(lambda r: r.url.endswith("/cancel"), timeout=20_000):
        page.click("#analyze-cancel")
    page.wait_for_function("() => !document.body.classList.contains('hmm-updating')", timeout=20_000)
    page.wait_for_timeout(2000)
    assert page.evaluate("() => !document.querySelector('#plot-timeline .js-plotly-plot')")
    assert "New clip" in page.locator("#analyze-clip").inner_text()
    assert not page.errors, page.errors
