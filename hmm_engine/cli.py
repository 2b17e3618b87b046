"""Command-line interface: ``python -m hmm_engine <subcommand> ...``.

Each subcommand is one ``add_<name>_parser`` function that registers its arguments and one
``run_<name>(args) -> int`` function that does the work and returns the exit code.

``evaluate REF_DIR HYP_DIR``: compares every ``name.TextGrid`` in HYP_DIR with the same name in
REF_DIR (phone boundary errors, frame accuracy, sequence mismatches), prints per-file
problems as report lines and a corpus summary, and optionally writes a per-file CSV. It
exits with 1 only when no file pair could be evaluated.

``align CORPUS_DIR OUT_DIR``: flat-start corpus training and alignment, or alignment with
given models (``--models``); ``train-labelled CORPUS_DIR OUT_DIR``: models trained inside
labelled phone intervals (see :mod:`hmm_engine.alignment.recipes`).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path
from typing import Sequence, TextIO

from hmm_engine.alignment.layout import EXPORT_SUFFIXES, files_by_name
from hmm_engine.alignment.metrics import (
    DEFAULT_THRESHOLDS_MS,
    AlignmentComparison,
    boundary_classes,
    compare_tiers,
    pool_comparisons,
)
from hmm_engine.alignment.textgrids import read_textgrid
from hmm_engine.durations import DURATION_TYPES
from hmm_engine.errors import HMMStudioError, TranscriptError


def _format(value: float | int) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def add_evaluate_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="compare hypothesis TextGrids with reference TextGrids",
        description="Compare HYP_DIR/name.TextGrid with REF_DIR/name.TextGrid for every name in both "
                    "(subfolders included: HYP_DIR/speaker/name.TextGrid pairs with REF_DIR/speaker/name.TextGrid).",
    )
    parser.add_argument("ref_dir", type=Path, help="folder of reference TextGrids")
    parser.add_argument("hyp_dir", type=Path, help="folder of hypothesis TextGrids (same file names)")
    parser.add_argument("--tier", default="phones", help="interval tier to compare (default: phones)")
    parser.add_argument("--csv", type=Path, default=None, help="write one row per file (and a TOTAL row) here")
    silence = parser.add_mutually_exclusive_group()
    silence.add_argument("--ignore-silence", action="store_true",
                         help="drop silence labels (sil, sp, pau, _, empty) before comparing")
    silence.add_argument("--merge-silence", action="store_true",
                         help="treat all silence labels and gaps as one 'sil' label")
    parser.add_argument("--frame-shift-ms", type=float, default=10.0, help="frame size for frame accuracy")
    parser.add_argument("--by-class", type=int, default=0, metavar="N",
                        help="also list the N boundary classes ('into X' / 'out of X') with the most misses over "
                             "20 ms, with their signed mean error (a consistent offset is a convention or a bias)")
    parser.add_argument("--class-csv", type=Path, default=None,
                        help="write every boundary class (count, within 20 ms, signed and absolute mean ms) here")
    parser.set_defaults(run=run_evaluate)


def run_evaluate(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Evaluate every matched TextGrid pair; returns 0, or 1 when nothing could be evaluated."""
    out = out if out is not None else sys.stdout  # looked up now so redirection works
    for label, folder in (("reference", args.ref_dir), ("hypothesis", args.hyp_dir)):
        if not folder.is_dir():
            print(f"error: {label} folder '{folder}' does not exist or is not a folder", file=out)
            return 1
    # Speaker subfolders pair up by relative path; one side inside the other is not searched twice.
    refs = {name: paths[0] for name, paths in files_by_name(args.ref_dir, (".textgrid",), args.hyp_dir).items()}
    hyps = {name: paths[0] for name, paths in files_by_name(args.hyp_dir, (".textgrid",), args.ref_dir).items()}
    silence = "ignore" if args.ignore_silence else "merge" if args.merge_silence else "keep"
    if not args.frame_shift_ms > 0:
        print(f"error: --frame-shift-ms must be positive, got {args.frame_shift_ms}", file=out)
        return 1

    problems: list[str] = []
    for name in sorted(set(refs) - set(hyps)):
        problems.append(f"{name}: no hypothesis TextGrid in '{args.hyp_dir}'")
    for name in sorted(set(hyps) - set(refs)):
        problems.append(f"{name}: no reference TextGrid in '{args.ref_dir}'")

    results: list[tuple[str, AlignmentComparison]] = []
    for name in sorted(set(refs) & set(hyps)):
        try:
            reference = read_textgrid(refs[name], tier=args.tier)[args.tier]
            hypothesis = read_textgrid(hyps[name], tier=args.tier)[args.tier]
            result = compare_tiers(reference, hypothesis, silence=silence, frame_shift=args.frame_shift_ms / 1000)
        except HMMStudioError as exc:
            problems.append(f"{name}: skipped: {exc}")
            continue
        results.append((name, result))

    for line in problems:
        print(f"report: {line}", file=out)
    if not results:
        print(f"error: no file could be evaluated ({len(refs)} reference, {len(hyps)} hypothesis TextGrids)",
              file=out)
        return 1

    total = pool_comparisons([r for _, r in results])
    summary = total.summary()
    print(f"\nEvaluated {len(results)} file(s), tier {args.tier!r}, silence: {silence}", file=out)
    width = max(len(key) for key in summary)
    for key, value in summary.items():
        print(f"  {key:<{width}}  {_format(value)}", file=out)

    classes = boundary_classes(total)
    if args.by_class > 0:
        print("\nBoundary classes with the most misses over 20 ms (signed mean = hypothesis - reference):", file=out)
        for c in classes[:args.by_class]:
            print(f"  {c.name:<16} {c.misses:>5} of {c.count:<5} missed  signed mean {c.signed_mean_ms:+7.1f} ms  "
                  f"mean |error| {c.mean_abs_ms:6.1f} ms", file=out)
    tables = []
    if args.csv is not None:
        tables.append((args.csv, "per-file table", ["file", *summary.keys()],
                       [[name, *result.summary().values()] for name, result in results + [("TOTAL", total)]]))
    if args.class_csv is not None:
        tables.append((args.class_csv, "boundary classes", ["class", "boundaries", "within_20ms", "signed_mean_ms",
                                                            "mean_abs_ms"],
                       [[c.name, c.count, c.within, f"{c.signed_mean_ms:.3f}", f"{c.mean_abs_ms:.3f}"]
                        for c in classes]))
    for path, what, header, rows in tables:
        try:
            with open(path, "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(header)
                writer.writerows(rows)
        except OSError as exc:
            print(f"report: could not write CSV '{path}': {exc}", file=out)
        else:
            print(f"\n{what} written to {path}", file=out)
    return 0


def add_align_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "align",
        help="train phone models on a corpus (flat-start EM) and force-align every file",
        description="Align CORPUS_DIR/name.wav with CORPUS_DIR/name.lab (MFA layout: .wav/.flac/.ogg/.mp3, directly "
                    "in CORPUS_DIR or in one subfolder per speaker); write OUT_DIR/name.TextGrid (same subfolders) "
                    "and OUT_DIR/phone_models.pt. Under torchrun, EM statistics are summed over processes.",
    )
    parser.add_argument("corpus_dir", type=Path, help="folder of name.wav + name.lab (or speaker subfolders of them)")
    parser.add_argument("out_dir", type=Path, help="output folder for TextGrids and phone_models.pt")
    parser.add_argument("--phones", action="store_true", help="transcripts hold space-separated phones, not words")
    parser.add_argument("--transcript-suffix", default=".lab",
                        help="transcript file suffix (default .lab; e.g. .phones.lab with --phones)")
    _add_training_options(parser, iterations=20)
    parser.add_argument("--dictionary", type=Path, default=None,
                        help="pronunciation dictionary for word transcripts (CMUdict / MFA format: WORD PH1 PH2 ...) "
                             "instead of espeak-ng; words with several pronunciations get the best-aligning one")
    parser.add_argument("--pronunciation-rounds", type=int, default=3,
                        help="with --dictionary: rounds of choosing pronunciations and re-estimating the models")
    parser.add_argument("--no-analysis", action="store_true",
                        help="skip OUT_DIR/alignment_analysis.csv (each file's transcript fit against a free phone "
                             "loop, the worst first: where to look for wrong transcripts)")
    parser.add_argument("--format", nargs="+", choices=(*EXPORT_SUFFIXES, "durations"), default=["textgrid"],
                        help="what each file gets in OUT_DIR: name.TextGrid, name.csv and/or name.json (CSV and "
                             "JSON keep each phone's confidence; default: textgrid); 'durations': per-phone mel "
                             "frame counts for TTS training (name.durations.npy and one line per file in "
                             "durations.tsv, see --sample-rate / --hop-length / --win-length / --no-center)")
    parser.add_argument("--context-min-count", type=int, default=None,
                        help="give (phone, neighbour) pairs seen this often their own boundary states")
    parser.add_argument("--models", type=Path, default=None,
                        help="align with these trained models (a phone_models.pt, e.g. from train-labelled, or "
                             "'shipped': the package's phone models, with a CMUdict --dictionary) instead "
                             "of training; the model, training and front-end options are then ignored")
    parser.add_argument("--adapt-iterations", type=int, default=0,
                        help="with --models: MAP-adapt the models' means to this corpus for this many EM "
                             "iterations before aligning, writing OUT_DIR/phone_models.pt (default 0: as given; "
                             "no gain on the 13 real clips, see docs/real-recordings.md)")
    parser.add_argument("--adapt-tau", type=float, default=20.0,
                        help="MAP prior weight, in frames, of the given means (default 20)")
    _add_long_and_tts_options(parser)
    parser.add_argument("--speech-prior", type=float, default=None,
                        help="log-score a speech phone pays per frame of a long stretch of the file's own noise "
                             "floor (default 0: off; 5 helps real recordings, see docs/real-recordings.md)")
    parser.set_defaults(run=run_align)


