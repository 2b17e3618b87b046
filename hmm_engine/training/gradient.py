"""Gradient training: maximise ``model.score`` with a torch optimiser.

Useful for emissions EM cannot update in closed form (neural networks) and as a
check that the likelihood is differentiable end to end.
"""

from __future__ import annotations

from typing import Callable, List, Optional

import torch


def fit_gradient(
    model: torch.nn.Module,
    x,
    lengths=None,
    steps: int = 100,
    lr: float = 0.05,
    optimizer: Optional[torch.optim.Optimizer] = None,
    callback: Optional[Callable[[int, float], None]] = None,
) -> List[float]:
    """Adam on the mean per-frame negative log-likelihood; returns the total log-likelihood per step."""
    xb, lb, _ = model.prepare(x, lengths)
    frames = float(lb.sum())
    params = [p for p in model.parameters() if p.requires_grad]
    opt = optimizer or torch.optim.Adam(params, lr=lr)
    history: List[float] = []
    for step in range(steps):
        opt.zero_grad()
        ll = model.score(xb, lb).sum()
        (-ll / frames).backward()
        opt.step()
        value = float(ll.detach())
        history.append(value)
        if callback is not None:
            callback(step, value)
    return history
