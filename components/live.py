"""The Live tab: microphone -> streaming features -> streaming Viterbi, while the user speaks.

The browser sends microphone chunks (Gradio's streaming ``gr.Audio`` and its ``.stream()``
event, every :data:`STREAM_EVERY` s) at its own rate; each chunk is resampled to 16 kHz,
cut into feature frames (:class:`hmm_engine.frontend.stream.StreamingFeatures`: the model's
feature settings, running CMVN) and pushed into ``model.stream(lag)``. The figure shows the
last :data:`WINDOW_SECONDS` s: spectrogram, committed Viterbi states, filtered posteriors
p(z_t | x_0..t), and the processing time of every chunk.

The model: the one the session's last **Analyze** run trained (the bundled sample's until
then), or one fitted on the first :data:`FIT_SECONDS` s of the stream itself. Each session
has one stream (its state lives in a ``gr.State``); at most :data:`MAX_STREAMS` streams run
at once (their own concurrency group, so analyses do not wait for them) and each stops after
:data:`TIME_LIMIT` s.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Optional

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from components import pipeline as P
from components.figures import state_colour
from components.results import AnalysisSettings
from hmm_engine.errors import HMMStudioError
from hmm_engine.threads import single_thread

STREAM_EVERY = 0.5  # seconds of audio per chunk sent by the browser
TIME_LIMIT = int(os.environ.get("HMM_STUDIO_LIVE_SECONDS", "120"))  # seconds a stream may run
MAX_STREAMS = int(os.environ.get("HMM_STUDIO_LIVE_STREAMS", "4"))  # concurrent streams, all sessions
WINDOW_SECONDS = 6.0  # what the scrolling figure shows
FIT_SECONDS = 3.0  # audio collected before fitting a model on the stream itself
FIT_STATES = 8
FREQ_BINS = 64  # spectrogram rows sent to the browser
LAG_CHOICES = {"exact": None, "lag 20 frames (200 ms)": 20}


class LiveError(HMMStudioError):
    """A live-stream problem shown to the user as is."""


@dataclasses.dataclass
class LiveSession:
    """One microphone stream: its front end, decoder and what the figure shows."""

    features: Any  # StreamingFeatures
    decoder: Any  # StreamDecoder, None while collecting audio to fit a model on
    model_name: str
    settings: AnalysisSettings
    frame_shift: float
    num_states: int
    lag: Optional[int]
    pending_frames: list = dataclasses.field(default_factory=list)  # before a fitted model exists
    spectra: list = dataclasses.field(default_factory=list)  # [FREQ_BINS] dB rows
    filtered: list = dataclasses.field(default_factory=list)  # [K] rows
    states: list = dataclasses.field(default_factory=list)  # committed states, frame order
    frames: int = 0  # frames decoded
    first_frame: int = 0  # frame index of spectra[0] / filtered[0] (the window scrolls)
    first_state: int = 0  # frame index of states[0]
    chunk_ms: list = dataclasses.field(default_factory=list)  # processing time per chunk
    chunk_end: list = dataclasses.field(default_factory=list)  # stream time at each chunk's end, s
    audio_seconds: float = 0.0
    compute_seconds: float = 0.0
    fit_seconds: float = 0.0

    def trim(self) -> None:
        """Keep the last WINDOW_SECONDS of everything shown (memory stays bounded)."""
        keep = int(WINDOW_SECONDS / self.frame_shift)
        for name, first in (("spectra", "first_frame"), ("states", "first_state")):
            rows = getattr(self, name)
            if len(rows) > keep:
                drop = len(rows) - keep
                setattr(self, name, rows[drop:])
                setattr(self, first, getattr(self, first) + drop)
        if len(self.filtered) > keep:
            self.filtered = self.filtered[len(self.filtered) - keep:]
        if len(self.chunk_ms) > 200:
            self.chunk_ms, self.chunk_end = self.chunk_ms[-200:], self.chunk_end[-200:]


# ------------------------------------------------------------------------------ model choice


def _sample_model():
    """The bundled sample's model (``assets/precomputed``) and the settings it was trained with."""
    from components.precomputed import sample_settings

    path = P.PRECOMPUTED_DIR / f"{P.SAMPLE_AUDIO.stem}.model.pt"
    if not path.exists():
        raise LiveError("no model to decode with: run Analyze first, or choose 'fit on the first seconds'")
    return P.load_model(path), sample_settings(), f"the bundled sample's model ({path.name})"


def session_model(analysis: Optional[dict]):
    """The model of this session's last Analyze run (in the trained-model cache), else the sample's."""
    key = (analysis or {}).get("training_key")
    trained = P.MODEL_CACHE.get(key) if key else None
    settings = (analysis or {}).get("settings")
    if trained is None or not settings:
        return _sample_model()
    known = {f.name for f in dataclasses.fields(AnalysisSettings)}
    s = AnalysisSettings(**{k: v for k, v in settings.items() if k in known})
    name = f"this session's Analyze model ({s.model_type}, K={s.num_states}, {s.feature_kind})"
    return trained.model, s, name


