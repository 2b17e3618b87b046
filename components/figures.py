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
        # transparent, so the page's light or dark background shows through; the dashboard's
        # CSS recolours text and grid lines in dark mode (DARK_MODE_CSS)
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        title=dict(font=dict(size=14), x=0.01, xanchor="left"),
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

# 24 distinguishable colours (plotly's Dark24; its near-black #222A2A, invisible on a dark
# page, is swapped for a teal); states past 24 get generated colours (state_colour).
STATE_COLOURS = [
    "#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#0FA3B1", "#B68100",
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


def bottom_legend(size: int = 10) -> dict:
    """A horizontal legend pinned to the figure's bottom edge (container coordinates), below the
    x-axis title whatever the height; give the figure a bottom margin of ~90-110 px."""
    return dict(orientation="h", yref="container", yanchor="bottom", y=0.01, x=0, font=dict(size=size))


def state_colour(k: int) -> str:
    """State k's colour: Dark24 for k < 24, then golden-angle hues at three lightness levels,
    so no two of the first 64 states (and none of them against Dark24) share a colour."""
    k = int(k)
    if 0 <= k < len(STATE_COLOURS):
        return STATE_COLOURS[k]
    j = k - len(STATE_COLOURS)
    hue = (j * 137.508 + 17.0) % 360.0
    light = (0.42, 0.58, 0.32)[j % 3]
    sat = (0.75, 0.65, 0.85)[(j // 3) % 3]
    return _hsl_hex(hue, sat, light)


def _hsl_hex(h: float, s: float, light: float) -> str:
    import colorsys

    r, g, b = colorsys.hls_to_rgb(h / 360.0, light, s)
    return "#{:02X}{:02X}{:02X}".format(round(r * 255), round(g * 255), round(b * 255))


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


def _add_spectrogram_panel(fig, db, freqs, frame_shift, segments=None, row=None, col=None,
                           max_freq_bins=160):
    """The spectrogram alone: segments go in a strip of their own (:func:`_add_strip_panel`)."""
    db = np.asarray(db, dtype=np.float32)
    freqs = np.asarray(freqs, dtype=np.float32)
    db, freqs = _downsample_rows(db, freqs, max_freq_bins)
    t = frame_centres(db.shape[0], frame_shift)
    fig.add_trace(
        go.Heatmap(
            z=_quantise_db(db).T, x=t, y=freqs, colorscale="Magma", name="spectrogram",
            colorbar=_colorbar_for(fig, row, col, "dB"),
            hovertemplate="t=%{x:.3f}s<br>f=%{y:.0f}Hz<br>%{z:.1f} dB<extra></extra>",
        ),
        row=row, col=col,
    )
    return fig


def _add_strip_panel(fig, segments, row=None, col=None, name="segments", label_min_fraction=0.012):
    """The segmentation as one strip of coloured bars ``[start, end]`` (no lines over the
    spectrogram). Each bar carries ``customdata = [index, label, start, end]``: the dashboard's
    click bridge plays segment ``index`` when a bar is clicked."""
    segs = as_segments(segments)
    if not segs:
        return fig
    total = max(s.end for s in segs) - min(s.start for s in segs)
    min_width = label_min_fraction * total
    fig.add_trace(
        go.Bar(
            y=[0] * len(segs), x=[s.end - s.start for s in segs], base=[s.start for s in segs],
            orientation="h", width=0.95, name=name, showlegend=False,
            marker=dict(color=[_label_colour(s.label) for s in segs], line=dict(width=0)),
            text=[s.label if s.end - s.start >= min_width else "" for s in segs],
            textposition="inside", insidetextanchor="middle", textangle=0, textfont=dict(size=10),
            customdata=[[i, s.label, s.start, s.end] for i, s in enumerate(segs)],
            hovertemplate="%{customdata[1]}  %{customdata[2]:.3f}–%{customdata[3]:.3f} s"
                          "<br>click to play<extra></extra>",
        ),
        row=row, col=col,
    )
    fig.update_yaxes(range=[-0.5, 0.5], showticklabels=False, ticks="", showgrid=False, fixedrange=True,
                     row=row, col=col)
    # labels that do not fit at 8 px are hidden rather than shrunk to nothing
    fig.update_layout(uniformtext=dict(minsize=8, mode="hide"), barmode="overlay")
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
                       title: str = "Spectrogram + segmentation",
                       max_freq_bins: int = 160) -> go.Figure:
    """Spectrogram ``db [T, F]`` (dB) with segment boundaries and a labelled state bar.

    Each segment adds a boundary line at ``start`` and a coloured rectangle
    ``[start, end]`` along the top, plus its label as text at the midpoint.
    """
    db = np.asarray(db)
    duration = float(duration if duration is not None else db.shape[0] * frame_shift)
    segs = as_segments(segments)
    if not segs:
        fig = _new_figure(title, height=340)
        _add_spectrogram_panel(fig, db, freqs, frame_shift, None, max_freq_bins=max_freq_bins)
        fig.update_layout(xaxis=_time_axis(duration), yaxis=dict(title=dict(text="frequency (Hz)")))
        return fig
    fig = _subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.02, row_heights=[0.86, 0.14])
    _add_spectrogram_panel(fig, db, freqs, frame_shift, None, row=1, col=1, max_freq_bins=max_freq_bins)
    _add_strip_panel(fig, segs, row=2, col=1)
    fig.update_xaxes(range=[0.0, duration])
    fig.update_xaxes(title_text=TIME_TITLE, row=2, col=1)
    fig.update_yaxes(title_text="Hz", row=1, col=1)
    fig.update_layout(template=_TEMPLATE, title=dict(text=title), height=380)
    return fig


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


def _cell_text(v: float) -> str:
    """Compact probability labels that stay apart in narrow cells: ".25", "1", "" for < .005."""
    if v >= 0.995:
        return "1"
    if v < 0.005:
        return ""
    return f"{v:.2f}".lstrip("0")


def transition_figure(transmat: np.ndarray, labels: Sequence[str] | None = None,
                      title: str = "Transition matrix", max_text_states: int = 12) -> go.Figure:
    """Heatmap whose ``z`` is the transition matrix itself; values printed in the cells up to
    ``max_text_states`` states (compact ".25" labels), hover only beyond."""
    A = np.asarray(transmat, dtype=np.float64)
    K = A.shape[0]
    names = list(labels) if labels is not None else [f"s{k}" for k in range(K)]
    text = np.vectorize(_cell_text)(A) if K <= max_text_states else None
    tick = _state_dtick(K) if K > 16 else 1
    tickvals = names[::tick]
    fig = _new_figure(title, height=max(320, min(640, 16 * K + 160)))
    fig.add_trace(
        go.Heatmap(
            z=A, x=names, y=names, zmin=0.0, zmax=1.0, colorscale="Blues",
            text=text, texttemplate="%{text}" if text is not None else None,
            textfont=dict(size=10 if K <= 8 else 9),
            colorbar=dict(title=dict(text="P"), thickness=10),
            hovertemplate="%{y} → %{x}<br>P=%{z:.4f}<extra></extra>",
        )
    )
    axis = dict(tickmode="array", tickvals=tickvals, tickfont=dict(size=10 if K <= 16 else 9),
                automargin=True)
    fig.update_layout(xaxis=dict(title=dict(text="to state", standoff=8), side="bottom", **axis),
                      yaxis=dict(title=dict(text="from state", standoff=8), autorange="reversed", **axis),
                      margin=dict(l=50, r=10, t=44, b=40))
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


def _count_dtick(max_count: float) -> int:
    """Whole-number tick spacing for a count axis: 1, 2, 5, 10, 20, 50... at most ~5 ticks."""
    target = max(1.0, float(max_count) / 4.0)
    for mag in (1, 10, 100, 1000, 10000, 100000):
        for step in (1, 2, 5):
            if step * mag >= target:
                return step * mag
    return 1000000


def duration_figure(path: np.ndarray, frame_shift: float, num_states: int,
                    transmat: np.ndarray | None = None, duration_pmf: np.ndarray | None = None,
                    max_cols: int = 4, max_panels: int = 8,
                    title: str = "State durations") -> go.Figure:
    """How long each state lasts: its Viterbi run lengths against the model's law.

    Up to ``max_panels`` states: small multiples, per state a histogram of run lengths (bars,
    ms, whole-number count ticks) with the model's expected counts overlaid — an explicit
    ``duration_pmf [K, Dmax]`` (semi-Markov, ``pmf[k, d-1] = P(d frames)``) or, for a plain
    HMM, the geometric law ``(1 - a_kk) a_kk^(d-1)`` implied by ``transmat``.
    More states: one compact heatmap (state × run length, colour = number of runs) with each
    state's mean run length (observed: circles; model: diamonds), so K = 64 stays one panel.
    """
    K = int(num_states)
    runs = durations_from_path(path, K)
    pmf = None if duration_pmf is None else np.asarray(duration_pmf, dtype=np.float64)
    A = None if transmat is None else np.asarray(transmat, dtype=np.float64)
    if K > max_panels:
        return _duration_heatmap(runs, frame_shift, K, A, pmf, title)
    cols = min(max_cols, K)
    rows = int(math.ceil(K / cols))
    layout, refs = _grid(rows, cols, [f"s{k} (n={len(runs[k])})" for k in range(K)], 0.06, min(0.2, 0.6 / rows))
    shift_ms = float(frame_shift) * 1000.0
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
        top = float(counts.max()) if counts.size else 1.0
        if model is not None and n > 0:
            m = model[: max(dmax, 1) + 2] if pmf is not None else model
            xm = np.arange(1, m.size + 1) * shift_ms
            traces.append(go.Scatter(x=xm, y=n * m, mode="lines", line=dict(color="#888", width=1.4),
                                     name="model", showlegend=False, xaxis=xa, yaxis=ya,
                                     hovertemplate="model: %{y:.2f}<extra></extra>"))
            top = max(top, float(np.max(n * m)))
        yname = "yaxis" + ya[1:]
        layout[yname].update(tickmode="linear", tick0=0, dtick=_count_dtick(top), tickformat="d",
                             rangemode="tozero")
    for k in range(K - cols, K):  # bottom row of each column
        layout[f"xaxis{'' if k == 0 else k + 1}"]["title"] = {"text": "ms"}
    layout.update(template=_TEMPLATE, title=dict(text=title), height=max(260, 170 * rows + 90), bargap=0.05,
                  margin=dict(l=40, r=10, t=56, b=40))
    return go.Figure(data=traces, layout=layout, _validate=_validate())


def _duration_heatmap(runs: list, frame_shift: float, K: int, A, pmf, title: str) -> go.Figure:
    shift_ms = float(frame_shift) * 1000.0
    dmax = max([int(d.max()) for d in runs if d.size] or [1])
    z = np.zeros((K, dmax), dtype=np.int64)
    for k, d in enumerate(runs):
        if d.size:
            z[k] = np.bincount(d, minlength=dmax + 1)[1:]
    x = np.arange(1, dmax + 1) * shift_ms
    names = [f"s{k}" for k in range(K)]
    zmax = int(max(1, z.max()))
    fig = _new_figure(title, height=max(320, min(720, 11 * K + 150)))
    fig.add_trace(go.Heatmap(
        z=np.where(z > 0, z, np.nan), x=x, y=names, colorscale="Viridis", zmin=0, zmax=zmax, name="runs",
        colorbar=dict(title=dict(text="runs"), thickness=10, tickmode="linear", tick0=0,
                      dtick=_count_dtick(zmax), tickformat="d"),
        hovertemplate="%{y}: %{z} runs of %{x:.0f} ms<extra></extra>"))
    obs_mean = [float(d.mean()) * shift_ms if d.size else np.nan for d in runs]
    fig.add_trace(go.Scatter(x=obs_mean, y=names, mode="markers", name="observed mean",
                             marker=dict(symbol="circle-open", size=7, color="#FB0D0D", line=dict(width=2)),
                             hovertemplate="%{y}: observed mean %{x:.0f} ms<extra></extra>"))
    model_mean = None
    if pmf is not None:
        d = np.arange(1, pmf.shape[1] + 1)
        model_mean = (pmf[:K] * d).sum(1) / np.maximum(pmf[:K].sum(1), 1e-12) * shift_ms
    elif A is not None:
        a = np.clip(np.diag(A)[:K], 0.0, 1.0 - 1e-12)
        model_mean = 1.0 / (1.0 - a) * shift_ms
    if model_mean is not None:
        fig.add_trace(go.Scatter(x=model_mean, y=names, mode="markers", name="model mean",
                                 marker=dict(symbol="diamond", size=6, color="#FFA15A"),
                                 hovertemplate="%{y}: model mean %{x:.0f} ms<extra></extra>"))
    tick = _state_dtick(K)
    fig.update_layout(xaxis=dict(title=dict(text="run length (ms)"), range=[0, (dmax + 1) * shift_ms]),
                      yaxis=dict(title=dict(text="state"), autorange="reversed", tickmode="array",
                                 tickvals=names[::tick], automargin=True),
                      legend=bottom_legend(), margin=dict(l=50, r=10, t=44, b=90))
    return fig


def em_converged(history: Sequence[float], tol: float | None, num_frames: int | None,
                 max_iter: int | None) -> bool | None:
    """Whether EM stopped because the gain per frame fell below ``tol`` (True) rather than at
    the iteration limit (False); None when it cannot be told (no tolerance or no history)."""
    h = [float(v) for v in history]
    if tol is None or not h:
        return None
    if max_iter is not None and len(h) < int(max_iter):
        return True
    if len(h) < 2:
        return False
    return (h[-1] - h[-2]) / max(1, int(num_frames or 1)) < float(tol)


def loglik_figure(history: Sequence[float], tol: float | None = None, num_frames: int | None = None,
                  final: float | None = None, max_iter: int | None = None,
                  title: str = "EM log-likelihood") -> go.Figure:
    """EM log-likelihood curve: ``x = 1..n`` iterations, ``y = history`` (the engine records
    log L before each M-step). ``final`` (log L of the trained model, after the last M-step)
    is drawn as a separate marker at ``x = n + 1``. With ``max_iter``, a run that stopped at
    the limit without converging says so on the curve: a red limit line, a red last point
    and "not converged" in the title.
    """
    h = np.asarray(list(history), dtype=np.float64)
    it = np.arange(1, h.size + 1)
    conv = em_converged(h, tol, num_frames, max_iter) if max_iter is not None else None
    if conv is False:
        title += " — NOT converged"
    elif conv:
        title += " — converged"
    fig = _new_figure(title, height=300)
    fig.add_trace(go.Scatter(x=it, y=h, mode="lines+markers", name="log-likelihood",
                             line=dict(color="#636efa"),
                             hovertemplate="iteration %{x}<br>log L = %{y:.3f}<extra></extra>"))
    if final is not None and np.isfinite(final):
        fig.add_trace(go.Scatter(x=[h.size + 1], y=[float(final)], mode="markers", name="trained model",
                                 marker=dict(symbol="star", size=13, color="#EF553B"),
                                 hovertemplate="trained model<br>log L = %{y:.3f}<extra></extra>"))
    if conv is False and h.size:
        fig.add_trace(go.Scatter(x=[h.size], y=[h[-1]], mode="markers+text", name="not converged",
                                 marker=dict(symbol="x", size=12, color="#FB0D0D"),
                                 text=["stopped at the limit"], textposition="bottom left",
                                 textfont=dict(color="#FB0D0D", size=11),
                                 hovertemplate=f"stopped at max_iter={max_iter}: the last gain was still "
                                               f"above tol — raise the iteration limit<extra></extra>"))
        _pending_shapes(fig).append(dict(type="line", xref="x", yref="paper", x0=h.size, x1=h.size, y0=0, y1=1,
                                         line=dict(color="#FB0D0D", dash="dash", width=1.5)))
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
    if conv is False:
        fig.update_layout(title=dict(font=dict(color="#FB0D0D")))
    return _flush_shapes(fig)


def criteria_note(rows: Sequence[Mapping[str, Any]]) -> str:
    """Plain words for the BIC/AIC chart: which K each prefers and, when they disagree, which
    to trust for what. Empty without at least two sizes."""
    if len({int(r["num_states"]) for r in rows}) < 2:
        return ""
    best_b = min(rows, key=lambda r: float(r["bic"]))
    best_a = min(rows, key=lambda r: float(r["aic"]))

    def name(r):
        m = int(r.get("num_mixtures", 1) or 1)
        return f"K={int(r['num_states'])}" + (f", M={m}" if m > 1 else "")

    if name(best_b) == name(best_a):
        return f"BIC and AIC agree: {name(best_b)} is the best size among those tried."
    return (f"BIC prefers {name(best_b)}, AIC prefers {name(best_a)}. They disagree because BIC charges "
            "log(frames) per parameter and AIC only 2, so BIC picks fewer states. Trust BIC for how many "
            "distinct sound classes the clip has (segmentation, labelling); AIC for the model that predicts "
            "new frames best. Between the two, pick by what you will use the states for.")


def sweep_figure(rows: Sequence[Mapping[str, Any]], current: int | None = None,
                 title: str = "BIC / AIC (lower is better)",
                 current_point: Mapping[str, float] | None = None) -> go.Figure:
    """BIC and AIC against the number of states, one line per mixture count.

    ``rows``: dicts with ``num_states``, ``bic``, ``aic`` and optional ``num_mixtures``.
    The minimum of each criterion is starred; ``current`` (the analysed model's K) gets a
    dotted vertical line and, with ``current_point`` (``{"bic": .., "aic": ..}``), its own
    two points, so the model on screen is visible on the curve.
    """
    fig = _new_figure(title, height=360)
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
        fig.add_vline(x=int(current), line=dict(color="#888", dash="dot", width=1))
        if current_point is not None:
            ys = [float(current_point["bic"]), float(current_point["aic"])]
            fig.add_trace(go.Scatter(x=[int(current)] * 2, y=ys, mode="markers", name=f"this model: K={int(current)}",
                                     marker=dict(symbol="diamond", size=11, color="#FFA15A",
                                                 line=dict(color="#333", width=1)),
                                     customdata=["BIC", "AIC"],
                                     hovertemplate="this model %{customdata}: %{y:.1f}<extra></extra>"))
    fig.update_layout(xaxis=dict(title=dict(text="number of states K"), tickvals=ks_all),
                      yaxis=dict(title=dict(text="criterion")),
                      legend=bottom_legend(),
                      height=360, margin=dict(l=60, r=10, t=44, b=110))
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
                     title: str = "Alignment vs reference") -> go.Figure:
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
                            subplot_titles=["", "boundary error hyp − ref (ms)", "within tolerance"])
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
            title += f"<br><sup>mean |err| {np.mean(np.abs(err)):.1f} ms · median {np.median(np.abs(err)):.1f} ms</sup>"
    fig.update_layout(template=_TEMPLATE, title=dict(text=title), height=520 if has_ref else 260,
                      showlegend=False, margin=dict(t=64))
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
        parts.insert(0, "precomputed at start-up")
    # two short lines rather than one that a phone-width plot would clip
    half = (len(parts) + 1) // 2
    sub = " · ".join(parts[:half]) + "<br>" + " · ".join(parts[half:])
    fig.update_layout(template=_TEMPLATE, title=dict(text=f"{title}<br><sup>{sub}</sup>"),
                      height=320, showlegend=False, margin=dict(t=80))
    fig.update_yaxes(autorange="reversed", automargin=True, row=1, col=1)
    return fig


