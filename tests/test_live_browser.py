"""Headless Chromium with a fake microphone (the sample clip, looped by Chromium) streams into
the Live tab; committed states and the live figure appear. Skipped without /usr/bin/chromium
or Playwright."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs /usr/bin/chromium"),
]
playwright = pytest.importorskip("playwright.sync_api")

from app_server import ROOT, SAMPLE, running_app  # noqa: E402

SHOTS = ROOT / "docs" / "screenshots"


@pytest.fixture(scope="module")
def fake_mic(tmp_path_factory) -> Path:
    """The sample as 48 kHz 16-bit PCM (what Chromium's fake capture device reads)."""
    import torch
    import torchaudio.functional as AF

    x, sr = sf.read(SAMPLE, dtype="float32")
    y = AF.resample(torch.from_numpy(x), sr, 48000).numpy()
    path = tmp_path_factory.mktemp("mic") / "clip.wav"
    sf.write(path, np.concatenate([y, y]), 48000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("live")) as url:
        yield url


def test_live_tab_streams_the_microphone_and_commits_states(app_url, fake_mic):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                  f"--use-file-for-fake-audio-capture={fake_mic}", "--autoplay-policy=no-user-gesture-required"],
        )
        context = browser.new_context(viewport={"width": 1500, "height": 1000}, permissions=["microphone"])
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(app_url, wait_until="domcontentloaded")
        page.get_by_role("tab", name="Live").click()
        record = page.locator("#live-audio").get_by_role("button", name="Record")
        record.first.wait_for(timeout=60_000)
        record.first.click()
        # Committed states reach the summary and the figure while the stream runs.
        page.wait_for_function(
            """() => { const el = document.querySelector('#plot-live .js-plotly-plot');
                       return el && el._fullData && el._fullData.some(t => t.name === 'committed states'
                                                                     && t.x && t.x.length > 20); }""",
            timeout=90_000)
        text = page.locator("#live-summary").inner_text()
        assert "states_committed" in text
        names = page.evaluate("""() => document.querySelector('#plot-live .js-plotly-plot')._fullData.map(t => t.name)""")
        assert {"spectrogram", "committed states", "filtered posteriors", "chunk latency"} <= set(names)
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "browser_live.png"), full_page=False)
        stop = page.locator("#live-audio").get_by_role("button", name="Stop")
        if stop.count():
            stop.first.click()
        assert not errors, errors
        browser.close()