def _decoder(model, lag):
    try:
        return model.stream(lag=lag)
    except HMMStudioError as exc:
        raise LiveError(f"this model cannot stream: {exc}") from None


def new_session(rate: int, analysis: Optional[dict], source: str, lag_choice: str) -> LiveSession:
    from hmm_engine.frontend.stream import StreamingFeatures

    lag = LAG_CHOICES.get(lag_choice, None)
    if source == "fit":
        model, settings, name = None, P.validate_settings(AnalysisSettings(num_states=FIT_STATES)), ""
        num_states = FIT_STATES
    else:
        model, settings, name = session_model(analysis)
        num_states = int(model.num_states)
    cfg = P.feature_config(settings)
    feats = StreamingFeatures(cfg, rate, P.ANALYSIS_SR, max_seconds=TIME_LIMIT + 10)
    session = LiveSession(feats, _decoder(model, lag) if model is not None else None, name, settings,
                          cfg.frame_shift_ms / 1000.0, num_states, lag)
    return session


def _fit_on_stream(session: LiveSession) -> None:
    """Fit the default Gaussian HMM on the collected frames, then decode them."""
    from hmm_engine import GaussianHMM

    x = torch.cat(session.pending_frames)
    t0 = time.perf_counter()
    model = GaussianHMM(FIT_STATES, x.shape[1], covariance_type="diag")
    model.fit(x, max_iter=15, tol=1e-3, seed=0)
    session.fit_seconds = time.perf_counter() - t0
    session.model_name = f"fitted on the first {FIT_SECONDS:g} s of this stream (K={FIT_STATES}, {session.fit_seconds:.2f} s)"
    session.decoder = _decoder(model, session.lag)
    session.pending_frames = []
    _decode(session, x)


def _decode(session: LiveSession, x: torch.Tensor) -> None:
    step = session.decoder.push(x)
    session.filtered.extend(step.filtered.float().cpu().numpy())
    session.states.extend(step.states.tolist())
    session.frames += x.shape[0]


def _reduce_bins(db: np.ndarray) -> np.ndarray:
    F = db.shape[1]
    edges = np.linspace(0, F, FREQ_BINS + 1).astype(int)
    return np.stack([db[:, a:max(b, a + 1)].mean(1) for a, b in zip(edges[:-1], edges[1:])], 1)


def process_chunk(session: LiveSession, rate: int, samples: np.ndarray, final: bool = False) -> None:
    t0 = time.perf_counter()
    x, spectra = session.features.push(samples, rate, final=final)
    if len(spectra):
        session.spectra.extend(_reduce_bins(spectra))
    if x.shape[0]:
        if session.decoder is None:
            session.pending_frames.append(x)
            if sum(p.shape[0] for p in session.pending_frames) * session.frame_shift >= FIT_SECONDS or final:
                _fit_on_stream(session)
        else:
            _decode(session, x)
    if final and session.decoder is not None and not session.decoder.flushed and session.decoder.t:
        session.states.extend(session.decoder.flush().states.tolist())
    elapsed = time.perf_counter() - t0
    session.compute_seconds += elapsed
    session.audio_seconds += len(samples) / rate if samples is not None else 0.0
    session.chunk_ms.append(elapsed * 1e3)
    session.chunk_end.append(session.features.seconds)
    session.trim()


# ------------------------------------------------------------------------------ outputs


def live_figure(session: Optional[LiveSession]) -> go.Figure:
    fig = make_subplots(rows=4, cols=1, shared_xaxes=True, vertical_spacing=0.04,
                        row_heights=[0.38, 0.12, 0.32, 0.18],
                        subplot_titles=("spectrogram", "committed Viterbi states", "filtered posteriors p(z_t | x_0..t)",
                                        "processing time per chunk (ms)"))
    fig.update_layout(height=640, margin=dict(l=60, r=20, t=50, b=40), showlegend=False,
                      title=dict(text="Live: speak into the microphone" if session is None else
                                 f"Live — {session.model_name}"))
    if session is None:
        return fig
    shift = session.frame_shift
    if session.spectra:
        db = np.asarray(session.spectra)
        t = (session.first_frame + np.arange(len(db)) + 0.5) * shift
        top = float(db.max())
        fig.add_trace(go.Heatmap(z=np.round(db.T, 1), x=t, y=np.arange(FREQ_BINS) * (P.ANALYSIS_SR / 2 / FREQ_BINS),
                                 zmin=top - 80, zmax=top, colorscale="Magma", showscale=False, name="spectrogram"),
                      row=1, col=1)
    if session.states:
        s = np.asarray(session.states)
        t = (session.first_state + np.arange(len(s)) + 0.5) * shift
        fig.add_trace(go.Scatter(x=t, y=s, mode="markers", name="committed states",
                                 marker=dict(size=5, color=[state_colour(int(k)) for k in s])), row=2, col=1)
    fig.update_yaxes(range=[-0.5, session.num_states - 0.5], row=2, col=1, title_text="state")
    if session.filtered:
        post = np.asarray(session.filtered)
        start = session.frames - len(post)
        t = (start + np.arange(len(post)) + 0.5) * shift
        fig.add_trace(go.Heatmap(z=np.round(post.T, 3), x=t, y=np.arange(post.shape[1]), zmin=0, zmax=1,
                                 colorscale="Viridis", showscale=False, name="filtered posteriors"), row=3, col=1)
    if session.chunk_ms:
        fig.add_trace(go.Scatter(x=session.chunk_end, y=session.chunk_ms, mode="lines+markers",
                                 name="chunk latency"), row=4, col=1)
    now = max(session.features.seconds, WINDOW_SECONDS)
    fig.update_xaxes(range=[now - WINDOW_SECONDS, now])
    fig.update_xaxes(title_text="time (s)", row=4, col=1)
    return fig


