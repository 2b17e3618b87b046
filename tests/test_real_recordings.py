"""Alignment on recordings with non-speech: room noise at the edges, a click, a breath between
words (synthetic clips with known answers), espeak-ng's non-phone marks, confidences and
warnings that mean something, and ``align-one`` end to end."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from hmm_engine.alignment import SINGLE_UTTERANCE_FEATURES, align_utterance, compute_features
from hmm_engine.alignment.textgrids import read_textgrid
from hmm_engine.alignment.transcripts import (
    ESPEAK_ENGLISH_PHONES,
    Word,
    _clean_phone,
    prepare_transcript,
    text_to_phones,
)
from hmm_engine.frontend.audio import Audio
from hmm_engine.frontend.speech import nonspeech_stretches, speech_activity

ASSETS = Path(__file__).resolve().parents[1] / "assets"
SR = 16000
HAS_ESPEAK = shutil.which("espeak-ng") is not None


def _vowel(rng, f0: float, formants: tuple[float, ...], seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    sig = sum(np.sin(2 * np.pi * k * f0 * t) * sum(np.exp(-((k * f0 - f) / 150) ** 2) for f in formants)
              for k in range(1, 40))
    return 0.2 * sig / np.abs(sig).max()


def _fricative(rng, seconds: float, level: float = 0.05) -> np.ndarray:
    n = np.diff(rng.standard_normal(int(seconds * SR)), prepend=0.0)  # high-passed noise
    return level * n / np.abs(n).max()


def _noise(rng, seconds: float, level: float = 0.001) -> np.ndarray:
    return level * rng.standard_normal(int(seconds * SR))


def _clip():
    """1.5 s of room noise with a click at 0.6 s, two 'words' (a s i | o f) with 0.4 s between
    them holding a breath-like burst, 1 s of noise after. Returns (audio, phone truth)."""
    rng = np.random.default_rng(0)
    lead = _noise(rng, 1.5)
    lead[int(0.6 * SR):int(0.6 * SR) + 40] += 0.3 * np.hanning(40)  # click
    pause = _noise(rng, 0.4)
    pause[int(0.1 * SR):int(0.3 * SR)] += _fricative(rng, 0.2, 0.01)  # breath
    parts = [("sil", lead), ("a", _vowel(rng, 120, (700, 1200), 0.25)), ("s", _fricative(rng, 0.12)),
             ("i", _vowel(rng, 120, (300, 2300), 0.2)), ("sil", pause), ("o", _vowel(rng, 120, (500, 900), 0.25)),
             ("f", _fricative(rng, 0.1)), ("sil", _noise(rng, 1.0))]
    x = np.concatenate([p for _, p in parts])
    x = x + _noise(rng, x.shape[0] / SR)
    ends = np.cumsum([p.shape[0] / SR for _, p in parts])
    truth = [(label, float(a), float(b)) for (label, _), a, b in zip(parts, np.r_[0.0, ends[:-1]], ends)]
    return Audio(torch.from_numpy(x.astype(np.float32)), SR, SR, 1), truth


WORDS = [Word("one", ("a", "s", "i")), Word("two", ("o", "f"))]


def test_speech_activity_finds_the_speech_and_not_the_click():
    audio, truth = _clip()
    features = compute_features(audio, SINGLE_UTTERANCE_FEATURES)
    activity = speech_activity(features.values.numpy(), features.config)
    assert activity.informative
    first, stop = activity.edges()
    assert abs(first * 0.01 - truth[1][1]) <= 0.05 and abs(stop * 0.01 - truth[-2][2]) <= 0.05
    click = activity.speech_prob[int(0.55 / 0.01):int(0.7 / 0.01)] > 0.5
    assert click.sum() < 5  # the click is no speech run: a few frames at most
    quiet = nonspeech_stretches(activity)
    assert quiet[:50].all() and quiet[-50:].all()  # long leading / trailing noise
    assert not quiet[int(1.55 / 0.01):int(2.0 / 0.01)].any()  # none inside the first word


def test_noise_click_and_breath_are_absorbed_by_silence():
    audio, truth = _clip()
    result = align_utterance(audio, words=WORDS, dictionary=None)
    got = [(s.label, s.start, s.end) for s in result.phones]
    assert [label for label, _, _ in got] == [label for label, _, _ in truth]
    for (_, start, end), (_, ref_start, ref_end) in zip(got, truth):
        assert abs(start - ref_start) <= 0.03 and abs(end - ref_end) <= 0.03
    assert all(s.score > 0.9 for s in result.phones)
    assert result.warnings == []


def test_without_the_speech_prior_phones_land_on_noise_and_say_so():
    """The failure the speech prior fixes, and what the confidences and warnings make of it."""
    audio, truth = _clip()
    result = align_utterance(audio, words=WORDS, dictionary=None, speech_prior=0.0)
    on_noise = [s for s in result.phones if s.label != "sil" and s.start < truth[1][1] - 0.1]
    assert on_noise, "expected phones over the leading noise without the prior"
    assert all(s.score < 0.5 for s in on_noise)
    assert any("may not match the audio" in w and "background noise" in w for w in result.warnings)


def test_clean_phone_drops_marks():
    assert _clean_phone(";", False) == ""
    assert _clean_phone("|", False) == ""
    assert _clean_phone("'", False) == ""
    assert _clean_phone("'O:", False) == "O:"
    assert _clean_phone(",aI@", False) == "aI@"
    assert _clean_phone("n;", False) == "n"
    assert _clean_phone("?", False) == "?"


@pytest.mark.skipif(not HAS_ESPEAK, reason="espeak-ng not installed")
@pytest.mark.parametrize("voice", ["en-us", "en", "en-gb-x-rp"])
def test_espeak_english_voices_emit_only_known_phones(voice):
    text = ("montreal is like bottle, the birch canoe slid on the smooth planks; glue the sheet to the dark blue "
            "background. it's easy to tell the depth of a well. these days a chicken leg is a rare dish. rice is "
            "often served in round bowls. the juice of lemons makes fine punch. four hours of steady work faced "
            "us. a large size in stockings is hard to sell. the boy was there when the sun rose. thirty judges "
            "measure vision, pleasure, usual beige genres; church, judge, thought, this, sing, hang, year, oil, "
            "boy, cow, poor, hair, near, cure, fire, tower, button, little, happy, comma, lot, cloth, nurse, "
            "schwa, loch, uh-oh, whatever")
    words = text_to_phones(text, voice=voice)
    emitted = {p for w in words for p in w.phones}
    assert emitted <= ESPEAK_ENGLISH_PHONES, sorted(emitted - ESPEAK_ENGLISH_PHONES)
    assert not any(ch in p for p in emitted for ch in ";|'%=,_")
    # The example of issue 13: the ';' mark is not a phone.
    assert ";" not in prepare_transcript(words="montreal", voice=voice, dictionary=None).phones


def _run_align_one(argv):
    from io import StringIO

    from hmm_engine.cli import build_parser

    buffer = StringIO()
    args = build_parser().parse_args(["align-one", *argv])
    return args.run(args, out=buffer), buffer.getvalue()


@pytest.mark.skipif(not HAS_ESPEAK, reason="espeak-ng not installed")
def test_align_one_end_to_end(tmp_path):
    wav, lab = ASSETS / "librivox_sense_0880.wav", ASSETS / "librivox_sense_0880.lab"
    code, text = _run_align_one([str(wav), str(lab), str(tmp_path / "out.TextGrid"), "--csv",
                                 str(tmp_path / "out.csv")])
    assert code == 0, text
    tiers = read_textgrid(tmp_path / "out.TextGrid")
    assert set(tiers) == {"phones", "words"}
    assert [w.label for w in tiers["words"]] == lab.read_text().split()
    assert tiers["phones"][-1].end == pytest.approx(2.99, abs=0.011)
    assert "confidence" in text and "wrote" in text and "warning" not in text
    # Same answer as the library call with its defaults (the Align tab's).
    direct = align_utterance(wav, words=lab.read_text())
    assert [(s.label, round(s.start, 3)) for s in direct.phones] == \
        [(s.label, round(s.start, 3)) for s in tiers["phones"]]
    scores = [float(line.split(",")[-1]) for line in (tmp_path / "out.csv").read_text().splitlines()[1:]
              if line.startswith("phones")]
    assert scores and all(0.0 < s <= 1.0 and math.isfinite(s) for s in scores)


@pytest.mark.skipif(not HAS_ESPEAK, reason="espeak-ng not installed")
def test_align_one_warns_when_the_transcript_lacks_words(tmp_path):
    lab = tmp_path / "short.lab"
    lab.write_text("he was")
    code, text = _run_align_one([str(ASSETS / "librivox_sense_0880.wav"), str(lab), str(tmp_path / "o.TextGrid"),
                                 "--quiet"])
    assert code == 0
    assert "warning: the transcript may not match the audio" in text


def test_align_one_reports_bad_input(tmp_path):
    code, text = _run_align_one([str(tmp_path / "missing.wav"), str(ASSETS / "librivox_sense_0880.lab"),
                                 str(tmp_path / "o.TextGrid")])
    assert code == 1 and text.startswith("error:")
    code, text = _run_align_one([str(ASSETS / "librivox_sense_0880.wav"), str(tmp_path / "none.lab"),
                                 str(tmp_path / "o.TextGrid")])
    assert code == 1 and "cannot read the transcript" in text