def _add_long_and_tts_options(parser: argparse.ArgumentParser) -> None:
    """Options of long recordings, TTS durations and the confidence tiers (``align``)."""
    tts = parser.add_argument_group("TTS durations (--format durations; see docs/tts.md)")
    tts.add_argument("--sample-rate", type=int, default=22050, help="sample rate of the mel spectrograms (Hz)")
    tts.add_argument("--hop-length", type=int, default=256, help="mel hop length (samples)")
    tts.add_argument("--win-length", type=int, default=1024, help="STFT frame length n_fft (samples)")
    tts.add_argument("--no-center", action="store_true",
                     help="frames start at i*hop (torch.stft center=False: 1+(n-win)//hop frames) instead of being "
                          "centred on it (center=True: 1+n//hop frames)")
    tts.add_argument("--trim-silence", action="store_true",
                     help="drop leading/trailing silence from the durations (the kept span is in durations.tsv)")
    tts.add_argument("--min-phone-frames", type=int, default=0, help="give every phone at least this many frames")
    parser.add_argument("--confidence-tier", action="store_true",
                        help="add tiers phone_confidence, word_confidence and check (implausible segments) to "
                             "each TextGrid")
    long = parser.add_argument_group("long recordings (see docs/long-recordings.md)")
    long.add_argument("--long-seconds", type=float, default=60.0,
                      help="files longer than this are aligned in pieces between anchors and stitched (default 60)")
    long.add_argument("--max-train-minutes", type=float, default=20.0,
                      help="with long files: train on at most this many minutes of pieces and files (0: all)")
    long.add_argument("--window-seconds", type=float, default=20.0, help="audio per anchor-finding window")


