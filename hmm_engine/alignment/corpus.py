"""Compatibility names for code written before the alignment package was split by job.

Import from :mod:`hmm_engine.alignment` (or the module that does the job: ``recipes``,
``corpus_io``, ``training``, ``analysis``).
"""

from hmm_engine.alignment.analysis import (  # noqa: F401
    ANALYSIS_COLUMNS,
    ANALYSIS_FILE,
    analysis_row,
    worst_first,
    write_analysis,
)
from hmm_engine.alignment.corpus_io import (  # noqa: F401
    CorpusFile,
    check_formats,
    find_corpus_files,
    load_corpus,
    load_labelled_segments,
    write_alignment,
)
from hmm_engine.alignment.recipes import (  # noqa: F401
    MIN_FRAMES_PER_GAUSSIAN,
    MODEL_FILE,
    PRONUNCIATION_ITERATIONS,
    CorpusReport,
    align_corpus,
    align_files,
    train_labelled,
)
from hmm_engine.alignment.training import TrainingConfig, train_corpus  # noqa: F401
