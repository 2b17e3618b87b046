"""Corpus forced alignment: shared phone models trained by flat-start embedded EM.

Corpus layout (Montreal Forced Aligner style): ``CORPUS_DIR/name.wav`` (or .flac, .ogg, .mp3;
directly there or in one subfolder per speaker) with a transcript ``name<suffix>`` beside it;
the suffix is ``.lab`` by default (``transcript_suffix`` chooses another, e.g. ``.phones.lab``).
The transcript holds words (turned into phones by espeak-ng, or looked up in a pronunciation
dictionary: ``dictionary``) or, with ``phones=True``, space-separated phone symbols. Outputs
mirror the layout: ``OUT_DIR/speaker/name.TextGrid``.

Training (HTK/MFA-style monophone training):

1. *flat start*: by default (``init="global"``, as HTK's HCompV) every tied state starts
   from the mean and variance of all the frames of the utterances it occurs in;
   ``init="uniform"`` instead cuts each utterance into equal runs, one per chain state.
   Either way the statistics are summed over the corpus (and over processes);
2. ``iterations`` of *embedded* Baum-Welch re-estimation: each utterance's chain (its
   phones' tied states, optional silences skippable) is run forward-backward, the state
   posteriors and transition counts are pooled per tied state over the corpus, then one
   M-step. The first iterations are annealed (``anneal=0.1``: the emission scores are
   scaled by 0.1 rising geometrically to 1, so early posteriors stay soft); measured on a
   150-utterance synthetic corpus this gave 86.3% of boundaries within 20 ms against 84.3%
   for a uniform start without annealing. With ``num_mixtures > 1`` the Gaussians are then split (1 -> 2 -> 4 ... -> M),
   with ``mixup_iterations`` EM iterations after each split;
3. Viterbi alignment of every file with the trained models.

Distributed: launched under ``torchrun`` (``torch.distributed`` initialised), each rank
loads ``files[rank::world]``, the phone inventories are united, every statistics dict (the
flat-start ones included) is summed with :func:`hmm_engine.training.em.all_reduce_stats`,
so every rank takes the same M-steps and holds the same models; each rank writes the
TextGrids of its files and rank 0 writes ``phone_models.pt``.

Labelled training (:func:`train_labelled`, ``python -m hmm_engine train-labelled``): when some
utterances carry trusted phone boundaries (``name.wav`` + ``name.TextGrid``), the models are
trained inside those segments instead, and a corpus is then aligned with them
(``align_corpus(models=...)``, ``align --models``). Flat-start EM cannot learn where a
corpus's labellers put a boundary inside a gradual transition: on a 150-utterance tuning corpus,
models trained inside the reference segments and then re-estimated by 12 unsupervised EM
iterations reached -37.31 log-likelihood per frame and 94.6% of boundaries within 20 ms;
the same recipe started from our own flat-start alignment reached -37.24 and 91.4%
(``benchmarks/flat_start_vs_labels.py``). The likelihood cannot tell the two conventions
apart; labels can.

A file that cannot be used (unreadable audio, missing or bad transcript, too short for its
phones, ...) is skipped with a report line; the run goes on.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

from hmm_engine.alignment.aligner import (
    PreparedTranscript,
    align_features,
    annealing_schedule,
    check_chain_size,
    choose_pronunciations,
    compute_features,
    prepare_transcript,
    reestimate,
    train_explicit_durations,
    train_on_utterances,
    transcript_fit,
)
from hmm_engine.alignment.exports import segments_to_csv, segments_to_json
from hmm_engine.alignment.layout import EXPORT_SUFFIXES, files_by_name
from hmm_engine.alignment.metrics import SILENCE_LABELS
from hmm_engine.alignment.phone_models import PhoneModels
from hmm_engine.segments import segment_frames
from hmm_engine.alignment.textgrids import read_textgrid, write_textgrid
from hmm_engine.alignment.transcripts import Dictionary, read_dictionary
from hmm_engine.errors import HMMStudioError, InvalidInputError, InvalidParameterError
from hmm_engine.frontend.audio import AUDIO_SUFFIXES
from hmm_engine.frontend.features import FeatureConfig, Features
from hmm_engine.threads import single_thread
from hmm_engine.training.em import all_reduce_stats

MODEL_FILE = "phone_models.pt"
# Per-file alignment quality, the worst-fitting phone first (align_corpus writes it beside the TextGrids).
ANALYSIS_FILE = "alignment_analysis.csv"
ANALYSIS_COLUMNS = ("name", "duration_s", "phones", "worst_phone_fit", "worst_phone", "worst_phone_start_s",
                    "transcript_fit_per_frame", "log_likelihood_per_frame")
# Default of align_corpus / train_labelled: a state splits its mixture only while it keeps 50
# frames per Gaussian. Labelled training on 9 / 30 / 150 / 450 tuning utterances (seed 2),
# aligning the seed-1 tuning corpus: 52.5 / 78.7 / 94.8 / 96.3% within 20 ms with every state
# split to 4 Gaussians, 75.0 / 86.8 / 95.4 / 96.3% with 50 (100: 75.0 / 86.8 / 94.9 / 96.5;
# 200: 75.0 / 86.7 / 94.7 / 95.9); flat-start corpus mode 91.8 -> 92.1% (150) and
# 92.8 -> 92.9% (450).
MIN_FRAMES_PER_GAUSSIAN = 50.0
# EM iterations after each round of choosing pronunciations (align_corpus pronunciation_rounds).
PRONUNCIATION_ITERATIONS = 3

__all__ = ["CorpusFile", "CorpusReport", "find_corpus_files", "load_corpus", "train_corpus", "align_corpus",
           "align_files", "write_alignment", "check_formats", "load_labelled_segments", "train_labelled",
           "analysis_row", "worst_first", "write_analysis", "MODEL_FILE", "ANALYSIS_FILE", "ANALYSIS_COLUMNS",
           "MIN_FRAMES_PER_GAUSSIAN", "PRONUNCIATION_ITERATIONS"]


@dataclass(frozen=True)
class CorpusFile:
    """One utterance of a corpus: ``name``, its audio and transcript paths."""

    name: str
    audio: Path
    transcript: Path


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


def _dist() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _gather(obj):
    """Every rank's ``obj`` as a list (``[obj]`` when not distributed)."""
    rank, world = _dist()
    if world == 1:
        return [obj]
    out = [None] * world
    torch.distributed.all_gather_object(out, obj)
    return out


