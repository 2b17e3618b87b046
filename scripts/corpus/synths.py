"""Synthesizer back ends.  Each returns a SynthResult with the native-rate
audio and the phone (and, when derivable, word) segmentation that the
synthesizer itself used, in seconds from the start of its audio.

Phone symbols are each synthesizer's own (see make_corpus.py's docstring);
silence/pause symbols are kept raw here and normalised later.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf

ESPEAK_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "espeak_worker.py")
FESTIVAL_VOICE = "cmu_us_slt_arctic_hts"


@dataclass
class SynthResult:
    audio: np.ndarray  # int16, mono, native rate
    sample_rate: int
    phones: list[tuple[str, float, float]]  # (raw label, start s, end s), contiguous from 0
    # (word, start s, end s) per .lab word, or None when the synthesizer's
    # output cannot be mapped onto the words exactly.
    words: list[tuple[str, float, float]] | None
    # Indices into `phones` of the phones each word owns (parallel to `words`).
    word_phone_spans: list[list[int]] | None = field(default=None)


def lab_words(text: str) -> list[str]:
    """The MFA-style transcript words: lowercase, punctuation removed, apostrophes kept."""
    return re.findall(r"[a-z0-9']+", text.lower())


def _words_from_phone_groups(phones, groups, labels, is_silence):
    """Word intervals from the phones each word owns: first phone start to last phone end."""
    words, spans = [], []
    for label, group in zip(labels, groups):
        owned = [i for i in group if not is_silence(phones[i][0])]
        if not owned:
            return None, None
        words.append((label, phones[owned[0]][1], phones[owned[-1]][2]))
        spans.append(owned)
    return words, spans


# ---------------------------------------------------------------- espeak-ng
def is_espeak_silence(label: str) -> bool:
    return label.startswith("_")  # "_", "_:", "_!" ... are pauses in espeak's tables


# espeak-ng phoneme type codes (phoneme.h) that the prepause rule below needs.
ESPEAK_VOICED_STOP = 5
ESPEAK_FRICATIVES = (6, 7)  # voiceless, voiced


def pause_mask(pause_runs: list[list[int]], num_samples: int) -> np.ndarray:
    """True on the samples espeak-ng's wavegen wrote as a pause ([start, end) runs from the
    worker's output hooks)."""
    mask = np.zeros(num_samples, dtype=bool)
    for start, end in pause_runs:
        mask[start:end] = True
    return mask


def attach_prepauses(starts: list[tuple[str, int, int | None]], silent: np.ndarray,
                     phoneme_types: dict[str, int]) -> list[int]:
    """Phone start samples with each phoneme's own pre-pause moved into it.

    ``starts`` holds (phoneme, event sample, sample of the WORD event that came after the
    previous phoneme event or None); ``phoneme_types`` maps each phoneme to espeak-ng's type
    code (from the worker's output hooks). espeak-ng gives stops (and word-initial fricatives and
    some others) a ``prepause`` (setlengths.c) that belongs to that phoneme, but its Generate
    loop plays the pause *before* emitting the phoneme event, so the raw events would put a
    stop's closure in the phone before it. Here the closure goes back to its phoneme: the
    run of pause samples (``silent``, from :func:`pause_mask`) that ends at the event,
    bounded by the WORD event for a word-initial phoneme (everything between the two events
    is the prepause) and otherwise by the previous event. Left alone: pause phonemes, a run that covers the whole previous
    phone, and the pause that a voiced stop plays *after* itself before a fricative in the
    same word (Generate, phVSTOP).
    """
    result = [sample for _, sample, _ in starts]
    for k in range(1, len(starts)):
        name, sample, word_mark = starts[k]
        previous_name, previous_sample, _ = starts[k - 1]
        if is_espeak_silence(name):
            continue
        if (word_mark is None and phoneme_types.get(previous_name) == ESPEAK_VOICED_STOP
                and phoneme_types.get(name) in ESPEAK_FRICATIVES):
            continue
        run_start = sample
        while run_start > 0 and silent[run_start - 1]:
            run_start -= 1
        if word_mark is not None:
            run_start = max(run_start, word_mark)
        elif run_start <= previous_sample:
            continue
        moved = max(run_start, result[k - 1] + 1)  # the previous phone keeps a sample
        if moved < sample:
            result[k] = moved
    return result