def _add_training_options(parser: argparse.ArgumentParser, iterations: int) -> None:
    """Model, training, front-end and device options shared by ``align`` and ``train-labelled``."""
    parser.add_argument("--states-per-phone", type=int, default=3, help="left-to-right states per phone, 1-5")
    parser.add_argument("--mixtures", type=int, default=4, help="Gaussians per state (split 1->2->4... up to M)")
    parser.add_argument("--iterations", type=int, default=iterations, help="EM iterations with single Gaussians")
    parser.add_argument("--mixup-iterations", type=int, default=3, help="EM iterations after each mixture split")
    parser.add_argument("--min-frames-per-gaussian", type=float, default=None,
                        help="a state splits its mixture only while it keeps this many frames per Gaussian "
                             "(default: hmm_engine.alignment.recipes.MIN_FRAMES_PER_GAUSSIAN, 50; 0: every state "
                             "gets --mixtures)")
    parser.add_argument("--durations", choices=("hmm", *DURATION_TYPES),
                        default="hmm", help="state durations: 'hmm' (geometric, self-loops) or an explicit "
                                            "(semi-Markov) family trained after the HMM")
    parser.add_argument("--duration-iterations", type=int, default=4,
                        help="semi-Markov EM iterations with explicit durations")
    parser.add_argument("--acoustic-prior", type=float, default=1.0,
                        help="scale of the loudness / spectral-tilt prior by broad phone class (0: off)")
    parser.add_argument("--frame-shift-ms", type=float, default=10.0, help="feature frame shift")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def add_train_labelled_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train-labelled",
        help="train phone models on labelled phone boundaries (name.wav + name.TextGrid)",
        description="Train phone models inside the labelled phone intervals of CORPUS_DIR/name.TextGrid (one model "
                    "per label; silence labels and empty intervals are silence) and write OUT_DIR/phone_models.pt, "
                    "for 'align --models'. The models then follow the labels' boundary conventions, which flat-start "
                    "training cannot learn. Under torchrun, statistics are summed over processes.",
    )
    parser.add_argument("corpus_dir", type=Path,
                        help="folder of name.wav + name.TextGrid (or speaker subfolders of them)")
    parser.add_argument("out_dir", type=Path, help="output folder for phone_models.pt")
    parser.add_argument("--tier", default="phones", help="interval tier holding the phones (default: phones)")
    _add_training_options(parser, iterations=10)
    parser.set_defaults(run=run_train_labelled)


