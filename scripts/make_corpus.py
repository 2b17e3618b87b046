#!/usr/bin/env python
"""Generate a synthetic English corpus with exact reference phone boundaries.

    python scripts/make_corpus.py OUT_DIR --num 120 --seed 0 [--synths espeak,flite,festival]
        [--conditions clean|recording]

Utterances are Harvard sentences (scripts/corpus/sentences.py) spoken by three
synthesizers with varied voices, speaking rates and pitches.  The reference
segmentation is the one each synthesizer used to build its audio, so it is
exact rather than a forced alignment:

* espeak-ng, through libespeak-ng.so.1 (ctypes, one process per utterance
  because the library keeps global state): phoneme events carry the exact
  sample index at which each phoneme starts (22050 Hz stream), except that
  espeak-ng plays a phoneme's own pre-pause (a stop's closure; the short gap
  before a word-initial fricative) before it emits the phoneme's event.  That
  pause is given back to its phoneme: its samples are known exactly from
  espeak-ng's output hooks (which report, sample by sample, whether wavegen
  wrote a pause), bounded by the WORD event (`corpus.synths.attach_prepauses`).  Word tier from the WORD
  events (each phone belongs to the word whose event precedes it).
* flite (slt, awb, rms clustergen voices): `-psdur` prints "phone:end" with
  end times in seconds to 1 ms, on the voices' 5 ms frame grid.  Word tier
  recovered from per-word phone counts (omitted when they disagree).
* festival with cmu_us_slt_arctic_hts: Segment `end` features (5 ms HTS frame
  grid) and Word start/end from the SylStructure relation; speed and pitch
  through hts_engine's -r / -fm.

Phone symbol sets (the symbols are kept as each synthesizer emits them, so
each synthesizer is self-consistent across its utterances; they are NOT
comparable across synthesizers):

* espeak: espeak-ng's ASCII phoneme mnemonics ("@", "3:", "oU", "tS", "@2",
  ...), from the English phoneme tables.  Voices en-us, en (British) and
  en-gb-x-rp share most symbols, but each dialect table has a few of its own
  (in the --num 120 --seed 0 corpus only en-us used "t#" and "O2", only
  en-gb-x-rp "r-" and "i@3", only en "A:" and "e@"), so the espeak inventory
  is the union over voices.  Not ARPAbet.
* flite and festival: the CMU lexicon's lowercase ARPAbet-like set without
  stress ("ax", "er", "hh", "dx", ...).  Comparable with pocketsphinx's
  uppercase ARPAbet (see benchmarks/peer_pocketsphinx.py).

Silence/pause symbols ("_", "_:" for espeak, "pau" otherwise) become "sil";
adjacent silences are merged.  espeak sometimes reports a phone with zero
duration (its audio folded into the neighbour, e.g. a final /l/); such phones
cannot exist in an interval tier and are dropped from both the TextGrid and
`.phones.lab` (counted in the manifest's dropped_zero_length column).

Per utterance OUT_DIR gets name.wav (16 kHz mono PCM16), name.lab (words,
MFA layout), name.phones.lab (reference phones), name.TextGrid (tier
"phones", plus "words" when derivable); plus OUT_DIR/manifest.csv.  Names
group by synthesizer: espeak_0001, flite_0001, festival_0001, ...

``--conditions recording`` gives every utterance recording conditions with the reference
still exact (scripts/corpus/conditions.py): comma pauses spoken by the synthesizer and
lengthened by 0.1-0.5 s, 0.3-2 s
of room noise at both ends (reference shifted by the leading pad), breath- and click-like
bursts inside reference silences, pink noise + mains hum at 10-30 dB SNR. Its draws come
from a separate generator per utterance, so the clean corpus of the same seed (default
``--conditions clean``) is unchanged; the manifest gains the drawn values.
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import time
from multiprocessing import Pool

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corpus.output import normalise, write_utterance  # noqa: E402
from corpus.sentences import HARVARD_SENTENCES  # noqa: E402
from corpus import conditions as recording  # noqa: E402
from corpus import synths  # noqa: E402

SYNTH_PROGRAMS = {"espeak": "espeak-ng", "flite": "flite", "festival": "festival"}
ESPEAK_VOICES = ["en-us", "en", "en-gb-x-rp"]
ESPEAK_VARIANTS = ["", "+m1", "+m3", "+f2", "+f3", "+f4"]
# Typical mean F0 (Hz) per flite voice; pitch is varied around it.
FLITE_VOICES = {"slt": 170.0, "awb": 110.0, "rms": 105.0}
MANIFEST_FIELDS = ["name", "synthesizer", "voice", "rate", "rate_unit", "pitch", "pitch_unit",
                   "duration", "num_phones", "has_words", "dropped_zero_length", "text"]
CONDITION_FIELDS = ["lead_s", "trail_s", "snr_db", "hum_hz", "hum_below_db", "comma_after", "pauses_added_s", "bursts"]


def plan_jobs(num: int, seed: int, synth_names: list[str], max_words: int | None,
              conditions: str = "clean") -> list[dict]:
    sentences = [s for s in HARVARD_SENTENCES
                 if max_words is None or len(synths.lab_words(s)) <= max_words]
    if not sentences:
        raise SystemExit(f"no sentence has at most {max_words} words")
    jobs, counters = [], {s: 0 for s in synth_names}
    for i in range(num):
        synth = synth_names[i % len(synth_names)]
        counters[synth] += 1
        # Per-job generator: parameters do not depend on pool scheduling.
        rng = np.random.default_rng([seed, i])
        job = {"name": f"{synth}_{counters[synth]:04d}", "synthesizer": synth,
               "text": sentences[int(rng.integers(len(sentences)))]}
        if synth == "espeak":
            job.update(voice=str(rng.choice(ESPEAK_VOICES)) + str(rng.choice(ESPEAK_VARIANTS)),
                       rate=int(rng.integers(130, 231)), rate_unit="words/min",
                       pitch=int(rng.integers(30, 71)), pitch_unit="espeak 0-100")
        elif synth == "flite":
            voice = str(rng.choice(list(FLITE_VOICES)))
            job.update(voice=voice, rate=round(float(rng.uniform(0.8, 1.25)), 2),
                       rate_unit="duration_stretch",
                       pitch=round(FLITE_VOICES[voice] * float(rng.uniform(0.85, 1.2)), 1),
                       pitch_unit="int_f0_target_mean Hz")
        else:
            job.update(voice=synths.FESTIVAL_VOICE, rate=round(float(rng.uniform(0.8, 1.25)), 2),
                       rate_unit="hts speed factor",
                       pitch=round(float(rng.uniform(-3.0, 3.0)), 1), pitch_unit="half tones")
        if conditions == "recording":
            # Own generator: the clean draws above stay what they are for this seed.
            drawn = recording.plan(np.random.default_rng([seed, i, 1]), job["text"])
            job.update(conditions=drawn, text=recording.with_commas(job["text"], drawn["comma_after"]))
        jobs.append(job)
    return jobs


def run_job(job: dict, out_dir: str) -> dict:
    text, synth = job["text"], job["synthesizer"]
    if synth == "espeak":
        result = synths.synth_espeak(text, job["voice"], job["rate"], job["pitch"])
        ref = normalise(result, synths.is_espeak_silence)
    elif synth == "flite":
        result = synths.synth_flite(text, job["voice"], job["rate"], job["pitch"])
        ref = normalise(result, synths.is_flite_silence)
    else:
        result = synths.synth_festival(text, job["rate"], job["pitch"])
        ref = normalise(result, synths.is_festival_silence)
    extra = {}
    if "conditions" in job:
        ref, inserted = recording.apply(ref, job["conditions"])
        extra = {**job["conditions"], **inserted,
                 "comma_after": " ".join(str(i) for i in job["conditions"]["comma_after"])}
    write_utterance(out_dir, job["name"], synths.lab_words(text), ref)
    return {**job, **extra, "duration": f"{ref.duration:.4f}", "num_phones": len(ref.phones),
            "has_words": int(ref.words is not None), "dropped_zero_length": ref.dropped_zero_length}


def _run_job_star(args):
    return run_job(*args)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--num", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--synths", default="espeak,flite,festival",
                        help="comma-separated subset of espeak,flite,festival")
    parser.add_argument("--max-words", type=int, default=None,
                        help="only use sentences with at most this many words")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--conditions", choices=("clean", "recording"), default="clean",
                        help="recording: room noise at both ends, bursts in pauses, comma pauses, 10-30 dB SNR")
    args = parser.parse_args(argv)

    synth_names = [s.strip() for s in args.synths.split(",") if s.strip()]
    for s in synth_names:
        if s not in SYNTH_PROGRAMS:
            parser.error(f"unknown synthesizer {s!r}")
        if shutil.which(SYNTH_PROGRAMS[s]) is None:
            parser.error(f"{SYNTH_PROGRAMS[s]} is not installed (needed for --synths {s})")
    os.makedirs(args.out_dir, exist_ok=True)
    jobs = plan_jobs(args.num, args.seed, synth_names, args.max_words, args.conditions)

    t0 = time.perf_counter()
    with Pool(args.jobs) as pool:
        rows = pool.map(_run_job_star, [(job, args.out_dir) for job in jobs], chunksize=1)
    elapsed = time.perf_counter() - t0

    with open(os.path.join(args.out_dir, "manifest.csv"), "w", newline="") as f:
        fields = MANIFEST_FIELDS + (CONDITION_FIELDS if args.conditions == "recording" else [])
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in fields})
    audio_s = sum(float(r["duration"]) for r in rows)
    no_words = sum(1 for r in rows if not r["has_words"])
    print(f"wrote {len(rows)} utterances ({audio_s:.1f} s of audio) to {args.out_dir} "
          f"in {elapsed:.1f} s; {no_words} without a words tier")


if __name__ == "__main__":
    main()