def live_summary(session: Optional[LiveSession]) -> dict:
    if session is None:
        return {"status": "waiting for the microphone"}
    ms = np.asarray(session.chunk_ms) if session.chunk_ms else np.zeros(1)
    pending = (session.decoder.t - session.decoder.committed) if session.decoder is not None else 0
    return {
        "model": session.model_name,
        "decoding": "exact (states committed when every surviving path agrees)" if session.lag is None
        else f"fixed lag {session.lag} frames",
        "seconds": round(session.features.seconds, 2),
        "frames_decoded": session.frames,
        "states_committed": session.first_state + len(session.states),
        "frames_pending": int(pending),
        "last_states": [int(s) for s in session.states[-20:]],
        "chunk_ms_last": round(float(ms[-1]), 2),
        "chunk_ms_median": round(float(np.median(ms)), 2),
        "real_time_factor": round(session.compute_seconds / max(session.audio_seconds, 1e-9), 4),
        "fit_seconds": round(session.fit_seconds, 3),
    }


def live_step(chunk, session: Optional[LiveSession], analysis: Optional[dict], source: str = "analysis",
              lag_choice: str = "exact"):
    """The ``.stream()`` handler: one microphone chunk ``(rate, samples)`` in; figure,
    summary and the session's stream state out."""
    import gradio as gr

    if chunk is None:
        return live_figure(session), live_summary(session), session
    try:
        rate, samples = chunk
        if session is None or session.features.source_rate != int(rate):
            session = new_session(int(rate), analysis, source, lag_choice)
        with torch.no_grad(), single_thread():  # small ops: one thread (see hmm_engine.threads)
            process_chunk(session, int(rate), np.asarray(samples))
    except HMMStudioError as exc:
        raise gr.Error(str(exc), title="Live input problem") from None
    return live_figure(session), live_summary(session), session


def live_stop(session: Optional[LiveSession]):
    """Recording stopped: commit the rest of the path; the next recording starts a new stream."""
    if session is not None:
        with torch.no_grad(), single_thread():
            process_chunk(session, session.features.source_rate, np.zeros(0, dtype=np.int16), final=True)
    return live_figure(session), live_summary(session), None


def build_live_tab(analysis_state) -> None:
    """Add the Live tab to the enclosing ``gr.Blocks``; ``analysis_state`` is the Analyze tab's
    per-session state (its ``training_key`` and ``settings`` name the session's model)."""
    import gradio as gr

    with gr.Tab("Live"):
        gr.Markdown(
            "Speak into the microphone: every half second the new audio is decoded with a streaming "
            "Viterbi decoder. A state is **committed** once every surviving path agrees on it (exactly the "
            "offline Viterbi path), or at most 20 frames late with the fixed lag. The model is the one your last "
            "**Analyze** run trained (the sample's until then), or one fitted on your first "
            f"{FIT_SECONDS:g} seconds. Streams stop after {TIME_LIMIT} s.", elem_classes="hmm-note")
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                mic = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="Microphone",
                               elem_id="live-audio")
                source = gr.Radio([("Analyze tab's model", "analysis"), (f"Fit on the first {FIT_SECONDS:g} s", "fit")],
                                  value="analysis", label="Model", elem_id="live-source")
                lag = gr.Radio(list(LAG_CHOICES), value="exact", label="Commit states", elem_id="live-lag")
                summary = gr.JSON(value=live_summary(None), label="Stream", elem_id="live-summary")
            with gr.Column(scale=3):
                plot = gr.Plot(value=live_figure(None), label="Live decoding", elem_id="plot-live")
        state = gr.State(None)
        mic.stream(live_step, [mic, state, analysis_state, source, lag], [plot, summary, state],
                   stream_every=STREAM_EVERY, time_limit=TIME_LIMIT, concurrency_limit=MAX_STREAMS,
                   concurrency_id="live", api_visibility="private", show_progress="hidden")
        mic.stop_recording(live_stop, [state], [plot, summary, state], api_visibility="private", queue=False)
