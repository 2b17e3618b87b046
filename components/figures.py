"""Plotly figure builders for HMM Studio.

Every builder takes plain numpy arrays (or simple segment objects) and returns a
``plotly.graph_objects.Figure``; none of them needs a model (only the engine's segment
helpers and its boundary pairing), so they can be tested on hand-made inputs.

Time conventions (shared by every figure so that they line up):

* frame ``i`` stands for the interval ``[i * shift, (i + 1) * shift)`` seconds;
* heatmaps put their cells at the frame *centres* ``(i + 0.5) * shift`` so that each
  cell spans exactly its frame's interval;
* step plots (the Viterbi path) start each frame's step at ``i * shift`` and end the
  last one at ``T * shift``;
* segments are drawn from ``start`` to ``end`` seconds;
* every time axis is in seconds and spans ``[0, duration]``.

The timeline figure stacks spectrogram + segmentation, posteriors, Viterbi path (and
alignment tiers) on one shared x axis, so zooming one panel zooms all of them.
"""

from __future__ import annotations

import math
import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hmm_engine.alignment.metrics import compare_tiers
from hmm_engine.segments import Segment, label_runs, segments_from_frame_labels

__all__ = [
    "as_segments",
    "path_to_segments",
    "frame_centres",
    "spectrogram_figure",
    "posterior_figure",
    "viterbi_path_figure",
    "transition_figure",
    "duration_figure",
    "loglik_figure",
    "sweep_figure",
    "alignment_figure",
    "latency_figure",
    "timeline_figure",
    "STATE_COLOURS",
    "state_colour",
]

# A light template: the default plotly template adds ~8 kB of JSON to every figure.
_TEMPLATE = go.layout.Template(
    layout=dict(
        font=dict(family="Inter, Helvetica, Arial, sans-serif", size=12, color="#2a3f5f"),
        paper_bgcolor="white",
        plot_bgcolor="white",
        margin=dict(l=60, r=20, t=50, b=45),
        hoverlabel=dict(namelength=-1),
        xaxis=dict(gridcolor="#e5ecf6", zeroline=False, linecolor="#8a99b0", ticks="outside"),
        yaxis=dict(gridcolor="#e5ecf6", zeroline=False, linecolor="#8a99b0", ticks="outside"),
        colorway=[
            "#636efa", "#EF553B", "#00cc96", "#ab63fa", "#FFA15A",
            "#19d3f3", "#FF6692", "#B6E880", "#FF97FF", "#FECB52",
        ],
    )
)

# 24 distinguishable colours (plotly's Dark24), cycled for more states.
STATE_COLOURS = [
    "#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#222A2A", "#B68100",
    "#750D86", "#EB663B", "#511CFB", "#00A08B", "#FB00D1", "#FC0080", "#B2828D",
    "#6C7C32", "#778AAE", "#862A16", "#A777F1", "#620042", "#1616A7", "#DA60CA",
    "#6C4516", "#0D2A63", "#AF0038",
]

TIME_TITLE = "time (s)"


# Property validation costs ~0.1 s per figure with hundreds of shapes; the builders only
# set known properties, so it is off in the app. Tests turn it on (HMM_STUDIO_VALIDATE_FIGURES=1).
def _validate() -> bool:
    return os.environ.get("HMM_STUDIO_VALIDATE_FIGURES", "0") == "1"


def _blank() -> go.Figure:
    return go.Figure(_validate=_validate())


def _subplots(**kwargs) -> go.Figure:
    return make_subplots(figure=_blank(), **kwargs)


def state_colour(k: int) -> str:
    return STATE_COLOURS[int(k) % len(STATE_COLOURS)]


def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


# --------------------------------------------------------------------------- segments


def _one_segment(s: Any) -> Segment:
    if isinstance(s, Segment):
        return s
    if isinstance(s, Mapping):
        return Segment(str(s["label"]), float(s["start"]), float(s["end"]), s.get("score"))
    if hasattr(s, "start") and hasattr(s, "end"):
        score = getattr(s, "score", None)
        return Segment(str(getattr(s, "label", "")), float(s.start), float(s.end),
                           None if score is None else float(score))
    seq = tuple(s)
    score = float(seq[3]) if len(seq) > 3 and seq[3] is not None else None
    return Segment(str(seq[0]), float(seq[1]), float(seq[2]), score)


def as_segments(segments: Iterable[Any] | None) -> list[Segment]:
    """Normalise segments given as objects (``.label/.start/.end``), dicts or tuples."""
    if segments is None:
        return []
    return [_one_segment(s) for s in segments]


