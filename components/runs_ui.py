"""Gradio glue for the run history (the Runs tab, the /history and /export_report API), the
status line after each run, and the click-to-play bridge from plotly to Gradio.

Click to play: Gradio 6's ``gr.Plot`` only has a ``change`` event (no click), so a small
``gr.HTML`` component runs JavaScript (``js_on_load``) that listens to ``plotly_click`` on
the plots it is given, writes what was clicked (a segment index, a start/end, or a time)
into its own value and triggers ``change``; :func:`play_clicked` cuts that audio.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import gradio as gr

from components import figures as F
from components import history as H
from components import pipeline as P
from components.report import export_report
from components.results import AnalysisResult
from hmm_engine.errors import HMMStudioError

CLICK_CSS = """
/* overflow: clip (not hidden) so the container is no scroll box and the run bar can stick */
.gradio-container {overflow: clip !important;}
#run-bar {position: sticky; top: 0; z-index: 50; background: var(--background-fill-primary);
          border-bottom: 1px solid var(--border-color-primary); padding: 4px 0; align-items: center;}
#run-status {min-height: 2.2em; font-size: 0.92em; flex: 1 1 260px;}
#run-bar {flex-wrap: wrap;}
@media (max-width: 640px) {
  /* on a phone the bar stays one compact strip: no help text, the status in small print */
  #run-bar [data-testid="block-info"], #run-bar .info-text {display: none;}
  #run-status {flex-basis: 100%; font-size: 0.78em; min-height: 0;}
}
body.hmm-updating .hmm-figures .js-plotly-plot {opacity: 0.45; transition: opacity .2s;}
body.hmm-updating .hmm-figures::before {content: "updating… (the figures below are the previous run's)";
          display: block; font-weight: 600; color: var(--color-accent);}
