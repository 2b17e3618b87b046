"""Transition topologies as boolean masks of allowed transitions.

A mask ``[K, K]`` has ``mask[i, j] = True`` when the move i -> j is allowed.
Forbidden entries of ``transmat`` are exactly zero and stay zero through training
(the M-step only redistributes mass among allowed entries).
"""

from __future__ import annotations

from typing import Union

import torch
from torch import Tensor

from .errors import InvalidParameterError

TOPOLOGIES = ("ergodic", "left-to-right", "bakis")

Topology = Union[str, Tensor]


def transition_mask(topology: Topology, num_states: int, max_skip: int = 2) -> Tensor:
    """Allowed-transition mask ``[K, K]`` (bool).

    Args:
        topology: "ergodic" (all moves), "left-to-right" (stay or go to the next state),
            "bakis" (stay, next, or skip ahead up to ``max_skip`` states), or a
            ``[K, K]`` bool tensor/array of allowed moves.
        num_states: K.
        max_skip: largest forward jump of "bakis" (2 = may skip one state).
    Raises:
        InvalidParameterError: unknown name, wrong mask shape, or a state with no way out.
    """
    K = int(num_states)
    if K < 1:
        raise InvalidParameterError(f"num_states must be >= 1, got {num_states}")
    if isinstance(topology, str):
        name = topology.lower().replace("_", "-")
        i = torch.arange(K).unsqueeze(1)
        j = torch.arange(K).unsqueeze(0)
        if name == "ergodic":
            mask = torch.ones(K, K, dtype=torch.bool)
        elif name in ("left-to-right", "ltr", "left-right"):
            mask = (j == i) | (j == i + 1)
        elif name == "bakis":
            if max_skip < 1:
                raise InvalidParameterError("max_skip must be >= 1")
            mask = (j >= i) & (j <= i + max_skip)
        else:
            raise InvalidParameterError(
                f"unknown topology {topology!r}; use one of {TOPOLOGIES} or a [K, K] bool mask"
            )
    else:
        mask = torch.as_tensor(topology).bool().cpu()
        if mask.shape != (K, K):
            raise InvalidParameterError(f"topology mask must be [{K}, {K}], got {tuple(mask.shape)}")
    if not mask.any(dim=1).all():
        bad = (~mask.any(dim=1)).nonzero().flatten().tolist()
        raise InvalidParameterError(f"states {bad} have no allowed transition")
    return mask


def start_mask(topology: Topology, num_states: int) -> Tensor:
    """States allowed to start a sequence: all for ergodic/custom, the first for chains."""
    if isinstance(topology, str) and topology.lower().replace("_", "-") != "ergodic":
        mask = torch.zeros(num_states, dtype=torch.bool)
        mask[0] = True
        return mask
    return torch.ones(num_states, dtype=torch.bool)