def find_corpus_files(corpus_dir: str | os.PathLike, transcript_suffix: str = ".lab") -> tuple[list[CorpusFile], list[str]]:
    """``(files, problems)``: every audio file under ``corpus_dir`` (sorted by name) with its
    transcript ``name<suffix>`` beside it.

    Audio is any of :data:`~hmm_engine.frontend.audio.AUDIO_SUFFIXES`, directly in the folder or
    in subfolders (MFA's one folder per speaker); a file's ``name`` is its path relative to
    ``corpus_dir`` without the suffix (``"speaker1/utt1"``), so outputs mirror the layout.
    Hidden folders are not searched. A file without a transcript, or a second audio file of the
    same name (``a.wav`` and ``a.flac``: the first suffix in that list is kept), is a problem
    line, not a file.

    Raises:
        InvalidInputError: the folder does not exist or holds no audio file.
    """
    folder = Path(corpus_dir)
    if not folder.is_dir():
        raise InvalidInputError(f"corpus folder '{folder}' does not exist or is not a folder")
    by_name = files_by_name(folder, AUDIO_SUFFIXES)
    if not by_name:
        raise InvalidInputError(f"corpus folder '{folder}' holds no audio files ({', '.join(AUDIO_SUFFIXES)})")
    preference = {suffix: rank for rank, suffix in enumerate(AUDIO_SUFFIXES)}
    files, problems = [], []
    for name in sorted(by_name):
        audio, *others = sorted(by_name[name], key=lambda p: (preference[p.suffix.lower()], p.name))
        for other in others:
            problems.append(f"{name}: skipped '{other.name}': '{audio.name}' has the same name")
        transcript = audio.with_name(audio.stem + transcript_suffix)
        if transcript.is_file():
            files.append(CorpusFile(name, audio, transcript))
        else:
            problems.append(f"{name}: skipped: no transcript '{transcript.name}'")
    return files, problems


