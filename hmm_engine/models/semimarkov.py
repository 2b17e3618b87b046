"""Explicit-duration (semi-Markov) HMM: each visit to a state lasts a modelled number of frames.

``SemiMarkovHMM`` replaces the geometric stay of an HMM's self-loop by a duration
distribution ``p_k(d)`` on ``d = min_duration..max_duration`` (see :mod:`hmm_engine.durations`).
The transition matrix therefore has no self-loops: ``transmat[k, k] == 0``, and any move the
topology forbids stays exactly zero through training. In a "left-to-right" or "bakis" chain the
last state has no way out; its ``transmat`` row is all zeros and a sequence ends there (or
anywhere, since no end state is imposed).

Inference is :mod:`hmm_engine.inference.hsmm`; training is the generic EM of
:func:`hmm_engine.training.em.fit_em` through ``initialize / accumulate / m_step``, whose
statistics add up over batches and processes.
"""

from __future__ import annotations

import contextlib
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from ..durations import DurationDistribution, duration_from_config, make_duration
from ..emissions import GaussianEmission, MixtureGaussianEmission, emission_from_config
from ..errors import InvalidInputError, InvalidParameterError
from ..inference import hsmm
from ..inference.results import HSMMViterbiResult, StateSegment
from ..segments import label_runs
from ..serialization import register_model
from ..threads import cpu_single_thread, single_thread
from ..topology import Topology, start_mask, transition_mask
from .base import BaseHMM, real_frames

ArrayLike = Union[Tensor, np.ndarray, Sequence]
Stats = dict

__all__ = ["SemiMarkovHMM", "StateSegment"]


