"""Checks on the synthetic reference corpus (scripts/make_corpus.py): the
committed sample in tests/data/synth and, where the synthesizer programs are
installed, a fresh generation of one utterance per synthesizer."""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
import soundfile as sf
from praatio import textgrid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_DIR = os.path.join(REPO, "tests", "data", "synth")
MAKE_CORPUS = os.path.join(REPO, "scripts", "make_corpus.py")
sys.path.insert(0, os.path.join(REPO, "scripts"))
from corpus.output import normalise  # noqa: E402
from corpus.synths import (  # noqa: E402
    SynthResult,
    attach_prepauses,
    is_espeak_silence,
    pause_mask,
    synth_espeak,
)

FRAME_S = 0.010
VOWEL_INITIALS = set("aeiouAEIOUV03@")  # ARPAbet vowels and espeak vowel mnemonics
PROGRAMS = {"espeak": "espeak-ng", "flite": "flite", "festival": "festival"}


def read_manifest(corpus_dir):
    with open(os.path.join(corpus_dir, "manifest.csv")) as f:
        return list(csv.DictReader(f))


def load(corpus_dir, name):
    audio, sr = sf.read(os.path.join(corpus_dir, name + ".wav"), dtype="float64")
    tg = textgrid.openTextgrid(os.path.join(corpus_dir, name + ".TextGrid"), includeEmptyIntervals=False)
    return audio, sr, tg


def level_db(audio, sr, start, end):
    seg = audio[int(round(start * sr)):int(round(end * sr))]
    return 10 * np.log10(np.mean(seg ** 2) + 1e-12)


def check_utterance(corpus_dir, row):
    name = row["name"]
    audio, sr, tg = load(corpus_dir, name)
    assert sr == 16000 and audio.ndim == 1
    duration = audio.size / sr
    assert abs(duration - float(row["duration"])) < 1e-3

    phones = tg.getTier("phones").entries
    assert phones[0].start == 0.0
    for a, b in zip(phones, phones[1:]):
        assert a.end == pytest.approx(b.start, abs=1e-9), f"{name}: gap/overlap at {a.end}"
        assert a.end > a.start
    assert abs(phones[-1].end - duration) <= FRAME_S
    assert tg.maxTimestamp == pytest.approx(duration, abs=FRAME_S)

    with open(os.path.join(corpus_dir, name + ".phones.lab")) as f:
        assert [p.label for p in phones] == f.read().split()
    assert len(phones) == int(row["num_phones"])
    assert all(p.label == p.label.strip() and p.label for p in phones)
    assert not any(a.label == b.label == "sil" for a, b in zip(phones, phones[1:]))

    with open(os.path.join(corpus_dir, name + ".lab")) as f:
        lab_words = f.read().split()
    assert lab_words == [w.strip(".,").lower() for w in row["text"].replace(",", "").split()]
    if row["has_words"] == "1":
        words = tg.getTier("words").entries
        assert [w.label for w in words] == lab_words
        boundaries = {round(p.start, 6) for p in phones} | {round(phones[-1].end, 6)}
        for w in words:
            # Word edges are phone edges, and words never contain silence.
            assert round(w.start, 6) in boundaries and round(w.end, 6) in boundaries
            inside = [p.label for p in phones if p.start >= w.start - 1e-9 and p.end <= w.end + 1e-9]
            assert inside and "sil" not in inside

    # The boundaries are real: reference silences are far quieter than vowels.
    sil = [level_db(audio, sr, p.start, p.end) for p in phones if p.label == "sil" and p.end - p.start >= 0.01]
    vowels = [level_db(audio, sr, p.start, p.end) for p in phones
              if p.label != "sil" and p.label[0] in VOWEL_INITIALS]
    assert vowels
    if sil:
        assert max(sil) < np.median(vowels) - 15.0
    return phones


def test_committed_sample_is_consistent():
    rows = read_manifest(SAMPLE_DIR)
    assert sorted(r["synthesizer"] for r in rows) == ["espeak"] * 2 + ["festival"] * 2 + ["flite"] * 2
    for row in rows:
        check_utterance(SAMPLE_DIR, row)
    size = sum(os.path.getsize(os.path.join(SAMPLE_DIR, f)) for f in os.listdir(SAMPLE_DIR))
    assert size < 1_000_000


def test_committed_sample_boundaries_sit_on_each_synthesizers_grid():
    # espeak reports sample indices of its 22050 Hz stream; festival's HTS voice
    # works in 5 ms frames; flite prints ends to 1 ms.  The last boundary is the
    # audio length (clamped), so only interior boundaries are checked.
    grids = {"espeak": Fraction(1, 22050), "festival": Fraction(5, 1000), "flite": Fraction(1, 1000)}
    for row in read_manifest(SAMPLE_DIR):
        _, _, tg = load(SAMPLE_DIR, row["name"])
        step = grids[row["synthesizer"]]
        for p in tg.getTier("phones").entries[1:]:
            units = Fraction(p.start).limit_denominator(10 ** 6) / step
            assert abs(float(units) - round(units)) < 1e-3, (row["name"], p.start)


