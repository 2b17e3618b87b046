"""Decoding one utterance with fixed phone models: Viterbi (plain or semi-Markov) through
its chain, per-segment confidences from forward-backward, optional posterior boundaries, and
the :class:`AlignmentResult` every alignment mode returns.

Confidence of a phone segment: the mean, over its frames, of the posterior probability
(forward-backward, same models) of the chain state that Viterbi chose for the frame. It is
in [0, 1]; near 1 means the models leave little doubt about the boundaries around that
frame run, low values flag segments whose extent is uncertain.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from hmm_engine.alignment.inputs import check_length
from hmm_engine.alignment.phone_models import PhoneModels
from hmm_engine.alignment.transcripts import PreparedTranscript
from hmm_engine.errors import InvalidParameterError
from hmm_engine.frontend.features import Features
from hmm_engine.inference.chain import (
    chain_forward_backward,
    chain_segment_forward_backward,
    chain_segment_viterbi,
    chain_viterbi,
)
from hmm_engine.segments import Segment, label_runs

BoundaryOption = Literal["viterbi", "posterior"]


@dataclass
class Decoded:
    """What :func:`viterbi_segments` finds in one utterance.

    Attributes:
        phones: phone tier (score = confidence, or None without confidences).
        words: word tier, or None for a bare phone transcript.
        frame_states: ``[T]`` tied state id of each frame.
        frame_phones: ``[T]`` index into ``transcript.phones`` of each frame (Viterbi).
        viterbi_score: log-probability of the best path.
        log_likelihood: forward log p(x | transcript, models); NaN when neither confidences
            nor posterior boundaries were asked for.
    """

    phones: list[Segment]
    words: list[Segment] | None
    frame_states: np.ndarray
    frame_phones: np.ndarray
    viterbi_score: float
    log_likelihood: float


def posterior_boundaries(gamma: np.ndarray, num_phones: int) -> np.ndarray:
    """Expected phone boundaries under the model, in (fractional) frames.

    Args:
        gamma: ``[T, P * N]`` chain-state posteriors (positions grouped by phone).
        num_phones: P.
    Returns:
        ``b [P]``: ``b[i] = E[number of frames whose phone index is <= i]`` (``b[P-1] = T``),
        the minimum-mean-squared-error estimate of the end of phone i (frames, sub-frame
        resolution).
    """
    T = gamma.shape[0]
    phone_post = gamma.reshape(T, num_phones, -1).sum(2)  # [T, P]
    return np.cumsum(phone_post, axis=1).sum(0)


def viterbi_segments(
    models: PhoneModels, features: Features, transcript: PreparedTranscript, confidence: bool = True,
    boundaries: BoundaryOption = "viterbi",
) -> Decoded:
    """Viterbi alignment of one utterance with fixed models.

    Models with explicit durations (``models.durations``) are decoded as semi-Markov chains
    (:func:`chain_segment_viterbi`), others with their self-loops.

    ``boundaries="viterbi"`` puts every boundary on the frame grid where the best path
    changes phone; ``"posterior"`` keeps the Viterbi phone sequence (which optional silences
    appear) but moves each boundary to its expected position under the forward-backward
    posteriors (:func:`posterior_boundaries`), which is not tied to the frame grid.

    Returns a :class:`Decoded`.
    """
    if boundaries not in ("viterbi", "posterior"):
        raise InvalidParameterError(f"boundaries must be 'viterbi' or 'posterior', got {boundaries!r}")
    x = features.values.to(models.log_stay.device)
    check_length(models, transcript, x.shape[0], features.frame_shift)
    explicit = models.durations is not None
    chain, state_ids, phone_of = models.build_chain(transcript.phones, transcript.optional, explicit=explicit)
    log_obs = models.chain_log_obs(x, state_ids).detach().to("cpu", torch.float64).numpy()
    if explicit:
        log_dur = models.chain_durations(state_ids)
        path, viterbi_score = chain_segment_viterbi(chain, log_obs, *log_dur)
    else:
        path, viterbi_score = chain_viterbi(chain, log_obs)
    frame_conf = None
    log_lik = math.nan
    post = None
    if confidence or boundaries == "posterior":
        post = chain_segment_forward_backward(chain, log_obs, *log_dur) if explicit else chain_forward_backward(chain, log_obs)
        frame_conf = post.gamma[np.arange(path.shape[0]), path] if confidence else None
        log_lik = post.log_likelihood
    frame_phones = phone_of[path]
    shift, duration = features.frame_shift, features.duration
    T = path.shape[0]
    runs = label_runs(frame_phones)  # (phone index, first frame, end frame) of the Viterbi path
    edges = [float(a) for _, a, _ in runs] + [float(T)]  # run edges in frames
    if boundaries == "posterior":
        expected = posterior_boundaries(post.gamma, len(transcript.phones))
        moved = [0.0]
        for (left, _, _), (right, _, _) in zip(runs[:-1], runs[1:]):
            # A skipped optional phone between them: split its expected frames in half.
            moved.append(float(expected[left] + (expected[right - 1] - expected[left]) / 2))
        moved.append(float(T))
        if all(b - a > 1e-3 for a, b in zip(moved[:-1], moved[1:])):
            edges = moved
    segments: list[Segment] = []
    phone_extent: dict[int, tuple[float, float]] = {}
    for k, (index, a, b) in enumerate(runs):
        seg_score = float(frame_conf[a:b].mean()) if frame_conf is not None else None
        seg = Segment(transcript.phones[index], edges[k] * shift, min(edges[k + 1] * shift, duration), seg_score)
        segments.append(seg)
        phone_extent[index] = (seg.start, seg.end)
    words = None
    if transcript.spans:
        words = []
        for span in transcript.spans:
            inside = [phone_extent[i] for i in range(span.start, span.end) if i in phone_extent]
            if inside:
                words.append(Segment(span.text, inside[0][0], inside[-1][1]))
    return Decoded(segments, words, state_ids[path], frame_phones, float(viterbi_score), float(log_lik))



@dataclass
class AlignmentResult:
    """One utterance's alignment.

    Attributes:
        phones: phone tier; each segment's ``score`` is its confidence (module docstring).
        words: word tier (None when only phones were given).
        frame_states: ``[T]`` tied state id of each frame (``models.phones[id // N]``, state ``id % N``).
        frame_phones: ``[T]`` index of each frame's phone in ``transcript.phones``.
        transcript: the aligned phone sequence (silences included).
        log_likelihood: forward log p(x | transcript, models) (all paths).
        viterbi_score: log-probability of the best path.
        history: log-likelihood per frame of each EM iteration (empty with given models).
        timings: seconds spent in ``features``, ``training``, ``alignment`` and ``total``.
        frame_shift, duration: seconds.
        models: the phone models used (trained here, or given).
    """

    phones: list[Segment]
    words: list[Segment] | None
    frame_states: np.ndarray
    frame_phones: np.ndarray
    transcript: PreparedTranscript
    log_likelihood: float
    viterbi_score: float
    history: list[float]
    timings: dict[str, float]
    frame_shift: float
    duration: float
    models: PhoneModels = field(repr=False)

    @property
    def num_frames(self) -> int:
        return int(self.frame_states.shape[0])

    @classmethod
    def from_decoded(cls, out: Decoded, transcript: PreparedTranscript, history: list[float],
                     timings: dict[str, float], features: Features, models: PhoneModels) -> "AlignmentResult":
        return cls(out.phones, out.words, out.frame_states, out.frame_phones, transcript, out.log_likelihood,
                   out.viterbi_score, history, timings, features.frame_shift, features.duration, models)

    def tiers(self) -> dict[str, list[Segment]]:
        """``{"phones": ..., "words": ...}`` for :func:`hmm_engine.alignment.textgrids.write_textgrid`."""
        tiers = {"phones": self.phones}
        if self.words:
            tiers["words"] = self.words
        return tiers


def align_features(
    features: Features, transcript: PreparedTranscript, models: PhoneModels, confidence: bool = True,
    boundaries: BoundaryOption = "viterbi",
) -> AlignmentResult:
    """Align prepared features with fixed (trained) models; see :func:`align_utterance`."""
    t0 = time.perf_counter()
    out = viterbi_segments(models, features, transcript, confidence, boundaries)
    elapsed = time.perf_counter() - t0
    return AlignmentResult.from_decoded(out, transcript, [], {"features": 0.0, "training": 0.0, "alignment": elapsed,
                                                              "total": elapsed}, features, models)