def _load_one(item: CorpusFile, phones: bool, feature_config: FeatureConfig, silence: str,
              states_per_phone: int, dictionary: Dictionary | None) -> tuple[Features, PreparedTranscript]:
    try:
        text = item.transcript.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read transcript '{item.transcript.name}': {exc}") from None
    transcript = prepare_transcript(phones=text, silence=silence) if phones else \
        prepare_transcript(words=text, silence=silence, dictionary=dictionary)
    features = compute_features(item.audio, feature_config)
    need = sum(1 for o in transcript.optional if not o) * states_per_phone
    if features.num_frames < need:
        raise InvalidInputError(f"{features.num_frames} frames are fewer than its {need} mandatory HMM states")
    check_chain_size(features.num_frames, len(transcript.phones) * states_per_phone)
    return features, transcript


def load_corpus(
    files: Sequence[CorpusFile], phones: bool, feature_config: FeatureConfig, silence: str = "sil",
    states_per_phone: int = 3, dictionary: Dictionary | None = None,
) -> tuple[list[tuple[CorpusFile, Features, PreparedTranscript]], list[str]]:
    """Features and transcripts of ``files``; ``(loaded, problems)`` where failures are report lines.
    Word transcripts go through ``dictionary`` when one is given, else espeak-ng."""
    loaded, problems = [], []
    for item in files:
        try:
            features, transcript = _load_one(item, phones, feature_config, silence, states_per_phone, dictionary)
        except HMMStudioError as exc:
            problems.append(f"{item.name}: skipped: {exc}")
            continue
        loaded.append((item, features, transcript))
    return loaded, problems


def load_labelled_segments(
    files: Sequence[CorpusFile], feature_config: FeatureConfig, silence: str = "sil", states_per_phone: int = 3,
    tier: str = "phones",
) -> tuple[list[tuple[Features, PreparedTranscript]], list[str], int, int]:
    """Labelled phone segments of ``files`` (each ``transcript`` a TextGrid):
    ``(segments, problems, num_short, num_files)``.

    Features are computed (and CMVN-normalised) over the whole file, as alignment computes
    them; each interval of ``tier`` then becomes a one-phone utterance made of the frames whose
    centre lies inside it. Empty intervals and silence labels (:data:`SILENCE_LABELS`) become
    ``silence``. An interval shorter than ``states_per_phone`` frames cannot hold its chain and
    is left out, counted in ``num_short``. A file that cannot be read, has a label that is not
    one symbol, or has no phone long enough, is a problem line; ``num_files`` counts the others.
    """
    segments: list[tuple[Features, PreparedTranscript]] = []
    problems: list[str] = []
    num_short = num_files = 0
    for item in files:
        try:
            intervals = read_textgrid(item.transcript, tier=tier, keep_empty=True)[tier]
            features = compute_features(item.audio, feature_config)
        except HMMStudioError as exc:
            problems.append(f"{item.name}: skipped: {exc}")
            continue
        own, short, bad = [], 0, None
        for interval in intervals:
            first, stop = segment_frames(interval, features.frame_shift, features.num_frames)
            if stop - first < states_per_phone:
                short += 1
                continue
            label = interval.label.strip()
            label = silence if label in SILENCE_LABELS else label
            if len(label.split()) != 1:
                bad = f"label {interval.label!r} at {interval.start:.3f} s is not one phone symbol"
                break
            part = replace(features, values=features.values[first:stop], duration=(stop - first) * features.frame_shift)
            own.append((part, PreparedTranscript([label], [False], [])))
        if bad is None and all(t.phones[0] == silence for _, t in own):
            bad = f"no phone of {states_per_phone} frames or more in tier {tier!r}"
        if bad is not None:
            problems.append(f"{item.name}: skipped: {bad}")
            continue
        segments.extend(own)
        num_short += short
        num_files += 1
    return segments, problems, num_short, num_files


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
        if show and _dist()[0] == 0:
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
    rank, world = _dist()
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
        counts = _gather((num_files, len(segments), num_short, sum(f.duration for f, _ in segments)))
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
        bar = _TrainingBar(_training_steps(iterations, num_mixtures, mixup_iterations, 0,
                                           duration_iterations if duration_type else 0), show_progress)
        models, history = train_corpus(
            segments, states_per_phone, num_mixtures, iterations, mixup_iterations, covariance_type, min_covar,
            silence, device, seed, bar, init="uniform", anneal=None, duration_type=duration_type,
            duration_iterations=duration_iterations, acoustic_prior=acoustic_prior,
            min_frames_per_gaussian=min_frames_per_gaussian,
        )
        bar.close()
        t2 = time.perf_counter()
    if rank == 0:
        result.models_path = out / MODEL_FILE
        models.save(result.models_path)
    result.history = history
    result.timings = {"loading": t1 - t0, "training": t2 - t1}
    return _finish(result, lines if rank == 0 else load_problems, report)


