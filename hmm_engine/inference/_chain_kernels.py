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


@njit(cache=_CACHE, inline="always")
def _backtrack(delta, back, log_final, path):
    """Fill ``path [T]`` back from the best final position of a Viterbi table ``delta [T, S]``
    (back-pointers ``back``); returns the path's score (-inf, and a path of -1, when none)."""
    T, S = delta.shape
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
    return _backtrack(delta, back, log_final, path)


@njit(cache=_CACHE)
def loop_viterbi(log_start, log_final, stay, nxt, log_exit, log_enter, log_obs, path):
    """Best path through a loop of left-to-right units (:class:`.chain.Loop`); returns its score.

    Into ``s`` at a frame: its self-loop, the step from ``s - 1`` (``nxt[s - 1]``, -inf across
    units) or the hub: the best ``delta[t - 1, q] + log_exit[q]`` over all q, computed once a
    frame, plus ``log_enter[s]``. O(S) a frame instead of a dense matrix's O(S^2). Ties go to
    the self-loop, then the step, then the hub (its lowest-index exit).
    """
    T, S = log_obs.shape
    delta = np.empty((T, S))
    back = np.empty((T, S), np.int64)
    for s in range(S):
        delta[0, s] = log_start[s] + log_obs[0, s]
        back[0, s] = -1
    for t in range(1, T):
        hub = NEG_INF
        hub_arg = -1
        for s in range(S):
            v = delta[t - 1, s] + log_exit[s]
            if v > hub:
                hub = v
                hub_arg = s
        for s in range(S):
            best = delta[t - 1, s] + stay[s]
            arg = s
            if s > 0:
                v = delta[t - 1, s - 1] + nxt[s - 1]
                if v > best:
                    best = v
                    arg = s - 1
            v = hub + log_enter[s]
            if v > best:
                best = v
                arg = hub_arg
            delta[t, s] = best + log_obs[t, s]
            back[t, s] = arg
    return _backtrack(delta, back, log_final, path)


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


# --------------------------------------------------------------------------- explicit durations
# Segment (semi-Markov) chains: a visit to position s lasts d frames with log-probability
# ``log_dur[s, d - 1]`` (d = 1 .. max_dur[s]); after it the path takes the step to s + 1
# (``nxt[s]``) or a skip arc. A position with a finite ``geo[s]`` instead has geometric,
# unbounded durations, ``(d - 1) geo[s] + log(1 - exp(geo[s]))``, handled by an O(1)-per-frame
# recursion (``g``/``h`` below) instead of a loop over d: silence may last the whole utterance.
# ``csum [T + 1, S]`` holds prefix sums of ``log_obs`` so that a segment [b, e) of s scores
# ``csum[e, s] - csum[b, s]``. ``a_start[t, s]`` is log p(x[:t], a visit to s starts at t);
# ``a_end[t, s]`` log p(x[:t], one ends at t); ``b_end[t, s]`` log p(x[t:], end | a visit to
# s ended at t); ``b_start[t, s]`` log p(x[t:], end | a visit to s starts at t). For geometric
# positions ``g[e, s]`` is log p(x[:e], in s at frame e - 1) without the leaving factor and
# ``h[t, s]`` log p(x[t + 1:], end | in s at frame t). Work is O(T * sum_s max_dur[s]).


# exp(-40) ~ 4e-18: a term that far below the largest of a log-sum-exp changes the sum by
# less than the float64 rounding of the largest term, so its exp is skipped.
_NEGLIGIBLE = -40.0


