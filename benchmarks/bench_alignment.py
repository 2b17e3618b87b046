#!/usr/bin/env python
"""Forced-alignment accuracy and speed against exact synthetic references.

    python benchmarks/bench_alignment.py [--corpus data/bench_alignment] [--num 150] [--seed 7]
        [--iterations 20] [--mixtures 4] [--states-per-phone 3] [--single-iterations 10]
        [--duration gamma] [--single-duration gamma] [--skip-single] [--skip-labelled]

``--duration`` / ``--single-duration`` give corpus / single-utterance mode explicit
(semi-Markov) state durations of that family instead of the HMM's geometric ones.

1. Generates (or reuses, when its manifest lists ``--num`` utterances) a corpus with
   ``scripts/make_corpus.py`` (espeak-ng / flite / festival, exact phone boundaries) in the
   git-ignored ``data/`` folder.
2. *Corpus mode*: trains shared phone models by flat-start embedded EM on the whole corpus
   with the reference phone sequences given (``name.phones.lab``), aligns every file
   (``hmm_engine.alignment.recipes.align_corpus``, what ``python -m hmm_engine align`` runs).
3. *Aligning with trained models*: reloads ``phone_models.pt`` and aligns every file again,
   end to end (read wav, features, Viterbi + confidences, write TextGrid), timed on its own.
4. *Single-utterance mode*: ``align_utterance`` on each file alone (it trains its own models
   on that utterance), phones given, with its defaults (front end ``SINGLE_UTTERANCE_FEATURES``
   on the ``--frame-shift-ms`` grid).
5. *Labelled training*: trains phone models inside the reference phone intervals of a
   *different* generated corpus (``--labelled-corpus``, default the 450-utterance tuning
   corpus of seed 2; ``hmm_engine.alignment.recipes.train_labelled``, what ``python -m
   hmm_engine train-labelled`` runs) and aligns the benchmark corpus with them
   (``align_corpus(models=...)``, ``align --models``). The benchmark corpus's references are
   still only read by the scoring step.
6. Scores every TextGrid against the reference with ``hmm_engine.alignment.metrics``
   (silence labels kept; boundaries between matched phones) and prints, per synthesizer and
   overall: % of boundaries within 10/20/25/50 ms, mean/median absolute error; and speeds in
   seconds of audio per wall-clock second.

Speeds are measured on this machine with one intra-op torch thread (faster for these small
ops on 2 cores; numba kernels are compiled/loaded before timing). Nothing is tuned on the
references: they are only read by the scoring step.

The pocketsphinx peer (if ``benchmarks/peer_pocketsphinx.py`` exists) aligns the same corpus
from words: ``python benchmarks/peer_pocketsphinx.py CORPUS OUT --score``.
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from dataclasses import replace  # noqa: E402

from hmm_engine.alignment import (  # noqa: E402
    SINGLE_UTTERANCE_FEATURES,
    align_features,
    align_utterance,
    compute_features,
    prepare_transcript,
    transcript_fit,
)
from hmm_engine.alignment import MIN_FRAMES_PER_GAUSSIAN, MODEL_FILE, align_corpus, train_labelled  # noqa: E402
from hmm_engine.alignment.metrics import boundary_classes, compare_tiers, pool_comparisons  # noqa: E402
from hmm_engine.alignment.phone_models import PhoneModels  # noqa: E402
from hmm_engine.alignment.textgrids import read_textgrid, write_textgrid  # noqa: E402
from hmm_engine.durations import DURATION_TYPES  # noqa: E402
from hmm_engine.errors import HMMStudioError  # noqa: E402
from hmm_engine.frontend.features import FeatureConfig  # noqa: E402


def ensure_corpus(folder: Path, num: int, seed: int) -> None:
    manifest = folder / "manifest.csv"
    if manifest.is_file():
        with open(manifest, newline="") as handle:
            rows = list(csv.DictReader(handle))
        if len(rows) == num and all((folder / f"{r['name']}.wav").is_file() for r in rows):
            print(f"reusing corpus {folder} ({num} utterances)")
            return
    print(f"generating {num} utterances into {folder} ...", flush=True)
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_corpus.py"), str(folder), "--num", str(num),
                    "--seed", str(seed)], check=True)


def score(corpus: Path, hyp_dir: Path, names: list[str]) -> dict[str, object]:
    """Pooled comparisons per synthesizer (name prefix) and overall."""
    groups: dict[str, list] = {}
    for name in names:
        ref = read_textgrid(corpus / f"{name}.TextGrid", tier="phones")["phones"]
        hyp = read_textgrid(hyp_dir / f"{name}.TextGrid", tier="phones")["phones"]
        groups.setdefault(name.split("_")[0], []).append(compare_tiers(ref, hyp))
    pooled = {k: pool_comparisons(v) for k, v in sorted(groups.items())}
    pooled["overall"] = pool_comparisons([c for v in groups.values() for c in v])
    return pooled


def systematic_errors(corpus: Path, hyp_dir: Path, names: list[str], top: int = 4) -> None:
    """Per synthesizer, the boundary classes ("into X" / "out of X") with the most misses over
    20 ms, with their signed mean error (hypothesis - reference): a large signed mean points at
    a consistent offset (a labelling convention or a model bias), not at noise
    (:func:`hmm_engine.alignment.metrics.boundary_classes`, ``evaluate --by-class``)."""
    print("\n  largest systematic boundary errors (misses > 20 ms; signed mean = hyp - ref):")
    for synth, pooled in score(corpus, hyp_dir, names).items():
        if synth != "overall":
            print(f"  {synth:<10}" + "; ".join(f"{c.name}: {c.misses}/{c.count} missed, {c.signed_mean_ms:+.0f} ms"
                                               for c in boundary_classes(pooled)[:top]))


def print_table(title: str, pooled: dict[str, object]) -> None:
    print(f"\n{title}")
    header = f"  {'set':<10}{'files':>6}{'bounds':>8}{'scored':>8}{'<=10ms':>8}{'<=20ms':>8}{'<=25ms':>8}" \
             f"{'<=50ms':>8}{'mean ms':>9}{'median':>8}{'mism':>6}"
    print(header)
    for key, c in pooled.items():
        print(f"  {key:<10}{c.num_files:>6}{c.num_ref_boundaries:>8}{c.num_scored_boundaries:>8}"
              f"{c.percent_within(10):>8.1f}{c.percent_within(20):>8.1f}{c.percent_within(25):>8.1f}"
              f"{c.percent_within(50):>8.1f}{c.mean_abs_error_ms:>9.1f}{c.median_abs_error_ms:>8.1f}"
              f"{c.mismatches:>6}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "data" / "bench_alignment")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "bench_alignment_out")
    parser.add_argument("--num", type=int, default=150)
    parser.add_argument("--seed", type=int, default=7, help="corpus seed (7: not used while tuning)")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--mixtures", type=int, default=4)
    parser.add_argument("--mixup-iterations", type=int, default=3)
    parser.add_argument("--min-frames-per-gaussian", type=float, default=MIN_FRAMES_PER_GAUSSIAN,
                        help="a state splits its mixture only while it keeps this many frames per Gaussian")
    parser.add_argument("--states-per-phone", type=int, default=3)
    parser.add_argument("--frame-shift-ms", type=float, default=10.0)
    parser.add_argument("--frame-length-ms", type=float, default=25.0, help="corpus-mode analysis window")
    parser.add_argument("--num-ceps", type=int, default=13, help="corpus-mode MFCCs (before deltas)")
    parser.add_argument("--delta-window", type=int, default=2)
    parser.add_argument("--preemphasis", type=float, default=0.97, help="corpus-mode front end pre-emphasis (0 disables)")
    parser.add_argument("--init", choices=("global", "uniform"), default="global", help="corpus flat start")
    parser.add_argument("--anneal", type=float, default=0.1, help="corpus annealing start scale (0 disables)")
    parser.add_argument("--context-min-count", type=int, default=None,
                        help="give (phone, neighbour) pairs seen this often their own boundary states")
    parser.add_argument("--duration", default=None, choices=tuple(DURATION_TYPES),
                        help="corpus mode: explicit (semi-Markov) state durations of this family")
    parser.add_argument("--single-duration", default=None,
                        choices=("hmm", *DURATION_TYPES),
                        help="single-utterance mode: 'hmm' (self-loops) or explicit phone durations of this "
                             "family (default: align_utterance's, gamma)")
    parser.add_argument("--class-prior", type=float, default=0.0, help="corpus mode: class_prior of the phone models")
    parser.add_argument("--acoustic-prior", type=float, default=1.0,
                        help="corpus mode: acoustic_prior (loudness / tilt by broad class) of the phone models")
    parser.add_argument("--single-iterations", type=int, default=None, help="default: align_utterance's")
    parser.add_argument("--single-num", type=int, default=None, help="single-utterance mode on the first N per synthesizer")
    parser.add_argument("--skip-single", action="store_true")
    parser.add_argument("--labelled-corpus", type=Path, default=ROOT / "data" / "align_bench450",
                        help="labelled corpus for the labelled-training rows (never the benchmark corpus)")
    parser.add_argument("--labelled-num", type=int, default=450)
    parser.add_argument("--labelled-seed", type=int, default=2, help="seed of the labelled corpus (not 7)")
    parser.add_argument("--skip-labelled", action="store_true")
    args = parser.parse_args(argv)
    if args.num < 100:
        print("note: the benchmark is meant for at least 100 utterances")
    torch.set_num_threads(1)
    ensure_corpus(args.corpus, args.num, args.seed)
    config = FeatureConfig(frame_shift_ms=args.frame_shift_ms, frame_length_ms=args.frame_length_ms,
                           num_ceps=args.num_ceps, delta_window=args.delta_window, preemphasis=args.preemphasis)

    # ---------------------------------------------------------------- corpus mode
    corpus_out = args.out / "corpus"
    lines: list[str] = []
    t0 = time.perf_counter()
    report = align_corpus(
        args.corpus, corpus_out, phones=True, transcript_suffix=".phones.lab", states_per_phone=args.states_per_phone,
        num_mixtures=args.mixtures, iterations=args.iterations, mixup_iterations=args.mixup_iterations,
        feature_config=config, device="cpu", show_progress=True, report=lines.append, init=args.init,
        anneal=args.anneal or None, context_min_count=args.context_min_count, duration_type=args.duration,
        class_prior=args.class_prior, acoustic_prior=args.acoustic_prior,
        min_frames_per_gaussian=args.min_frames_per_gaussian,
    )
    corpus_wall = time.perf_counter() - t0
    for line in lines:
        print(line)
    audio = report.audio_seconds

    # ------------------------------------------- aligning again with the trained models (end to end)
    models = PhoneModels.load(corpus_out / MODEL_FILE)
    realign_out = args.out / "realign"
    realign_out.mkdir(parents=True, exist_ok=True)
    names = sorted(report.aligned)
    jobs = [(n, args.corpus / f"{n}.wav", (args.corpus / f"{n}.phones.lab").read_text()) for n in names]
    # Warm-up: load the compiled kernels before timing.
    warm = prepare_transcript(phones=jobs[0][2])
    align_features(compute_features(jobs[0][1], models.feature_config), warm, models)
    t0 = time.perf_counter()
    realign_audio = fit_wall = 0.0
    for name, wav, phones in jobs:
        features = compute_features(wav, models.feature_config)
        result = align_features(features, prepare_transcript(phones=phones), models)
        write_textgrid(realign_out / f"{name}.TextGrid", result.tiers(), features.duration)
        realign_audio += features.duration
        t1 = time.perf_counter()
        transcript_fit(models, features, result)  # what align's alignment_analysis.csv adds per file
        fit_wall += time.perf_counter() - t1
    realign_wall = time.perf_counter() - t0 - fit_wall

    print(f"\ncorpus: {args.corpus} ({report.num_train_files} files, {audio:.1f} s of audio); "
          f"models: {args.states_per_phone} states/phone, {args.mixtures} Gaussians/state (diag), "
          f"{args.iterations} EM iterations ({args.init} flat start, anneal {args.anneal or None}) + "
          f"{args.mixup_iterations} after each split; context states: "
          f"{'pairs seen >= %d times' % args.context_min_count if args.context_min_count else 'none'}; "
          f"durations: {args.duration + ' (semi-Markov)' if args.duration else 'geometric (HMM)'}; "
          f"acoustic prior {args.acoustic_prior:g}, class pull {args.class_prior:g}; features "
          f"{args.num_ceps} MFCC+D+DD, CMVN, {args.frame_length_ms:g} ms window, {args.frame_shift_ms:g} ms shift, "
          f"delta window {args.delta_window}, pre-emphasis {args.preemphasis:g}")
    print_table("CORPUS MODE (shared models trained on the corpus, phones given)", score(args.corpus, corpus_out, names))
    systematic_errors(args.corpus, corpus_out, names)
    t = report.timings
    print(f"\n  training (flat start + EM, {len(report.history)} iterations): {t['training']:.1f} s wall "
          f"= {audio / t['training']:.0f}x real time; feature extraction {t['loading']:.1f} s")
    print(f"  align_corpus alignment phase (features cached): {t['alignment']:.2f} s = "
          f"{audio / t['alignment']:.0f}x real time")
    print(f"  aligning with trained models end to end (read wav + features + Viterbi + confidences + TextGrid): "
          f"{realign_wall:.2f} s for {realign_audio:.1f} s = {realign_audio / realign_wall:.0f}x real time; "
          f"with the alignment analysis (transcript fit, on by default in align): {realign_wall + fit_wall:.2f} s = "
          f"{realign_audio / (realign_wall + fit_wall):.0f}x real time")
    print(f"  whole corpus run: {corpus_wall:.1f} s")

    # ---------------------------------------------------------------- labelled training
    if not args.skip_labelled:
        if args.labelled_corpus.resolve() == args.corpus.resolve() or args.labelled_seed == args.seed:
            parser.error("the labelled corpus must be another corpus (another seed) than the benchmark corpus")
        ensure_corpus(args.labelled_corpus, args.labelled_num, args.labelled_seed)
        lines = []
        labelled = train_labelled(
            args.labelled_corpus, args.out / "labelled_models", states_per_phone=args.states_per_phone,
            num_mixtures=args.mixtures, mixup_iterations=args.mixup_iterations, feature_config=config, device="cpu",
            duration_type=args.duration, acoustic_prior=args.acoustic_prior, show_progress=True,
            report=lines.append, min_frames_per_gaussian=args.min_frames_per_gaussian)
        labelled_out = args.out / "labelled"
        aligned_report = align_corpus(
            args.corpus, labelled_out, phones=True, transcript_suffix=".phones.lab",
            models=PhoneModels.load(labelled.models_path), device="cpu", show_progress=False, report=lines.append)
        for line in lines:
            print(line)
        print_table(f"LABELLED TRAINING (models trained inside the reference phone intervals of "
                    f"{args.labelled_corpus.name}: {labelled.num_train_files} other utterances; then the benchmark "
                    f"corpus aligned with them, {len(aligned_report.aligned)} of {len(names)} files)",
                    score(args.corpus, labelled_out, sorted(aligned_report.aligned)))
        systematic_errors(args.corpus, labelled_out, sorted(aligned_report.aligned))
        lt, at = labelled.timings, aligned_report.timings
        print(f"\n  labelled training: {lt['training']:.1f} s wall for {labelled.audio_seconds:.1f} s of labelled "
              f"phones; alignment phase: {at['alignment']:.2f} s = "
              f"{aligned_report.audio_seconds / at['alignment']:.0f}x real time")

    # ---------------------------------------------------------------- single-utterance mode
    if not args.skip_single:
        single_out = args.out / "single"
        single_out.mkdir(parents=True, exist_ok=True)
        chosen = names
        if args.single_num is not None:
            chosen = [n for s in sorted({n.split("_")[0] for n in names})
                      for n in [m for m in names if m.startswith(s + "_")][: args.single_num]]
        # align_utterance's own front end (20 static MFCCs), on --frame-shift-ms's grid.
        single_config = replace(SINGLE_UTTERANCE_FEATURES, frame_shift_ms=args.frame_shift_ms)
        failures = []
        t0 = time.perf_counter()
        single_audio = 0.0
        done = []
        for name in chosen:
            try:
                extra = {} if args.single_iterations is None else {"iterations": args.single_iterations}
                if args.single_duration:
                    extra["duration_type"] = None if args.single_duration == "hmm" else args.single_duration
                result = align_utterance(args.corpus / f"{name}.wav",
                                         phones=(args.corpus / f"{name}.phones.lab").read_text(),
                                         feature_config=single_config, **extra)
            except HMMStudioError as exc:
                failures.append(f"{name}: {exc}")
                continue
            write_textgrid(single_out / f"{name}.TextGrid", result.tiers(), result.duration)
            single_audio += result.duration
            done.append(name)
        single_wall = time.perf_counter() - t0
        for line in failures:
            print(f"report: single: {line}")
        print_table("SINGLE-UTTERANCE MODE (each utterance trains its own models, phones given; "
                    f"align_utterance defaults: {single_config.num_ceps} static MFCCs, "
                    f"{args.frame_shift_ms:g} ms)",
                    score(args.corpus, single_out, done))
        print(f"\n  single-utterance train + align: {single_wall:.1f} s for {single_audio:.1f} s = "
              f"{single_audio / single_wall:.0f}x real time")
    peer = ROOT / "benchmarks" / "peer_pocketsphinx.py"
    if peer.is_file():
        print(f"\npeer: python {peer.relative_to(ROOT)} {args.corpus} {args.out / 'pocketsphinx'} --score")
    return 0


if __name__ == "__main__":
    sys.exit(main())
