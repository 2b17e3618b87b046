"""Speech / non-speech per frame, from a two-class model fitted to the clip itself.

Real recordings carry room noise before and after the speech, breaths, clicks and pauses.
Before any phone is placed, each frame's level (MFCC c0, or the mean log-mel band: a log
energy on the feature grid, so every frame lines up with the features) is explained by two
Gaussians fitted to this clip by EM, *noise* (the lower mean) and *speech*, and a two-state
HMM with sticky transitions turns their likelihoods into posteriors p(speech | clip) per frame
(:func:`hmm_engine.inference.hmm.forward_backward`). The stickiness bridges the short quiet
stretches inside speech (stop closures); each frame's evidence is capped, so a click of a
frame or two cannot switch the state on its own, while a pause of a few hundred ms can.

Nothing here is trained on other data: the two classes are the clip's own noise floor and
its own speech level. A clip with no pause at all (speech from the first to the last frame)
has no noise class to find; :attr:`SpeechActivity.separation` then stays small and callers
treat the answer as "no evidence" (:func:`speech_activity` returns flat posteriors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from hmm_engine.frontend.features import FeatureConfig
from hmm_engine.inference.hmm import forward_backward
from hmm_engine.segments import label_runs

# Expected run of one class in frames (10 ms each): the self-loop is 1 - 1/RUN.
RUN_FRAMES = 30.0
# Cap on one frame's log-likelihood ratio between the classes (nats): a switch costs two
# transitions (2 log RUN ~ 6.8), so about three frames of clear evidence are needed.
MAX_FRAME_EVIDENCE = 2.5
# Below this separation (difference of the class means over the pooled standard deviation)
# the clip shows no distinct noise floor: no speech/non-speech evidence.
MIN_SEPARATION = 2.0
# Where between the noise mean (0) and the speech mean (1) the evidence changes sign.
SPEECH_BIAS = 0.3
# Frames given back to speech at each inner end of a non-speech stretch (soft onsets/offsets;
# 80 ms: docs/real-recordings.md).
EDGE_MARGIN_FRAMES = 8
EM_ITERATIONS = 20
SMOOTH_FRAMES = 3


@dataclass(frozen=True)
class SpeechActivity:
    """Speech / non-speech of every frame of one clip.

    Attributes:
        speech_prob: ``[T]`` posterior probability that the frame is speech.
        level: ``[T]`` the frame level the classes were fitted to (smoothed log energy).
        noise_mean, speech_mean: the two class means of ``level``.
        separation: ``(speech_mean - noise_mean) / pooled std``; small means no clear classes.
        informative: False when the clip shows no distinct noise floor (``speech_prob`` is
            then 0.5 everywhere).
    """

    speech_prob: np.ndarray
    level: np.ndarray
    noise_mean: float
    speech_mean: float
    separation: float
    informative: bool

    @property
    def num_frames(self) -> int:
        return int(self.speech_prob.shape[0])

    def edges(self, threshold: float = 0.5, min_frames: int = 5) -> tuple[int, int] | None:
        """``(first, stop)`` frames of the speech: the start of the first and the end of the last
        run of at least ``min_frames`` frames whose speech probability exceeds ``threshold``
        (shorter runs are clicks and pops); None when there is none."""
        runs = [(a, b) for is_speech, a, b in label_runs(self.speech_prob > threshold)
                if is_speech and b - a >= min_frames]
        if not runs:
            return None
        return int(runs[0][0]), int(runs[-1][1])


def nonspeech_stretches(activity: SpeechActivity, min_frames: int = 12, threshold: float = 0.5,
                        margin: int = EDGE_MARGIN_FRAMES) -> np.ndarray:
    """``[T]`` bool: frames inside a run of at least ``min_frames`` frames whose speech
    probability is at most ``threshold`` (room noise before / after the speech, long pauses;
    not the short quiet closures inside words), less ``margin`` frames at each end that
    borders speech. All False when the clip is not informative."""
    T = activity.num_frames
    mask = np.zeros(T, dtype=bool)
    if not activity.informative:
        return mask
    quiet = activity.speech_prob <= threshold
    t = 0
    while t < T:
        if quiet[t]:
            stop = t
            while stop < T and quiet[stop]:
                stop += 1
            if stop - t >= min_frames:
                first = t + (margin if t > 0 else 0)
                last = stop - (margin if stop < T else 0)
                mask[first:max(first, last)] = True
            t = stop
        else:
            t += 1
    return mask


def frame_level(values: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """``[T]`` log-energy-like level of each feature frame: MFCC c0, or the mean log-mel band."""
    values = np.asarray(values, dtype=np.float64)
    if config.kind == "mfcc":
        return values[:, 0].copy()
    return values[:, : max(1, config.num_mels)].mean(1)


def _smooth(values: np.ndarray, width: int) -> np.ndarray:
    T, half = values.shape[0], width // 2
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    lo, hi = np.maximum(np.arange(T) - half, 0), np.minimum(np.arange(T) + half + 1, T)
    return (cumulative[hi] - cumulative[lo]) / (hi - lo)


def _fit_two_classes(level: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EM for a two-Gaussian mixture on a 1-D signal, started at its 10th / 90th percentiles.
    Returns ``(means [2], variances [2], weights [2])``, noise first."""
    lo, hi = np.percentile(level, [10.0, 90.0])
    means = np.array([lo, hi], dtype=np.float64)
    spread = max(float(level.var()), 1e-6)
    variances = np.array([spread / 4, spread / 4])
    weights = np.array([0.5, 0.5])
    floor = max(spread * 1e-3, 1e-6)
    for _ in range(EM_ITERATIONS):
        log_p = -0.5 * ((level[:, None] - means) ** 2 / variances + np.log(2 * math.pi * variances)) + np.log(weights)
        resp = np.exp(log_p - np.logaddexp(log_p[:, :1], log_p[:, 1:]))
        n = resp.sum(0) + 1e-9
        means = (resp * level[:, None]).sum(0) / n
        variances = np.maximum((resp * (level[:, None] - means) ** 2).sum(0) / n, floor)
        weights = np.clip(n / n.sum(), 1e-3, 1.0)
    order = np.argsort(means)
    return means[order], variances[order], weights[order]


