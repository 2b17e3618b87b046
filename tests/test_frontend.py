"""Audio loading and feature extraction: formats, errors, the frame grid, deltas, CMVN."""

import io
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from hmm_engine.errors import AudioError, InvalidInputError
from hmm_engine.frontend.audio import Audio, load_audio, save_wav
from hmm_engine.frontend.features import FeatureConfig, _add_deltas, display_spectrogram, extract_features


def tone(freq=440.0, seconds=1.0, sr=16000, amp=0.5):
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def encoded(data, sr, fmt, subtype):
    buffer = io.BytesIO()
    sf.write(buffer, data, sr, format=fmt, subtype=subtype)
    return buffer.getvalue()


# ---------------------------------------------------------------- audio


@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("FLAC", "PCM_24"), ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")])
def test_formats_stereo_44k_become_mono_16k(fmt, subtype):
    left = tone(440, 1.0, 44100)
    stereo = np.stack([left, 0.5 * left], axis=1)  # mean of channels = 0.75 * left
    audio = load_audio(encoded(stereo, 44100, fmt, subtype))
    assert audio.sample_rate == 16000 and audio.source_sample_rate == 44100 and audio.source_channels == 2
    assert audio.samples.dtype == torch.float32 and audio.samples.ndim == 1
    assert audio.duration == pytest.approx(1.0, abs=0.06)  # mp3 may add encoder padding
    lossy = fmt in ("OGG", "MP3")
    assert float(audio.samples.abs().max()) == pytest.approx(0.375, rel=0.06 if lossy else 0.01)
    # The 440 Hz tone survives resampling: spectral peak at 440 Hz.
    spectrum = np.abs(np.fft.rfft(audio.samples.numpy()[:16000]))
    assert np.argmax(spectrum) * 16000 / 16000 == pytest.approx(440, abs=2)


def test_wav_path_roundtrip_with_save_wav(tmp_path):
    original = load_audio((16000, tone(300, 0.5)))
    path = tmp_path / "x.wav"
    save_wav(path, original, subtype="FLOAT")
    again = load_audio(path)
    assert torch.equal(again.samples, original.samples)
    # Also through an open file object.
    with open(path, "rb") as handle:
        assert torch.equal(load_audio(handle).samples, original.samples)


def test_gradio_tuples_int16_int32_float_and_channels():
    x = tone(200, 0.5, 8000, amp=0.25)
    as_int16 = (x * 32768).astype(np.int16)
    as_int32 = (x.astype(np.float64) * 2**31).astype(np.int32)
    a16 = load_audio((8000, as_int16), target_sr=8000)
    a32 = load_audio((8000, as_int32), target_sr=8000)
    af = load_audio((8000, np.stack([x, x], axis=1)), target_sr=8000)
    np.testing.assert_allclose(a16.samples.numpy(), x, atol=1 / 32768)
    np.testing.assert_allclose(a32.samples.numpy(), x, atol=1e-6)
    np.testing.assert_allclose(af.samples.numpy(), x, atol=1e-7)
    assert af.source_channels == 2
    up = load_audio((8000, as_int16))  # resampled to 16 kHz
    assert up.num_samples == 8000 and up.source_sample_rate == 8000


@pytest.mark.parametrize(
    "source,message",
    [
        ((16000, np.zeros(0, np.float32)), "no samples"),
        ((16000, np.zeros(16000, np.float32)), "silent"),
        ((16000, np.full(16000, 1e-5, np.float32)), "silent"),
        ((16000, tone(seconds=0.05)), "shorter"),
        ((16000, np.r_[tone(), np.nan].astype(np.float32)), "NaN"),
        ((16000, np.r_[tone(), np.inf].astype(np.float32)), "NaN or infinite"),
        ((0, tone()), "sample rate"),
        ((-16000, tone()), "sample rate"),
        ((16000.5, tone()), "sample rate"),
        ((16000, np.stack([tone(), tone()])), "transpose"),
        ((16000, np.zeros((2, 2, 2))), "1-D"),
        (b"not audio at all", "could not read"),
        (b"", "empty"),
        ("/nonexistent/file.wav", "not found"),
    ],
)
def test_bad_audio_gives_clear_error(source, message):
    with pytest.raises(AudioError, match=message):
        load_audio(source)


def test_too_long_and_unsupported_file(tmp_path):
    with pytest.raises(AudioError, match="longer than the limit of 0.5 s"):
        load_audio((16000, tone(seconds=1.0)), max_seconds=0.5)
    long_file = tmp_path / "long.wav"
    sf.write(long_file, tone(seconds=1.0), 16000)
    with pytest.raises(AudioError, match="long.wav.*longer"):
        load_audio(long_file, max_seconds=0.5)
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")
    with pytest.raises(AudioError, match="notes.txt.*could not read"):
        load_audio(text_file)


# ---------------------------------------------------------------- features


@pytest.mark.parametrize("num_samples,expected_frames", [(16000, 100), (16001, 101), (16159, 101), (1600, 10)])
def test_frame_count_is_ceil_duration_over_shift(num_samples, expected_frames):
    rng = np.random.default_rng(0)
    audio = load_audio((16000, rng.normal(0, 0.1, num_samples).astype(np.float32)))
    features = extract_features(audio, FeatureConfig())
    assert features.values.shape == (expected_frames, 39)
    assert features.frame_shift == 0.01
    # frames_to_segments: last segment ends exactly at the duration.
    segments = features.frames_to_segments(["a"] * 5 + ["b"] * (expected_frames - 5))
    assert [(s.label, s.start, s.end) for s in segments] == [
        ("a", 0.0, 0.05), ("b", 0.05, num_samples / 16000)
    ]


