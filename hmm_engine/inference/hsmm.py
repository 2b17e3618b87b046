"""Explicit-duration (semi-Markov) HMM inference: pure, vectorised, log-space functions.

Model
-----
A sequence of ``T`` frames is cut into consecutive segments ``(k_1, d_1), (k_2, d_2), ...``
with ``sum(d_i) == T``. The joint log-probability of a segmentation is::

    log pi[k_1] + log p_{k_1}(d_1) + sum_{i>1} (log A[k_{i-1}, k_i] + log p_{k_i}(d_i))
                + sum_t log_obs[t, state at t]

``A`` has no self-loops (its diagonal is ``-inf``): a state's stay is modelled only by its
duration distribution ``p_k(d)``, ``d = 1..Dmax``.

With ``right_censored=True`` the last segment may be cut by the end of the sequence: its
duration term is the survival function ``log P(D_k >= d)`` instead of ``log p_k(d)``. Use it
when recordings stop in the middle of a state (streams, cropped utterances); without it the
last segment must end exactly at the last frame. Only the end is censored; the first segment
always starts at frame 0.

Shapes (``B`` sequences, ``T`` padded frames, ``K`` states, ``Dmax`` maximum duration)
------------------------------------------------------------------------------------
``log_obs [B, T, K]`` frame log-likelihoods (float32 or float64: the working dtype; float16
and bfloat16 are promoted to float32),
``lengths [B]`` valid frames per sequence (``None``: all ``T``), ``log_startprob [K]``,
``log_transmat [K, K]``, ``log_durations [K, Dmax]`` with ``log_durations[k, d - 1] = log p_k(d)``.
Frames at or past ``lengths[b]`` are ignored (they may hold anything, NaN included).

Algorithm and memory
--------------------
Every recursion loops over time only; each step works on one ``[Dmax, B, K]`` window (the
``Dmax`` candidate segments ending, or starting, at that frame) plus one ``[B, K] @ [K, K]``
transition step, so the work is ``O(B * T * K * (Dmax + K))``. A segment ``[s, e)`` of state
``k`` scores ``cumsum[e, k] - cumsum[s, k]``. Memory is ``O(B * T * K)``: alpha, beta and the
float64 cumulative sums (plus two int32 back-pointer arrays for Viterbi). The window scores are
formed from the cumulative sum for one block of steps at a time (``[block, Dmax, B, K]`` with
about 2^21 elements, a few MB), so no ``[B, T, Dmax, K]`` tensor is ever built; likewise the
expected transitions use ``[block, B, K, K]`` temporaries of the same bounded size. Frame
posteriors come from segment start and end posteriors (occupancy = starts so far - ends so
far, accumulated in float64).

Precision on long inputs: frame scores are centred by their per-frame maximum and summed in
float64, and the forward variables are renormalised at every step by a per-sequence float64
log-scale ``Z[t]`` (as in a scaled forward algorithm). The float32 quantities the recursions
work on are therefore *relative* (bounded by a few segments' worth of scores), while the large
absolute parts (sums over thousands of frames) live in float64. A float32 run on ``T = 20000``
frames matches a float64 run.

Argument order (the engine's one contract, as in :mod:`.hmm`): parameters first
(``log_startprob, log_transmat, log_durations``), then ``log_obs``, then ``lengths`` and
options. Results are the named tuples of :mod:`.results`.

Gradients: :func:`hsmm_log_likelihood` is differentiable with an analytic backward (the
expected statistics of :func:`hsmm_forward_backward`); the other functions are inference/EM
routines and run under ``torch.no_grad()``.
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import List, NamedTuple, Optional

import numpy as np
import torch

from hmm_engine.errors import InvalidInputError, InvalidParameterError
from hmm_engine.threads import single_thread

from .results import HSMMPosteriors, HSMMSample, HSMMViterbiResult, StateSegment

__all__ = [
    "StateSegment",
    "HSMMPosteriors",
    "HSMMViterbiResult",
    "HSMMSample",
    "hsmm_forward_backward",
    "hsmm_log_likelihood",
    "hsmm_viterbi",
    "hsmm_sample",
    "log_survival",
    "impute_censored_durations",
    "segments_log_prob",
]


def log_survival(log_durations: torch.Tensor) -> torch.Tensor:
    """``log P(D_k >= d)`` for ``d = 1..Dmax`` from ``log_durations [K, Dmax]`` -> ``[K, Dmax]``."""
    return torch.logcumsumexp(log_durations.flip(-1), dim=-1).flip(-1)


def impute_censored_durations(censored: torch.Tensor, log_durations: torch.Tensor) -> torch.Tensor:
    """Expected complete-duration counts ``[K, Dmax]`` for censored segments.

    A censored segment of state k seen for ``d`` frames has true duration ``d' >= d`` with
    probability ``p_k(d') / P(D_k >= d)``; this is the E-step for right-censored durations.
    ``censored [K, Dmax]`` holds the expected number of censored segments per observed length.
    """
    log_surv = log_survival(log_durations)
    ratio = torch.where(censored != 0, censored / log_surv.exp().clamp_min(1e-300), torch.zeros_like(censored))
    return torch.cumsum(ratio, dim=-1) * log_durations.exp()


# ----------------------------------------------------------------------------- kernels

# exp() of arguments below these bounds leaves the vectorised fast path (denormal or zero
# results cost 5-50x more on x86); clamping there changes a sum by < 1e-30 relative.
_EXP_FLOOR = {torch.float32: -80.0, torch.float64: -700.0}
# Accumulated expected counts below this are clamped leftovers of impossible events: set to 0.
_COUNT_FLUSH = {torch.float32: 1e-30, torch.float64: 1e-290}


def _lse_parts(x: torch.Tensor, dim: int):
    """``(logsumexp(x, dim), exp(x - shift), shift)``, staying on the fast exp path.

    4x faster than ``torch.logsumexp`` here. All ``-inf`` slices still give exactly ``-inf``
    (the max is added back unshifted); ``exp(x - shift)`` is clamped at ``exp(floor)``.
    """
    top = x.amax(dim)
    shift = top.nan_to_num(neginf=0.0)
    y = (x - shift.unsqueeze(dim)).clamp_min_(_EXP_FLOOR[x.dtype]).exp_()
    return y.sum(dim).log_().add_(top), y, shift


def _lse(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``torch.logsumexp`` equivalent, see :func:`_lse_parts`."""
    return _lse_parts(x, dim)[0]



def _exp_exact(x: torch.Tensor) -> torch.Tensor:
    """``exp`` on the fast path, with arguments below the floor (``-inf`` included) giving 0."""
    floor = _EXP_FLOOR[x.dtype]
    return torch.where(x < floor, torch.zeros((), dtype=x.dtype, device=x.device), x.clamp_min(floor).exp())


# ----------------------------------------------------------------------------- validation


def _validate(log_obs, lengths, log_startprob, log_transmat, log_durations):
    if not torch.is_tensor(log_obs) or log_obs.dim() != 3:
        raise InvalidInputError(f"log_obs must be a [B, T, K] tensor, got {getattr(log_obs, 'shape', type(log_obs))}")
    if log_obs.dtype in (torch.float16, torch.bfloat16):
        # Half-precision scores: the recursions accumulate in float32 (results are float32).
        log_obs = log_obs.float()
    if log_obs.dtype not in (torch.float32, torch.float64):
        raise InvalidInputError(f"log_obs must be floating point (float16/bfloat16/float32/float64), got {log_obs.dtype}")
    batch, frames, states = log_obs.shape
    if batch == 0 or frames == 0 or states == 0:
        raise InvalidInputError(f"log_obs must be non-empty, got shape {tuple(log_obs.shape)}")
    device, dtype = log_obs.device, log_obs.dtype

    def param(name, value, shape):
        value = torch.as_tensor(value)
        if tuple(value.shape) != shape:
            raise InvalidParameterError(f"{name} must have shape {list(shape)}, got {list(value.shape)}")
        value = value.to(device=device, dtype=dtype)
        if torch.isnan(value).any() or torch.isposinf(value).any():
            raise InvalidParameterError(f"{name} must be log-probabilities (no NaN or +inf)")
        return value

    log_startprob = param("log_startprob", log_startprob, (states,))
    log_transmat = param("log_transmat", log_transmat, (states, states))
    if not torch.is_tensor(log_durations) or log_durations.dim() != 2 or log_durations.shape[0] != states:
        raise InvalidParameterError(
            f"log_durations must have shape [K={states}, Dmax], got {list(torch.as_tensor(log_durations).shape)}"
        )
    if log_durations.shape[1] == 0:
        raise InvalidParameterError("log_durations needs at least one duration (Dmax >= 1)")
    log_durations = param("log_durations", log_durations, tuple(log_durations.shape))

    if lengths is None:
        lengths = torch.full((batch,), frames, dtype=torch.long, device=device)
    else:
        lengths = torch.as_tensor(lengths)
        if lengths.dtype.is_floating_point or lengths.dtype == torch.bool or lengths.shape != (batch,):
            raise InvalidInputError(f"lengths must be an integer tensor of shape [{batch}]")
        lengths = lengths.to(device=device, dtype=torch.long)
        if (lengths < 1).any() or (lengths > frames).any():
            raise InvalidInputError(f"lengths must lie in [1, {frames}], got {lengths.tolist()}")

    valid = torch.arange(frames, device=device)[None, :] < lengths[:, None]
    log_obs = log_obs.masked_fill(~valid[..., None], 0.0)
    if torch.isnan(log_obs).any() or torch.isposinf(log_obs).any():
        raise InvalidInputError("log_obs contains NaN or +inf inside the sequence lengths")
    return log_obs, lengths, log_startprob, log_transmat, log_durations


class _Prepared(NamedTuple):
    # Time-major, padded so that every window slice is in range. Index (s + Dmax) holds time s.
    obs_cum: torch.Tensor  # [T + 1, B, K] float64 cumsum of centred frame scores
    frame_offset: torch.Tensor  # [B] float64: sum of the per-frame maxima removed (added back to ll)
    blocked_cum: Optional[torch.Tensor]  # [T + 1, B, K] int32 count of -inf frames, or None
    lengths: torch.Tensor
    dmax: int


def _prepare_scores(log_obs: torch.Tensor, lengths: torch.Tensor, dmax: int) -> _Prepared:
    batch, frames, states = log_obs.shape
    neg_inf = torch.isneginf(log_obs)
    has_blocked = bool(neg_inf.any())
    obs = log_obs.to(torch.float64)
    if has_blocked:
        obs = obs.masked_fill(neg_inf, 0.0)
    # Centre each frame on its best state so the float64 sums stay moderate; the removed
    # maxima are added back to the log-likelihood at the end.
    frame_max = obs.masked_fill(neg_inf, -math.inf).amax(-1) if has_blocked else obs.amax(-1)
    frame_max = torch.where(torch.isfinite(frame_max), frame_max, torch.zeros_like(frame_max))
    obs = obs - frame_max[..., None]
    cum = torch.zeros(frames + 1, batch, states, dtype=torch.float64, device=log_obs.device)
    torch.cumsum(obs.transpose(0, 1), dim=0, out=cum[1:])
    blocked_cum = None
    if has_blocked:
        blocked_cum = torch.zeros(frames + 1, batch, states, dtype=torch.int32, device=log_obs.device)
        torch.cumsum(neg_inf.transpose(0, 1).to(torch.int32), dim=0, out=blocked_cum[1:])
    return _Prepared(cum, frame_max.sum(-1), blocked_cum, lengths, dmax)


class _Forward(NamedTuple):
    alpha: torch.Tensor  # [T + 1, B, K]: log P(x[:t], a segment of k ends at t) - Z[t]
    start_pad: torch.Tensor  # [Dmax + T + 1, B, K]: log P(x[:s], a segment of k starts at s) - Z[s]
    rel_cum: torch.Tensor  # [T + 1 + Dmax, B, K] float64: cumsum[t] - Z[t] (padded with 0)
    log_scale: torch.Tensor  # [T + 1, B] float64: Z[t] (without the frame offsets)
    best_duration: Optional[torch.Tensor]  # Viterbi: [T + 1, B, K] window index of the best d
    best_previous: Optional[torch.Tensor]  # Viterbi: [T + 1, B, K] best predecessor state


def _end_masks(lengths: torch.Tensor, frames: int, right_censored: bool):
    """Steps t at which some sequence ends: {t: bool[B]} (only needed under censoring)."""
    if not right_censored:
        return {}
    return {int(t): lengths == t for t in torch.unique(lengths).tolist()}


def _threads(device: torch.device):
    """One intra-op thread for the time loops on CPU (tiny kernels: hand-offs cost more)."""
    return single_thread() if device.type == "cpu" else contextlib.nullcontext()


def _single_threaded_on_cpu(fn):
    """Run a public entry point with one intra-op thread when its tensors are on the CPU.

    Everything here is either a time loop of small kernels or a handful of bulk ops over
    ``O(B T K)`` elements; on a shared 2-core machine the thread pool costs far more than it
    gains (benchmarks/bench_hsmm.py prints both).
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        tensors = [a for a in args if torch.is_tensor(a)] + [v for v in kwargs.values() if torch.is_tensor(v)]
        on_cpu = all(t.device.type == "cpu" for t in tensors)
        with single_thread() if on_cpu else contextlib.nullcontext():
            return fn(*args, **kwargs)

    return wrapper


def _forward(prep: _Prepared, log_startprob, log_transmat, log_durations, right_censored: bool, viterbi: bool):
    """Scaled forward (sum-product) or Viterbi (max-product) recursion over segment ends."""
    with _threads(log_durations.device):
        return _forward_loop(prep, log_startprob, log_transmat, log_durations, right_censored, viterbi)


def _chunk_size(dmax: int, batch: int, states: int) -> int:
    """Time steps per block of precomputed window scores (~2^21 elements, a few MB)."""
    return max(1, (1 << 21) // max(1, dmax * batch * states))


def _windows(values: torch.Tensor, first: int, count: int, dmax: int, ref: torch.Tensor, sign: float, dtype):
    """Window differences for ``count`` consecutive steps -> ``[count, Dmax, B, K]`` in ``dtype``.

    ``values [N, B, K]`` float64; step ``j`` (from ``first``) uses ``values[j : j + Dmax]``
    and ``ref[j - first]``; returns ``sign * (values[j + i] - ref)``. Differences are taken in
    float64 (both terms can be large) and only then cast: the result is bounded by a few
    segments' worth of scores.
    """
    win = values.unfold(0, dmax, 1)[first : first + count]  # [count, B, K, Dmax]
    diff = win - ref[..., None]
    if sign < 0:
        diff = diff.neg_()
    return diff.to(dtype).permute(0, 3, 1, 2).contiguous()


def _exp_matmul_log(log_a: torch.Tensor, mat: torch.Tensor) -> torch.Tensor:
    """``log(exp(log_a) @ mat)`` for ``log_a [B, K]`` and a probability matrix ``mat [K, K]``.

    The sum-product transition step as one small matmul instead of a ``[B, K, K]``
    log-sum-exp; rows are shifted by their max, so nothing overflows, and all ``-inf`` rows
    stay ``-inf``.
    """
    top = log_a.amax(-1, keepdim=True)
    return torch.log(_exp_exact(log_a - top.nan_to_num(neginf=0.0)) @ mat).add_(top)


def _forward_loop(prep: _Prepared, log_startprob, log_transmat, log_durations, right_censored: bool, viterbi: bool):
    cum = prep.obs_cum
    frames_p1, batch, states = cum.shape
    frames, dmax = frames_p1 - 1, prep.dmax
    device, dtype = log_durations.device, log_durations.dtype
    neg_inf = -math.inf

    # Window index i <-> start s = t - Dmax + i <-> duration d = Dmax - i. Padded arrays hold
    # time s at index s + Dmax; the pads hold -inf start scores, so they never contribute.
    dur_rev = log_durations.flip(-1).t()[:, None, :]  # [Dmax, 1, K]
    surv_rev = log_survival(log_durations).flip(-1).t()[:, None, :] if right_censored else None
    end_masks = _end_masks(prep.lengths, frames, right_censored)
    cum_pad = torch.cat([torch.zeros(dmax, batch, states, dtype=torch.float64, device=device), cum])

    alpha = torch.full((frames + 1, batch, states), neg_inf, dtype=dtype, device=device)
    start_pad = torch.full((dmax + frames + 1, batch, states), neg_inf, dtype=dtype, device=device)
    start_pad[dmax] = log_startprob
    scale_pad = torch.zeros((dmax + frames + 1, batch), dtype=torch.float64, device=device)  # Z[s] at s + Dmax
    best_duration = best_previous = None
    if viterbi:
        best_duration = torch.zeros((frames + 1, batch, states), dtype=torch.int32, device=device)
        best_previous = torch.zeros((frames + 1, batch, states), dtype=torch.int32, device=device)
    trans = log_transmat[None]  # [1, K(from), K(to)]
    trans_prob = log_transmat.exp()
    chunk = _chunk_size(dmax, batch, states)

    for t0 in range(1, frames + 1, chunk):
        t1 = min(frames + 1, t0 + chunk)
        # Emission part of every window in the block: cumsum[t] - cumsum[s].
        seg_block = _windows(cum_pad, t0, t1 - t0, dmax, cum[t0:t1], -1.0, dtype)
        if not right_censored:
            seg_block += dur_rev
        for t in range(t0, t1):
            window = slice(t, t + dmax)
            scores = start_pad[window] + seg_block[t - t0]
            # Scale gained since each start s: start_pad[s] is relative to Z[s], alpha[t] to Z[t-1].
            scores += (scale_pad[window] - scale_pad[dmax + t - 1]).to(dtype)[:, :, None]
            if right_censored:
                mask = end_masks.get(t)
                scores += torch.where(mask[None, :, None], surv_rev, dur_rev) if mask is not None else dur_rev
            if prep.blocked_cum is not None:
                # A segment containing a -inf frame is impossible (its cumsum would be NaN).
                lo = max(t - dmax, 0)
                blocked = prep.blocked_cum[t][None] != prep.blocked_cum[lo:t]
                scores[dmax - (t - lo) :] = scores[dmax - (t - lo) :].masked_fill(blocked, neg_inf)
            if viterbi:
                value, index = scores.max(0)
                best_duration[t] = index
            else:
                value = _lse(scores, 0)
            # No segment can end at t (e.g. t < min_duration): keep the scale, alpha stays -inf.
            norm = value.amax(-1).nan_to_num_(neginf=0.0)
            torch.sub(value, norm[:, None], out=alpha[t])
            scale_pad[dmax + t] = scale_pad[dmax + t - 1] + norm
            if viterbi:
                value, index = (alpha[t][:, :, None] + trans).max(1)
                start_pad[dmax + t] = value
                best_previous[t] = index
            else:
                start_pad[dmax + t] = _exp_matmul_log(alpha[t], trans_prob)
    log_scale = scale_pad[dmax:]
    rel_cum = torch.cat([cum - log_scale[:, :, None], torch.zeros(dmax, batch, states, dtype=torch.float64, device=device)])
    return _Forward(alpha, start_pad, rel_cum, log_scale, best_duration, best_previous)


def _gather_time(values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """values [T + 1, B, ...] -> values[lengths[b], b, ...]."""
    return values[lengths, torch.arange(lengths.shape[0], device=lengths.device)]


def _final(fwd: _Forward, prep: _Prepared):
    """(log-likelihood [B] float64, log-likelihood relative to Z[T_b] [B] in working dtype)."""
    rel = torch.logsumexp(_gather_time(fwd.alpha, prep.lengths), -1)
    total = rel.to(torch.float64) + _gather_time(fwd.log_scale, prep.lengths) + prep.frame_offset
    return total, rel


# ----------------------------------------------------------------------------- public API


@torch.compiler.disable
def hsmm_log_likelihood(
    log_startprob: torch.Tensor,
    log_transmat: torch.Tensor,
    log_durations: torch.Tensor,
    log_obs: torch.Tensor,
    lengths: Optional[torch.Tensor] = None,
    right_censored: bool = False,
) -> torch.Tensor:
    """``log p(x_b)`` -> ``[B]`` in the dtype of ``log_obs`` (float32 for half inputs).

    Differentiable in all four tensors with an analytic backward: the gradients are the
    expected statistics of :func:`hsmm_forward_backward` (frame posteriors for ``log_obs``,
    expected starts, segment transitions and durations for the parameters), so a backward
    costs one forward-backward on top of the forward, in ``O(B T K)`` memory.
    """
    tensors = [t for t in (log_startprob, log_transmat, log_durations, log_obs) if torch.is_tensor(t)]
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return _HSMMLogLikelihood.apply(log_startprob, log_transmat, log_durations, log_obs, lengths, right_censored)
    return _hsmm_log_likelihood(log_startprob, log_transmat, log_durations, log_obs, lengths, right_censored)


class _HSMMLogLikelihood(torch.autograd.Function):
    """``sum_b g_b log p(x_b)`` has gradient ``sum_b g_b E[statistics_b]``: one weighted
    forward-backward (the weights take any sign, e.g. ``g = -1`` for a loss)."""

    @staticmethod
    def forward(ctx, log_startprob, log_transmat, log_durations, log_obs, lengths, right_censored):
        ctx.save_for_backward(log_startprob, log_transmat, log_durations, log_obs)
        ctx.lengths, ctx.right_censored = lengths, right_censored
        return _hsmm_log_likelihood(log_startprob, log_transmat, log_durations, log_obs, lengths, right_censored)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        ls, lt, ld, lo = ctx.saved_tensors
        res = hsmm_forward_backward(ls, lt, ld, lo, ctx.lengths, ctx.right_censored, weights=grad.detach())
        need = ctx.needs_input_grad

        def cast(value, like):
            return value.to(dtype=like.dtype, device=like.device) if torch.is_tensor(like) else value

        g_obs = g_start = g_trans = g_dur = None
        if need[3]:
            w = grad.detach().to(res.posteriors.dtype).nan_to_num(0.0)
            g_obs = cast(res.posteriors * w[:, None, None], lo)
        if need[0]:
            g_start = cast(res.expected_starts, ls)
        if need[1]:
            g_trans = cast(res.expected_transitions, lt)
        if need[2]:
            g_dur = cast(res.expected_durations, ld)
        return g_start, g_trans, g_dur, g_obs, None, None


@_single_threaded_on_cpu
def _hsmm_log_likelihood(log_startprob, log_transmat, log_durations, log_obs, lengths, right_censored):
    with torch.no_grad():
        log_obs, lengths, log_startprob, log_transmat, log_durations = _validate(
            log_obs, lengths, log_startprob, log_transmat, log_durations
        )
        prep = _prepare_scores(log_obs, lengths, log_durations.shape[1])
        fwd = _forward(prep, log_startprob, log_transmat, log_durations, right_censored, viterbi=False)
        return _final(fwd, prep)[0].to(log_obs.dtype)


@torch.compiler.disable
@_single_threaded_on_cpu
def hsmm_forward_backward(
    log_startprob: torch.Tensor,
    log_transmat: torch.Tensor,
    log_durations: torch.Tensor,
    log_obs: torch.Tensor,
    lengths: Optional[torch.Tensor] = None,
    right_censored: bool = False,
    *,
    weights: Optional[torch.Tensor] = None,
) -> HSMMPosteriors:
    """State posteriors, log-likelihood and summed expected statistics for EM.

    Args:
        log_startprob [K], log_transmat [K, K] (diagonal ``-inf``), log_durations [K, Dmax],
        log_obs [B, T, K], lengths [B] (optional), right_censored (see module doc).
        weights: optional [B] (any sign) weighting each sequence's expected statistics in the
            batch sums (the analytic gradient of ``sum_b w_b log p(x_b)`` uses it).

    Returns:
        :class:`HSMMPosteriors` — posteriors [B, T, K], log_likelihood [B], and the batch sums
        expected_transitions [K, K], expected_durations [K, Dmax], expected_starts [K],
        censored_durations [K, Dmax]. Sequences with ``log_likelihood == -inf`` contribute
        zero posteriors and statistics.
    """
    with torch.no_grad():
        log_obs, lengths, log_startprob, log_transmat, log_durations = _validate(
            log_obs, lengths, log_startprob, log_transmat, log_durations
        )
        batch, frames, states = log_obs.shape
        dmax = log_durations.shape[1]
        dtype, device = log_obs.dtype, log_obs.device
        prep = _prepare_scores(log_obs, lengths, dmax)
        fwd = _forward(prep, log_startprob, log_transmat, log_durations, right_censored, viterbi=False)
        loglik, rel_ll = _final(fwd, prep)
        possible = torch.isfinite(rel_ll)
        if weights is not None:
            weights = torch.as_tensor(weights).to(device=device, dtype=torch.float64).reshape(-1)
            if weights.shape != (batch,):
                raise InvalidInputError(f"weights must have {batch} entries, got {weights.numel()}")
        # Weight of each sequence in the batch sums (impossible sequences count 0).
        seq_w = possible.to(torch.float64) * (1.0 if weights is None else weights)
        seq_w_dt = seq_w.to(dtype)
        rel_ll = torch.where(possible, rel_ll, torch.zeros_like(rel_ll))
        batch_idx = torch.arange(batch, device=device)

        # beta_end[e]: log P(x[e:T] | a segment ended at e) - (Z[T] - Z[e]); 0 at e = T_b and
        # -inf past it (padding beyond T keeps every window slice in range).
        beta_end = torch.full((frames + 1 + dmax, batch, states), -math.inf, dtype=dtype, device=device)
        beta_end[lengths, batch_idx] = 0.0
        beta_start = torch.full((frames + 1, batch, states), -math.inf, dtype=dtype, device=device)
        dur_counts = torch.zeros((dmax, states), dtype=torch.float64, device=device)
        cens_counts = torch.zeros((dmax, states), dtype=torch.float64, device=device)

        dur = log_durations.t()[:, None, :]  # [Dmax, 1, K], index i <-> d = i + 1
        surv = log_survival(log_durations).t()[:, None, :] if right_censored else None
        offsets = torch.arange(1, dmax + 1, device=device)
        trans_prob_t = log_transmat.exp().t()  # beta_end[k] = log sum_j A[k, j] exp(beta_start[j])
        rel_cum, start_pad, blocked_cum = fwd.rel_cum, fwd.start_pad, prep.blocked_cum
        # Segment posterior = start score + terms - log-likelihood; fold the last two per start.
        start_minus_ll = start_pad[dmax:] - rel_ll[None, :, None]  # [T + 1, B, K]
        t_last = lengths[None, :]
        min_length = int(lengths.min())
        chunk = _chunk_size(dmax, batch, states)

        with _threads(device):
            for s1 in range(frames, 0, -chunk):
                s0 = max(0, s1 - chunk)
                # Segment [s, s + d) relative to the scales: (cumsum - Z)[e] - (cumsum - Z)[s].
                seg_block = _windows(rel_cum, s0 + 1, s1 - s0, dmax, rel_cum[s0:s1], 1.0, dtype)
                if not right_censored:
                    seg_block += dur
                for s in range(s1 - 1, s0 - 1, -1):
                    terms = beta_end[s + 1 : s + 1 + dmax] + seg_block[s - s0]
                    if right_censored:
                        ends_here = (s + offsets)[:, None] == t_last  # [Dmax, B]
                        terms += torch.where(ends_here[:, :, None], surv, dur)
                    if blocked_cum is not None:
                        hi = min(s + dmax, frames)
                        blocked = blocked_cum[s + 1 : hi + 1] != blocked_cum[s][None]
                        terms[: hi - s] = terms[: hi - s].masked_fill(blocked, -math.inf)
                    value, weights, shift = _lse_parts(terms, 0)
                    beta_start[s] = value
                    # Posterior of each segment [s, s + d): exp(start + terms - ll), reusing the
                    # exps of the log-sum-exp (the factor is <= 1: it is the best segment's).
                    seg_post = weights * _exp_exact(start_minus_ll[s] + shift)  # [Dmax, B, K]
                    if weights is not None:
                        seg_post = seg_post * seq_w_dt[None, :, None]
                    if right_censored:
                        cens = seg_post * ends_here[:, :, None]
                        cens_counts += cens.sum(1)
                        dur_counts += (seg_post - cens).sum(1)
                    else:
                        dur_counts += seg_post.sum(1)
                    if s > 0:
                        back = _exp_matmul_log(value, trans_prob_t)
                        if s < min_length:
                            beta_end[s] = back
                        else:  # keep 0 at e = T_b and -inf past it
                            beta_end[s] = torch.where((s < lengths)[:, None], back, beta_end[s])

        # Frame occupancy = segments started at or before t minus segments ended at or before t.
        # Computed in bulk with exact exp so that impossible states get exactly zero.
        ll64 = rel_ll.to(torch.float64)[None, :, None]
        start_post = _exp_exact(start_pad[dmax : dmax + frames].to(torch.float64) + beta_start[:frames] - ll64)
        end_post = _exp_exact(fwd.alpha.to(torch.float64) + beta_end[: frames + 1] - ll64)
        end_post[0] = 0.0
        occupancy = torch.cumsum(start_post[:frames], 0) - torch.cumsum(end_post[:frames], 0)
        occupancy = occupancy.clamp_min(0.0)
        total = occupancy.sum(-1, keepdim=True)
        occupancy = torch.where(total > 0, occupancy / total.clamp_min(1e-300), occupancy)
        posteriors = occupancy.transpose(0, 1).to(dtype)
        valid = torch.arange(frames, device=device)[None, :] < lengths[:, None]
        posteriors = posteriors * (valid & possible[:, None])[..., None]

        # Expected transitions at internal boundaries t = 1..T_b - 1 (beta_start is -inf from
        # T_b on): sum over (t, b) of exp(alpha[t, j] + A[j, k] + beta_start[t, k] - ll), in the
        # working dtype, chunked over time so the [chunk, B, K, K] temporary stays small (a
        # factorised matmul would need exp(beta - ll), which can overflow for states that are
        # unreachable at t). Clamped exps leave ~1e-35 on impossible moves: flushed below.
        expected_trans = torch.zeros((states, states), dtype=torch.float64, device=device)
        beta_rel = beta_start[:frames] - rel_ll[None, :, None]
        chunk = max(1, (1 << 21) // max(1, batch * states * states))
        for t0 in range(1, frames, chunk):
            t1 = min(frames, t0 + chunk)
            joint = fwd.alpha[t0:t1, :, :, None] + beta_rel[t0:t1, :, None, :]
            joint += log_transmat
            joint = joint.clamp_min_(_EXP_FLOOR[dtype]).exp_()
            if weights is not None:
                joint *= seq_w_dt[None, :, None, None]
            expected_trans += joint.sum((0, 1), dtype=torch.float64)
        flush = _COUNT_FLUSH[dtype] * frames * batch
        expected_trans.masked_fill_((log_transmat == -math.inf) | (expected_trans.abs() < flush), 0.0)

        expected_starts = (start_post[0] * seq_w[:, None]).sum(0)
        # Impossible sequences have -inf alphas, so their terms above are already exp(-inf) = 0.
        dur_counts_k = dur_counts.t().masked_fill(dur_counts.t().abs() < flush, 0.0)
        cens_counts_k = cens_counts.t().masked_fill(cens_counts.t().abs() < flush, 0.0)
        if right_censored:
            dur_counts_k = dur_counts_k + impute_censored_durations(cens_counts_k, log_durations.to(torch.float64))
        return HSMMPosteriors(
            posteriors=posteriors,
            log_likelihood=loglik.to(dtype),
            expected_transitions=expected_trans.to(dtype),
            expected_durations=dur_counts_k.to(dtype),
            expected_starts=expected_starts.to(dtype),
            censored_durations=cens_counts_k.to(dtype),
        )


@torch.compiler.disable
@_single_threaded_on_cpu
def hsmm_viterbi(
    log_startprob: torch.Tensor,
    log_transmat: torch.Tensor,
    log_durations: torch.Tensor,
    log_obs: torch.Tensor,
    lengths: Optional[torch.Tensor] = None,
    right_censored: bool = False,
) -> HSMMViterbiResult:
    """Most probable segmentation (max-product over segments).

    Args: as :func:`hsmm_forward_backward`.

    Returns:
        :class:`HSMMViterbiResult` — path [B, T] long (``-1`` past each length), score [B]
        (``-inf`` and an all ``-1`` path for an impossible sequence), and per sequence the list
        of :class:`StateSegment` ``(state, start, end)`` with ``end`` exclusive.
    """
    with torch.no_grad():
        log_obs, lengths, log_startprob, log_transmat, log_durations = _validate(
            log_obs, lengths, log_startprob, log_transmat, log_durations
        )
        batch, frames, states = log_obs.shape
        dmax = log_durations.shape[1]
        prep = _prepare_scores(log_obs, lengths, dmax)
        fwd = _forward(prep, log_startprob, log_transmat, log_durations, right_censored, viterbi=True)
        last = _gather_time(fwd.alpha, lengths)  # [B, K]
        rel_best, last_state = last.max(-1)
        score = rel_best.to(torch.float64) + _gather_time(fwd.log_scale, lengths) + prep.frame_offset

        # Backtracking follows one pointer per segment; it is inherently sequential, so it runs
        # on the host over small integer arrays.
        best_d = fwd.best_duration.cpu().numpy()
        best_prev = fwd.best_previous.cpu().numpy()
        lengths_host = lengths.cpu().tolist()
        finite = torch.isfinite(rel_best).cpu().tolist()
        states_host = last_state.cpu().tolist()
        path = np.full((batch, frames), -1, dtype=np.int64)
        segments: List[List[StateSegment]] = []
        for b in range(batch):
            segs: List[StateSegment] = []
            if finite[b]:
                end, state = lengths_host[b], states_host[b]
                while True:
                    start = end - (dmax - int(best_d[end, b, state]))
                    segs.append(StateSegment(state, start, end))
                    path[b, start:end] = state
                    if start <= 0:
                        break
                    state, end = int(best_prev[start, b, state]), start
                segs.reverse()
            segments.append(segs)
        return HSMMViterbiResult(torch.from_numpy(path).to(log_obs.device), score.to(log_obs.dtype), segments)


def _gumbel_argmax(logits: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Sample categorical indices along the last dim of unnormalised log-probabilities."""
    gen_device = generator.device if generator is not None else logits.device
    u = torch.rand(logits.shape, generator=generator, device=gen_device, dtype=torch.float64).to(logits.device)
    gumbel = -torch.log(-torch.log(u.clamp(1e-300, 1.0 - 1e-16)))
    return (logits.to(torch.float64) + gumbel).argmax(-1)


@torch.compiler.disable
@_single_threaded_on_cpu
def hsmm_sample(
    log_startprob: torch.Tensor,
    log_transmat: torch.Tensor,
    log_durations: torch.Tensor,
    lengths,
    *,
    log_obs: Optional[torch.Tensor] = None,
    right_censored: bool = False,
    generator: Optional[torch.Generator] = None,
) -> HSMMSample:
    """Sample segmentations of exactly ``lengths[b]`` frames.

    Forward filtering, backward sampling: segmentations are drawn from the model conditioned
    on the sequence length (the last segment ends exactly at the last frame, or is censored
    there when ``right_censored``). With ``log_obs [B, T, K]`` they are drawn from the
    posterior given the observations instead of the prior.

    Args:
        log_startprob [K], log_transmat [K, K], log_durations [K, Dmax]; lengths: int sequence
        or tensor [B]; log_obs: optional [B, T, K] with ``T >= max(lengths)``; generator: torch
        generator for reproducibility.

    Returns:
        :class:`HSMMSample` — states [B, T] long (``-1`` past each length) and segment lists.

    Raises:
        InvalidInputError: if the model cannot produce a sequence of some requested length.
    """
    with torch.no_grad():
        log_durations = torch.as_tensor(log_durations)
        dtype = log_durations.dtype if log_durations.dtype in (torch.float32, torch.float64) else torch.float32
        device = log_durations.device
        lengths = torch.as_tensor(lengths, device=device).reshape(-1)
        if lengths.numel() == 0:
            raise InvalidInputError("lengths must name at least one sequence")
        if log_obs is None:
            if lengths.dtype.is_floating_point or (lengths < 1).any():
                raise InvalidInputError(f"lengths must be positive integers, got {lengths.tolist()}")
            log_obs = torch.zeros(lengths.numel(), int(lengths.max()), log_durations.shape[0], dtype=dtype, device=device)
        log_obs, lengths, log_startprob, log_transmat, log_durations = _validate(
            log_obs, lengths, log_startprob, log_transmat, log_durations
        )
        batch, frames, states = log_obs.shape
        dmax = log_durations.shape[1]
        device = log_obs.device
        prep = _prepare_scores(log_obs, lengths, dmax)
        fwd = _forward(prep, log_startprob, log_transmat, log_durations, right_censored, viterbi=False)
        last = _gather_time(fwd.alpha, lengths)
        if not torch.isfinite(last.amax(-1)).all():
            bad = lengths[~torch.isfinite(last.amax(-1))].tolist()
            raise InvalidInputError(f"the model cannot produce sequences of length {bad} (durations/topology)")

        dur_rev = log_durations.flip(-1).t()  # [Dmax, K], index i <-> d = Dmax - i
        surv_rev = log_survival(log_durations).flip(-1).t() if right_censored else None
        window = torch.arange(dmax, device=device)
        # rel_cum with time s at row s + Dmax, like start_pad.
        rel_pad = torch.cat([torch.zeros_like(fwd.rel_cum[:dmax]), fwd.rel_cum])
        end = lengths.clone()
        state = _gumbel_argmax(last, generator)
        active = torch.arange(batch, device=device)
        records = []  # (sequence ids, states, starts, ends) per backward step
        while active.numel() > 0:
            e, k = end[active], state[active]
            pad_idx = e[:, None] + window[None, :]  # start_pad / rel_cum row of s = e - Dmax + i
            b_idx, k_idx = active[:, None], k[:, None]
            seg = rel_pad[(dmax + e)[:, None], b_idx, k_idx] - rel_pad[pad_idx, b_idx, k_idx]
            dur_w = dur_rev[:, k].t()  # [n, Dmax]
            if right_censored:
                dur_w = torch.where((e == lengths[active])[:, None], surv_rev[:, k].t(), dur_w)
            logits = fwd.start_pad[pad_idx, b_idx, k_idx] + seg.to(dtype) + dur_w
            if prep.blocked_cum is not None:
                starts = (e[:, None] - dmax + window[None, :]).clamp_min(0)
                blocked = prep.blocked_cum[e[:, None], b_idx, k_idx] != prep.blocked_cum[starts, b_idx, k_idx]
                logits = logits.masked_fill(blocked, -math.inf)
            dur = dmax - _gumbel_argmax(logits, generator)
            start = e - dur
            records.append((active, k, start, e))
            going = start > 0
            active, start, k = active[going], start[going], k[going]
            if active.numel() == 0:
                break
            prev_logits = fwd.alpha[start, active] + log_transmat[:, k].t()  # [n, K(from)]
            state[active] = _gumbel_argmax(prev_logits, generator)
            end[active] = start

        states_out = np.full((batch, frames), -1, dtype=np.int64)
        segments: List[List[StateSegment]] = [[] for _ in range(batch)]
        for ids, ks, ss, es in records:
            for b, k, s, e in zip(ids.tolist(), ks.tolist(), ss.tolist(), es.tolist()):
                segments[b].append(StateSegment(k, s, e))
                states_out[b, s:e] = k
        for segs in segments:
            segs.reverse()
        return HSMMSample(torch.from_numpy(states_out).to(device), segments)


def segments_log_prob(
    log_startprob: torch.Tensor,
    log_transmat: torch.Tensor,
    log_durations: torch.Tensor,
    log_obs: torch.Tensor,
    segments: List[StateSegment],
    right_censored: bool = False,
) -> float:
    """Joint log-probability of one sequence ``log_obs [T, K]`` and a given segmentation.

    The segments must tile ``[0, T)``. Useful to score a hand-made or reference alignment.
    """
    log_obs = torch.as_tensor(log_obs, dtype=torch.float64)
    frames = log_obs.shape[0]
    if not segments or segments[0].start != 0 or segments[-1].end != frames:
        raise InvalidInputError("segments must tile [0, T)")
    dmax = log_durations.shape[1]
    log_durations = torch.as_tensor(log_durations, dtype=torch.float64)
    surv = log_survival(log_durations)
    total = float(log_startprob[segments[0].state])
    for n, (state, start, end) in enumerate(segments):
        if n > 0:
            if start != segments[n - 1].end:
                raise InvalidInputError("segments must be contiguous")
            total += float(log_transmat[segments[n - 1].state, state])
        d = end - start
        if d < 1:
            raise InvalidInputError(f"empty segment {segments[n]}")
        if d > dmax:
            return -math.inf
        table = surv if right_censored and n == len(segments) - 1 else log_durations
        total += float(table[state, d - 1]) + float(log_obs[start:end, state].sum())
    return total
