#!/usr/bin/env python
"""Peer forced aligner: pocketsphinx 5.1.1 with its bundled en-us model.

    python benchmarks/peer_pocketsphinx.py CORPUS_DIR OUT_DIR [--score]

For every CORPUS_DIR/name.wav with a name.lab word transcript, aligns the words
(pocketsphinx's two-pass alignment: word-level `set_align_text`, then
`set_alignment` for phone level), writes OUT_DIR/name.TextGrid with tiers
"phones" and "words", and prints the speed in seconds of audio per wall second.
Times come in 10 ms frames (pocketsphinx's default frame rate), so every
boundary it reports is a multiple of 10 ms.

Phone symbols: the peer's tier keeps pocketsphinx's uppercase ARPAbet (no
stress; "SIL" becomes "sil").  Reference phone sets:
* flite (slt/awb/rms) and festival (cmu_us_slt_arctic_hts) use the CMU
  lexicon's lowercase ARPAbet-like set; it maps onto pocketsphinx's set by
  upper-casing, except "ax" (schwa), which CMUdict writes AH, and "pau" -> sil.
  These references are comparable phone by phone (FLITE_TO_ARPABET below).
* espeak-ng uses its own mnemonics (not ARPAbet) with different segmentation
  conventions (e.g. diphthongs with r-colouring, syllabic consonants), so only
  its word boundaries are comparable with the peer.

With --score, compares with CORPUS_DIR/name.TextGrid references using
hmm_engine.alignment.metrics: word boundaries for every synthesizer, phone
boundaries for flite/festival (reference mapped to ARPAbet).  Phone sequences
can differ (CMUdict vs the synthesizer's lexicon), so the metric matches the
label sequences by edit distance and scores only boundaries between matched
phones; "scored/bounds" and the mismatch count show how much was comparable.

Out-of-vocabulary words (not in CMUdict) get a pronunciation from flite's
lexicon + letter-to-sound rules, mapped to ARPAbet; if flite is missing the
utterance is skipped and reported.
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import soundfile as sf
from praatio import textgrid

FRAME_S = 0.01  # pocketsphinx default -frate 100
NON_WORDS = {"<s>", "</s>", "<sil>"}
# flite/festival CMU-lexicon symbols whose ARPAbet spelling is not just upper-case.
FLITE_TO_ARPABET = {"ax": "AH", "pau": "SIL", "sil": "SIL"}
COMPARABLE_PHONES = {"flite", "festival"}
TOLERANCES_S = (0.010, 0.020, 0.050)


def flite_to_arpabet(phone: str) -> str:
    return FLITE_TO_ARPABET.get(phone, phone.upper())


def flite_pronunciation(word: str) -> str | None:
    if shutil.which("flite") is None:
        return None
    out = subprocess.run(["flite", "-voice", "slt", "-ps", "-t", word, "-o", "none"],
                         capture_output=True, text=True, check=True).stdout.split()
    return " ".join(flite_to_arpabet(p) for p in out if p != "pau") or None


class PocketsphinxAligner:
    def __init__(self):
        self.decoder = self._new_decoder()

    @staticmethod
    def _new_decoder():
        # bestpath=False: the lattice best-path rescoring of the first pass can
        # leave 1-frame phones that the phone-level pass cannot align ("phone N
        # has impossible duration 1").  Wide beams: with the defaults the first
        # pass fails to reach the final state on ~1/3 of espeak's (robotic)
        # utterances; with these, 1 of 156 generated utterances still fails.
        # Imported here so the label mapping above works without the (bench-only) pocketsphinx.
        from pocketsphinx import Decoder

        return Decoder(lm=None, samprate=16000, loglevel="FATAL", bestpath=False,
                       beam=1e-120, wbeam=1e-100, pbeam=1e-120, maxhmmpf=-1)

    def reset(self) -> None:
        """Fresh decoder after a failed alignment (its search state is unusable)."""
        self.decoder = self._new_decoder()

    def ensure_words(self, words: list[str]) -> list[str]:
        """Add OOV words via flite; return the ones that could not be added."""
        missing = []
        for w in set(words):
            if self.decoder.lookup_word(w) is None:
                pron = flite_pronunciation(w)
                if pron is None:
                    missing.append(w)
                else:
                    self.decoder.add_word(w, pron, True)
        return missing

    def align(self, audio: np.ndarray, words: list[str]):
        """Return (phones, words) as (label, start s, end s) lists."""
        data = audio.astype(np.int16).tobytes()
        d = self.decoder
        d.set_align_text(" ".join(words))
        d.start_utt()
        d.process_raw(data, full_utt=True)
        d.end_utt()
        d.set_alignment()
        d.start_utt()
        d.process_raw(data, full_utt=True)
        d.end_utt()
        phone_iv, word_iv = [], []
        for word in d.get_alignment():
            w_start = word.start * FRAME_S
            w_end = (word.start + word.duration) * FRAME_S
            if word.name not in NON_WORDS:
                # CMUdict marks alternative pronunciations "word(2)"; report the word.
                word_iv.append((re.sub(r"\(\d+\)$", "", word.name), w_start, w_end))
            for phone in word:
                label = "sil" if phone.name == "SIL" else phone.name
                phone_iv.append((label, phone.start * FRAME_S, (phone.start + phone.duration) * FRAME_S))
        merged = []  # <s>, <sil>, </s> each give a SIL phone; merge neighbours
        for p in phone_iv:
            if merged and p[0] == "sil" == merged[-1][0]:
                merged[-1] = ("sil", merged[-1][1], p[2])
            else:
                merged.append(p)
        return merged, word_iv


def write_textgrid(path: str, phones, words, duration: float) -> None:
    end = max(duration, phones[-1][2])
    tg = textgrid.Textgrid()
    tg.addTier(textgrid.IntervalTier("phones", [(s, e, p) for p, s, e in phones], 0.0, end))
    tg.addTier(textgrid.IntervalTier("words", [(s, e, w) for w, s, e in words], 0.0, end))
    tg.save(path, format="long_textgrid", includeBlankSpaces=True)


# ------------------------------------------------------------------ scoring
def read_tier(path: str, name: str):
    tg = textgrid.openTextgrid(path, includeEmptyIntervals=False)
    if name not in tg.tierNames:
        return None
    return [(e.label, e.start, e.end) for e in tg.getTier(name).entries]


def score(corpus_dir: str, out_dir: str, names: list[str]) -> None:
    """Pooled boundary accuracy per synthesizer with hmm_engine.alignment.metrics
    (label sequences matched by edit distance, silences merged)."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from hmm_engine.alignment.metrics import compare_tiers, pool_comparisons
    from hmm_engine.segments import Segment

    def segments(tier, label_map=lambda x: x):
        return [Segment(label_map(name), s, e) for name, s, e in tier]

    pooled: dict[tuple[str, str], list] = {}
    for name in names:
        synth = name.split("_")[0]
        ref_path = os.path.join(corpus_dir, name + ".TextGrid")
        hyp_path = os.path.join(out_dir, name + ".TextGrid")
        ref_words = read_tier(ref_path, "words")
        if ref_words is not None:
            pooled.setdefault((synth, "word"), []).append(compare_tiers(
                segments(ref_words), segments(read_tier(hyp_path, "words")), silence="merge"))
        if synth in COMPARABLE_PHONES:
            ref_phones = segments(read_tier(ref_path, "phones"),
                                  lambda p: "sil" if p == "sil" else flite_to_arpabet(p))
            pooled.setdefault((synth, "phone"), []).append(compare_tiers(
                ref_phones, segments(read_tier(hyp_path, "phones")), silence="merge"))
    header = "  ".join(f"<={int(t * 1000)}ms" for t in TOLERANCES_S)
    print(f"{'synth':9s} {'level':5s} {'files':>5s} {'scored':>7s}/{'bounds':<6s}  {header}"
          f"  median_ms  mismatches/ref_segs")
    for (synth, level), comps in sorted(pooled.items()):
        c = pool_comparisons(comps)
        within = "  ".join(f"{c.percent_within(t * 1000):6.1f}%" for t in TOLERANCES_S)
        print(f"{synth:9s} {level:5s} {c.num_files:5d} {c.num_scored_boundaries:7d}/{c.num_ref_boundaries:<6d}"
              f"  {within}  {c.median_abs_error_ms:8.1f}  {c.mismatches}/{c.num_ref_segments}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--score", action="store_true",
                        help="compare with the corpus's reference TextGrids")
    args = parser.parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)

    aligner = PocketsphinxAligner()
    names, failed, audio_s, align_s = [], [], 0.0, 0.0
    for wav in sorted(glob.glob(os.path.join(args.corpus_dir, "*.wav"))):
        name = os.path.splitext(os.path.basename(wav))[0]
        lab = os.path.join(args.corpus_dir, name + ".lab")
        if not os.path.exists(lab):
            continue
        with open(lab) as f:
            words = f.read().lower().split()
        audio, sr = sf.read(wav, dtype="int16")
        if sr != 16000 or audio.ndim != 1:
            print(f"skip {name}: needs 16 kHz mono, got {sr} Hz / shape {audio.shape}", file=sys.stderr)
            continue
        missing = aligner.ensure_words(words)
        if missing:
            print(f"skip {name}: no pronunciation for {missing}", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        try:
            phones, word_iv = aligner.align(audio, words)
        except RuntimeError as err:
            print(f"FAILED {name}: pocketsphinx could not align ({err})", file=sys.stderr)
            failed.append(name)
            aligner.reset()  # OOV words are re-added per utterance by ensure_words
            continue
        align_s += time.perf_counter() - t0
        duration = audio.size / sr
        audio_s += duration
        write_textgrid(os.path.join(args.out_dir, name + ".TextGrid"), phones, word_iv, duration)
        names.append(name)
    if not names:
        raise SystemExit("nothing aligned")
    print(f"aligned {len(names)} utterances, {audio_s:.1f} s of audio in {align_s:.1f} s "
          f"(alignment only): {audio_s / align_s:.1f} s audio per wall second; "
          f"{len(failed)} failed{': ' + ' '.join(failed) if failed else ''}")
    if args.score:
        score(args.corpus_dir, args.out_dir, names)


if __name__ == "__main__":
    main()
