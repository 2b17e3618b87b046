"""Gradient training: maximise the log-likelihood ``model(x, lengths)`` with a torch optimiser.

Useful for emissions EM cannot update in closed form (neural networks) and as a check that
the likelihood is differentiable end to end. The gradient is analytic (forward-backward
statistics, see :func:`hmm_engine.inference.hmm.log_likelihood`), so one step costs about two
passes over the data whatever the length.

Across processes: wrap the model in ``torch.nn.parallel.DistributedDataParallel`` (any
backend; gloo on CPUs) and give each process its own share of the sequences. The loss is the
negative log-likelihood per frame of the *whole* corpus (frame counts are all-reduced), and
DDP averages the gradients, so every process takes the same step as one process holding all
the data would (tested in tests/test_gradients.py).
"""

from __future__ import annotations

from typing import Callable, List, Optional

import torch
import torch.distributed as dist


def _core(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DDP (or DataParallel) wrapper."""
    return getattr(model, "module", model)


def _distributed(model: torch.nn.Module) -> bool:
    return isinstance(model, torch.nn.parallel.DistributedDataParallel) and dist.is_available() and dist.is_initialized()


def fit_gradient(
    model: torch.nn.Module,
    x,
    lengths=None,
    steps: int = 100,
    lr: float = 0.05,
    optimizer: Optional[torch.optim.Optimizer] = None,
    callback: Optional[Callable[[int, float], None]] = None,
) -> List[float]:
    """Adam on the mean per-frame negative log-likelihood; returns the total log-likelihood
    per step (over all processes when ``model`` is a DDP-wrapped model).

    Args:
        model: an engine model, or one wrapped in ``DistributedDataParallel``.
        x, lengths: this process's sequences (any form ``model.prepare`` accepts).
    """
    core = _core(model)
    xb, lb, _ = core.prepare(x, lengths)
    distributed = _distributed(model)
    world = dist.get_world_size() if distributed else 1
    frames = lb.sum().to(torch.float64)
    if distributed:
        frames = frames.to(core.device)
        dist.all_reduce(frames)
    frames = float(frames)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = optimizer or torch.optim.Adam(params, lr=lr)
    history: List[float] = []
    for step in range(steps):
        opt.zero_grad()
        ll = model(xb, lb).sum()
        # DDP averages gradients over processes: scale by the world size so that the average
        # is the gradient of the corpus total divided by the corpus frames.
        (-ll * world / frames).backward()
        opt.step()
        value = ll.detach().to(torch.float64)
        if distributed:
            dist.all_reduce(value)
        history.append(float(value))
        if callback is not None:
            callback(step, history[-1])
    return history
