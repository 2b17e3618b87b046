"""Brute-force references shared by the tests of every dynamic program.

Two enumerators, nothing clever: every state path of a (dense) HMM, and every segmentation of
``T`` frames into labelled runs (semi-Markov models, alignment chains). Tests score what they
enumerate with the model at hand and compare sums / maxima with the DP. Sizes stay tiny: the
number of paths is ``K ** T``.
"""

from __future__ import annotations

import itertools
from typing import Iterator, Mapping, NamedTuple, Sequence

import numpy as np


class Enumerated(NamedTuple):
    """Everything a forward-backward / Viterbi on one sequence must reproduce (float64 numpy)."""

    log_likelihood: float          # log-sum-exp of all path scores
    posteriors: np.ndarray         # [T, K] P(z_t = k | x)
    best_path: tuple[int, ...]     # [T] one highest-scoring path (ties: the first in product order)
    best_score: float              # its score
    pair_counts: np.ndarray        # [K, K] expected transition counts sum_t P(z_t-1 = i, z_t = j | x)


def _np(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def state_paths(num_states: int, num_frames: int) -> np.ndarray:
    """``[K ** T, T]`` every state path, in ``itertools.product`` order."""
    return np.array(list(itertools.product(range(num_states), repeat=num_frames)), dtype=np.int64).reshape(-1, num_frames)


def path_scores(log_start, log_A, log_obs, paths: np.ndarray, log_final=None) -> np.ndarray:
    """``[N]`` log-score of each path ``[N, T]``: start + emissions + transitions (+ final)."""
    log_start, log_A, log_obs = _np(log_start), _np(log_A), _np(log_obs)
    T = log_obs.shape[0]
    frames = np.arange(T)
    with np.errstate(invalid="ignore"):
        scores = log_start[paths[:, 0]] + log_obs[frames, paths].sum(1)
        if T > 1:
            scores = scores + log_A[paths[:, :-1], paths[:, 1:]].sum(1)
        if log_final is not None:
            scores = scores + _np(log_final)[paths[:, -1]]
    return scores


def enumerate_paths(log_start, log_A, log_obs, log_final=None) -> Enumerated:
    """Score every state path of one sequence ``log_obs [T, K]`` under ``log_start [K]``,
    ``log_A [K, K]`` (and optional ``log_final [K]``); numpy or torch inputs."""
    log_obs = _np(log_obs)
    T, K = log_obs.shape
    paths = state_paths(K, T)
    scores = path_scores(log_start, log_A, log_obs, paths, log_final)
    ll = float(np.logaddexp.reduce(scores))
    weights = np.exp(scores - ll)
    post = np.zeros((T, K))
    pair = np.zeros((K, K))
    for t in range(T):
        np.add.at(post[t], paths[:, t], weights)
        if t > 0:
            np.add.at(pair, (paths[:, t - 1], paths[:, t]), weights)
    best = int(np.argmax(scores))
    return Enumerated(ll, post, tuple(int(k) for k in paths[best]), float(scores[best]), pair)


def segmentations(
    num_frames: int,
    num_states: int,
    first: Sequence[int] | None = None,
    successors: Mapping[int, Sequence[int]] | None = None,
) -> Iterator[list[tuple[int, int, int]]]:
    """Every cut of ``T`` frames into consecutive runs, each labelled with a state.

    Yields lists of ``(state, start, end)`` (``end`` exclusive) covering ``[0, T)``. ``first``
    limits the first run's state (default: any); ``successors[s]`` the states a run of ``s``
    may be followed by (default: any, ``s`` itself included, so the scoring decides).
    """
    starts = range(num_states) if first is None else first

    def walk(state: int, t: int, runs: list[tuple[int, int, int]]):
        for end in range(t + 1, num_frames + 1):
            cut = runs + [(state, t, end)]
            if end == num_frames:
                yield cut
                continue
            following = range(num_states) if successors is None else successors.get(state, ())
            for nxt in following:
                yield from walk(nxt, end, cut)

    for state in starts:
        yield from walk(state, 0, [])