def _mixture_options(args: argparse.Namespace) -> dict:
    """``min_frames_per_gaussian`` when given on the command line (else the library default)."""
    value = args.min_frames_per_gaussian
    return {} if value is None else {"min_frames_per_gaussian": value}


def _report_to(out: TextIO):
    """Report lines are printed (and flushed) as they happen, so a later failure keeps them."""
    def report(line: str) -> None:
        print(line, file=out, flush=True)
    return report


def check_writable(folder: Path) -> str | None:
    """None when ``folder`` exists (or can be made) and a file can be written in it; else the
    one-line reason. Checked before training, which can take hours."""
    import os
    import tempfile

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return f"cannot write to the output folder '{folder}': {exc.strerror or exc}"
    return None


def _write_error(exc: OSError, out_dir: Path) -> str:
    """One line naming the path an I/O error happened on (a write under ``out_dir``, else a read)."""
    path = exc.filename2 or exc.filename  # a failed rename names its destination second
    if path is None:
        return f"error: input/output failed under '{out_dir}': {exc.strerror or exc}"
    try:
        inside = Path(path).resolve().is_relative_to(Path(out_dir).resolve())
    except (OSError, ValueError):
        inside = False
    return f"error: could not {'write' if inside else 'read'} '{path}': {exc.strerror or exc}"


def _start_distributed(device: str) -> bool:
    """Initialise torch.distributed (gloo) when launched by torchrun; True if this call did."""
    import os

    import torch

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        # gloo even with CUDA: the summed EM statistics are small CPU tensors.
        torch.distributed.init_process_group(backend="gloo")
        if device == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        return True
    return False


