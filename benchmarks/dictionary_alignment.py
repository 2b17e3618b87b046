#!/usr/bin/env python
"""Aligning from words with a pronunciation dictionary, against aligning from the true phones.

    python benchmarks/dictionary_alignment.py [--corpus data/bench_alignment] [--num 150] [--seed 7]

The flite and festival utterances of a generated corpus (espeak-ng's use another phone set)
are aligned in corpus mode three ways, each training its own models by flat start:

1. **phones given**: the references' phone sequences (``--phones``), as ``bench_alignment.py``;
2. **words + dictionary**: the word transcripts with festival's CMU lexicon
   (``/usr/share/festival/dicts/cmu/cmudict-0.4.out``, Debian ``festlex-cmu``, converted to
   the CMUdict text format; the lexicon both synthesizers read words with, in their phone
   set), every word with several pronunciations choosing the best-aligning one
   (``align --dictionary``);
3. **words + first pronunciation**: the same dictionary cut to each word's first entry;
4. **words + dictionary + reduced forms**: the lexicon plus the two reduced pronunciations
   CMUdict itself lists and festival's lexicon leaves to post-lexical rules, ``TO(2) t ax``
   and ``THE(2) dh iy`` (most of the lexicon's differences from what the synthesizers said:
   "to" reduced 60 times and "the" before a vowel 8 times in the 450-utterance tuning corpus),
   to see how often the choice finds the spoken form when the dictionary has it.

A file with a word the lexicon lacks (the synthesizers fall back to letter-to-sound rules)
is skipped by all three so they score the same files. Printed per run: files aligned, files
whose aligned phones equal the reference's, phone mismatches (substitutions + insertions +
deletions against the reference), % of boundaries within 20 ms (matched phones only), and,
for the dictionary runs, how many words with several pronunciations took another than the
first.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from bench_alignment import ensure_corpus  # noqa: E402
from hmm_engine.alignment import align_corpus  # noqa: E402
from hmm_engine.alignment.metrics import compare_tiers, pool_comparisons  # noqa: E402
from hmm_engine.alignment.textgrids import read_textgrid  # noqa: E402
from hmm_engine.alignment.transcripts import dictionary_to_words, read_dictionary  # noqa: E402
from hmm_engine.errors import TranscriptError  # noqa: E402

FESTIVAL_LEXICON = Path("/usr/share/festival/dicts/cmu/cmudict-0.4.out")
# ("word" pos (((ph ph) stress) ((ph) stress)))
_ENTRY_RE = re.compile(r'^\("((?:[^"\\]|\\.)+)" \S+ (\(.*\))\)$')


def festival_to_cmudict(lexicon: Path, out: Path) -> int:
    """Write festival's compiled lexicon as ``WORD ph ph ...`` lines (entries of one word in the
    lexicon's order, so the first stays the default); returns the number of entries."""
    lines = []
    for line in lexicon.read_text(encoding="latin-1").splitlines():
        match = _ENTRY_RE.match(line)
        if match:
            phones = [t for t in re.findall(r"[^\s()]+", match.group(2)) if not t.isdigit()]
            if phones:
                lines.append(f"{match.group(1)} {' '.join(phones)}")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "data" / "bench_alignment")
    parser.add_argument("--num", type=int, default=150)
    parser.add_argument("--seed", type=int, default=7, help="corpus seed (7: the held-out one)")
    args = parser.parse_args(argv)
    if not FESTIVAL_LEXICON.is_file():
        print(f"needs {FESTIVAL_LEXICON} (Debian festlex-cmu; scripts/install_system_deps.sh installs it)")
        return 1
    torch.set_num_threads(1)
    ensure_corpus(args.corpus, args.num, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        full, first = work / "cmu.dict", work / "cmu_first.dict"
        entries = festival_to_cmudict(FESTIVAL_LEXICON, full)
        lexicon = read_dictionary(full)
        first.write_text("".join(f"{w} {' '.join(p[0])}\n" for w, p in lexicon.items()), encoding="utf-8")
        reduced = work / "cmu_reduced.dict"
        reduced.write_text(full.read_text(encoding="utf-8") + "to t ax\nthe dh iy\n", encoding="utf-8")
        print(f"lexicon: {entries} entries, {len(lexicon)} words, "
              f"{sum(len(p) > 1 for p in lexicon.values())} with several pronunciations")

        corpus = work / "corpus"
        corpus.mkdir()
        names, oov = [], 0
        for wav in sorted(args.corpus.glob("*.wav")):
            if wav.stem.split("_")[0] not in ("flite", "festival"):
                continue
            try:
                dictionary_to_words((args.corpus / f"{wav.stem}.lab").read_text(encoding="utf-8"), lexicon)
            except TranscriptError:
                oov += 1
                continue
            names.append(wav.stem)
            (corpus / wav.name).symlink_to(wav.resolve())
            (corpus / f"{wav.stem}.lab").symlink_to((args.corpus / f"{wav.stem}.lab").resolve())
            (corpus / f"{wav.stem}.phones.lab").symlink_to((args.corpus / f"{wav.stem}.phones.lab").resolve())
        print(f"corpus {args.corpus}: {len(names)} flite/festival utterances ({oov} left out: a word not in the "
              f"lexicon)\n")
        print(f"{'run':<32}{'files':>6}{'same phones':>13}{'mismatches':>12}{'<=20 ms':>9}{'variants':>14}{'s':>6}")
        quiet = dict(show_progress=False, report=lambda line: None)
        runs = [("phones given", dict(phones=True, transcript_suffix=".phones.lab")),
                ("words + dictionary", dict(dictionary=full)),
                ("words + first pronunciation", dict(dictionary=first)),
                ("words + dictionary + reduced", dict(dictionary=reduced))]
        for title, options in runs:
            out = work / title.replace(" ", "_")
            t0 = time.perf_counter()
            report = align_corpus(corpus, out, device="cpu", **options, **quiet)
            seconds = time.perf_counter() - t0
            comparisons = []
            same = 0
            for name in report.aligned:
                ref = read_textgrid(args.corpus / f"{name}.TextGrid", tier="phones")["phones"]
                hyp = read_textgrid(out / f"{name}.TextGrid", tier="phones")["phones"]
                comparisons.append(compare_tiers(ref, hyp))
                same += comparisons[-1].mismatches == 0
            pooled = pool_comparisons(comparisons)
            variants = f"{report.pronunciations_changed}/{report.words_with_variants}" \
                if report.words_with_variants else ""
            print(f"{title:<32}{len(report.aligned):>6}{same:>13}{pooled.mismatches:>12}"
                  f"{pooled.percent_within(20):>8.1f}%{variants:>14}{seconds:>6.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
