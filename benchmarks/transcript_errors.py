#!/usr/bin/env python
"""Does alignment_analysis.csv point at the files whose transcripts are wrong?

    python benchmarks/transcript_errors.py [--corpus data/align_bench] [--num 150] [--seed 1] [--per-kind 5]

Copies a generated corpus (phone transcripts) and plants errors in ``--per-kind`` files each:
a whole transcript swapped with another file's of the same synthesizer, one phone substituted
by another of the utterance, one phone deleted, one phone inserted. Runs corpus alignment as
``python -m hmm_engine align`` does and ranks the files (1 = most suspicious) by the columns of
its ``alignment_analysis.csv``: ``worst_phone_fit`` (the phone whose frames score worst against
a free phone loop; the file is sorted by it), ``transcript_fit_per_frame`` (the whole forced
alignment against the loop) and, for comparison, the plain log-likelihood per frame. Prints each planted file's ranks, and per error kind
how many land among the lowest 10% of the corpus, and whether ``worst_phone`` starts within
100 ms of the planted error.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from bench_alignment import ensure_corpus  # noqa: E402
from hmm_engine.alignment import align_corpus  # noqa: E402
from hmm_engine.alignment.textgrids import read_textgrid  # noqa: E402

KINDS = ("swapped", "substituted", "deleted", "inserted")
METRICS = ("worst_phone_fit", "transcript_fit_per_frame", "log_likelihood_per_frame")


def plant(phones: list[str], kind: str, other: list[str], rng: random.Random) -> tuple[list[str], int | None]:
    """``phones`` (with its silences) made wrong in one way, and the index of the reference
    phone where (None for a swapped transcript)."""
    if kind == "swapped":
        return list(other), None
    inner = [i for i, p in enumerate(phones) if p != "sil"]
    i = rng.choice(inner)
    if kind == "substituted":
        return phones[:i] + [rng.choice(sorted(set(phones) - {"sil", phones[i]}))] + phones[i + 1:], i
    if kind == "deleted":
        return phones[:i] + phones[i + 1:], i
    return phones[:i] + [rng.choice([p for p in phones if p != "sil"])] + phones[i:], i


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "data" / "align_bench")
    parser.add_argument("--num", type=int, default=150)
    parser.add_argument("--seed", type=int, default=1, help="corpus seed")
    parser.add_argument("--per-kind", type=int, default=5, help="files given each kind of error")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    ensure_corpus(args.corpus, args.num, args.seed)
    rng = random.Random(0)
    names = sorted(p.stem for p in args.corpus.glob("*.wav"))
    chosen = rng.sample(names, args.per_kind * len(KINDS))
    planted = {name: KINDS[i // args.per_kind] for i, name in enumerate(chosen)}
    where: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        for name in names:
            (corpus / f"{name}.wav").symlink_to((args.corpus / f"{name}.wav").resolve())
            phones = (args.corpus / f"{name}.phones.lab").read_text(encoding="utf-8").split()
            if name in planted:
                same_synth = [n for n in names if n.split("_")[0] == name.split("_")[0] and n != name]
                other = (args.corpus / f"{rng.choice(same_synth)}.phones.lab").read_text(encoding="utf-8").split()
                phones, index = plant(phones, planted[name], other, rng)
                if index is not None:  # where the error sits: the reference phone's time span
                    ref = read_textgrid(args.corpus / f"{name}.TextGrid", tier="phones")["phones"][index]
                    where[name] = (ref.start, ref.end)
            (corpus / f"{name}.phones.lab").write_text(" ".join(phones) + "\n", encoding="utf-8")
        report = align_corpus(corpus, Path(tmp) / "out", phones=True, transcript_suffix=".phones.lab",
                              device="cpu", show_progress=False, report=lambda line: None)
        with open(report.analysis_path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    ranks = {}
    for metric in METRICS:
        ordered = sorted(rows, key=lambda r: float(r[metric]))
        ranks[metric] = {r["name"]: i + 1 for i, r in enumerate(ordered)}
    bottom = max(1, round(0.1 * len(rows)))
    print(f"corpus {args.corpus}: {len(rows)} files aligned, {len(planted)} with a planted error; "
          f"rank 1 = lowest value (most suspicious)\n")
    by_name = {r["name"]: r for r in rows}

    def located(name: str) -> str:
        """Whether worst_phone starts within 100 ms of the planted error's reference phone."""
        if name not in where:
            return ""
        start = float(by_name[name]["worst_phone_start_s"])
        return "yes" if where[name][0] - 0.1 <= start <= where[name][1] + 0.1 else "no"

    print(f"{'file':<16}{'error':<13}" + "".join(f"{m:>27}" for m in METRICS) + f"{'worst phone there':>19}")
    for name, kind in sorted(planted.items(), key=lambda item: (KINDS.index(item[1]), item[0])):
        print(f"{name:<16}{kind:<13}" + "".join(f"{ranks[m][name]:>27}" for m in METRICS) + f"{located(name):>19}")
    print(f"\nplanted files among the lowest {bottom} of {len(rows)}:")
    print(f"{'error':<13}" + "".join(f"{m:>27}" for m in METRICS))
    for kind in KINDS + ("all",):
        files = [n for n, k in planted.items() if kind in (k, "all")]
        print(f"{kind:<13}" + "".join(f"{sum(ranks[m][n] <= bottom for n in files):>22} / {len(files):<2}"
                                      for m in METRICS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
