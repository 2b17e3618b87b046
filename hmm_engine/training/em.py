"""Baum-Welch EM for any model exposing ``prepare / initialize / accumulate / m_step``.

The E-step returns *summed* statistics, so the same loop trains on one batch, on a
corpus streamed in batches (``batches``), or across processes: when
``torch.distributed`` is initialised every statistic is ``all_reduce``-summed, and
every process then takes the identical M-step.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import torch
from torch import Tensor

from ..cancellation import check_cancelled
from ..errors import InvalidInputError
from ..inputs import pad_sequences

Stats = Dict[str, Tensor]


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1


def all_reduce_stats(stats: Stats) -> Stats:
    """Sum every statistic over the processes of the default group (no-op when alone)."""
    if not _distributed():
        return stats
    for key in sorted(stats):  # same order on every rank
        torch.distributed.all_reduce(stats[key], op=torch.distributed.ReduceOp.SUM)
    return stats


def broadcast_parameters(model: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every process."""
    if not _distributed():
        return
    with torch.no_grad():
        for tensor in list(model.parameters()) + list(model.buffers()):
            torch.distributed.broadcast(tensor.data, src=src)


def add_stats(total: Optional[Stats], stats: Stats) -> Stats:
    if total is None:
        return {k: v.clone() for k, v in stats.items()}
    for k, v in stats.items():
        total[k] += v
    return total


def fit_em(
    model,
    x=None,
    lengths=None,
    max_iter: int = 20,
    tol: float = 1e-4,
    seed: int = 0,
    init: bool = True,
    callback: Optional[Callable[[int, float], None]] = None,
    batches: Optional[Iterable[Tuple[Tensor, Tensor]]] = None,
) -> List[float]:
    """Run EM; return the total log-likelihood of each iteration (before its M-step).

    Args:
        model: e.g. a :class:`~hmm_engine.models.HMM` or ``SemiMarkovHMM``.
        x, lengths: the training data (any form ``model.prepare`` accepts), or
        batches: a re-iterable of prepared ``(x [B, T, ...], lengths [B])`` pairs for corpora
            too large for one batch (statistics are summed over them).
        max_iter: iteration cap. tol: stop once the log-likelihood gain per frame is below it.
        seed: seeds the initialisation (k-means); EM itself is deterministic.
        init: initialise from the data first (False continues from the current parameters).
        callback: called as ``callback(iteration, log_likelihood)`` after each E-step.

    Raises:
        InvalidInputError: ``max_iter`` < 1, ``tol`` negative or not a number.
        hmm_engine.cancellation.Cancelled: the current cancellation token was set (checked
            before each iteration).
    """
    try:
        tol = float(tol)
    except (TypeError, ValueError):
        raise InvalidInputError(f"tol must be a number, got {tol!r}") from None
    if not (math.isfinite(tol) and tol >= 0):
        raise InvalidInputError(f"tol must be a finite number >= 0 (0: run all max_iter iterations), got {tol!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) and not float(max_iter).is_integer():
        raise InvalidInputError(f"max_iter must be a whole number, got {max_iter!r}")
    max_iter = int(max_iter)
    check_cancelled()
    if batches is None:
        xb, lb, _ = model.prepare(x, lengths)
        batches = [(xb, lb)]
    else:
        batches = list(batches)
    obs_dim = getattr(getattr(model, "emission", None), "obs_dim", None)
    if obs_dim is not None and getattr(model.emission, "event_dims", 1) == 1:
        for xb, _ in batches:
            if xb.shape[-1] != obs_dim:
                raise InvalidInputError(f"observations have dimension {xb.shape[-1]}, the model expects {obs_dim}")
    if max_iter < 1:
        raise InvalidInputError("max_iter must be >= 1")
    generator = torch.Generator().manual_seed(int(seed))
    if init:
        _initialize(model, batches, generator)
    history: List[float] = []
    previous = None
    for iteration in range(max_iter):
        check_cancelled()
        stats = None
        for xb, lb in batches:
            stats = add_stats(stats, model.accumulate(xb, lb))
        stats = all_reduce_stats(stats)
        log_lik = float(stats["log_likelihood"])
        frames = float(stats["num_frames"])
        if not math.isfinite(log_lik):
            raise InvalidInputError("log-likelihood is not finite: the data cannot be explained by the model")
        history.append(log_lik)
        if callback is not None:
            callback(iteration, log_lik)
        model.m_step(stats)
        if previous is not None and (log_lik - previous) / frames < tol:
            break
        previous = log_lik
    return history


def _initialize(model, batches, generator) -> None:
    """Uniform-segmentation starts are statistics, summed over batches and processes so that
    every process starts identically; k-means starts run on the first batch of rank 0 and
    are broadcast."""
    xb, lb = batches[0]
    if hasattr(model, "initial_stats") and model.initial_groups(xb, lb) is not None:
        stats = None
        for xb, lb in batches:
            stats = add_stats(stats, model.initial_stats(xb, lb))
        model.initialize_from_stats(all_reduce_stats(stats), generator)
        return
    if len(batches) > 1:
        seqs = [x[i, : n[i]] for x, n in batches for i in range(x.shape[0])]
        xb, lb = pad_sequences(seqs)
        xb, lb = xb.to(batches[0][0].device), lb.to(batches[0][0].device)
    model.initialize(xb, lb, generator)
    broadcast_parameters(model)
