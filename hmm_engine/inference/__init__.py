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
from .hsmm import hsmm_forward_backward, hsmm_log_likelihood, hsmm_sample, hsmm_viterbi

__all__ = [
    "backward",
    "forward",
    "forward_backward",
    "log_likelihood",
    "sample_states",
    "transition_counts",
    "viterbi",
    "hsmm_forward_backward",
    "hsmm_log_likelihood",
    "hsmm_sample",
    "hsmm_viterbi",
]
