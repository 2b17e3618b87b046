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

Recursions run in float64 whatever the input type and every frame is renormalised,
so that 100,000-frame sequences keep full precision in float32 outputs.

All arrays are numpy views of torch CPU tensors; lengths are int64; ``tiny`` is the
threshold below which a shifted sum is recomputed exactly (1e-280: far above the
smallest normal float64).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_CACHE = True


@njit(cache=_CACHE, nogil=True)
def forward_kernel(log_start, log_A, A, log_obs, lengths, log_alpha, log_norm, tiny):
    """Fill the per-frame normalised ``log_alpha [B,T,K]`` (each real frame log-sums to 0;
    -inf past each length) and the float64 ``log_norm [B,T]`` (0 past each length), so
    that log p(x_{0:t}, z_t) = log_alpha[t] + sum_{s<=t} log_norm[s]."""
    B, T, K = log_obs.shape
    for b in range(B):
        n = lengths[b]
        e = np.empty(K, np.float64)
        s = np.empty(K, np.float64)
        a = np.empty(K, np.float64)
        prev = np.empty(K, np.float64)
        for k in range(K):
            a[k] = log_start[k] + log_obs[b, 0, k]
        for t in range(n):
            if t > 0:
                m = -np.inf
                for i in range(K):
                    if prev[i] > m:
                        m = prev[i]
                for i in range(K):
                    e[i] = np.exp(prev[i] - m)
                s[:] = 0.0
                for i in range(K):
                    ei = e[i]
                    if ei != 0.0:
                        for j in range(K):
                            s[j] += ei * A[i, j]
                for j in range(K):
                    if s[j] >= tiny:
                        a[j] = m + np.log(s[j]) + log_obs[b, t, j]
                    else:
                        # Exact column: max-shifted log-sum-exp over the predecessors.
                        cm = -np.inf
                        for i in range(K):
                            v = prev[i] + log_A[i, j]
                            if v > cm:
                                cm = v
                        if cm == -np.inf:
                            a[j] = -np.inf
                        else:
                            acc = 0.0
                            for i in range(K):
                                acc += np.exp(prev[i] + log_A[i, j] - cm)
                            a[j] = cm + np.log(acc) + log_obs[b, t, j]
            # Normalise the frame: values stay O(1), the scale goes to log_norm in float64.
            m = -np.inf
            for k in range(K):
                if a[k] > m:
                    m = a[k]
            if m == -np.inf:  # impossible sequence: it stays impossible
                for t2 in range(t, n):
                    log_norm[b, t2] = -np.inf
                    for k in range(K):
                        log_alpha[b, t2, k] = -np.inf
                break
            acc = 0.0
            for k in range(K):
                acc += np.exp(a[k] - m)
            c = m + np.log(acc)
            log_norm[b, t] = c
            for k in range(K):
                prev[k] = a[k] - c
                log_alpha[b, t, k] = prev[k]
        for t in range(n, T):
            log_norm[b, t] = 0.0
            for k in range(K):
                log_alpha[b, t, k] = -np.inf


@njit(cache=_CACHE, nogil=True)
def backward_kernel(log_A, A, log_obs, lengths, log_beta, log_shift, tiny):
    """Fill ``log_beta [B,T,K]``, each frame shifted so that its maximum is 0, and the float64
    shifts ``log_shift [B,T]``: log p(x_{t+1:} | z_t) = log_beta[t] + sum_{s>=t} log_shift[s].
    Both are 0 from each sequence's last frame on."""
    B, T, K = log_obs.shape
    for b in range(B):
        n = lengths[b]
        v = np.empty(K, np.float64)
        e = np.empty(K, np.float64)
        r = np.empty(K, np.float64)
        for t in range(n - 1, T):
            log_shift[b, t] = 0.0
            for k in range(K):
                log_beta[b, t, k] = 0.0
        for t in range(n - 2, -1, -1):
            m = -np.inf
            for j in range(K):
                v[j] = log_obs[b, t + 1, j] + log_beta[b, t + 1, j]
                if v[j] > m:
                    m = v[j]
            if m == -np.inf:
                log_shift[b, t] = 0.0
                for i in range(K):
                    log_beta[b, t, i] = -np.inf
                continue
            for j in range(K):
                e[j] = np.exp(v[j] - m)
            rmax = -np.inf
            for i in range(K):
                s = 0.0
                for j in range(K):
                    s += A[i, j] * e[j]
                if s >= tiny:
                    r[i] = m + np.log(s)
                else:
                    cm = -np.inf
                    for j in range(K):
                        w = log_A[i, j] + v[j]
                        if w > cm:
                            cm = w
                    if cm == -np.inf:
                        r[i] = -np.inf
                    else:
                        acc = 0.0
                        for j in range(K):
                            acc += np.exp(log_A[i, j] + v[j] - cm)
                        r[i] = cm + np.log(acc)
                if r[i] > rmax:
                    rmax = r[i]
            if rmax == -np.inf:
                rmax = 0.0
            log_shift[b, t] = rmax
            for i in range(K):
                log_beta[b, t, i] = r[i] - rmax


