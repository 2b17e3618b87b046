"""Observation inputs: padding ragged sequences and bringing every accepted input form
into the padded batch ``[B, T, ...]`` with ``lengths [B]`` that the whole engine uses."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from .errors import InvalidInputError

ArrayLike = Union[Tensor, np.ndarray, Sequence]


def pad_sequences(sequences: Sequence[ArrayLike], pad_value: float = 0.0) -> Tuple[Tensor, Tensor]:
    """Stack a list of ``[T_i, ...]`` sequences into ``([B, T_max, ...], lengths [B])``."""
    tensors = [torch.as_tensor(np.asarray(s) if not isinstance(s, Tensor) else s) for s in sequences]
    if not tensors:
        raise InvalidInputError("no sequences given")
    lengths = torch.tensor([t.shape[0] for t in tensors], dtype=torch.long)
    out = torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True, padding_value=pad_value)
    return out, lengths


def prepare_inputs(
    x: ArrayLike,
    lengths: Optional[ArrayLike] = None,
    event_dims: int = 1,
    dtype: Optional[torch.dtype] = None,
    device: Optional[torch.device] = None,
) -> Tuple[Tensor, Tensor, bool]:
    """Bring observations into the padded batch form ``[B, T, ...]`` with ``lengths [B]``.

    Accepts ``[T, ...]`` (one sequence), ``[B, T, ...]`` padded with ``lengths``, a list of
    sequences, or hmmlearn's form: concatenated ``[N, ...]`` with ``lengths`` summing to N.

    Returns:
        x: ``[B, T, ...]`` on ``device`` in ``dtype`` (symbols stay int64).
        lengths: ``[B]`` int64.
        unbatched: True when a single ``[T, ...]`` sequence was given.
    Raises:
        InvalidInputError: empty input, wrong rank, NaN/Inf values, bad lengths.
    """
    if isinstance(x, (list, tuple)) and len(x) and not np.isscalar(x[0]) and np.ndim(x[0]) == event_dims + 1:
        x, lengths_from_list = pad_sequences(x)
        if lengths is not None and not torch.equal(torch.as_tensor(lengths).long(), lengths_from_list):
            raise InvalidInputError("lengths disagree with the list of sequences")
        lengths = lengths_from_list
    x = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    if x.numel() == 0:
        raise InvalidInputError("observations are empty")
    unbatched = False
    if x.dim() == event_dims + 1:
        if lengths is not None and len(torch.as_tensor(lengths).reshape(-1)) > 1:
            # hmmlearn's convention: several sequences concatenated along time.
            lens = torch.as_tensor(lengths).long().reshape(-1)
            if int(lens.sum()) != x.shape[0] or (lens < 1).any():
                raise InvalidInputError(
                    f"lengths {lens.tolist()} must be positive and sum to the {x.shape[0]} concatenated frames"
                )
            x, lengths = pad_sequences(list(torch.split(x, lens.tolist())))
        else:
            x = x.unsqueeze(0)
            unbatched = True
    if x.dim() != event_dims + 2:
        want = "[T, D] or [B, T, D]" if event_dims == 1 else "[T] or [B, T]"
        raise InvalidInputError(f"observations must be {want}, got shape {tuple(x.shape)}")
    B, T = x.shape[:2]
    if event_dims > 0 and not x.is_floating_point():
        raise InvalidInputError(f"observations are {str(x.dtype).replace('torch.', '')}; this model's emissions need "
                                "floating-point features (pass x.float())")
    if x.is_floating_point() and event_dims > 0:
        if dtype is not None:
            x = x.to(dtype)
        # One sum is finite unless a value is NaN/Inf (or huge values overflow it): ~20x
        # cheaper than the elementwise test, which then decides.
        if not torch.isfinite(x.sum()) and not torch.isfinite(x).all():
            raise InvalidInputError("observations contain NaN or Inf values")
    if device is not None:
        x = x.to(device)
    if lengths is None:
        lengths = torch.full((B,), T, dtype=torch.long)
    lengths = torch.as_tensor(lengths).long().reshape(-1).to(x.device)
    if lengths.shape != (B,):
        raise InvalidInputError(f"lengths must have {B} entries, got {lengths.numel()}")
    if (lengths < 1).any() or (lengths > T).any():
        raise InvalidInputError(f"every length must be in [1, {T}], got {lengths.tolist()}")
    return x, lengths, unbatched
