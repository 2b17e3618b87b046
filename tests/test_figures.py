"""Figure builders on known inputs: the traces carry the right data, at the right times."""

import json
import os

import numpy as np
import pytest

os.environ["HMM_STUDIO_VALIDATE_FIGURES"] = "1"  # catch misspelt plotly properties

from components import figures as F  # noqa: E402

SHIFT = 0.01


def _decode(arr):
    """Plotly may hold numpy arrays or (after JSON) base64 typed arrays; give numpy."""
    if isinstance(arr, dict) and "bdata" in arr:
        import base64

        out = np.frombuffer(base64.b64decode(arr["bdata"]), dtype=np.dtype(arr["dtype"]))
        if "shape" in arr:
            out = out.reshape([int(v) for v in str(arr["shape"]).split(",")])
        return out
    return np.asarray(arr)


def _trace(fig, name):
    for tr in fig.data:
        if tr.name == name:
            return tr
    raise AssertionError(f"no trace named {name!r}: {[t.name for t in fig.data]}")


def test_path_to_segments_times():
    path = np.array([0, 0, 0, 2, 2, 1, 1, 1, 1, 0])
    segs = F.path_to_segments(path, SHIFT)
    assert [(s.label, round(s.start, 6), round(s.end, 6)) for s in segs] == [
        ("s0", 0.0, 0.03), ("s2", 0.03, 0.05), ("s1", 0.05, 0.09), ("s0", 0.09, 0.10)]
    named = F.path_to_segments(path, SHIFT, labels=["a", "b", "c"])
    assert [s.label for s in named] == ["a", "c", "b", "a"]


def test_transition_heatmap_z_is_matrix_and_text_values():
    A = np.array([[0.9, 0.1, 0.0], [0.0, 0.75, 0.25], [0.125, 0.0, 0.875]])
    fig = F.transition_figure(A)
    hm = fig.data[0]
    np.testing.assert_array_equal(np.asarray(hm.z), A)
    assert list(hm.x) == ["s0", "s1", "s2"] and list(hm.y) == ["s0", "s1", "s2"]
    assert np.asarray(hm.text)[1, 2] == ".25" and np.asarray(hm.text)[2, 2] == ".88"
    assert np.asarray(hm.text)[0, 2] == ""  # zeros stay blank so the cells read apart
    assert fig.layout.yaxis.autorange == "reversed"  # row i = from-state i, top to bottom
    # survives JSON (what Gradio sends) with the same values
    z = _decode(json.loads(fig.to_json())["data"][0]["z"])
    np.testing.assert_allclose(z, A)


def test_posterior_heatmap_axes_are_frame_times_and_states():
    T, K = 7, 3
    post = np.zeros((T, K))
    post[np.arange(T), [0, 0, 1, 1, 1, 2, 2]] = 1.0
    fig = F.posterior_figure(post, SHIFT)
    hm = fig.data[0]
    np.testing.assert_allclose(hm.x, (np.arange(T) + 0.5) * SHIFT)  # frame centres, seconds
    np.testing.assert_array_equal(hm.y, np.arange(K))
    np.testing.assert_allclose(np.asarray(hm.z), post.T)  # z[k, t] = gamma_t(k)
    assert fig.layout.xaxis.title.text == "time (s)"
    assert tuple(fig.layout.xaxis.range) == pytest.approx((0.0, T * SHIFT))


def test_viterbi_path_steps_cover_frame_intervals():
    path = np.array([1, 1, 0, 2])
    fig = F.viterbi_path_figure(path, SHIFT, num_states=3)
    tr = fig.data[0]
    np.testing.assert_allclose(tr.x, [0.0, 0.01, 0.02, 0.03, 0.04])
    np.testing.assert_array_equal(tr.y, [1, 1, 0, 2, 2])
    assert tr.line.shape == "hv"
    assert tuple(fig.layout.yaxis.range) == (-0.5, 2.5)