def run_train_labelled(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Train on labelled boundaries; returns 0, or 1 when nothing could be trained on or the options are invalid."""
    import torch

    from hmm_engine.alignment import train_labelled
    from hmm_engine.frontend.features import FeatureConfig

    out = out if out is not None else sys.stdout
    problem = check_writable(args.out_dir)
    if problem is not None:
        print(f"error: {problem}", file=out)
        return 1
    started_group = _start_distributed(args.device)
    try:
        report = train_labelled(
            args.corpus_dir, args.out_dir, tier=args.tier, states_per_phone=args.states_per_phone,
            num_mixtures=args.mixtures, iterations=args.iterations, mixup_iterations=args.mixup_iterations,
            feature_config=FeatureConfig(frame_shift_ms=args.frame_shift_ms), device=args.device,
            show_progress=not args.no_progress, report=_report_to(out),
            duration_type=None if args.durations == "hmm" else args.durations,
            duration_iterations=args.duration_iterations, acoustic_prior=args.acoustic_prior,
            **_mixture_options(args),
        )
    except HMMStudioError as exc:
        print(f"error: {exc}", file=out)
        return 1
    except OSError as exc:
        print(_write_error(exc, args.out_dir), file=out)
        return 1
    finally:
        if started_group:
            torch.distributed.destroy_process_group()
    if report.models_path is not None:
        print(f"trained on {report.num_train_files} labelled file(s), {report.audio_seconds:.1f} s of labelled "
              f"phones, in {report.timings['training']:.1f} s; models written to {report.models_path}", file=out)
    return 0


def _load_models(value, dictionary, phones: bool):
    """``--models``: a phone_models.pt, or ``shipped``: the package's phone models in the phone set
    of ``--dictionary`` (CMUdict's ARPAbet or festival's CMU set; hmm_engine.alignment.shipped)."""
    from hmm_engine.alignment.phone_models import PhoneModels

    if value is None:
        return None
    if str(value) != "shipped":
        return PhoneModels.load(value)
    from hmm_engine.alignment import read_dictionary, shipped_phone_models

    lexicon = read_dictionary(dictionary) if dictionary is not None and not phones else None
    symbols = {p for variants in (lexicon or {}).values() for variant in variants for p in variant}
    models = shipped_phone_models(symbols | {"sil"}) if symbols else None
    if models is None:
        raise HMMStudioError("--models shipped needs word transcripts and a CMUdict-style --dictionary (ARPAbet "
                             "as in CMUdict, or festival's CMU set): the shipped models know only those phones")
    return models


def run_align(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Align a corpus; returns 0, or 1 when nothing could be aligned or the options are invalid."""
    import torch

    from hmm_engine.alignment import align_corpus
    from hmm_engine.frontend.features import FeatureConfig

    out = out if out is not None else sys.stdout
    problem = check_writable(args.out_dir)
    if problem is not None:
        print(f"error: {problem}", file=out)
        return 1
    started_group = _start_distributed(args.device)
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    long_results = []
    try:
        models = _load_models(args.models, args.dictionary, args.phones)
        formats, extras = _split_formats(args)
        long_files = _long_files(args)
        if long_files and torch.distributed.is_initialized():
            raise HMMStudioError(f"{len(long_files)} file(s) are longer than --long-seconds {args.long_seconds:g}: "
                                 f"align long recordings without torchrun")
        aligner = align_corpus
        if long_files:
            from hmm_engine.alignment.long_form import align_corpus_long

            def aligner(*a, **k):
                report, results = align_corpus_long(
                    *a, long_seconds=args.long_seconds, max_train_minutes=args.max_train_minutes or None,
                    window_seconds=args.window_seconds, **k)
                long_results.extend(results)
                return report
        report = aligner(
            args.corpus_dir, args.out_dir, phones=args.phones, transcript_suffix=args.transcript_suffix,
            states_per_phone=args.states_per_phone, num_mixtures=args.mixtures, iterations=args.iterations,
            mixup_iterations=args.mixup_iterations, feature_config=FeatureConfig(frame_shift_ms=args.frame_shift_ms),
            device=args.device, show_progress=not args.no_progress, report=_report_to(out),
            duration_type=None if args.durations == "hmm" else args.durations,
            duration_iterations=args.duration_iterations, context_min_count=args.context_min_count,
            acoustic_prior=args.acoustic_prior, models=models, formats=formats, dictionary=args.dictionary,
            pronunciation_rounds=args.pronunciation_rounds, analysis=not args.no_analysis,
            adapt_iterations=args.adapt_iterations, adapt_tau=args.adapt_tau,
            **_mixture_options(args),
            **({} if args.speech_prior is None else {"speech_prior": args.speech_prior}),
        )
        _finish_extras(args, extras, report, out)
    except HMMStudioError as exc:
        print(f"error: {exc}", file=out)
        return 1
    except OSError as exc:  # a write failed mid-run: the report lines above are kept
        print(_write_error(exc, args.out_dir), file=out)
        return 1
    finally:
        if started_group:
            torch.distributed.destroy_process_group()
    for result in long_results:
        done = sum(p.status == "aligned" for p in result.pieces)
        print(f"{result.name}: {result.duration / 60:.1f} min in {len(result.pieces)} pieces, {done} aligned "
              f"(piece structure in {result.name}.pieces.csv)", file=out)
    if rank == 0:
        t = report.timings
        trained = "with the given models" if args.models is not None else \
            f"trained on {report.num_train_files} file(s), {report.audio_seconds:.1f} s of audio, in {t['training']:.1f} s"
        print(f"{trained}; aligned {len(report.aligned)} file(s) here in {t['alignment']:.1f} s; "
              f"{len(report.skipped)} skipped", file=out)
        if report.analysis_path is not None:
            _print_analysis(report, out)
        if report.words_with_variants:
            print(f"pronunciations: {report.pronunciations_changed} of {report.words_with_variants} words with "
                  f"several aligned best with another than the dictionary's first", file=out)
        if report.models_path is not None:
            print(f"models written to {report.models_path}", file=out)
    return 0 if report.aligned or rank != 0 else 1


def _split_formats(args: argparse.Namespace) -> tuple[list[str], dict]:
    """The formats ``align_corpus`` writes, and what :func:`_finish_extras` makes from its JSON
    (durations, confidence tiers)."""
    from hmm_engine.alignment.tts import MelGrid

    wanted = list(dict.fromkeys(args.format))
    grid = None
    if "durations" in wanted:
        grid = MelGrid(args.sample_rate, args.hop_length, args.win_length, not args.no_center)
        if args.min_phone_frames < 0:
            raise HMMStudioError(f"--min-phone-frames must be >= 0, got {args.min_phone_frames}")
    formats = [f for f in wanted if f != "durations"]
    extras = {"grid": grid, "confidence": args.confidence_tier and "textgrid" in formats,
              "keep_json": "json" in formats, "textgrid": "textgrid" in formats}
    if grid is not None or extras["confidence"]:
        formats.append("json")  # keeps the confidences the extras are made from
    return list(dict.fromkeys(formats)) or ["json"], extras


def _long_files(args: argparse.Namespace) -> list[str]:
    """Names of the corpus files longer than ``--long-seconds`` (read from the audio headers)."""
    from hmm_engine.alignment.corpus_io import find_corpus_files
    from hmm_engine.alignment.long_form import audio_seconds

    if not args.long_seconds > 0:
        raise HMMStudioError(f"--long-seconds must be positive, got {args.long_seconds}")
    files, _ = find_corpus_files(args.corpus_dir, args.transcript_suffix)
    names = []
    for f in files:
        try:
            if audio_seconds(f.audio) > args.long_seconds:
                names.append(f.name)
        except HMMStudioError:
            pass  # align_corpus reports it
    return names


def _finish_extras(args: argparse.Namespace, extras: dict, report, out: TextIO) -> None:
    """Durations and confidence tiers of every aligned file (rank 0 after the run)."""
    from hmm_engine.alignment.corpus_io import find_corpus_files
    from hmm_engine.alignment.exports import finish_outputs

    if extras["grid"] is None and not extras["confidence"]:
        return
    if torch_rank() != 0:
        return
    audio = {f.name: f.audio for f in find_corpus_files(args.corpus_dir, args.transcript_suffix)[0]}
    items = [(name, audio[name]) for name in report.aligned if name in audio]
    problems, table = finish_outputs(args.out_dir, items, textgrid=extras["textgrid"], keep_json=extras["keep_json"],
                                     confidence=extras["confidence"], grid=extras["grid"],
                                     trim_silence=args.trim_silence, min_phone_frames=args.min_phone_frames)
    for line in problems:
        print(f"report: {line}", file=out)
    if table is not None:
        g = extras["grid"]
        print(f"TTS durations ({g.sample_rate} Hz, hop {g.hop_length}, win {g.win_length}, "
              f"{'centred' if g.center else 'not centred'}) written to {table} and name.durations.npy", file=out)


def torch_rank() -> int:
    import torch

    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def _print_analysis(report, out: TextIO, shown: int = 3) -> None:
    """The files whose transcripts fit their audio worst (the analysis file's first rows)."""
    rows = [r for r in report.analysis if math.isfinite(r["worst_phone_fit"])][:shown]
    if rows:
        worst = ", ".join(f"{r['name']} ('{r['worst_phone']}' at {r['worst_phone_start_s']:.2f} s, "
                          f"{r['worst_phone_fit']:.1f})" for r in rows)
        print(f"check first (worst phone fit against a free phone loop): {worst}; all files in "
              f"{report.analysis_path}", file=out)


def add_align_one_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "align-one",
        help="align one recording with its transcript (the Align tab's defaults), write a TextGrid",
        description="Force-align AUDIO with the words (or, with --phones, the phones) in TRANSCRIPT and write "
                    "OUT.TextGrid (tiers phones and words), training phone models on this one recording with "
                    "exactly the Align tab's defaults (CMUdict where installed, espeak-ng for other words; "
                    "non-speech kept off phones). Prints each phone with its confidence and says in words "
                    "when the transcript seems not to fit the audio. With --models, aligns with trained models "
                    "(a phone_models.pt from 'align' or 'train-labelled') instead: far more accurate.",
    )
    parser.add_argument("audio", type=Path, help="audio file (wav, flac, ogg, mp3)")
    parser.add_argument("transcript", help="transcript file (a .lab / .txt), or '-' to read it from standard input")
    parser.add_argument("out", type=Path, help="output TextGrid")
    parser.add_argument("--phones", action="store_true", help="the transcript holds space-separated phones")
    parser.add_argument("--dictionary", type=Path, default=None,
                        help="your pronunciation dictionary (CMUdict / MFA format) instead of the default lexicon")
    parser.add_argument("--models", type=Path, default=None, help="align with these trained phone models")
    parser.add_argument("--csv", type=Path, default=None, help="also write the phones with confidences as CSV")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--quiet", action="store_true", help="do not print the phones")
    parser.set_defaults(run=run_align_one)


