"""One "label path -> segments" helper (hmm_engine.segments) and the files built on it:
summary.json and states.TextGrid must list the very same segments."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hmm_engine.alignment.textgrids import read_textgrid
from hmm_engine.errors import InvalidInputError
from hmm_engine.segments import Segment, label_runs, segments_from_frame_labels


def _runs_by_hand(labels):
    runs, start = [], 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            runs.append((labels[start], start, i))
            start = i
    return runs


@pytest.mark.parametrize("seed", range(5))
def test_label_runs_same_for_lists_arrays_and_tensors(seed):
    rng = np.random.default_rng(seed)
    path = np.repeat(rng.integers(0, 4, 30), rng.integers(1, 5, 30))
    expected = _runs_by_hand(path.tolist())
    assert label_runs(path.tolist()) == expected
    assert label_runs(path) == expected
    assert label_runs(torch.from_numpy(path)) == expected
    assert all(type(k) is int for k, _, _ in label_runs(path))
    # Runs tile the path exactly.
    assert expected[0][1] == 0 and expected[-1][2] == path.size
    assert all(a[2] == b[1] and a[0] != b[0] for a, b in zip(expected[:-1], expected[1:]))


def test_label_runs_edge_cases():
    assert label_runs([]) == []
    assert label_runs(np.zeros(0, dtype=np.int64)) == []
    assert label_runs(["a"]) == [("a", 0, 1)]
    assert label_runs(np.array(["x", "x", "y"])) == [("x", 0, 2), ("y", 2, 3)]


def test_segments_with_names_and_duration():
    segs = segments_from_frame_labels(np.array([1, 1, 0, 0, 0, 2]), 0.01, duration=0.055, names=["a", "b", "c"])
    assert segs == [Segment("b", 0.0, 0.02), Segment("a", 0.02, 0.05), Segment("c", 0.05, 0.055)]
    with pytest.raises(InvalidInputError, match="no name"):
        segments_from_frame_labels([0, 3], 0.01, names=["a", "b"])


def _hand_made_result(path, shift, duration):
    from components.results import AnalysisResult

    T, K = len(path), int(max(path)) + 1
    post = np.full((T, K), 1.0 / K)
    return AnalysisResult(
        settings={}, sample_rate=16000, duration=duration, frame_shift=shift, num_frames=T, obs_dim=2,
        spectrogram_db=np.zeros((T, 3), np.float32), freqs=np.arange(3.0), posteriors=post,
        path=np.asarray(path), viterbi_score=-1.0, log_likelihood=-2.0, history=[-3.0, -2.0],
        startprob=np.full(K, 1.0 / K), transmat=np.full((K, K), 1.0 / K), duration_pmf=None, bic=1.0, aic=1.0,
        training_key="testsegments",
    )


def _assert_summary_matches_textgrid(files):
    summary = json.loads(open(files["summary"]).read())
    grid = read_textgrid(files["textgrid"])["states"]
    listed = summary["segments"]
    assert summary["num_segments"] == len(grid) == len(listed)
    for item, seg in zip(listed, grid):
        assert item["label"] == seg.label
        assert item["start"] == pytest.approx(seg.start, abs=1e-6)
        assert item["end"] == pytest.approx(seg.end, abs=1e-6)
    # Both end at the audio's duration (not at T * shift).
    assert grid[-1].end == pytest.approx(summary["audio"]["duration"], abs=1e-6)


def test_summary_json_and_states_textgrid_agree(tmp_path, monkeypatch):
    from components import pipeline as P

    monkeypatch.setattr(P, "OUTPUT_DIR", tmp_path)
    # 10 frames of 10 ms for 95 ms of audio: T * shift (0.1) != duration (0.095).
    result = _hand_made_result([0, 0, 2, 2, 2, 1, 1, 0, 2, 2], 0.01, 0.095)
    _assert_summary_matches_textgrid(P.write_exports(result))


def test_summary_json_and_states_textgrid_agree_on_the_sample(tmp_path, monkeypatch):
    from components import pipeline as P
    from components.results import AnalysisResult

    monkeypatch.setattr(P, "OUTPUT_DIR", tmp_path)
    result = AnalysisResult.load(P.PRECOMPUTED_DIR / "sample_synth.npz")
    _assert_summary_matches_textgrid(P.write_exports(result))
