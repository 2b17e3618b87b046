"""Pure inference functions: dynamic programs on log-likelihood inputs."""

from .hmm import (
    backward,
    forward,
    forward_backward,
    log_likelihood,
    sample_states,
    transition_counts,
    viterbi,
)

__all__ = [
    "backward",
    "forward",
    "forward_backward",
    "log_likelihood",
    "sample_states",
    "transition_counts",
    "viterbi",
]
