#!/usr/bin/env python
"""How many labelled utterances does labelled training need?

    python benchmarks/labelled_curve.py [--sizes 9,30,60,150,450] [--mixtures 4]

Trains phone models (``train_labelled``, default settings) on the first N/3 utterances of each
synthesizer of the labelled tuning corpus (``data/align_bench450``, seed 2), aligns the held-out
benchmark corpus (``data/bench_alignment``, seed 7) with them (``align_corpus(models=...)``) and
prints the % of boundaries within 20 ms and how many held-out files had to be skipped because
they hold a phone that the labelled subset never has. Both corpora are generated on first use.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from bench_alignment import ensure_corpus, score  # noqa: E402
from hmm_engine.alignment import MIN_FRAMES_PER_GAUSSIAN, align_corpus, train_labelled  # noqa: E402
from hmm_engine.alignment.phone_models import PhoneModels  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labelled-corpus", type=Path, default=ROOT / "data" / "align_bench450")
    parser.add_argument("--corpus", type=Path, default=ROOT / "data" / "bench_alignment")
    parser.add_argument("--sizes", default="9,30,60,150,450", help="labelled utterances (a multiple of 3 each)")
    parser.add_argument("--mixtures", type=int, default=4, help="Gaussians per state")
    parser.add_argument("--min-frames-per-gaussian", type=float, default=MIN_FRAMES_PER_GAUSSIAN)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    ensure_corpus(args.labelled_corpus, 450, 2)
    ensure_corpus(args.corpus, 150, 7)
    by_synth: dict[str, list[str]] = {}
    for wav in sorted(args.labelled_corpus.glob("*.wav")):
        by_synth.setdefault(wav.stem.split("_")[0], []).append(wav.stem)
    quiet = dict(show_progress=False, report=lambda line: None)
    print(f"labelled: {args.labelled_corpus}; aligned: {args.corpus} (held out); "
          f"{args.mixtures} Gaussian(s) per state\n")
    print(f"{'labelled utterances':>20}{'train s':>9}{'files aligned':>15}{'<=10 ms':>9}{'<=20 ms':>9}{'<=25 ms':>9}")
    for size in (int(v) for v in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            subset = Path(tmp) / "labelled"
            subset.mkdir()
            for names in by_synth.values():
                for name in names[: size // len(by_synth)]:
                    for suffix in (".wav", ".TextGrid"):
                        (subset / f"{name}{suffix}").symlink_to((args.labelled_corpus / f"{name}{suffix}").resolve())
            t0 = time.perf_counter()
            labelled = train_labelled(subset, Path(tmp) / "models", num_mixtures=args.mixtures,
                                      min_frames_per_gaussian=args.min_frames_per_gaussian, **quiet)
            seconds = time.perf_counter() - t0
            report = align_corpus(args.corpus, Path(tmp) / "out", phones=True, transcript_suffix=".phones.lab",
                                  models=PhoneModels.load(labelled.models_path), **quiet)
            pooled = score(args.corpus, Path(tmp) / "out", sorted(report.aligned))["overall"]
            aligned = f"{len(report.aligned)} of {len(report.aligned) + len(report.skipped)}"
            print(f"{labelled.num_train_files:>20}{seconds:>9.1f}{aligned:>15}{pooled.percent_within(10):>9.1f}"
                  f"{pooled.percent_within(20):>9.1f}{pooled.percent_within(25):>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
