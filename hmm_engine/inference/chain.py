"""Dynamic programs on a left-to-right *chain* of states, for forced alignment.

A forced-alignment HMM for one utterance is a chain of S positions (the states of its
phones, in order). From position ``s`` a frame may stay (``log_stay[s]``), step to ``s + 1``
(``log_next[s]``), or take one of a few forward skip arcs ``skip_src[e] -> skip_dst[e]``
(``log_skip[e]``; used to jump over an optional silence). Paths start where ``log_start``
is finite and must end where ``log_final`` is finite.

The dense functions of :mod:`hmm_engine.inference.hmm` would spend O(S^2) a frame on this
sparse matrix; these kernels spend O(S + E). ``chain_to_dense`` builds the equivalent dense
``(log_startprob, log_transmat)`` so that tests can check one against the other (a final
weight is the same as adding ``log_final`` to the last frame's observation scores).

The DP runs on the CPU (numba) in float64: it is O(T S), negligible next to computing the
emission scores, which may run on any device; inputs on another device are copied over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch
from torch import Tensor

from ..errors import InvalidInputError
from . import _chain_kernels as _k
from .results import ChainPosteriors, SegmentChainPosteriors, ViterbiResult

__all__ = [
    "Chain",
    "ChainPosteriors",
    "SegmentChainPosteriors",
    "chain_forward_backward",
    "chain_viterbi",
    "chain_segment_forward_backward",
    "chain_segment_viterbi",
    "chain_to_dense",
    "homogeneous_segmentation",
    "Loop",
    "ViterbiResult",
    "loop_viterbi",
    "loop_to_dense",
]


@dataclass(frozen=True)
class Chain:
    """Topology and log transition weights of one chain (numpy arrays).

    Attributes:
        log_start: ``[S]`` float64 log initial weights (-inf: cannot start here).
        log_final: ``[S]`` float64 log final weights (-inf: cannot end here).
        log_stay: ``[S]`` float64 self-loop log probabilities.
        log_next: ``[S]`` float64 log probability of ``s -> s + 1`` (entry S-1 unused, -inf).
        skip_src, skip_dst: ``[E]`` int64, forward arcs with ``skip_dst > skip_src + 1``.
        log_skip: ``[E]`` float64 log probabilities of those arcs.
    """

    log_start: np.ndarray
    log_final: np.ndarray
    log_stay: np.ndarray
    log_next: np.ndarray
    skip_src: np.ndarray
    skip_dst: np.ndarray
    log_skip: np.ndarray

    def __post_init__(self) -> None:
        S = self.log_start.shape[0]
        for name in ("log_final", "log_stay", "log_next"):
            if getattr(self, name).shape != (S,):
                raise InvalidInputError(f"Chain.{name} must have {S} entries")
        E = self.skip_src.shape[0]
        if self.skip_dst.shape != (E,) or self.log_skip.shape != (E,):
            raise InvalidInputError("Chain skip arrays must have the same length")
        if E and (np.any(self.skip_src < 0) or np.any(self.skip_dst >= S) or np.any(self.skip_dst <= self.skip_src + 1)):
            raise InvalidInputError("Chain skip arcs must go forward by at least 2 positions, inside the chain")

    @property
    def num_states(self) -> int:
        return int(self.log_start.shape[0])

    def _args(self):
        return (self.log_stay, self.log_next, self.skip_src, self.skip_dst, self.log_skip)

    @staticmethod
    def from_arrays(log_start, log_final, log_stay, log_next, skip_src=(), skip_dst=(), log_skip=()) -> "Chain":
        """Build a chain from array-likes (converted to contiguous float64 / int64 numpy)."""
        f = lambda a: np.ascontiguousarray(np.asarray(a, dtype=np.float64).reshape(-1))  # noqa: E731
        i = lambda a: np.ascontiguousarray(np.asarray(a, dtype=np.int64).reshape(-1))  # noqa: E731
        return Chain(f(log_start), f(log_final), f(log_stay), f(log_next), i(skip_src), i(skip_dst), f(log_skip))


def _obs_numpy(chain: Chain, log_obs) -> np.ndarray:
    if isinstance(log_obs, Tensor):
        log_obs = log_obs.detach().to("cpu", torch.float64).numpy()
    log_obs = np.ascontiguousarray(log_obs, dtype=np.float64)
    if log_obs.ndim != 2 or log_obs.shape[1] != chain.num_states:
        raise InvalidInputError(f"log_obs must be [T, {chain.num_states}], got {log_obs.shape}")
    if log_obs.shape[0] == 0:
        raise InvalidInputError("log_obs has no frames")
    if np.isnan(log_obs).any():
        raise InvalidInputError("log_obs contains NaN")
    return log_obs


def chain_forward_backward(chain: Chain, log_obs) -> ChainPosteriors:
    """Forward-backward on a chain.

    Args:
        chain: the topology (S positions).
        log_obs: ``[T, S]`` log p(x_t | position s) (tensor on any device, or numpy).
    Returns:
        :class:`ChainPosteriors`.
    Raises:
        InvalidInputError: bad shape, or no path through the chain explains the frames
            (e.g. fewer frames than mandatory states).
    """
    obs = _obs_numpy(chain, log_obs)
    T, S = obs.shape
    alpha = np.empty((T, S))
    beta = np.empty((T, S))
    log_lik = _k.chain_forward(chain.log_start, chain.log_final, *chain._args(), obs, alpha)
    if not np.isfinite(log_lik):
        raise InvalidInputError(f"no path through the {S}-state chain explains {T} frames")
    _k.chain_backward(chain.log_final, *chain._args(), obs, beta)
    gamma = np.empty((T, S))
    stay, nxt, skip = np.empty(S), np.empty(S), np.empty(chain.skip_src.shape[0])
    _k.chain_counts(*chain._args(), obs, alpha, beta, log_lik, gamma, stay, nxt, skip)
    return ChainPosteriors(gamma, float(log_lik), stay, nxt, skip)


def chain_viterbi(chain: Chain, log_obs) -> ViterbiResult:
    """Most likely position path.

    Args:
        chain: the topology (S positions).
        log_obs: ``[T, S]`` (tensor or numpy).
    Returns:
        :class:`ViterbiResult` ``(path [T] int64 positions, score float)``; score is the joint
        log-probability of the path.
    Raises:
        InvalidInputError: no allowed path (e.g. fewer frames than mandatory states).
    """
    obs = _obs_numpy(chain, log_obs)
    path = np.empty(obs.shape[0], np.int64)
    score = _k.chain_viterbi(chain.log_start, chain.log_final, *chain._args(), obs, path)
    if not np.isfinite(score):
        raise InvalidInputError(f"no path through the {chain.num_states}-state chain explains {obs.shape[0]} frames")
    return ViterbiResult(path, float(score))


def _segment_inputs(chain: Chain, log_durations, log_geometric, log_obs):
    obs = _obs_numpy(chain, log_obs)
    if isinstance(log_durations, Tensor):
        log_durations = log_durations.detach().to("cpu", torch.float64).numpy()
    log_dur = np.ascontiguousarray(log_durations, dtype=np.float64)
    S = chain.num_states
    if log_dur.ndim != 2 or log_dur.shape[0] != S or log_dur.shape[1] < 1:
        raise InvalidInputError(f"log_durations must be [{S}, Dmax] with Dmax >= 1, got {log_dur.shape}")
    if np.isnan(log_dur).any() or np.isposinf(log_dur).any():
        raise InvalidInputError("log_durations contains NaN or +inf")
    geo = np.full(S, np.nan)
    if log_geometric is not None:
        geo = np.ascontiguousarray(np.asarray(log_geometric, dtype=np.float64).reshape(-1))
        if geo.shape != (S,):
            raise InvalidInputError(f"log_geometric must have {S} entries, got {geo.shape}")
        given = ~np.isnan(geo)
        if np.any(geo[given] >= 0.0) or np.any(np.isneginf(geo[given])):
            raise InvalidInputError("log_geometric self-loops must be finite log-probabilities below 0 (NaN: explicit)")
    finite = np.isfinite(log_dur)
    # Longest allowed visit per position: the loops stop there (work O(T * sum max_dur)).
    max_dur = np.where(finite.any(1), log_dur.shape[1] - np.argmax(finite[:, ::-1], axis=1), 0).astype(np.int64)
    csum = np.zeros((obs.shape[0] + 1, S))
    np.cumsum(obs, axis=0, out=csum[1:])
    return obs, log_dur, max_dur, geo, csum


def chain_segment_forward_backward(chain: Chain, log_durations, log_geometric, log_obs) -> SegmentChainPosteriors:
    """Forward-backward on a chain with explicit durations (a semi-Markov chain).

    Each visit to position ``s`` lasts ``d`` frames with probability
    ``exp(log_durations[s, d - 1])``; then the path takes ``s -> s + 1`` (``chain.log_next``)
    or a skip arc (``chain.log_skip``). ``chain.log_stay`` is ignored: durations replace the
    self-loops. Positions with a finite ``log_geometric[s] = log a`` instead have unbounded
    geometric durations ``(1 - a) a^(d - 1)`` (an ordinary self-loop, e.g. for silences of any
    length), computed in O(1) a frame; their ``log_durations`` row is ignored.

    Relation to :func:`chain_forward_backward`: the HMM chain with self-loops ``a_s`` is this
    chain with every position geometric, ``log_next`` / ``log_skip`` divided by ``1 - a_s``,
    and ``log_final`` minus ``log(1 - a_s)`` (an HMM path ends inside its last state); the
    posteriors are then equal (tested).

    Args (parameters first, then the scores, as every dynamic program of the engine):
        chain: the topology (S positions).
        log_durations: ``[S, Dmax]`` (tensor or numpy); ``-inf`` outside each support.
        log_geometric: ``[S]`` log self-loop of geometric positions, NaN elsewhere; or None (all explicit).
        log_obs: ``[T, S]`` log p(x_t | position s).
    Returns:
        :class:`SegmentChainPosteriors`.
    Raises:
        InvalidInputError: bad shapes or values, or no segmentation explains the frames.
    """
    obs, log_dur, max_dur, geo, csum = _segment_inputs(chain, log_durations, log_geometric, log_obs)
    T, S = obs.shape
    a_start, a_end, g = np.empty((T + 1, S)), np.empty((T + 1, S)), np.empty((T + 1, S))
    args = (chain.log_next, chain.skip_src, chain.skip_dst, chain.log_skip, log_dur, max_dur, geo, csum)
    log_lik = _k.segment_forward(chain.log_start, chain.log_final, *args, a_start, a_end, g)
    if not np.isfinite(log_lik):
        raise InvalidInputError(f"no segmentation of {T} frames fits the {S}-state chain and its durations")
    b_start, b_end, h = np.empty((T + 1, S)), np.empty((T + 1, S)), np.empty((T, S))
    dur_count, starts = np.empty_like(log_dur), np.empty((T + 1, S))
    _k.segment_backward(chain.log_final, *args, a_start, log_lik, b_start, b_end, h, dur_count, starts)
    gamma = np.empty((T, S))
    stay, leave, nxt, skip = np.empty(S), np.empty(S), np.empty(S), np.empty(chain.skip_src.shape[0])
    _k.segment_counts(chain.log_next, chain.skip_src, chain.skip_dst, chain.log_skip, max_dur, geo, csum, a_end, g,
                      b_start, b_end, h, log_lik, dur_count, starts, gamma, stay, leave, nxt, skip)
    return SegmentChainPosteriors(gamma, float(log_lik), dur_count, stay, leave, nxt, skip)


def chain_segment_viterbi(chain: Chain, log_durations, log_geometric, log_obs) -> ViterbiResult:
    """Most likely segmentation of a chain with explicit durations, as a position path.

    Args: as :func:`chain_segment_forward_backward`.
    Returns:
        :class:`ViterbiResult` ``(path [T] int64 positions, score float)``, the joint log-probability.
    Raises:
        InvalidInputError: no allowed segmentation.
    """
    obs, log_dur, max_dur, geo, csum = _segment_inputs(chain, log_durations, log_geometric, log_obs)
    path = np.empty(obs.shape[0], np.int64)
    args = (chain.log_next, chain.skip_src, chain.skip_dst, chain.log_skip, log_dur, max_dur, geo, csum)
    score = _k.segment_viterbi(chain.log_start, chain.log_final, *args, path)
    if not np.isfinite(score):
        raise InvalidInputError(
            f"no segmentation of {obs.shape[0]} frames fits the {chain.num_states}-state chain and its durations")
    return ViterbiResult(path, float(score))


def chain_to_dense(chain: Chain) -> Tuple[Tensor, Tensor]:
    """The same chain as dense ``(log_startprob [S], log_transmat [S, S])`` float64 tensors."""
    S = chain.num_states
    A = torch.full((S, S), float("-inf"), dtype=torch.float64)
    idx = torch.arange(S)
    A[idx, idx] = torch.from_numpy(chain.log_stay)
    A[idx[:-1], idx[1:]] = torch.from_numpy(chain.log_next[:-1])
    for s, d, w in zip(chain.skip_src, chain.skip_dst, chain.log_skip):
        A[int(s), int(d)] = float(w)
    return torch.from_numpy(chain.log_start.copy()), A


@dataclass(frozen=True)
class Loop:
    """A free loop of left-to-right units (a phone loop: each phone's states in a row): from
    the last position of any unit, through a hub, into the first position of any unit.
    ``S`` positions, numpy float64 log weights:

    Attributes:
        log_start: ``[S]`` where a path may start; log_final: ``[S]`` where it may end.
        log_stay: ``[S]`` self-loops; log_next: ``[S]`` step ``s -> s + 1`` inside a unit
            (-inf at a unit's last position).
        log_exit: ``[S]`` leaving a unit into the hub (-inf except at units' last positions);
        log_enter: ``[S]`` from the hub into a unit (-inf except at units' first positions).
    """

    log_start: np.ndarray
    log_final: np.ndarray
    log_stay: np.ndarray
    log_next: np.ndarray
    log_exit: np.ndarray
    log_enter: np.ndarray

    @property
    def num_states(self) -> int:
        return int(self.log_start.shape[0])

    @staticmethod
    def from_units(sizes, log_stay) -> "Loop":
        """Units of ``sizes`` consecutive positions with self-loops ``log_stay [S]``; a position
        moves on with the rest of its probability (to the next position, or out of its unit);
        every unit is entered with the same probability, paths start in any unit and end at
        any unit's last position."""
        sizes = [int(n) for n in sizes]
        if not sizes or min(sizes) < 1:
            raise InvalidInputError(f"loop units need at least one position each, got sizes {sizes}")
        stay = np.ascontiguousarray(np.asarray(log_stay, dtype=np.float64).reshape(-1))
        S = sum(sizes)
        if stay.shape != (S,):
            raise InvalidInputError(f"log_stay must have {S} entries (the units' positions), got {stay.shape[0]}")
        firsts = np.cumsum([0] + sizes[:-1])
        lasts = firsts + np.asarray(sizes) - 1
        leave = np.log1p(-np.exp(stay))
        nxt = leave.copy()
        nxt[lasts] = -np.inf
        exit_ = np.full(S, -np.inf)
        exit_[lasts] = leave[lasts]
        enter = np.full(S, -np.inf)
        enter[firsts] = -np.log(len(sizes))
        final = np.full(S, -np.inf)
        final[lasts] = 0.0
        return Loop(enter.copy(), final, stay, nxt, exit_, enter)


def _loop_stay(loop: Loop) -> np.ndarray:
    """Self-loop weights with a one-position unit's way back into itself through the hub
    added (two arcs s -> s make one transition): what the kernel needs to match the dense HMM."""
    both = np.isfinite(loop.log_exit) & np.isfinite(loop.log_enter)
    return np.where(both, np.logaddexp(loop.log_stay, loop.log_exit + loop.log_enter), loop.log_stay)


def loop_viterbi(loop: Loop, log_obs) -> ViterbiResult:
    """Most likely position path through ``loop`` for ``log_obs [T, S]`` (tensor or numpy):
    :class:`ViterbiResult` ``(path [T] int64, score float)``; the same as :func:`hmm_engine.inference.hmm.viterbi` on
    :func:`loop_to_dense` (tested), in O(T S).

    Raises:
        InvalidInputError: wrong shape, or no allowed path.
    """
    obs = log_obs.detach().to("cpu", torch.float64).numpy() if isinstance(log_obs, Tensor) else log_obs
    obs = np.ascontiguousarray(np.asarray(obs, dtype=np.float64))
    if obs.ndim != 2 or obs.shape[1] != loop.num_states or obs.shape[0] < 1:
        raise InvalidInputError(f"log_obs must be [T, {loop.num_states}] with T >= 1, got {list(obs.shape)}")
    path = np.empty(obs.shape[0], np.int64)
    score = _k.loop_viterbi(loop.log_start, loop.log_final, _loop_stay(loop), loop.log_next, loop.log_exit,
                            loop.log_enter, obs, path)
    if not np.isfinite(score):
        raise InvalidInputError(f"no path through the {loop.num_states}-position loop explains {obs.shape[0]} frames")
    return ViterbiResult(path, float(score))


def loop_to_dense(loop: Loop) -> Tuple[Tensor, Tensor, Tensor]:
    """The same loop as dense ``(log_startprob [S], log_transmat [S, S], log_final [S])``
    float64 tensors (every s -> q arc: self-loop, step, exit + enter; parallel arcs summed)."""
    S = loop.num_states
    A = np.full((S, S), -np.inf)
    idx = np.arange(S)
    A[idx, idx] = loop.log_stay
    A[idx[:-1], idx[1:]] = np.logaddexp(A[idx[:-1], idx[1:]], loop.log_next[:-1])
    A = np.logaddexp(A, loop.log_exit[:, None] + loop.log_enter[None, :])
    return torch.from_numpy(loop.log_start.copy()), torch.from_numpy(A), torch.from_numpy(loop.log_final.copy())


def homogeneous_segmentation(x, min_len, max_len, dur_mean=None, dur_weight=None) -> np.ndarray:
    """Optimal split of ``x [T, D]`` into P consecutive runs of (nearly) constant value.

    Minimises the total squared distance of the frames to their run's mean (a piecewise
    constant fit, solved exactly by dynamic programming in O(P T L D), L the longest run).

    Args:
        x: ``[T, D]`` frames (tensor or numpy).
        min_len, max_len: ``[P]`` bounds on each run's length in frames (min may be 0).
        dur_mean, dur_weight: optional ``[P]`` duration prior: a non-empty run of n frames
            adds ``dur_weight * (n - dur_mean)^2`` to the error (default: no prior).
    Returns:
        ``bounds [P + 1]`` int64: run p covers frames ``[bounds[p], bounds[p + 1])``.
    Raises:
        InvalidInputError: the lengths cannot add up to T.
    """
    if isinstance(x, Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    x = np.asarray(x, dtype=np.float64)
    min_len = np.ascontiguousarray(min_len, dtype=np.int64)
    max_len = np.ascontiguousarray(max_len, dtype=np.int64)
    T = x.shape[0]
    if min_len.sum() > T or max_len.sum() < T:
        raise InvalidInputError(f"{T} frames cannot be split into runs of lengths {min_len.tolist()}..{max_len.tolist()}")
    csum = np.zeros((T + 1, x.shape[1]))
    np.cumsum(x, axis=0, out=csum[1:])
    csq = np.zeros(T + 1)
    np.cumsum((x * x).sum(1), out=csq[1:])
    P = min_len.shape[0]
    dur_mean = np.zeros(P) if dur_mean is None else np.ascontiguousarray(dur_mean, dtype=np.float64)
    dur_weight = np.zeros(P) if dur_weight is None else np.ascontiguousarray(dur_weight, dtype=np.float64)
    bounds = np.empty(P + 1, np.int64)
    total = _k.segment_dp(csum, csq, min_len, max_len, dur_mean, dur_weight, bounds)
    if not np.isfinite(total):
        raise InvalidInputError(f"{T} frames cannot be split into runs of the given lengths")
    return bounds
