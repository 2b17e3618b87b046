"""The concrete models users reach for, with hmmlearn's parameter names."""

from __future__ import annotations

import torch

from ..emissions import CategoricalEmission, GaussianEmission, MixtureGaussianEmission
from ..serialization import register_model
from ..topology import Topology
from .base import HMM


def _hmm_kwargs(config: dict) -> dict:
    return {k: config[k] for k in ("topology", "max_skip", "start_pseudocount", "trans_pseudocount", "init")}


class GaussianHMM(HMM):
    """HMM with one Gaussian per state.

    Args:
        num_states: K. obs_dim: D.
        covariance_type: "diag" (``covars [K, D]`` variances), "full" (``[K, D, D]``),
            "spherical" (``[K]``) or "tied" (``[D, D]``).
        topology: "ergodic" | "left-to-right" | "bakis" | ``[K, K]`` bool mask.
        min_covar: variance floor (diag/spherical) or diagonal loading (full/tied).
        dtype: torch.float32 (default) or torch.float64.
        Other keyword arguments go to :class:`HMM`.
    """

    def __init__(
        self,
        num_states: int,
        obs_dim: int,
        covariance_type: str = "diag",
        topology: Topology = "ergodic",
        min_covar: float = 1e-3,
        dtype: torch.dtype = torch.float32,
        **kwargs,
    ):
        super().__init__(GaussianEmission(num_states, obs_dim, covariance_type, min_covar, dtype=dtype), topology, **kwargs)
        self.obs_dim, self.covariance_type = int(obs_dim), covariance_type

    @classmethod
    def from_config(cls, config: dict) -> "GaussianHMM":
        e = config["emission"]
        return cls(e["num_states"], e["obs_dim"], e["covariance_type"], min_covar=e["min_covar"], **_hmm_kwargs(config))

    means = property(lambda self: self.emission.means, lambda self, v: setattr(self.emission, "means", v), doc="``[K, D]``")
    covars = property(lambda self: self.emission.covars, lambda self, v: setattr(self.emission, "covars", v), doc="hmmlearn shapes")


class MixtureGaussianHMM(HMM):
    """HMM whose states emit a mixture of ``num_mixtures`` Gaussians (hmmlearn's GMMHMM).

    ``means [K, M, D]``, ``weights [K, M]``, ``covars`` ``[K, M, D]`` (diag), ``[K, M]``
    (spherical), ``[K, M, D, D]`` (full), ``[K, D, D]`` (tied: one matrix per state).
    """

    def __init__(
        self,
        num_states: int,
        obs_dim: int,
        num_mixtures: int = 2,
        covariance_type: str = "diag",
        topology: Topology = "ergodic",
        min_covar: float = 1e-3,
        dtype: torch.dtype = torch.float32,
        **kwargs,
    ):
        emission = MixtureGaussianEmission(num_states, obs_dim, num_mixtures, covariance_type, min_covar, dtype=dtype)
        super().__init__(emission, topology, **kwargs)
        self.obs_dim, self.num_mixtures, self.covariance_type = int(obs_dim), int(num_mixtures), covariance_type

    @classmethod
    def from_config(cls, config: dict) -> "MixtureGaussianHMM":
        e = config["emission"]
        return cls(
            e["num_states"], e["obs_dim"], e["num_mixtures"], e["covariance_type"], min_covar=e["min_covar"],
            **_hmm_kwargs(config),
        )

    means = property(lambda self: self.emission.means, lambda self, v: setattr(self.emission, "means", v))
    covars = property(lambda self: self.emission.covars, lambda self, v: setattr(self.emission, "covars", v))
    weights = property(lambda self: self.emission.weights, lambda self, v: setattr(self.emission, "weights", v))


class CategoricalHMM(HMM):
    """HMM over discrete symbols in [0, num_symbols); ``emissionprob [K, S]``."""

    def __init__(
        self,
        num_states: int,
        num_symbols: int,
        topology: Topology = "ergodic",
        emission_pseudocount: float = 0.0,
        dtype: torch.dtype = torch.float32,
        **kwargs,
    ):
        super().__init__(CategoricalEmission(num_states, num_symbols, emission_pseudocount, dtype=dtype), topology, **kwargs)
        self.num_symbols = int(num_symbols)

    @classmethod
    def from_config(cls, config: dict) -> "CategoricalHMM":
        e = config["emission"]
        return cls(e["num_states"], e["num_symbols"], emission_pseudocount=e["pseudocount"], **_hmm_kwargs(config))

    emissionprob = property(
        lambda self: self.emission.emissionprob, lambda self, v: setattr(self.emission, "emissionprob", v)
    )


for _cls in (HMM, GaussianHMM, MixtureGaussianHMM, CategoricalHMM):
    register_model(_cls.__name__, _cls.from_config)