def train_corpus(
    data: Sequence[tuple[Features, PreparedTranscript]],
    states_per_phone: int = 3,
    num_mixtures: int = 1,
    iterations: int = 10,
    mixup_iterations: int = 3,
    covariance_type: str = "diag",
    min_covar: float = 0.01,
    silence: str = "sil",
    device: str | torch.device = "cpu",
    seed: int = 0,
    progress: Callable[[int, float], None] | None = None,
    init: str = "uniform",
    anneal: float | None = None,
    context_min_count: int | None = None,
    context_iterations: int = 4,
    duration_type: str | None = None,
    duration_iterations: int = 4,
    class_prior: float = 0.0,
    acoustic_prior: float = 1.0,
    min_frames_per_gaussian: float = 0.0,
) -> tuple[PhoneModels, list[float]]:
    """Train shared phone models on ``(features, transcript)`` pairs (this rank's share).

    Under torch.distributed, the phone inventory is united over ranks and all statistics are
    all-reduced, so every rank returns the same models. With ``duration_type`` (e.g.
    "gamma") the models get explicit state durations, trained last by
    ``duration_iterations`` semi-Markov EM iterations (``train_explicit_durations``).
    ``min_frames_per_gaussian``: see :func:`train_on_utterances`.
    Returns ``(models, history)``.
    """
    local = sorted({p for _, t in data for p in t.phones})
    inventory = sorted({p for part in _gather(local) for p in part})
    if not inventory:
        raise InvalidInputError("no usable utterance in the corpus")
    dims = {f.values.shape[1] for f, _ in data}
    dim = sorted({d for part in _gather(sorted(dims)) for d in part})
    if len(dim) != 1:
        raise InvalidInputError(f"utterances have different feature dimensions {dim}")
    config = data[0][0].config if data else FeatureConfig()
    models = PhoneModels(inventory, states_per_phone, dim[0], num_mixtures, covariance_type, min_covar,
                         config, silence, duration_type=duration_type, class_prior=class_prior,
                         acoustic_prior=acoustic_prior).to(device)
    pairs = [(f.values.to(device), t) for f, t in data]
    if not pairs and _dist()[1] == 1:
        raise InvalidInputError("no usable utterance in the corpus")
    if not pairs:
        raise InvalidInputError("this rank has no usable utterance; use fewer processes than files")
    history = train_on_utterances(models, pairs, iterations, mixup_iterations, seed, all_reduce_stats, progress,
                                  init=init, acoustic_scales=annealing_schedule(anneal, iterations),
                                  min_frames_per_gaussian=min_frames_per_gaussian)
    if context_min_count:
        # Context-dependent boundary states: a (phone, neighbour) pair seen often enough
        # (over all ranks) gets its own first / last state, then EM goes on.
        counts: dict[str, int] = {}
        for _, t in pairs:
            for key in models.context_keys(t.phones):
                counts[key] = counts.get(key, 0) + 1
        merged: dict[str, int] = {}
        for part in _gather(counts):
            for key, value in part.items():
                merged[key] = merged.get(key, 0) + value
        models.add_context_states(sorted(k for k, c in merged.items() if c >= context_min_count))
        history += reestimate(models, pairs, context_iterations, all_reduce_stats, progress, len(history))
    if models.durations is not None:
        history += train_explicit_durations(models, pairs, duration_iterations, all_reduce_stats, progress,
                                            len(history))
    return models, history


