"""Recording conditions for a synthetic utterance, with its exact reference kept exact.

``make_corpus.py --conditions recording`` plans, per utterance (from its own generator, so
the clean corpus's draws are untouched):

* comma pauses: 1-2 commas inserted between words of the sentence (not after a function
  word) before synthesis, so the synthesizer itself pauses there and reports the pause in its
  segmentation ("pau", "_:"); the synthesizers' pauses are short (75-190 ms), so every pause
  inside the utterance is then lengthened by 0.1-0.5 s of inserted zeros at its middle (later
  reference times shift by that much; the pause stays one silence);
* 0.3-2 s of leading and trailing room noise: the audio is padded with zeros, every
  reference time shifted by the leading pad, and the edge silences stretched over the pads;
* breath-like bursts (band-passed noise 150-400 ms, Hann envelope, 12-24 dB below the
  speech RMS) and click-like bursts (1-5 ms decaying impulse, peak 0.2-0.6 of the speech
  peak), placed only inside reference silences with >= 60 ms margin to any phone, so they
  stay labelled silence;
* room noise over the whole clip: pink (1/f power) noise plus a mains hum (50 or 60 Hz and
  two harmonics, 6-20 dB below the pink noise), scaled so that speech power (mean square over
  the non-silence reference phones) over noise power is the drawn SNR, 10-30 dB.

Applied to the 16 kHz int16 audio after :func:`corpus.output.normalise`; the reference's
contiguity and extent checks are repeated afterwards.
"""
from __future__ import annotations

import numpy as np
from scipy.signal import butter, sosfilt

from .output import SILENCE, TARGET_RATE, Reference

LEAD_S = (0.3, 2.0)
SNR_DB = (10.0, 30.0)
BURST_MARGIN_S = 0.060
BREATH_S = (0.15, 0.40)
PAUSE_EXTRA_S = (0.1, 0.5)
# No comma right after these: a pause there is not how people read.
FUNCTION_WORDS = frozenset("a an the of to in on at by for with from and or but as is was his her its their "
                           "our my your this that".split())
CLICK_S = (0.001, 0.005)


def plan(rng: np.random.Generator, text: str) -> dict:
    """The drawn conditions of one utterance (all numbers go to the manifest)."""
    words = text.split()
    gaps = [i for i in range(len(words) - 1)  # no comma after punctuation or a function word
            if words[i][-1].isalnum() and words[i].lower() not in FUNCTION_WORDS]
    num_commas = min(len(gaps), int(rng.integers(1, 3)))
    commas = sorted(int(i) for i in rng.choice(gaps, size=num_commas, replace=False)) if num_commas else []
    return {
        "comma_after": commas,
        "lead_s": round(float(rng.uniform(*LEAD_S)), 3),
        "trail_s": round(float(rng.uniform(*LEAD_S)), 3),
        "snr_db": round(float(rng.uniform(*SNR_DB)), 1),
        "hum_hz": int(rng.choice([50, 60])),
        "hum_below_db": round(float(rng.uniform(6.0, 20.0)), 1),
        "noise_seed": int(rng.integers(2**31)),
    }


def with_commas(text: str, comma_after: list[int]) -> str:
    words = text.split()
    for i in comma_after:
        words[i] = words[i] + ","
    return " ".join(words)


def _pink(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-variance noise with 1/f power: white noise shaped in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spectrum.size, dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spectrum / np.sqrt(f), n)
    return x / (x.std() + 1e-12)


def _breath(rng: np.random.Generator, n: int) -> np.ndarray:
    sos = butter(4, [500.0, 3000.0], btype="bandpass", fs=TARGET_RATE, output="sos")
    x = sosfilt(sos, rng.standard_normal(n))
    x = x / (x.std() + 1e-12)
    return x * np.hanning(n)


