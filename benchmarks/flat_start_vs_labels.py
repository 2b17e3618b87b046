#!/usr/bin/env python
"""Why flat-start corpus training stops short of the references' boundaries: the likelihood
does not prefer the references' labelling convention.

    python benchmarks/flat_start_vs_labels.py [--corpus data/align_bench] [--num 150] [--seed 1]

On one corpus (by default the 150-utterance *tuning* corpus, seed 1):

1. flat-start corpus training and alignment, as ``bench_alignment.py`` runs it;
2. phone models trained inside fixed phone intervals (``train_labelled``), from two
   segmentations of the same audio: the references' and the flat-start alignment's own;
3. from each, unsupervised embedded EM on the whole utterances (``reestimate``), printing the
   log-likelihood per frame and the % of boundaries within 20 ms as it goes.

If EM from the references' segmentation climbs to the same likelihood as EM from our own
segmentation while keeping a far better accuracy, the two conventions are equally good
explanations of the audio, and no amount of unlabelled training can choose between them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from bench_alignment import ensure_corpus, score  # noqa: E402
from hmm_engine.alignment import align_features, reestimate, utterance_posteriors  # noqa: E402
from hmm_engine.alignment import align_corpus, find_corpus_files, load_corpus, train_labelled  # noqa: E402
from hmm_engine.alignment.phone_models import PhoneModels  # noqa: E402
from hmm_engine.alignment.textgrids import write_textgrid  # noqa: E402

CHECKPOINTS = (0, 2, 6, 12)


def accuracy(models: PhoneModels, loaded, corpus: Path, out: Path) -> float:
    out.mkdir(parents=True, exist_ok=True)
    for item, features, transcript in loaded:
        write_textgrid(out / f"{item.name}.TextGrid", align_features(features, transcript, models, False).tiers(),
                       features.duration)
    return score(corpus, out, [item.name for item, _, _ in loaded])["overall"].percent_within(20)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "data" / "align_bench")
    parser.add_argument("--num", type=int, default=150)
    parser.add_argument("--seed", type=int, default=1, help="corpus seed (1: a tuning corpus)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    ensure_corpus(args.corpus, args.num, args.seed)
    quiet = dict(show_progress=False, report=lambda line: None)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        flat = align_corpus(args.corpus, work / "flat", phones=True, transcript_suffix=".phones.lab", num_mixtures=4,
                            iterations=20, init="global", anneal=0.1, **quiet)
        names = sorted(flat.aligned)
        print(f"corpus {args.corpus} ({len(names)} utterances)")
        print(f"flat-start corpus training: {flat.history[-1]:.3f} log-likelihood per frame (last iteration), "
              f"{score(args.corpus, work / 'flat', names)['overall'].percent_within(20):.1f}% within 20 ms\n")

        files, _ = find_corpus_files(args.corpus, ".phones.lab")
        print(f"{'models trained inside':<34}{'EM iterations':>14}{'log-lik/frame':>15}{'<=20 ms':>9}")
        for title, grids in (("the references' intervals", args.corpus), ("the flat-start alignment's", work / "flat")):
            labelled = work / f"labelled_{len(title)}"
            labelled.mkdir()
            for name in names:
                (labelled / f"{name}.wav").symlink_to((args.corpus / f"{name}.wav").resolve())
                (labelled / f"{name}.TextGrid").symlink_to((grids / f"{name}.TextGrid").resolve())
            models = PhoneModels.load(train_labelled(labelled, labelled / "models", **quiet).models_path)
            loaded, _ = load_corpus(files, True, models.feature_config)
            data = [(f.values, t) for _, f, t in loaded]
            done = 0
            for checkpoint in CHECKPOINTS:
                reestimate(models, data, checkpoint - done)
                done = checkpoint
                within = accuracy(models, loaded, args.corpus, work / f"hyp_{len(title)}_{checkpoint}")
                print(f"{title:<34}{checkpoint:>14}{log_likelihood(models, data):>15.3f}{within:>8.1f}%")
    return 0


def log_likelihood(models: PhoneModels, data) -> float:
    """Log-likelihood per frame of the models as they are (an E-step without its M-step)."""
    total = frames = 0.0
    for x, transcript in data:
        _, stats = utterance_posteriors(models, x, transcript)
        total += float(stats["log_likelihood"])
        frames += float(stats["num_frames"])
    return total / frames


if __name__ == "__main__":
    sys.exit(main())