def timeline_figure(duration: float, frame_shift: float, db: np.ndarray | None = None,
                    freqs: np.ndarray | None = None, posteriors: np.ndarray | None = None,
                    path: np.ndarray | None = None, segments: Iterable[Any] | None = None,
                    tiers: Sequence[tuple[str, Iterable[Any]]] | None = None,
                    title: str = "Timeline (zoom one panel: all follow)") -> go.Figure:
    """Spectrogram + segmentation, posteriors, Viterbi path and tiers on one shared time axis."""
    panels = []
    segs = as_segments(segments)
    if db is not None:
        panels.append(("spec", 0.42))
    if segs and not tiers:
        panels.append(("strip", 0.06))
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
            _add_spectrogram_panel(fig, db, freqs, frame_shift, row=i, col=1)
            fig.update_yaxes(title_text="Hz", row=i, col=1)
        elif kind == "strip":
            _add_strip_panel(fig, segs, row=i, col=1)
        elif kind == "post":
            _add_posterior_panel(fig, posteriors, frame_shift, None, row=i, col=1)
            K = np.asarray(posteriors).shape[1]
            fig.update_yaxes(title_text="γ state", dtick=_state_dtick(K), row=i, col=1)
        elif kind == "path":
            p = np.asarray(path)
            K = K or int(p.max() + 1)
            _add_path_panel(fig, p, frame_shift, K, row=i, col=1)
            fig.update_yaxes(title_text="state", range=[-0.5, K - 0.5], dtick=_state_dtick(K), row=i, col=1)
        elif kind == "tiers":
            _add_tiers(fig, [(n, as_segments(s)) for n, s in tiers], row=i, col=1)
    fig.update_xaxes(range=[0.0, float(duration)])
    fig.update_xaxes(title_text=TIME_TITLE, row=len(panels), col=1)
    fig.update_layout(template=_TEMPLATE, title=dict(text=title), height=int(120 + 830 * weights.sum()),
                      showlegend=False, hovermode="closest")
    return _flush_shapes(fig)