def write_alignment(out_dir: Path, name: str, tiers: dict, duration: float,
                    formats: Sequence[str] = ("textgrid",)) -> None:
    """Write one utterance's tiers as ``out_dir/name.TextGrid`` / ``.csv`` / ``.json`` (the
    ``formats``; CSV and JSON keep each phone's confidence, which a TextGrid cannot); a
    speaker's subfolder is created as needed."""
    base = out_dir / name
    base.parent.mkdir(parents=True, exist_ok=True)
    for kind in formats:
        path = base.parent / f"{base.name}{EXPORT_SUFFIXES[kind]}"
        if kind == "textgrid":
            write_textgrid(path, tiers, duration)
        elif kind == "csv":
            segments_to_csv(tiers, path)
        else:
            segments_to_json(tiers, duration, path)


def check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """``formats`` as a tuple, or InvalidParameterError naming an unknown one (or none at all)."""
    formats = tuple(formats)
    unknown = [f for f in formats if f not in EXPORT_SUFFIXES]
    if unknown or not formats:
        raise InvalidParameterError(f"output formats must be some of {sorted(EXPORT_SUFFIXES)}, got {list(formats)}")
    return formats


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


def analysis_row(name: str, result, fit: dict) -> dict:
    """One row of :data:`ANALYSIS_FILE` (columns :data:`ANALYSIS_COLUMNS`): the file, its
    :func:`~hmm_engine.alignment.aligner.transcript_fit` and its forward log-likelihood per
    frame (NaN without confidences)."""
    return {"name": name, "duration_s": round(result.duration, 3), "phones": len(result.phones),
            "worst_phone_fit": fit.get("worst_phone_fit", math.nan), "worst_phone": fit.get("worst_phone", ""),
            "worst_phone_start_s": fit.get("worst_phone_start_s", math.nan),
            "transcript_fit_per_frame": fit.get("transcript_fit_per_frame", math.nan),
            "log_likelihood_per_frame": result.log_likelihood / max(result.num_frames, 1)}


def worst_first(rows: Sequence[dict]) -> list[dict]:
    """Analysis rows ordered as :data:`ANALYSIS_FILE` is: the worst-fitting phone first."""
    fit = "worst_phone_fit"
    return sorted(rows, key=lambda r: (math.isnan(r[fit]), r[fit], r["name"]))


