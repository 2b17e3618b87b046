"""Pure inference functions for hidden Markov models, in log space.

Every function works on *log-likelihood* inputs, never on probabilities:

- ``log_startprob``: ``[K]`` log initial-state probabilities,
- ``log_transmat``: ``[K, K]`` log transition probabilities, rows = from-state,
- ``log_obs``: ``[B, T, K]`` log p(x_t | z_t = k) for B sequences padded to T frames,
- ``lengths``: ``[B]`` int64, the true length of each sequence (default: all T).

Frames at or past a sequence's length are padding: they never change a result.
Outputs past a length are fixed values (posteriors 0, log-alpha -inf, Viterbi
state -1) so that callers can rely on them.

Two implementations compute the same numbers:

- on the CPU, without autograd, compiled kernels (:mod:`._cpu_kernels`);
- everywhere else (CUDA, or when a gradient is needed), torch ops, which are
  differentiable and run on any device.

``backend="torch"`` or ``"kernel"`` forces one (tests use this to check both).

The contract shared with :mod:`.hsmm` and :mod:`.chain`: parameters first, then
``log_obs``, then ``lengths``, then options; results are the named tuples of
:mod:`.results` (tuple unpacking still works).

Gradients: :func:`log_likelihood` has an analytic backward on every backend (see
:class:`_LogLikelihood`): posteriors for ``log_obs``, expected transition counts for
``log_transmat``, first-frame posteriors for ``log_startprob``; one backward recursion on
top of the forward, memory ``O(B T K)``. The torch recursions stay differentiable by
autograd too (tests compare both).

Precision: float32 and float64 inputs give outputs of their own dtype. float16/bfloat16
scores are promoted: the recursions accumulate in float64 (kernels) or float32 (torch) and
results come back float32 (a half-precision log-likelihood of a long sequence would keep no
digit after the point). Integer scores are an error.
"""

from __future__ import annotations

import contextlib
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, Optional

import torch
from torch import Tensor

from ..errors import InvalidInputError
from ..threads import single_thread
from .results import ForwardBackwardResult, ForwardResult, NormalizedBackward, NormalizedForward, ViterbiResult

Backend = Literal["auto", "torch", "kernel"]

__all__ = [
    "ForwardResult",
    "NormalizedForward",
    "NormalizedBackward",
    "ForwardBackwardResult",
    "ViterbiResult",
    "check_inputs",
    "forward",
    "backward",
    "forward_backward",
    "forward_normalized",
    "backward_normalized",
    "log_likelihood",
    "transition_counts",
    "viterbi",
    "sample_states",
    "set_num_threads",
]


# --------------------------------------------------------------------------- helpers




def check_inputs(
    log_startprob: Tensor, log_transmat: Tensor, log_obs: Tensor, lengths: Optional[Tensor]
) -> Tensor:
    """Validate shapes and values; return ``lengths`` as an int64 tensor ``[B]``.

    Raises:
        InvalidInputError: wrong ranks or sizes, NaN inputs, lengths out of range.
    """
    if log_obs.dim() != 3:
        raise InvalidInputError(f"log_obs must be [B, T, K], got shape {tuple(log_obs.shape)}")
    if not log_obs.is_floating_point():
        raise InvalidInputError(f"log_obs must be a floating-point tensor, got {log_obs.dtype}")
    B, T, K = log_obs.shape
    if T == 0 or B == 0:
        raise InvalidInputError("log_obs has no frames")
    if log_startprob.shape != (K,):
        raise InvalidInputError(f"log_startprob must be [{K}], got {tuple(log_startprob.shape)}")
    if log_transmat.shape != (K, K):
        raise InvalidInputError(f"log_transmat must be [{K}, {K}], got {tuple(log_transmat.shape)}")
    if torch.isnan(log_obs).any():
        raise InvalidInputError("log_obs contains NaN")
    if lengths is None:
        return torch.full((B,), T, dtype=torch.long, device=log_obs.device)
    lengths = torch.as_tensor(lengths, device=log_obs.device).long().reshape(-1)
    if lengths.shape != (B,):
        raise InvalidInputError(f"lengths must have {B} entries, got {lengths.numel()}")
    if (lengths < 1).any() or (lengths > T).any():
        raise InvalidInputError(f"every length must be in [1, {T}], got {lengths.tolist()}")
    return lengths


