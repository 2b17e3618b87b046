"""The Gradio dashboard: layout and event wiring. Logic lives in pipeline/render/alignment.

Public API endpoints (``gradio_client``):

* ``/analyze`` — audio + model settings -> 6 figures, JSON summary, downloads;
* ``/align`` — audio + transcript (+ reference TextGrid, + trained phone models) -> 3 figures, JSON
  summary, downloads;

Every argument but the audio (and the transcript) has a default.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from components import history as H
from components import lanes
from components import pipeline as P
from components.alignment import ALIGN_INTRO, aligner_defaults
from components.guide import HELP, WorkProgress
from components.lab_ui import build_lab_tab
from components.runs_ui import (CLICK_CSS, after_analysis, after_analysis_text, build_runs_tab, click_bridge,
                                criteria_text, play_clicked)
from components.precomputed import sample_settings
from components.render import render_alignment, render_analysis
from components.results import AnalysisResult, AnalysisSettings
from hmm_engine.cancellation import Cancelled, CancelToken, cancellable
from hmm_engine.errors import HMMStudioError
from hmm_engine.frontend.audio import AUDIO_SUFFIXES

log = logging.getLogger("hmm_studio")

ROOT = P.ROOT
DEFAULTS = sample_settings()  # the UI, the API and these functions share one set of defaults
ALIGN_DEFAULTS = aligner_defaults()

CSS = """
.hmm-note {font-size: 0.9em; color: #555;}
.hmm-error {border: 1px solid #c33; border-radius: 6px; padding: 4px 8px; background: #fff4f4;}
#analyze-error {flex-basis: 100%;}  /* in the run bar: its own line under the buttons */
footer {display: none !important;}
""" + CLICK_CSS

INTRO = """**HMM Studio** — fit a hidden Markov model to a clip and *see* what it does. The sample is already
analysed: change a setting, press **Analyze**, click a segment to hear it; **Runs** compares your runs,
**Align** force-aligns a transcript, **Live** decodes the microphone as you speak, **Lab** teaches HMMs on
models you define."""


# A quoted absolute path (an upload's /tmp/gradio/<hash>/name.wav): users see only the name.
_SERVER_PATH = re.compile(r"(['\"])/(?:[^'\"/]+/)+([^'\"/]+)\1")


def public_message(text: str) -> str:
    """``text`` without server paths: ``'/tmp/gradio/ab12/clip.wav'`` -> ``'clip.wav'``."""
    return _SERVER_PATH.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(1)}", str(text))


def _user_error(exc: BaseException) -> gr.Error:
    """A message for the user that stays up until closed (duration=None), without server paths."""
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, Cancelled):
        return gr.Error("cancelled: the work stopped", title="Cancelled", duration=None, print_exception=False)
    if isinstance(exc, HMMStudioError):
        return gr.Error(public_message(str(exc)), title="Input problem", duration=None, print_exception=False)
    log.error("unexpected error: %s", "".join(traceback.format_exception(exc)))
    return gr.Error(public_message(f"Internal error ({type(exc).__name__}): {exc}"), title="Something went wrong",
                    duration=None)


# ------------------------------------------------------------------ cancellable work

# Compute runs in these threads; Gradio's concurrency limit bounds how many are busy, and a
# cancelled request holds its slot until its thread has really stopped (see run_cancellable).
_WORKERS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="hmm-studio-work")
_BLOCKS: list = []               # the running Blocks, to see whether a request's client is still there
_LAST_ERROR: dict = {}           # (session, tab) -> message, shown next to the button that failed
_LAST_ERROR_LOCK = threading.Lock()
CLIENT_POLL_S = 0.5


def _client_gone(request: gr.Request | None) -> bool:
    """True when Gradio has marked this session's running job dead (its client disconnected)."""
    session = getattr(request, "session_hash", None)
    if not session or not _BLOCKS:
        return False
    try:
        queue = _BLOCKS[0]._queue
        jobs = [job for job_set in queue.active_jobs if job_set for job in job_set]
        return any(job.session_hash == session and not job.alive for job in jobs)
    except Exception:  # noqa: BLE001 - a Gradio internals change only disables this check
        return False


async def run_cancellable(work: Callable[[], Any], request: gr.Request | None = None) -> Any:
    """Run ``work()`` in a worker thread under a :class:`CancelToken`. When the request is
    cancelled (the Cancel button, ``job.cancel()`` of gradio_client) or its client goes away,
    the token is set and EM / the sweep / the aligner stop at their next check; the request
    keeps its concurrency slot until the thread has stopped, so cancelled work never piles up
    outside the limit."""
    token = CancelToken()
    context = contextvars.copy_context()

    def run():
        with cancellable(token):
            return work()

    future = asyncio.get_running_loop().run_in_executor(_WORKERS, context.run, run)
    try:
        while True:
            done, _ = await asyncio.wait({future}, timeout=CLIENT_POLL_S)
            if done:
                return future.result()
            if not token.cancelled and _client_gone(request):
                token.cancel("abandoned by its client")
    except asyncio.CancelledError:
        token.cancel("cancelled")
        while not future.done():
            try:
                await asyncio.wait({future})
            except asyncio.CancelledError:
                continue
        raise


def _remember_error(request: gr.Request | None, tab: str, error: gr.Error) -> None:
    session = getattr(request, "session_hash", None)
    if session:
        with _LAST_ERROR_LOCK:
            _LAST_ERROR[(session, tab)] = (getattr(error, "title", None) or "Error", str(error.message))
            while len(_LAST_ERROR) > 1000:
                _LAST_ERROR.pop(next(iter(_LAST_ERROR)))


def _error_note(tab: str):
    def show(request: gr.Request):
        with _LAST_ERROR_LOCK:
            title, message = _LAST_ERROR.pop((getattr(request, "session_hash", None), tab), ("Error", "the request failed"))
        return gr.update(value=f"**{title}:** {message}", visible=True)
    return show


def _hide_note():
    return gr.update(value="", visible=False)


_NOT_UPDATING = "() => { document.body.classList.remove('hmm-updating'); }"


def example_clips() -> list[str]:
    assets = ROOT / "assets"
    clips = sorted(p for p in assets.glob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    # the bundled sample first
    clips.sort(key=lambda p: (p != P.SAMPLE_AUDIO, p.name))
    return [str(p) for p in clips]


def _gr_progress(progress: gr.Progress):
    def report(fraction: float, message: str) -> None:
        try:
            progress(float(fraction), desc=message)
        except Exception:  # noqa: BLE001 - progress is cosmetic
            pass
    return report


def _analysis_outputs(result: AnalysisResult) -> tuple:
    figs = render_analysis(result)
    files = [result.files[k] for k in ("textgrid", "csv", "json", "model", "summary") if k in result.files]
    summary = result.summary()
    return (figs["timeline"], figs["transitions"], figs["durations"], figs["loglik"], figs["sweep"],
            figs["latency"], summary, files or None)


def _segment_state(result: AnalysisResult, audio: Any) -> dict:
    # training_key: the Live tab's model; model + settings: the first-second trellis re-reads
    # this run's model and features
    return {"audio": audio, "segments": [(s.label, s.start, s.end) for s in result.segments()],
            "training_key": result.training_key, "model": result.files.get("model") or result.model_file,
            "settings": result.settings}


async def analyze_fn(
    audio,
    model_type: str = DEFAULTS.model_type,
    num_states: int = DEFAULTS.num_states,
    num_mixtures: int = DEFAULTS.num_mixtures,
    covariance_type: str = DEFAULTS.covariance_type,
    topology: str = DEFAULTS.topology,
    max_iter: int = DEFAULTS.max_iter,
    tol: float = DEFAULTS.tol,
    feature_kind: str = DEFAULTS.feature_kind,
    num_mels: int = DEFAULTS.num_mels,
    num_ceps: int = DEFAULTS.num_ceps,
    deltas: int = DEFAULTS.deltas,
    max_duration: int = DEFAULTS.max_duration,
    duration_dist: str = DEFAULTS.duration_dist,
    device: str = DEFAULTS.device,
    seed: int = DEFAULTS.seed,
    sweep_states: str = DEFAULTS.sweep_states,
    sweep_mixtures: str = DEFAULTS.sweep_mixtures,
    decoder: str = DEFAULTS.decoder,
    runs: list | None = None,
    progress=gr.Progress(),
    request: gr.Request = None,
):
    settings = AnalysisSettings(
        model_type=model_type, num_states=num_states, num_mixtures=num_mixtures, covariance_type=covariance_type,
        topology=topology, max_iter=max_iter, tol=tol, feature_kind=feature_kind, num_mels=num_mels,
        num_ceps=num_ceps, deltas=deltas, max_duration=max_duration, duration_dist=duration_dist, device=device,
        seed=seed, sweep_states=sweep_states or "", sweep_mixtures=sweep_mixtures or "", decoder=decoder,
    )
    scope = getattr(request, "session_hash", None) or ""
    try:
        def work():
            result = P.analyze(audio, settings, progress=WorkProgress(settings, _gr_progress(progress)), scope=scope)
            # the session's run history (gr.State) gains this run: the Runs tab and /history
            return _analysis_outputs(result) + (_segment_state(result, audio), H.add_run(runs, result, audio))

        # figures are rendered in the worker too, so the event loop never waits on them
        return await run_cancellable(work, request)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a clear message
        error = _user_error(exc)
        _remember_error(request, "analyze", error)
        raise error from None


async def align_fn(
    audio,
    transcript: str,
    transcript_kind: str = "text",
    states_per_phone: int = ALIGN_DEFAULTS["states_per_phone"],
    reference_textgrid=None,
    reference_tier: str = "",
    feature_kind: str = DEFAULTS.feature_kind,
    max_iter: int = ALIGN_DEFAULTS["iterations"],
    device: str = DEFAULTS.device,
    seed: int = DEFAULTS.seed,
    durations: str = "gamma",
    phone_models=None,
    dictionary=None,
    progress=gr.Progress(),
    request: gr.Request = None,
):
    from components import alignment as A

    try:
        result = await run_cancellable(lambda: A.align(
            audio, transcript, transcript_kind=transcript_kind, states_per_phone=states_per_phone,
            reference_textgrid=reference_textgrid, reference_tier=reference_tier, feature_kind=feature_kind,
            max_iter=max_iter, device=device, seed=seed, durations=durations, phone_models=phone_models,
            dictionary=dictionary, progress=_gr_progress(progress)), request)
    except Exception as exc:  # noqa: BLE001
        error = _user_error(exc)
        _remember_error(request, "align", error)
        raise error from None
    for note in result.warnings:
        gr.Warning(public_message(note), duration=None)
    return _alignment_outputs(result, audio)


def _alignment_outputs(result, audio) -> tuple:
    """The Align tab's outputs: timeline, hypothesis vs reference, latency, summary, downloads, state."""
    figs = render_alignment(result)
    files = [result.files[k] for k in ("textgrid", "csv", "json", "summary", "durations", "durations_npy")
             if k in result.files]
    seg_state = {"audio": audio, "segments": [(s.label, s.start, s.end) for s in result.phones]}
    return figs["timeline"], figs["alignment"], figs["latency"], result.summary(), files or None, seg_state


def sample_alignment():
    """The bundled sample aligned with its transcript and scored against its reference, so the
    Align tab opens filled like the Analyze tab (about half a second at start-up); None (and a
    logged warning) when the sample or its transcript is missing or the alignment fails."""
    from components import alignment as A

    text, kind = _sample_transcript()
    if not P.SAMPLE_AUDIO.exists() or not text:
        return None
    try:
        return A.align(str(P.SAMPLE_AUDIO), text, transcript_kind=kind, reference_textgrid=_sample_reference())
    except Exception:  # noqa: BLE001 - a preview must never keep the dashboard from starting
        log.warning("the Align tab opens empty: aligning the bundled sample failed\n%s", traceback.format_exc())
        return None


def _clip_name(audio: Any) -> str | None:
    if audio is None:
        return None
    if isinstance(audio, dict):
        audio = audio.get("path") or audio.get("orig_name")
    if isinstance(audio, (str, Path)):
        return Path(str(audio)).name
    return "recording"


def clip_caption(state: dict | None) -> str:
    """The clip the figures below belong to."""
    name = _clip_name((state or {}).get("audio"))
    return f"Results for **{name}**" if name else "*No results yet: press the button to run.*"


def _new_clip_analyze(audio):
    """Clears what belongs to the previous clip: the 8 figures/summary/downloads, the segment
    state and picker, the caption, the error note, the BIC/AIC note and the trellis. The run
    history (Runs tab) keeps every run."""
    name = _clip_name(audio)
    text = f"New clip **{name}**: press **Analyze** to see its results." if name else "*No clip: upload or record one.*"
    return (*([None] * 8), None, gr.update(choices=[], value=None), text, _hide_note(), "", None, "")


def _new_clip_align(audio):
    name = _clip_name(audio)
    text = f"New clip **{name}**: press **Align** to see its results." if name else "*No clip: upload or record one.*"
    return (*([None] * 6), gr.update(choices=[], value=None), text, _hide_note())


def _own_clip_align(transcript: str):
    sample_text, _ = _sample_transcript()
    keep = transcript if (transcript or "").strip() != sample_text.strip() else ""
    return None, "text", keep


def clip_trellis_fn(state: dict | None, step, request: gr.Request = None):
    """The Analyze tab's trellis: the first second of the clip under the run's model."""
    from components.trellis import clip_trellis, column_table, trellis_figure

    state = state or {}
    scope = getattr(request, "session_hash", None) or ""  # the session's feature cache, as Analyze
    try:
        tr, shift = clip_trellis(state.get("audio"), state.get("settings") or {}, state.get("model"), scope=scope)
    except ValueError as exc:
        raise gr.Error(str(exc), title="Input problem") from None
    except Exception as exc:  # noqa: BLE001
        raise _user_error(exc) from None
    T = tr.filtered.shape[0]
    s = int(min(max(int(step or 1), 1), T)) - 1
    return (trellis_figure(tr, s, frame_shift=shift, title="Trellis, first second"), column_table(tr, s),
            gr.update(maximum=T, value=s + 1))


def segment_choices(state: dict | None):
    segs = (state or {}).get("segments") or []
    choices = [(f"{i}: {lab}  {a:.2f}–{b:.2f} s", i) for i, (lab, a, b) in enumerate(segs)]
    return gr.update(choices=choices, value=None)


def play_segment(state: dict | None, index):
    """The audio of segment ``index`` of the session's last analysis or alignment (UI and API)."""
    if index is None:
        return None
    segments = (state or {}).get("segments") or []
    try:
        number = int(index)
    except (TypeError, ValueError):
        raise gr.Error(f"segment index must be a whole number, got {index!r}", title="Input problem") from None
    if not 0 <= number < len(segments):
        have = f"segments 0-{len(segments) - 1}" if segments else "no segments: run it first in this session"
        raise gr.Error(f"no segment {number}: the last run has {have}", title="Input problem")
    try:
        label, start, end = segments[number]
        loaded = P.load(state["audio"])
        return P.segment_audio(loaded.samples, loaded.audio.sample_rate, start, end)
    except Exception as exc:  # noqa: BLE001
        raise _user_error(exc) from None


def build_demo(initial: AnalysisResult | None = None, initial_audio: str | None = None,
               initial_settings: AnalysisSettings | None = None, initial_alignment=None) -> gr.Blocks:
    """The dashboard. ``initial`` (the precomputed sample) fills every Analyze figure at start-up,
    ``initial_alignment`` (:func:`sample_alignment`) every Align figure."""
    s0 = initial_settings or DEFAULTS
    init_out = _analysis_outputs(initial) if initial is not None else (None,) * 8
    init_state = _segment_state(initial, initial_audio) if initial is not None else None
    a_init = _alignment_outputs(initial_alignment, initial_audio) if initial_alignment is not None else (None,) * 6
    examples = example_clips()

    with gr.Blocks(title="HMM Studio", delete_cache=(1800, 3600)) as demo:
        _BLOCKS[:] = [demo]
        gr.Markdown(INTRO)
        runs_state = gr.State([])  # this session's run history (components/history.py)
        with gr.Tab("Analyze"):
            # The run controls stay in view (sticky bar, CSS #run-bar): the button, the state count
            # and the progress with its time estimate.
            with gr.Row(elem_id="run-bar", equal_height=True):
                run = gr.Button("Analyze", variant="primary", elem_id="analyze-button", scale=0, min_width=120)
                cancel = gr.Button("Cancel", variant="stop", elem_id="analyze-cancel", scale=0, min_width=90)
                num_states = gr.Slider(1, 64, value=s0.num_states, step=1, label="States K", elem_id="analyze-states",
                                       info=HELP["num_states"], scale=2)
                run_status = gr.Markdown(after_analysis_text(initial), elem_id="run-status")
                note = gr.Markdown(visible=False, elem_id="analyze-error", elem_classes="hmm-error")
            with gr.Row():
                with gr.Column(scale=1, min_width=300):
                    audio = gr.Audio(value=initial_audio, sources=["upload", "microphone"], type="filepath",
                                     label=f"Audio (≤ {P.MAX_AUDIO_SECONDS:g} s)", elem_id="analyze-audio")
                    if examples:
                        gr.Examples(examples=[[e] for e in examples], inputs=[audio], label="Example clips",
                                    example_labels=[Path(e).name for e in examples])
                    with gr.Accordion("Model", open=True):
                        model_type = gr.Radio([("Gaussian", "gaussian"), ("Gaussian mixture", "gmm"),
                                               ("Semi-Markov", "semi-markov")], value=s0.model_type,
                                              label="Model type", info=HELP["model_type"])
                        num_mixtures = gr.Slider(1, 8, value=s0.num_mixtures, step=1,
                                                 label="Mixtures per state (Gaussian mixture)", info=HELP["num_mixtures"])
                        covariance_type = gr.Dropdown(["diag", "full", "spherical", "tied"],
                                                      value=s0.covariance_type, label="Covariance",
                                                      info=HELP["covariance_type"])
                        topology = gr.Radio([("Ergodic", "ergodic"), ("Left-to-right", "left-to-right"),
                                             ("Bakis", "bakis")], value=s0.topology, label="Topology",
                                            info=HELP["topology"])
                        max_duration = gr.Slider(2, 200, value=s0.max_duration, step=1,
                                                 label="Max state duration, frames (semi-Markov)",
                                                 info=HELP["max_duration"])
                        duration_dist = gr.Dropdown(list(P.DURATION_DISTS), value=s0.duration_dist,
                                                    label="Duration distribution (semi-Markov)",
                                                    info=HELP["duration_dist"])
                    with gr.Accordion("Training", open=False):
                        max_iter = gr.Slider(1, 200, value=s0.max_iter, step=1, label="EM iterations (max)",
                                             info=HELP["max_iter"])
                        tol = gr.Number(value=s0.tol, label="Tolerance (log-likelihood gain per frame)",
                                        info=HELP["tol"])
                        seed = gr.Number(value=s0.seed, precision=0, label="Seed", info=HELP["seed"])
                        device = gr.Radio(["auto", "cpu", "cuda"], value=s0.device, label="Device",
                                          info=HELP["device"])
                    with gr.Accordion("Features", open=False):
                        feature_kind = gr.Radio([("MFCC", "mfcc"), ("Log-mel", "logmel")], value=s0.feature_kind,
                                                label="Features", info=HELP["feature_kind"])
                        num_mels = gr.Slider(8, 128, value=s0.num_mels, step=1, label="Mel bands",
                                             info=HELP["num_mels"])
                        num_ceps = gr.Slider(2, 40, value=s0.num_ceps, step=1, label="Cepstra (MFCC)",
                                             info=HELP["num_ceps"])
                        deltas = gr.Radio([0, 1, 2], value=s0.deltas, label="Deltas (0 / Δ / ΔΔ)", info=HELP["deltas"])
                    with gr.Accordion("Model selection (BIC / AIC)", open=False):
                        sweep_states = gr.Textbox(value=s0.sweep_states, label="Sweep state counts",
                                                  placeholder="e.g. 2,4,8,16 (empty: no sweep)",
                                                  info=HELP["sweep_states"])
                        sweep_mixtures = gr.Textbox(value=s0.sweep_mixtures, label="Sweep mixture counts (GMM)",
                                                    placeholder="e.g. 1,2,4", info=HELP["sweep_mixtures"])
                    decoder = gr.Radio([("Viterbi", "viterbi"), ("Posterior (per-frame argmax)", "posterior")],
                                       value=s0.decoder, label="Decoder", info=HELP["decoder"])
                with gr.Column(scale=3, elem_classes=["hmm-figures"]):
                    caption = gr.Markdown(clip_caption(init_state), elem_id="analyze-clip")
                    timeline = gr.Plot(value=init_out[0], label="Timeline · click a segment to play it",
                                       elem_id="plot-timeline", elem_classes=["hmm-clickable"])
                    with gr.Row():
                        transitions = gr.Plot(value=init_out[1], label="Transition matrix", elem_id="plot-transitions")
                        loglik = gr.Plot(value=init_out[3], label="EM log-likelihood", elem_id="plot-loglik")
                    durations = gr.Plot(value=init_out[2], label="State durations", elem_id="plot-durations")
                    with gr.Row():
                        with gr.Column():
                            sweep = gr.Plot(value=init_out[4], label="BIC / AIC", elem_id="plot-sweep")
                            sweep_note = gr.Markdown(criteria_text(initial), elem_id="sweep-note")
                        latency = gr.Plot(value=init_out[5], label="Latency and memory", elem_id="plot-latency")
                    with gr.Row():
                        with gr.Column():
                            seg_pick = gr.Dropdown(label="Play a segment", choices=[], interactive=True,
                                                   allow_custom_value=True,  # the API passes an index
                                                   info="Or click the segment strip in the timeline.")
                            seg_audio = gr.Audio(label="Segment", interactive=False, type="numpy", autoplay=True,
                                                 elem_id="analyze-segment-audio")
                        downloads = gr.File(value=init_out[7], label="Downloads: TextGrid, CSV, JSON, model",
                                            file_count="multiple", interactive=False)
                    summary = gr.JSON(value=init_out[6], label="Summary (JSON)", open=False)
                    with gr.Accordion("Trellis of the first second: forward variables and Viterbi backpointers",
                                      open=False, elem_id="analyze-trellis"):
                        with gr.Row():
                            t_step = gr.Slider(1, 100, value=10, step=1, label="Step (frame)",
                                               info="Columns computed so far: move it to watch the recursions run")
                            t_btn = gr.Button("Show trellis", scale=0, min_width=140, elem_id="analyze-trellis-button")
                        t_plot = gr.Plot(label="Trellis (this run's model, first second)",
                                         elem_id="plot-analyze-trellis")
                        t_text = gr.Markdown()
            seg_state = gr.State(init_state)
            analyze_bridge = click_bridge("analyze-click", "#plot-timeline")

        inputs = [audio, model_type, num_states, num_mixtures, covariance_type, topology, max_iter, tol,
                  feature_kind, num_mels, num_ceps, deltas, max_duration, duration_dist, device, seed,
                  sweep_states, sweep_mixtures, decoder, runs_state]
        outputs = [timeline, transitions, durations, loglik, sweep, latency, summary, downloads, seg_state, runs_state]
        figures = [timeline, transitions, durations, loglik, sweep, latency, summary, downloads]
        # figures stay on screen, dimmed and marked "updating", while a run is in progress
        run.click(None, js="() => { document.body.classList.add('hmm-updating'); }", queue=False,
                  api_visibility="private")
        # Gradio admits lanes.ADMITTED compute requests; components.lanes runs them in a light
        # and a heavy lane, so enormous requests cannot take every slot.
        analysis = run.click(analyze_fn, inputs, outputs, api_name="analyze", concurrency_id="compute",
                             concurrency_limit=lanes.ADMITTED, show_progress_on=[run_status])
        analysis.then(None, js=_NOT_UPDATING, queue=False, api_visibility="private")
        redecode = decoder.input(analyze_fn, inputs, outputs, api_visibility="private", concurrency_id="compute",
                                 concurrency_limit=lanes.ADMITTED, show_progress="minimal")
        events = [analysis, redecode]
        for event in events:
            event.then(segment_choices, seg_state, seg_pick, api_visibility="private", queue=False)
            event.success(clip_caption, seg_state, caption, api_visibility="private", queue=False)
            event.failure(_error_note("analyze"), None, note, api_visibility="private")
        run.click(_hide_note, None, note, api_visibility="private", queue=False)
        cancel.click(None, None, None, cancels=events, js=_NOT_UPDATING, api_visibility="private", queue=False)
        # A figure belongs to its clip: a new clip clears them until it is analysed.
        audio.change(_new_clip_analyze, audio, [*figures, seg_state, seg_pick, caption, note, sweep_note, t_plot, t_text],
                     api_visibility="private", queue=False)
        seg_pick.input(play_segment, [seg_state, seg_pick], seg_audio, api_name="analyze_segment")
        analyze_bridge.change(play_clicked, [analyze_bridge, seg_state], seg_audio, api_visibility="private")
        demo.load(segment_choices, seg_state, seg_pick, api_visibility="private", queue=False)
        t_btn.click(clip_trellis_fn, [seg_state, t_step], [t_plot, t_text, t_step], api_visibility="private")
        t_step.release(clip_trellis_fn, [seg_state, t_step], [t_plot, t_text, t_step], api_visibility="private")

        with gr.Tab("Runs"):
            runs_ui = build_runs_tab(runs_state)
        for event in (analysis, redecode):  # both add a run to the history
            event.then(after_analysis, runs_state, [run_status, sweep_note] + runs_ui.refresh_outputs,
                       api_visibility="private", queue=False)

        with gr.Tab("Align"):
            gr.Markdown(ALIGN_INTRO, elem_classes="hmm-note")
            with gr.Row():
                with gr.Column(scale=1, min_width=300):
                    a_audio = gr.Audio(value=initial_audio, sources=["upload", "microphone"], type="filepath",
                                       label="Audio", elem_id="align-audio")
                    a_examples_slot = gr.Column()
                    sample_text, sample_kind = _sample_transcript()
                    transcript = gr.Textbox(value=sample_text, label="Transcript", lines=3,
                                            elem_id="align-transcript")
                    transcript_kind = gr.Radio([("Text (CMUdict, espeak-ng for other words)", "text"),
                                                ("Phones (space separated)", "phones")], value=sample_kind,
                                               label="Transcript is", elem_id="align-kind")
                    states_per_phone = gr.Slider(1, 5, value=ALIGN_DEFAULTS["states_per_phone"], step=1,
                                                 label="States per phone")
                    ref_tg = gr.File(value=_sample_reference(), label="Reference TextGrid (optional)",
                                     file_types=[".TextGrid", ".textgrid"], type="filepath", elem_id="align-reference")
                    ref_tier = gr.Textbox(value="", label="Reference tier (empty: the phone tier)")
                    with gr.Accordion("More", open=False, elem_id="align-more"):
                        a_features = gr.Radio([("MFCC", "mfcc"), ("Log-mel", "logmel")], value="mfcc",
                                              label="Features")
                        a_iter = gr.Slider(0, 100, value=ALIGN_DEFAULTS["iterations"], step=1,
                                           label="EM iterations (on this utterance)")
                        a_durations = gr.Radio([("HMM (self-loops)", "hmm"),
                                                ("Explicit gamma (semi-Markov)", "gamma"),
                                                ("Explicit Poisson (semi-Markov)", "poisson")],
                                               value="gamma", label="Phone durations")
                        a_device = gr.Radio(["auto", "cpu", "cuda"], value="auto", label="Device")
                        a_seed = gr.Number(value=0, precision=0, label="Seed")
                        a_models = gr.File(label="Phone models (optional)", file_types=[".pt"], type="filepath",
                                           elem_id="align-models")
                        a_dictionary = gr.File(label="Dictionary (optional)", type="filepath",
                                               elem_id="align-dictionary")
                        gr.Markdown("*Phone models*: a `phone_models.pt` from `python -m hmm_engine align` or "
                                    "`train-labelled`; they align the clip and nothing is trained here. "
                                    "*Dictionary*: a pronunciation dictionary in CMUdict / MFA text format "
                                    "(`WORD PH1 PH2 ...`, `WORD(2)` for variants); a text transcript's words are "
                                    "looked up there instead of espeak-ng.", elem_classes="hmm-note")
                    with gr.Row():
                        a_run = gr.Button("Align", variant="primary", elem_id="align-button", scale=3)
                        a_cancel = gr.Button("Cancel", variant="stop", elem_id="align-cancel", scale=1)
                    a_note = gr.Markdown(visible=False, elem_id="align-error", elem_classes="hmm-error")
                with gr.Column(scale=3):
                    a_caption = gr.Markdown(clip_caption(a_init[5]), elem_id="align-clip")
                    a_timeline = gr.Plot(value=a_init[0], label="Timeline: click a phone to play it",
                                         elem_id="plot-align-timeline", elem_classes=["hmm-clickable"])
                    a_fig = gr.Plot(value=a_init[1], label="Hypothesis vs reference: click a phone to play it",
                                    elem_id="plot-alignment", elem_classes=["hmm-clickable"])
                    a_latency = gr.Plot(value=a_init[2], label="Latency and memory", elem_id="plot-align-latency")
                    with gr.Row():
                        with gr.Column():
                            a_pick = gr.Dropdown(label="Play a phone", choices=[], interactive=True,
                                                 allow_custom_value=True)  # the API passes an index
                            a_seg_audio = gr.Audio(label="Segment", interactive=False, type="numpy", autoplay=True,
                                                   elem_id="align-segment-audio")
                        a_files = gr.File(value=a_init[4], label="Downloads: TextGrid, CSV, JSON, TTS durations",
                                          file_count="multiple", interactive=False)
                    a_summary = gr.JSON(value=a_init[3], label="Summary and metrics (JSON)", open=False)
            a_state = gr.State(a_init[5])
            align_bridge = click_bridge("align-click", "#plot-align-timeline, #plot-alignment")
        align_bridge.change(play_clicked, [align_bridge, a_state], a_seg_audio, api_visibility="private")
        a_inputs = [a_audio, transcript, transcript_kind, states_per_phone, ref_tg, ref_tier, a_features, a_iter,
                    a_device, a_seed, a_durations, a_models, a_dictionary]
        align_rows = align_examples()
        if align_rows:
            with a_examples_slot:
                gr.Examples(examples=align_rows, inputs=[a_audio, transcript, transcript_kind, ref_tg],
                            label="Example clips (with reference where one exists)",
                            example_labels=[Path(r[0]).name for r in align_rows])
        a_event = a_run.click(align_fn, a_inputs, [a_timeline, a_fig, a_latency, a_summary, a_files, a_state],
                              api_name="align", concurrency_id="compute", concurrency_limit=lanes.ADMITTED)
        a_event.then(segment_choices, a_state, a_pick, api_visibility="private", queue=False)
        a_event.success(clip_caption, a_state, a_caption, api_visibility="private", queue=False)
        a_event.failure(_error_note("align"), None, a_note, api_visibility="private")
        a_run.click(_hide_note, None, a_note, api_visibility="private", queue=False)
        a_cancel.click(None, None, None, cancels=[a_event], api_visibility="private", queue=False)
        a_audio.change(_new_clip_align, a_audio,
                       [a_timeline, a_fig, a_latency, a_summary, a_files, a_state, a_pick, a_caption, a_note],
                       api_visibility="private", queue=False)
        # The user's own clip (not an example, which sets its own transcript and reference):
        # the sample's reference and "phones" setting do not belong to it.
        for trigger in (a_audio.upload, a_audio.stop_recording, a_audio.clear):
            trigger(_own_clip_align, transcript, [ref_tg, transcript_kind, transcript],
                    api_visibility="private", queue=False)
        a_pick.input(play_segment, [a_state, a_pick], a_seg_audio, api_name="align_segment")
        demo.load(segment_choices, a_state, a_pick, api_visibility="private", queue=False)
        from components.live import build_live_tab

        build_live_tab(seg_state)

        with gr.Tab("Lab"):
            build_lab_tab()
    return demo


def align_examples() -> list[list]:
    """Bundled clips for the Align tab: phones + reference TextGrid where the assets have
    them (so every boundary is scored), otherwise the word transcript."""
    rows = []
    for clip in example_clips():
        p = Path(clip)
        phones, words, tg = (p.parent / (p.stem + ".phones.lab"), p.with_suffix(".lab"), p.with_suffix(".TextGrid"))
        if phones.exists() and tg.exists():
            rows.append([clip, phones.read_text(encoding="utf-8").strip(), "phones", str(tg)])
        elif words.exists():
            rows.append([clip, words.read_text(encoding="utf-8").strip(), "text", None])
    return rows


def _sample_transcript() -> tuple[str, str]:
    """The sample's transcript: its phones when given (same symbols as the reference
    TextGrid, so every boundary can be scored), else its text."""
    for suffix, kind in ((".phones.lab", "phones"), (".lab", "text")):
        lab = P.SAMPLE_AUDIO.parent / (P.SAMPLE_AUDIO.stem + suffix)
        try:
            return lab.read_text(encoding="utf-8").strip(), kind
        except OSError:
            continue
    return "", "text"


def _sample_reference() -> str | None:
    tg = P.SAMPLE_AUDIO.with_suffix(".TextGrid")
    return str(tg) if tg.exists() else None
