"""``model.stream(lag)``: the models' entry into :mod:`hmm_engine.inference.streaming`.

The decoder snapshots the model's parameters when it is created (training the model
afterwards does not change a running stream) and computes the emission log-likelihoods of
each pushed chunk with the model's own emission module.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..errors import InvalidInputError
from ..inference.streaming import StreamDecoder, hsmm_expanded_chain
from ..inputs import prepare_inputs

__all__ = ["stream_model"]


def _emission(model, repeat: int = 1):
    event_dims = getattr(model.emission, "event_dims", 1)

    def log_obs(x):
        xb, _, unbatched = prepare_inputs(x, None, event_dims, model.dtype, model.device)
        if not unbatched:
            raise InvalidInputError(
                f"push one stream's chunk of shape [t, ...] ({event_dims} feature dims), got shape {tuple(xb.shape)}"
            )
        out = model.emission_log_likelihood(xb)[0]
        # Expanded semi-Markov states share their model state's emission.
        return out.repeat_interleave(repeat, dim=-1) if repeat > 1 else out

    return log_obs


def stream_model(model, lag: Optional[int] = None) -> StreamDecoder:
    """A :class:`~hmm_engine.inference.streaming.StreamDecoder` for ``model`` (an HMM or a
    semi-Markov HMM); see :mod:`hmm_engine.inference.streaming` for the semantics."""
    with torch.no_grad():
        if hasattr(model, "duration"):  # semi-Markov: an HMM over (state, frames so far)
            start, trans, final, groups = hsmm_expanded_chain(
                *model._params(), right_censored=model.right_censored
            )
            return StreamDecoder(start.to(model.dtype), trans, lag, _emission(model, model.max_duration),
                                 log_final=final, groups=groups, num_states=model.num_states)
        return StreamDecoder(model.log_startprob().detach(), model.log_transmat().detach(), lag, _emission(model))