def _state_dtick(K: int) -> int:
    """Whole-state tick spacing that keeps at most ~8 labels on a state axis."""
    return max(1, int(math.ceil(int(K) / 8)))


# --------------------------------------------------------------------------- run comparison


def comparison_timeline(runs: Sequence[tuple[str, Any]], title: str = "Segmentations compared") -> go.Figure:
    """Two (or more) runs' segmentations as strips under one spectrogram, on one time axis.

    ``runs``: ``(name, result)`` pairs; a result needs ``spectrogram_db``, ``freqs``,
    ``frame_shift``, ``duration``, ``audio_hash`` and ``segments()``. Runs on the same clip
    share the first run's spectrogram; a run on another clip gets its own spectrogram row.
    """
    if not runs:
        raise ValueError("comparison_timeline needs at least one run")
    first = runs[0][1]
    panels: list[tuple[str, Any, str]] = [("spec", first, runs[0][0])]
    for name, r in runs:
        if r is not first and getattr(r, "audio_hash", None) != getattr(first, "audio_hash", None):
            panels.append(("spec", r, name))
        panels.append(("strip", r, name))
    weights = np.array([0.42 if kind == "spec" else 0.07 for kind, _, _ in panels])
    fig = _subplots(rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.025,
                    row_heights=list(weights / weights.sum()))
    for i, (kind, r, name) in enumerate(panels, start=1):
        if kind == "spec":
            _add_spectrogram_panel(fig, r.spectrogram_db, r.freqs, r.frame_shift, row=i, col=1)
            fig.update_yaxes(title_text="Hz", row=i, col=1)
        else:
            _add_strip_panel(fig, r.segments(), row=i, col=1, name=f"segments {name}")
            fig.update_yaxes(showticklabels=True, tickmode="array", tickvals=[0], ticktext=[name],
                             row=i, col=1)
    duration = max(float(r.duration) for _, r in runs)
    fig.update_xaxes(range=[0.0, duration])
    fig.update_xaxes(title_text=TIME_TITLE, row=len(panels), col=1)
    fig.update_layout(template=_TEMPLATE, title=dict(text=title), height=int(120 + 760 * weights.sum()),
                      showlegend=False, hovermode="closest")
    return fig