def test_committed_sample_known_reference():
    # festival_0002 is "What joy there is in living." from the slt HTS voice.
    with open(os.path.join(SAMPLE_DIR, "festival_0002.phones.lab")) as f:
        assert f.read().split() == ("sil w ah t jh oy dh eh r ih z ih n l ih v ih ng sil").split()


def test_normalise_merges_silence_drops_empty_phones_and_clamps_end():
    sr = 22050
    audio = np.zeros(int(0.5 * sr), dtype=np.int16)
    raw = SynthResult(audio, sr, [("a", 0.01, 0.2), ("l", 0.2, 0.2), ("_:", 0.2, 0.3),
                                  ("_", 0.3, 0.4995)], None)
    ref = normalise(raw, is_espeak_silence)
    assert [p for p, _, _ in ref.phones] == ["sil", "a", "sil"]
    assert ref.phones[0] == ("sil", 0.0, 0.01)
    assert ref.phones[-1][1] == 0.2 and ref.phones[-1][2] == pytest.approx(ref.duration)
    assert ref.dropped_zero_length == 1
    assert ref.audio.size == 8000


def test_normalise_rejects_phones_beyond_the_audio():
    raw = SynthResult(np.zeros(16000, dtype=np.int16), 16000, [("a", 0.0, 1.2)], None)
    with pytest.raises(ValueError):
        normalise(raw, is_espeak_silence)


@pytest.mark.slow
@pytest.mark.parametrize("synth", ["espeak", "flite", "festival"])
def test_fresh_generation(tmp_path, synth):
    if shutil.which(PROGRAMS[synth]) is None:
        pytest.skip(f"{PROGRAMS[synth]} not installed")
    subprocess.run([sys.executable, MAKE_CORPUS, str(tmp_path), "--num", "1", "--seed", "3",
                    "--synths", synth, "--max-words", "6", "--jobs", "1"], check=True,
                   capture_output=True, timeout=60)
    (row,) = read_manifest(str(tmp_path))
    assert row["name"] == f"{synth}_0001" and row["synthesizer"] == synth
    phones = check_utterance(str(tmp_path), row)
    # Every synthesizer ends on a pause; espeak may start speaking at sample 0.
    assert phones[-1].label == "sil"
    assert len(phones) >= 8


def test_attach_prepauses_gives_each_phoneme_its_own_pause():
    silent = pause_mask([[15, 20],  # before the word-internal "t" at 20
                         [30, 40],  # the previous word's tail 30-34, then the prepause of word-initial "k"
                         [50, 55],  # a voiced stop's trailing pause before a fricative in its word
                         [60, 70],  # covers the whole of "?" (60-65) before "n"
                         [75, 80]],  # before a pause phoneme
                        100)
    assert silent.sum() == 35 and silent[15] and not silent[20]
    starts = [("a", 0, 0), ("t", 20, None), ("a", 25, None), ("k", 40, 35), ("a", 45, None),
              ("d", 48, None), ("z", 55, None), ("?", 60, None), ("n", 70, None), ("_", 80, None)]
    types = {"a": 2, "t": 4, "k": 4, "d": 5, "z": 7, "?": 4, "n": 8, "_": 0}  # espeak-ng's codes
    assert attach_prepauses(starts, silent, types) == [0, 15, 25, 35, 45, 48, 55, 60, 70, 80]


def _rms_db(x):
    return 10 * np.log10(np.mean(np.asarray(x, dtype=float) ** 2) + 1e-9)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
@pytest.mark.parametrize("voice", ["en-us", "en+f3"])  # no echo / echo 120 ms at 10/256
def test_espeak_stops_start_where_their_closure_starts(voice):
    result = synth_espeak("A cat, a pig and a tape.", voice, 175, 50)
    sr, audio = result.sample_rate, result.audio
    stops_after_vowels = 0
    for (prev, prev_start, _), (label, start, _) in zip(result.phones, result.phones[1:]):
        if label in ("p", "t", "k") and prev[0] in "aeiouAEIOUV03@":
            first, vowel = round(start * sr), round(prev_start * sr)
            closure = audio[first:first + int(0.015 * sr)]
            if voice == "en-us":
                # Without echo, espeak-ng's pauses are digital silence: the stop opens with at
                # least 15 ms of it, and the vowel before it no longer ends in it.
                assert not closure.any() and audio[first - 1] != 0, (label, start)
            else:
                # With echo the closure holds only a 10/256 echo of earlier sound.
                assert _rms_db(closure) < _rms_db(audio[vowel:first]) - 25, (label, start)
            stops_after_vowels += 1
    assert stops_after_vowels == 5  # a cat (k, t), a pig (p), a tape (t, p)
