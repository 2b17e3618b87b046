"""Headless Chromium: the run bar in view, click-to-play, two runs compared, phone-width titles,
dark-mode plots and the Lab. Curated screenshots (docs/screenshots/ analyze.png, compare.png,
lab.png, phone.png, dark.png) are rewritten with UPDATE_SCREENSHOTS=1; skipped when /usr/bin/chromium or Playwright is missing."""

from __future__ import annotations

import io
import os
import urllib.request
from pathlib import Path

import pytest
import soundfile as sf

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs /usr/bin/chromium"),
]
playwright = pytest.importorskip("playwright.sync_api")

from app_server import ROOT, running_app  # noqa: E402

SHOTS = ROOT / "docs" / "screenshots"


def shot(name: str) -> str:
    """The curated README images are rewritten only with UPDATE_SCREENSHOTS=1, so a test run
    leaves the tracked files alone; otherwise the picture goes to the ignored browser_*.png."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    return str(SHOTS / (name if os.environ.get("UPDATE_SCREENSHOTS") == "1" else f"browser_{name}"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PLOT_READY = """id => { const el = document.querySelector('#' + id + ' .js-plotly-plot');
                        return !!(el && el.querySelector('.main-svg') && el._fullData && el._fullData.length); }"""


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("browser_tune")) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _open(browser, url, width, height, **kw):
    page = browser.new_page(viewport={"width": width, "height": height}, **kw)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url, wait_until="domcontentloaded")
    page.errors = errors
    page.wait_for_function(PLOT_READY, arg="plot-timeline", timeout=150_000)
    return page


def _in_view(page, selector: str) -> bool:
    return page.evaluate("""sel => { const r = document.querySelector(sel).getBoundingClientRect();
                                      return r.top >= 0 && r.bottom <= window.innerHeight && r.height > 0; }""", selector)


def _analyze(page, k: int):
    """Run the analysis with k states and no sweep; wait for its timeline."""
    box = page.locator("#analyze-states input[type=number]")
    box.fill(str(k))
    box.press("Enter")
    page.click("#analyze-button")
    page.wait_for_function(
        """k => { const el = document.querySelector('#plot-timeline .js-plotly-plot');
                  return el && el.layout && el.layout.title && el.layout.title.text.includes('K=' + k)
                         && !document.body.classList.contains('hmm-updating'); }""", arg=k, timeout=200_000)


def test_run_controls_in_the_first_viewport_and_sticky(browser, app_url):
    page = _open(browser, app_url, 1440, 900)
    assert _in_view(page, "#analyze-button") and _in_view(page, "#analyze-states")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(1000)
    page.screenshot(path=shot("analyze.png"), full_page=False)
    page.evaluate("() => window.scrollTo(0, 1600)")
    page.wait_for_timeout(300)
    assert page.evaluate("() => window.scrollY") > 1000
    assert _in_view(page, "#analyze-button")  # the run bar sticks to the top
    # every control of the Analyze tab carries help text (closed accordions render on opening)
    for name in ("Training", "Features", "Model selection (BIC / AIC)"):
        page.get_by_text(name, exact=True).first.click()
    page.wait_for_timeout(500)
    infos = page.evaluate("""() => document.querySelectorAll('[data-testid="block-info"]').length""")
    assert infos >= 19  # 18 model/training/feature/decoder controls + the segment picker
    assert not page.errors, page.errors
    page.close()


def test_clicking_a_segment_plays_it(browser, app_url):
    page = _open(browser, app_url, 1440, 900)
    bar = page.locator("#plot-timeline .barlayer .point").nth(5)
    bar.scroll_into_view_if_needed()
    seg = page.evaluate("""() => { const gd = document.querySelector('#plot-timeline .js-plotly-plot');
                                   const tr = gd._fullData.find(t => t.name === 'segments');
                                   return tr.customdata[5]; }""")
    page.wait_for_timeout(1500)  # the bridge binds plotly_click within 0.6 s
    box = bar.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function("""() => { const a = document.querySelector('#analyze-segment-audio a[download]');
                                      return a && a.href.includes('audio.wav'); }""", timeout=30_000)
    href = page.evaluate("() => document.querySelector('#analyze-segment-audio a[download]').href")
    with urllib.request.urlopen(href) as r:
        seconds = sf.info(io.BytesIO(r.read())).duration
    assert seconds == pytest.approx(seg[3] - seg[2], abs=0.002)  # exactly the clicked segment
    assert not page.errors, page.errors
    page.close()


def test_comparison_view_renders_two_runs(browser, app_url):
    page = _open(browser, app_url, 1440, 900)
    page.get_by_text("Model selection (BIC / AIC)").first.click()
    sweep = page.locator("label:has-text('Sweep state counts') textarea, label:has-text('Sweep state counts') input")
    sweep.first.fill("")
    _analyze(page, 3)
    _analyze(page, 6)
    page.get_by_role("tab", name="Runs").click()
    page.wait_for_function("() => document.querySelector('#runs-table').innerText.split('sample_synth.wav').length >= 3",
                           timeout=30_000)  # two runs of the sample in the table
    page.click("#compare-button")
    page.wait_for_function(PLOT_READY, arg="plot-compare-timeline", timeout=60_000)
    names = page.evaluate("""() => document.querySelector('#plot-compare-timeline .js-plotly-plot')
                                   ._fullData.map(t => t.name)""")
    assert names[0] == "spectrogram" and len([n for n in names if n.startswith("segments #")]) == 2
    assert any("K=3" in n for n in names) and any("K=6" in n for n in names)
    for elem in ("plot-compare-transitions", "plot-compare-durations"):
        page.wait_for_function(PLOT_READY, arg=elem, timeout=30_000)
    assert "num_states" in page.inner_text("#compare-changes")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#runs-table").scroll_into_view_if_needed()
    page.screenshot(path=shot("compare.png"), full_page=True)
    assert not page.errors, page.errors
    page.close()


def test_phone_width_titles_fit(browser, app_url):
    page = _open(browser, app_url, 390, 844)
    ids = ["plot-timeline", "plot-transitions", "plot-loglik", "plot-durations", "plot-sweep", "plot-latency"]
    for elem in ids:
        page.wait_for_function(PLOT_READY, arg=elem, timeout=60_000)
    clipped = page.evaluate("""ids => ids.flatMap(id => {
        const gd = document.querySelector('#' + id + ' .js-plotly-plot');
        const svg = gd.querySelector('.main-svg').getBoundingClientRect();
        return [...gd.querySelectorAll('.gtitle, .annotation-text, .xtitle, .ytitle')].map(t => {
            const r = t.getBoundingClientRect();
            return (r.width > 0 && (r.left < svg.left - 1 || r.right > svg.right + 1)) ? id + ': ' + t.textContent : null;
        }).filter(x => x); })""", ids)
    assert not clipped, clipped
    assert _in_view(page, "#analyze-button")
    btn = page.evaluate("() => { const b = document.querySelector('#analyze-button'); return [b.scrollWidth, b.clientWidth]; }")
    assert btn[0] <= btn[1]  # the button's label is not cut
    bar = page.evaluate("() => document.querySelector('#run-bar').getBoundingClientRect().height")
    assert bar < 844 / 3  # the sticky bar leaves the phone screen to the figures
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("() => window.scrollTo(0, document.querySelector('#plot-timeline').getBoundingClientRect().top - 200)")
    page.wait_for_timeout(300)
    page.screenshot(path=shot("phone.png"), full_page=False)
    assert not page.errors, page.errors
    page.close()


def test_plots_follow_the_dark_theme(browser, app_url):
    page = _open(browser, app_url + "?__theme=dark", 1440, 900)
    fill = page.evaluate("""() => getComputedStyle(document.querySelector('#plot-transitions .xtick text')).fill""")
    bg = page.evaluate("""() => document.querySelector('#plot-transitions .js-plotly-plot')._fullLayout.paper_bgcolor""")
    assert fill == "rgb(229, 231, 235)" and bg == "rgba(0, 0, 0, 0)"
    # subplot axes too (the timeline's posterior panel is y3)
    sub = page.evaluate("""() => getComputedStyle(document.querySelector('#plot-timeline .y3tick text')).fill""")
    assert sub == "rgb(229, 231, 235)"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(1000)
    page.screenshot(path=shot("dark.png"), full_page=False)
    page.close()


def test_lab_samples_fits_and_walks_the_trellis(browser, app_url):
    page = _open(browser, app_url, 1440, 900)
    page.get_by_role("tab", name="Lab").click()
    page.click("#lab-sample")
    page.wait_for_function(PLOT_READY, arg="plot-lab-sample", timeout=60_000)
    page.click("#lab-fit")
    for elem in ("plot-lab-recovery", "plot-lab-em", "plot-lab-data"):
        page.wait_for_function(PLOT_READY, arg=elem, timeout=120_000)
    assert "States matched by Hungarian assignment" in page.inner_text("#lab-fit-note")
    step = page.locator("#lab-step input[type=number]")
    step.fill("6")
    step.press("Enter")
    page.click("#lab-trellis")
    page.wait_for_function(PLOT_READY, arg="plot-lab-trellis", timeout=60_000)
    names = page.evaluate("""() => document.querySelector('#plot-lab-trellis .js-plotly-plot')._fullData
                                   .map(t => t.name)""")
    assert names == ["backpointers", "forward", "best path so far"]
    title = page.evaluate("() => document.querySelector('#plot-lab-trellis .js-plotly-plot').layout.title.text")
    assert "step 6/10" in title
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=shot("lab.png"), full_page=True)
    assert not page.errors, page.errors
    page.close()


def test_clicking_a_phone_in_the_align_tab_plays_it(browser, app_url):
    page = _open(browser, app_url, 1440, 900)
    page.get_by_role("tab", name="Align").click()
    page.wait_for_function(PLOT_READY, arg="plot-align-timeline", timeout=60_000)
    page.wait_for_timeout(1500)  # the bridge binds within 0.6 s
    # the hypothesis phone tier: its text points carry [start, end, score, label]; plotly draws
    # no text node for an empty label, so the k-th node is the k-th phone with a label
    info = page.evaluate("""() => { const gd = document.querySelector('#plot-align-timeline .js-plotly-plot');
        const i = gd._fullData.findIndex(t => t.name === 'phones (hyp)');
        const tr = gd._fullData[i];
        const labelled = tr.customdata.filter((c, j) => tr.text[j] !== '');
        const scatterIndex = gd._fullData.slice(0, i).filter(t => t.type === 'scatter').length;
        return [scatterIndex, labelled[3]]; }""")
    idx, phone = info
    point = page.locator("#plot-align-timeline .scatterlayer .trace").nth(idx).locator(".textpoint").nth(3)
    point.scroll_into_view_if_needed()
    box = point.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function("""() => { const a = document.querySelector('#align-segment-audio a[download]');
                                      return a && a.href.includes('audio.wav'); }""", timeout=30_000)
    href = page.evaluate("() => document.querySelector('#align-segment-audio a[download]').href")
    with urllib.request.urlopen(href) as r:
        seconds = sf.info(io.BytesIO(r.read())).duration
    assert seconds == pytest.approx(phone[1] - phone[0], abs=0.002)
    assert not page.errors, page.errors
    page.close()
