"""Results -> the dashboard's figures (no Gradio here, so it is testable on its own)."""

from __future__ import annotations

import time

from components import figures as F
from components.results import AlignView, AnalysisResult

ANALYSIS_FIGURES = ("timeline", "transitions", "durations", "loglik", "sweep", "latency")
ALIGNMENT_FIGURES = ("timeline", "alignment", "latency")


def render_analysis(r: AnalysisResult) -> dict:
    """All analysis figures; the latency panel includes the time spent plotting the others."""
    t0 = time.perf_counter()
    segs = r.segments()
    figs = {
        "timeline": F.timeline_figure(
            r.duration, r.frame_shift, db=r.spectrogram_db, freqs=r.freqs, posteriors=r.posteriors,
            path=r.path, segments=segs,
            title=f"Timeline · K={r.num_states} · {r.settings.get('decoder', 'viterbi')}"),
        "transitions": F.transition_figure(r.transmat),
        "durations": F.duration_figure(r.path, r.frame_shift, r.num_states, transmat=r.transmat,
                                       duration_pmf=r.duration_pmf),
        "loglik": F.loglik_figure(r.history, tol=r.settings.get("tol"), num_frames=r.num_frames,
                                  final=r.log_likelihood, max_iter=r.settings.get("max_iter")),
        "sweep": (F.sweep_figure(r.sweep, current=r.num_states, current_point={"bic": r.bic, "aic": r.aic})
                  if r.sweep else _sweep_from_model(r)),
    }
    r.timings["plotting"] = time.perf_counter() - t0
    figs["latency"] = F.latency_figure(r.timings, r.peak_rss_mb, r.peak_gpu_mb, r.rtf, r.device,
                                       r.duration, cached=r.cached)
    return figs


def _sweep_from_model(r: AnalysisResult):
    """Without a sweep grid, the figure shows the trained model's own BIC/AIC point."""
    fig = F.sweep_figure([{"num_states": r.num_states, "num_mixtures": r.settings.get("num_mixtures", 1)
                           if r.settings.get("model_type") == "gmm" else 1, "bic": r.bic, "aic": r.aic}],
                         title="BIC / AIC of this model only")
    fig.add_annotation(text="give sweep state counts (e.g. 2,4,8,16) for a curve", xref="paper", yref="paper",
                       x=0.5, y=1.0, yanchor="bottom", showarrow=False, font=dict(size=10))
    return fig


def render_alignment(r: AlignView) -> dict:
    t0 = time.perf_counter()
    tiers = []
    if r.words:
        tiers.append(("words", r.words))
    tiers.append(("phones (hyp)", r.phones))
    if r.reference:
        tiers.append(("phones (ref)", r.reference))
    acc = None
    if r.metrics:
        acc = {f"{t}ms": r.metrics.get(f"within_{t}ms_pct", float("nan")) / 100.0 for t in (10, 20, 25, 50)
               if r.metrics.get(f"within_{t}ms_pct") is not None}
    figs = {
        "timeline": F.timeline_figure(r.duration, r.frame_shift, db=r.spectrogram_db, freqs=r.freqs,
                                      segments=r.phones, tiers=tiers,
                                      title="Timeline · aligned phones"),
        "alignment": F.alignment_figure(r.phones, r.reference or None, words=r.words, duration=r.duration,
                                        accuracy=acc or None, boundary_errors=r.boundary_errors or None),
    }
    r.timings["plotting"] = time.perf_counter() - t0
    figs["latency"] = F.latency_figure(r.timings, r.peak_rss_mb, r.peak_gpu_mb, r.rtf, r.device, r.duration)
    return figs