@njit(cache=_CACHE, nogil=True)
def viterbi_kernel(log_start, log_A, log_obs, lengths, path, score):
    """Fill ``path [B,T]`` (-1 past each length) and the float64 ``score [B]``.

    Runs in the dtype of ``log_obs`` (``log_start``/``log_A`` given in the same dtype), with
    each frame's scores shifted to a maximum of 0 and the shifts summed in float64: the
    max-product works on relative numbers, which float32 holds to ~1e-6 nats, at twice the
    SIMD width of float64 (the float32 kernel measured 2.1x faster than a float64 one).

    The max over predecessors runs with the destination state innermost, as branch-free
    selects over contiguous rows of ``log_A``, which the compiler turns into SIMD code (2x
    faster than a per-destination argmax loop). A strict ``>`` keeps the lowest predecessor
    index on ties (exact ties stay exact: both sides are shifted by the same number).
    """
    B, T, K = log_obs.shape
    for b in range(B):
        n = lengths[b]
        back = np.empty((n, K), np.int32)
        delta = np.empty(K, log_obs.dtype)
        best = np.empty(K, log_obs.dtype)
        arg = np.empty(K, np.int32)
        offset = 0.0
        for k in range(K):
            delta[k] = log_start[k] + log_obs[b, 0, k]
        for t in range(n):
            if t > 0:
                d0 = delta[0]
                for j in range(K):
                    best[j] = d0 + log_A[0, j]
                    arg[j] = 0
                for i in range(1, K):
                    di = delta[i]
                    for j in range(K):
                        w = di + log_A[i, j]
                        better = w > best[j]
                        best[j] = w if better else best[j]
                        arg[j] = i if better else arg[j]
                for j in range(K):
                    delta[j] = best[j] + log_obs[b, t, j]
                    back[t, j] = arg[j]
            m = delta[0]
            for k in range(1, K):
                m = delta[k] if delta[k] > m else m
            if m > -np.inf:  # an impossible prefix stays -inf, unshifted
                offset += m
                for k in range(K):
                    delta[k] -= m
        s = 0
        for k in range(1, K):
            if delta[k] > delta[s]:
                s = k
        score[b] = offset + delta[s]
        path[b, n - 1] = s
        for t in range(n - 1, 0, -1):
            s = back[t, s]
            path[b, t - 1] = s
        for t in range(n, T):
            path[b, t] = -1


@njit(cache=_CACHE, nogil=True)
def counts_kernel(log_A, A, log_obs, log_alpha, log_beta, lengths, counts, tiny):
    """Expected transition counts ``counts [B, K, K]`` (float64) from per-frame normalised
    ``log_alpha``/``log_beta`` (any per-frame constant cancels: each pair posterior is
    normalised by its own sum ``Z``). One frame costs 2 K exps and 2 K^2 multiply-adds; a
    frame whose ``Z`` fell below ``tiny`` (underflowed terms could matter) is redone exactly
    in log space."""
    B, T, K = log_obs.shape
    for b in range(B):
        n = lengths[b]
        ea = np.empty(K, np.float64)
        ev = np.empty(K, np.float64)
        u = np.empty(K, np.float64)
        acc = np.zeros((K, K), np.float64)
        for t in range(n - 1):
            ma = -np.inf
            mv = -np.inf
            for k in range(K):
                a = log_alpha[b, t, k]
                v = log_obs[b, t + 1, k] + log_beta[b, t + 1, k]
                ea[k] = a
                ev[k] = v
                if a > ma:
                    ma = a
                if v > mv:
                    mv = v
            if ma == -np.inf or mv == -np.inf:
                continue  # an impossible sequence: no counts
            for k in range(K):
                ea[k] = np.exp(ea[k] - ma)
                ev[k] = np.exp(ev[k] - mv)
            # u = A ev, Z = ea . u
            Z = 0.0
            for i in range(K):
                s = 0.0
                for j in range(K):
                    s += A[i, j] * ev[j]
                u[i] = s
                Z += ea[i] * s
            if Z >= tiny:
                inv = 1.0 / Z
                for i in range(K):
                    w = ea[i] * inv
                    if w != 0.0:
                        for j in range(K):
                            acc[i, j] += w * A[i, j] * ev[j]
            else:
                # Exact frame: log pair scores, normalised by their log-sum-exp.
                m = -np.inf
                for i in range(K):
                    for j in range(K):
                        p = log_alpha[b, t, i] + log_A[i, j] + log_obs[b, t + 1, j] + log_beta[b, t + 1, j]
                        if p > m:
                            m = p
                if m == -np.inf:
                    continue
                tot = 0.0
                for i in range(K):
                    for j in range(K):
                        tot += np.exp(log_alpha[b, t, i] + log_A[i, j] + log_obs[b, t + 1, j] + log_beta[b, t + 1, j] - m)
                for i in range(K):
                    for j in range(K):
                        acc[i, j] += np.exp(log_alpha[b, t, i] + log_A[i, j] + log_obs[b, t + 1, j]
                                            + log_beta[b, t + 1, j] - m) / tot
        for i in range(K):
            for j in range(K):
                counts[b, i, j] = acc[i, j]