def transition_pair(mats: Sequence[tuple[str, np.ndarray]], title: str = "Transition matrices") -> go.Figure:
    """Transition matrices side by side on one colour scale (hover for values)."""
    fig = _subplots(rows=1, cols=len(mats), horizontal_spacing=0.08, subplot_titles=[n for n, _ in mats])
    for j, (name, A) in enumerate(mats, start=1):
        A = np.asarray(A, dtype=np.float64)
        K = A.shape[0]
        names = [f"s{k}" for k in range(K)]
        fig.add_trace(go.Heatmap(z=A, x=names, y=names, zmin=0.0, zmax=1.0, colorscale="Blues", name=name,
                                 showscale=j == len(mats), colorbar=dict(thickness=10, title=dict(text="P")),
                                 hovertemplate=name + ": %{y} → %{x}<br>P=%{z:.4f}<extra></extra>"),
                      row=1, col=j)
        tick = _state_dtick(K) if K > 8 else 1
        fig.update_xaxes(tickmode="array", tickvals=names[::tick], title_text="to", row=1, col=j)
        fig.update_yaxes(tickmode="array", tickvals=names[::tick], autorange="reversed",
                         title_text="from" if j == 1 else None, row=1, col=j)
    fig.update_layout(template=_TEMPLATE, title=dict(text=title), height=360, margin=dict(l=50, r=10, t=64, b=40))
    return fig


