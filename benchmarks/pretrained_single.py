#!/usr/bin/env python
"""Single utterance from phone models trained elsewhere (issue 13's "shipped phone models").

    python scripts/make_corpus.py data/pre_corpus --num 80 --seed 23 --synths flite,festival
    python benchmarks/pretrained_single.py data/pre_corpus data/real_speech_out/peer [--mixtures 1,2]

1. The synthetic corpus's phone labels (flite / festival, lowercase CMU set) are mapped to
   the peer's ARPAbet (``real_speech.arpabet_label``, as the real-speech benchmark does) into
   data/pre_corpus_arpabet/.
2. ``train_labelled`` trains one-state phone models on it with the single-utterance front end
   (20 static MFCCs, per-file CMVN), one model file per mixture count.
3. Each real clip of ``benchmarks/real_speech.py`` is aligned with ``align_utterance(models=...)``
   (no adaptation: the models as trained), scored exactly as real_speech_variants.py does.

Seed 23 is neither the benchmark's corpus seed nor the one used for tests, so nothing here is
trained on the held-out synthetic benchmark.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "scripts"))

import real_speech as RS  # noqa: E402

from hmm_engine.alignment import align_utterance, read_dictionary  # noqa: E402
from hmm_engine.alignment.metrics import pool_comparisons  # noqa: E402
from hmm_engine.alignment.phone_models import PhoneModels  # noqa: E402
from hmm_engine.alignment.recipes import train_labelled  # noqa: E402
from hmm_engine.alignment.textgrids import read_textgrid, write_textgrid  # noqa: E402
from hmm_engine.alignment.utterance import SINGLE_UTTERANCE_FEATURES  # noqa: E402
from hmm_engine.alignment.inputs import compute_features  # noqa: E402
from hmm_engine.alignment.training import reestimate  # noqa: E402
from hmm_engine.alignment.transcripts import prepare_transcript  # noqa: E402
from hmm_engine.frontend.features import FeatureConfig  # noqa: E402
from hmm_engine.segments import Segment  # noqa: E402


def to_arpabet(src: Path, dst: Path) -> int:
    dst.mkdir(parents=True, exist_ok=True)
    n = 0
    for tg in sorted(src.glob("*.TextGrid")):
        phones = read_textgrid(tg, tier="phones")["phones"]
        mapped = [Segment(RS.arpabet_label(s.label), s.start, s.end) for s in phones]
        write_textgrid(dst / tg.name, {"phones": mapped}, mapped[-1].end)
        shutil.copy(tg.with_suffix(".wav"), dst / tg.with_suffix(".wav").name)
        n += 1
    return n


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("peer", type=Path)
    parser.add_argument("--mixtures", default="1")
    parser.add_argument("--states", type=int, default=1)
    parser.add_argument("--features", choices=("single", "corpus"), default="single",
                        help="single: 20 static MFCCs (the single-utterance front end); corpus: FeatureConfig()")
    parser.add_argument("--adapt", default="0", help="EM iterations on the clip from the trained models (list)")
    parser.add_argument("--priors", default="3")
    parser.add_argument("--durations", default=None, help="train_labelled's duration_type (e.g. gamma); default none")
    parser.add_argument("--corpus-adapt", action="store_true",
                        help="adapt by EM over all the clips together (corpus mode) instead of each clip alone")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "real_speech")
    args = parser.parse_args(argv)
    mapped = args.corpus.with_name(args.corpus.name + "_arpabet")
    print(f"{to_arpabet(args.corpus, mapped)} labelled files -> {mapped}", flush=True)
    clips = RS.load_clips(args.data, False, None, None)
    lexicon = read_dictionary(args.data / "lexicon.dict")
    peer = {}
    for c in clips:
        tg = read_textgrid(args.peer / f"{c.name}.TextGrid")
        peer[c.name] = (tg["phones"], tg.get("words"))
    energies = {}
    for c in clips:
        samples, rate = RS.sf.read(c.wav, dtype="float64")
        energies[c.name] = RS.frame_energy_db(samples, rate)
    print(f"{'variant':<24}{'<=20ms all':>11}{'near-sil':>9}{'edges':>8}{'ARCTIC':>8}{'wall s':>8}")
    for m in (int(v) for v in args.mixtures.split(",")):
        out = mapped.with_name(f"{mapped.name}_models_s{args.states}_m{m}_{args.features}_{args.durations}")
        config = SINGLE_UTTERANCE_FEATURES if args.features == "single" else FeatureConfig()
        train_labelled(mapped, out, states_per_phone=args.states, num_mixtures=m, feature_config=config,
                       duration_type=args.durations, device="cpu", show_progress=False, report=lambda line: None)
        for prior, adapt in ((float(p), int(a)) for p in args.priors.split(",") for a in args.adapt.split(",")):
            t0 = time.perf_counter()
            tiers = {}
            pooled_models = None
            if adapt and args.corpus_adapt:
                pooled_models = PhoneModels.load(out / "phone_models.pt")
                pooled_models.speech_prior = prior
                data = [(compute_features(c.wav, pooled_models.feature_config).values,
                         prepare_transcript(None, c.words, dictionary=lexicon)) for c in clips]
                reestimate(pooled_models, data, adapt)
            for c in clips:
                models = PhoneModels.load(out / "phone_models.pt")
                if pooled_models is not None:
                    models, adapt_here = pooled_models, 0
                else:
                    adapt_here = adapt
                models.speech_prior = prior
                if adapt_here:
                    transcript = prepare_transcript(None, c.words, dictionary=lexicon)
                    x = compute_features(c.wav, models.feature_config).values
                    reestimate(models, [(x, transcript)], adapt_here)
                r = align_utterance(c.wav, words=c.words, dictionary=lexicon, models=models)
                tiers[c.name] = (r.phones, r.words)
            name = f"{args.corpus.name} s{args.states} m{m} {args.features} {args.durations or ''} prior{prior:g} {'corpus-' if args.corpus_adapt else ''}adapt{adapt}"
            sc = RS.score_system(name, tiers, peer, clips, energies, time.perf_counter() - t0)
            pooled = pool_comparisons(sc.peer_cmp)
            arctic = pool_comparisons(sc.label_cmp) if sc.label_cmp else None
            print(f"{name:<24}{RS.within_all(pooled):>10.1f}%{sc.near_silence:>9}{sc.edge_misses:>5}/{sc.edges:<3}"
                  f"{(RS.within_all(arctic) if arctic else float('nan')):>7.1f}%{sc.seconds:>8.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
