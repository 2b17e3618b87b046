"""The dashboard's API end to end: ``python app.py`` on a free loopback port, called with gradio_client."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

from app_server import SAMPLE, running_app, sample_phone_models  # noqa: E402

pytestmark = pytest.mark.slow  # starts the app in a second process

MAX_UPLOAD = "2mb"


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("app"), HMM_STUDIO_MAX_FILE_SIZE=MAX_UPLOAD) as url:
        yield url


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def _plot(out) -> dict:
    assert out["type"] == "plotly"
    return json.loads(out["plot"])


def _arr(v):
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        return a.reshape([int(s) for s in v["shape"].split(",")]) if "shape" in v else a
    return np.asarray(v)


def _direct_engine_log_likelihood(path: Path, num_states=8, max_iter=20, tol=1e-3, seed=0) -> float:
    """The same analysis through the engine's own API, without the dashboard."""
    from hmm_engine import GaussianHMM
    from hmm_engine.frontend.audio import load_audio
    from hmm_engine.frontend.features import FeatureConfig, extract_features

    feats = extract_features(load_audio(str(path), target_sr=16000), FeatureConfig())
    model = GaussianHMM(num_states, feats.values.shape[1], covariance_type="diag", topology="ergodic")
    model.fit(feats.values, max_iter=max_iter, tol=tol, seed=seed)
    return float(model.forward_backward(feats.values)[1].sum())


def _sample_pcm(start: float, end: float, sr: int) -> np.ndarray:
    """The bundled sample's [start, end) seconds as the int16 samples segment playback returns."""
    from components import pipeline as P

    samples = P.load(str(SAMPLE)).samples
    return (np.clip(samples[round(start * sr):round(end * sr)], -1, 1) * 32767).astype(np.int16)


def test_analyze_defaults_match_direct_engine_call(client):
    out = client.predict(handle_file(str(SAMPLE)), api_name="/analyze")
    assert len(out) == 8
    summary = out[6]
    assert summary["num_states"] == 8
    assert summary["settings"]["model_type"] == "gaussian" and summary["settings"]["seed"] == 0
    ll = summary["log_likelihood"]
    assert ll is not None and math.isfinite(ll)
    assert ll == pytest.approx(_direct_engine_log_likelihood(SAMPLE), rel=1e-4)
    info = sf.info(str(SAMPLE))
    assert summary["audio"]["duration"] == pytest.approx(info.frames / info.samplerate, abs=1e-3)
    assert summary["num_frames"] == math.ceil(summary["audio"]["duration"] / 0.01 - 1e-9)
    # figures carry the summary's numbers
    trans = _plot(out[1])
    np.testing.assert_allclose(_arr(trans["data"][0]["z"]), np.asarray(summary["transmat"]), atol=1e-6)
    timeline = _plot(out[0])
    post = [t for t in timeline["data"] if t.get("name") == "posterior"][0]
    x = _arr(post["x"])
    assert x.size == summary["num_frames"] and x[0] == pytest.approx(0.005)
    loglik = _plot(out[3])
    np.testing.assert_allclose(_arr(loglik["data"][0]["y"]), summary["history"])
    sweep = _plot(out[4])
    assert any(str(t.get("name", "")).startswith("best BIC") for t in sweep["data"])
    assert [r["num_states"] for r in summary["sweep"]] == [2, 4, 6, 8, 12, 16]
    latency = _plot(out[5])
    assert "RTF" in latency["layout"]["title"]["text"]
    assert set(summary["timings"]) >= {"load", "features", "training", "decoding", "plotting"}
    # downloads: the TextGrid's state tier equals the segments of the summary
    files = {Path(p).name: p for p in out[7]}
    assert set(files) >= {"states.TextGrid", "frames.csv", "frames.json", "model.pt"}
    from hmm_engine.alignment.textgrids import read_textgrid

    tier = read_textgrid(files["states.TextGrid"])["states"]
    assert [s.label for s in tier] == [s["label"] for s in summary["segments"]]
    frames = json.loads(Path(files["frames.json"]).read_text())
    assert len(frames["states"]) == summary["num_frames"]


