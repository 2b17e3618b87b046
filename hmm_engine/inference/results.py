"""The named results of every dynamic program (one place, one style: ``NamedTuple``).

Named tuples keep ``post, ll = model.forward_backward(x)`` working while giving each field a
name and a documented shape. Shapes: ``B`` sequences, ``T`` padded frames, ``K`` states,
``Dmax`` longest duration, ``S`` chain positions, ``E`` skip arcs.
"""

from __future__ import annotations

from typing import List, NamedTuple

import numpy as np
from torch import Tensor

__all__ = [
    "StateSegment",
    "ForwardResult",
    "NormalizedForward",
    "NormalizedBackward",
    "ForwardBackwardResult",
    "Posteriors",
    "ViterbiResult",
    "HSMMPosteriors",
    "HSMMViterbiResult",
    "HSMMSample",
    "ChainPosteriors",
    "SegmentChainPosteriors",
]


class StateSegment(NamedTuple):
    """A run of one state in frame units: frames ``[start, end)`` spent in ``state``.

    (Not :class:`hmm_engine.segments.Segment`, which is a labelled interval in seconds.)
    """

    state: int
    start: int
    end: int


class ForwardResult(NamedTuple):
    """:func:`~hmm_engine.inference.hmm.forward`.

    log_alpha ``[B, T, K]``: log p(x_{0:t}, z_t = k); -inf past each length.
    log_likelihood ``[B]``: log p(x).
    """

    log_alpha: Tensor
    log_likelihood: Tensor


class NormalizedForward(NamedTuple):
    """:func:`~hmm_engine.inference.hmm.forward_normalized`.

    log_alpha_hat ``[B, T, K]``: log p(z_t = k | x_{0:t}); each real frame log-sums to 0.
    log_norm ``[B, T]`` float64: log p(x_t | x_{0:t-1}); 0 past each length.
    """

    log_alpha_hat: Tensor
    log_norm: Tensor


class NormalizedBackward(NamedTuple):
    """:func:`~hmm_engine.inference.hmm.backward_normalized`.

    log_beta_hat ``[B, T, K]``: log_beta shifted to a maximum of 0 per frame.
    log_shift ``[B, T]`` float64: log_beta[t] = log_beta_hat[t] + sum_{s>=t} log_shift[s].
    """

    log_beta_hat: Tensor
    log_shift: Tensor


class ForwardBackwardResult(NamedTuple):
    """:func:`~hmm_engine.inference.hmm.forward_backward`.

    posteriors ``[B, T, K]``: p(z_t = k | x); 0 on padding and for impossible sequences.
    log_likelihood ``[B]``: log p(x) (-inf for an impossible sequence).
    log_alpha_hat, log_beta_hat ``[B, T, K]``: the per-frame normalised recursions.
    """

    posteriors: Tensor
    log_likelihood: Tensor
    log_alpha_hat: Tensor
    log_beta_hat: Tensor


class Posteriors(NamedTuple):
    """A model's ``forward_backward``: posteriors ``[B, T, K]`` and log_likelihood ``[B]``."""

    posteriors: Tensor
    log_likelihood: Tensor


class ViterbiResult(NamedTuple):
    """Best path: path ``[B, T]`` int64 (-1 past each length) and its joint log-probability
    score ``[B]``. Chain decoders return one sequence: path ``[T]`` numpy int64, score float."""

    path: Tensor
    score: Tensor


class HSMMPosteriors(NamedTuple):
    """:func:`~hmm_engine.inference.hsmm.hsmm_forward_backward` (expected counts summed over
    the batch, each sequence weighted by ``weights``, default 1).

    posteriors ``[B, T, K]``: P(state at t = k | x), zero past each length.
    log_likelihood ``[B]``: log p(x_b); ``-inf`` for a sequence the model cannot produce.
    expected_transitions ``[K, K]``: expected number of k -> j segment changes.
    expected_durations ``[K, Dmax]``: expected number of segments of state k lasting d frames;
        under right-censoring, censored last segments are included with their true duration
        imputed from the duration model (EM for censored data; also d log p(x) / d log p_k(d)).
    expected_starts ``[K]``: expected number of sequences starting in state k.
    censored_durations ``[K, Dmax]``: expected censored last segments of state k observed for
        d frames (zeros without right-censoring).
    """

    posteriors: Tensor
    log_likelihood: Tensor
    expected_transitions: Tensor
    expected_durations: Tensor
    expected_starts: Tensor
    censored_durations: Tensor


class HSMMViterbiResult(NamedTuple):
    """:func:`~hmm_engine.inference.hsmm.hsmm_viterbi`.

    path ``[B, T]`` int64: best state per frame, -1 past each length (all -1 when impossible).
    score ``[B]``: log-probability of the best segmentation jointly with x.
    segments: per sequence, the :class:`StateSegment` list of the best segmentation.
    """

    path: Tensor
    score: Tensor
    segments: List[List[StateSegment]]


class HSMMSample(NamedTuple):
    """:func:`~hmm_engine.inference.hsmm.hsmm_sample`: states ``[B, T]`` (-1 past each
    length) and the :class:`StateSegment` lists."""

    states: Tensor
    segments: List[List[StateSegment]]


class ChainPosteriors(NamedTuple):
    """:func:`~hmm_engine.inference.chain.chain_forward_backward` (numpy, float64).

    posteriors ``[T, S]``: posterior of each position at each frame.
    log_likelihood: log p(x) summed over all allowed paths.
    stay_count, next_count ``[S]``: expected self-loops / steps to ``s + 1``.
    skip_count ``[E]``: expected uses of each skip arc.
    """

    posteriors: np.ndarray
    log_likelihood: float
    stay_count: np.ndarray
    next_count: np.ndarray
    skip_count: np.ndarray

    @property
    def gamma(self) -> np.ndarray:
        """The posteriors under their textbook name."""
        return self.posteriors


class SegmentChainPosteriors(NamedTuple):
    """:func:`~hmm_engine.inference.chain.chain_segment_forward_backward` (numpy, float64).

    posteriors ``[T, S]``; log_likelihood; duration_count ``[S, Dmax]`` expected visits to
    position s lasting d frames (column d - 1; zero rows for geometric positions);
    stay_count, leave_count ``[S]`` their geometric equivalents (frames that continue a visit,
    visits); next_count ``[S]`` uses of ``s -> s + 1``; skip_count ``[E]`` uses of each skip arc.
    """

    posteriors: np.ndarray
    log_likelihood: float
    duration_count: np.ndarray
    stay_count: np.ndarray
    leave_count: np.ndarray
    next_count: np.ndarray
    skip_count: np.ndarray

    @property
    def gamma(self) -> np.ndarray:
        """The posteriors under their textbook name."""
        return self.posteriors
