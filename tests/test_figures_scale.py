"""Figures stay legible from K = 2 to K = 64: trace counts, whole-number ticks, distinct
colours, the current model's point on the BIC chart, non-convergence on the EM curve."""

import os

import numpy as np
import pytest

os.environ["HMM_STUDIO_VALIDATE_FIGURES"] = "1"

from components import figures as F  # noqa: E402

SHIFT = 0.01


def _path(K, T=3000, seed=0):
    """A path visiting every state with runs of 1-12 frames."""
    rng = np.random.default_rng(seed)
    out, k = [], 0
    while len(out) < T:
        out += [k % K] * int(rng.integers(1, 13))
        k += 1 if K < 3 else int(rng.integers(1, K))
    return np.asarray(out[:T])


def _sticky(K):
    A = np.full((K, K), 0.1 / max(K - 1, 1))
    np.fill_diagonal(A, 0.9 if K > 1 else 1.0)
    return A


@pytest.mark.parametrize("K", [2, 8, 32, 64])
def test_state_colours_distinct(K):
    colours = [F.state_colour(k) for k in range(K)]
    assert len(set(colours)) == K


@pytest.mark.parametrize("K", [2, 8, 32, 64])
def test_durations_compact_with_whole_number_ticks(K):
    path = _path(K)
    fig = F.duration_figure(path, SHIFT, K, transmat=_sticky(K))
    runs = F.durations_from_path(path, K)
    if K <= 8:
        bars = [t for t in fig.data if t.type == "bar"]
        lines = [t for t in fig.data if t.type == "scatter"]
        assert len(bars) == K and len(lines) == K  # one histogram + one model line per state
        for k, b in enumerate(bars):
            ya = fig.layout["yaxis" + b.yaxis[1:]]
            assert ya.tickformat == "d" and ya.tick0 == 0 and float(ya.dtick).is_integer() and ya.dtick >= 1
            assert int(np.sum(b.y)) == len(runs[k])
    else:
        # one heatmap (state x run length) + observed and model means: 3 traces at any K
        assert [t.type for t in fig.data] == ["heatmap", "scatter", "scatter"]
        hm = fig.data[0]
        z = np.nan_to_num(np.asarray(hm.z, dtype=float))
        assert z.shape[0] == K
        np.testing.assert_array_equal(z.sum(1), [len(r) for r in runs])
        assert hm.colorbar.tickformat == "d" and float(hm.colorbar.dtick).is_integer()
        np.testing.assert_allclose(fig.data[1].x, [r.mean() * 10.0 for r in runs])  # observed mean, ms
        np.testing.assert_allclose(fig.data[2].x, np.full(K, 100.0))  # 1 / (1 - 0.9) frames = 100 ms
        assert len(fig.layout.yaxis.tickvals) <= 9
    assert fig.layout.height <= 720


@pytest.mark.parametrize("K", [2, 8, 32, 64])
def test_transition_matrix_labels_readable(K):
    fig = F.transition_figure(_sticky(K))
    hm = fig.data[0]
    assert np.asarray(hm.z).shape == (K, K)
    assert (hm.text is not None) == (K <= 12)  # values printed only where cells can hold them
    ticks = list(fig.layout.xaxis.tickvals)
    assert ticks[0] == "s0" and len(ticks) <= 16
    assert fig.layout.xaxis.title.standoff and fig.layout.xaxis.automargin


@pytest.mark.parametrize("K", [2, 8, 32, 64])
def test_bic_chart_marks_current_model(K):
    grid = sorted({2, 4, 8, 16, 32, 64} | {K})
    rows = [dict(num_states=k, num_mixtures=1, bic=1000 + (k - 8) ** 2, aic=900 + (k - 16) ** 2) for k in grid]
    mine = next(r for r in rows if r["num_states"] == K)
    fig = F.sweep_figure(rows, current=K, current_point={"bic": mine["bic"], "aic": mine["aic"]})
    assert [t.name for t in fig.data] == ["BIC", "AIC", "best BIC: K=8", "best AIC: K=16", f"this model: K={K}"]
    point = fig.data[-1]
    assert list(point.x) == [K, K] and list(point.y) == [mine["bic"], mine["aic"]]
    assert list(fig.layout.xaxis.tickvals) == grid
    assert "BIC prefers K=8, AIC prefers K=16" in F.criteria_note(rows)


@pytest.mark.parametrize("K", [2, 8, 32, 64])
def test_timeline_strip_one_trace_any_K(K):
    T = 1500
    path = _path(K, T)
    post = np.eye(K)[path]
    db = np.zeros((T, 20)) - 40
    segs = F.path_to_segments(path, SHIFT)
    fig = F.timeline_figure(T * SHIFT, SHIFT, db, np.linspace(0, 8000, 20), post, path, segs, title=f"Timeline · K={K}")
    assert [t.name for t in fig.data] == ["spectrogram", "segments", "posterior", "Viterbi path"]
    strip = fig.data[1]
    assert len(strip.base) == len(segs)
    assert set(strip.marker.color) == {F.state_colour(k) for k in set(path.tolist())}
    assert not fig.layout.shapes  # no boundary lines striping the spectrogram
    assert fig.layout.yaxis3.dtick == max(1, int(np.ceil(K / 8)))  # posterior state ticks


def test_em_curve_says_not_converged():
    h = [-1000.0, -900.0, -850.0, -830.0]
    fig = F.loglik_figure(h, tol=1e-3, num_frames=100, final=-825.0, max_iter=4)
    assert "NOT converged" in fig.layout.title.text
    x = [t for t in fig.data if t.name == "not converged"][0]
    assert list(x.x) == [4] and list(x.y) == [-830.0]
    assert [sh.x0 for sh in fig.layout.shapes] == [4]
    ok = F.loglik_figure(h[:3], tol=1e-3, num_frames=100, max_iter=20)
    assert "— converged" in ok.layout.title.text and not [t for t in ok.data if t.name == "not converged"]
    assert F.em_converged([-10.0, -9.99995], 1e-3, 100, 2) is True  # at the limit but under tol
    assert F.em_converged([], 1e-3, 100, 5) is None


def test_figures_follow_the_page_theme():
    fig = F.transition_figure(_sticky(3))
    assert fig.layout.template.layout.paper_bgcolor == "rgba(0,0,0,0)"
    assert fig.layout.template.layout.plot_bgcolor == "rgba(0,0,0,0)"
