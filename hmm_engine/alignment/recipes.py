"""Corpus recipes: train shared phone models on a corpus and align every file
(:func:`align_corpus`, ``hmm-engine align``), or train them inside labelled phone segments
(:func:`train_labelled`, ``hmm-engine train-labelled``).

Corpus layout (Montreal Forced Aligner style): ``CORPUS_DIR/name.wav`` (or .flac, .ogg, .mp3;
directly there or in one subfolder per speaker) with a transcript ``name<suffix>`` beside it;
the suffix is ``.lab`` by default (``transcript_suffix`` chooses another, e.g. ``.phones.lab``).
The transcript holds words (turned into phones by espeak-ng, or looked up in a pronunciation
dictionary: ``dictionary``) or, with ``phones=True``, space-separated phone symbols. Outputs
mirror the layout: ``OUT_DIR/speaker/name.TextGrid``.

Training (HTK/MFA-style monophone training, :mod:`hmm_engine.alignment.training`): a flat start
(by default every tied state from the global statistics, HTK's HCompV), ``iterations`` of
embedded Baum-Welch re-estimation pooled over the corpus, the first ones annealed, then
mixture splits; then Viterbi alignment of every file with the trained models.

Labelled training: when some utterances carry trusted phone boundaries (``name.wav`` +
``name.TextGrid``), the models are trained inside those segments instead, and a corpus is then
aligned with them (``align_corpus(models=...)``, ``align --models``): flat-start EM cannot learn
where a corpus's labellers put a boundary inside a gradual transition.

Distributed: launched under ``torchrun`` (``torch.distributed`` initialised), each rank
loads ``files[rank::world]``, the phone inventories are united, every statistics dict (the
flat-start ones included) is summed with :func:`hmm_engine.training.em.all_reduce_stats`,
so every rank takes the same M-steps and holds the same models; each rank writes the
TextGrids of its files and rank 0 writes ``phone_models.pt``.

The measurements behind the defaults are in docs/alignment-tuning.md.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

from hmm_engine.alignment.analysis import ANALYSIS_FILE, analysis_row, transcript_fit, worst_first, write_analysis
from hmm_engine.alignment.corpus_io import (
    CorpusFile,
    check_formats,
    find_corpus_files,
    load_corpus,
    load_labelled_segments,
    write_alignment,
)
from hmm_engine.alignment.decoding import align_features
from hmm_engine.alignment.distributed import barrier, gather, rank_and_world
from hmm_engine.alignment.phone_models import PhoneModels
from hmm_engine.alignment.pronunciations import choose_pronunciations, count_variants
from hmm_engine.alignment.training import TrainingConfig, map_adapt_means, reestimate, train_corpus
from hmm_engine.alignment.transcripts import Dictionary, PreparedTranscript, read_dictionary
from hmm_engine.errors import HMMStudioError, InvalidInputError, InvalidParameterError
from hmm_engine.frontend.features import FeatureConfig, Features
from hmm_engine.threads import single_thread
from hmm_engine.training.em import all_reduce_stats


MODEL_FILE = "phone_models.pt"
# Default of align_corpus / train_labelled: a state splits its mixture only while it keeps 50
# frames per Gaussian (measurements: docs/alignment-tuning.md).
MIN_FRAMES_PER_GAUSSIAN = 50.0
# Corpus mode's speech_prior (PhoneModels.speech_prior), off by default: 5 lifts the real clips
# from 71.6 to 74.8% of the peer's boundaries within 20 ms (clean synthetic 92.8%), but drops the
# pieces of a long file (tests/test_long_form.py, align_corpus_long) from above 65 to 54%; not
# understood yet, so it is opt-in (--speech-prior 5; docs/real-recordings.md).
SPEECH_PRIOR = 0.0
# EM iterations after each round of choosing pronunciations (align_corpus pronunciation_rounds).
PRONUNCIATION_ITERATIONS = 3


@dataclass
class CorpusReport:
    """What :func:`align_corpus` did (on this process; ``skipped`` holds every rank's lines).

    Attributes:
        aligned: names whose TextGrid was written.
        skipped: ``"name: reason"`` report lines.
        history: log-likelihood per frame of each EM iteration.
        num_train_files: files the models were trained on (all ranks).
        audio_seconds: seconds of audio trained on (all ranks).
        timings: wall seconds for ``loading``, ``training``, ``alignment``.
        models_path: where the models were written (rank 0), else None.
        analysis_path: where :data:`ANALYSIS_FILE` was written (rank 0), else None.
        analysis: its rows (:func:`analysis_row`, :func:`worst_first` order; rank 0).
        words_with_variants, pronunciations_changed: words (all ranks) for which the
            pronunciation dictionary lists several pronunciations, and how many of them
            were aligned with another than the first listed.
    """

    aligned: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    history: list[float] = field(default_factory=list)
    num_train_files: int = 0
    audio_seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    models_path: Path | None = None
    analysis_path: Path | None = None
    analysis: list[dict] = field(default_factory=list)
    words_with_variants: int = 0
    pronunciations_changed: int = 0



def _resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError("device 'cuda' requested but CUDA is not available")
    return device


class _TrainingBar:
    """EM progress bar (rank 0 only; silent when hidden); called as ``progress(iteration, value)``."""

    def __init__(self, total: int, show: bool):
        self.bar = None
        if show and rank_and_world()[0] == 0:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="training (EM)", unit="iter", file=sys.stderr)

    def __call__(self, iteration: int, value: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loglik_per_frame=f"{value:.3f}")
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def train_labelled(
    corpus_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    tier: str = "phones",
    states_per_phone: int = 3,
    num_mixtures: int = 4,
    iterations: int = 10,
    mixup_iterations: int = 3,
    covariance_type: str = "diag",
    min_covar: float = 0.01,
    feature_config: FeatureConfig | None = None,
    silence: str = "sil",
    device: str = "auto",
    seed: int = 0,
    show_progress: bool = True,
    report: Callable[[str], None] | None = None,
    duration_type: str | None = None,
    duration_iterations: int = 4,
    acoustic_prior: float = 1.0,
    min_frames_per_gaussian: float = MIN_FRAMES_PER_GAUSSIAN,
) -> CorpusReport:
    """Train phone models on labelled phone segments; write ``out_dir/phone_models.pt``.

    ``corpus_dir`` holds ``name.wav`` + ``name.TextGrid`` whose ``tier`` gives every phone's
    boundaries (hand-labelled, or otherwise trusted). Training is HTK HInit/HRest-like: every
    interval is a one-phone utterance with fixed boundaries (:func:`load_labelled_segments`),
    its states cut uniformly at the start, then ``iterations`` EM iterations inside the
    segments, mixture splits and, with ``duration_type``, explicit state durations, all pooled
    over the corpus (and summed over processes under torchrun, as :func:`train_corpus`). The
    models learn where the labels put each boundary, which flat-start EM cannot (module
    docstring); align other corpora with them via ``align_corpus(models=...)``.

    Returns a :class:`CorpusReport` (``aligned`` empty; ``skipped`` holds problem lines and a
    count of intervals too short to train on).
    Raises:
        InvalidInputError: missing folder, no wav, or no usable labelled file.
    """
    rank, world = rank_and_world()
    report = report or (lambda line: print(line, file=sys.stderr))
    device = _resolve_device(device)
    feature_config = feature_config or FeatureConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = CorpusReport()
    t0 = time.perf_counter()
    files, problems = find_corpus_files(corpus_dir, ".TextGrid")
    with single_thread():
        segments, load_problems, num_short, num_files = load_labelled_segments(
            files[rank::world], feature_config, silence, states_per_phone, tier)
        t1 = time.perf_counter()
        counts = gather((num_files, len(segments), num_short, sum(f.duration for f, _ in segments)))
        result.num_train_files = sum(c[0] for c in counts)
        result.audio_seconds = sum(c[3] for c in counts)
        lines = problems + load_problems
        if sum(c[2] for c in counts):
            lines.append(f"{sum(c[2] for c in counts)} of {sum(c[1] + c[2] for c in counts)} labelled intervals are "
                         f"shorter than {states_per_phone} frames and were not trained on")
        if sum(c[1] for c in counts) == 0:
            for line in lines:
                report(f"report: {line}")
            raise InvalidInputError(f"no usable labelled file in '{corpus_dir}' ({len(files)} with TextGrids)")
        config = TrainingConfig(
            states_per_phone=states_per_phone, num_mixtures=num_mixtures, iterations=iterations,
            mixup_iterations=mixup_iterations, covariance_type=covariance_type, min_covar=min_covar,
            silence=silence, device=device, seed=seed, init="uniform", anneal=None, duration_type=duration_type,
            duration_iterations=duration_iterations, acoustic_prior=acoustic_prior,
            min_frames_per_gaussian=min_frames_per_gaussian,
        )
        bar = _TrainingBar(config.progress_steps(), show_progress)
        models, history = train_corpus(segments, config, bar)
        bar.close()
        t2 = time.perf_counter()
    if rank == 0:
        result.models_path = out / MODEL_FILE
        models.save(result.models_path)
    result.history = history
    result.timings = {"loading": t1 - t0, "training": t2 - t1}
    return _finish(result, lines if rank == 0 else load_problems, report)



def align_files(
    models: PhoneModels,
    loaded: Sequence[tuple[CorpusFile, Features, PreparedTranscript]],
    out_dir: str | os.PathLike,
    confidence: bool = True,
    show_progress: bool = False,
    formats: Sequence[str] = ("textgrid",),
    analysis: bool = True,
) -> tuple[list[str], list[str], list[dict]]:
    """Viterbi-align each utterance and write it (:func:`write_alignment`);
    ``(aligned, problems, rows)`` with one :func:`analysis_row` per aligned file (none when
    ``analysis`` is False)."""
    from tqdm import tqdm

    out = Path(out_dir)
    aligned, problems, rows = [], [], []
    loop = models.phone_loop() if analysis else None
    for item, features, transcript in tqdm(loaded, desc="aligning", unit="file", disable=not show_progress,
                                           file=sys.stderr):
        try:
            result = align_features(features, transcript, models, confidence)
            write_alignment(out, item.name, result.tiers(), features.duration, formats)
        except HMMStudioError as exc:
            problems.append(f"{item.name}: skipped: {exc}")
            continue
        aligned.append(item.name)
        if analysis:
            rows.append(analysis_row(item.name, result, transcript_fit(models, features, result, loop)))
    return aligned, problems, rows



def align_corpus(
    corpus_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    phones: bool = False,
    transcript_suffix: str = ".lab",
    states_per_phone: int = 3,
    num_mixtures: int = 4,
    iterations: int = 20,
    mixup_iterations: int = 3,
    covariance_type: str = "diag",
    min_covar: float = 0.01,
    feature_config: FeatureConfig | None = None,
    silence: str = "sil",
    device: str = "auto",
    confidence: bool = True,
    seed: int = 0,
    show_progress: bool = True,
    report: Callable[[str], None] | None = None,
    init: str = "global",
    anneal: float | None = 0.1,
    context_min_count: int | None = None,
    context_iterations: int = 4,
    duration_type: str | None = None,
    duration_iterations: int = 4,
    class_prior: float = 0.0,
    acoustic_prior: float = 1.0,
    models: PhoneModels | None = None,
    min_frames_per_gaussian: float = MIN_FRAMES_PER_GAUSSIAN,
    formats: Sequence[str] = ("textgrid",),
    dictionary: str | os.PathLike | Dictionary | None = None,
    pronunciation_rounds: int = 3,
    analysis: bool = True,
    speech_prior: float = SPEECH_PRIOR,
    config: TrainingConfig | None = None,
    adapt_iterations: int = 0,
    adapt_tau: float = 20.0,
) -> CorpusReport:
    """Train shared phone models on a corpus and align every file (see the module docstring).

    Args:
        corpus_dir: folder of ``name.wav`` + ``name<transcript_suffix>``.
        out_dir: receives ``name.TextGrid`` (tiers ``phones``, and ``words`` for word
            transcripts; and/or ``.csv``, ``.json``, see ``formats``) and ``phone_models.pt``.
        phones: transcripts hold phones rather than words.
        states_per_phone, num_mixtures, iterations, mixup_iterations, covariance_type,
        min_covar: model and training settings (see :func:`train_corpus`); the defaults are
            ``align``'s on the command line, the settings benchmarked in README.
        feature_config: front end (default MFCC + deltas + delta-deltas, CMVN, 10 ms).
        device: "auto" (CUDA when available), "cpu" or "cuda": where emission scores and
            statistics are computed (the chain DP itself runs on the CPU).
        report: receives each report line (default: print to stderr); rank 0 reports all ranks.
        init: flat start, "uniform" (equal runs per chain state) or "global" (every state
            from the global mean/variance, HTK HCompV style); see ``flat_start_stats``.
        anneal: optional starting acoustic scale of deterministic annealing (see
            ``annealing_schedule``).
        context_min_count, context_iterations: context-dependent boundary states (see
            :func:`train_corpus`).
        duration_type, duration_iterations: explicit (semi-Markov) state durations, e.g.
            "gamma" (see :func:`train_corpus`); alignment then uses them too.
        class_prior: pull of single-Gaussian means towards their broad phonetic class
            (``PhoneModels.emission_m_step``); 0 (default) off: a corpus has enough frames.
        acoustic_prior: scale of the loudness / tilt prior by broad class
            (``hmm_engine.alignment.acoustic_prior``); 0 disables it (default 1: see
            docs/alignment-tuning.md).
        min_frames_per_gaussian: split a state's mixture only while it keeps this many frames
            per Gaussian (:func:`train_on_utterances`; default :data:`MIN_FRAMES_PER_GAUSSIAN`);
            0 splits every state.
        models: align with these trained models (e.g. from :func:`train_labelled`) instead
            of training: the model and training settings and ``feature_config`` are then
            ignored (the models' own front end is used), no ``phone_models.pt`` is written,
            and a file with a phone the models do not know is skipped with a report line.
        dictionary: a pronunciation dictionary (path, CMUdict / MFA text format, or the
            mapping :func:`~hmm_engine.alignment.transcripts.read_dictionary` returns) for word
            transcripts instead of espeak-ng: a file with a word it lacks is skipped with a
            report line naming the word; training uses each word's first pronunciation, then
            every word with several gets the one that aligns best
            (:func:`~hmm_engine.alignment.pronunciations.choose_pronunciations`) before alignment.
        pronunciation_rounds: with a dictionary and models trained here, rounds of choosing
            the pronunciations then :data:`PRONUNCIATION_ITERATIONS` EM iterations before the
            last choice (measurements: docs/alignment-tuning.md).
        analysis: write :data:`ANALYSIS_FILE` (:func:`analysis_row` per file, the worst
            transcript fit first; about 3 ms a 2.4 s file on 2 CPU cores, a little more than
            aligning it).
        speech_prior: keeps speech phones off long stretches of each file's own noise floor
            and starts silence from them (``PhoneModels.speech_prior``); 0 disables it.
        formats: what each aligned file gets, some of :data:`EXPORT_SUFFIXES` (``"textgrid"``,
            ``"csv"``, ``"json"``; the last two keep each phone's confidence).
        config: the training settings as one :class:`TrainingConfig` instead of its keywords
            (``states_per_phone`` ... ``speech_prior``, ``device``, ``seed``), which must then
            keep their defaults; ``config.device`` may be "auto".
        adapt_iterations, adapt_tau: with ``models``, that many iterations of MAP adaptation
            of their means to this corpus (:func:`~hmm_engine.alignment.training.map_adapt_means`,
            prior weight ``adapt_tau`` frames) before aligning; 0 (default) aligns with the
            models as given. Measured on real speech in docs/real-recordings.md.
    Returns:
        :class:`CorpusReport`.
    Raises:
        InvalidInputError: missing corpus folder, no audio file, or no usable file at all.
        InvalidParameterError: an unknown format; a dictionary with ``phones=True``; negative
            ``pronunciation_rounds``; ``config`` together with a training keyword.
        TranscriptError: an unreadable or malformed dictionary.
    """
    if config is not None:
        _check_config(config, align_corpus, locals())
        states_per_phone, silence, device = config.states_per_phone, config.silence, config.device
    formats = check_formats(formats)
    if not (isinstance(pronunciation_rounds, int) and pronunciation_rounds >= 0):
        raise InvalidParameterError(f"pronunciation_rounds must be a whole number >= 0, got {pronunciation_rounds!r}")
    if dictionary is not None and phones:
        raise InvalidParameterError("a pronunciation dictionary is for word transcripts: phones=True gives phones")
    if not (isinstance(adapt_iterations, int) and adapt_iterations >= 0):
        raise InvalidParameterError(f"adapt_iterations must be a whole number >= 0, got {adapt_iterations!r}")
    if adapt_iterations and models is None:
        raise InvalidParameterError("adapt_iterations adapts given models: pass models (e.g. the shipped ones)")
    if adapt_iterations and models.num_mixtures != 1:
        raise InvalidParameterError("MAP mean adaptation needs single-Gaussian models")
    if not (isinstance(adapt_tau, (int, float)) and math.isfinite(adapt_tau) and adapt_tau > 0):
        raise InvalidParameterError(f"adapt_tau must be a finite number > 0, got {adapt_tau!r}")
    if dictionary is not None and not isinstance(dictionary, Mapping):
        dictionary = read_dictionary(dictionary)
    rank, world = rank_and_world()
    report = report or (lambda line: print(line, file=sys.stderr))
    device = _resolve_device(device)
    feature_config = feature_config or FeatureConfig()
    if models is not None:
        feature_config, states_per_phone, silence = models.feature_config, models.states_per_phone, models.silence
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = CorpusReport()
    t0 = time.perf_counter()
    files, problems = find_corpus_files(corpus_dir, transcript_suffix)
    share = files[rank::world]
    with single_thread():
        loaded, load_problems = load_corpus(share, phones, feature_config, silence, states_per_phone, dictionary)
        t1 = time.perf_counter()
        counts = gather((len(loaded), sum(f.duration for _, f, _ in loaded)))
        result.num_train_files = sum(c[0] for c in counts)
        result.audio_seconds = sum(c[1] for c in counts)
        if result.num_train_files == 0:
            for line in problems + load_problems:
                report(f"report: {line}")
            raise InvalidInputError(f"no usable file in '{corpus_dir}' ({len(files)} with transcripts)")
        said = _say_now(problems + load_problems, report, world)
        # Words with several pronunciations: rounds of choosing and re-estimating (HTK's
        # realignment step, repeated), as training with the first listed biases the models.
        rounds = pronunciation_rounds if models is None and count_variants(loaded)[0] else 0
        if models is None and config is not None:
            config = dataclasses.replace(config, device=device)  # "auto" resolved
        elif models is None:
            config = TrainingConfig(
                states_per_phone=states_per_phone, num_mixtures=num_mixtures, iterations=iterations,
                mixup_iterations=mixup_iterations, covariance_type=covariance_type, min_covar=min_covar,
                silence=silence, device=device, seed=seed, init=init, anneal=anneal,
                context_min_count=context_min_count, context_iterations=context_iterations,
                duration_type=duration_type, duration_iterations=duration_iterations, class_prior=class_prior,
                acoustic_prior=acoustic_prior, min_frames_per_gaussian=min_frames_per_gaussian,
                speech_prior=speech_prior,
            )
        if models is None:
            bar = _TrainingBar(config.progress_steps() + rounds * PRONUNCIATION_ITERATIONS, show_progress)
            models, history = train_corpus([(f, t) for _, f, t in loaded], config, bar)
            for _ in range(rounds):
                loaded = [(item, f, choose_pronunciations(models, f, t)[0]) for item, f, t in loaded]
                history += reestimate(models, [(f.values.to(device), t) for _, f, t in loaded],
                                      PRONUNCIATION_ITERATIONS, all_reduce_stats, bar, len(history),
                                      explicit=models.durations is not None)
            bar.close()
            if rank == 0:
                result.models_path = out / MODEL_FILE
                models.save(result.models_path)
        else:
            models, history = models.to(device), []
            if adapt_iterations:
                loaded = [(item, f, choose_pronunciations(models, f, t)[0]) for item, f, t in loaded]
                history = map_adapt_means(models, [(f.values.to(device), t) for _, f, t in loaded],
                                          adapt_iterations, adapt_tau, all_reduce_stats,
                                          explicit=models.durations is not None)
                if rank == 0:
                    result.models_path = out / MODEL_FILE
                    models.save(result.models_path)
        t2 = time.perf_counter()
        loaded = [(item, f, choose_pronunciations(models, f, t)[0]) for item, f, t in loaded]
        result.words_with_variants, result.pronunciations_changed = count_variants(loaded)
        aligned, align_problems, rows = align_files(models, loaded, out, confidence,
                                                    show_progress and rank == 0, formats, analysis)
        rows = [row for part in gather(rows) for row in part]
        if analysis and rank == 0:
            result.analysis_path = out / ANALYSIS_FILE
            result.analysis = worst_first(rows)
            write_analysis(result.analysis_path, rows)
        t3 = time.perf_counter()
    result.aligned = aligned
    result.history = history
    result.timings = {"loading": t1 - t0, "training": t2 - t1, "alignment": t3 - t2}
    return _finish(result, (problems if rank == 0 else []) + load_problems + align_problems, report, said)


_TRAINING_FIELDS = tuple(f.name for f in dataclasses.fields(TrainingConfig))


def _check_config(config: TrainingConfig, function: Callable, given: dict) -> None:
    """A function that takes ``config`` or the same settings as keywords: with ``config``,
    those keywords must keep their defaults (one source per setting)."""
    if not isinstance(config, TrainingConfig):
        raise InvalidParameterError(f"config must be a TrainingConfig, got {type(config).__name__}")
    params = inspect.signature(function).parameters
    clash = [name for name in _TRAINING_FIELDS if name in params and given[name] != params[name].default]
    if clash:
        raise InvalidParameterError(f"give the training settings in config or as keywords, not both: "
                                    f"{', '.join(clash)}")


def _say_now(lines: list[str], report: Callable[[str], None], world: int) -> list[str]:
    """In a single process, the loading problems are reported before training, so a later
    failure (a write error) does not lose them; returns the lines said."""
    if world > 1:
        return []  # every rank's lines are gathered and said at the end
    for line in sorted(lines):
        report(f"report: {line}")
    return list(lines)



def _finish(result: CorpusReport, own_lines: list[str], report: Callable[[str], None],
            said: Sequence[str] = ()) -> CorpusReport:
    """Every rank's report lines into ``result.skipped`` (rank 0 prints those not ``said``
    already), then a barrier."""
    rank, world = rank_and_world()
    result.skipped = sorted(line for part in gather(own_lines) for line in part)
    if rank == 0:
        for line in result.skipped:
            if line not in said:
                report(f"report: {line}")
    barrier()
    return result
