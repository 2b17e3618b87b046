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
"""

from __future__ import annotations

import contextlib
import math
from typing import Literal, Optional, Tuple

import torch
from torch import Tensor

from ..errors import InvalidInputError

Backend = Literal["auto", "torch", "kernel"]

__all__ = [
    "check_inputs",
    "forward",
    "backward",
    "forward_backward",
    "log_likelihood",
    "transition_counts",
    "viterbi",
    "sample_states",
    "single_thread",
]


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def single_thread():
    """Run a block with one intra-op torch thread on the CPU.

    A time loop of small ops on 2 cores measured 10x faster with one thread
    (thread hand-off costs more than the op itself); the setting is restored after.
    """
    previous = torch.get_num_threads()
    if previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def check_inputs(
    log_startprob: Tensor, log_transmat: Tensor, log_obs: Tensor, lengths: Optional[Tensor]
) -> Tensor:
    """Validate shapes and values; return ``lengths`` as an int64 tensor ``[B]``.

    Raises:
        InvalidInputError: wrong ranks or sizes, NaN inputs, lengths out of range.
    """
    if log_obs.dim() != 3:
        raise InvalidInputError(f"log_obs must be [B, T, K], got shape {tuple(log_obs.shape)}")
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


def _use_kernel(backend: Backend, *tensors: Tensor) -> bool:
    if backend == "kernel":
        if tensors[0].device.type != "cpu":
            raise InvalidInputError("backend='kernel' runs on the CPU only")
        return True
    if backend == "torch":
        return False
    if tensors[0].device.type != "cpu":
        return False
    # The compiled kernels are not differentiable: keep torch ops when a gradient is wanted.
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))


def _tiny(dtype: torch.dtype) -> float:
    return 1e-25 if dtype == torch.float32 else 1e-280


def _kernels():
    from . import _cpu_kernels  # imported lazily: compiling is only paid when used

    return _cpu_kernels


def _np(t: Tensor):
    return t.detach().contiguous().numpy()


def _length_mask(lengths: Tensor, T: int) -> Tensor:
    """``[B, T]`` bool, True on real frames."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


# --------------------------------------------------------------------------- forward / backward


def forward(
    log_startprob: Tensor,
    log_transmat: Tensor,
    log_obs: Tensor,
    lengths: Optional[Tensor] = None,
    backend: Backend = "auto",
) -> Tuple[Tensor, Tensor]:
    """Forward (alpha) recursion.

    Args:
        log_startprob: ``[K]``.
        log_transmat: ``[K, K]``.
        log_obs: ``[B, T, K]``.
        lengths: ``[B]`` or None.
    Returns:
        log_alpha: ``[B, T, K]``, log p(x_{0:t}, z_t = k); -inf past each length.
        log_likelihood: ``[B]``, log p(x_{0:len-1}).
    """
    lengths = check_inputs(log_startprob, log_transmat, log_obs, lengths)
    if _use_kernel(backend, log_obs, log_startprob, log_transmat):
        k = _kernels()
        log_obs = log_obs.contiguous()
        log_alpha = torch.empty_like(log_obs)
        log_lik = torch.empty(log_obs.shape[0], dtype=log_obs.dtype)
        lt = log_transmat.to(log_obs.dtype).detach()
        k.forward_kernel(
            _np(log_startprob.to(log_obs.dtype)), _np(lt), _np(lt.exp()), _np(log_obs),
            _np(lengths), _tiny(log_obs.dtype), log_alpha.numpy(), log_lik.numpy(),
        )
        return log_alpha, log_lik
    return _forward_torch(log_startprob, log_transmat, log_obs, lengths)


def _forward_torch(log_startprob, log_transmat, log_obs, lengths):
    B, T, K = log_obs.shape
    ctx = single_thread() if log_obs.device.type == "cpu" else contextlib.nullcontext()
    with ctx:
        a = log_startprob + log_obs[:, 0]
        alphas = [a]
        trans = log_transmat.unsqueeze(0)
        for t in range(1, T):
            # Exact log-sum-exp over predecessors: [B, K, 1] + [1, K, K] -> [B, K].
            a = torch.logsumexp(a.unsqueeze(-1) + trans, dim=1) + log_obs[:, t]
            alphas.append(a)
        log_alpha = torch.stack(alphas, dim=1)
    mask = _length_mask(lengths, T).unsqueeze(-1)
    log_alpha = log_alpha.masked_fill(~mask, -math.inf)
    last = log_alpha.gather(1, (lengths - 1).view(B, 1, 1).expand(B, 1, K)).squeeze(1)
    return log_alpha, torch.logsumexp(last, dim=-1)


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
    if _use_kernel(backend, log_obs, log_transmat):
        k = _kernels()
        log_obs = log_obs.contiguous()
        log_beta = torch.empty_like(log_obs)
        lt = log_transmat.to(log_obs.dtype).detach()
        k.backward_kernel(
            _np(lt), _np(lt.exp()), _np(log_obs), _np(lengths), _tiny(log_obs.dtype), log_beta.numpy()
        )
        return log_beta
    return _backward_torch(log_transmat, log_obs, lengths)