def path_to_segments(path: Sequence[int] | np.ndarray, frame_shift: float,
                     labels: Sequence[str] | None = None,
                     duration: float | None = None) -> list[Segment]:
    """Runs of equal state in a Viterbi path -> segments ``[i*shift, min(j*shift, duration))``
    (:func:`hmm_engine.segments.segments_from_frame_labels`; state ``k`` is named ``s{k}``
    unless ``labels`` names it). ``[]`` for an empty path."""
    p = np.asarray(path).reshape(-1)
    if p.size == 0:
        return []
    if labels is None:
        labels = [f"s{k}" for k in range(int(p.max()) + 1)]
    return segments_from_frame_labels(p, frame_shift, duration, names=labels)


def frame_centres(num_frames: int, frame_shift: float) -> np.ndarray:
    """Centre times (s) of frames ``0..T-1``; frame i spans ``[i*shift, (i+1)*shift)``."""
    return (np.arange(num_frames, dtype=np.float64) + 0.5) * float(frame_shift)


def _new_figure(title: str | None = None, **layout: Any) -> go.Figure:
    fig = _blank()
    fig.update_layout(template=_TEMPLATE, title=dict(text=title) if title else None, **layout)
    return fig


def _time_axis(duration: float) -> dict:
    return dict(title=dict(text=TIME_TITLE), range=[0.0, float(duration)])


