"""What may enter alignment: features of a source, and the memory bound of a chain DP
(checked before the expensive step)."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor

from hmm_engine.alignment.phone_models import PhoneModels
from hmm_engine.alignment.transcripts import PreparedTranscript
from hmm_engine.errors import InvalidInputError
from hmm_engine.frontend.audio import Audio, load_audio
from hmm_engine.frontend.features import FeatureConfig, Features, extract_features


def compute_features(source, feature_config: FeatureConfig | None = None, frame_shift: float | None = None) -> Features:
    """Features of ``source``: a path, an :class:`Audio`, :class:`Features`, or a ``[T, D]`` tensor.

    A bare tensor needs ``frame_shift`` (seconds; default the config's); its duration is
    taken as ``T * frame_shift``.
    """
    config = feature_config or FeatureConfig()
    if isinstance(source, Features):
        return source
    if isinstance(source, (str, os.PathLike)):
        source = load_audio(source)
    if isinstance(source, Audio):
        return extract_features(source, config)
    if isinstance(source, (Tensor, np.ndarray)):
        values = torch.as_tensor(source, dtype=torch.float32)
        if values.dim() != 2 or values.shape[0] == 0:
            raise InvalidInputError(f"features must be a [T, D] array with T >= 1, got shape {tuple(values.shape)}")
        if not torch.isfinite(values).all():
            raise InvalidInputError("features contain NaN or infinite values")
        shift = frame_shift if frame_shift is not None else config.frame_shift_ms / 1000.0
        return Features(values.contiguous(), shift, config, values.shape[0] * shift)
    raise InvalidInputError(f"cannot align a {type(source).__name__}: give a path, Audio, Features or a [T, D] tensor")





# The chain DPs keep a few [frames x chain positions] float64 / int64 arrays (Viterbi, forward-
# backward, confidences): about 40 bytes a cell, measured (a 63 s utterance, 6330 frames x 2067
# positions = 13M cells, took 0.5 GB more). A whole 10-minute recording in one piece would need
# tens of GB; above this many cells an utterance is refused with a clear message instead.
MAX_CHAIN_CELLS = 100_000_000
BYTES_PER_CHAIN_CELL = 40


def check_chain_size(num_frames: int, num_positions: int) -> None:
    """Raise InvalidInputError when aligning ``num_frames`` against a chain of
    ``num_positions`` would take more than :data:`MAX_CHAIN_CELLS` cells of DP memory."""
    cells = num_frames * num_positions
    if cells > MAX_CHAIN_CELLS:
        raise InvalidInputError(
            f"{num_frames} frames x {num_positions} HMM states is {cells / 1e6:.0f}M cells, about "
            f"{cells * BYTES_PER_CHAIN_CELL / 1e9:.1f} GB to align in one piece (limit {MAX_CHAIN_CELLS / 1e6:.0f}M "
            f"cells): split the recording into utterances of a minute or two"
        )


def check_length(models: PhoneModels, transcript: PreparedTranscript, num_frames: int, frame_shift: float) -> None:
    need = models.min_frames(transcript.optional)
    if num_frames < need:
        raise InvalidInputError(
            f"the transcript has {need} mandatory HMM states ({need // models.states_per_phone} phones x "
            f"{models.states_per_phone} states) but the audio has only {num_frames} frames; at least {need} "
            f"frames ({need * frame_shift:.3f} s) are needed: use fewer states per phone or check the transcript"
        )
    check_chain_size(num_frames, len(transcript.phones) * models.states_per_phone)

