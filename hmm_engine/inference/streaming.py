"""Streaming (online) inference for hidden Markov models: filtering, fixed-lag smoothing and
Viterbi decoding with partial traceback, on log-likelihood chunks that arrive one at a time.

Conventions follow :mod:`.hmm`: log space, ``log_startprob [K]``, ``log_transmat [K, K]``
(rows = from-state), frame log-likelihoods ``log_obs [t, K]`` for the ``t`` frames of a chunk.
The recursions run in float64 on the inputs' device; the running log-likelihood (the scale
of the normalised forward variables) is a Python float (float64).

Decoding modes
--------------
``lag=None`` (exact): a frame's state is *committed* once every surviving Viterbi path (every
state whose best score is finite) traces back through the same state there — the "immortal
token" of Kaldi's partial traceback. Surviving paths cannot change their past afterwards, so
the concatenation of all committed states is exactly the offline Viterbi path (same
back-pointers, same tie rule: the lowest state index). Only back-pointers since the last
committed frame are kept, ``O(K)`` integers a pending frame; how many frames stay pending
depends on the model and data (a few to a few dozen for speech models; a model whose states
stay indistinguishable can keep the whole stream pending — use a lag for a hard bound).

``lag=L`` (fixed lag): as above, plus a forced decision: after frame ``t`` arrives, frames up
to ``t - L`` are committed along the best path ending at ``t``, and every path that disagrees
with that decision is pruned, so the committed states always form one valid path (the best
path consistent with the forced decisions; with ``L >= T - 1`` it is the offline path). Every
frame is committed at most ``L`` frames after it arrives, regardless of how the stream is
chunked. ``smoothed`` gives the fixed-lag posteriors ``p(z_s | x_0..s+L)``.

A decision depends only on the frames seen, never on how they were chunked: pushing the
frames in any chunking yields the same committed states, filtered and smoothed posteriors.

Expanded state spaces (the semi-Markov model) use ``groups``: the decoder runs on ``K'``
expanded states and reports ``K`` model states (filtered/smoothed summed over a group,
committed states mapped through it); ``log_final [K']`` scores where a stream may end.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, List, NamedTuple, Optional

import numpy as np
import torch
from torch import Tensor

from ..errors import InvalidInputError, InvalidParameterError
from ..threads import single_thread

__all__ = ["StreamStep", "StreamDecoder", "hsmm_expanded_chain", "MAX_EXPANDED_STATES"]

# The semi-Markov stream runs on K * Dmax expanded states with a dense [K', K'] step:
# beyond this the per-frame work (K'^2) stops being real-time on a CPU.
MAX_EXPANDED_STATES = 4096


# Below this a max-shifted sum of exponentials may have lost underflowed terms: recompute exactly.
_TINY = 1e-280


def _log_matvec(v: Tensor, log_m: Tensor, m: Tensor) -> Tensor:
    """``out[..., i] = logsumexp_j(log_m[i, j] + v[..., j])``, as one matrix product on
    ``exp(v - max v)`` (K exps instead of K^2); rows where underflow could have lost the
    mass that matters are recomputed exactly in log space (as the offline CPU kernels do)."""
    top = v.amax(-1, keepdim=True).clamp_min(-1e300)  # an all -inf row stays 0 and is recomputed
    out = (v - top).exp() @ m.T
    bad = out < _TINY
    out = out.log() + top
    if bool(bad.any()):
        exact = torch.logsumexp(log_m + v.unsqueeze(-2), dim=-1)
        out = torch.where(bad, exact, out)
    return out


class StreamStep(NamedTuple):
    """What one :meth:`StreamDecoder.push` (or ``flush``) returns.

    filtered: ``[t, K]`` p(z_s = k | x_0..s) for the ``t`` frames of this push (``[0, K]`` on flush).
    states: ``[n]`` int64 (CPU), the newly committed Viterbi states, in time order (may be empty).
    smoothed: ``[m, K]`` fixed-lag posteriors p(z_s | x_0..s+L) for the frames that reached the
        lag in this push (on flush: p(z_s | all frames) for the rest); None when ``lag`` is None.
    frame: index of the first frame of this push (frames count from 0 since the last reset).
    states_start: frame index of ``states[0]``.
    smoothed_start: frame index of ``smoothed[0]`` (-1 when ``smoothed`` is None).
    log_likelihood: log p(x_0..t) of every frame pushed so far (float64).
    score: on flush, log p(x, committed path) including ``log_final``; None otherwise.
    """

    filtered: Tensor
    states: Tensor
    smoothed: Optional[Tensor]
    frame: int
    states_start: int
    smoothed_start: int
    log_likelihood: float
    score: Optional[float] = None


class StreamDecoder:
    """Online filtering, fixed-lag smoothing and Viterbi decoding of one stream.

    Args:
        log_startprob: ``[K']``.
        log_transmat: ``[K', K']``.
        lag: None (exact partial traceback) or an int >= 0 (fixed lag, in frames).
        emission: maps a chunk of observations to ``[t, K']`` log-likelihoods; None when
            :meth:`push` receives log-likelihoods directly.
        log_final: ``[K']`` log weight of ending in each state (added at :meth:`flush` only;
            default 0 everywhere, the HMM convention).
        groups: ``[K']`` int64, the reported state of each expanded state (default identity).
        num_states: K, the number of reported states (default ``max(groups) + 1``).
        max_pending: most frames the exact mode may hold uncommitted (``K'`` back-pointers
            each) before it stops with an error that suggests a lag; the fixed-lag mode never
            holds more than ``lag`` frames.
    """

    def __init__(
        self,
        log_startprob: Tensor,
        log_transmat: Tensor,
        lag: Optional[int] = None,
        emission: Optional[Callable[[object], Tensor]] = None,
        log_final: Optional[Tensor] = None,
        groups: Optional[Tensor] = None,
        num_states: Optional[int] = None,
        max_pending: int = 100_000,
    ):
        Kx = int(log_startprob.shape[-1])
        if log_startprob.shape != (Kx,) or log_transmat.shape != (Kx, Kx):
            raise InvalidParameterError(
                f"log_startprob must be [K] and log_transmat [K, K], got {tuple(log_startprob.shape)} "
                f"and {tuple(log_transmat.shape)}"
            )
        if lag is not None and (isinstance(lag, bool) or int(lag) != lag or lag < 0):
            raise InvalidParameterError(f"lag must be None or a whole number >= 0, got {lag!r}")
        self.lag = None if lag is None else int(lag)
        self.max_pending = int(max_pending)
        self.device = log_startprob.device
        self.out_dtype = log_startprob.dtype if log_startprob.is_floating_point() else torch.float32
        f64 = dict(dtype=torch.float64, device=self.device)
        self.log_start = log_startprob.detach().to(**f64)
        self.log_trans = log_transmat.detach().to(**f64)
        self.log_trans_t = self.log_trans.T.contiguous()
        self.trans = self.log_trans.exp()
        self.trans_t = self.trans.T.contiguous()
        self.log_final = None if log_final is None else log_final.detach().to(**f64).reshape(Kx)
        self.emission = emission
        self.num_expanded = Kx
        if groups is None:
            self.groups = None
            self.num_states = Kx
        else:
            groups = torch.as_tensor(groups, dtype=torch.long).reshape(Kx)
            self.num_states = int(num_states if num_states is not None else int(groups.max()) + 1)
            self.groups = groups.numpy() if groups.device.type == "cpu" else groups.cpu().numpy()
            # [K', K] 0/1 matrix: probabilities of expanded states summed into their group.
            self._reduce = torch.nn.functional.one_hot(groups.to(self.device), self.num_states).to(**f64)
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget everything pushed: the next push is frame 0 of a new stream."""
        self.t = 0  # frames seen
        self.loglik = 0.0
        self.alpha: Optional[Tensor] = None  # [K'] normalised log filter of the last frame
        self.delta: Optional[Tensor] = None  # [K'] Viterbi scores of the last frame, max 0
        self.delta_offset = 0.0  # float64 scale removed from delta
        self.committed = 0  # frames [0, committed) have committed states
        self.backptr: List[np.ndarray] = []  # back-pointers of frames committed+1 .. t-1
        self.smoothed_upto = 0  # frames [0, smoothed_upto) have had their smoothed output
        # Lag mode: normalised alphas and log-likelihoods of the frames not yet smoothed.
        self.pending_alpha: List[Tensor] = []
        self.pending_obs: List[Tensor] = []
        self.flushed = False

    # ------------------------------------------------------------------ input
    def _log_obs(self, x) -> Tensor:
        obs = self.emission(x) if self.emission is not None else torch.as_tensor(x)
        if obs.dim() != 2 or obs.shape[1] != self.num_expanded:
            raise InvalidInputError(
                f"a chunk must give [t, {self.num_expanded}] log-likelihoods, got shape {tuple(obs.shape)}"
            )
        if obs.shape[0] < 1:
            raise InvalidInputError("a chunk must hold at least one frame")
        if torch.isnan(obs).any():
            raise InvalidInputError("the chunk's log-likelihoods contain NaN")
        return obs.detach().to(dtype=torch.float64, device=self.device)

    # ------------------------------------------------------------------ API
    def push(self, x) -> StreamStep:
        """Add a chunk of ``t >= 1`` frames (observations, or ``[t, K']`` log-likelihoods when
        the decoder has no emission) and return what it made known."""
        if self.flushed:
            raise InvalidInputError("this stream was flushed: call reset() to start a new one")
        ctx = single_thread() if self.device.type == "cpu" else contextlib.nullcontext()
        with torch.no_grad(), ctx:
            obs = self._log_obs(x)
            first = self.t
            committed_before = self.committed
            new_states: List[np.ndarray] = []
            filtered = []
            for o in obs:
                filtered.append(self._filter_step(o))
                forced = self._viterbi_step(o)
                if forced is not None:
                    new_states.append(forced)
            coalesced = self._coalesce()
            if coalesced is not None:
                new_states.append(coalesced)
            if self.t - self.committed > self.max_pending:
                raise InvalidInputError(
                    f"{self.t - self.committed} frames are still undecided (the surviving paths have not "
                    f"merged since frame {self.committed}): stream with a lag, e.g. model.stream(lag=50)"
                )
            smoothed, smoothed_start = self._smooth_ready(final=False)
            filt = self._report(torch.stack(filtered))
        return StreamStep(
            filtered=filt,
            states=self._states(new_states),
            smoothed=smoothed,
            frame=first,
            states_start=committed_before,
            smoothed_start=smoothed_start,
            log_likelihood=self.loglik,
        )

    def flush(self) -> StreamStep:
        """End the stream: commit the rest of the best path (ending weighted by ``log_final``)
        and smooth the frames still waiting for their lag. Call :meth:`reset` to reuse."""
        if self.flushed:
            raise InvalidInputError("this stream was already flushed: call reset() to start a new one")
        empty = torch.zeros(0, self.num_states, dtype=self.out_dtype, device=self.device)
        start = self.committed
        if self.t == 0:
            self.flushed = True
            return StreamStep(empty, torch.zeros(0, dtype=torch.long), None if self.lag is None else empty,
                              0, 0, -1 if self.lag is None else 0, 0.0, None)
        ctx = single_thread() if self.device.type == "cpu" else contextlib.nullcontext()
        with torch.no_grad(), ctx:
            final = self.delta if self.log_final is None else self.delta + self.log_final
            best = int(torch.argmax(final))  # first maximum: the lowest index, as offline
            score = float(final[best]) + self.delta_offset
            if not math.isfinite(score):
                raise InvalidInputError(
                    f"the {self.t} frames pushed have no path that may end here (the model needs more frames)"
                )
            rest = self._trace(best, self.t - 1)
            self.committed = self.t
            self.backptr = []
            smoothed, smoothed_start = self._smooth_ready(final=True)
        self.flushed = True
        return StreamStep(empty, self._states([rest]), smoothed, self.t, start, smoothed_start, self.loglik, score)

    # ------------------------------------------------------------------ recursions
    def _filter_step(self, o: Tensor) -> Tensor:
        if self.alpha is None:
            a = self.log_start + o
        else:
            a = _log_matvec(self.alpha, self.log_trans_t, self.trans_t) + o
        c = float(torch.logsumexp(a, dim=0))
        if not math.isfinite(c):
            raise InvalidInputError(
                f"frame {self.t} has zero probability under the model given the frames before it: "
                "call reset() to start a new stream"
            )
        self.alpha = a - c
        self.loglik += c
        if self.lag is not None:
            self.pending_alpha.append(self.alpha)
            self.pending_obs.append(o)
        return self.alpha

    def _viterbi_step(self, o: Tensor) -> Optional[np.ndarray]:
        """One max-product step; in lag mode also the forced commit. Returns forced states."""
        if self.delta is None:
            d = self.log_start + o
        else:
            best, arg = (self.delta.unsqueeze(-1) + self.log_trans).max(dim=0)
            d = best + o
            if self.t > self.committed:  # else the previous frame is committed: one survivor
                self.backptr.append(arg.cpu().numpy())
        top = float(d.max())
        self.delta = d - top
        self.delta_offset += top
        self.t += 1
        if self.lag is None or self.t - 1 - self.lag < self.committed:
            return None
        # Forced decision for frames committed .. t-1-lag along the best path ending now.
        now = self.t - 1
        upto = now - self.lag
        best = int(torch.argmax(self.delta))
        path = self._trace(best, now)  # frames committed .. now
        forced = path[: upto - self.committed + 1]
        # Prune every current state whose path does not pass through the decided state.
        anc = np.arange(self.num_expanded)
        for bp in reversed(self.backptr[len(self.backptr) - (now - upto):] if now > upto else []):
            anc = bp[anc]
        keep = torch.as_tensor(anc == forced[-1], device=self.device)
        self.delta = self.delta.masked_fill(~keep, -math.inf)
        drop = upto + 1 - self.committed  # back-pointers of frames committed+1 .. upto are spent
        self.backptr = self.backptr[drop:]
        self.committed = upto + 1
        return forced

    def _trace(self, state: int, frame: int) -> np.ndarray:
        """States of frames ``committed .. frame`` on the path ending in ``state`` at ``frame``."""
        n = frame - self.committed + 1
        out = np.empty(max(n, 0), dtype=np.int64)
        if n <= 0:
            return out
        out[-1] = state
        for i in range(n - 1, 0, -1):
            state = int(self.backptr[i - 1][state])
            out[i - 1] = state
        return out

    def _coalesce(self) -> Optional[np.ndarray]:
        """Commit the frames every surviving path agrees on (the partial traceback)."""
        if self.t == 0 or self.committed >= self.t:
            return None
        alive = np.flatnonzero(np.isfinite(self.delta.cpu().numpy()))
        frame = self.t - 1
        anc = alive
        # Walk back until the surviving paths share one state (or the last committed frame).
        while len(anc) > 1 and frame > self.committed:
            anc = np.unique(self.backptr[frame - self.committed - 1][anc])
            frame -= 1
        if len(anc) != 1:
            return None
        states = self._trace(int(anc[0]), frame)
        drop = frame + 1 - self.committed
        self.backptr = self.backptr[drop:]
        self.committed = frame + 1
        return states

    def _smooth_ready(self, final: bool):
        """Fixed-lag posteriors for the frames whose lag has elapsed (all of them when final)."""
        if self.lag is None:
            return None, -1
        last = self.t - 1
        upto = last if final else last - self.lag  # frames smoothed_upto .. upto are due
        start = self.smoothed_upto
        if upto < start:
            return torch.zeros(0, self.num_states, dtype=self.out_dtype, device=self.device), start
        m = upto - start + 1
        alphas = torch.stack(self.pending_alpha[:m])  # frames start .. upto
        # Batched backward pass: row j (frame s_j = start + j) looks ahead to horizon h_j.
        # Row j (frame start + j) looks ahead to its horizon (frame + lag, or the last frame).
        # At time tau the rows still stepping back are those with frame < tau <= horizon, a
        # contiguous range since frames and horizons both increase with j.
        log_beta = torch.zeros(m, self.num_expanded, dtype=torch.float64, device=self.device)
        for tau in range(last if final else upto + self.lag, start, -1):
            lo = 0 if final else max(0, tau - self.lag - start)
            hi = min(m, tau - start)
            o = self.pending_obs[tau - start]
            step = _log_matvec(o + log_beta[lo:hi], self.log_trans, self.trans)
            log_beta[lo:hi] = step - step.amax(-1, keepdim=True).clamp_min(-1e300)
        post = torch.softmax(alphas + log_beta, dim=-1)
        self.smoothed_upto = upto + 1
        self.pending_alpha = self.pending_alpha[m:]
        self.pending_obs = self.pending_obs[m:]
        return self._report_prob(post), start

    # ------------------------------------------------------------------ outputs
    def _report(self, log_hat: Tensor) -> Tensor:
        return self._report_prob(log_hat.exp())

    def _report_prob(self, prob: Tensor) -> Tensor:
        if self.groups is not None:
            prob = prob @ self._reduce
        return prob.to(self.out_dtype)

    def _states(self, parts: List[np.ndarray]) -> Tensor:
        if not parts:
            return torch.zeros(0, dtype=torch.long)
        states = np.concatenate(parts)
        if self.groups is not None:
            states = self.groups[states]
        return torch.from_numpy(np.ascontiguousarray(states, dtype=np.int64))


def hsmm_expanded_chain(log_startprob: Tensor, log_transmat: Tensor, log_durations: Tensor,
                        right_censored: bool = False):
    """The semi-Markov model as an HMM over ``(state k, frames so far d)``, ``K' = K * Dmax``.

    Expanded state ``k * Dmax + (d - 1)`` means "in state k for the d-th frame of its segment".
    It continues to ``d + 1`` with probability ``S_k(d+1) / S_k(d)`` (``S`` the survival
    ``P(D >= d)``) or ends with ``p_k(d) / S_k(d)`` and enters ``(j, 1)`` with ``A[k, j] S_j(1)``,
    so a segment's factors multiply to ``p_k(d)`` and every path's score equals its
    segmentation's score in :mod:`.hsmm`. The stream's filtered marginals are then the
    right-censored ones (the current segment may go on), and ending in ``(k, d)`` weighs
    ``p_k(d) / S_k(d)`` (a complete last segment) or 1 under ``right_censored``.

    Returns:
        log_start ``[K']``, log_trans ``[K', K']``, log_final ``[K']``, groups ``[K']`` (k of each).
    """
    K, Dm = log_durations.shape
    if K * Dm > MAX_EXPANDED_STATES:
        raise InvalidParameterError(
            f"streaming a semi-Markov model runs on num_states x max_duration = {K} x {Dm} = {K * Dm} "
            f"expanded states; at most {MAX_EXPANDED_STATES} are supported (lower max_duration)"
        )
    dev = log_durations.device
    ld = log_durations.detach().to(torch.float64)
    surv = torch.logcumsumexp(ld.flip(-1), dim=-1).flip(-1)  # [K, Dm] log S(d)
    finite = torch.isfinite(surv)
    neg = torch.full_like(surv, -math.inf)
    end = torch.where(finite, ld - surv, neg)  # log hazard: the segment ends after frame d
    cont = torch.where(finite[:, 1:], surv[:, 1:] - surv[:, :-1], neg[:, 1:])  # d -> d+1
    Kx = K * Dm
    trans = torch.full((Kx, Kx), -math.inf, dtype=torch.float64, device=dev)
    idx = torch.arange(K, device=dev) * Dm
    lt = log_transmat.detach().to(device=dev, dtype=torch.float64)
    for d in range(Dm):
        rows = idx + d
        # Leave (k, d+1): to (j, 1) for every j.
        trans[rows[:, None], idx[None, :]] = end[:, d, None] + lt + surv[None, :, 0]
        if d + 1 < Dm:
            trans[rows, rows + 1] = cont[:, d]
    start = torch.full((Kx,), -math.inf, dtype=torch.float64, device=dev)
    start[idx] = log_startprob.detach().to(device=dev, dtype=torch.float64) + surv[:, 0]
    final = torch.zeros(Kx, dtype=torch.float64, device=dev) if right_censored else end.reshape(Kx).clone()
    groups = torch.arange(K).repeat_interleave(Dm)
    return start, trans, final, groups