def synth_espeak(text: str, voice: str, rate: int, pitch: int) -> SynthResult:
    with tempfile.TemporaryDirectory() as tmp:
        raw_path = os.path.join(tmp, "out.raw")
        request = {"voice": voice, "rate": rate, "pitch": pitch, "text": text, "raw_out": raw_path}
        proc = subprocess.run([sys.executable, ESPEAK_WORKER, json.dumps(request)],
                              capture_output=True, text=True, check=True, timeout=60)
        report = json.loads(proc.stdout)
        audio = np.fromfile(raw_path, dtype=np.int16)
    sr = report["sample_rate"]
    assert audio.size == report["num_samples"]

    word_events = []
    starts = []  # (phoneme, event sample, WORD event sample since the previous phoneme or None)
    phone_words: list[int] = []  # index of the WORD event each phone follows (-1: none yet)
    word_mark = None
    for ev in report["events"]:
        if ev["type"] == "word":
            word_events.append(ev)
            word_mark = ev["sample"]
        else:
            starts.append((ev["name"], ev["sample"], word_mark))
            phone_words.append(len(word_events) - 1)
            word_mark = None
    samples = attach_prepauses(starts, pause_mask(report["pause_runs"], audio.size), report["phoneme_types"])
    phones: list[tuple[str, float, float]] = []
    for k, ((name, _, _), start) in enumerate(zip(starts, samples)):
        end = samples[k + 1] if k + 1 < len(samples) else audio.size
        phones.append((name, start / sr, end / sr))

    # Word labels come from the text span each WORD event points at.
    event_labels = []
    for ev in word_events:
        begin = ev["text_position"] - 1
        event_labels.append(" ".join(lab_words(text[begin:begin + ev["length"]])))
    words = spans = None
    if event_labels == lab_words(text):
        groups = [[i for i, w in enumerate(phone_words) if w == k and phones[i][2] > phones[i][1]]
                  for k in range(len(word_events))]
        words, spans = _words_from_phone_groups(phones, groups, event_labels, is_espeak_silence)
    return SynthResult(audio, sr, phones, words, spans)


# ---------------------------------------------------------------- flite
def is_flite_silence(label: str) -> bool:
    return label == "pau"


def _flite_args(voice: str, stretch: float, f0_mean: float) -> list[str]:
    return ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch}",
            "--setf", f"int_f0_target_mean={f0_mean}"]


def synth_flite(text: str, voice: str, stretch: float, f0_mean: float) -> SynthResult:
    with tempfile.TemporaryDirectory() as tmp:
        wav_path = os.path.join(tmp, "out.wav")
        proc = subprocess.run(_flite_args(voice, stretch, f0_mean) + ["-psdur", "-t", text, "-o", wav_path],
                              capture_output=True, text=True, check=True, timeout=60)
        audio, sr = sf.read(wav_path, dtype="int16")
    # -psdur prints "phone:END" tokens (END in seconds, 3 decimals), first phone starts at 0.
    phones, prev_end = [], 0.0
    for token in proc.stdout.split():
        label, end = token.rsplit(":", 1)
        phones.append((label, prev_end, float(end)))
        prev_end = float(end)

    # flite prints no word times; recover them by synthesizing each word alone
    # (-ps, lexicon + letter-to-sound) and splitting the utterance's phones by
    # the per-word phone counts.  Post-lexical rules (e.g. "the" before a vowel)
    # substitute phones without changing counts; if any rule inserts or deletes
    # a phone the counts disagree and we give no word tier rather than guess.
    labels = lab_words(text)
    counts = []
    for word in labels:
        out = subprocess.run(_flite_args(voice, stretch, f0_mean) + ["-ps", "-t", word, "-o", "none"],
                             capture_output=True, text=True, check=True, timeout=60).stdout
        counts.append(sum(1 for p in out.split() if not is_flite_silence(p)))
    speech_idx = [i for i, (p, s, e) in enumerate(phones) if not is_flite_silence(p)]
    words = spans = None
    if sum(counts) == len(speech_idx):
        groups, pos = [], 0
        for c in counts:
            groups.append(speech_idx[pos:pos + c])
            pos += c
        words, spans = _words_from_phone_groups(phones, groups, labels, is_flite_silence)
    return SynthResult(audio, sr, phones, words, spans)