def write_analysis(path: Path, rows: Sequence[dict]) -> None:
    """Write :data:`ANALYSIS_FILE`: one row per aligned file, in :func:`worst_first` order."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=ANALYSIS_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in worst_first(rows):
            writer.writerow({key: _cell(value) for key, value in row.items()})


def _cell(value):
    """A CSV cell: floats to 4 decimals, NaN as empty."""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4f}"
    return value


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
            (``hmm_engine.alignment.acoustic_prior``); 0 disables it. Default 1: on a
            150-utterance tuning corpus 86.3 -> 88.1% of boundaries within 20 ms (0.5: 86.8,
            2: 87.8, 3: 87.8), and 88.8 -> 91.8% (2: 91.5) once espeak-ng's references put
            stop closures in the stops.
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
            (:func:`~hmm_engine.alignment.aligner.choose_pronunciations`) before alignment.
        pronunciation_rounds: with a dictionary and models trained here, rounds of choosing
            the pronunciations then :data:`PRONUNCIATION_ITERATIONS` EM iterations before the
            last choice. On festival / flite utterances whose dictionary lists both "to" -> "t uw"
            / "t ax" and "the" -> "dh ax" / "dh iy": phone mismatches against what was said
            108 (first pronunciations) -> 91 (one choice) -> 73 (3 rounds) -> 64 (6 rounds).
        analysis: write :data:`ANALYSIS_FILE` (:func:`analysis_row` per file, the worst
            transcript fit first; about 3 ms a 2.4 s file on 2 CPU cores, a little more than
            aligning it).
        formats: what each aligned file gets, some of :data:`EXPORT_SUFFIXES` (``"textgrid"``,
            ``"csv"``, ``"json"``; the last two keep each phone's confidence).
    Returns:
        :class:`CorpusReport`.
    Raises:
        InvalidInputError: missing corpus folder, no audio file, or no usable file at all.
        InvalidParameterError: an unknown format; a dictionary with ``phones=True``; negative
            ``pronunciation_rounds``.
        TranscriptError: an unreadable or malformed dictionary.
    """
    formats = check_formats(formats)
    if not (isinstance(pronunciation_rounds, int) and pronunciation_rounds >= 0):
        raise InvalidParameterError(f"pronunciation_rounds must be a whole number >= 0, got {pronunciation_rounds!r}")
    if dictionary is not None and phones:
        raise InvalidParameterError("a pronunciation dictionary is for word transcripts: phones=True gives phones")
    if dictionary is not None and not isinstance(dictionary, Mapping):
        dictionary = read_dictionary(dictionary)
    rank, world = _dist()
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
        counts = _gather((len(loaded), sum(f.duration for _, f, _ in loaded)))
        result.num_train_files = sum(c[0] for c in counts)
        result.audio_seconds = sum(c[1] for c in counts)
        if result.num_train_files == 0:
            for line in problems + load_problems:
                report(f"report: {line}")
            raise InvalidInputError(f"no usable file in '{corpus_dir}' ({len(files)} with transcripts)")
        said = _say_now(problems + load_problems, report, world)
        # Words with several pronunciations: rounds of choosing and re-estimating (HTK's
        # realignment step, repeated), as training with the first listed biases the models.
        rounds = pronunciation_rounds if models is None and _count_variants(loaded)[0] else 0
        if models is None:
            bar = _TrainingBar(_training_steps(iterations, num_mixtures, mixup_iterations,
                                               context_iterations if context_min_count else 0,
                                               duration_iterations if duration_type else 0)
                               + rounds * PRONUNCIATION_ITERATIONS, show_progress)
            models, history = train_corpus(
                [(f, t) for _, f, t in loaded], states_per_phone, num_mixtures, iterations, mixup_iterations,
                covariance_type, min_covar, silence, device, seed, bar, init, anneal,
                context_min_count, context_iterations, duration_type, duration_iterations, class_prior,
                acoustic_prior, min_frames_per_gaussian,
            )
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
        t2 = time.perf_counter()
        loaded = [(item, f, choose_pronunciations(models, f, t)[0]) for item, f, t in loaded]
        result.words_with_variants, result.pronunciations_changed = _count_variants(loaded)
        aligned, align_problems, rows = align_files(models, loaded, out, confidence,
                                                    show_progress and rank == 0, formats, analysis)
        rows = [row for part in _gather(rows) for row in part]
        if analysis and rank == 0:
            result.analysis_path = out / ANALYSIS_FILE
            result.analysis = worst_first(rows)
            write_analysis(result.analysis_path, rows)
        t3 = time.perf_counter()
    result.aligned = aligned
    result.history = history
    result.timings = {"loading": t1 - t0, "training": t2 - t1, "alignment": t3 - t2}
    return _finish(result, (problems if rank == 0 else []) + load_problems + align_problems, report, said)


def _say_now(lines: list[str], report: Callable[[str], None], world: int) -> list[str]:
    """In a single process, the loading problems are reported before training, so a later
    failure (a write error) does not lose them; returns the lines said."""
    if world > 1:
        return []  # every rank's lines are gathered and said at the end
    for line in sorted(lines):
        report(f"report: {line}")
    return list(lines)


def _count_variants(loaded) -> tuple[int, int]:
    """Over all ranks: words with several dictionary pronunciations, and how many of them are
    currently spoken with another than the first listed."""
    words = [word for _, _, transcript in loaded for word in transcript.words if word.variants]
    totals = _gather((len(words), sum(word.phones != word.variants[0] for word in words)))
    return sum(t[0] for t in totals), sum(t[1] for t in totals)


def _finish(result: CorpusReport, own_lines: list[str], report: Callable[[str], None],
            said: list[str] = ()) -> CorpusReport:
    """Every rank's report lines into ``result.skipped`` (rank 0 prints those not ``said``
    already), then a barrier."""
    rank, world = _dist()
    result.skipped = sorted(line for part in _gather(own_lines) for line in part)
    if rank == 0:
        for line in result.skipped:
            if line not in said:
                report(f"report: {line}")
    if world > 1:
        torch.distributed.barrier()
    return result


def _training_steps(iterations: int, num_mixtures: int, mixup_iterations: int, context_iterations: int,
                    duration_iterations: int) -> int:
    """EM iterations a training run reports (the progress bar's length)."""
    steps, m = iterations + context_iterations + duration_iterations, 1
    while m < num_mixtures:
        m = min(2 * m, num_mixtures)
        steps += max(1, mixup_iterations)
    return steps
