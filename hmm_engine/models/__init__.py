"""Models: every one an ``nn.Module`` built from an emission module and a topology."""

from .base import HMM, pad_sequences, prepare_inputs
from .gaussian import CategoricalHMM, GaussianHMM, MixtureGaussianHMM

__all__ = ["HMM", "GaussianHMM", "MixtureGaussianHMM", "CategoricalHMM", "pad_sequences", "prepare_inputs"]