# ---------------------------------------------------------------- festival
FESTIVAL_SCRIPT = """
(voice_{voice})
(set! hts_engine_params (append {voice}::hts_engine_params
                                (list (list "-r" {rate}) (list "-fm" {halftones}))))
(set! utt (SynthText "{text}"))
(utt.save.wave utt "{wav}" 'riff)
(mapcar (lambda (s) (format t "SEG %s %f\\n" (item.name s) (item.feat s "end")))
        (utt.relation.items utt 'Segment))
(mapcar (lambda (w)
          (format t "WORD %s %f %f\\n" (item.name w)
                  (item.feat w "R:SylStructure.daughter1.daughter1.segment_start")
                  (item.feat w "R:SylStructure.daughtern.daughtern.end")))
        (utt.relation.items utt 'Word))
"""


def is_festival_silence(label: str) -> bool:
    return label == "pau"


def synth_festival(text: str, speed: float, halftones: float) -> SynthResult:
    """HTS voice via festival.  `speed` is hts_engine's -r (speech speed factor,
    >1 faster), `halftones` its -fm (additive log-F0 shift in half tones).
    Festival writes the engine's real state durations back into the Segment
    relation, so the printed segment ends match the generated audio."""
    with tempfile.TemporaryDirectory() as tmp:
        wav_path = os.path.join(tmp, "out.wav")
        script_path = os.path.join(tmp, "synth.scm")
        safe_text = text.replace("\\", " ").replace('"', " ")
        with open(script_path, "w") as f:
            f.write(FESTIVAL_SCRIPT.format(voice=FESTIVAL_VOICE, rate=speed, halftones=halftones,
                                           text=safe_text, wav=wav_path))
        proc = subprocess.run(["festival", "-b", script_path], capture_output=True, text=True,
                              check=True, timeout=120)
        audio, sr = sf.read(wav_path, dtype="int16")
    phones, items, prev_end = [], [], 0.0
    for line in proc.stdout.splitlines():
        parts = line.split()
        if parts[:1] == ["SEG"]:
            end = float(parts[2])
            phones.append((parts[1], prev_end, end))
            prev_end = end
        elif parts[:1] == ["WORD"]:
            items.append((parts[1], float(parts[2]), float(parts[3])))

    # Festival can split one .lab word into several Word items ("man's" ->
    # "man" + "'s"); join consecutive items until they spell the .lab word.
    labels, words, pos = lab_words(text), [], 0
    for label in labels:
        spelled, start, end = "", None, None
        while pos < len(items) and spelled != label:
            name, s, e = items[pos]
            spelled += "".join(lab_words(name))
            if e > s:  # a clitic item like "'s" can own no syllable (times 0 0)
                start = s if start is None else start
                end = e
            pos += 1
        if spelled != label or start is None:
            words = None
            break
        words.append((label, start, end))
    if words is not None and pos != len(items):
        words = None
    spans = None
    if words is not None:
        # Word times are segment boundaries; recover each word's phone indices.
        spans = []
        for _, start, end in words:
            owned = [i for i, (p, s, e) in enumerate(phones)
                     if s >= start - 1e-6 and e <= end + 1e-6 and not is_festival_silence(p)]
            if not owned or abs(phones[owned[0]][1] - start) > 1e-6 or abs(phones[owned[-1]][2] - end) > 1e-6:
                words = spans = None
                break
            spans.append(owned)
    return SynthResult(audio, sr, phones, words, spans)
