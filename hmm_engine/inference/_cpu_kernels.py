"""Numba kernels for the HMM dynamic programs on the CPU.

Why a compiled kernel: on a CPU, a Python loop of small torch ops spends most of
its time in per-op dispatch (about 10 us an op, a few ops per frame). These
kernels do the same recursions as :mod:`hmm_engine.inference.hmm` with no
dispatch, in parallel over the sequences of a batch.

Forward and backward use the *shifted matrix product*: with ``m = max_i a_i``,

    log sum_i exp(a_i + log A_ij) = m + log sum_i exp(a_i - m) A_ij

which costs K exps and K^2 multiply-adds a frame instead of K^2 exps. Terms with
``a_i - m`` below the exponent range underflow to zero; whenever the sum for a
column is so small that such lost terms could matter (below ``tiny``), that column
is recomputed with an exact log-sum-exp. The result is exact to the float
precision, including for sparse (left-to-right) transition matrices.

All arrays are numpy views of torch CPU tensors; lengths are int64; ``tiny`` is the
threshold below which a shifted sum is recomputed exactly (1e-25 for float32,
1e-280 for float64: far above the smallest normal number of each type).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_CACHE = True


@njit(cache=_CACHE, parallel=True)
def forward_kernel(log_start, log_A, A, log_obs, lengths, tiny, log_alpha, log_lik):
    """Fill ``log_alpha [B,T,K]`` (-inf past each length) and ``log_lik [B]``."""
    B, T, K = log_obs.shape
    for b in prange(B):
        n = lengths[b]
        e = np.empty(K, log_obs.dtype)
        s = np.empty(K, log_obs.dtype)
        for k in range(K):
            log_alpha[b, 0, k] = log_start[k] + log_obs[b, 0, k]
        for t in range(1, n):
            m = -np.inf
            for i in range(K):
                if log_alpha[b, t - 1, i] > m:
                    m = log_alpha[b, t - 1, i]
            if m == -np.inf:  # the sequence is impossible: it stays impossible
                for j in range(K):
                    log_alpha[b, t, j] = -np.inf
                continue
            for i in range(K):
                e[i] = np.exp(log_alpha[b, t - 1, i] - m)
            s[:] = 0.0
            for i in range(K):
                ei = e[i]
                if ei != 0.0:
                    for j in range(K):
                        s[j] += ei * A[i, j]
            for j in range(K):
                if s[j] >= tiny:
                    log_alpha[b, t, j] = m + np.log(s[j]) + log_obs[b, t, j]
                else:
                    # Exact column: max-shifted log-sum-exp over the predecessors.
                    cm = -np.inf
                    for i in range(K):
                        v = log_alpha[b, t - 1, i] + log_A[i, j]
                        if v > cm:
                            cm = v
                    if cm == -np.inf:
                        log_alpha[b, t, j] = -np.inf
                    else:
                        acc = 0.0
                        for i in range(K):
                            acc += np.exp(log_alpha[b, t - 1, i] + log_A[i, j] - cm)
                        log_alpha[b, t, j] = cm + np.log(acc) + log_obs[b, t, j]
        for t in range(n, T):
            for k in range(K):
                log_alpha[b, t, k] = -np.inf
        m = -np.inf
        for k in range(K):
            if log_alpha[b, n - 1, k] > m:
                m = log_alpha[b, n - 1, k]
        if m == -np.inf:
            log_lik[b] = -np.inf
        else:
            acc = 0.0
            for k in range(K):
                acc += np.exp(log_alpha[b, n - 1, k] - m)
            log_lik[b] = m + np.log(acc)


@njit(cache=_CACHE, parallel=True)
def backward_kernel(log_A, A, log_obs, lengths, tiny, log_beta):
    """Fill ``log_beta [B,T,K]`` (0 from each sequence's last frame on)."""
    B, T, K = log_obs.shape
    for b in prange(B):
        n = lengths[b]
        v = np.empty(K, log_obs.dtype)
        e = np.empty(K, log_obs.dtype)
        for t in range(n - 1, T):
            for k in range(K):
                log_beta[b, t, k] = 0.0
        for t in range(n - 2, -1, -1):
            m = -np.inf
            for j in range(K):
                v[j] = log_obs[b, t + 1, j] + log_beta[b, t + 1, j]
                if v[j] > m:
                    m = v[j]
            if m == -np.inf:
                for i in range(K):
                    log_beta[b, t, i] = -np.inf
                continue
            for j in range(K):
                e[j] = np.exp(v[j] - m)
            for i in range(K):
                s = 0.0
                for j in range(K):
                    s += A[i, j] * e[j]
                if s >= tiny:
                    log_beta[b, t, i] = m + np.log(s)
                else:
                    cm = -np.inf
                    for j in range(K):
                        w = log_A[i, j] + v[j]
                        if w > cm:
                            cm = w
                    if cm == -np.inf:
                        log_beta[b, t, i] = -np.inf
                    else:
                        acc = 0.0
                        for j in range(K):
                            acc += np.exp(log_A[i, j] + v[j] - cm)
                        log_beta[b, t, i] = cm + np.log(acc)


@njit(cache=_CACHE, parallel=True)
def viterbi_kernel(log_start, log_A_T, log_obs, lengths, path, score):
    """Fill ``path [B,T]`` (-1 past each length) and ``score [B]``.

    ``log_A_T`` is the transposed log transition matrix, so that the max over
    predecessors reads contiguous memory. Ties go to the lowest state index.
    """
    B, T, K = log_obs.shape
    for b in prange(B):
        n = lengths[b]
        back = np.empty((n, K), np.int32)
        delta = np.empty(K, log_obs.dtype)
        nxt = np.empty(K, log_obs.dtype)
        for k in range(K):
            delta[k] = log_start[k] + log_obs[b, 0, k]
        for t in range(1, n):
            for j in range(K):
                best = -np.inf
                arg = 0
                col = log_A_T[j]
                for i in range(K):
                    w = delta[i] + col[i]
                    if w > best:
                        best = w
                        arg = i
                nxt[j] = best + log_obs[b, t, j]
                back[t, j] = arg
            for k in range(K):
                delta[k] = nxt[k]
        s = 0
        for k in range(1, K):
            if delta[k] > delta[s]:
                s = k
        score[b] = delta[s]
        path[b, n - 1] = s
        for t in range(n - 1, 0, -1):
            s = back[t, s]
            path[b, t - 1] = s
        for t in range(n, T):
            path[b, t] = -1
