"""Normalise a SynthResult to the corpus conventions and write its files."""
from __future__ import annotations

import os
from dataclasses import dataclass
from math import gcd

import numpy as np
import soundfile as sf
from praatio import textgrid
from scipy.signal import resample_poly

from .synths import SynthResult

TARGET_RATE = 16000
SILENCE = "sil"
# Largest gap tolerated between the synthesizer's last phone end and the real
# audio length.  flite's clustergen voices report ends on a 5 ms frame grid
# and the waveform stops up to one frame short of the last end; festival and
# espeak match to the sample.  Anything larger is an error, not rounded away.
END_TOLERANCE_S = 0.010


@dataclass
class Reference:
    audio: np.ndarray  # int16 at TARGET_RATE
    phones: list[tuple[str, float, float]]
    words: list[tuple[str, float, float]] | None
    dropped_zero_length: int

    @property
    def duration(self) -> float:
        return self.audio.size / TARGET_RATE


def to_16k(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    if sample_rate == TARGET_RATE:
        return audio.astype(np.int16)
    g = gcd(TARGET_RATE, sample_rate)
    y = resample_poly(audio.astype(np.float64), TARGET_RATE // g, sample_rate // g)
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)


def normalise(result: SynthResult, is_silence) -> Reference:
    audio = to_16k(result.audio, result.sample_rate)
    duration = audio.size / TARGET_RATE

    phones, dropped = [], 0
    for label, start, end in result.phones:
        if end <= start:
            # The synthesizer gave this phone no audio of its own (espeak folds a
            # final /l/ into the vowel, for example); an interval tier cannot hold it.
            dropped += 1
            continue
        label = SILENCE if is_silence(label) else label
        if label == SILENCE and phones and phones[-1][0] == SILENCE:
            phones[-1] = (SILENCE, phones[-1][1], end)
        else:
            phones.append((label, start, end))
    if not phones:
        raise ValueError("synthesizer reported no phones")
    if phones[0][1] > 0:
        if phones[0][0] == SILENCE:
            phones[0] = (SILENCE, 0.0, phones[0][2])
        else:
            phones.insert(0, (SILENCE, 0.0, phones[0][1]))

    last_label, last_start, last_end = phones[-1]
    if abs(last_end - duration) <= END_TOLERANCE_S:
        phones[-1] = (last_label, last_start, duration)
    elif last_end < duration:
        phones.append((SILENCE, last_end, duration))
    else:
        raise ValueError(f"phones end at {last_end:.4f}s, audio is only {duration:.4f}s long")
    if phones[-1][2] <= phones[-1][1]:
        raise ValueError("last phone collapsed when clamped to the audio length")
    for (_, _, end), (_, start, _) in zip(phones, phones[1:]):
        if abs(end - start) > 1e-9:
            raise ValueError("phone intervals are not contiguous")

    words = None
    if result.words is not None:
        words = [(w, s, min(e, duration)) for w, s, e in result.words]
    return Reference(audio, phones, words, dropped)


def write_utterance(out_dir: str, name: str, text_words: list[str], ref: Reference) -> None:
    base = os.path.join(out_dir, name)
    sf.write(base + ".wav", ref.audio, TARGET_RATE, subtype="PCM_16")
    with open(base + ".lab", "w") as f:
        f.write(" ".join(text_words) + "\n")
    with open(base + ".phones.lab", "w") as f:
        f.write(" ".join(p for p, _, _ in ref.phones) + "\n")
    tg = textgrid.Textgrid()
    # praatio intervals are (start, end, label).
    tg.addTier(textgrid.IntervalTier("phones", [(s, e, p) for p, s, e in ref.phones],
                                     0.0, ref.duration))
    if ref.words is not None:
        tg.addTier(textgrid.IntervalTier("words", [(s, e, w) for w, s, e in ref.words],
                                         0.0, ref.duration))
    tg.save(base + ".TextGrid", format="long_textgrid", includeBlankSpaces=True)
