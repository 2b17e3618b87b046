#!/usr/bin/env python
"""bench_alignment.py on the "recording conditions" synthetic corpus (exact references).

    python benchmarks/recording_conditions.py [--num 150] [--seed 7] [--corpus data/bench_recording]
        [--out data/bench_recording_out] [any further bench_alignment.py option, e.g. --skip-single]

Generates (or reuses, when its manifest has ``--num`` rows and the recording-condition
columns) ``scripts/make_corpus.py CORPUS --conditions recording``: the same Harvard sentences
and synthesizers as the clean corpus, with comma pauses, 0.3-2 s of room noise at both ends,
breath- and click-like bursts inside pauses, and pink noise + mains hum at 10-30 dB SNR,
every reference time still the synthesizer's own (``scripts/corpus/conditions.py``). Then
runs ``benchmarks/bench_alignment.py`` on it (corpus mode, realignment, single-utterance mode;
the labelled-training rows are skipped unless ``--with-labelled``: their training corpus is a
clean one). Seed 7 is the held-out seed of the clean benchmark, so the two tables compare
the same sentences and voices.
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def ensure_recording_corpus(folder: Path, num: int, seed: int) -> None:
    manifest = folder / "manifest.csv"
    if manifest.is_file():
        with open(manifest, newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            fields = reader.fieldnames or []
        if "snr_db" in fields and len(rows) == num and all((folder / f"{r['name']}.wav").is_file() for r in rows):
            print(f"reusing recording-conditions corpus {folder} ({num} utterances)")
            return
        if "snr_db" not in fields:
            raise SystemExit(f"{folder} holds a clean corpus: give another --corpus")
    print(f"generating {num} utterances with recording conditions into {folder} ...", flush=True)
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_corpus.py"), str(folder), "--num", str(num),
                    "--seed", str(seed), "--conditions", "recording"], check=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "data" / "bench_recording")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "bench_recording_out")
    parser.add_argument("--num", type=int, default=150)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--with-labelled", action="store_true", help="keep bench_alignment's labelled-training rows")
    args, rest = parser.parse_known_args(argv)
    if args.num < 1:
        parser.error("--num must be at least 1")
    ensure_recording_corpus(args.corpus, args.num, args.seed)
    import bench_alignment

    forwarded = ["--corpus", str(args.corpus), "--out", str(args.out), "--num", str(args.num),
                 "--seed", str(args.seed), *rest]
    if not args.with_labelled:
        forwarded.append("--skip-labelled")
    return bench_alignment.main(forwarded) or 0


if __name__ == "__main__":
    sys.exit(main())
