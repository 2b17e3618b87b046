"""The Live tab's handler without a browser: 0.5-s microphone chunks at 48 kHz through
``live_step`` / ``live_stop`` decode the sample with the sample's model, and the committed
states are the offline Viterbi path of the streamed features; the streaming front end equals
the offline one (resampling, frames)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from components import live as L
from components import pipeline as P
from hmm_engine.errors import AudioError
from hmm_engine.frontend.audio import Audio
from hmm_engine.frontend.features import FeatureConfig, extract_features
from hmm_engine.frontend.stream import StreamingFeatures, StreamingResampler

SAMPLE = P.ROOT / "assets" / "sample_synth.wav"


def _mic_chunks(rate=48000, seconds=L.STREAM_EVERY):
    x, sr = sf.read(SAMPLE, dtype="float32")
    y = AF.resample(torch.from_numpy(x), sr, rate).numpy()
    pcm = np.clip(np.round(y * 32767), -32768, 32767).astype(np.int16)
    n = int(rate * seconds)
    return [pcm[i:i + n] for i in range(0, len(pcm), n)], pcm


@pytest.mark.parametrize("rate", [48000, 44100])
def test_streaming_front_end_equals_offline(rate):
    chunks, pcm = _mic_chunks(rate, 0.37)
    res = StreamingResampler(rate, 16000)
    out = np.concatenate([res.push(c.astype(np.float32) / 32768) for c in chunks] + [res.push(np.zeros(0), final=True)])
    ref = AF.resample(torch.from_numpy(pcm.astype(np.float32) / 32768), rate, 16000).numpy()
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=1e-6)
    cfg = FeatureConfig(cmvn=False)
    feats = StreamingFeatures(cfg, rate)
    frames = [feats.push(c, rate)[0] for c in chunks] + [feats.push(None, final=True)[0]]
    offline = extract_features(Audio(torch.from_numpy(ref), 16000, rate, 1), cfg).values
    torch.testing.assert_close(torch.cat(frames), offline, atol=1e-3, rtol=0)


def test_stream_rate_change_and_length_are_errors():
    feats = StreamingFeatures(FeatureConfig(), 48000, max_seconds=1.0)
    feats.push(np.zeros(4800, dtype=np.int16), 48000)
    with pytest.raises(AudioError, match="rate changed"):
        feats.push(np.zeros(4800, dtype=np.int16), 44100)
    with pytest.raises(AudioError, match="longer than"):
        feats.push(np.zeros(48000, dtype=np.int16), 48000)


def test_live_handler_decodes_the_sample_with_the_samples_model():
    chunks, _ = _mic_chunks()
    session = None
    for c in chunks:
        fig, summary, session = L.live_step((48000, c), session, None, "analysis", "exact")
    assert "sample" in summary["model"]
    fig, summary, ended = L.live_stop(session)
    assert ended is None
    n = session.features.frames_out
    assert summary["states_committed"] == session.frames == n > 100
    # the committed states are the offline Viterbi path of the frames that were streamed
    model, _, _ = L._sample_model()
    names = {t.name for t in fig.data}
    assert {"spectrogram", "committed states", "filtered posteriors", "chunk latency"} <= names
    assert len(session.states) == min(n, int(L.WINDOW_SECONDS / session.frame_shift))
    assert summary["real_time_factor"] > 0


def test_live_states_are_the_offline_path_of_the_streamed_frames():
    chunks, _ = _mic_chunks()
    model, settings, _ = L._sample_model()
    feats = StreamingFeatures(P.feature_config(settings), 48000)
    dec = model.stream()
    frames, states = [], []
    for c in chunks:
        x, _ = feats.push(c, 48000)
        if len(x):
            frames.append(x)
            states.append(dec.push(x).states)
    x, _ = feats.push(None, final=True)
    frames.append(x)
    states.append(dec.push(x).states)
    states.append(dec.flush().states)
    path, _ = model.viterbi_decode(torch.cat(frames))
    assert torch.equal(torch.cat(states), path[0])


def test_live_fit_on_the_first_seconds():
    chunks, _ = _mic_chunks()
    session = None
    for c in chunks:
        _, summary, session = L.live_step((48000, c), session, None, "fit", "lag 20 frames (200 ms)")
    assert "fitted" in summary["model"] and summary["states_committed"] > 0
    assert summary["frames_decoded"] - summary["states_committed"] <= 20


def test_live_uses_the_sessions_analyze_model():
    """After an Analyze run the Live tab decodes with that run's cached model and features."""
    from components.results import AnalysisSettings

    settings = AnalysisSettings(num_states=3, max_iter=2, sweep_states="", feature_kind="logmel", num_mels=20)
    result = P.analyze(str(SAMPLE), settings, write_files=False)
    analysis = {"training_key": result.training_key, "settings": result.settings}
    chunks, _ = _mic_chunks()
    _, summary, session = L.live_step((48000, chunks[0]), None, analysis, "analysis", "exact")
    assert "this session's Analyze model" in summary["model"] and "K=3" in summary["model"]
    assert session.features.config.kind == "logmel" and session.features.config.num_mels == 20
    assert session.decoder.num_states == 3
