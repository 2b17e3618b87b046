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
from .scan import scan_forward, scan_viterbi
from .streaming import StreamDecoder, StreamStep
from .results import (
    ChainPosteriors,
    ForwardBackwardResult,
    ForwardResult,
    HSMMPosteriors,
    HSMMSample,
    HSMMViterbiResult,
    NormalizedBackward,
    NormalizedForward,
    Posteriors,
    SegmentChainPosteriors,
    StateSegment,
    ViterbiResult,
)

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
    "scan_forward",
    "scan_viterbi",
    "StreamDecoder",
    "StreamStep",
    "ChainPosteriors",
    "ForwardBackwardResult",
    "ForwardResult",
    "HSMMPosteriors",
    "HSMMSample",
    "HSMMViterbiResult",
    "NormalizedBackward",
    "NormalizedForward",
    "Posteriors",
    "SegmentChainPosteriors",
    "StateSegment",
    "ViterbiResult",
]
