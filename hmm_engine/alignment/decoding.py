"""Decoding one utterance with fixed phone models: Viterbi (plain or semi-Markov) through
its chain, per-segment confidences from forward-backward, optional posterior boundaries, and
the :class:`AlignmentResult` every alignment mode returns.

Confidence of a phone segment, in [0.001, 1]: the mean, over its frames, of the posterior
probability (forward-backward, same models) that the frame belongs to the phone Viterbi gave
it; near 1 means the models leave little doubt about the boundaries around that frame run.
Two things the models cannot see lower it, because on real recordings they mean a wrong
alignment whatever the posteriors say:

- a speech phone over stretches that look like the clip's own noise floor
  (:func:`hmm_engine.frontend.speech.nonspeech_stretches`) is multiplied by the fraction of
  its frames that are not there;
- a speech phone squeezed to the fewest frames its states allow is multiplied by
  :data:`SQUEEZED_FACTOR` (real phones are rarely that short; a transcript with words the audio
  lacks squeezes them).

The floor of 0.001 keeps every confidence visible as a number (a CSV rounds to 4 decimals).
:func:`fit_warnings` says in words when the transcript seems not to fit the audio.
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
from hmm_engine.frontend.speech import SpeechActivity, nonspeech_stretches, speech_activity
from hmm_engine.segments import Segment, label_runs

BoundaryOption = Literal["viterbi", "posterior"]
SQUEEZED_FACTOR = 0.2
# Mean speech-phone duration above which fit_warnings says the transcript may lack words.
MAX_MEAN_PHONE_SECONDS = 0.25
# Share of speech phones at their minimum duration that makes the transcript suspect.
SQUEEZED_SHARE = 0.15
MIN_CONFIDENCE = 0.001
# Shortest non-speech stretch (frames) that lowers a phone's confidence / counts in the warnings.
NONSPEECH_FRAMES = 12


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
        activity: the clip's speech/non-speech evidence (computed with the confidences,
            reused by :func:`fit_warnings`), or None.
    """

    phones: list[Segment]
    words: list[Segment] | None
    frame_states: np.ndarray
    frame_phones: np.ndarray
    viterbi_score: float
    log_likelihood: float
    activity: SpeechActivity | None = None


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
        path, viterbi_score = chain_segment_viterbi(chain, *log_dur, log_obs)
    else:
        path, viterbi_score = chain_viterbi(chain, log_obs)
    frame_conf = None
    log_lik = math.nan
    post = None
    if confidence or boundaries == "posterior":
        post = chain_segment_forward_backward(chain, *log_dur, log_obs) if explicit else chain_forward_backward(chain, log_obs)
        if confidence:
            # Posterior of the frame's phone (all its states), not of one state.
            phone_post = post.gamma.reshape(path.shape[0], len(transcript.phones), -1).sum(2)
            frame_conf = phone_post[np.arange(path.shape[0]), phone_of[path]]
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
    activity = clip_activity(features) if frame_conf is not None else None
    quiet = nonspeech_stretches(activity, NONSPEECH_FRAMES) if activity is not None else None
    min_frames = models.states_per_phone
    for k, (index, a, b) in enumerate(runs):
        seg_score = None
        if frame_conf is not None:
            seg_score = float(frame_conf[a:b].mean())
            if transcript.phones[index] != models.silence:
                seg_score *= 1.0 - float(quiet[a:b].mean())
                if b - a <= min_frames:
                    seg_score *= SQUEEZED_FACTOR
            seg_score = min(1.0, max(MIN_CONFIDENCE, seg_score))
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
    return Decoded(segments, words, state_ids[path], frame_phones, float(viterbi_score), float(log_lik),
                   activity)


def clip_activity(features: Features) -> SpeechActivity:
    """The clip's speech/non-speech evidence (a two-class fit: the costly part, so computed once)."""
    return speech_activity(features.values.detach().cpu().numpy(), features.config)



def fit_warnings(phones: list[Segment], features: Features, silence: str, states_per_phone: int,
                 activity: SpeechActivity | None = None) -> list[str]:
    """Sentences saying where the transcript seems not to fit the audio (empty when it fits):
    speech phones over the clip's noise floor, phones squeezed to their minimum duration, and
    long speech-like stretches aligned to silence (words the transcript may lack). Each starts
    with "the transcript may not match the audio"."""
    shift = features.frame_shift
    if activity is None:
        activity = clip_activity(features)
    quiet = nonspeech_stretches(activity, NONSPEECH_FRAMES)
    speech = [s for s in phones if s.label != silence]
    notes: list[str] = []

    def frames(seg: Segment) -> tuple[int, int]:
        return int(round(seg.start / shift)), max(int(round(seg.start / shift)) + 1, int(round(seg.end / shift)))

    over = [s for s in speech if quiet[slice(*frames(s))].mean() >= 0.5]
    if over:
        where = ", ".join(f"'{s.label}' at {s.start:.2f} s" for s in over[:4])
        notes.append(f"{len(over)} speech phone(s) lie mostly over stretches that sound like the recording's "
                     f"background noise ({where})")
    squeezed = [s for s in speech if frames(s)[1] - frames(s)[0] <= states_per_phone]
    # A floor of >= 30 ms (3-state models) is a normal length for short phones: pocketsphinx puts
    # up to 16% of the phones of a real clip there (benchmarks/real_speech.py clips), so warn later.
    share = SQUEEZED_SHARE if states_per_phone * shift < 0.03 - 1e-9 else 2 * SQUEEZED_SHARE
    if len(squeezed) >= max(3, share * len(speech)):
        where = ", ".join(f"'{s.label}' at {s.start:.2f} s" for s in squeezed[:4])
        notes.append(f"{len(squeezed)} of {len(speech)} phones are squeezed to their shortest possible duration "
                     f"({where}): the audio may lack words of the transcript")
    if speech:
        mean = sum(s.duration for s in speech) / len(speech)
        if mean > MAX_MEAN_PHONE_SECONDS:
            notes.append(f"its {len(speech)} phones last {1000 * mean:.0f} ms on average (speech runs at 60-150 ms "
                         f"a phone): the transcript may lack words spoken in the recording")
    if activity.informative:
        loud = (activity.speech_prob > 0.9)
        for seg in phones:
            if seg.label != silence:
                continue
            a, b = frames(seg)
            run, best = 0, 0
            for value in loud[a:b]:
                run = run + 1 if value else 0
                best = max(best, run)
            if best * shift >= 0.3:
                notes.append(f"{best * shift:.2f} s of speech-like sound inside the silence at {seg.start:.2f}-"
                             f"{seg.end:.2f} s: the transcript may lack words spoken there")
    return [f"the transcript may not match the audio: {note}" for note in notes]


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
        warnings: sentences saying where the transcript seems not to fit the audio
            (:func:`fit_warnings`; empty when nothing looks wrong or without confidences).
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
    warnings: list[str] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return int(self.frame_states.shape[0])

    @classmethod
    def from_decoded(cls, out: Decoded, transcript: PreparedTranscript, history: list[float],
                     timings: dict[str, float], features: Features, models: PhoneModels) -> "AlignmentResult":
        warnings = []
        if out.phones and out.phones[0].score is not None:
            warnings = fit_warnings(out.phones, features, models.silence, models.states_per_phone, out.activity)
        return cls(out.phones, out.words, out.frame_states, out.frame_phones, transcript, out.log_likelihood,
                   out.viterbi_score, history, timings, features.frame_shift, features.duration, models, warnings)

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