def test_decoding_only_change_skips_training(client):
    first = client.predict(handle_file(str(SAMPLE)), num_states=5, sweep_states="", api_name="/analyze")[6]
    second = client.predict(handle_file(str(SAMPLE)), num_states=5, sweep_states="", decoder="posterior",
                            api_name="/analyze")[6]
    assert "training" in second["cached"]
    assert second["log_likelihood"] == first["log_likelihood"]
    assert second["settings"]["decoder"] == "posterior"
    assert second["timings"]["training"] < 0.05


def _expect_error(client, match: str, *args, api_name="/analyze", **kwargs):
    with pytest.raises(Exception) as info:
        client.predict(*args, api_name=api_name, **kwargs)
    assert match.lower() in str(info.value).lower(), str(info.value)


def test_bad_inputs_give_clear_errors_and_app_keeps_serving(client, tmp_path):
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio" * 100)
    _expect_error(client, "could not read audio", handle_file(str(garbage)))

    long_clip = tmp_path / "long.wav"  # 65 s at 8 kHz: over the 60 s cap, under the upload cap
    sf.write(long_clip, (0.1 * np.random.default_rng(0).standard_normal(65 * 8000)).astype(np.float32), 8000,
             subtype="PCM_16")
    _expect_error(client, "longer than the limit", handle_file(str(long_clip)))

    short = tmp_path / "short.wav"  # 0.3 s = 30 frames < 64 states
    sf.write(short, (0.1 * np.random.default_rng(1).standard_normal(4800)).astype(np.float32), 16000)
    _expect_error(client, "64 states", handle_file(str(short)), num_states=64, sweep_states="")

    _expect_error(client, "not in the list of choices", handle_file(str(SAMPLE)), model_type="banana")
    _expect_error(client, "sweep states", handle_file(str(SAMPLE)), sweep_states="2,x")

    big = tmp_path / "big.wav"  # over the test server's 2 MB upload cap
    sf.write(big, np.zeros(1_200_000, dtype=np.float32) + 0.01, 16000, subtype="PCM_16")
    with pytest.raises(Exception) as info:
        client.predict(handle_file(str(big)), api_name="/analyze")
    assert "size" in str(info.value).lower() or "413" in str(info.value)

    _expect_error(client, "transcript is empty", handle_file(str(SAMPLE)), "   ", api_name="/align")
    bad_tg = tmp_path / "bad.TextGrid"
    bad_tg.write_text("File type = \"ooTextFile\"\nthis is not a textgrid\n")
    _expect_error(client, "bad.TextGrid", handle_file(str(SAMPLE)), "h @ l oU", transcript_kind="phones",
                  reference_textgrid=handle_file(str(bad_tg)), api_name="/align")

    # still serving
    ok = client.predict(handle_file(str(SAMPLE)), num_states=3, sweep_states="", api_name="/analyze")[6]
    assert ok["num_states"] == 3 and math.isfinite(ok["log_likelihood"])