class SemiMarkovHMM(BaseHMM):
    """Hidden semi-Markov model with explicit state durations.

    Args:
        num_states: K.
        obs_dim: D (ignored when ``emission`` is given).
        max_duration: longest segment, in frames (``Dmax``). Work and memory per step grow
            with it; a sequence longer than the topology can cover with segments of at most
            ``Dmax`` frames has zero probability.
        duration: "poisson" | "gamma" | "gaussian" | "nonparametric", or a
            :class:`~hmm_engine.durations.DurationDistribution` instance.
        min_duration: shortest segment, in frames.
        emission: an emission module (default: ``GaussianEmission`` with ``covariance_type``,
            or ``MixtureGaussianEmission`` when ``num_mixtures > 1``).
        covariance_type, num_mixtures, min_covar: for the default emission.
        topology: "ergodic" | "left-to-right" | "bakis" | ``[K, K]`` bool mask; self-loops are
            always removed (a state's stay is its duration).
        max_skip: forward jump of "bakis".
        right_censored: the last segment of a sequence may be cut by the sequence end (scored
            with ``P(D >= d)`` instead of ``p(d)``). Use for recordings that stop mid-state.
        start_pseudocount, trans_pseudocount: Dirichlet pseudo-counts on allowed entries in the
            M-step (0 = maximum likelihood).
        duration_kwargs: extra arguments for the duration class (e.g. ``pseudocount``).
        init: "auto" (k-means for ergodic/custom, uniform segmentation for chains), "kmeans",
            "uniform" or "none".
        dtype: float32 (default) or float64.

    Inputs, parameters, device/dtype, the impossible-sequence policy and gradients are those
    of :class:`~hmm_engine.models.base.BaseHMM`: ``model(x, lengths)`` is the differentiable
    log-likelihood (analytic gradient through :func:`~hmm_engine.inference.hsmm.hsmm_log_likelihood`;
    the duration log-pmf gets a gradient too when its parameters require one).
    """

    _start_name = "log_startprob_"
    _trans_name = "log_transmat_"
    _forbidden_message = (
        "puts probability on moves the topology forbids (self-loops are not allowed in a "
        "semi-Markov model: durations model the stay)"
    )

    def __init__(
        self,
        num_states: int,
        obs_dim: Optional[int] = None,
        max_duration: int = 20,
        duration: Union[str, DurationDistribution] = "poisson",
        min_duration: int = 1,
        emission: Optional[nn.Module] = None,
        covariance_type: str = "diag",
        num_mixtures: int = 1,
        topology: Topology = "ergodic",
        max_skip: int = 2,
        right_censored: bool = False,
        min_covar: float = 1e-3,
        start_pseudocount: float = 0.0,
        trans_pseudocount: float = 0.0,
        duration_kwargs: Optional[dict] = None,
        init: str = "auto",
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        K = int(num_states)
        if K < 1:
            raise InvalidParameterError(f"num_states must be >= 1, got {num_states}")
        if int(min_duration) < 1:
            raise InvalidParameterError(f"min_duration must be >= 1, got {min_duration}")
        if int(max_duration) < int(min_duration):
            raise InvalidParameterError(f"max_duration ({max_duration}) must be >= min_duration ({min_duration})")
        if start_pseudocount < 0 or trans_pseudocount < 0:
            raise InvalidParameterError("pseudo-counts must be >= 0")
        if init not in ("auto", "kmeans", "uniform", "none"):
            raise InvalidParameterError(f"init must be auto, kmeans, uniform or none, got {init!r}")
        if emission is None:
            if obs_dim is None:
                raise InvalidParameterError("give obs_dim (or an emission module)")
            if int(num_mixtures) > 1:
                emission = MixtureGaussianEmission(K, obs_dim, num_mixtures, covariance_type, min_covar, dtype=dtype)
            else:
                emission = GaussianEmission(K, obs_dim, covariance_type, min_covar, dtype=dtype)
        if int(getattr(emission, "num_states", -1)) != K:
            raise InvalidParameterError(f"emission has {getattr(emission, 'num_states', '?')} states, expected {K}")
        params = list(emission.parameters())
        dtype = params[0].dtype if params else dtype
        self.emission = emission
        self.num_states = K
        self.obs_dim = int(getattr(emission, "obs_dim", obs_dim or 1))
        self.max_duration, self.min_duration = int(max_duration), int(min_duration)
        self.topology = topology if isinstance(topology, str) else "custom"
        self.max_skip = int(max_skip)
        self.right_censored = bool(right_censored)
        self.start_pseudocount, self.trans_pseudocount = float(start_pseudocount), float(trans_pseudocount)
        self.init = init
        if isinstance(duration, DurationDistribution):
            if (duration.num_states, duration.max_duration, duration.min_duration) != (K, self.max_duration, self.min_duration):
                raise InvalidParameterError(
                    "duration module must match num_states, max_duration and min_duration of the model"
                )
            self.duration = duration
        else:
            self.duration = make_duration(duration, K, self.max_duration, self.min_duration, dtype=dtype, **(duration_kwargs or {}))
        self.duration_kwargs = dict(duration_kwargs or {})

        eye = torch.eye(K, dtype=torch.bool)
        if not isinstance(topology, str):
            # A semi-Markov mask may leave a final state without exits; the shared validator
            # insists on one, so validate with the (ignored) self-loops added.
            topology = torch.as_tensor(topology).bool().cpu() | eye
        mask = transition_mask(topology, K, max_skip) & ~eye
        self.register_buffer("transition_mask", mask)
        self.register_buffer("start_mask", start_mask(topology, K))
        # Parameters (log-probabilities, normalised by a masked log-softmax): EM writes them,
        # gradient training moves them. Names kept from earlier files.
        self.log_startprob_ = nn.Parameter(torch.zeros(K, dtype=dtype))
        self.log_transmat_ = nn.Parameter(torch.zeros(K, K, dtype=dtype))
        self._reset_chain()

    # ------------------------------------------------------------------ parameters
    def _uniform_transmat(self) -> Tensor:
        mask = self.transition_mask.to(torch.float64)
        return mask / mask.sum(-1, keepdim=True).clamp_min(1.0)

    def _reset_chain(self) -> None:
        with torch.no_grad():
            start = self.start_mask.to(torch.float64)
            self.log_startprob_.copy_((start / start.sum()).log())
            self.log_transmat_.copy_(self._uniform_transmat().log())

    @property
    def durations(self) -> Tensor:
        """``[K, Dmax]`` duration probabilities, column ``d - 1`` for ``d`` frames."""
        return self.duration.pmf().detach()

    @property
    def mean_durations(self) -> Tensor:
        """``[K]`` expected frames per visit."""
        return self.duration.mean().detach()

    means = property(lambda self: self.emission.means, lambda self, v: setattr(self.emission, "means", v), doc="``[K, D]``")
    covars = property(lambda self: self.emission.covars, lambda self, v: setattr(self.emission, "covars", v), doc="hmmlearn shapes")

    def num_free_parameters(self) -> int:
        """Start (allowed - 1) + each transition row (allowed - 1, if any) + durations + emissions."""
        start = int(self.start_mask.sum()) - 1
        per_row = self.transition_mask.sum(-1)
        trans = int((per_row - 1).clamp_min(0).sum())
        return start + trans + int(self.duration.num_free_parameters()) + int(self.emission.num_free_parameters())

    def _threads(self):
        """Single intra-op thread on CPU: this model's work is many small kernels, for which
        thread hand-offs cost more than they save (measured 3-10x on 2 cores)."""
        return single_thread() if self.device.type == "cpu" else contextlib.nullcontext()

    def _params(self):
        """``(log_startprob [K], log_transmat [K, K], log_durations [K, Dmax])``, differentiable."""
        return self.log_startprob(), self.log_transmat(), self.duration.log_pmf()

    def _impossible_message(self, bad: List[int], lengths: Tensor) -> str:
        short = [b for b in bad if int(lengths[b]) < self.min_duration]
        return (
            f"sequences {bad} (lengths {lengths[bad].tolist()}) have zero probability under the model: "
            + (f"sequences {short} are shorter than min_duration={self.min_duration} frames; " if short else "")
            + f"with durations {self.min_duration}..{self.max_duration} frames and the "
            f"'{self.topology}' topology they cannot be segmented"
            + ("" if self.right_censored else " (right_censored=True allows a cut last segment)")
        )

    # ------------------------------------------------------------------ inference (prepared inputs)
    def _log_likelihood(self, log_obs: Tensor, lengths: Tensor) -> Tensor:
        return hsmm.hsmm_log_likelihood(*self._params(), log_obs, lengths, self.right_censored)

    def _posteriors(self, log_obs: Tensor, lengths: Tensor):
        res = hsmm.hsmm_forward_backward(*self._params(), log_obs, lengths, self.right_censored)
        return res.posteriors, res.log_likelihood

    def _viterbi(self, log_obs: Tensor, lengths: Tensor) -> HSMMViterbiResult:
        return hsmm.hsmm_viterbi(*self._params(), log_obs, lengths, self.right_censored)

    @cpu_single_thread
    def viterbi_segments(self, x: ArrayLike, lengths: Optional[ArrayLike] = None) -> List[List[StateSegment]]:
        """Best segmentation of each sequence: lists of ``StateSegment(state, start, end)``
        in frames, end exclusive."""
        return self._decode(x, lengths).segments

    @cpu_single_thread
    def decode(self, x: ArrayLike, lengths: Optional[ArrayLike] = None) -> HSMMViterbiResult:
        """:class:`~hmm_engine.inference.results.HSMMViterbiResult` ``(path [B, T], score [B],
        segments)`` in one pass."""
        return self._decode(x, lengths)

    def stream(self, lag: Optional[int] = None):
        """Online decoding over (state, frames so far): see :mod:`hmm_engine.inference.streaming`
        and :func:`~hmm_engine.inference.streaming.hsmm_expanded_chain`."""
        from .stream import stream_model

        return stream_model(self, lag)

    def sample(
        self, num_sequences: int = 1, length: int = 100, seed: Optional[int] = None
    ) -> Tuple[Tensor, Tensor]:
        """Draw ``(observations [N, L, ...], states [N, L])`` of exactly ``length`` frames.

        Segmentations come from the model conditioned on the length (see
        :func:`~hmm_engine.inference.hsmm.hsmm_sample`); use :meth:`sample_segments` for them.
        """
        obs, states, _ = self.sample_segments(num_sequences, length, seed)
        return obs, states

    def sample_segments(self, num_sequences: int = 1, length: int = 100, seed: Optional[int] = None):
        """Like :meth:`sample`, also returning the segment lists."""
        if int(num_sequences) < 1 or int(length) < 1:
            raise InvalidInputError("num_sequences and length must be >= 1")
        gen = self._generator(seed)
        with torch.no_grad():
            log_start, log_trans, log_dur = (p.detach().cpu().to(torch.float64) for p in self._params())
            drawn = hsmm.hsmm_sample(
                log_start, log_trans, log_dur, [int(length)] * int(num_sequences),
                right_censored=self.right_censored, generator=gen,
            )
            states = drawn.states.to(self.device)
            obs = self.emission.sample(states.reshape(-1), gen)
        return obs.reshape(int(num_sequences), int(length), *obs.shape[1:]), states, drawn.segments

    # ------------------------------------------------------------------ EM pieces
    def _duration_histogram(self, labels: Tensor, lengths: Tensor) -> Tensor:
        """``[K, Dmax]`` float64 counts of the run lengths of per-frame labels ``[B, T]``,
        clipped into ``[min_duration, max_duration]``."""
        counts = torch.zeros(self.num_states, self.max_duration, dtype=torch.float64)
        labels, lengths = labels.cpu(), lengths.cpu()
        for b in range(labels.shape[0]):
            cut = label_runs(labels[b, : int(lengths[b])])
            states = torch.tensor([k for k, _, _ in cut], dtype=torch.long)
            runs = torch.tensor([stop - first for _, first, stop in cut]).clamp(self.min_duration, self.max_duration) - 1
            counts.index_put_((states, runs), torch.ones(runs.shape[0], dtype=torch.float64), accumulate=True)
        return counts.to(self.device)

    def _init_durations(self, histogram: Tensor) -> None:
        """Fit the durations to a run-length histogram blended 50/50 with a uniform one, so
        that a poor initial labelling does not rule any duration out."""
        support = (torch.arange(1, self.max_duration + 1, device=histogram.device) >= self.min_duration).to(torch.float64)
        total = histogram.sum(-1, keepdim=True)
        total = torch.where(total > 0, total, torch.ones_like(total))
        blended = histogram + total * support / support.sum()
        self.duration.m_step(blended)

    def initial_groups(self, x: Tensor, lengths: Tensor) -> Optional[Tensor]:
        """Per-frame groups ``[N]`` of a uniform segmentation (chains), or None (k-means)."""
        groups = self._uniform_labels(x, lengths)
        if groups is None:
            return None
        _, mask = real_frames(x, lengths)
        return groups[mask]

    def _uniform_labels(self, x: Tensor, lengths: Tensor) -> Optional[Tensor]:
        mode = self.init
        if mode == "auto":
            mode = "kmeans" if self.topology in ("ergodic", "custom") else "uniform"
        if mode != "uniform":
            return None
        t = torch.arange(x.shape[1], device=x.device, dtype=torch.float64)
        return (t[None, :] * self.num_states / lengths[:, None].double()).floor().long().clamp_max(self.num_states - 1)

    def initial_stats(self, x: Tensor, lengths: Tensor) -> Stats:
        """Summable statistics of the uniform segmentation (emission groups + run lengths)."""
        labels = self._uniform_labels(x, lengths)
        if labels is None:
            raise InvalidInputError("initial_stats needs init='uniform' (or a chain topology with init='auto')")
        frames, mask = real_frames(x, lengths)
        if frames.shape[0] < self.num_states:
            raise InvalidInputError(f"more states ({self.num_states}) than frames ({frames.shape[0]})")
        weights = torch.nn.functional.one_hot(labels[mask], self.num_states).to(frames.dtype)
        stats = self.emission.grouped_stats(frames, weights)
        stats["init_durations"] = self._duration_histogram(labels, lengths)
        return stats

    def initialize_from_stats(self, stats: Stats, generator: Optional[torch.Generator] = None) -> None:
        emission_stats = {k: v for k, v in stats.items() if k != "init_durations"}
        self.emission.initialize_from_stats(emission_stats, generator)
        self._reset_chain()
        self._init_durations(stats["init_durations"])

    def initialize(self, x: Tensor, lengths: Tensor, generator: torch.Generator) -> None:
        """Data-driven start: emissions by k-means (or a uniform segmentation for chains),
        uniform start/transition probabilities over allowed moves, and durations fitted to the
        run lengths of the initial labelling."""
        if self.init == "none":
            return
        with self._threads():
            self._initialize(x, lengths, generator)

    def _initialize(self, x: Tensor, lengths: Tensor, generator: torch.Generator) -> None:
        if self._uniform_labels(x, lengths) is not None:
            self.initialize_from_stats(self.initial_stats(x, lengths), generator)
            return
        frames, mask = real_frames(x, lengths)
        if frames.shape[0] < self.num_states:
            raise InvalidInputError(f"more states ({self.num_states}) than frames ({frames.shape[0]})")
        self.emission.initialize(frames, generator, None)
        self._reset_chain()
        with torch.no_grad():
            labels = self.emission_log_likelihood(x).argmax(-1)
        self._init_durations(self._duration_histogram(labels, lengths))

    def accumulate(self, x: Tensor, lengths: Tensor) -> Stats:
        """E-step on a prepared batch: summable statistics.

        Keys: ``start [K]``, ``trans [K, K]``, ``durations [K, Dmax]`` (expected segment counts;
        censored last segments imputed), the emission's keys, ``log_likelihood`` and
        ``num_frames`` (0-d), all float64 except the emission's own.
        """
        with torch.no_grad(), self._threads():
            res = hsmm.hsmm_forward_backward(*self._params(), self.emission_log_likelihood(x), lengths, self.right_censored)
            self._raise_impossible(res.log_likelihood, lengths)
            frames, mask = real_frames(x, lengths)
            stats = self.emission.accumulate(frames, res.posteriors[mask])
            stats["start"] = res.expected_starts.double()
            stats["trans"] = res.expected_transitions.double()
            stats["durations"] = res.expected_durations.double()
            stats["log_likelihood"] = res.log_likelihood.double().sum()
            stats["num_frames"] = lengths.double().sum()
        return stats

    def m_step(self, stats: Stats) -> None:
        """Maximise given summed statistics. Forbidden moves stay exactly zero; rows (and
        duration states) without counts keep their old values."""
        with self._threads():
            self.emission.m_step(stats)
            self.duration.m_step(stats["durations"])
        with torch.no_grad():
            start_mask = self.start_mask.to(torch.float64)
            start = (stats["start"] + self.start_pseudocount * start_mask) * start_mask
            if start.sum() > 1e-10:
                self.log_startprob_.copy_((start / start.sum()).log())
            mask = self.transition_mask.to(torch.float64)
            trans = (stats["trans"] + self.trans_pseudocount * mask) * mask
            rows = trans.sum(-1, keepdim=True)
            new = torch.where(rows > 1e-10, trans / rows.clamp_min(1e-10), self.transmat.to(torch.float64))
            self.log_transmat_.copy_(new.log())

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict:
        return dict(
            num_states=self.num_states,
            obs_dim=self.obs_dim,
            max_duration=self.max_duration,
            min_duration=self.min_duration,
            duration=self.duration.get_config(),
            emission=self.emission.get_config(),
            topology=self.topology if self.topology != "custom" else self.transition_mask.int().tolist(),
            max_skip=self.max_skip,
            right_censored=self.right_censored,
            start_pseudocount=self.start_pseudocount,
            trans_pseudocount=self.trans_pseudocount,
            init=self.init,
        )

    @classmethod
    def from_config(cls, config: dict) -> "SemiMarkovHMM":
        topology = config["topology"]
        if not isinstance(topology, str):
            topology = torch.tensor(topology, dtype=torch.bool)
        return cls(
            config["num_states"],
            config["obs_dim"],
            config["max_duration"],
            duration=duration_from_config(config["duration"]),
            min_duration=config["min_duration"],
            emission=emission_from_config(config["emission"], torch.float32),
            topology=topology,
            max_skip=config["max_skip"],
            right_censored=config["right_censored"],
            start_pseudocount=config["start_pseudocount"],
            trans_pseudocount=config["trans_pseudocount"],
            init=config["init"],
        )

    def extra_repr(self) -> str:
        return (
            f"num_states={self.num_states}, max_duration={self.max_duration}, min_duration={self.min_duration}, "
            f"topology={self.topology!r}, right_censored={self.right_censored}"
        )


register_model(SemiMarkovHMM.__name__, SemiMarkovHMM.from_config)