def _downsample_rows(db: np.ndarray, freqs: np.ndarray, max_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Average adjacent frequency bins so at most ``max_bins`` remain (display only)."""
    f = db.shape[1]
    if f <= max_bins:
        return db, freqs
    factor = int(math.ceil(f / max_bins))
    n = f // factor
    db2 = db[:, : n * factor].reshape(db.shape[0], n, factor).mean(axis=2)
    fr2 = freqs[: n * factor].reshape(n, factor).mean(axis=1)
    return db2, fr2


# --------------------------------------------------------------------------- panels
# Panel functions add traces/shapes to one subplot of a figure (row/col, axis names),
# so the same code draws the standalone figures and the linked timeline.


def _axis_refs(fig: go.Figure, row: int | None, col: int | None) -> tuple[str, str]:
    if row is None:
        return "x", "y"
    sub = fig.get_subplot(row, col or 1)
    xa = sub.xaxis.plotly_name.replace("axis", "")
    ya = sub.yaxis.plotly_name.replace("axis", "")
    return xa, ya


def _colorbar_for(fig: go.Figure, row: int | None, col: int | None, title: str) -> dict:
    cb: dict[str, Any] = dict(title=dict(text=title, side="right"), thickness=12)
    if row is not None:
        sub = fig.get_subplot(row, col or 1)
        d0, d1 = sub.yaxis.domain
        cb.update(y=(d0 + d1) / 2, len=(d1 - d0), yanchor="middle")
    return cb


def _add_spectrogram_panel(fig, db, freqs, frame_shift, segments, row=None, col=None,
                           max_freq_bins=160, segment_bar=True, label_min_fraction=0.012):
    db = np.asarray(db, dtype=np.float32)
    freqs = np.asarray(freqs, dtype=np.float32)
    db, freqs = _downsample_rows(db, freqs, max_freq_bins)
    t = frame_centres(db.shape[0], frame_shift)
    xa, ya = _axis_refs(fig, row, col)
    fig.add_trace(
        go.Heatmap(
            z=_quantise_db(db).T, x=t, y=freqs, colorscale="Magma", name="spectrogram",
            colorbar=_colorbar_for(fig, row, col, "dB"),
            hovertemplate="t=%{x:.3f}s<br>f=%{y:.0f}Hz<br>%{z:.1f} dB<extra></extra>",
        ),
        row=row, col=col,
    )
    segs = as_segments(segments)
    if segs:
        fmax = float(freqs.max()) if freqs.size else 1.0
        shapes = []
        for s in segs:
            colour = _label_colour(s.label)
            shapes.append(dict(type="line", xref=xa, yref=f"{ya} domain", x0=s.start, x1=s.start,
                               y0=0, y1=1, line=dict(color="rgba(255,255,255,0.75)", width=1)))
            if segment_bar:
                shapes.append(dict(type="rect", xref=xa, yref=f"{ya} domain", x0=s.start, x1=s.end,
                                   y0=0.92, y1=1.0, fillcolor=colour, opacity=0.9,
                                   line=dict(color="white", width=0.5), layer="above"))
        _pending_shapes(fig).extend(shapes)
        mids = [(s.start + s.end) / 2 for s in segs]
        # Labels that would not fit are left blank (their hover still names them).
        total = max(s.end for s in segs) - min(s.start for s in segs)
        min_width = label_min_fraction * total
        fig.add_trace(
            go.Scatter(
                x=mids, y=[fmax * 0.96] * len(segs), mode="text",
                text=[s.label if s.end - s.start >= min_width else "" for s in segs],
                textfont=dict(color="white", size=10), name="segments",
                customdata=[[s.start, s.end, s.label] for s in segs], showlegend=False,
                hovertemplate="%{customdata[2]}<br>%{customdata[0]:.3f}–%{customdata[1]:.3f} s<extra></extra>",
            ),
            row=row, col=col,
        )
    return fig


def _quantise_db(db: np.ndarray, dynamic_range: float = 100.0) -> np.ndarray:
    """Round dB to integers (display only) within ``dynamic_range`` of the peak.

    Sent as int8 when it fits (a quarter of the float32 payload), int16 otherwise.
    """
    if db.size == 0:
        return db.astype(np.int16)
    finite = np.isfinite(db)
    top = float(db[finite].max()) if finite.any() else 0.0
    q = np.round(np.clip(np.where(finite, db, top - dynamic_range), top - dynamic_range, top))
    if q.min() >= -128 and q.max() <= 127:
        return q.astype(np.int8)
    return q.astype(np.int16)


def _label_colour(label: str) -> str:
    """State labels ``s<k>`` get state k's colour; other labels a stable hash colour."""
    if label.startswith("s") and label[1:].isdigit():
        return state_colour(int(label[1:]))
    h = sum((i + 1) * ord(c) for i, c in enumerate(label))
    return state_colour(h)


def _pending_shapes(fig: go.Figure) -> list:
    """Shapes collected as plain dicts and set once by :func:`_flush_shapes` (fast)."""
    if not hasattr(fig, "_hmm_shapes"):
        object.__setattr__(fig, "_hmm_shapes", [])
    return fig._hmm_shapes


def _flush_shapes(fig: go.Figure) -> go.Figure:
    shapes = getattr(fig, "_hmm_shapes", None)
    if shapes:
        fig.layout.shapes = shapes
        fig._hmm_shapes = []
    return fig


def _add_posterior_panel(fig, posteriors, frame_shift, path=None, row=None, col=None):
    post = np.asarray(posteriors, dtype=np.float32)
    T, K = post.shape
    t = frame_centres(T, frame_shift)
    fig.add_trace(
        go.Heatmap(
            z=post.T, x=t, y=np.arange(K), zmin=0.0, zmax=1.0, colorscale="Viridis",
            name="posterior", colorbar=_colorbar_for(fig, row, col, "γ"),
            hovertemplate="t=%{x:.3f}s<br>state %{y}<br>γ=%{z:.3f}<extra></extra>",
        ),
        row=row, col=col,
    )
    if path is not None:
        p = np.asarray(path).reshape(-1)
        fig.add_trace(
            go.Scatter(x=t, y=p, mode="lines", line=dict(color="white", width=1, shape="hv"),
                       name="Viterbi", showlegend=False, hoverinfo="skip"),
            row=row, col=col,
        )
    return fig


def _add_path_panel(fig, path, frame_shift, num_states=None, row=None, col=None):
    p = np.asarray(path).reshape(-1).astype(np.int64)
    T = p.size
    x = np.arange(T + 1, dtype=np.float64) * float(frame_shift)
    y = np.concatenate([p, p[-1:]]) if T else p
    fig.add_trace(
        go.Scatter(x=x, y=y, mode="lines", line=dict(shape="hv", color="#2E91E5", width=2),
                   name="Viterbi path", showlegend=False,
                   hovertemplate="t=%{x:.3f}s<br>state %{y}<extra></extra>"),
        row=row, col=col,
    )
    return fig


# --------------------------------------------------------------------------- figures


def spectrogram_figure(db: np.ndarray, freqs: np.ndarray, frame_shift: float,
                       segments: Iterable[Any] | None = None, duration: float | None = None,
                       title: str = "Spectrogram with Viterbi segmentation",
                       max_freq_bins: int = 160) -> go.Figure:
    """Spectrogram ``db [T, F]`` (dB) with segment boundaries and a labelled state bar.

    Each segment adds a boundary line at ``start`` and a coloured rectangle
    ``[start, end]`` along the top, plus its label as text at the midpoint.
    """
    db = np.asarray(db)
    duration = float(duration if duration is not None else db.shape[0] * frame_shift)
    fig = _new_figure(title, height=340)
    _add_spectrogram_panel(fig, db, freqs, frame_shift, segments, max_freq_bins=max_freq_bins)
    fig.update_layout(xaxis=_time_axis(duration), yaxis=dict(title=dict(text="frequency (Hz)")))
    return _flush_shapes(fig)


def posterior_figure(posteriors: np.ndarray, frame_shift: float, path: np.ndarray | None = None,
                     duration: float | None = None,
                     title: str = "State posteriors γ(t, k)") -> go.Figure:
    """Heatmap of ``posteriors [T, K]``: x = frame centre times (s), y = state index."""
    post = np.asarray(posteriors)
    duration = float(duration if duration is not None else post.shape[0] * frame_shift)
    fig = _new_figure(title, height=300)
    _add_posterior_panel(fig, post, frame_shift, path)
    fig.update_layout(xaxis=_time_axis(duration),
                      yaxis=dict(title=dict(text="state"), dtick=max(1, post.shape[1] // 16)))
    return fig


def viterbi_path_figure(path: np.ndarray, frame_shift: float, num_states: int | None = None,
                        duration: float | None = None, title: str = "Viterbi path") -> go.Figure:
    """Step plot of the best state sequence; frame i's step covers ``[i*shift, (i+1)*shift)``."""
    p = np.asarray(path).reshape(-1)
    K = int(num_states if num_states is not None else (p.max() + 1 if p.size else 1))
    duration = float(duration if duration is not None else p.size * frame_shift)
    fig = _new_figure(title, height=260)
    _add_path_panel(fig, p, frame_shift, K)
    fig.update_layout(xaxis=_time_axis(duration),
                      yaxis=dict(title=dict(text="state"), range=[-0.5, K - 0.5],
                                 dtick=max(1, K // 16)))
    return fig


def transition_figure(transmat: np.ndarray, labels: Sequence[str] | None = None,
                      title: str = "Transition matrix A[i → j]", decimals: int = 2,
                      max_text_states: int = 24) -> go.Figure:
    """Heatmap whose ``z`` is the transition matrix itself, annotated with its values."""
    A = np.asarray(transmat, dtype=np.float64)
    K = A.shape[0]
    names = list(labels) if labels is not None else [f"s{k}" for k in range(K)]
    text = np.vectorize(lambda v: f"{v:.{decimals}f}")(A) if K <= max_text_states else None
    fig = _new_figure(title, height=max(320, 28 * K + 120))
    fig.add_trace(
        go.Heatmap(
            z=A, x=names, y=names, zmin=0.0, zmax=1.0, colorscale="Blues",
            text=text, texttemplate="%{text}" if text is not None else None,
            textfont=dict(size=9 if K > 12 else 11),
            colorbar=dict(title=dict(text="P"), thickness=12),
            hovertemplate="%{y} → %{x}<br>P=%{z:.4f}<extra></extra>",
        )
    )
    fig.update_layout(xaxis=dict(title=dict(text="to state"), side="bottom"),
                      yaxis=dict(title=dict(text="from state"), autorange="reversed"))
    return fig


def durations_from_path(path: np.ndarray, num_states: int) -> list[np.ndarray]:
    """Per state, the lengths (in frames) of its runs in the path."""
    p = np.asarray(path).reshape(-1)
    out: list[list[int]] = [[] for _ in range(num_states)]
    for k, a, b in label_runs(p):
        if 0 <= k < num_states:
            out[k].append(b - a)
    return [np.asarray(v, dtype=np.int64) for v in out]


def _grid(rows: int, cols: int, titles: Sequence[str], hspace: float, vspace: float,
          title_size: int = 10) -> tuple[dict, list[tuple[str, str]]]:
    """A small-multiples layout built directly (make_subplots costs ~50 ms for 16 panels):
    the layout dict and the (xaxis, yaxis) names of each cell, row-major."""
    layout: dict[str, Any] = {"annotations": []}
    refs = []
    w = (1.0 - hspace * (cols - 1)) / cols
    h = (1.0 - vspace * (rows - 1)) / rows
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        n = i + 1
        x0 = c * (w + hspace)
        y1 = 1.0 - r * (h + vspace)
        xs, ys = ("" if n == 1 else str(n)), ("" if n == 1 else str(n))
        layout[f"xaxis{xs}"] = {"domain": [max(0.0, x0), min(1.0, x0 + w)], "anchor": f"y{ys}"}
        layout[f"yaxis{ys}"] = {"domain": [max(0.0, y1 - h), min(1.0, y1)], "anchor": f"x{xs}"}
        refs.append((f"x{xs}", f"y{ys}"))
        if i < len(titles):
            layout["annotations"].append(dict(text=titles[i], x=x0 + w / 2, y=y1, xref="paper", yref="paper",
                                              xanchor="center", yanchor="bottom", showarrow=False,
                                              font=dict(size=title_size)))
    return layout, refs


def duration_figure(path: np.ndarray, frame_shift: float, num_states: int,
                    transmat: np.ndarray | None = None, duration_pmf: np.ndarray | None = None,
                    max_cols: int = 4,
                    title: str = "State durations: Viterbi runs (bars) vs the model's expected counts (line)") -> go.Figure:
    """Small multiples: per state, a histogram of its Viterbi run lengths (bars, in ms).

    The model's duration distribution is overlaid as expected counts: an explicit
    ``duration_pmf [K, Dmax]`` (semi-Markov, ``pmf[k, d-1] = P(d frames)``) or, for a
    plain HMM, the geometric law ``(1 - a_kk) a_kk^(d-1)`` implied by ``transmat``.
    """
    K = int(num_states)
    runs = durations_from_path(path, K)
    cols = min(max_cols, K)
    rows = int(math.ceil(K / cols))
    layout, refs = _grid(rows, cols, [f"s{k} (n={len(runs[k])})" for k in range(K)], 0.05, min(0.2, 0.6 / rows))
    shift_ms = float(frame_shift) * 1000.0
    pmf = None if duration_pmf is None else np.asarray(duration_pmf, dtype=np.float64)
    A = None if transmat is None else np.asarray(transmat, dtype=np.float64)
    traces = []
    for k in range(K):
        xa, ya = refs[k]
        d = runs[k]
        dmax = int(max(d.max() if d.size else 1, 1))
        counts = np.bincount(d, minlength=dmax + 1)[1:]
        x = np.arange(1, dmax + 1) * shift_ms
        traces.append(go.Bar(x=x, y=counts, marker_color=state_colour(k), name=f"s{k}", xaxis=xa, yaxis=ya,
                             showlegend=False, width=shift_ms * 0.9,
                             hovertemplate=f"s{k}<br>%{{x:.0f}} ms: %{{y}} runs<extra></extra>"))
        n = d.size
        model = None
        if pmf is not None and k < pmf.shape[0]:
            model = pmf[k]
        elif A is not None and k < A.shape[0]:
            a = float(np.clip(A[k, k], 0.0, 1.0 - 1e-12))
            dd = np.arange(1, max(dmax, 2) + 1)
            model = (1 - a) * a ** (dd - 1)
        if model is not None and n > 0:
            m = model[: max(dmax, 1) + 2] if pmf is not None else model
            xm = np.arange(1, m.size + 1) * shift_ms
            traces.append(go.Scatter(x=xm, y=n * m, mode="lines", line=dict(color="#222", width=1.2),
                                     name="model", showlegend=False, xaxis=xa, yaxis=ya,
                                     hovertemplate="model: %{y:.2f}<extra></extra>"))
    for k in range(K - cols, K):  # bottom row of each column
        layout[f"xaxis{'' if k == 0 else k + 1}"]["title"] = {"text": "duration (ms)"}
    layout.update(template=_TEMPLATE, title=dict(text=title), height=max(280, 190 * rows + 90), bargap=0.05,
                  legend=dict(orientation="h", y=1.08, x=1, xanchor="right"))
    return go.Figure(data=traces, layout=layout, _validate=_validate())


def loglik_figure(history: Sequence[float], tol: float | None = None, num_frames: int | None = None,
                  final: float | None = None,
                  title: str = "EM training: log-likelihood per iteration") -> go.Figure:
    """EM log-likelihood curve: ``x = 1..n`` iterations, ``y = history`` (the engine records
    log L before each M-step). ``final`` (log L of the trained model, after the last M-step)
    is drawn as a separate marker at ``x = n + 1``.
    """
    h = np.asarray(list(history), dtype=np.float64)
    it = np.arange(1, h.size + 1)
    fig = _new_figure(title, height=300)
    fig.add_trace(go.Scatter(x=it, y=h, mode="lines+markers", name="log-likelihood",
                             line=dict(color="#636efa"),
                             hovertemplate="iteration %{x}<br>log L = %{y:.3f}<extra></extra>"))
    if final is not None and np.isfinite(final):
        fig.add_trace(go.Scatter(x=[h.size + 1], y=[float(final)], mode="markers", name="trained model",
                                 marker=dict(symbol="star", size=13, color="#EF553B"),
                                 hovertemplate="trained model<br>log L = %{y:.3f}<extra></extra>"))
    lines = []
    if h.size:
        lines.append(f"last E-step log L: {h[-1]:.2f}")
    if h.size >= 2:
        gain = float(h[-1] - h[-2])
        lines.append(f"last gain: {gain / num_frames:.2g}/frame" + (f" (tol {tol:g})" if tol is not None else "")
                     if num_frames else f"last gain: {gain:.3g}")
    if final is not None and np.isfinite(final):
        lines.append(f"trained model: {final:.2f}" + (f" ({final / num_frames:.3f}/frame)" if num_frames else ""))
    note = "<br>".join(lines) or "no iterations"
    fig.add_annotation(text=note, xref="paper", yref="paper", x=1, y=0.02, xanchor="right", yanchor="bottom",
                       showarrow=False, align="right", font=dict(size=10))
    fig.update_layout(xaxis=dict(title=dict(text="EM iteration"), dtick=max(1, (h.size + 1) // 10)),
                      yaxis=dict(title=dict(text="log-likelihood")), showlegend=False)
    return fig


def sweep_figure(rows: Sequence[Mapping[str, Any]], current: int | None = None,
                 title: str = "Model selection: BIC / AIC") -> go.Figure:
    """BIC and AIC against the number of states, one line per mixture count.

    ``rows``: dicts with ``num_states``, ``bic``, ``aic`` and optional ``num_mixtures``.
    The minimum of each criterion is starred; ``current`` (the analysed model's K) gets a
    dotted vertical line.
    """
    fig = _new_figure(title, height=320)
    if not rows:
        fig.add_annotation(text="no sweep run", xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False)
        return fig
    # Sizes that could not be fitted are said in words on the chart, with their reason.
    skipped = [r for r in rows if "bic" not in r]
    rows = [r for r in rows if "bic" in r]
    if skipped:
        lines = [f"K={int(r['num_states'])}" + (f", M={int(r.get('num_mixtures', 1) or 1)}" if int(r.get("num_mixtures", 1) or 1) > 1 else "")
                 + f": {str(r.get('error', 'not fitted'))[:90]}" for r in skipped[:6]]
        if len(skipped) > 6:
            lines.append(f"... and {len(skipped) - 6} more (see the summary)")
        head = "not fitted:" if rows else "no sweep size could be fitted:"
        fig.add_annotation(text="<br>".join([head] + lines), xref="paper", yref="paper", x=0.01, y=0.99,
                           xanchor="left", yanchor="top", showarrow=False, align="left", font=dict(size=10),
                           bgcolor="rgba(255,240,240,0.9)", bordercolor="#c33", borderwidth=1)
        if not rows:
            return fig
    mixes = sorted({int(r.get("num_mixtures", 1) or 1) for r in rows})
    for i, m in enumerate(mixes):
        sel = sorted((r for r in rows if int(r.get("num_mixtures", 1) or 1) == m), key=lambda r: r["num_states"])
        ks = [int(r["num_states"]) for r in sel]
        colour = STATE_COLOURS[i % len(STATE_COLOURS)]
        suffix = f" (M={m})" if len(mixes) > 1 or m > 1 else ""
        fig.add_trace(go.Scatter(x=ks, y=[float(r["bic"]) for r in sel], mode="lines+markers",
                                 name="BIC" + suffix, line=dict(color=colour)))
        fig.add_trace(go.Scatter(x=ks, y=[float(r["aic"]) for r in sel], mode="lines+markers",
                                 name="AIC" + suffix, line=dict(color=colour, dash="dash")))
    for crit, sym in (("bic", "star"), ("aic", "star-open")):
        best = min(rows, key=lambda r: float(r[crit]))
        fig.add_trace(go.Scatter(x=[int(best["num_states"])], y=[float(best[crit])], mode="markers",
                                 marker=dict(symbol=sym, size=16, color="#FB0D0D"),
                                 name=f"best {crit.upper()}: K={int(best['num_states'])}"
                                      + (f", M={int(best.get('num_mixtures', 1) or 1)}" if len(mixes) > 1 else "")))
    ks_all = sorted({int(r["num_states"]) for r in rows} | ({int(current)} if current is not None else set()))
    if current is not None:
        fig.add_vline(x=int(current), line=dict(color="#888", dash="dot", width=1),
                      annotation_text=f"this model: K={int(current)}", annotation_position="top",
                      annotation_font_size=10)
    fig.update_layout(xaxis=dict(title=dict(text="number of states K"), tickvals=ks_all),
                      yaxis=dict(title=dict(text="criterion (lower is better)")))
    return fig


def boundary_pairs(hyp: Iterable[Any], ref: Iterable[Any], silence: str = "merge") -> list[tuple[float, float, str]]:
    """``(ref_time, hyp_time, "left|right")`` for each boundary that
    :func:`hmm_engine.alignment.metrics.compare_tiers` scores (the one boundary pairing), so
    the figure shows exactly the boundaries the metrics count."""
    h, r = as_segments(hyp), as_segments(ref)
    if not h or not r:
        return []
    comparison = compare_tiers(r, h, silence=silence)
    return [(p.reference, p.hypothesis, p.label) for p in comparison.boundary_pairs]


def alignment_figure(hyp: Iterable[Any], ref: Iterable[Any] | None = None,
                     words: Iterable[Any] | None = None, duration: float | None = None,
                     accuracy: Mapping[str, float] | None = None,
                     boundary_errors: Sequence[tuple[float, float, str]] | None = None,
                     title: str = "Forced alignment: hypothesis vs reference") -> go.Figure:
    """Alignment tiers (words, hypothesis phones, reference phones) and boundary errors.

    Row 1: one horizontal tier per segment list; each segment is a rectangle
    ``[start, end]`` with its label. Row 2 (when a reference is given): each boundary's
    error ``hyp - ref`` in ms at the reference time, with ±20 ms guides. Row 2 right:
    accuracy within the tolerances (``accuracy`` maps e.g. ``"10ms"`` -> fraction).
    """
    hyp_s, ref_s, word_s = as_segments(hyp), as_segments(ref), as_segments(words)
    all_s = hyp_s + ref_s + word_s
    if duration is None:
        duration = max((s.end for s in all_s), default=1.0)
    has_ref = bool(ref_s)
    if has_ref:
        fig = _subplots(rows=2, cols=2, specs=[[{"colspan": 2}, None], [{}, {}]],
                            column_widths=[0.75, 0.25], row_heights=[0.55, 0.45],
                            vertical_spacing=0.14, horizontal_spacing=0.08,
                            subplot_titles=["", "boundary error hyp − ref (ms), at the reference boundary",
                                            "boundaries within tolerance"])
        tier_row: int | None = 1
    else:
        fig = _subplots(rows=1, cols=1)
        tier_row = 1
    tiers = []
    if word_s:
        tiers.append(("words (hyp)", word_s))
    tiers.append(("phones (hyp)", hyp_s))
    if has_ref:
        tiers.append(("phones (ref)", ref_s))
    _add_tiers(fig, tiers, row=tier_row, col=1)
    fig.update_xaxes(title_text=None if has_ref else TIME_TITLE, range=[0, float(duration)], row=1, col=1)
    if has_ref:
        pairs = list(boundary_errors) if boundary_errors is not None else boundary_pairs(hyp_s, ref_s)
        rt = np.asarray([p[0] for p in pairs], dtype=np.float64)
        err = (np.asarray([p[1] for p in pairs], dtype=np.float64) - rt) * 1000.0
        fig.add_trace(go.Scatter(x=rt, y=err, mode="markers", name="boundary error",
                                 marker=dict(color=np.where(np.abs(err) <= 20, "#1CA71C", "#FB0D0D"), size=7),
                                 text=[p[2] for p in pairs], showlegend=False,
                                 hovertemplate="%{text} @ %{x:.3f}s<br>error %{y:.1f} ms<extra></extra>"),
                      row=2, col=1)
        xa2, ya2 = _axis_refs(fig, 2, 1)
        for yv in (-20, 20):
            _pending_shapes(fig).append(dict(type="line", xref=f"{xa2} domain", yref=ya2, x0=0, x1=1, y0=yv, y1=yv,
                                             line=dict(color="#888", dash="dot", width=1)))
        # the error axis is the tier axis: zooming one zooms the other
        fig.update_xaxes(title_text=TIME_TITLE, range=[0, float(duration)], matches=_axis_refs(fig, 1, 1)[0],
                         row=2, col=1)
        fig.update_yaxes(title_text="ms", row=2, col=1)
        if accuracy is None and rt.size:
            accuracy = {f"{t}ms": float(np.mean(np.abs(err) <= t)) for t in (10, 20, 25, 50)}
        if accuracy:
            keys = list(accuracy.keys())
            vals = [100.0 * float(accuracy[k]) for k in keys]
            fig.add_trace(go.Bar(x=[f"≤{k}" for k in keys], y=vals, text=[f"{v:.0f}%" for v in vals],
                                 textposition="outside", marker_color="#636efa", showlegend=False,
                                 name="accuracy", hovertemplate="%{x}: %{y:.1f}%<extra></extra>"),
                          row=2, col=2)
            fig.update_yaxes(range=[0, 115], title_text="% boundaries", row=2, col=2)
        if rt.size:
            title += f" — mean |err| {np.mean(np.abs(err)):.1f} ms, median {np.median(np.abs(err)):.1f} ms"
    fig.update_layout(template=_TEMPLATE, title=dict(text=title), height=520 if has_ref else 260,
                      showlegend=False)
    return _flush_shapes(fig)


def _add_tiers(fig: go.Figure, tiers: list[tuple[str, list[Segment]]], row: int | None, col: int | None,
               label_min_fraction: float = 0.008):
    """Draw tiers as rectangles on a categorical-like numeric y axis (tier i at y=i)."""
    xa, ya = _axis_refs(fig, row, col)
    shapes = _pending_shapes(fig)
    n = len(tiers)
    every = [s for _, segs in tiers for s in segs]
    span = (max(s.end for s in every) - min(s.start for s in every)) if every else 1.0
    for i, (name, segs) in enumerate(tiers):
        y = n - 1 - i
        for s in segs:
            shapes.append(dict(type="rect", xref=xa, yref=ya, x0=s.start, x1=s.end, y0=y - 0.4, y1=y + 0.4,
                               fillcolor=_rgba(_label_colour(s.label), 0.35),
                               line=dict(color="#333", width=0.8), layer="below"))
        fig.add_trace(go.Scatter(
            x=[(s.start + s.end) / 2 for s in segs], y=[y] * len(segs), mode="text",
            text=[s.label if s.end - s.start >= label_min_fraction * span else "" for s in segs],
            textfont=dict(size=10), showlegend=False, name=name,
            customdata=[[s.start, s.end, (s.score if s.score is not None else float("nan")), s.label] for s in segs],
            hovertemplate=name + ": %{customdata[3]}<br>%{customdata[0]:.3f}–%{customdata[1]:.3f} s"
                                 "<br>score %{customdata[2]:.2f}<extra></extra>"),
            row=row, col=col)
    fig.update_yaxes(tickvals=list(range(n)), ticktext=[name for name, _ in reversed(tiers)],
                     range=[-0.6, n - 0.4], showgrid=False, automargin=True, row=row, col=col)


def latency_figure(timings: Mapping[str, float], peak_rss_mb: float | None = None,
                   peak_gpu_mb: float | None = None, rtf: float | None = None,
                   device: str = "cpu", audio_seconds: float | None = None,
                   cached: Sequence[str] = (), title: str = "Latency and memory") -> go.Figure:
    """Per-stage wall time (ms) and peak memory (MB), with RTF and device in the title.

    ``cached`` names stages that were skipped because a cached result was reused.
    """
    stages = list(timings.keys())
    ms = [1000.0 * float(timings[s]) for s in stages]
    fig = _subplots(rows=1, cols=2, column_widths=[0.68, 0.32], horizontal_spacing=0.12,
                        subplot_titles=["time per stage (ms)", "peak MB"])
    labels = [f"{s} (cached)" if s in cached else s for s in stages]
    fig.add_trace(go.Bar(y=labels, x=ms, orientation="h", text=[f"{v:.0f}" for v in ms],
                         textposition="auto", marker_color="#636efa", name="time",
                         hovertemplate="%{y}: %{x:.1f} ms<extra></extra>"), row=1, col=1)
    mem_names, mem_vals = [], []
    if peak_rss_mb is not None:
        mem_names.append("CPU RSS")
        mem_vals.append(float(peak_rss_mb))
    if peak_gpu_mb is not None:
        mem_names.append("GPU")
        mem_vals.append(float(peak_gpu_mb))
    fig.add_trace(go.Bar(x=mem_names, y=mem_vals, text=[f"{v:.0f}" for v in mem_vals], textposition="auto",
                         marker_color=["#00cc96", "#ab63fa"][: len(mem_vals)], name="memory",
                         hovertemplate="%{x}: %{y:.1f} MB<extra></extra>"), row=1, col=2)
    total = sum(ms)
    parts = [f"device {device}"]
    if rtf is not None:
        parts.append(f"RTF {rtf:.3f}")
    if audio_seconds is not None:
        parts.append(f"audio {audio_seconds:.2f} s")
    parts.append(f"total {total:.0f} ms")
    if "precomputed" in cached:
        title += " (precomputed at start-up)"
    fig.update_layout(template=_TEMPLATE, title=dict(text=f"{title}<br><sup>" + " · ".join(parts) + "</sup>"),
                      height=300, showlegend=False)
    fig.update_yaxes(autorange="reversed", automargin=True, row=1, col=1)
    return fig


def timeline_figure(duration: float, frame_shift: float, db: np.ndarray | None = None,
                    freqs: np.ndarray | None = None, posteriors: np.ndarray | None = None,
                    path: np.ndarray | None = None, segments: Iterable[Any] | None = None,
                    tiers: Sequence[tuple[str, Iterable[Any]]] | None = None,
                    title: str = "Timeline (zoom one panel: all follow)") -> go.Figure:
    """Spectrogram + segmentation, posteriors, Viterbi path and tiers on one shared time axis."""
    panels = []
    if db is not None:
        panels.append(("spec", 0.42))
    if posteriors is not None:
        panels.append(("post", 0.24))
    if path is not None:
        panels.append(("path", 0.16))
    if tiers:
        panels.append(("tiers", 0.18))
    if not panels:
        raise ValueError("timeline_figure needs at least one panel")
    weights = np.array([w for _, w in panels])
    fig = _subplots(rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.03,
                        row_heights=list(weights / weights.sum()))
    K = None
    for i, (kind, _) in enumerate(panels, start=1):
        if kind == "spec":
            _add_spectrogram_panel(fig, db, freqs, frame_shift, segments, row=i, col=1)
            fig.update_yaxes(title_text="Hz", row=i, col=1)
        elif kind == "post":
            _add_posterior_panel(fig, posteriors, frame_shift, None, row=i, col=1)
            K = np.asarray(posteriors).shape[1]
            fig.update_yaxes(title_text="γ state", row=i, col=1)
        elif kind == "path":
            p = np.asarray(path)
            K = K or int(p.max() + 1)
            _add_path_panel(fig, p, frame_shift, K, row=i, col=1)
            fig.update_yaxes(title_text="state", range=[-0.5, K - 0.5], row=i, col=1)
        elif kind == "tiers":
            _add_tiers(fig, [(n, as_segments(s)) for n, s in tiers], row=i, col=1)
    fig.update_xaxes(range=[0.0, float(duration)])
    fig.update_xaxes(title_text=TIME_TITLE, row=len(panels), col=1)
    fig.update_layout(template=_TEMPLATE, title=dict(text=title), height=int(230 * len(panels) + 120),
                      showlegend=False, hovermode="closest")
    return _flush_shapes(fig)