def test_align_with_reference(client):
    ref = SAMPLE.with_suffix(".TextGrid")
    phones_lab = SAMPLE.with_suffix(".phones.lab")
    if not ref.exists() or not phones_lab.exists():
        pytest.skip("sample reference TextGrid / phone transcript missing")
    phones = phones_lab.read_text().split()
    out = client.predict(handle_file(str(SAMPLE)), phones_lab.read_text(), transcript_kind="phones",
                         reference_textgrid=handle_file(str(ref)), api_name="/align")
    timeline, fig, latency, summary, files = out
    hyp = [s["label"] for s in summary["phones"]]
    expected = (["sil"] if phones[0] != "sil" else []) + phones + (["sil"] if phones[-1] != "sil" else [])
    assert hyp == expected
    assert summary["phones"][0]["start"] == 0.0
    assert summary["phones"][-1]["end"] == pytest.approx(summary["duration"], abs=1e-6)
    m = summary["metrics"]
    assert m["boundaries"] > 0 and m["scored_boundaries"] > 0
    assert 0.0 <= m["within_20ms_pct"] <= m["within_50ms_pct"] <= 100.0
    assert math.isfinite(m["mean_abs_error_ms"])
    acc = [t for t in _plot(fig)["data"] if t.get("name") == "accuracy"][0]
    np.testing.assert_allclose(_arr(acc["y"]), [m[f"within_{t}ms_pct"] for t in (10, 20, 25, 50)])
    names = {Path(p).name for p in files}
    assert "alignment.TextGrid" in names

    # Segment playback through the API: a phone of this session's alignment, sample-exact.
    phone = summary["phones"][2]
    pcm, sr = sf.read(client.predict(2, api_name="/align_segment"), dtype="int16")
    np.testing.assert_array_equal(pcm, _sample_pcm(phone["start"], phone["end"], sr))
    _expect_error(client, f"no segment 999: the last run has segments 0-{len(hyp) - 1}", 999,
                  api_name="/align_segment")

    # Explicit (semi-Markov) phone durations through the API: same phone sequence, the
    # setting echoed in the summary, and the same result as calling the engine directly.
    timeline, fig, latency, summary, files = client.predict(
        handle_file(str(SAMPLE)), phones_lab.read_text(), transcript_kind="phones", durations="gamma",
        api_name="/align")
    assert summary["settings"]["durations"] == "gamma"
    assert [s["label"] for s in summary["phones"]] == expected
    from components import alignment as A

    direct = A.align(str(SAMPLE), phones_lab.read_text(), transcript_kind="phones", durations="gamma")
    np.testing.assert_allclose([s["start"] for s in summary["phones"]], [s.start for s in direct.phones], atol=1e-6)
    # the view carries the engine's own result (one AlignmentResult type), its tiers the view's
    from hmm_engine.alignment import AlignmentResult

    assert isinstance(direct.alignment, AlignmentResult)
    assert [(s.label, s.start, s.end) for s in direct.alignment.phones] == [(s.label, s.start, s.end)
                                                                           for s in direct.phones]
    _expect_error(client, "not in the list of choices", handle_file(str(SAMPLE)), phones_lab.read_text(),
                  transcript_kind="phones", durations="weibull", api_name="/align")
    with pytest.raises(Exception, match="durations must be one of"):
        A.align(str(SAMPLE), phones_lab.read_text(), transcript_kind="phones", durations="weibull")


def test_align_with_uploaded_phone_models(client, tmp_path):
    """Models trained elsewhere (here: train-labelled on the sample's own reference) align the
    clip without training; the result equals the engine's; they judge the transcript (a phone
    replaced is the worst-fitting one, where the original was said); bad model files get clear
    errors."""
    import torch

    from hmm_engine.alignment.inputs import compute_features
    from hmm_engine.alignment.phone_models import PhoneModels
    from hmm_engine.alignment.textgrids import read_textgrid
    from hmm_engine.alignment.utterance import align_utterance

    ref, phones_lab = SAMPLE.with_suffix(".TextGrid"), SAMPLE.with_suffix(".phones.lab")
    models_path = sample_phone_models(tmp_path)
    timeline, fig, latency, summary, files = client.predict(
        handle_file(str(SAMPLE)), phones_lab.read_text(), transcript_kind="phones",
        reference_textgrid=handle_file(str(ref)), phone_models=handle_file(str(models_path)), api_name="/align")
    settings = summary["settings"]
    assert settings["phone_models"] == "phone_models.pt"
    assert settings["max_iter"] == 0 and settings["states_per_phone"] == 3 and settings["durations"] == "hmm"
    models = PhoneModels.load(models_path)
    direct = align_utterance(compute_features(str(SAMPLE), models.feature_config), phones=phones_lab.read_text(),
                             models=models)
    assert [s["label"] for s in summary["phones"]] == [s.label for s in direct.phones]
    np.testing.assert_allclose([s["start"] for s in summary["phones"]], [s.start for s in direct.phones], atol=1e-6)
    # Trained on this very clip's boundaries: every boundary within 20 ms (measured: 100%).
    assert summary["metrics"]["within_20ms_pct"] >= 95.0
    assert summary["transcript_fit"]["worst_phone"] not in ("", "sil") and "transcript fit" in summary["timings"]

    # A wrong phone in the transcript: the models point at it, where the replaced phone was said.
    phones = phones_lab.read_text().split()
    index = phones.index("ch")  # "birch"
    wrong = phones[:index] + ["s"] + phones[index + 1:]
    _, _, _, wrong_summary, _ = client.predict(handle_file(str(SAMPLE)), " ".join(wrong), transcript_kind="phones",
                                               phone_models=handle_file(str(models_path)), api_name="/align")
    fit = wrong_summary["transcript_fit"]
    said = next(p for p in read_textgrid(ref)["phones"] if p.label == "ch")
    assert fit["worst_phone"] == "s" and said.start - 0.1 <= fit["worst_phone_start_s"] <= said.end
    assert fit["transcript_fit_per_frame"] < summary["transcript_fit"]["transcript_fit_per_frame"]

    not_models = tmp_path / "notes.pt"
    not_models.write_bytes(b"these are not phone models")
    _expect_error(client, "not a readable phone-model file", handle_file(str(SAMPLE)), phones_lab.read_text(),
                  transcript_kind="phones", phone_models=handle_file(str(not_models)), api_name="/align")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    _expect_error(client, "not an HMM Studio phone-model file", handle_file(str(SAMPLE)), phones_lab.read_text(),
                  transcript_kind="phones", phone_models=handle_file(str(foreign)), api_name="/align")
    _expect_error(client, "phones not in the trained inventory: zz", handle_file(str(SAMPLE)),
                  phones_lab.read_text() + " zz", transcript_kind="phones",
                  phone_models=handle_file(str(models_path)), api_name="/align")