.hmm-clickable .js-plotly-plot .barlayer .point {cursor: pointer;}
.hmm-bridge {display: none;}
/* plots follow the dark theme: transparent backgrounds (figures.py), light text and grid here */
/* subplot axes are named x2tick, y3title...: match the class endings */
.dark .js-plotly-plot .main-svg :is(text[class$="title"], [class$="tick"] > text, .legendtext,
       .annotation-text, .cbtitle text, .cbaxis text, .g-gtitle text) {fill: #e5e7eb !important;}
.dark .js-plotly-plot .main-svg .gridlayer path {stroke: #374151 !important;}
.dark .js-plotly-plot .main-svg .zerolinelayer path {stroke: #4b5563 !important;}
"""

# Binds plotly_click on every plot under `selector` (re-bound when Gradio redraws a plot),
# and reports {index} for a segment-strip bar, {start, end} for a tier segment, else {time}.
_BRIDGE_JS = """
const selector = element.dataset.selector || props.selector;
let clicks = 0;
const send = (payload) => { clicks += 1; payload.n = clicks; props.value = JSON.stringify(payload); trigger('change'); };
const handler = (ev) => {
  const pt = ev && ev.points && ev.points[0];
  if (!pt) return;
  const name = (pt.data && pt.data.name) || '';
  const cd = pt.customdata;
  if (name === 'segments' && Array.isArray(cd) && Number.isInteger(cd[0])) { send({index: cd[0]}); return; }
  if (Array.isArray(cd) && typeof cd[0] === 'number' && typeof cd[1] === 'number' && cd[1] > cd[0]) {
    send({start: cd[0], end: cd[1]}); return; }
  if (typeof pt.x === 'number') send({time: pt.x});
};
const bind = () => {
  document.querySelectorAll(selector).forEach(host => {
    host.querySelectorAll('.js-plotly-plot').forEach(gd => {
      if (!gd.on || !gd._fullLayout || gd._hmmLayout === gd._fullLayout) return;
      if (gd.removeAllListeners) gd.removeAllListeners('plotly_click');
      gd.on('plotly_click', handler);
      gd._hmmLayout = gd._fullLayout;
    });
  });
};
bind();
setInterval(bind, 600);
"""


def click_bridge(elem_id: str, selector: str) -> gr.HTML:
    """An invisible component whose value becomes the JSON of each click on the plots matched
    by the CSS ``selector``; wire its ``change`` to :func:`play_clicked`."""
    return gr.HTML(value="", html_template=f'<span class="hmm-bridge" data-selector="{selector}"></span>',
                   js_on_load=_BRIDGE_JS, elem_id=elem_id, elem_classes=["hmm-bridge"], selector=selector)


def play_clicked(payload: str | None, state: dict | None):
    """The audio of what was clicked: segment ``index`` of the state's segments, a ``start``/
    ``end`` span, or the segment containing ``time`` (all within the state's clip)."""
    if not payload:
        return None
    try:
        click = json.loads(payload)
    except (TypeError, ValueError):
        return None
    segments = (state or {}).get("segments") or []
    if not segments or not (state or {}).get("audio"):
        raise gr.Error("nothing to play yet: run an analysis first", title="Input problem")
    clip_end = max(float(b) for _, _, b in segments)
    start = end = None
    if isinstance(click.get("index"), int) and 0 <= click["index"] < len(segments):
        _, start, end = segments[click["index"]]
    elif all(isinstance(click.get(k), (int, float)) for k in ("start", "end")):
        start, end = max(0.0, float(click["start"])), min(clip_end, float(click["end"]))
    elif isinstance(click.get("time"), (int, float)) and math.isfinite(click["time"]):
        t = float(click["time"])
        hit = next(((a, b) for _, a, b in segments if a <= t < b), None)
        if hit is not None:
            start, end = hit
    if start is None or end is None or end <= start:
        return None
    try:
        loaded = P.load(state["audio"])
        return P.segment_audio(loaded.samples, loaded.audio.sample_rate, float(start), float(end))
    except HMMStudioError as exc:
        raise gr.Error(str(exc), title="Input problem") from None


def after_analysis_text(result: AnalysisResult | None, run_id: int | None = None) -> str:
    """One status line about the run on screen: its metrics, convergence in words, and
    what the sweep cost."""
    if result is None:
        return "Press **Analyze** to fit a model; each run is kept in the **Runs** tab."
    m = H.run_metrics(result)
    who = f"Run #{run_id}" if run_id is not None else "Sample (precomputed)"
    conv = {True: "converged", False: "**NOT converged** (stopped at the iteration limit: raise it)",
            None: "convergence unknown"}[m["converged"]]
    text = (f"{who}: K={m['num_states']} · log L/frame {m['log_likelihood_per_frame']:.3f} · "
            f"BIC {m['bic']:.0f} · AIC {m['aic']:.0f} · {m['iterations']} EM iterations, {conv} · "
            f"{m['seconds']:.1f} s")
    sweep_s = result.timings.get("sweep")
    if sweep_s and m["seconds"] > 0 and "sweep" not in result.cached:
        text += f" (sweep {100 * sweep_s / m['seconds']:.0f}% of it)"
    return text


def criteria_text(result: AnalysisResult | None) -> str:
    if result is None or not result.sweep:
        return ""
    return F.criteria_note(result.sweep)


@dataclass
class RunsTab:
    refresh_outputs: list


def _run_updates(runs):
    choices = H.choices(runs)
    a = choices[1][1] if len(choices) > 1 else (choices[0][1] if choices else None)
    b = choices[0][1] if choices else None
    return (gr.update(value=H.table_rows(runs)), gr.update(choices=choices, value=a),
            gr.update(choices=choices, value=b), gr.update(choices=choices, value=b))


def after_analysis(runs):
    last = runs[-1] if runs else None
    status = after_analysis_text(last.result if last else None, last.id if last else None)
    return (status, criteria_text(last.result if last else None)) + _run_updates(runs)


def history_api(runs) -> list[dict]:
    """This session's runs, newest last: settings and metrics (``num_states``, ``bic``, ``aic``,
    ``log_likelihood_per_frame``, ``seconds``, ...)."""
    return H.history_json(runs)


def compare_runs(runs, id_a, id_b):
    try:
        out = H.compare(runs, id_a, id_b)
    except ValueError as exc:
        raise gr.Error(str(exc), title="Input problem") from None
    return out["changes"], out["timeline"], out["transitions"], out["durations"]


def export_run(runs, run_id=None):
    """One run (default: the newest) as a self-contained HTML report."""
    run = H.find(runs, run_id) if run_id not in (None, "") else (runs[-1] if runs else None)
    if run is None:
        have = ", ".join(str(r.id) for r in runs or []) or "none yet: press Analyze first"
        raise gr.Error(f"no run {run_id!r} in this session (runs: {have})", title="Input problem")
    return str(export_report(run))


def build_runs_tab(runs_state: gr.State) -> RunsTab:
    gr.Markdown("Every **Analyze** run of this browser session is kept here (the newest "
                f"{H.MAX_RUNS}); nobody else sees them. Pick two to compare: both segmentations over the "
                "same spectrogram, their transition matrices and segment lengths, and what changed. "
                "Export one as a single HTML file (interactive figures, works offline) to share.")
    table = gr.Dataframe(headers=H.TABLE_HEADERS, value=[], interactive=False, label="Runs (newest last)",
                         elem_id="runs-table", wrap=True)
    with gr.Row():
        pick_a = gr.Dropdown(label="Run A", choices=[], info="The earlier run to compare", elem_id="compare-a")
        pick_b = gr.Dropdown(label="Run B", choices=[], info="The run to compare it with", elem_id="compare-b")
        compare_btn = gr.Button("Compare", variant="primary", elem_id="compare-button", scale=0, min_width=120)
    changes = gr.Markdown(elem_id="compare-changes")
    cmp_timeline = gr.Plot(label="Segmentations over the same spectrogram", elem_id="plot-compare-timeline")
    with gr.Row():
        cmp_trans = gr.Plot(label="Transition matrices", elem_id="plot-compare-transitions")
        cmp_dur = gr.Plot(label="Segment lengths", elem_id="plot-compare-durations")
    with gr.Row():
        export_pick = gr.Dropdown(label="Run to export", choices=[], info="Default: the newest run",
                                  elem_id="export-pick", allow_custom_value=True)  # the API passes a run id
        export_btn = gr.Button("Export HTML report", elem_id="export-button", scale=0, min_width=160)
        report_file = gr.File(label="Report (self-contained HTML)", interactive=False, elem_id="report-file")
    with gr.Accordion("Runs as JSON (API: /history)", open=False):
        refresh = gr.Button("Refresh", size="sm")
        history_out = gr.JSON(label="This session's runs, newest last")
    compare_btn.click(compare_runs, [runs_state, pick_a, pick_b], [changes, cmp_timeline, cmp_trans, cmp_dur],
                      api_visibility="private")
    export_btn.click(export_run, [runs_state, export_pick], report_file, api_name="export_report")
    refresh.click(history_api, runs_state, history_out, api_name="history")
    return RunsTab(refresh_outputs=[table, pick_a, pick_b, export_pick])