def run_align_one(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Align one file; returns 0, or 1 with an error line when the input cannot be aligned."""
    import torch

    from hmm_engine.alignment import align_utterance
    from hmm_engine.alignment.exports import segments_to_csv
    from hmm_engine.alignment.phone_models import PhoneModels
    from hmm_engine.alignment.textgrids import write_textgrid
    from hmm_engine.alignment.transcripts import DEFAULT_LEXICON, read_dictionary
    from hmm_engine.threads import single_thread

    out = out if out is not None else sys.stdout
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else \
        ("cpu" if args.device == "auto" else args.device)
    try:
        if args.transcript == "-":
            text = sys.stdin.read()
        else:
            try:
                text = Path(args.transcript).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise TranscriptError(f"cannot read the transcript '{args.transcript}': {exc}") from None
        if args.phones and args.dictionary is not None:
            raise TranscriptError("--dictionary is for word transcripts; --phones gives phones")
        lexicon = read_dictionary(args.dictionary) if args.dictionary is not None else DEFAULT_LEXICON
        models = PhoneModels.load(args.models) if args.models is not None else None
        text_arg = {"phones": text} if args.phones else {"words": text, "dictionary": lexicon}
        with single_thread():
            result = align_utterance(args.audio, **text_arg, models=models, device=device)
        write_textgrid(args.out, result.tiers(), result.duration)
        if args.csv is not None:
            segments_to_csv(result.tiers(), args.csv)
    except HMMStudioError as exc:
        print(f"error: {exc}", file=out)
        return 1
    if not args.quiet:
        for seg in result.phones:
            print(f"{seg.start:8.3f} {seg.end:8.3f}  {seg.label:<6} confidence {seg.score:.2f}", file=out)
    for warning in result.warnings:
        print(f"warning: {warning}", file=out)
    print(f"aligned {len(result.phones)} segments of {result.duration:.2f} s in {result.timings['total']:.1f} s; "
          f"wrote {args.out}", file=out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    # "hmm-engine" once installed (console script), "python -m hmm_engine" from a checkout: the same CLI.
    parser = argparse.ArgumentParser(prog="hmm-engine", description="HMM Studio command-line tools")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_evaluate_parser(subparsers)
    add_align_parser(subparsers)
    add_train_labelled_parser(subparsers)
    add_align_one_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


__all__ = ["main", "build_parser", "add_evaluate_parser", "run_evaluate", "add_align_parser", "run_align",
           "add_train_labelled_parser", "run_train_labelled", "add_align_one_parser", "run_align_one",
           "DEFAULT_THRESHOLDS_MS"]