_HALF = (torch.float16, torch.bfloat16)


def _working(log_obs: Tensor) -> Tensor:
    """Scores the recursions can take: half precision is promoted to float32."""
    return log_obs.float() if log_obs.dtype in _HALF else log_obs


def _opaque(fn):
    """Keep torch.compile out of the dynamic programs: they call numba kernels and loop over
    time, which dynamo cannot trace (it graph-breaks here and runs them as they are)."""
    return torch.compiler.disable(fn, recursive=True)


def _use_kernel(backend: Backend, *tensors: Tensor) -> bool:
    if backend == "kernel":
        if tensors[0].device.type != "cpu":
            raise InvalidInputError("backend='kernel' runs on the CPU only")
        return True
    if backend == "torch":
        return False
    if tensors[0].device.type != "cpu":
        return False
    # The compiled kernels are not differentiable: keep torch ops when autograd must see the
    # recursion (log_likelihood's analytic gradient calls this without grad).
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))


# Elements per block of frames in transition_counts (B * frames * K), a few MB in float64.
_COUNT_BLOCK = 1 << 18

# Below this a shifted float64 sum may have lost underflowed terms that matter: recompute exactly.
_TINY = 1e-280


def _tiny(dtype: torch.dtype) -> float:
    return 1e-25 if dtype == torch.float32 else _TINY


def _kernels():
    from . import _cpu_kernels  # imported lazily: compiling is only paid when used

    return _cpu_kernels


def _np(t: Tensor):
    return t.detach().contiguous().numpy()


_POOL: Optional[ThreadPoolExecutor] = None
_KERNEL_THREADS = int(os.environ.get("HMM_ENGINE_NUM_THREADS", "0")) or (os.cpu_count() or 1)


def set_num_threads(num_threads: int) -> None:
    """Threads the CPU kernels split a batch over (default: the machine's cores, or the
    ``HMM_ENGINE_NUM_THREADS`` environment variable). Independent of torch's setting."""
    global _KERNEL_THREADS
    if num_threads < 1:
        raise InvalidInputError("num_threads must be >= 1")
    _KERNEL_THREADS = int(num_threads)


def _run_kernel(kernel, shared: tuple, batched: tuple, tail: tuple = ()) -> None:
    """Run ``kernel(*shared, *batched, *tail)`` over the batch, split into contiguous chunks
    on up to :func:`set_num_threads` threads (the kernels release the GIL; idle pool threads
    block instead of spinning, so a loaded machine costs no waits).

    ``batched`` are numpy arrays whose first axis is the batch; each chunk gets views.
    """
    global _POOL
    B = batched[0].shape[0]
    workers = max(1, min(_KERNEL_THREADS, B))
    if workers == 1:
        kernel(*shared, *batched, *tail)
        return
    if _POOL is None or _POOL._max_workers < workers:
        _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hmm-kernel")
    bounds = [round(i * B / workers) for i in range(workers + 1)]
    futures = [
        _POOL.submit(kernel, *shared, *(a[lo:hi] for a in batched), *tail)
        for lo, hi in zip(bounds[:-1], bounds[1:])
        if hi > lo
    ]
    for f in futures:
        f.result()