def test_spectrogram_segmentation_is_a_strip_of_bars_at_segment_times():
    T, Fbins = 50, 10
    db = np.linspace(-80, 0, T * Fbins).reshape(T, Fbins)
    freqs = np.linspace(0, 8000, Fbins)
    path = np.array([0] * 20 + [1] * 10 + [0] * 20)
    segs = F.path_to_segments(path, SHIFT)
    fig = F.spectrogram_figure(db, freqs, SHIFT, segs)
    hm = _trace(fig, "spectrogram")
    np.testing.assert_allclose(hm.x, (np.arange(T) + 0.5) * SHIFT)
    np.testing.assert_allclose(hm.y, freqs)
    np.testing.assert_array_equal(np.asarray(hm.z), np.round(db).T)  # integer dB for display
    # no lines over the spectrogram: the segmentation is its own strip below it
    assert not fig.layout.shapes
    strip = _trace(fig, "segments")
    assert strip.type == "bar" and strip.orientation == "h"
    np.testing.assert_allclose(strip.base, [0.0, 0.2, 0.3])
    np.testing.assert_allclose(strip.x, [0.2, 0.1, 0.2])
    assert list(strip.marker.color) == [F.state_colour(0), F.state_colour(1), F.state_colour(0)]
    assert list(strip.text) == ["s0", "s1", "s0"]
    assert [c[0] for c in strip.customdata] == [0, 1, 2]  # the click bridge plays segment c[0]
    assert [c[1] for c in strip.customdata] == ["s0", "s1", "s0"]
    assert strip.yaxis != hm.yaxis and strip.xaxis == "x2" and fig.layout.xaxis2.matches is None
    assert fig.layout.xaxis.matches == "x2"  # one time axis


def test_duration_histograms_count_runs_and_geometric_overlay():
    path = np.array([0, 0, 1, 0, 0, 1, 1, 1, 0, 0])  # s0 runs: 2,2,2 ; s1 runs: 1,3
    A = np.array([[0.5, 0.5], [0.25, 0.75]])
    fig = F.duration_figure(path, SHIFT, 2, transmat=A)
    bars = [t for t in fig.data if t.type == "bar"]
    np.testing.assert_allclose(bars[0].x, [10.0, 20.0])
    np.testing.assert_array_equal(bars[0].y, [0, 3])
    np.testing.assert_allclose(bars[1].x, [10.0, 20.0, 30.0])
    np.testing.assert_array_equal(bars[1].y, [1, 0, 1])
    model = [t for t in fig.data if t.type == "scatter"]
    # expected counts n * (1 - a) a^(d-1): state 0 has 3 runs, a = 0.5
    np.testing.assert_allclose(model[0].y, 3 * np.array([0.5, 0.25]))
    # explicit pmf (semi-Markov) is used as given
    pmf = np.array([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]])
    fig2 = F.duration_figure(path, SHIFT, 2, duration_pmf=pmf)
    model2 = [t for t in fig2.data if t.type == "scatter"]
    np.testing.assert_allclose(model2[1].y, 2 * pmf[1])


def test_loglik_curve_is_history():
    h = [-1000.0, -900.0, -880.0, -879.5]
    fig = F.loglik_figure(h, tol=1e-3, num_frames=100, final=-879.25)
    np.testing.assert_array_equal(fig.data[0].x, [1, 2, 3, 4])
    np.testing.assert_allclose(fig.data[0].y, h)
    trained = _trace(fig, "trained model")
    assert list(trained.x) == [5] and list(trained.y) == [-879.25]
    text = fig.layout.annotations[0].text
    assert "-879.50" in text and "-879.25" in text and "0.005/frame" in text


def test_sweep_marks_minimum():
    rows = [dict(num_states=k, num_mixtures=1, bic=(k - 4) ** 2 + 10, aic=(k - 5) ** 2) for k in range(2, 8)]
    fig = F.sweep_figure(rows)
    bic = _trace(fig, "BIC")
    np.testing.assert_array_equal(bic.x, [2, 3, 4, 5, 6, 7])
    np.testing.assert_allclose(bic.y, [14, 11, 10, 11, 14, 19])
    best = [t for t in fig.data if t.name.startswith("best BIC")][0]
    assert list(best.x) == [4] and list(best.y) == [10]
    best_aic = [t for t in fig.data if t.name.startswith("best AIC")][0]
    assert list(best_aic.x) == [5]
    marked = F.sweep_figure(rows, current=3, current_point={"bic": 11.0, "aic": 4.0})
    line = [sh for sh in marked.layout.shapes if sh.type == "line"][0]
    assert line.x0 == 3 and line.x1 == 3
    point = _trace(marked, "this model: K=3")
    assert list(point.x) == [3, 3] and list(point.y) == [11.0, 4.0]
    assert "BIC prefers K=4, AIC prefers K=5" in F.criteria_note(rows)
    assert F.criteria_note([dict(r, aic=r["bic"]) for r in rows]).startswith("BIC and AIC agree: K=4")


