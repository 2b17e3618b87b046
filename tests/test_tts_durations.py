"""TTS durations: per-phone mel frame counts summing exactly to the mel length."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hmm_engine.alignment.tts import (
    MelGrid,
    boundary_frames,
    num_mel_frames,
    phone_durations,
    read_durations_table,
    write_durations,
)
from hmm_engine.errors import InvalidInputError, InvalidParameterError
from hmm_engine.segments import Segment

RATES = (16000, 22050, 24000, 44100)
HOPS = (160, 200, 256, 300)


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("hop", HOPS)
def test_frame_count_is_torch_stft(hop, center):
    """The frame count formula is what torch.stft returns (librosa uses the same)."""
    win = 1024
    for n in (win, win + 1, 7 * hop, 7 * hop + 1, 12345, 22050):
        x = torch.zeros(n)
        frames = torch.stft(x, n_fft=win, hop_length=hop, window=torch.ones(win), center=center,
                            return_complex=True).shape[-1]
        assert num_mel_frames(n, hop, win, center) == frames


def _tier(cuts: list[float], labels: list[str] | None = None) -> list[Segment]:
    labels = labels or [f"p{i}" for i in range(len(cuts) - 1)]
    return [Segment(label, a, b) for label, a, b in zip(labels, cuts[:-1], cuts[1:])]


boundary_sets = st.lists(st.floats(min_value=0.001, max_value=0.999, allow_nan=False), min_size=0, max_size=40)


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("hop", HOPS)
@pytest.mark.parametrize("rate", RATES)
@settings(max_examples=12, deadline=None)
@given(fractions=boundary_sets, seconds=st.floats(min_value=0.2, max_value=8.0))
def test_durations_sum_exactly_to_the_frame_count(fractions, seconds, rate, hop, center):
    grid = MelGrid(rate, hop, 1024, center)
    cuts = sorted({round(seconds * f, 6) for f in fractions} - {0.0, round(seconds, 6)})
    cuts = [0.0] + [c for c in cuts if 0 < c < seconds] + [seconds]
    out = phone_durations(_tier(cuts), seconds, grid)
    n = round(seconds * rate)
    assert out.num_frames == num_mel_frames(n, hop, 1024, center)
    assert int(out.durations.sum()) == out.num_frames
    assert (out.durations >= 0).all() and len(out.durations) == len(cuts) - 1
    # Brute force: every frame goes to the phone whose interval holds its centre (the frames
    # whose centre lies at or past the end belong to the last phone).
    offset = 0 if center else 512
    counts = np.zeros(len(cuts) - 1, dtype=np.int64)
    for i in range(out.num_frames):
        centre = (i * hop + offset) / rate
        counts[min(len(cuts) - 2, int(np.searchsorted(cuts, centre + 1e-12, side="right")) - 1)] += 1
    np.testing.assert_array_equal(out.durations, counts)


@settings(max_examples=40, deadline=None)
@given(fractions=boundary_sets, rate=st.sampled_from(RATES), hop=st.sampled_from(HOPS), center=st.booleans())
def test_min_frames_keeps_the_sum_and_the_minimum(fractions, rate, hop, center):
    seconds = 3.0
    grid = MelGrid(rate, hop, 1024, center)
    cuts = [0.0] + sorted({round(seconds * f, 4) for f in fractions} - {0.0, seconds}) + [seconds]
    frames = num_mel_frames(round(seconds * rate), hop, 1024, center)
    if frames < len(cuts) - 1:
        with pytest.raises(InvalidInputError):
            phone_durations(_tier(cuts), seconds, grid, min_frames=1)
        return
    out = phone_durations(_tier(cuts), seconds, grid, min_frames=1)
    assert int(out.durations.sum()) == out.num_frames and out.durations.min() >= 1


def test_rounding_boundaries_not_durations_does_not_drift():
    """100 phones of 58 ms at hop 256 / 22.05 kHz (5.0 frames each by rounding each duration
    alone, which would drift by 100 * 0.0 ... 0.5 frames); the boundaries stay within half a hop."""
    grid = MelGrid(22050, 256, 1024, True)
    cuts = [i * 0.058 for i in range(101)]
    out = phone_durations(_tier(cuts), cuts[-1], grid)
    ends = np.cumsum(out.durations)[:-1]
    for k, t in zip(ends, cuts[1:-1]):
        # k frames end before boundary t: centres (k-1)*hop < t*sr <= k*hop
        assert (k - 1) * 256 < t * 22050 <= k * 256 + 1e-6
    assert int(out.durations.sum()) == out.num_frames


def test_trimming_edge_silence_reports_the_span():
    grid = MelGrid(16000, 160, 400, False)
    tier = [Segment("sil", 0.0, 0.3), Segment("a", 0.3, 0.5), Segment("b", 0.5, 0.8), Segment("sil", 0.8, 1.0)]
    kept = phone_durations(tier, 1.0, grid, trim=False)
    assert kept.phones == ["sil", "a", "b", "sil"] and kept.trim_start_sample == 0 and kept.trim_end_sample == 16000
    assert kept.num_frames == 1 + (16000 - 400) // 160
    trimmed = phone_durations(tier, 1.0, grid, trim=True)
    assert trimmed.phones == ["a", "b"]
    assert (trimmed.trim_start_s, trimmed.trim_end_s) == (0.3, 0.8)
    assert (trimmed.trim_start_sample, trimmed.trim_end_sample) == (4800, 12800)
    assert trimmed.num_frames == 1 + (8000 - 400) // 160 == int(trimmed.durations.sum())


def test_gaps_become_silence_and_bad_grids_are_refused():
    out = phone_durations([Segment("a", 0.1, 0.2)], 0.5, MelGrid(16000, 160, 400, True))
    assert out.phones == ["sil", "a", "sil"] and int(out.durations.sum()) == 1 + 8000 // 160
    with pytest.raises(InvalidParameterError):
        MelGrid(16000, 0, 400)
    with pytest.raises(InvalidParameterError):
        MelGrid(16000, 500, 400, center=False)
    assert list(boundary_frames([0.0, 0.5], 8000, MelGrid(16000, 160, 400, True))) == [0, 51]


def test_durations_table_round_trip(tmp_path):
    grid = MelGrid(24000, 300, 1200, True)
    a = phone_durations(_tier([0.0, 0.2, 0.45, 1.0], ["sil", "h", "i"]), 1.0, grid)
    b = phone_durations(_tier([0.0, 0.7, 1.3], ["o", "sil"]), 1.3, grid, trim=True)
    table = write_durations(tmp_path, [("spk/a", a), ("b", b)])
    back = read_durations_table(table)
    assert back["spk/a"]["phones"] == ["sil", "h", "i"] and back["b"]["phones"] == ["o"]
    np.testing.assert_array_equal(back["spk/a"]["durations"], a.durations)
    np.testing.assert_array_equal(np.load(tmp_path / "spk" / "a.durations.npy"), a.durations)
    assert back["b"]["num_frames"] == int(b.durations.sum()) == b.num_frames


def test_align_tab_downloads_hold_durations_summing_to_the_mel_length():
    from components.alignment import TTS_GRID, write_alignment_exports
    from components.results import AlignView

    phones = [Segment("sil", 0.0, 0.21), Segment("h", 0.21, 0.3, 0.9), Segment("i", 0.3, 0.77, 0.8),
              Segment("sil", 0.77, 1.234)]
    result = AlignView(settings={}, duration=1.234, frame_shift=0.01, spectrogram_db=np.zeros((3, 2)),
                       freqs=np.zeros(2), phones=phones, words=[], reference=[], reference_tier=None,
                       metrics={}, boundary_errors=[], log_likelihood=None, phone_sequence=["sil", "h", "i"])
    files = write_alignment_exports(result)
    table = read_durations_table(files["durations"])["alignment"]
    samples = round(1.234 * TTS_GRID["sample_rate"])
    assert table["phones"] == ["sil", "h", "i", "sil"]
    assert int(table["durations"].sum()) == 1 + samples // TTS_GRID["hop_length"] == table["num_frames"]
    np.testing.assert_array_equal(np.load(files["durations_npy"]), table["durations"])
