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
