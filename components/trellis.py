"""Trellis figures: forward variables and Viterbi backpointers, one time step at a time.

Used by the Lab (a model you define, a few frames) and the Analyze tab (the first second of
a real clip under the trained model). The numbers come from :func:`components.lab.trellis`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go

from components import figures as F
from components.lab import Trellis, trellis

# Up to this many nodes, each is drawn as a marker with its number; beyond, a heatmap.
NODE_LIMIT = 320


def trellis_figure(tr: Trellis, step: int, state_names: Sequence[str] | None = None,
                   frame_shift: float | None = None, title: str = "Trellis") -> go.Figure:
    """Columns = frames ``0..T-1``, rows = states. Columns up to ``step`` (0-based) are filled:
    colour = p(state | frames so far) (the normalised forward variable); grey lines = each
    node's Viterbi backpointer; red = the best path of the frames so far. Later columns are
    empty (not computed yet at this step)."""
    T, K = tr.filtered.shape
    step = int(min(max(step, 0), T - 1))
    names = list(state_names) if state_names is not None else [f"s{k}" for k in range(K)]
    xs = np.arange(T) if frame_shift is None else np.arange(T) * float(frame_shift)
    xlabel = "frame t" if frame_shift is None else "time (s)"
    fig = F._new_figure(f"{title}: step {step + 1}/{T}", height=max(300, min(680, 26 * K + 160)))
    shown = np.where(np.arange(T)[:, None] <= step, tr.filtered, np.nan)  # [T, K]
    if T * K <= NODE_LIMIT:
        tt, kk = np.meshgrid(np.arange(step + 1), np.arange(K), indexing="ij")
        tt, kk = tt.ravel(), kk.ravel()
        # backpointer edges first (under the nodes)
        ex, ey = [], []
        for t in range(1, step + 1):
            for k in range(K):
                ex += [xs[t - 1], xs[t], None]
                ey += [tr.psi[t, k], k, None]
        fig.add_trace(go.Scatter(x=ex, y=ey, mode="lines", line=dict(color="#9ca3af", width=1),
                                 name="backpointers", hoverinfo="skip"))
        text = [f"{tr.filtered[t, k]:.2f}" for t, k in zip(tt, kk)] if K <= 10 and T <= 24 else None
        fig.add_trace(go.Scatter(
            x=xs[tt], y=kk, mode="markers+text" if text else "markers", name="forward",
            text=text, textposition="top center", textfont=dict(size=9),
            marker=dict(size=16 if K <= 10 else 9, color=tr.filtered[tt, kk], colorscale="Viridis", cmin=0, cmax=1,
                        line=dict(color="#333", width=0.5),
                        colorbar=dict(title=dict(text="p(z|x≤t)"), thickness=10)),
            customdata=np.stack([tr.log_alpha[tt, kk], tr.log_delta[tt, kk], tr.psi[tt, kk]], axis=1),
            hovertemplate="t=%{x} state %{y}<br>log α = %{customdata[0]:.2f}<br>log δ = %{customdata[1]:.2f}"
                          "<br>ψ (best previous) = %{customdata[2]}<extra></extra>"))
    else:
        fig.add_trace(go.Heatmap(z=shown.T, x=xs, y=np.arange(K), zmin=0, zmax=1, colorscale="Viridis",
                                 name="forward", colorbar=dict(title=dict(text="p(z|x≤t)"), thickness=10),
                                 hovertemplate="t=%{x} state %{y}<br>p = %{z:.3f}<extra></extra>"))
        # backpointers of the current column only (all K would be a thicket)
        if step > 0:
            ex, ey = [], []
            for k in range(K):
                ex += [xs[step - 1], xs[step], None]
                ey += [tr.psi[step, k], k, None]
            fig.add_trace(go.Scatter(x=ex, y=ey, mode="lines", line=dict(color="#e5e7eb", width=1),
                                     name="backpointers", hoverinfo="skip"))
    path = tr.best_paths[step, : step + 1]
    fig.add_trace(go.Scatter(x=xs[: step + 1], y=path, mode="lines+markers", name="best path so far",
                             line=dict(color="#FB0D0D", width=3), marker=dict(size=5, color="#FB0D0D"),
                             hovertemplate="best path: t=%{x} state %{y}<extra></extra>"))
    tick = F._state_dtick(K)
    fig.update_layout(xaxis=dict(title=dict(text=xlabel), range=[xs[0] - 0.5 * (xs[1] - xs[0] if T > 1 else 1),
                                                                   xs[-1] + 0.5 * (xs[1] - xs[0] if T > 1 else 1)]),
                      yaxis=dict(title=dict(text="state"), tickmode="array", tickvals=list(range(0, K, tick)),
                                 ticktext=names[::tick], range=[-0.7, K - 0.3], automargin=True),
                      showlegend=False, margin=dict(l=70, r=10, t=44, b=40))
    return fig


def column_table(tr: Trellis, step: int, state_names: Sequence[str] | None = None) -> str:
    """Markdown: the numbers of column ``step`` and how they were computed."""
    T, K = tr.filtered.shape
    t = int(min(max(step, 0), T - 1))
    names = list(state_names) if state_names is not None else [f"s{k}" for k in range(K)]
    if t == 0:
        head = "**t = 0:** α₀(k) = π_k · b_k(x₀); δ₀(k) = the same; no backpointer yet."
    else:
        head = (f"**t = {t}:** α_t(k) = b_k(x_t) · Σ_j α_(t−1)(j) a_jk (all paths into k); "
                "δ_t(k) = b_k(x_t) · max_j δ_(t−1)(j) a_jk (the best one); ψ_t(k) = that best j.")
    rows = ["| state | log α | p(z=k ∣ x≤t) | log δ | ψ (from) |", "|---|---|---|---|---|"]
    for k in range(min(K, 16)):
        psi = names[tr.psi[t, k]] if t > 0 else "—"
        rows.append(f"| {names[k]} | {tr.log_alpha[t, k]:.2f} | {tr.filtered[t, k]:.3f} | "
                    f"{tr.log_delta[t, k]:.2f} | {psi} |")
    more = f"\n\n({K - 16} more states: hover the figure.)" if K > 16 else ""
    best = " → ".join(names[k] for k in tr.best_paths[t, : t + 1][-12:])
    return head + "\n\n" + "\n".join(rows) + more + f"\n\nBest path so far (last 12): {best}"


def trellis_from_model(model: Any, x: np.ndarray) -> Trellis:
    """The trellis of an engine HMM on frames ``x [T, ...]``."""
    from components.lab import model_log_probs

    return trellis(*model_log_probs(model, x))


# --------------------------------------------------------------------------- a real clip

CLIP_SECONDS = 1.0


def clip_trellis(audio: Any, settings: dict, model_path: str | None, seconds: float = CLIP_SECONDS,
                 scope: str = ""):
    """The trellis of the first ``seconds`` of ``audio`` under the trained model at ``model_path``
    (the run's exported model file), on the same features (cached under ``scope``, the session,
    as Analyze's). Returns ``(Trellis, frame_shift)``.
    Raises ValueError with the reason when there is no such model or it is semi-Markov (its
    recursions run over segments, not frames)."""
    from components import pipeline as P
    from components.results import AnalysisSettings

    if settings.get("model_type") == "semi-markov":
        raise ValueError("the frame trellis shows HMM recursions; a semi-Markov model's run over segments "
                         "(choose Gaussian or Gaussian mixture and press Analyze)")
    if not model_path:
        raise ValueError("this run has no model file: press Analyze first")
    model = P.load_model(model_path)
    fields = {k: v for k, v in settings.items() if k in AnalysisSettings.__dataclass_fields__}
    feats, _ = P.features(P.load(audio), AnalysisSettings(**fields), scope)
    T = int(min(feats.values.shape[0], round(seconds / feats.frame_shift)))
    return trellis_from_model(model, feats.values[:T]), feats.frame_shift
