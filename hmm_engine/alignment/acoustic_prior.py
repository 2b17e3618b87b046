"""An acoustic-phonetic prior for alignment: loudness and spectral tilt by broad phone class.

Flat-start EM on one utterance has no idea what any phone sounds like: it can label a stretch
of frames with the phones one or two places further along the transcript and still explain
them well. Two facts of phonetics hold for any speaker and break that symmetry:

- *sonority*: vowels are the loudest sounds, then approximants (l r w j), nasals, then
  fricatives, affricates and stops (whose closure is near silence), then silence;
- *spectral tilt*: vowels, nasals and approximants put their energy in low frequencies,
  fricatives and affricates in high frequencies.

For each frame two cues are measured from the features themselves, the log energy (MFCC
c0, or the mean of the log-mel bands) and the tilt (MFCC c1, or the same cosine-weighted sum
of the log-mel bands), each smoothed over 5 frames and standardised over the utterance. A
chain position of class ``c`` then gets ``scale * (LOUDNESS[c] * z_energy[t] + TILT[c] *
z_tilt[t])`` added to its emission log-likelihood at frame ``t`` (:func:`prior_scores`). The
weights are fixed numbers written from the two facts above, not fitted to any data; only
``scale`` was chosen, on synthetic tuning corpora (see
docs/alignment-tuning.md).
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from hmm_engine.frontend.features import FeatureConfig

# Sonority order: loud (+) to quiet (-).
LOUDNESS = {"vowel": 1.0, "approximant": 0.5, "nasal": 0.0, "fricative": -0.5, "affricate": -0.5,
            "stop": -0.5, "silence": -1.0}
# Low-frequency (+) versus high-frequency (-) energy.
TILT = {"vowel": 0.5, "approximant": 0.5, "nasal": 0.7, "fricative": -1.0, "affricate": -0.7,
        "stop": -0.3, "silence": 0.0}
SMOOTH_FRAMES = 5


def _standardise(values: np.ndarray) -> np.ndarray:
    # Moving average over the frames that exist (fewer at the edges, so no shrinking towards
    # zero there; also right for utterances shorter than the window).
    T, half = values.shape[0], SMOOTH_FRAMES // 2
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    lo, hi = np.maximum(np.arange(T) - half, 0), np.minimum(np.arange(T) + half + 1, T)
    smooth = (cumulative[hi] - cumulative[lo]) / (hi - lo)
    std = smooth.std()
    return (smooth - smooth.mean()) / (std if std > 1e-12 else 1.0)


def acoustic_cues(x: Tensor, config: FeatureConfig) -> Optional[np.ndarray]:
    """``[T, 2]`` standardised (log energy, spectral tilt) per frame, or None when the
    features carry neither (a log-mel front end with fewer than 2 bands).

    For MFCCs the cues are c0 and c1; for log-mel features they are the same two DCT
    projections of the static bands.
    """
    values = x.detach().to("cpu", torch.float64).numpy()
    if config.kind == "mfcc":
        if values.shape[1] < 2 or config.num_ceps < 2:
            return None
        energy, tilt = values[:, 0], values[:, 1]
    else:
        bands = values[:, : config.num_mels]
        B = bands.shape[1]
        if B < 2:
            return None
        energy = bands.mean(1)
        tilt = bands @ np.cos(math.pi * (np.arange(B) + 0.5) / B)
    return np.stack([_standardise(energy), _standardise(tilt)], 1)


def prior_scores(cues: np.ndarray, classes: Sequence[Optional[str]], scale: float,
                 loudness: Mapping[str, float] = LOUDNESS, tilt: Mapping[str, float] = TILT) -> np.ndarray:
    """``[T, S]`` prior log-scores of ``S`` chain positions whose broad classes are
    ``classes`` (None: unknown, no prior), from ``cues [T, 2]`` (:func:`acoustic_cues`)."""
    w_energy = np.array([loudness.get(c, 0.0) if c else 0.0 for c in classes])
    w_tilt = np.array([tilt.get(c, 0.0) if c else 0.0 for c in classes])
    return scale * (cues[:, :1] * w_energy[None, :] + cues[:, 1:2] * w_tilt[None, :])


__all__ = ["LOUDNESS", "TILT", "acoustic_cues", "prior_scores"]