def test_window_is_centred_on_frame_interval():
    # A click at sample 805 (t = 50.3 ms, inside frame 5's interval [50, 60) ms). With
    # frame_length == frame_shift the window of frame i is exactly its interval, so frame 5
    # is the one that sees the click.
    x = np.zeros(1600, np.float32)
    x[805] = 1.0
    audio = load_audio((16000, x))
    config = FeatureConfig(kind="logmel", deltas=0, cmvn=False, frame_length_ms=10.0, preemphasis=0.0)
    energy = extract_features(audio, config).values.sum(dim=1)
    assert int(torch.argmax(energy)) == 5
    # With 30 ms windows frames 4, 5, 6 see it (window i covers [i-1, i+2) * 10 ms), frame 3 and 7 do not.
    config30 = FeatureConfig(kind="logmel", deltas=0, cmvn=False, frame_length_ms=30.0, preemphasis=0.0)
    energy30 = extract_features(audio, config30).values.sum(dim=1)
    floor = energy30[0]
    assert all(energy30[i] > floor + 10 for i in (4, 5, 6))
    assert energy30[3] == pytest.approx(float(floor)) and energy30[7] == pytest.approx(float(floor))


def test_time_frame_conversions():
    audio = load_audio((16000, tone(seconds=0.255)))
    features = extract_features(audio, FeatureConfig())
    assert features.num_frames == 26  # ceil(0.255 / 0.01)
    assert features.time_to_frame(0.0) == 0
    assert features.time_to_frame(0.03) == 3  # exact multiples belong to the next frame
    assert features.time_to_frame(0.0299) == 2
    assert features.time_to_frame(0.255) == 25  # the end maps to the last frame
    assert features.frame_to_time(3) == pytest.approx(0.03)
    assert features.frame_to_time(26) == pytest.approx(0.255)
    with pytest.raises(InvalidInputError):
        features.time_to_frame(0.3)
    with pytest.raises(InvalidInputError):
        features.frame_to_time(27)


def test_deltas_of_linear_ramp_are_constant():
    t = torch.arange(20, dtype=torch.float64)[:, None]
    base = torch.cat([3.0 * t, -0.5 * t + 2], dim=1)
    out = _add_deltas(base, order=2, window=2)
    assert out.shape == (20, 6)
    # Interior frames (2 frames of context each side for delta, 4 for delta-delta).
    torch.testing.assert_close(out[2:-2, 2], torch.full((16,), 3.0, dtype=torch.float64))
    torch.testing.assert_close(out[2:-2, 3], torch.full((16,), -0.5, dtype=torch.float64))
    torch.testing.assert_close(out[4:-4, 4:], torch.zeros(12, 2, dtype=torch.float64))


def test_cmvn_and_mfcc_matches_dct_of_logmel():
    rng = np.random.default_rng(1)
    audio = load_audio((16000, rng.normal(0, 0.1, 8000).astype(np.float32)))
    values = extract_features(audio, FeatureConfig()).values.double()
    torch.testing.assert_close(values.mean(0), torch.zeros(39, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(values.std(0, unbiased=False), torch.ones(39, dtype=torch.float64), atol=1e-4, rtol=0)
    import torchaudio.functional as AF

    logmel = extract_features(audio, FeatureConfig(kind="logmel", deltas=0, cmvn=False)).values.double()
    mfcc = extract_features(audio, FeatureConfig(kind="mfcc", deltas=0, cmvn=False)).values.double()
    torch.testing.assert_close(mfcc, logmel @ AF.create_dct(13, 40, "ortho").double(), atol=1e-3, rtol=1e-4)


def test_logmel_peak_band_follows_tone_frequency():
    low = extract_features(load_audio((16000, tone(300))), FeatureConfig(kind="logmel", deltas=0, cmvn=False))
    high = extract_features(load_audio((16000, tone(3000))), FeatureConfig(kind="logmel", deltas=0, cmvn=False))
    assert int(low.values[50].argmax()) < int(high.values[50].argmax())


def test_display_spectrogram_same_grid_and_peak():
    audio = load_audio((16000, tone(1000, seconds=0.5)))
    db, freqs = display_spectrogram(audio)
    assert db.shape == (50, 257) and freqs.shape == (257,)
    assert freqs[0] == 0 and freqs[-1] == 8000
    assert freqs[np.argmax(db[25])] == pytest.approx(1000, abs=freqs[1])
    assert db.max() - db.min() <= 80.0 + 1e-4


def test_feature_errors():
    short = load_audio((16000, tone(seconds=0.03)), min_seconds=0.0)
    with pytest.raises(AudioError, match="3 frames"):
        extract_features(short)
    odd_rate = load_audio((22050, tone(seconds=0.5, sr=22050)), target_sr=22050)
    with pytest.raises(InvalidInputError, match="whole number of samples"):
        extract_features(odd_rate)
    for bad in (dict(kind="plp"), dict(deltas=3), dict(num_ceps=50), dict(frame_length_ms=5.0), dict(fmin=9000.0, fmax=8000.0)):
        with pytest.raises(InvalidInputError):
            FeatureConfig(**bad)
    with pytest.raises(InvalidInputError, match="Nyquist"):
        extract_features(load_audio((16000, tone())), FeatureConfig(fmax=9000.0))
    with pytest.raises(InvalidInputError, match="Audio"):
        extract_features(torch.zeros(16000))
    assert isinstance(short, Audio) and math.isclose(short.duration, 0.03)
