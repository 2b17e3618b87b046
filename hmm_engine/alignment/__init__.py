"""Forced alignment: transcripts, phone HMMs, corpus training, TextGrids and metrics."""

# Long recordings, TTS durations, confidence tiers (docs/long-recordings.md, docs/tts.md).
from hmm_engine.alignment.long_form import LongAlignment, Piece, align_corpus_long, align_long  # noqa: E402,F401
from hmm_engine.alignment.textgrids import confidence_tiers, read_confidences  # noqa: E402,F401
from hmm_engine.alignment.tts import MelGrid, UtteranceDurations, num_mel_frames, phone_durations  # noqa: E402,F401
