"""Parallel-in-time forward and Viterbi: an associative scan over K x K matrix products.

The forward recursion ``alpha_t = alpha_{t-1} (x) M_t`` with ``M_t[i, j] = log A[i, j] +
log_obs[t, j]`` is a product in the log semiring (``(x)`` = log-sum-exp of sums); Viterbi is
the same product in the max semiring. Products are associative, so all prefix products
``M_1 (x) ... (x) M_t`` come from a scan of depth ``O(log T)`` (the odd/even recursion:
``~2T`` matrix products in all) instead of ``T`` dependent steps. The price is work: a
``K x K`` by ``K x K`` product per element (``O(K^3)``) where the sequential step is a vector
by matrix (``O(K^2)``). Its home is a GPU, where the ``T`` sequential steps are ``T`` kernel
launches and the scan is ``2 log2(T)`` large batched ones; see docs/streaming.md for the CPU
crossover measured with ``benchmarks/bench_scan.py``.

Numerics: each element carries its matrix with the largest entry shifted to 0 and a float64
log-scale, so the matrices stay bounded in the working dtype whatever ``T`` is (the scale of
the offline recursions, kept apart in float64 the same way). Log-semiring products are a
max-shifted matrix product (one BLAS call) whose underflowed entries are recomputed exactly.
Max-semiring products have no BLAS form: ``[.., K, K, K]`` broadcasts, in blocks of bounded
memory. The Viterbi path comes from back-pointers computed for all frames at once and a second
scan that composes them (function composition is associative too), so nothing loops over time.

Same shapes and conventions as :mod:`.hmm`: ``log_startprob [K]``, ``log_transmat [K, K]``,
``log_obs [B, T, K]``, ``lengths [B]``; outputs past a length are -inf / -1.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Tuple

import torch
from torch import Tensor

from ..errors import InvalidInputError
from .hmm import check_inputs
from .results import ForwardResult, ViterbiResult

__all__ = ["scan_forward", "scan_viterbi", "associative_scan", "MAX_SCAN_WORK"]

# K^3 * T multiply-adds a call may cost (about 10 s of max-semiring work on this 2-core CPU):
# checked before any work so that a large K fails at once instead of running for hours.
MAX_SCAN_WORK = 2e10
# Elements of one [.., K, K, K] block of a max-semiring product (16 M float64 = 128 MB).
_BLOCK = 1 << 24


def _tiny(dtype: torch.dtype) -> float:
    return 1e-280 if dtype == torch.float64 else 1e-25


def associative_scan(op: Callable, elems: tuple) -> tuple:
    """Inclusive prefix scan along dim 0: ``out[t] = elems[0] op ... op elems[t]``.

    ``elems`` is a tuple of tensors sharing their leading dimension; ``op(a, b)`` combines two
    such tuples elementwise (``a`` earlier in time) and must be associative. The odd/even
    recursion does about ``2n`` combinations in ``2 log2(n)`` batched calls.
    """
    n = elems[0].shape[0]
    if n < 2:
        return elems
    pairs = op(tuple(e[0:n - 1:2] for e in elems), tuple(e[1::2] for e in elems))  # n // 2
    odd = associative_scan(op, pairs)  # prefixes ending at 1, 3, 5, ...
    rest = op(tuple(o[: (n - 1) // 2] for o in odd), tuple(e[2::2] for e in elems))  # at 2, 4, ...
    out = []
    for e, o, r in zip(elems, odd, rest):
        full = torch.empty_like(e)
        full[0] = e[0]
        full[2::2] = r
        full[1::2] = o
        out.append(full)
    return tuple(out)


# --------------------------------------------------------------------------- semiring products


def _normalise(mat: Tensor, scale: Tensor) -> Tuple[Tensor, Tensor]:
    top = mat.amax(dim=(-2, -1))
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    return mat - top[..., None, None], scale + top.double()


def _log_product(a: Tensor, b: Tensor) -> Tensor:
    """``out[.., i, j] = logsumexp_k a[.., i, k] + b[.., k, j]``; exact where it matters."""
    ra = a.amax(-1, keepdim=True).clamp_min(-1e300)
    cb = b.amax(-2, keepdim=True).clamp_min(-1e300)
    s = (a - ra).exp() @ (b - cb).exp()
    bad = s < _tiny(a.dtype)
    out = s.log() + ra + cb
    if bool(bad.any()):
        idx = bad.nonzero(as_tuple=True)
        rows = a[idx[:-1]]  # [n_bad, K]: row i of a for each bad (.., i, j)
        cols = b[idx[:-2] + (slice(None), idx[-1])]  # [n_bad, K]: column j of b
        out[idx] = torch.logsumexp(rows + cols, dim=-1)
    return out


def _max_product(a: Tensor, b: Tensor) -> Tensor:
    """``out[.., i, j] = max_k a[.., i, k] + b[.., k, j]``, in blocks of bounded memory."""
    lead, (rows, K), cols = a.shape[:-2], a.shape[-2:], b.shape[-1]
    a2, b2 = a.reshape(-1, rows, K), b.reshape(-1, K, cols)
    step = max(1, _BLOCK // (rows * K * cols))
    out = a2.new_empty(a2.shape[0], rows, cols)
    for lo in range(0, a2.shape[0], step):
        out[lo:lo + step] = (a2[lo:lo + step, :, :, None] + b2[lo:lo + step, None, :, :]).amax(-2)
    return out.reshape(*lead, rows, cols)


def _combine(product):
    def op(x, y):
        return _normalise(product(x[0], y[0]), x[1] + y[1])

    return op


# --------------------------------------------------------------------------- entry points


def _elements(log_transmat: Tensor, log_obs: Tensor, lengths: Tensor, work: torch.dtype):
    """``M_t`` for t = 1..T-1 as ``[T-1, B, K, K]`` (identity past each length) + scales."""
    B, T, K = log_obs.shape
    obs = log_obs[:, 1:].to(work).transpose(0, 1)  # [T-1, B, K]
    mats = log_transmat.to(work)[None, None] + obs[:, :, None, :]
    real = (torch.arange(1, T, device=log_obs.device)[:, None] < lengths[None, :])[..., None, None]
    ident = torch.full((K, K), -math.inf, dtype=work, device=log_obs.device)
    ident.fill_diagonal_(0.0)
    mats = torch.where(real, mats, ident)
    return _normalise(mats, torch.zeros(T - 1, B, dtype=torch.float64, device=log_obs.device))


def _check_cost(B: int, T: int, K: int) -> None:
    work = float(B) * T * K ** 3
    if work > MAX_SCAN_WORK:
        raise InvalidInputError(
            f"the parallel scan costs B*T*K^3 = {work:.2g} operations (limit {MAX_SCAN_WORK:.0g}); "
            "use the sequential recursions (hmm_engine.inference.hmm) for this size"
        )


def scan_forward(
    log_startprob: Tensor,
    log_transmat: Tensor,
    log_obs: Tensor,
    lengths: Optional[Tensor] = None,
) -> ForwardResult:
    """The forward pass by a parallel scan; same results as :func:`.hmm.forward`.

    Returns:
        :class:`ForwardResult`:
        log_alpha: ``[B, T, K]``, log p(x_{0:t}, z_t = k); -inf past each length.
        log_likelihood: ``[B]``.
    """
    lengths = check_inputs(log_startprob, log_transmat, log_obs, lengths)
    B, T, K = log_obs.shape
    _check_cost(B, T, K)
    work = torch.float64 if log_obs.device.type == "cpu" else log_obs.dtype
    with torch.no_grad():
        a0 = log_startprob.to(work) + log_obs[:, 0].to(work)  # [B, K]
        if T > 1:
            mats, scale = associative_scan(_combine(_log_product), _elements(log_transmat, log_obs, lengths, work))
            rest = _log_product(a0[None, :, None, :].expand(T - 1, B, 1, K), mats)[:, :, 0]  # [T-1, B, K]
            alpha = torch.cat([a0[None].double(), rest.double() + scale[..., None]]).transpose(0, 1)
        else:
            alpha = a0[:, None].double()
        last = alpha.gather(1, (lengths - 1).view(B, 1, 1).expand(B, 1, K))[:, 0]
        ll = torch.logsumexp(last, -1)
        real = torch.arange(T, device=log_obs.device)[None, :] < lengths[:, None]
        alpha = alpha.masked_fill(~real[..., None], -math.inf)
    return ForwardResult(alpha.to(log_obs.dtype), ll.to(log_obs.dtype))


def scan_viterbi(
    log_startprob: Tensor,
    log_transmat: Tensor,
    log_obs: Tensor,
    lengths: Optional[Tensor] = None,
) -> ViterbiResult:
    """Viterbi by a parallel max-semiring scan; the same best score as :func:`.hmm.viterbi`
    (the path may differ where several paths tie).

    Returns:
        :class:`ViterbiResult`:
        path: ``[B, T]`` int64, -1 past each length.
        score: ``[B]``, log p(x, path).
    """
    lengths = check_inputs(log_startprob, log_transmat, log_obs, lengths)
    B, T, K = log_obs.shape
    _check_cost(B, T, K)
    work = torch.float64 if log_obs.device.type == "cpu" else log_obs.dtype
    dev = log_obs.device
    with torch.no_grad():
        d0 = log_startprob.to(work) + log_obs[:, 0].to(work)
        if T == 1:
            score, state = d0.max(-1)
            return ViterbiResult(state[:, None].clone(), score.to(log_obs.dtype))
        mats, scale = associative_scan(_combine(_max_product), _elements(log_transmat, log_obs, lengths, work))
        rest = _max_product(d0[None, :, None, :].expand(T - 1, B, 1, K), mats)[:, :, 0]
        # Relative scores per frame suffice for the back-pointers (a constant per frame).
        delta = torch.cat([d0[None], rest])  # [T, B, K]
        total = torch.cat([torch.zeros(1, B, dtype=torch.float64, device=dev), scale])
        last = (lengths - 1).view(1, B, 1)
        final = delta.gather(0, last.expand(1, B, K))[0]
        best, z_last = final.max(-1)
        score = best.double() + total.gather(0, (lengths - 1).view(1, B))[0]
        # Back-pointers of every frame at once: bp[t][j] = argmax_i delta_{t-1}[i] + A[i, j].
        lt = log_transmat.to(work)
        bp = (delta[:-1, :, :, None] + lt).argmax(2)  # [T-1, B, K], first maximum on ties
        ident = torch.arange(K, device=dev).expand(T - 1, B, K)
        inside = (torch.arange(1, T, device=dev)[:, None] < lengths[None, :])[..., None]
        bp = torch.where(inside, bp, ident)  # past a length: stay
        # z_t = bp[t+1](bp[t+2](... z_{T-1})): compose the maps from the end with a scan.
        rev = bp.flip(0)

        def compose(f, g):  # f earlier in the reversed order: apply f, then g
            return (torch.gather(g[0], -1, f[0]),)

        (maps,) = associative_scan(compose, (rev,))
        z = torch.gather(maps, -1, z_last[None, :, None].expand(T - 1, B, 1))[..., 0]  # [T-1, B]
        path = torch.cat([z.flip(0), z_last[None]]).transpose(0, 1).contiguous()
        real = torch.arange(T, device=dev)[None, :] < lengths[:, None]
        path = path.masked_fill(~real, -1)
    return ViterbiResult(path, score.to(log_obs.dtype))