def test_alignment_boundary_errors_and_accuracy():
    ref = [("a", 0.0, 0.10), ("b", 0.10, 0.30), ("c", 0.30, 0.50)]
    hyp = [("a", 0.0, 0.115), ("b", 0.115, 0.27), ("c", 0.27, 0.50)]
    fig = F.alignment_figure(hyp, ref, duration=0.5)
    err = _trace(fig, "boundary error")
    # The boundaries compare_tiers scores: the inner ones (the tier's outer edges are not).
    np.testing.assert_allclose(err.x, [0.10, 0.30])
    np.testing.assert_allclose(err.y, [15.0, -30.0], atol=1e-9)
    assert list(err.text) == ["a|b", "b|c"]
    acc = _trace(fig, "accuracy")
    # |err| <= 10, 20, 25, 50 ms: 0/2, 1/2, 1/2, 2/2
    np.testing.assert_allclose(acc.y, [0.0, 50.0, 50.0, 100.0])
    assert fig.layout.xaxis2.matches == "x"  # boundary errors share the tiers' time axis
    tier_rects = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(tier_rects) == 6
    assert {(round(s.x0, 3), round(s.x1, 3)) for s in tier_rects} >= {(0.0, 0.115), (0.1, 0.3)}


def test_latency_panel_values():
    fig = F.latency_figure({"load": 0.01, "features": 0.02, "training": 0.5}, peak_rss_mb=300.0,
                           peak_gpu_mb=None, rtf=0.053, device="cpu", audio_seconds=10.0)
    t = _trace(fig, "time")
    assert list(t.y) == ["load", "features", "training"]
    np.testing.assert_allclose(t.x, [10.0, 20.0, 500.0])
    mem = _trace(fig, "memory")
    assert list(mem.x) == ["CPU RSS"] and list(mem.y) == [300.0]
    assert "RTF 0.053" in fig.layout.title.text and "device cpu" in fig.layout.title.text


def test_timeline_shares_one_time_axis():
    T, K = 40, 3
    rng = np.random.default_rng(0)
    post = rng.dirichlet(np.ones(K), T)
    path = post.argmax(1)
    db = rng.normal(size=(T, 12)) - 50
    fig = F.timeline_figure(T * SHIFT, SHIFT, db, np.linspace(0, 8000, 12), post, path,
                            F.path_to_segments(path, SHIFT), tiers=[("phones", [("x", 0.0, 0.2), ("y", 0.2, 0.4)])])
    # all panels on x axes that match the first one, all ranged [0, duration]
    axes = [fig.layout[k] for k in fig.layout if k.startswith("xaxis")]
    assert len(axes) == 4  # spectrogram, posteriors, path, tiers (tiers replace the strip)
    assert all(tuple(a.range) == pytest.approx((0.0, 0.4)) for a in axes)
    matches = [a.matches for a in axes if a.matches is not None]
    assert len(matches) == 3 and len(set(matches)) == 1  # three panels follow the fourth
    post_hm = _trace(fig, "posterior")
    np.testing.assert_allclose(post_hm.x, (np.arange(T) + 0.5) * SHIFT)


def test_narrow_segments_keep_hover_but_no_label():
    path = np.array([0] * 500 + [1] + [0] * 499)  # a 10 ms segment in a 10 s clip
    db = np.zeros((1000, 4)) - 40
    fig = F.spectrogram_figure(db, np.linspace(0, 8000, 4), SHIFT, F.path_to_segments(path, SHIFT))
    labels = _trace(fig, "segments")
    assert list(labels.text) == ["s0", "", "s0"]
    assert labels.customdata[1][1] == "s1"


def test_latency_marks_cached_stages_and_precomputed_runs():
    fig = F.latency_figure({"load": 0.01, "training": 0.0, "decoding": 0.002}, cached=["training"])
    assert list(_trace(fig, "time").y) == ["load", "training (cached)", "decoding"]
    pre = F.latency_figure({"load": 0.01}, cached=["precomputed"])
    assert "precomputed at start-up" in pre.layout.title.text