def _click(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.arange(n)
    x = rng.standard_normal(n) * np.exp(-t / max(1.0, n / 4))
    return x / (np.abs(x).max() + 1e-12)


def apply(ref: Reference, conditions: dict) -> tuple[Reference, dict]:
    """The utterance under ``conditions`` (from :func:`plan`), and what was inserted."""
    rng = np.random.default_rng(conditions["noise_seed"])
    lead = int(round(conditions["lead_s"] * TARGET_RATE))
    trail = int(round(conditions["trail_s"] * TARGET_RATE))
    speech = ref.audio.astype(np.float64)

    # Lengthen the pauses inside the utterance: zeros inserted at each pause's middle sample.
    inserts = []  # (sample position in the original audio, samples inserted)
    for k, (p, s, e) in enumerate(ref.phones):
        if p == SILENCE and 0 < k < len(ref.phones) - 1:
            inserts.append((int(round((s + e) / 2 * TARGET_RATE)),
                            int(round(rng.uniform(*PAUSE_EXTRA_S) * TARGET_RATE))))
    pieces, last = [], 0
    for pos, length in inserts:
        pieces += [speech[last:pos], np.zeros(length)]
        last = pos
    speech = np.concatenate(pieces + [speech[last:]])

    def moved(t: float) -> float:
        return t + (lead + sum(n for pos, n in inserts if pos < t * TARGET_RATE - 1e-6)) / TARGET_RATE

    x = np.concatenate([np.zeros(lead), speech, np.zeros(trail)])
    duration = x.size / TARGET_RATE

    phones = [(p, moved(s), moved(e)) for p, s, e in ref.phones]
    if phones[0][0] == SILENCE:
        phones[0] = (SILENCE, 0.0, phones[0][2])
    else:
        phones.insert(0, (SILENCE, 0.0, phones[0][1]))
    if phones[-1][0] == SILENCE:
        phones[-1] = (SILENCE, phones[-1][1], duration)
    else:
        phones.append((SILENCE, phones[-1][2], duration))
    words = None if ref.words is None else [(w, moved(s), moved(e)) for w, s, e in ref.words]

    # Speech level: mean square over the non-silence phones (of the original signal).
    mask = np.zeros(x.size, dtype=bool)
    for p, s, e in phones:
        if p != SILENCE:
            mask[int(round(s * TARGET_RATE)):int(round(e * TARGET_RATE))] = True
    speech_power = float(np.mean(x[mask] ** 2)) if mask.any() else float(np.mean(x ** 2))
    speech_rms, speech_peak = np.sqrt(speech_power), float(np.abs(speech).max())

    # Bursts, only inside reference silences with a margin to every phone.
    bursts = []
    margin = int(round(BURST_MARGIN_S * TARGET_RATE))
    for p, s, e in phones:
        if p != SILENCE:
            continue
        lo, hi = int(round(s * TARGET_RATE)) + (margin if s > 0 else 0), \
            int(round(e * TARGET_RATE)) - (margin if e < duration else 0)
        kind = "breath" if rng.random() < 0.5 else "click"
        length = int(round(rng.uniform(*(BREATH_S if kind == "breath" else CLICK_S)) * TARGET_RATE))
        if hi - lo < length + 1 or rng.random() < 0.25:  # too short, or (a quarter of the time) left clean
            continue
        start = int(rng.integers(lo, hi - length))
        if kind == "breath":
            burst = _breath(rng, length) * speech_rms * 10 ** (-rng.uniform(12.0, 24.0) / 20)
        else:
            burst = _click(rng, length) * speech_peak * rng.uniform(0.2, 0.6)
        x[start:start + length] += burst
        bursts.append(f"{kind}@{start / TARGET_RATE:.3f}-{(start + length) / TARGET_RATE:.3f}")

    # Room noise at the drawn SNR: pink noise + mains hum.
    t = np.arange(x.size) / TARGET_RATE
    hum = sum(np.sin(2 * np.pi * conditions["hum_hz"] * k * t + rng.uniform(0, 2 * np.pi)) / k for k in (1, 2, 3))
    hum = hum / (hum.std() + 1e-12) * 10 ** (-conditions["hum_below_db"] / 20)
    noise = _pink(rng, x.size) + hum
    noise *= np.sqrt(speech_power / 10 ** (conditions["snr_db"] / 10) / float(np.mean(noise ** 2)))
    x = x + noise
    peak = np.abs(x).max()
    if peak > 32767:  # keep the mix (never clip): scale it all down
        x *= 32767 / peak
    audio = np.round(x).astype(np.int16)
    for (_, _, end), (_, start, _) in zip(phones, phones[1:]):
        if abs(end - start) > 1e-9:
            raise ValueError("phone intervals are not contiguous after adding recording conditions")
    out = Reference(audio, phones, words, ref.dropped_zero_length)
    return out, {"bursts": " ".join(bursts),
                 "pauses_added_s": " ".join(f"{n / TARGET_RATE:.7f}" for _, n in inserts)}  # exact: n / 16000