def _backward_torch(log_transmat, log_obs, lengths):
    B, T, K = log_obs.shape
    ctx = single_thread() if log_obs.device.type == "cpu" else contextlib.nullcontext()
    with ctx:
        b = log_obs.new_zeros(B, K)
        betas = [b]
        trans = log_transmat.unsqueeze(0)
        for t in range(T - 2, -1, -1):
            step = torch.logsumexp(trans + (log_obs[:, t + 1] + b).unsqueeze(1), dim=2)
            # Sequences whose last frame is at or after t+1... keep beta = 0 until the last frame.
            b = torch.where((t < lengths - 1).unsqueeze(-1), step, torch.zeros_like(step))
            betas.append(b)
        betas.reverse()
        return torch.stack(betas, dim=1)


def forward_backward(
    log_startprob: Tensor,
    log_transmat: Tensor,
    log_obs: Tensor,
    lengths: Optional[Tensor] = None,
    backend: Backend = "auto",
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """State posteriors by the forward-backward algorithm.

    Returns:
        posteriors: ``[B, T, K]``, p(z_t = k | x); rows sum to 1 on real frames, 0 on padding.
        log_likelihood: ``[B]``.
        log_alpha, log_beta: ``[B, T, K]`` each (for transition statistics).
    """
    lengths = check_inputs(log_startprob, log_transmat, log_obs, lengths)
    log_alpha, log_lik = forward(log_startprob, log_transmat, log_obs, lengths, backend)
    log_beta = backward(log_transmat, log_obs, lengths, backend)
    log_post = log_alpha + log_beta - log_lik.view(-1, 1, 1)
    mask = _length_mask(lengths, log_obs.shape[1]).unsqueeze(-1)
    posteriors = torch.where(mask, log_post.exp(), torch.zeros_like(log_post))
    return posteriors, log_lik, log_alpha, log_beta


def log_likelihood(
    log_startprob: Tensor,
    log_transmat: Tensor,
    log_obs: Tensor,
    lengths: Optional[Tensor] = None,
    backend: Backend = "auto",
) -> Tensor:
    """``[B]`` log p(x) of each sequence (the forward pass alone)."""
    return forward(log_startprob, log_transmat, log_obs, lengths, backend)[1]


def transition_counts(
    log_transmat: Tensor,
    log_obs: Tensor,
    log_alpha: Tensor,
    log_beta: Tensor,
    lengths: Optional[Tensor] = None,
) -> Tensor:
    """Expected transition counts per sequence, ``[B, K, K]``:

        sum_t p(z_t = i, z_{t+1} = j | x)   over t = 0 .. len-2.

    Computed as one batched matrix product. For each t the pair posterior is
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
    work = torch.float64 if log_obs.device.type == "cpu" else log_obs.dtype
    la = log_alpha[:, :-1].to(work)
    v = (log_obs[:, 1:] + log_beta[:, 1:]).to(work)
    A = log_transmat.to(work).exp()
    ma = la.amax(-1, keepdim=True).clamp_min(torch.finfo(work).min)
    mv = v.amax(-1, keepdim=True).clamp_min(torch.finfo(work).min)
    ea = (la - ma).exp()  # [B, T-1, K]
    ev = (v - mv).exp()
    Z = ((ea @ A) * ev).sum(-1)  # [B, T-1]
    valid = _length_mask(lengths - 1, T - 1)
    bad = valid & ~(Z > _tiny(work))
    weights = torch.where(valid & ~bad, 1.0 / Z.clamp_min(_tiny(work)), torch.zeros_like(Z))
    counts = A * (ea.transpose(1, 2) @ (ev * weights.unsqueeze(-1)))
    if bad.any():
        bi, ti = bad.nonzero(as_tuple=True)
        pair = la[bi, ti].unsqueeze(-1) + log_transmat.to(work) + v[bi, ti].unsqueeze(-2)
        pair = (pair - torch.logsumexp(pair.flatten(1), -1).view(-1, 1, 1)).exp()
        counts = counts.index_put((bi,), torch.nan_to_num(pair), accumulate=True)
    return counts.to(log_obs.dtype)


# --------------------------------------------------------------------------- Viterbi


def viterbi(
    log_startprob: Tensor,
    log_transmat: Tensor,
    log_obs: Tensor,
    lengths: Optional[Tensor] = None,
    backend: Backend = "auto",
) -> Tuple[Tensor, Tensor]:
    """Most likely state path of each sequence.

    Returns:
        path: ``[B, T]`` int64, -1 past each length. Ties go to the lowest state index.
        score: ``[B]``, log p(x, path).
    """
    lengths = check_inputs(log_startprob, log_transmat, log_obs, lengths)
    B, T, K = log_obs.shape
    if _use_kernel(backend, log_obs):
        k = _kernels()
        dt = log_obs.dtype
        path = torch.empty(B, T, dtype=torch.long)
        score = torch.empty(B, dtype=dt)
        k.viterbi_kernel(
            _np(log_startprob.to(dt)), _np(log_transmat.to(dt).t()), _np(log_obs),
            _np(lengths), path.numpy(), score.numpy(),
        )
        return path, score
    return _viterbi_torch(log_startprob, log_transmat, log_obs, lengths)


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
    states = torch.empty(num_sequences, length, dtype=torch.long, device=startprob.device)
    states[:, 0] = torch.multinomial(startprob.expand(num_sequences, -1), 1, generator=generator).squeeze(1)
    for t in range(1, length):
        states[:, t] = torch.multinomial(transmat[states[:, t - 1]], 1, generator=generator).squeeze(1)
    return states