def test_align_words_through_an_uploaded_pronunciation_dictionary(client, tmp_path):
    """A text transcript looked up in an uploaded dictionary (built from the sample's reference,
    but listing "dh iy" first for THE and "t uw" first for TO): with models trained on the clip's
    labels, every "the" and "to" takes its spoken reduced form, so the aligned phones are the
    reference's. Phones with a dictionary, and a malformed dictionary, are clear errors."""
    from hmm_engine.alignment.textgrids import read_textgrid

    ref = read_textgrid(SAMPLE.with_suffix(".TextGrid"))
    lexicon = {}
    for word in ref["words"]:
        lexicon.setdefault(word.label.upper(), [p.label for p in ref["phones"]
                                                if word.start - 1e-6 <= p.start and p.end <= word.end + 1e-6])
    assert lexicon["THE"] == ["dh", "ax"] and lexicon["TO"] == ["t", "ax"]
    lines = [f"{w} {' '.join(p)}" for w, p in lexicon.items() if w not in ("THE", "TO")]
    dictionary = tmp_path / "lexicon.dict"
    dictionary.write_text("\n".join(lines + ["THE dh iy", "THE(2) dh ax", "TO t uw", "TO(2) t ax"]) + "\n")
    models_path = sample_phone_models(tmp_path)
    words = SAMPLE.with_suffix(".lab").read_text()
    _, _, _, summary, _ = client.predict(handle_file(str(SAMPLE)), words, transcript_kind="text",
                                         phone_models=handle_file(str(models_path)),
                                         dictionary=handle_file(str(dictionary)), api_name="/align")
    assert summary["settings"]["dictionary"] == "lexicon.dict"
    spoken = [p for p in SAMPLE.with_suffix(".phones.lab").read_text().split() if p != "sil"]
    assert [p for p in summary["phone_sequence"] if p != "sil"] == spoken
    assert [w["label"] for w in summary["words"]] == words.split()

    _expect_error(client, "a pronunciation dictionary is for text transcripts", handle_file(str(SAMPLE)),
                  SAMPLE.with_suffix(".phones.lab").read_text(), transcript_kind="phones",
                  dictionary=handle_file(str(dictionary)), api_name="/align")
    broken = tmp_path / "broken.dict"
    broken.write_text("THE dh ax\nBIRCH\n")
    _expect_error(client, "line 2: the word 'BIRCH' has no phones", handle_file(str(SAMPLE)), words,
                  transcript_kind="text", dictionary=handle_file(str(broken)), api_name="/align")
    only_the = tmp_path / "only_the.dict"
    only_the.write_text("THE dh ax\n")
    _expect_error(client, "not in the pronunciation dictionary: 'birch'", handle_file(str(SAMPLE)), words,
                  transcript_kind="text", dictionary=handle_file(str(only_the)), api_name="/align")


