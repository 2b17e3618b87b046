"""hmm_engine: batched, log-space, device-agnostic hidden Markov models in PyTorch.

Layers, each using only the ones below it (enforced by the import contract in pyproject.toml):

- :mod:`hmm_engine.cli` — ``hmm-engine`` / ``python -m hmm_engine``;
- :mod:`hmm_engine.alignment` — forced alignment;
- :mod:`hmm_engine.frontend` — audio and features;
- :mod:`hmm_engine.models` — ``nn.Module`` models with hmmlearn's parameter names;
- :mod:`hmm_engine.training` (EM, gradient training, model selection, on any model through a
  protocol) and :mod:`hmm_engine.serialization` (save/load, a registry the models fill in);
- :mod:`hmm_engine.emissions`, :mod:`hmm_engine.durations`, :mod:`hmm_engine.topology` — modules;
- :mod:`hmm_engine.inference` — pure dynamic programs on log-likelihood inputs;
- :mod:`hmm_engine.inputs`, :mod:`hmm_engine.segments`, :mod:`hmm_engine.threads`, then
  :mod:`hmm_engine.errors` — low utilities.

Importing this package does not import Gradio.
"""

from .cancellation import CancelToken, Cancelled, cancellable
from .durations import GammaDuration, GaussianDuration, NonparametricDuration, PoissonDuration, make_duration
from .emissions import register_emission
from .errors import HMMStudioError, InvalidInputError, InvalidParameterError, ModelFileError
from .inference.streaming import StreamDecoder, StreamStep
from .inputs import pad_sequences
from .inference.results import Posteriors, StateSegment, ViterbiResult
from .models import HMM, CategoricalHMM, GaussianHMM, MixtureGaussianHMM
from .models.base import BaseHMM
from .models.semimarkov import SemiMarkovHMM
from .serialization import load, register_model, save
from .topology import transition_mask
from .training import aic, bic, fit_em, fit_gradient, sweep

__version__ = "0.1.0"

__all__ = [
    "BaseHMM",
    "HMM",
    "GaussianHMM",
    "MixtureGaussianHMM",
    "CategoricalHMM",
    "SemiMarkovHMM",
    "PoissonDuration",
    "GammaDuration",
    "GaussianDuration",
    "NonparametricDuration",
    "make_duration",
    "pad_sequences",
    "StreamDecoder",
    "StreamStep",
    "transition_mask",
    "fit_em",
    "fit_gradient",
    "sweep",
    "bic",
    "aic",
    "save",
    "load",
    "register_model",
    "register_emission",
    "Posteriors",
    "ViterbiResult",
    "StateSegment",
    "HMMStudioError",
    "InvalidInputError",
    "InvalidParameterError",
    "ModelFileError",
    "CancelToken",
    "Cancelled",
    "cancellable",
]