def speech_activity(values, config: FeatureConfig) -> SpeechActivity:
    """Speech posteriors of every frame of ``values`` (``[T, D]`` features made with ``config``).

    See the module docstring. Costs O(T) (a 1-D EM and a two-state forward-backward).
    """
    level = _smooth(frame_level(values, config), SMOOTH_FRAMES)
    T = level.shape[0]
    if T < 2 * SMOOTH_FRAMES:
        return SpeechActivity(np.full(T, 0.5), level, math.nan, math.nan, 0.0, False)
    means, variances, _ = _fit_two_classes(level)
    pooled = math.sqrt(float(variances.mean()))
    separation = float((means[1] - means[0]) / pooled) if pooled > 0 else 0.0
    if not separation >= MIN_SEPARATION:
        return SpeechActivity(np.full(T, 0.5), level, float(means[0]), float(means[1]), separation, False)
    # Log-likelihood ratio with one pooled variance: linear in the level, zero at SPEECH_BIAS of
    # the way from the noise mean to the speech mean (weak fricatives and the quiet ends of
    # phrases sit well below the speech mean). (With each class's own variance, the very steady noise floor would make
    # any frame a little above it "speech".)
    ratio = (means[1] - means[0]) / pooled ** 2 * (level - (means[0] + SPEECH_BIAS * (means[1] - means[0])))
    ratio = np.clip(ratio, -MAX_FRAME_EVIDENCE, MAX_FRAME_EVIDENCE)
    log_obs = torch.from_numpy(np.stack([-ratio / 2, ratio / 2], 1))[None]
    stay = 1.0 - 1.0 / RUN_FRAMES
    log_trans = torch.log(torch.tensor([[stay, 1 - stay], [1 - stay, stay]], dtype=torch.float64))
    log_start = torch.log(torch.tensor([0.5, 0.5], dtype=torch.float64))
    posteriors, _, _, _ = forward_backward(log_start, log_trans, log_obs)
    prob = posteriors[0, :, 1].numpy().astype(np.float64)
    return SpeechActivity(prob, level, float(means[0]), float(means[1]), separation, True)


__all__ = ["SpeechActivity", "frame_level", "nonspeech_stretches", "speech_activity", "RUN_FRAMES", "MAX_FRAME_EVIDENCE", "MIN_SEPARATION"]
