"""The real-speech benchmark's metrics and data preparation, and the recording-conditions corpus.

Metrics against closed forms and hand-made tiers; the recording conditions against the clean
utterance they were made from (exact shifts, silences keep the bursts, the drawn SNR).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "scripts"))

import real_speech as rs  # noqa: E402
import real_speech_data as rsd  # noqa: E402
from corpus import conditions  # noqa: E402
from corpus.output import SILENCE, TARGET_RATE, Reference  # noqa: E402
from hmm_engine.alignment.metrics import compare_tiers  # noqa: E402
from hmm_engine.segments import Segment  # noqa: E402

RATE = 16000


# ----------------------------------------------------------------------------- metrics
def test_frame_energy_of_a_sine_and_of_silence():
    t = np.arange(RATE) / RATE
    amplitude = 0.25
    centres, energy = rs.frame_energy_db(amplitude * np.sin(2 * np.pi * 400 * t), RATE)
    # 25 ms windows every 10 ms: 1 + (16000 - 400) // 160 frames, centred 12.5 ms after each start.
    assert energy.size == 1 + (RATE - 400) // 160
    assert centres[0] == pytest.approx(0.0125) and centres[1] == pytest.approx(0.0225)
    # 400 Hz: 10 periods per window, so the mean square is exactly A^2 / 2.
    np.testing.assert_allclose(energy, 10 * np.log10(amplitude ** 2 / 2 + 1e-10), atol=1e-6)
    _, zero = rs.frame_energy_db(np.zeros(RATE), RATE)
    np.testing.assert_allclose(zero, -100.0)


def test_int16_samples_are_scaled_to_unit_range():
    full = np.full(RATE // 10, 16384, dtype=np.int16)  # 0.5 of full scale
    _, energy = rs.frame_energy_db(full, RATE)
    np.testing.assert_allclose(energy, 10 * np.log10(0.25 + 1e-10), atol=1e-6)


def test_noise_floor_is_the_tenth_percentile():
    energy = np.arange(100, dtype=float) - 80.0  # -80 .. 19 dB
    assert rs.noise_floor_db(energy) == pytest.approx(np.percentile(energy, 10))
    assert rs.noise_floor_db(energy) == pytest.approx(-70.1)


def _quiet_then_loud(quiet_s: float = 1.0, loud_s: float = 1.0):
    rng = np.random.default_rng(0)
    quiet = 1e-3 * rng.standard_normal(int(quiet_s * RATE))
    loud = 0.3 * np.sin(2 * np.pi * 200 * np.arange(int(loud_s * RATE)) / RATE)
    return rs.frame_energy_db(np.concatenate([quiet, loud]), RATE)


def test_near_silence_phones_need_150_ms_of_quiet_frames():
    centres, energy = _quiet_then_loud()
    phones = [Segment("sil", 0.0, 0.5), Segment("AA", 0.5, 1.2),   # 0.5 s of quiet: counted
              Segment("B", 1.2, 1.6), Segment("sil", 1.6, 2.0)]     # loud: not counted
    flagged = rs.near_silence_phones(phones, centres, energy)
    assert [s.label for s in flagged] == ["AA"]
    # Silence labels are never counted, however quiet.
    assert rs.near_silence_phones([Segment("sil", 0.0, 1.0)], centres, energy) == []
    # Threshold: 15 quiet frames (150 ms) count, 14 do not. Frame centres are 12.5 ms + 10 ms k.
    quiet_until = 1.0 - 0.0125  # the last frame centre fully inside the quiet second
    at_threshold = Segment("AA", quiet_until - 0.145, 1.5)  # frame centres in the quiet part: 15
    below = Segment("AA", quiet_until - 0.135, 1.5)  # 14
    assert rs.near_silence_phones([at_threshold], centres, energy)
    assert not rs.near_silence_phones([below], centres, energy)


def test_speech_edges_and_edge_errors():
    ref = [Segment("sil", 0, 0.3), Segment("AA", 0.3, 0.5), Segment("sp", 0.5, 0.6), Segment("B", 0.6, 0.9),
           Segment("sil", 0.9, 1.2)]
    hyp = [Segment("sil", 0, 0.45), Segment("AA", 0.45, 0.5), Segment("B", 0.5, 1.15), Segment("sil", 1.15, 1.2)]
    assert rs.speech_edges(ref) == (0.3, 0.9)
    np.testing.assert_allclose(rs.edge_errors(hyp, ref), [0.15, 0.25])
    assert rs.edge_errors([Segment("sil", 0, 1.2)], ref) == [math.inf, math.inf]
    assert rs.speech_edges([Segment("sil", 0, 1)]) is None


def test_within_all_counts_unmatched_peer_boundaries_as_misses():
    peer = [Segment("sil", 0, 0.2), Segment("AA", 0.2, 0.4), Segment("B", 0.4, 0.6), Segment("K", 0.6, 0.8),
            Segment("sil", 0.8, 1.0)]
    # AA|B 5 ms off, B|K unmatched (the hypothesis says D), edges: sil|AA 30 ms off, K|sil missing.
    hyp = [Segment("sil", 0, 0.23), Segment("AA", 0.23, 0.405), Segment("B", 0.405, 0.6), Segment("D", 0.6, 1.0)]
    cmp = compare_tiers(peer, hyp, silence="merge")
    assert cmp.num_ref_boundaries == 4
    within = int(np.count_nonzero(cmp.abs_errors_ms <= 20.0 + 1e-6))
    assert within == 1  # only AA|B
    assert rs.within_all(cmp) == pytest.approx(25.0)
    assert cmp.percent_within(20.0) == pytest.approx(100.0 * within / cmp.num_scored_boundaries)


def test_arctic_labels_map_to_the_peers_phone_set():
    assert [rs.arpabet_label(p) for p in ("pau", "sil", "ax", "hh", "ae")] == ["sil", "sil", "AH", "HH", "AE"]


# ----------------------------------------------------------------------------- data preparation
def test_sphinx_transcription_lines(tmp_path):
    f = tmp_path / "transcription"
    f.write_text("<s> He was NOT an ill </s> (sense-0880)\n<s> ten of clubs  </s> (001)\nnot a line\n")
    assert rsd.read_transcription(f) == {"sense-0880": "he was not an ill", "001": "ten of clubs"}


def test_resampling_to_16k_keeps_frequency_and_mono():
    rate = 22050
    t = np.arange(rate) / rate
    stereo = np.stack([8000 * np.sin(2 * np.pi * 440 * t)] * 2, axis=1)
    out = rsd.to_16k_mono(stereo, rate)
    assert out.dtype == np.int16 and out.ndim == 1 and out.size == RATE
    spectrum = np.abs(np.fft.rfft(out.astype(float)))
    assert np.argmax(spectrum) == 440  # 1 s at 16 kHz: bin k is k Hz


def test_lexicon_takes_cmudict_variants_in_order(tmp_path):
    pytest.importorskip("pocketsphinx")
    out = tmp_path / "lexicon.dict"
    added = rsd.write_lexicon({"the", "clubs"}, out)
    lines = out.read_text().splitlines()
    assert added == []
    assert "clubs K L AH B Z" in lines
    the = [line for line in lines if line.split()[0].startswith("the")]
    assert the[0].startswith("the ") and the[1].startswith("the(2) ")
    from hmm_engine.alignment.transcripts import read_dictionary

    assert read_dictionary(out)["clubs"] == (("K", "L", "AH", "B", "Z"),)


# ----------------------------------------------------------------------------- recording conditions
def _clean_reference() -> Reference:
    """sil 0-0.2 | AA 0.2-0.6 | sil 0.6-0.7 | B 0.7-1.1 | sil 1.1-1.2, tones in the phones."""
    audio = np.zeros(int(1.2 * TARGET_RATE))
    t = np.arange(audio.size) / TARGET_RATE
    for a, b, f in ((0.2, 0.6, 220.0), (0.7, 1.1, 330.0)):
        i, j = int(a * TARGET_RATE), int(b * TARGET_RATE)
        audio[i:j] = 8000 * np.sin(2 * np.pi * f * t[i:j])
    phones = [(SILENCE, 0.0, 0.2), ("AA", 0.2, 0.6), (SILENCE, 0.6, 0.7), ("B", 0.7, 1.1), (SILENCE, 1.1, 1.2)]
    words = [("a", 0.2, 0.6), ("b", 0.7, 1.1)]
    return Reference(audio.astype(np.int16), phones, words, 0)


def test_plan_draws_within_the_stated_ranges_and_skips_function_words():
    text = "The birch canoe slid on the smooth planks."
    for seed in range(30):
        drawn = conditions.plan(np.random.default_rng(seed), text)
        assert 0.3 <= drawn["lead_s"] <= 2.0 and 0.3 <= drawn["trail_s"] <= 2.0
        assert 10.0 <= drawn["snr_db"] <= 30.0
        assert 1 <= len(drawn["comma_after"]) <= 2
        words = text.split()
        assert all(words[i].lower() not in conditions.FUNCTION_WORDS for i in drawn["comma_after"])
        assert all(i < len(words) - 1 for i in drawn["comma_after"])
    assert conditions.with_commas(text, [1, 3]) == "The birch, canoe slid, on the smooth planks."


def test_conditions_keep_the_reference_exact():
    ref = _clean_reference()
    drawn = {"comma_after": [0], "lead_s": 0.75, "trail_s": 0.5, "snr_db": 20.0, "hum_hz": 50,
             "hum_below_db": 10.0, "noise_seed": 3}
    out, inserted = conditions.apply(ref, drawn)
    pause = float(inserted["pauses_added_s"])
    assert 0.1 <= pause <= 0.5
    lead = 0.75
    # Phones keep their durations, shifted by the leading pad (and the lengthened pause after it).
    expected = [(SILENCE, 0.0, 0.2 + lead), ("AA", 0.2 + lead, 0.6 + lead),
                (SILENCE, 0.6 + lead, 0.7 + lead + pause), ("B", 0.7 + lead + pause, 1.1 + lead + pause),
                (SILENCE, 1.1 + lead + pause, 1.2 + lead + pause + 0.5)]
    for (p, s, e), (q, s2, e2) in zip(out.phones, expected):
        assert p == q and s == pytest.approx(s2, abs=1 / TARGET_RATE) and e == pytest.approx(e2, abs=1 / TARGET_RATE)
    assert out.duration == pytest.approx(out.phones[-1][2], abs=1e-9)
    assert out.words[1][1] == pytest.approx(0.7 + lead + pause, abs=1 / TARGET_RATE)
    # The speech is where the reference says: the tone of B correlates with the noisy audio there.
    s, e = out.phones[3][1], out.phones[3][2]
    seg = out.audio[int(round(s * TARGET_RATE)):int(round(e * TARGET_RATE))].astype(float)
    clean = ref.audio[int(0.7 * TARGET_RATE):int(1.1 * TARGET_RATE)].astype(float)
    n = min(seg.size, clean.size)
    assert np.corrcoef(seg[:n], clean[:n])[0, 1] > 0.95  # 20 dB SNR: corr = 1/sqrt(1 + 0.01)


def test_conditions_bursts_stay_in_silences_and_snr_is_the_drawn_one():
    ref = _clean_reference()
    for seed in range(8):
        drawn = conditions.plan(np.random.default_rng(seed), "one two three")
        out, inserted = conditions.apply(ref, drawn)
        sil = [(s, e) for p, s, e in out.phones if p == SILENCE]
        for burst in filter(None, inserted["bursts"].split()):
            a, b = (float(x) for x in burst.split("@")[1].split("-"))
            assert any(s - 1e-9 <= a and b <= e + 1e-9 for s, e in sil), (burst, out.phones)
        # SNR: speech power over the noise power of the leading pad (bursts and all) is within
        # 1.5 dB of the drawn one (pink noise + hum fill the whole clip evenly; bursts are short).
        speech = np.concatenate([out.audio[int(round(s * TARGET_RATE)):int(round(e * TARGET_RATE))].astype(float)
                                 for p, s, e in out.phones if p != SILENCE])
        lead_end = out.phones[0][2] - 0.2  # the pad, before the original 0.2 s of silence
        noise = out.audio[:int(lead_end * TARGET_RATE)].astype(float)
        bursts_in_lead = [b for b in inserted["bursts"].split() if float(b.split("@")[1].split("-")[0]) < lead_end]
        if bursts_in_lead:
            continue
        clean_power = np.mean(np.concatenate([ref.audio[int(0.2 * TARGET_RATE):int(0.6 * TARGET_RATE)],
                                              ref.audio[int(0.7 * TARGET_RATE):int(1.1 * TARGET_RATE)]]).astype(float) ** 2)
        measured = 10 * np.log10(clean_power / np.mean(noise ** 2))
        assert measured == pytest.approx(drawn["snr_db"], abs=1.5)
        assert np.mean(speech ** 2) > np.mean(noise ** 2)


def test_recording_conditions_leave_the_clean_plan_unchanged():
    import make_corpus

    clean = make_corpus.plan_jobs(9, 5, ["espeak", "flite", "festival"], None)
    noisy = make_corpus.plan_jobs(9, 5, ["espeak", "flite", "festival"], None, "recording")
    for a, b in zip(clean, noisy):
        assert "conditions" not in a and "conditions" in b
        assert {k: v for k, v in a.items() if k != "text"} == {k: v for k, v in b.items()
                                                                  if k not in ("text", "conditions")}
        assert a["text"] == b["text"].replace(",", "") or a["text"].replace(",", "") == b["text"].replace(",", "")


# ----------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_benchmark_end_to_end_on_one_clip(tmp_path):
    """Data preparation without downloads (assets/ or pocketsphinx-testdata), then the peer and
    single-utterance mode on one clip: the CSV holds the clip's row and the totals."""
    pytest.importorskip("pocketsphinx")
    import csv

    data = tmp_path / "real"
    rsd.prepare(data, download=False, quiet=True)
    names = [r["name"] for r in csv.DictReader(open(data / "manifest.csv"))]
    assert "librivox_0880" in names and "arctic_a0009" in names  # both at least from assets/
    out_csv = tmp_path / "out.csv"
    assert rs.main(["--data", str(data), "--out", str(tmp_path / "out"), "--only", "single",
                    "--names", "^librivox_0880$", "--csv", str(out_csv)]) == 0
    rows = list(csv.DictReader(open(out_csv)))
    by = {(r["system"], r["clip"]): r for r in rows}
    assert by[("single", "librivox_0880")]["status"] == "ok"
    total = by[("single", "ALL")]
    assert int(total["edges"]) == 2 and 0 <= int(total["edge_misses"]) <= 2
    assert 0.0 <= float(total["peer_within20_all_pct"]) <= 100.0
    assert int(total["peer_boundaries"]) > 20  # "he was not an ill disposed young man"
    assert (tmp_path / "out" / "peer" / "librivox_0880.TextGrid").is_file()


def test_unknown_system_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        rs.main(["--only", "tab,nonsense"])
    assert "unknown system(s) nonsense" in capsys.readouterr().err
