"""Run history per session (/history), the comparison and the HTML report export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from components import history as H
from components.report import report_html
from components.results import AnalysisResult


def _result(K: int, T: int = 200, seed: int = 0, audio_hash: str = "abc", max_iter: int = 20,
            history=None) -> AnalysisResult:
    rng = np.random.default_rng(seed)
    path = np.repeat(np.arange(T // 10) % K, 10)[:T]
    A = np.full((K, K), 0.1 / max(K - 1, 1))
    np.fill_diagonal(A, 0.9)
    return AnalysisResult(
        settings={"model_type": "gaussian", "num_states": K, "num_mixtures": 2, "max_iter": max_iter, "tol": 1e-3,
                  "feature_kind": "mfcc", "decoder": "viterbi"},
        sample_rate=16000, duration=T * 0.01, frame_shift=0.01, num_frames=T, obs_dim=13,
        spectrogram_db=rng.normal(size=(T, 20)).astype(np.float32) - 40, freqs=np.linspace(0, 8000, 20),
        posteriors=np.eye(K)[path], path=path, viterbi_score=-10.0, log_likelihood=-1000.0 - K,
        history=history if history is not None else [-1200.0, -1010.0, -1000.0 - K], startprob=np.full(K, 1 / K),
        transmat=A, duration_pmf=None, bic=5000.0 + 10 * K, aic=4000.0 - K,
        timings={"training": 0.5, "decoding": 0.1}, audio_hash=audio_hash)


def test_history_keeps_runs_newest_last_with_metrics():
    runs = H.add_run(None, _result(4), "clip.wav")
    runs = H.add_run(runs, _result(8), "clip.wav")
    js = H.history_json(runs)
    assert [r["num_states"] for r in js] == [4, 8]
    first = js[0]
    assert first["settings"]["num_states"] == 4 and first["audio"] == "clip.wav"
    assert first["bic"] == 5040.0 and first["aic"] == 3996.0
    assert first["log_likelihood_per_frame"] == pytest.approx(-1004.0 / 200)
    assert first["seconds"] == pytest.approx(0.6) and first["iterations"] == 3 and first["converged"] is True
    json.dumps(js)  # plain JSON
    # the second run on the same clip shares the first one's display spectrogram
    assert runs[1].result.spectrogram_db is runs[0].result.spectrogram_db
    # capped: the oldest runs go
    many = None
    for k in range(H.MAX_RUNS + 3):
        many = H.add_run(many, _result(2 + k % 5), "x.wav")
    assert len(many) == H.MAX_RUNS and many[-1].id > many[0].id


def test_comparison_and_what_changed():
    runs = H.add_run(None, _result(4), "clip.wav")
    runs = H.add_run(runs, _result(8, max_iter=3), "clip.wav")
    out = H.compare(runs, runs[0].id, runs[1].id)
    names = [t.name for t in out["timeline"].data]
    # one spectrogram (same clip) and one strip per run
    assert names == ["spectrogram", f"segments #{runs[0].id} K=4", f"segments #{runs[1].id} K=8"]
    assert [t.type for t in out["transitions"].data] == ["heatmap", "heatmap"]
    assert np.asarray(out["transitions"].data[1].z).shape == (8, 8)
    assert len(out["durations"].data) == 2
    text = out["changes"]
    assert "`num_states` 4 → 8" in text and "`max_iter` 20 → 3" in text
    assert f"BIC prefers run #{runs[0].id}, AIC prefers run #{runs[1].id}" in text
    assert "stopped at the EM iteration limit" in text  # run B: 3 iterations of max 3, gain above tol
    other = H.add_run(runs, _result(4, audio_hash="zzz", seed=1), "other.wav")
    out2 = H.compare(other, other[0].id, other[2].id)
    assert [t.type for t in out2["timeline"].data] == ["heatmap", "bar", "heatmap", "bar"]
    assert "Different clips" in out2["changes"]
    with pytest.raises(ValueError, match="pick two runs"):
        H.compare(runs, runs[0].id, 999)


def test_report_is_self_contained_html():
    run = H.add_run(None, _result(6), "clip.wav")[0]
    page = report_html(run)
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script[^>]+src=", page)  # nothing fetched: plotly.js is inlined
    assert "Plotly" in page and len(page) > 3_000_000
    for name in ("timeline", "transitions", "durations", "loglik", "sweep", "latency"):
        assert f'id="fig-{name}"' in page
    assert "states K</th><td>6" in page and "BIC</th><td>5060" in page


# ---------------------------------------------------------------------- through the API

@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    pytest.importorskip("gradio_client")
    from app_server import running_app

    with running_app(tmp_path_factory.mktemp("history")) as url:
        yield url


def test_history_api_is_per_session(app_url):
    from app_server import SAMPLE
    from gradio_client import Client, handle_file

    me, other = Client(app_url, verbose=False), Client(app_url, verbose=False)
    assert me.predict(api_name="/history") == []
    for k in (3, 5):
        me.predict(handle_file(str(SAMPLE)), num_states=k, sweep_states="", max_iter=5, api_name="/analyze")
    runs = me.predict(api_name="/history")
    assert [r["num_states"] for r in runs] == [3, 5]  # newest last
    for r in runs:
        assert r["settings"]["num_states"] == r["num_states"] and r["settings"]["max_iter"] == 5
        for key in ("bic", "aic", "log_likelihood_per_frame", "seconds"):
            assert isinstance(r[key], float)
        assert r["bic"] > r["aic"] or r["num_frames"] < 8  # BIC charges log N > 2 per parameter
    assert runs[1]["log_likelihood_per_frame"] > runs[0]["log_likelihood_per_frame"]
    assert other.predict(api_name="/history") == []  # another session never sees them

    report = Path(me.predict(runs[0]["id"], api_name="/export_report"))
    page = report.read_text(encoding="utf-8")
    assert "K=3" in page and 'id="fig-timeline"' in page and not re.search(r"<script[^>]+src=", page)
    newest = Path(me.predict(None, api_name="/export_report")).read_text(encoding="utf-8")
    assert "K=5" in newest
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="no run"):
        other.predict(None, api_name="/export_report")