def duration_comparison(runs: Sequence[tuple[str, np.ndarray, float]],
                        title: str = "Segment lengths compared") -> go.Figure:
    """Histograms (overlaid) of every segment's length in ms, one per run: ``(name, path, frame_shift)``.
    A model with more states cuts the clip into shorter segments; this shows by how much."""
    fig = _new_figure(title, height=300)
    for i, (name, path, shift) in enumerate(runs):
        p = np.asarray(path).reshape(-1)
        lengths_ms = np.concatenate([d for d in durations_from_path(p, int(p.max()) + 1 if p.size else 1)]) \
            * float(shift) * 1000.0 if p.size else np.zeros(0)
        colour = ("#2E91E5", "#EF553B", "#1CA71C", "#AB63FA")[i % 4]
        fig.add_trace(go.Histogram(x=lengths_ms, name=f"{name}: {lengths_ms.size} segments, "
                                                    f"median {np.median(lengths_ms) if lengths_ms.size else 0:.0f} ms",
                                   marker_color=colour, opacity=0.6, xbins=dict(size=float(shift) * 1000.0),
                                   hovertemplate=name + ": %{y} segments of %{x} ms<extra></extra>"))
    fig.update_layout(barmode="overlay", xaxis=dict(title=dict(text="segment length (ms)")),
                      yaxis=dict(title=dict(text="segments"), tickformat="d", rangemode="tozero"),
                      legend=bottom_legend(), margin=dict(l=50, r=10, t=44, b=100))
    return fig
