"""torch.distributed plumbing for corpus training: this process's rank, and gathering small
Python objects (counts, phone inventories, report lines) from every rank. Statistics are summed
with :func:`hmm_engine.training.em.all_reduce_stats`."""

from __future__ import annotations

import torch


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` when torch.distributed is not initialised."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def gather(obj):
    """Every rank's ``obj`` as a list (``[obj]`` when not distributed)."""
    _, world = rank_and_world()
    if world == 1:
        return [obj]
    out = [None] * world
    torch.distributed.all_gather_object(out, obj)
    return out


def barrier() -> None:
    """Wait for every rank (nothing to do when not distributed)."""
    if rank_and_world()[1] > 1:
        torch.distributed.barrier()