def test_a_new_session_plays_the_bundled_samples_segments(app_url):
    """Before any run, /analyze_segment cuts the precomputed sample analysis's segments and
    /align_segment the start-up alignment's phones (the sample aligned with its transcript)."""
    from components import precomputed
    from components.ui import sample_alignment

    first = precomputed.load_or_compute().segments()[0]
    fresh = Client(app_url, verbose=False)
    pcm, sr = sf.read(fresh.predict(0, api_name="/analyze_segment"), dtype="int16")
    np.testing.assert_array_equal(pcm, _sample_pcm(first.start, first.end, sr))
    phone = sample_alignment().phones[1]  # deterministic: the same alignment as at start-up
    pcm, sr = sf.read(fresh.predict(1, api_name="/align_segment"), dtype="int16")
    np.testing.assert_array_equal(pcm, _sample_pcm(phone.start, phone.end, sr))


def test_segment_playback_slices_the_clip():
    """The 'play a segment' handler returns exactly the segment's samples."""
    from components.ui import play_segment, segment_choices

    state = {"audio": str(SAMPLE), "segments": [("s0", 0.0, 0.5), ("s3", 0.5, 0.75)]}
    update = segment_choices(state)
    assert [c[1] for c in update["choices"]] == [0, 1] and "0.50–0.75 s" in update["choices"][1][0]
    sr, pcm = play_segment(state, 1)
    assert sr == 16000 and pcm.dtype == np.int16 and pcm.shape == (4000,)
    np.testing.assert_array_equal(pcm, _sample_pcm(0.5, 0.75, sr))
    assert play_segment(None, None) is None
    with pytest.raises(Exception, match="no segments: run it first"):
        play_segment(None, 0)
    with pytest.raises(Exception, match="whole number"):
        play_segment(state, "first")


def test_pipeline_retrains_only_when_training_settings_change():
    from components import pipeline as P
    from components.results import AnalysisSettings

    base = dict(num_states=3, max_iter=3, sweep_states="", seed=11)
    first = P.analyze(str(SAMPLE), AnalysisSettings(**base), write_files=False)
    redecoded = P.analyze(str(SAMPLE), AnalysisSettings(**base, decoder="posterior"), write_files=False)
    assert "training" in redecoded.cached and redecoded.log_likelihood == first.log_likelihood
    np.testing.assert_array_equal(redecoded.path, first.posteriors.argmax(1))
    reseeded = P.analyze(str(SAMPLE), AnalysisSettings(**{**base, "seed": 12}), write_files=False)
    assert "training" not in reseeded.cached and "features" in reseeded.cached
    other_features = P.analyze(str(SAMPLE), AnalysisSettings(**base, deltas=0), write_files=False)
    assert "training" not in other_features.cached and other_features.obs_dim == 13


def test_semi_markov_and_mixture_models_feed_their_figures():
    from components import pipeline as P
    from components.render import render_analysis
    from components.results import AnalysisSettings

    hsmm = P.analyze(str(SAMPLE), AnalysisSettings(model_type="semi-markov", num_states=4, max_duration=25,
                                                   max_iter=3, sweep_states=""), write_files=False)
    assert hsmm.duration_pmf.shape == (4, 25)
    np.testing.assert_allclose(hsmm.duration_pmf.sum(1), 1.0, atol=1e-4)
    durations = render_analysis(hsmm)["durations"]
    runs = [t for t in durations.data if t.type == "bar"]
    model = [t for t in durations.data if t.type == "scatter"]
    k0_runs = int(np.sum(runs[0].y))
    np.testing.assert_allclose(model[0].y, k0_runs * hsmm.duration_pmf[0][: len(model[0].y)], rtol=1e-6)

    gmm = P.analyze(str(SAMPLE), AnalysisSettings(model_type="gmm", num_states=3, num_mixtures=2, max_iter=3,
                                                  sweep_states="2,3", sweep_mixtures="1,2"), write_files=False)
    assert sorted((r["num_states"], r["num_mixtures"]) for r in gmm.sweep) == [(2, 1), (2, 2), (3, 1), (3, 2)]
    sweep = render_analysis(gmm)["sweep"]
    assert {t.name for t in sweep.data} >= {"BIC (M=1)", "BIC (M=2)", "AIC (M=1)", "AIC (M=2)"}
