"""Compatibility names for code written before the alignment package was split by job.

Import from :mod:`hmm_engine.alignment` (or the module that does the job: ``utterance``,
``training``, ``decoding``, ``pronunciations``, ``analysis``, ``transcripts``, ``inputs``).
"""

from hmm_engine.alignment.analysis import TranscriptFit, transcript_fit  # noqa: F401
from hmm_engine.alignment.decoding import (  # noqa: F401
    AlignmentResult,
    BoundaryOption,
    Decoded,
    align_features,
    posterior_boundaries,
    viterbi_segments,
)
from hmm_engine.alignment.inputs import MAX_CHAIN_CELLS, check_chain_size, compute_features  # noqa: F401
from hmm_engine.alignment.pronunciations import choose_pronunciations  # noqa: F401
from hmm_engine.alignment.training import (  # noqa: F401
    InitOption,
    annealing_schedule,
    flat_start_stats,
    reestimate,
    train_explicit_durations,
    train_on_utterances,
    utterance_posteriors,
    utterance_stats,
)
from hmm_engine.alignment.transcripts import PreparedTranscript, SilenceOption, prepare_transcript  # noqa: F401
from hmm_engine.alignment.utterance import SINGLE_UTTERANCE_FEATURES, align_utterance  # noqa: F401