@njit(cache=_CACHE)
def segment_forward(log_start, log_final, nxt, src, dst, skip, log_dur, max_dur, geo, csum, a_start, a_end, g):
    """Fill ``a_start``, ``a_end``, ``g`` (all ``[T + 1, S]``); return log p(x, end in a final position)."""
    T = csum.shape[0] - 1
    S = csum.shape[1]
    E = src.shape[0]
    terms = np.empty(T + 1)
    for s in range(S):
        a_start[0, s] = log_start[s]
        a_end[0, s] = NEG_INF
        g[0, s] = NEG_INF
    for e in range(1, T + 1):
        for s in range(S):
            if geo[s] == geo[s]:  # finite: geometric position
                g[e, s] = _lae(g[e - 1, s] + geo[s], a_start[e - 1, s]) + csum[e, s] - csum[e - 1, s]
                a_end[e, s] = g[e, s] + np.log1p(-np.exp(geo[s]))
                continue
            g[e, s] = NEG_INF
            top = min(max_dur[s], e)
            m = NEG_INF
            for d in range(1, top + 1):
                v = a_start[e - d, s] + log_dur[s, d - 1] + csum[e, s] - csum[e - d, s]
                terms[d] = v
                if v > m:
                    m = v
            if m == NEG_INF:
                a_end[e, s] = NEG_INF
                continue
            acc = 0.0
            for d in range(1, top + 1):
                x = terms[d] - m
                if x > _NEGLIGIBLE:
                    acc += np.exp(x)
            a_end[e, s] = m + np.log(acc)
        a_start[e, 0] = NEG_INF
        for s in range(1, S):
            a_start[e, s] = a_end[e, s - 1] + nxt[s - 1]
        for k in range(E):
            a_start[e, dst[k]] = _lae(a_start[e, dst[k]], a_end[e, src[k]] + skip[k])
    total = NEG_INF
    for s in range(S):
        total = _lae(total, a_end[T, s] + log_final[s])
    return total


@njit(cache=_CACHE)
def segment_backward(log_final, nxt, src, dst, skip, log_dur, max_dur, geo, csum, a_start, log_lik,
                     b_start, b_end, h, dur_count, starts):
    """Fill ``b_start``, ``b_end`` (``[T + 1, S]``, row T: nothing left) and ``h`` (``[T, S]``).

    With the forward pass done (``a_start``, ``log_lik``), also the expected visit lengths
    ``dur_count [S, Dmax]`` of explicit positions and ``starts [T + 1, S]`` (visit posterior
    mass starting minus ending at each frame): a visit [t, t + d) has posterior
    ``exp(a_start[t] + term_d - log_lik) = exp(term_d - m) * exp(a_start[t] + m - log_lik)``,
    so the per-d exponentials of the backward sum are reused (one more exp per frame).
    """
    T = csum.shape[0] - 1
    S = csum.shape[1]
    E = src.shape[0]
    terms = np.empty(T + 1)
    for s in range(S):
        b_end[T, s] = log_final[s]
        b_start[T, s] = NEG_INF
        for d in range(dur_count.shape[1]):
            dur_count[s, d] = 0.0
        for t in range(T + 1):
            starts[t, s] = 0.0
    for t in range(T - 1, -1, -1):
        for s in range(S):
            if geo[s] == geo[s]:
                leave = np.log1p(-np.exp(geo[s])) + b_end[t + 1, s]
                if t == T - 1:
                    h[t, s] = leave
                else:
                    h[t, s] = _lae(geo[s] + csum[t + 2, s] - csum[t + 1, s] + h[t + 1, s], leave)
                b_start[t, s] = csum[t + 1, s] - csum[t, s] + h[t, s]
                continue
            h[t, s] = NEG_INF
            top = min(max_dur[s], T - t)
            m = NEG_INF
            for d in range(1, top + 1):
                v = log_dur[s, d - 1] + csum[t + d, s] - csum[t, s] + b_end[t + d, s]
                terms[d] = v
                if v > m:
                    m = v
            if m == NEG_INF:
                b_start[t, s] = NEG_INF
                continue
            acc = 0.0
            for d in range(1, top + 1):
                x = terms[d] - m
                terms[d] = np.exp(x) if x > _NEGLIGIBLE else 0.0
                acc += terms[d]
            b_start[t, s] = m + np.log(acc)
            if a_start[t, s] == NEG_INF:
                continue
            scale = np.exp(a_start[t, s] + m - log_lik)
            if scale == 0.0:
                continue
            total = 0.0
            for d in range(1, top + 1):
                p = terms[d] * scale
                dur_count[s, d - 1] += p
                starts[t + d, s] -= p
                total += p
            starts[t, s] += total
        for s in range(S - 1):
            b_end[t, s] = nxt[s] + b_start[t, s + 1]
        b_end[t, S - 1] = NEG_INF
        for k in range(E):
            b_end[t, src[k]] = _lae(b_end[t, src[k]], skip[k] + b_start[t, dst[k]])


