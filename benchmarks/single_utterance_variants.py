#!/usr/bin/env python
"""Single-utterance alignment variants on the synthetic benchmark corpus (exact references).

    python benchmarks/single_utterance_variants.py [--corpus data/bench_alignment] --variants "speech_prior=0.0",...

Each variant is ``align_utterance`` with those keyword arguments (phones given, as
bench_alignment.py's single-utterance mode); ``noinit`` keeps the speech prior in the emission
scores but starts every state from the global statistics (the flat start before issue 13).
Prints % of reference boundaries within 20 ms per variant (bench_alignment.score).
"""
from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_alignment import score  # noqa: E402

from hmm_engine.alignment import align_utterance, training  # noqa: E402
from hmm_engine.alignment.textgrids import write_textgrid  # noqa: E402
from hmm_engine.threads import single_thread  # noqa: E402

_flat_start = training.flat_start_stats


def _flat_start_without_speech_split(models, x, transcript, init="uniform"):
    saved, models.speech_prior = models.speech_prior, 0.0
    try:
        return _flat_start(models, x, transcript, init)
    finally:
        models.speech_prior = saved


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "data" / "bench_alignment")
    parser.add_argument("--variants", default="speech_prior=0.0,noinit")
    args = parser.parse_args(argv)
    with open(args.corpus / "manifest.csv", newline="") as handle:
        names = [row["name"] for row in csv.DictReader(handle)]
    for variant in args.variants.split(";"):
        kwargs = {} if variant in ("default", "noinit") else eval(f"dict({variant})")
        training.flat_start_stats = _flat_start_without_speech_split if variant == "noinit" else _flat_start
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp, single_thread():
            for name in names:
                r = align_utterance(args.corpus / f"{name}.wav", phones=(args.corpus / f"{name}.phones.lab").read_text(),
                                    **kwargs)
                write_textgrid(Path(tmp) / f"{name}.TextGrid", r.tiers(), r.duration)
            overall = score(args.corpus, Path(tmp), names)["overall"]
        print(f"{variant:<30} {overall.percent_within(20):6.1f}% within 20 ms ({time.perf_counter() - t0:.0f} s)",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
