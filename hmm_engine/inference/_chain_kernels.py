"""Numba kernels for left-to-right *chain* HMMs (forced alignment), see :mod:`.chain`.

A chain of S states allows, into state ``s`` at each frame: a self-loop (``stay[s]``), the
step from ``s - 1`` (``nxt[s - 1]``), and a few extra forward "skip" arcs
``src[e] -> dst[e]`` (``skip[e]``, used to jump over an optional silence). A frame costs
O(S + E) instead of the O(S^2) of a dense transition matrix.

Arrays are float64 numpy views; ``log_obs`` is ``[T, S]`` (already gathered per chain
position). All recursions are exact log-sum-exps.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_CACHE = True
NEG_INF = -np.inf


@njit(cache=_CACHE, inline="always")
def _lae(a, b):
    """log(exp(a) + exp(b)) for possibly -inf inputs."""
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    if a > b:
        return a + np.log1p(np.exp(b - a))
    return b + np.log1p(np.exp(a - b))


@njit(cache=_CACHE)
def chain_forward(log_start, log_final, stay, nxt, src, dst, skip, log_obs, log_alpha):
    """Fill ``log_alpha [T, S]``; return log p(x, end in a final state)."""
    T, S = log_obs.shape
    E = src.shape[0]
    for s in range(S):
        log_alpha[0, s] = log_start[s] + log_obs[0, s]
    for t in range(1, T):
        prev = log_alpha[t - 1]
        cur = log_alpha[t]
        cur[0] = prev[0] + stay[0]
        for s in range(1, S):
            cur[s] = _lae(prev[s] + stay[s], prev[s - 1] + nxt[s - 1])
        for e in range(E):
            cur[dst[e]] = _lae(cur[dst[e]], prev[src[e]] + skip[e])
        for s in range(S):
            cur[s] += log_obs[t, s]
    total = NEG_INF
    for s in range(S):
        total = _lae(total, log_alpha[T - 1, s] + log_final[s])
    return total


@njit(cache=_CACHE)
def chain_backward(log_final, stay, nxt, src, dst, skip, log_obs, log_beta):
    """Fill ``log_beta [T, S]`` = log p(x_{t+1:}, end | z_t = s)."""
    T, S = log_obs.shape
    E = src.shape[0]
    tmp = np.empty(S)
    for s in range(S):
        log_beta[T - 1, s] = log_final[s]
    for t in range(T - 2, -1, -1):
        for s in range(S):
            tmp[s] = log_beta[t + 1, s] + log_obs[t + 1, s]
        cur = log_beta[t]
        for s in range(S - 1):
            cur[s] = _lae(stay[s] + tmp[s], nxt[s] + tmp[s + 1])
        cur[S - 1] = stay[S - 1] + tmp[S - 1]
        for e in range(E):
            cur[src[e]] = _lae(cur[src[e]], skip[e] + tmp[dst[e]])


@njit(cache=_CACHE)
def chain_counts(stay, nxt, src, dst, skip, log_obs, log_alpha, log_beta, log_lik,
                 gamma, stay_count, next_count, skip_count):
    """Posteriors ``gamma [T, S]`` and expected transition counts (summed over frames)."""
    T, S = log_obs.shape
    E = src.shape[0]
    for t in range(T):
        for s in range(S):
            gamma[t, s] = np.exp(log_alpha[t, s] + log_beta[t, s] - log_lik)
    for s in range(S):
        stay_count[s] = 0.0
        next_count[s] = 0.0
    for e in range(E):
        skip_count[e] = 0.0
    for t in range(1, T):
        for s in range(S):
            b = log_beta[t, s] + log_obs[t, s] - log_lik
            stay_count[s] += np.exp(log_alpha[t - 1, s] + stay[s] + b)
            if s > 0:
                next_count[s - 1] += np.exp(log_alpha[t - 1, s - 1] + nxt[s - 1] + b)
        for e in range(E):
            d = dst[e]
            skip_count[e] += np.exp(log_alpha[t - 1, src[e]] + skip[e] + log_beta[t, d] + log_obs[t, d] - log_lik)


@njit(cache=_CACHE)
def chain_viterbi(log_start, log_final, stay, nxt, src, dst, skip, log_obs, path):
    """Best state path ``path [T]`` (chain positions) ending in a final state; returns its score.

    Ties go to the self-loop, then the step from ``s - 1``, then skip arcs (in order), so
    that equal-score paths resolve the same way on every run.
    """
    T, S = log_obs.shape
    E = src.shape[0]
    delta = np.empty((T, S))
    back = np.empty((T, S), np.int64)
    for s in range(S):
        delta[0, s] = log_start[s] + log_obs[0, s]
        back[0, s] = -1
    for t in range(1, T):
        for s in range(S):
            best = delta[t - 1, s] + stay[s]
            arg = s
            if s > 0:
                v = delta[t - 1, s - 1] + nxt[s - 1]
                if v > best:
                    best = v
                    arg = s - 1
            delta[t, s] = best
            back[t, s] = arg
        for e in range(E):
            v = delta[t - 1, src[e]] + skip[e]
            if v > delta[t, dst[e]]:
                delta[t, dst[e]] = v
                back[t, dst[e]] = src[e]
        for s in range(S):
            delta[t, s] += log_obs[t, s]
    best = NEG_INF
    arg = -1
    for s in range(S):
        v = delta[T - 1, s] + log_final[s]
        if v > best:
            best = v
            arg = s
    if arg < 0:
        for t in range(T):
            path[t] = -1
        return best
    path[T - 1] = arg
    for t in range(T - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return best


@njit(cache=_CACHE)
def segment_dp(csum, csq, min_len, max_len, dur_mean, dur_weight, bounds):
    """Split T frames into P consecutive runs minimising the within-run squared error.

    Plus a duration penalty ``dur_weight[p] * (n - dur_mean[p])^2`` on a non-empty run p of n frames.

    ``csum [T+1, D]`` and ``csq [T+1]`` are prefix sums of the frames and of their squared
    norms; run p has between ``min_len[p]`` (may be 0) and ``max_len[p]`` frames. Fills
    ``bounds [P+1]`` (run p is ``[bounds[p], bounds[p+1])``) and returns the total error
    (inf when no split satisfies the lengths).
    """
    T = csum.shape[0] - 1
    D = csum.shape[1]
    P = min_len.shape[0]
    cost = np.full((P + 1, T + 1), np.inf)
    back = np.zeros((P + 1, T + 1), np.int64)
    cost[0, 0] = 0.0
    for p in range(P):
        for e in range(T + 1):
            lo = max(0, e - max_len[p])
            hi = e - min_len[p]
            best = np.inf
            arg = -1
            for s in range(lo, hi + 1):
                prev = cost[p, s]
                if prev == np.inf:
                    continue
                n = e - s
                c = 0.0
                if n > 0:
                    sq = 0.0
                    for d in range(D):
                        diff = csum[e, d] - csum[s, d]
                        sq += diff * diff
                    c = csq[e] - csq[s] - sq / n + dur_weight[p] * (n - dur_mean[p]) ** 2
                if prev + c < best:
                    best = prev + c
                    arg = s
            cost[p + 1, e] = best
            back[p + 1, e] = arg
    bounds[P] = T
    for p in range(P, 0, -1):
        bounds[p - 1] = back[p, bounds[p]] if cost[p, bounds[p]] < np.inf else 0
    return cost[P, T]