def _length_mask(lengths: Tensor, T: int) -> Tensor:
    """``[B, T]`` bool, True on real frames."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


# --------------------------------------------------------------------------- forward / backward


@_opaque
def forward(
    log_startprob: Tensor,
    log_transmat: Tensor,
    log_obs: Tensor,
    lengths: Optional[Tensor] = None,
    backend: Backend = "auto",
) -> ForwardResult:
    """Forward (alpha) recursion.

    Args:
        log_startprob: ``[K]``.
        log_transmat: ``[K, K]``.
        log_obs: ``[B, T, K]``.
        lengths: ``[B]`` or None.
    Returns:
        :class:`ForwardResult` ``(log_alpha [B, T, K], log_likelihood [B])``: log p(x_{0:t}, z_t = k)
        (-inf past each length) and log p(x_{0:len-1}).
    """
    lengths = check_inputs(log_startprob, log_transmat, log_obs, lengths)
    log_obs = _working(log_obs)
    hat, norm = forward_normalized(log_startprob, log_transmat, log_obs, lengths, backend)
    cum = norm.cumsum(1)
    log_alpha = (hat.to(cum.dtype) + cum.unsqueeze(-1)).to(log_obs.dtype)
    return ForwardResult(log_alpha, norm.sum(1).to(log_obs.dtype))


def forward_normalized(
    log_startprob: Tensor,
    log_transmat: Tensor,
    log_obs: Tensor,
    lengths: Tensor,
    backend: Backend = "auto",
) -> NormalizedForward:
    """The forward recursion with every frame renormalised (how it is computed).

    Args: as :func:`forward` (``lengths`` as returned by :func:`check_inputs`).
    Returns: :class:`NormalizedForward`:
        log_alpha_hat: ``[B, T, K]``, log p(z_t = k | x_{0:t}): each real frame log-sums to 0.
        log_norm: ``[B, T]`` float64, log p(x_t | x_{0:t-1}); 0 past each length, so
            ``log_norm.sum(1)`` is the log-likelihood and ``cumsum`` restores log_alpha.
    Keeping the running scale apart keeps float32 results exact to float32 precision
    even at 100,000 frames, where log_alpha itself reaches -1e5 or so.
    """
    log_obs = _working(log_obs)
    if _use_kernel(backend, log_obs, log_startprob, log_transmat):
        k = _kernels()
        # float64 in and out: the float32 specialisation of this kernel measured 2.7x slower.
        obs64 = log_obs.detach().double().contiguous()
        hat = torch.empty_like(obs64)
        norm = torch.empty(log_obs.shape[:2], dtype=torch.float64)
        lt = log_transmat.detach().double()
        _run_kernel(
            k.forward_kernel, (_np(log_startprob.double()), _np(lt), _np(lt.exp())),
            (obs64.numpy(), _np(lengths), hat.numpy(), norm.numpy()), (_TINY,),
        )
        return NormalizedForward(hat.to(log_obs.dtype), norm)
    return NormalizedForward(*_forward_torch(log_startprob, log_transmat, log_obs, lengths))


def _forward_torch(log_startprob, log_transmat, log_obs, lengths):
    B, T, K = log_obs.shape
    real = _length_mask(lengths, T)
    ctx = single_thread() if log_obs.device.type == "cpu" else contextlib.nullcontext()
    with ctx:
        a = log_startprob + log_obs[:, 0]
        trans = log_transmat.unsqueeze(0)
        hats, norms = [], []
        for t in range(T):
            if t > 0:
                # Exact log-sum-exp over predecessors: [B, K, 1] + [1, K, K] -> [B, K].
                a = torch.logsumexp(a.unsqueeze(-1) + trans, dim=1) + log_obs[:, t]
            c = torch.logsumexp(a, dim=-1, keepdim=True)
            c = torch.where(torch.isfinite(c), c, torch.zeros_like(c))
            a = a - c
            hats.append(a)
            norms.append(c.squeeze(-1))
        hat = torch.stack(hats, dim=1)
        norm = torch.stack(norms, dim=1).double()
    impossible = ~torch.isfinite(hat).any(-1)  # a frame no state can explain
    norm = torch.where(impossible, torch.full_like(norm, -math.inf), norm)
    return hat.masked_fill(~real.unsqueeze(-1), -math.inf), torch.where(real, norm, torch.zeros_like(norm))


@_opaque
def backward(
    log_transmat: Tensor,
    log_obs: Tensor,
    lengths: Optional[Tensor] = None,
    backend: Backend = "auto",
) -> Tensor:
    """Backward (beta) recursion.

    Args:
        log_transmat: ``[K, K]``.
        log_obs: ``[B, T, K]``.
        lengths: ``[B]`` or None.
    Returns:
        log_beta: ``[B, T, K]``, log p(x_{t+1:len-1} | z_t = k); 0 from each last frame on.
    """
    K = log_obs.shape[-1]
    lengths = check_inputs(log_obs.new_zeros(K), log_transmat, log_obs, lengths)
    log_obs = _working(log_obs)
    hat, shift = backward_normalized(log_transmat, log_obs, lengths, backend)
    rest = shift.flip(1).cumsum(1).flip(1)
    return (hat.to(rest.dtype) + rest.unsqueeze(-1)).to(log_obs.dtype)


def backward_normalized(
    log_transmat: Tensor, log_obs: Tensor, lengths: Tensor, backend: Backend = "auto"
) -> NormalizedBackward:
    """The backward recursion with each frame shifted to a maximum of 0.

    Returns: :class:`NormalizedBackward`:
        log_beta_hat: ``[B, T, K]``.
        log_shift: ``[B, T]`` float64; log_beta[t] = log_beta_hat[t] + sum_{s>=t} log_shift[s].
    """
    log_obs = _working(log_obs)
    if _use_kernel(backend, log_obs, log_transmat):
        k = _kernels()
        log_obs = log_obs.contiguous()
        hat = torch.empty_like(log_obs)
        shift = torch.empty(log_obs.shape[:2], dtype=torch.float64)
        lt = log_transmat.detach().double()
        _run_kernel(
            k.backward_kernel, (_np(lt), _np(lt.exp())),
            (_np(log_obs), _np(lengths), hat.numpy(), shift.numpy()), (_TINY,),
        )
        return NormalizedBackward(hat, shift)
    return NormalizedBackward(*_backward_torch(log_transmat, log_obs, lengths))


def _backward_torch(log_transmat, log_obs, lengths):
    B, T, K = log_obs.shape
    ctx = single_thread() if log_obs.device.type == "cpu" else contextlib.nullcontext()
    with ctx:
        b = log_obs.new_zeros(B, K)
        hats, shifts = [b], [log_obs.new_zeros(B)]
        trans = log_transmat.unsqueeze(0)
        for t in range(T - 2, -1, -1):
            step = torch.logsumexp(trans + (log_obs[:, t + 1] + b).unsqueeze(1), dim=2)
            top = step.amax(-1, keepdim=True)
            top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
            # Until a sequence's last frame (t >= len-1) beta stays 0 with no shift.
            inside = (t < lengths - 1).unsqueeze(-1)
            b = torch.where(inside, step - top, torch.zeros_like(step))
            hats.append(b)
            shifts.append(torch.where(inside, top, torch.zeros_like(top)).squeeze(-1))
        hats.reverse()
        shifts.reverse()
        return torch.stack(hats, dim=1), torch.stack(shifts, dim=1).double()


@_opaque
def forward_backward(
    log_startprob: Tensor,
    log_transmat: Tensor,
    log_obs: Tensor,
    lengths: Optional[Tensor] = None,
    backend: Backend = "auto",
) -> ForwardBackwardResult:
    """State posteriors by the forward-backward algorithm.

    Args: as :func:`forward`.
    Returns:
        :class:`ForwardBackwardResult`:
        posteriors ``[B, T, K]``, p(z_t = k | x); rows sum to 1 on real frames, 0 on padding
        and for impossible sequences;
        log_likelihood ``[B]`` (-inf for an impossible sequence);
        log_alpha_hat, log_beta_hat ``[B, T, K]`` each, the per-frame normalised recursions
        (exact up to one constant per frame: what :func:`transition_counts` needs).
    """
    lengths = check_inputs(log_startprob, log_transmat, log_obs, lengths)
    log_obs = _working(log_obs)
    hat_a, norm = forward_normalized(log_startprob, log_transmat, log_obs, lengths, backend)
    hat_b, _ = backward_normalized(log_transmat, log_obs, lengths, backend)
    # Normalising per frame cancels both recursions' scales: no large numbers are subtracted.
    # Padding (and impossible sequences) have -inf rows, whose softmax is NaN: set to 0.
    posteriors = torch.softmax(hat_a + hat_b, dim=-1)
    if posteriors.requires_grad:
        posteriors = torch.nan_to_num(posteriors, nan=0.0)
    else:
        posteriors.nan_to_num_(nan=0.0)
    return ForwardBackwardResult(posteriors, norm.sum(1).to(log_obs.dtype), hat_a, hat_b)


@_opaque
def log_likelihood(
    log_startprob: Tensor,
    log_transmat: Tensor,
    log_obs: Tensor,
    lengths: Optional[Tensor] = None,
    backend: Backend = "auto",
) -> Tensor:
    """``[B]`` log p(x) of each sequence: the forward pass alone.

    Args: as :func:`forward`.
    Differentiable in ``log_startprob``, ``log_transmat`` and ``log_obs`` on every backend,
    with the analytic gradient of :class:`_LogLikelihood` (no autograd through the time loop).
    """
    lengths = check_inputs(log_startprob, log_transmat, log_obs, lengths)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (log_startprob, log_transmat, log_obs)):
        return _LogLikelihood.apply(log_startprob, log_transmat, log_obs, lengths, backend)
    log_obs = _working(log_obs)
    return forward_normalized(log_startprob, log_transmat, log_obs, lengths, backend).log_norm.sum(1).to(log_obs.dtype)


class _LogLikelihood(torch.autograd.Function):
    """log p(x) with the closed-form gradient of a log-likelihood (Baum-Welch statistics):

        d log p(x) / d log_obs[t, k]        = p(z_t = k | x)
        d log p(x) / d log_transmat[i, j]   = sum_t p(z_t = i, z_{t+1} = j | x)
        d log p(x) / d log_startprob[k]     = p(z_0 = k | x)

    The forward keeps its per-frame normalised alphas; the backward adds one backward
    recursion and the transition counts (one batched matmul), all ``O(B T K)`` memory.
    """

    @staticmethod
    def forward(ctx, log_startprob, log_transmat, log_obs, lengths, backend):
        work = _working(log_obs)
        hat_a, norm = forward_normalized(log_startprob, log_transmat, work, lengths, backend)
        ctx.save_for_backward(log_startprob, log_transmat, log_obs, lengths, hat_a)
        ctx.backend = backend
        return norm.sum(1).to(work.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        log_startprob, log_transmat, log_obs, lengths, hat_a = ctx.saved_tensors
        need_start, need_trans, need_obs = ctx.needs_input_grad[:3]
        work = _working(log_obs)
        hat_b = backward_normalized(log_transmat, work, lengths, ctx.backend).log_beta_hat
        post = torch.softmax(hat_a + hat_b, dim=-1).nan_to_num_(nan=0.0)  # 0: padding, impossible
        w = grad.to(post.dtype).nan_to_num(0.0)
        g_start = g_trans = g_obs = None
        if need_obs:
            g_obs = (post * w[:, None, None]).to(log_obs.dtype)
        if need_start:
            g_start = (post[:, 0] * w[:, None]).sum(0).to(log_startprob.dtype)
        if need_trans:
            counts = transition_counts(log_transmat.detach(), work, hat_a, hat_b, lengths)
            g_trans = (counts * w.to(counts.dtype)[:, None, None]).sum(0).to(log_transmat.dtype)
            g_trans = g_trans.masked_fill(log_transmat == -math.inf, 0.0)
        return g_start, g_trans, g_obs, None, None


@_opaque
def transition_counts(
    log_transmat: Tensor,
    log_obs: Tensor,
    log_alpha: Tensor,
    log_beta: Tensor,
    lengths: Optional[Tensor] = None,
) -> Tensor:
    # log_alpha / log_beta may be the per-frame normalised ones of forward_backward:
    # every pair posterior below is normalised per frame, so such constants cancel.
    """Expected transition counts per sequence, ``[B, K, K]``:

        sum_t p(z_t = i, z_{t+1} = j | x)   over t = 0 .. len-2.

    On the CPU (without autograd) a compiled kernel does it frame by frame
    (:func:`._cpu_kernels.counts_kernel`); elsewhere blocks of batched matrix products. For
    each t the pair posterior is
    ``ea_t(i) A_ij ev_t(j) / Z_t`` with ``ea = exp(alpha - max)``,
    ``ev = exp(obs + beta - max)`` and ``Z_t`` its own sum (a pair posterior sums
    to 1 at every t), so no likelihood term can overflow. Frames whose normaliser
    underflowed are recomputed exactly in log space.
    """
    B, T, K = log_obs.shape
    if lengths is None:
        lengths = torch.full((B,), T, dtype=torch.long, device=log_obs.device)
    if T < 2:
        return log_obs.new_zeros(B, K, K)
    if log_obs.device.type == "cpu" and not (
        torch.is_grad_enabled() and any(t.requires_grad for t in (log_transmat, log_obs, log_alpha, log_beta))
    ):
        k = _kernels()
        lt = log_transmat.detach().double()
        counts = torch.empty(B, K, K, dtype=torch.float64)
        dt = log_obs.dtype if log_obs.dtype in (torch.float32, torch.float64) else torch.float32
        _run_kernel(
            k.counts_kernel, (_np(lt), _np(lt.exp())),
            (_np(log_obs.to(dt)), _np(log_alpha.to(dt)), _np(log_beta.to(dt)), _np(lengths.to(torch.long)), counts.numpy()),
            (_TINY,),
        )
        return counts.to(log_obs.dtype)
    work = torch.float64 if log_obs.device.type == "cpu" else log_obs.dtype
    A = log_transmat.to(work).exp()
    counts = torch.zeros(B, K, K, dtype=work, device=log_obs.device)
    exact = torch.zeros_like(counts)  # frames recomputed in log space (already include A)
    valid_all = _length_mask(lengths - 1, T - 1)
    # Blocks of frames keep the float64 temporaries at a few MB whatever T is.
    step = max(1, _COUNT_BLOCK // max(1, B * K))
    for t0 in range(0, T - 1, step):
        t1 = min(T - 1, t0 + step)
        la = log_alpha[:, t0:t1].to(work)
        v = (log_obs[:, t0 + 1 : t1 + 1] + log_beta[:, t0 + 1 : t1 + 1]).to(work)
        ma = la.amax(-1, keepdim=True).clamp_min(torch.finfo(work).min)
        mv = v.amax(-1, keepdim=True).clamp_min(torch.finfo(work).min)
        ea = (la - ma).exp_()  # [B, n, K]
        ev = (v - mv).exp_()
        Z = ((ea @ A) * ev).sum(-1)  # [B, n]
        valid = valid_all[:, t0:t1]
        bad = valid & ~(Z > _tiny(work))
        weights = torch.where(valid & ~bad, 1.0 / Z.clamp_min(_tiny(work)), torch.zeros_like(Z))
        counts += ea.transpose(1, 2) @ (ev * weights.unsqueeze(-1))
        if bad.any():
            bi, ti = bad.nonzero(as_tuple=True)
            pair = la[bi, ti].unsqueeze(-1) + log_transmat.to(work) + v[bi, ti].unsqueeze(-2)
            pair = (pair - torch.logsumexp(pair.flatten(1), -1).view(-1, 1, 1)).exp()
            exact = exact.index_put((bi,), torch.nan_to_num(pair), accumulate=True)
    return (A * counts + exact).to(log_obs.dtype)


# --------------------------------------------------------------------------- Viterbi


@_opaque
def viterbi(
    log_startprob: Tensor,
    log_transmat: Tensor,
    log_obs: Tensor,
    lengths: Optional[Tensor] = None,
    backend: Backend = "auto",
) -> ViterbiResult:
    """Most likely state path of each sequence.

    Args: as :func:`forward`.
    Returns:
        :class:`ViterbiResult`: path ``[B, T]`` int64, -1 past each length (ties go to the
        lowest state index); score ``[B]``, log p(x, path) (-inf: impossible sequence).
    """
    lengths = check_inputs(log_startprob, log_transmat, log_obs, lengths)
    log_obs = _working(log_obs)
    B, T, K = log_obs.shape
    if _use_kernel(backend, log_obs):
        k = _kernels()
        dt = log_obs.dtype
        path = torch.empty(B, T, dtype=torch.long)
        score = torch.empty(B, dtype=torch.float64)
        _run_kernel(
            k.viterbi_kernel, (_np(log_startprob.to(dt)), _np(log_transmat.to(dt))),
            (_np(log_obs), _np(lengths), path.numpy(), score.numpy()),
        )
        return ViterbiResult(path, score.to(dt))
    return ViterbiResult(*_viterbi_torch(log_startprob, log_transmat, log_obs, lengths))


def _viterbi_torch(log_startprob, log_transmat, log_obs, lengths):
    B, T, K = log_obs.shape
    ctx = single_thread() if log_obs.device.type == "cpu" else contextlib.nullcontext()
    with ctx, torch.no_grad():
        delta = log_startprob + log_obs[:, 0]
        back = torch.zeros(B, T, K, dtype=torch.long, device=log_obs.device)
        deltas = [delta]
        trans = log_transmat.unsqueeze(0)
        for t in range(1, T):
            best, arg = (delta.unsqueeze(-1) + trans).max(dim=1)
            back[:, t] = arg
            delta = best + log_obs[:, t]
            deltas.append(delta)
        final = torch.stack(deltas, 1).gather(1, (lengths - 1).view(B, 1, 1).expand(B, 1, K)).squeeze(1)
        score, last_state = final.max(-1)
        path = torch.full((B, T), -1, dtype=torch.long, device=log_obs.device)
        idx = torch.arange(B, device=log_obs.device)
        state = last_state
        # Walk back from each sequence's own last frame; padded frames stay -1.
        for t in range(T - 1, -1, -1):
            active = t <= lengths - 1
            state = torch.where(t == lengths - 1, last_state, state)
            path[:, t] = torch.where(active, state, path[:, t])
            if t > 0:
                state = torch.where(active, back[idx, t, state], state)
    return path, score


# --------------------------------------------------------------------------- sampling


def sample_states(
    startprob: Tensor,
    transmat: Tensor,
    num_sequences: int,
    length: int,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """Sample state sequences from a Markov chain.

    Args:
        startprob: ``[K]`` probabilities. transmat: ``[K, K]`` row-stochastic.
    Returns:
        ``[num_sequences, length]`` int64 states.
    """
    if num_sequences < 1 or length < 1:
        raise InvalidInputError("num_sequences and length must be positive")
    out_device = startprob.device
    # Draw where the generator lives (a CPU generator cannot drive a CUDA multinomial),
    # return on the parameters' device.
    device = generator.device if generator is not None else startprob.device
    startprob, transmat = startprob.to(device), transmat.to(device)
    states = torch.empty(num_sequences, length, dtype=torch.long, device=device)
    states[:, 0] = torch.multinomial(startprob.expand(num_sequences, -1), 1, generator=generator).squeeze(1)
    for t in range(1, length):
        states[:, t] = torch.multinomial(transmat[states[:, t - 1]], 1, generator=generator).squeeze(1)
    return states.to(out_device)
