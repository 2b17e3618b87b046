#!/usr/bin/env python
"""Single-utterance alignment variants on the real clips of benchmarks/real_speech.py.

    python benchmarks/real_speech_variants.py PEER_DIR [--variants base,sp5,...] [--names REGEX]

PEER_DIR holds the peer's TextGrids (``benchmarks/real_speech.py --only peer --out OUT`` writes
them under OUT/peer). Each variant is ``align_utterance`` with the keyword arguments listed in
VARIANTS below (the lexicon of real_speech.py, one clip at a time); printed per variant:
% of the peer's boundaries within 20 ms (all), phones over near-silence, edge errors > 100 ms,
ARCTIC label boundaries within 20 ms -- the same scoring as real_speech.py. This is the record
of what was tried for issue 13 (docs/real-recordings.md).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "scripts"))

import real_speech as RS  # noqa: E402

from hmm_engine.alignment import align_utterance, read_dictionary  # noqa: E402
from hmm_engine.alignment.textgrids import read_textgrid  # noqa: E402

VARIANTS = {
    "base": dict(speech_prior=0.0, shipped=False),  # before issue 13
    "clip": dict(shipped=False),  # trained on the clip alone (the default before the shipped models)
    "shipped": dict(),  # the default: shipped phone models where the transcript is ARPAbet
    "sp2": dict(speech_prior=2.0),
    "sp5": dict(speech_prior=5.0),
    "sp10": dict(speech_prior=10.0),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("peer", type=Path)
    parser.add_argument("--variants", default="base,sp5")
    parser.add_argument("--names", default=None)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "real_speech")
    parser.add_argument("--per-clip", action="store_true")
    args = parser.parse_args(argv)
    clips = RS.load_clips(args.data, False, None, args.names)
    lexicon = read_dictionary(args.data / "lexicon.dict")
    peer = {}
    for c in clips:
        tg = read_textgrid(args.peer / f"{c.name}.TextGrid")
        peer[c.name] = (tg["phones"], tg.get("words"))
    energies = {}
    for c in clips:
        samples, rate = RS.sf.read(c.wav, dtype="float64")
        energies[c.name] = RS.frame_energy_db(samples, rate)
    print(f"{'variant':<12}{'<=20ms all':>11}{'near-sil':>9}{'edges':>8}{'ARCTIC':>8}{'wall s':>8}")
    for name in args.variants.split(","):
        kwargs = VARIANTS[name] if name in VARIANTS else eval(f"dict({name})")  # ad-hoc keyword lists
        t0 = time.perf_counter()
        tiers = {}
        for c in clips:
            r = align_utterance(c.wav, words=c.words, dictionary=lexicon, **kwargs)
            tiers[c.name] = (r.phones, r.words)
        sc = RS.score_system(name, tiers, peer, clips, energies, time.perf_counter() - t0)
        pooled = RS.pool_comparisons(sc.peer_cmp)
        arctic = RS.pool_comparisons(sc.label_cmp) if sc.label_cmp else None
        print(f"{name[:40]:<12}{RS.within_all(pooled):>10.1f}%{sc.near_silence:>9}{sc.edge_misses:>5}/{sc.edges:<3}"
              f"{(RS.within_all(arctic) if arctic else float('nan')):>7.1f}%{sc.seconds:>8.1f}", flush=True)
        if args.per_clip:
            for row in sc.rows:
                print("   ", row.get("clip"), row.get("peer_within20_all_pct"), row.get("near_silence_labels"),
                      row.get("start_edge_err_ms"), row.get("end_edge_err_ms"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
