"""Forced alignment: transcripts, phone HMMs, training, decoding, corpus recipes, TextGrids, metrics.

Modules, from the bottom up: :mod:`~.transcripts` (text -> phones, the sequence to align),
:mod:`~.phone_models` (tied phone HMMs), :mod:`~.inputs` (features of a source, size limits),
:mod:`~.training` (flat start, embedded EM, :class:`TrainingConfig`), :mod:`~.decoding`
(Viterbi, confidences, :class:`AlignmentResult`), :mod:`~.pronunciations` (choosing dictionary
variants), :mod:`~.analysis` (transcript fit, the analysis CSV), :mod:`~.utterance` (one
utterance: the Align tab's recipe), :mod:`~.corpus_io` (corpus files in and out),
:mod:`~.distributed` (torch.distributed plumbing), :mod:`~.recipes` (corpus alignment and
labelled training).
"""

from hmm_engine.alignment.analysis import (
    ANALYSIS_COLUMNS,
    ANALYSIS_FILE,
    TranscriptFit,
    analysis_row,
    transcript_fit,
    worst_first,
    write_analysis,
)
from hmm_engine.alignment.corpus_io import (
    CorpusFile,
    check_formats,
    find_corpus_files,
    load_corpus,
    load_labelled_segments,
    write_alignment,
)
from hmm_engine.alignment.decoding import AlignmentResult, Decoded, align_features, posterior_boundaries, viterbi_segments
from hmm_engine.alignment.inputs import MAX_CHAIN_CELLS, check_chain_size, compute_features
from hmm_engine.alignment.phone_models import PhoneModels
from hmm_engine.alignment.pronunciations import choose_pronunciations
from hmm_engine.alignment.recipes import (
    MIN_FRAMES_PER_GAUSSIAN,
    MODEL_FILE,
    PRONUNCIATION_ITERATIONS,
    CorpusReport,
    align_corpus,
    align_files,
    train_labelled,
)
from hmm_engine.alignment.training import (
    TrainingConfig,
    annealing_schedule,
    flat_start_stats,
    map_adapt_means,
    reestimate,
    train_corpus,
    train_explicit_durations,
    train_on_utterances,
    utterance_posteriors,
    utterance_stats,
)
from hmm_engine.alignment.transcripts import PreparedTranscript, Word, prepare_transcript, read_dictionary
from hmm_engine.alignment.shipped import SHIPPED_MODELS_PATH, shipped_phone_models
from hmm_engine.alignment.utterance import SINGLE_UTTERANCE_FEATURES, align_utterance

__all__ = [
    "ANALYSIS_COLUMNS", "ANALYSIS_FILE", "AlignmentResult", "CorpusFile", "CorpusReport", "Decoded",
    "MAX_CHAIN_CELLS", "MIN_FRAMES_PER_GAUSSIAN", "MODEL_FILE", "PRONUNCIATION_ITERATIONS", "PhoneModels",
    "PreparedTranscript", "SINGLE_UTTERANCE_FEATURES", "TrainingConfig", "TranscriptFit", "Word",
    "SHIPPED_MODELS_PATH", "shipped_phone_models",
    "align_corpus", "align_features", "align_files", "align_utterance", "analysis_row", "annealing_schedule",
    "check_chain_size", "check_formats", "choose_pronunciations", "compute_features", "find_corpus_files",
    "flat_start_stats", "load_corpus", "load_labelled_segments", "posterior_boundaries", "prepare_transcript",
    "map_adapt_means", "read_dictionary", "reestimate", "train_corpus", "train_explicit_durations", "train_labelled",
    "train_on_utterances", "transcript_fit", "utterance_posteriors", "utterance_stats", "viterbi_segments",
    "worst_first", "write_alignment", "write_analysis",
    "LongAlignment", "Piece", "align_corpus_long", "align_long", "confidence_tiers", "read_confidences",
    "MelGrid", "UtteranceDurations", "num_mel_frames", "phone_durations",
]

# Long recordings, TTS durations, confidence tiers (docs/long-recordings.md, docs/tts.md).
from hmm_engine.alignment.long_form import LongAlignment, Piece, align_corpus_long, align_long  # noqa: E402,F401
from hmm_engine.alignment.textgrids import confidence_tiers, read_confidences  # noqa: E402,F401
from hmm_engine.alignment.tts import MelGrid, UtteranceDurations, num_mel_frames, phone_durations  # noqa: E402,F401
