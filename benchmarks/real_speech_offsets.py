#!/usr/bin/env python
"""Signed boundary offsets on the real clips: is there a constant shift between us and the peer?

    python benchmarks/real_speech_offsets.py OUT [--systems single,corpus] [--shifts -10,-5,0,5]

OUT is the ``--out`` folder of ``benchmarks/real_speech.py`` (TextGrids of each system under
OUT/<system>/, the peer's under OUT/peer/). For each system, against the peer and against the
distributed ARCTIC labels (and the peer itself against those labels), it prints the mean and
median signed error (ours - reference, ms) per boundary class -- silence->speech, speech->speech,
speech->silence -- and the % of the reference's boundaries within 20 ms when every one of our
boundaries is moved by a constant shift (ms). A frame-convention mismatch would show as one
offset in every class and a shift that lifts every row.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "scripts"))

import real_speech as RS  # noqa: E402
from hmm_engine.alignment.metrics import pool_comparisons  # noqa: E402

from hmm_engine.alignment.metrics import compare_tiers  # noqa: E402
from hmm_engine.alignment.textgrids import read_textgrid  # noqa: E402
from hmm_engine.segments import Segment  # noqa: E402


def shifted(tier: list[Segment], shift_s: float) -> list[Segment]:
    """Every internal boundary moved by ``shift_s`` (tier edges kept)."""
    end = tier[-1].end
    out = []
    for i, s in enumerate(tier):
        a = s.start if i == 0 else min(end, max(0.0, s.start + shift_s))
        b = s.end if i == len(tier) - 1 else min(end, max(0.0, s.end + shift_s))
        out.append(Segment(s.label, a, max(a, b), s.score))
    return out


def boundary_class(left: str, right: str) -> str:
    ls, rs = RS.is_speech(left) if left else False, RS.is_speech(right) if right else False
    return {(False, True): "sil->speech", (True, True): "speech->speech", (True, False): "speech->sil"}.get((ls, rs), "other")


def report(name: str, pairs_tiers: list[tuple[list[Segment], list[Segment]]], shifts: list[float]) -> None:
    errs: dict[str, list[float]] = {}
    for ref, hyp in pairs_tiers:
        for p in compare_tiers(ref, hyp, silence="merge").boundary_pairs:
            errs.setdefault(boundary_class(p.left, p.right), []).append(1000 * p.error)
            errs.setdefault("all", []).append(1000 * p.error)
    cells = []
    for cls in ("sil->speech", "speech->speech", "speech->sil", "all"):
        e = np.array(errs.get(cls, []))
        cells.append(f"{cls} n={e.size} mean {e.mean() if e.size else float('nan'):+.1f} "
                     f"median {np.median(e) if e.size else float('nan'):+.1f}")
    within = []
    for sh in shifts:
        cmps = [compare_tiers(ref, shifted(hyp, sh / 1000), silence="merge") for ref, hyp in pairs_tiers]
        within.append(f"{sh:+g}ms:{RS.within_all(pool_comparisons(cmps)):.1f}%")
    print(f"{name}\n   " + "\n   ".join(cells) + "\n   within 20 ms with shift: " + "  ".join(within), flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--systems", default="single,corpus")
    parser.add_argument("--shifts", default="-15,-10,-7.5,-5,0,5")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "real_speech")
    args = parser.parse_args(argv)
    clips = RS.load_clips(args.data, False, None, None)
    shifts = [float(s) for s in args.shifts.split(",")]

    def tier(system, clip):
        path = args.out / system / f"{clip.name}.TextGrid"
        return read_textgrid(path, tier="phones")["phones"] if path.exists() else None

    labelled = [c for c in clips if c.labels]
    report("peer vs ARCTIC labels", [(c.labels, tier("peer", c)) for c in labelled if tier("peer", c)], shifts)
    for system in args.systems.split(","):
        pairs = [(tier("peer", c), tier(system, c)) for c in clips if tier("peer", c) and tier(system, c)]
        report(f"{system} vs peer ({len(pairs)} clips)", pairs, shifts)
        report(f"{system} vs ARCTIC labels", [(c.labels, tier(system, c)) for c in labelled if tier(system, c)], shifts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
