"""Exceptions raised by hmm_engine.

Every error a user can cause derives from :class:`HMMStudioError`, which is a
``ValueError`` so that callers who only know the standard library still catch it.
"""


class HMMStudioError(ValueError):
    """Base class of all input and parameter errors raised by hmm_engine."""


class InvalidParameterError(HMMStudioError):
    """A model parameter has the wrong shape, is not a distribution, or is not positive definite."""


class InvalidInputError(HMMStudioError):
    """Observations or lengths are malformed (wrong shape, NaN, more states than frames...)."""


class AudioError(HMMStudioError):
    """Audio could not be read, or is empty, silent, too short or too long."""


class TranscriptError(HMMStudioError):
    """A transcript is empty or cannot be turned into phones."""


class TextGridError(HMMStudioError):
    """A TextGrid is malformed or lacks the requested tier."""


class ModelFileError(HMMStudioError):
    """A saved model file is corrupt, foreign, or of an unknown version."""