@njit(cache=_CACHE)
def segment_counts(nxt, src, dst, skip, max_dur, geo, csum, a_end, g, b_start, b_end, h, log_lik, dur_count, starts,
                   gamma, stay_count, leave_count, next_count, skip_count):
    """After :func:`segment_backward`: frame posteriors ``gamma [T, S]``; the geometric
    equivalents ``stay_count`` (frames that continue a visit, ``sum (d - 1) c_d``) and
    ``leave_count`` (visits) ``[S]``; expected uses of each step / skip arc (``next_count
    [S]``, ``skip_count [E]``)."""
    T = csum.shape[0] - 1
    S = csum.shape[1]
    E = src.shape[0]
    for s in range(S):
        next_count[s] = 0.0
        stay_count[s] = 0.0
        leave_count[s] = 0.0
        if geo[s] == geo[s]:
            for t in range(T):
                gamma[t, s] = np.exp(g[t + 1, s] + h[t, s] - log_lik)
                if t < T - 1:
                    stay_count[s] += np.exp(g[t + 1, s] + geo[s] + csum[t + 2, s] - csum[t + 1, s] + h[t + 1, s] - log_lik)
                leave_count[s] += np.exp(a_end[t + 1, s] + b_end[t + 1, s] - log_lik)
            continue
        occ = 0.0
        for t in range(T):
            occ += starts[t, s]
            gamma[t, s] = occ if occ > 0.0 else 0.0
        for d in range(1, min(max_dur[s], T) + 1):
            c = dur_count[s, d - 1]
            stay_count[s] += (d - 1) * c
            leave_count[s] += c
    for k in range(E):
        skip_count[k] = 0.0
    for t in range(1, T):
        for s in range(S - 1):
            next_count[s] += np.exp(a_end[t, s] + nxt[s] + b_start[t, s + 1] - log_lik)
        for k in range(E):
            skip_count[k] += np.exp(a_end[t, src[k]] + skip[k] + b_start[t, dst[k]] - log_lik)


@njit(cache=_CACHE)
def segment_viterbi(log_start, log_final, nxt, src, dst, skip, log_dur, max_dur, geo, csum, path):
    """Best segmentation as a position path ``path [T]``; returns its joint log-probability.

    Ties go to the shorter visit, then the step from ``s - 1``, then skip arcs (in order).
    """
    T = csum.shape[0] - 1
    S = csum.shape[1]
    E = src.shape[0]
    v_start = np.empty((T + 1, S))
    v_end = np.empty((T + 1, S))
    v_g = np.empty((T + 1, S))
    cont = np.zeros((T + 1, S), np.bool_)  # geometric: frame e - 1 continues the visit of frame e - 2
    best_d = np.zeros((T + 1, S), np.int64)
    from_s = np.full((T + 1, S), -1, np.int64)
    for s in range(S):
        v_start[0, s] = log_start[s]
        v_end[0, s] = NEG_INF
        v_g[0, s] = NEG_INF
    for e in range(1, T + 1):
        for s in range(S):
            if geo[s] == geo[s]:
                stay = v_g[e - 1, s] + geo[s]
                cont[e, s] = stay > v_start[e - 1, s]
                v_g[e, s] = (stay if cont[e, s] else v_start[e - 1, s]) + csum[e, s] - csum[e - 1, s]
                v_end[e, s] = v_g[e, s] + np.log1p(-np.exp(geo[s]))
                continue
            top = min(max_dur[s], e)
            m = NEG_INF
            arg = 0
            for d in range(1, top + 1):
                v = v_start[e - d, s] + log_dur[s, d - 1] + csum[e, s] - csum[e - d, s]
                if v > m:
                    m = v
                    arg = d
            v_end[e, s] = m
            best_d[e, s] = arg
        v_start[e, 0] = NEG_INF
        for s in range(1, S):
            v_start[e, s] = v_end[e, s - 1] + nxt[s - 1]
            from_s[e, s] = s - 1
        for k in range(E):
            v = v_end[e, src[k]] + skip[k]
            if v > v_start[e, dst[k]]:
                v_start[e, dst[k]] = v
                from_s[e, dst[k]] = src[k]
    best = NEG_INF
    arg = -1
    for s in range(S):
        v = v_end[T, s] + log_final[s]
        if v > best:
            best = v
            arg = s
    if arg < 0:
        for t in range(T):
            path[t] = -1
        return best
    e = T
    s = arg
    while e > 0:
        if geo[s] == geo[s]:
            b = e
            while cont[b, s]:
                b -= 1
            d = e - b + 1
        else:
            d = best_d[e, s]
        for t in range(e - d, e):
            path[t] = s
        e -= d
        if e > 0:
            s = from_s[e, s]
    return best
