"""The generic hidden Markov model: a Markov chain over K states plus any emission module.

``HMM(emission=...)`` works with every module that maps ``x [B, T, ...]`` to
log-likelihoods ``[B, T, K]`` (see :mod:`hmm_engine.emissions`; a neural network
works too for decoding and gradient training). The Gaussian, mixture and
categorical models in :mod:`.gaussian` are thin subclasses with hmmlearn's names.
"""

from __future__ import annotations

import math
from typing import Callable, List, Optional, Tuple

import torch
from torch import Tensor, nn

from ..emissions import Stats, as_tensor, emission_class, emission_from_config
from ..errors import InvalidInputError, InvalidParameterError
from ..inference import hmm as inference
from ..inference.results import Posteriors, ViterbiResult
from ..inputs import ArrayLike, pad_sequences, prepare_inputs
from ..threads import cpu_single_thread
from ..topology import Topology, start_mask, transition_mask
from ..training import selection
from ..training.em import fit_em

__all__ = ["BaseHMM", "HMM", "masked_log_softmax", "pad_sequences", "prepare_inputs", "real_frames"]


def real_frames(x: Tensor, lengths: Tensor) -> Tuple[Tensor, Tensor]:
    """The unpadded frames ``[N, ...]`` of a batch and the ``[B, T]`` mask selecting them."""
    mask = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
    return x[mask], mask


def masked_log_softmax(logits: Tensor, mask: Tensor) -> Tensor:
    """``log_softmax`` over allowed entries (last axis); forbidden entries are exactly -inf, and
    rows with nothing allowed are all -inf. Gradients are 0 on forbidden entries and never NaN
    (a fully masked row is softmaxed as zeros, then masked, so no -inf - -inf appears)."""
    rows = mask.any(-1, keepdim=True)
    logits = logits.masked_fill(~mask, -math.inf).masked_fill(~rows, 0.0)
    return torch.log_softmax(logits, -1).masked_fill(~mask, -math.inf)


class BaseHMM(nn.Module):
    """What every hidden Markov model of the engine shares (``HMM``, ``SemiMarkovHMM``).

    - **Inputs**: :meth:`prepare` brings every accepted form (``[T, D]``, ``[B, T, D]`` with
      ``lengths``, a list, hmmlearn's concatenation) to a padded batch on the model's device
      and dtype (:func:`~hmm_engine.inputs.prepare_inputs`).
    - **Parameters**: ``start`` and ``trans`` logits (``nn.Parameter``), turned into
      ``log_startprob() [K]`` / ``log_transmat() [K, K]`` by a masked log-softmax, so that
      forbidden moves stay exactly impossible under gradient steps and EM alike.
    - **Device and dtype**: those of the start parameter; :meth:`prepare` casts inputs to them.
    - **Impossible sequences** (no state path explains them): :meth:`score` / ``forward``
      return ``-inf`` for them (their log-likelihood); anything that needs a posterior or a
      path (:meth:`forward_backward`, :meth:`viterbi_decode`, EM) raises
      :class:`~hmm_engine.errors.InvalidInputError` naming the sequences.
    - **Gradients**: ``model(x, lengths)`` (``forward``) is :meth:`score`, the log-likelihood
      ``[B]``, differentiable in every parameter with an analytic backward (posteriors,
      expected transition counts, first-frame posteriors: one more pass, ``O(B T K)``
      memory), so DDP, ``torch.utils.checkpoint`` and gradient training work as on any module.
    - **Training**: EM (:meth:`fit`) and information criteria through :mod:`hmm_engine.training`.

    Subclasses set ``_start_name`` / ``_trans_name`` (their parameter attribute names, kept for
    saved files), the ``start_mask`` / ``transition_mask`` buffers, and implement
    :meth:`_log_likelihood`, :meth:`_posteriors` and :meth:`_viterbi` on prepared inputs.
    """

    _start_name = "start_logits"
    _trans_name = "trans_logits"
    num_states: int
    emission: nn.Module

    # ------------------------------------------------------------------ device / dtype
    @property
    def dtype(self) -> torch.dtype:
        return getattr(self, self._start_name).dtype

    @property
    def device(self) -> torch.device:
        return getattr(self, self._start_name).device

    # ------------------------------------------------------------------ parameters
    def log_startprob(self) -> Tensor:
        """``[K]`` (differentiable); states the topology cannot start in are exactly -inf."""
        return masked_log_softmax(getattr(self, self._start_name), self.start_mask)

    def log_transmat(self) -> Tensor:
        """``[K, K]`` (differentiable), rows = from-state; forbidden moves are exactly -inf."""
        return masked_log_softmax(getattr(self, self._trans_name), self.transition_mask)

    @property
    def startprob(self) -> Tensor:
        """``[K]`` initial-state probabilities."""
        return self.log_startprob().detach().exp()

    @startprob.setter
    def startprob(self, value: ArrayLike) -> None:
        param = getattr(self, self._start_name)
        tol = 1e-4 if isinstance(value, Tensor) and value.dtype != torch.float64 else 1e-6
        tol = 1e-4 if isinstance(value, Tensor) and value.dtype != torch.float64 else 1e-6
        value = as_tensor(value, param).to(torch.float64)
        if value.shape != (self.num_states,):
            raise InvalidParameterError(f"startprob must be [{self.num_states}], got {tuple(value.shape)}")
        self._check_rows(value[None], self.start_mask[None].cpu(), "startprob", tol)
        with torch.no_grad():
            param.copy_(value.log())

    @property
    def transmat(self) -> Tensor:
        """``[K, K]`` transition probabilities, rows = from-state."""
        return self.log_transmat().detach().exp()

    @transmat.setter
    def transmat(self, value: ArrayLike) -> None:
        param = getattr(self, self._trans_name)
        tol = 1e-4 if isinstance(value, Tensor) and value.dtype != torch.float64 else 1e-6
        tol = 1e-4 if isinstance(value, Tensor) and value.dtype != torch.float64 else 1e-6
        value = as_tensor(value, param).to(torch.float64)
        K = self.num_states
        if value.shape != (K, K):
            raise InvalidParameterError(f"transmat must be [{K}, {K}], got {tuple(value.shape)}")
        self._check_rows(value, self.transition_mask.cpu(), "transmat", tol)
        with torch.no_grad():
            param.copy_(value.log())

    _forbidden_message = "puts probability on transitions the topology forbids"

    def _check_rows(self, value: Tensor, mask: Tensor, name: str, tol: float = 1e-5) -> None:
        """Rows must be distributions over allowed entries (rows with nothing allowed: zero)."""
        value = value.cpu()
        if not torch.isfinite(value).all() or (value < 0).any():
            raise InvalidParameterError(f"{name} must be finite and non-negative")
        if (value[~mask] != 0).any():
            raise InvalidParameterError(f"{name} {self._forbidden_message}")
        sums = value.sum(-1)
        want = mask.any(-1).to(value.dtype)
        if not torch.allclose(sums, want, atol=tol, rtol=0):
            raise InvalidParameterError(f"every row of {name} must sum to 1, got sums {sums.flatten().tolist()[:8]}")

    # ------------------------------------------------------------------ inputs
    def prepare(self, x: ArrayLike, lengths: Optional[ArrayLike] = None) -> Tuple[Tensor, Tensor, bool]:
        """See :func:`~hmm_engine.inputs.prepare_inputs`; casts to this model's dtype and device."""
        return prepare_inputs(x, lengths, getattr(self.emission, "event_dims", 1), self.dtype, self.device)

    def emission_log_likelihood(self, x: Tensor) -> Tensor:
        """``[B, T, ...] -> [B, T, K]`` (in the emission's dtype, possibly half precision:
        the recursions then accumulate in float32/float64)."""
        out = self.emission(x)
        if out.dim() != 3 or out.shape[:2] != x.shape[:2] or out.shape[-1] != self.num_states:
            raise InvalidParameterError(
                f"emission returned shape {tuple(out.shape)}, expected [{x.shape[0]}, {x.shape[1]}, {self.num_states}]"
            )
        return out

    # ------------------------------------------------------------------ the impossible-sequence policy
    def _impossible_message(self, bad: List[int], lengths: Tensor) -> str:
        return f"sequences {bad} (lengths {lengths[bad].tolist()}) have zero probability under the model"

    def _raise_impossible(self, log_lik: Tensor, lengths: Tensor) -> None:
        bad = ~torch.isfinite(log_lik)
        if bad.any():
            idx = bad.nonzero().flatten().tolist()
            raise InvalidInputError(self._impossible_message(idx, lengths.cpu()))

    # ------------------------------------------------------------------ subclass hooks
    def _log_likelihood(self, log_obs: Tensor, lengths: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _posteriors(self, log_obs: Tensor, lengths: Tensor) -> Tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def _viterbi(self, log_obs: Tensor, lengths: Tensor):  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ inference
    @cpu_single_thread
    def score(self, x: ArrayLike, lengths: Optional[ArrayLike] = None) -> Tensor:
        """Log-likelihood ``[B]`` of each sequence (``-inf`` for an impossible one).

        Differentiable w.r.t. every parameter (analytic gradient). float32 or float64 as the
        model; float32 when the model runs in half precision.
        """
        x, lengths, _ = self.prepare(x, lengths)
        return self._log_likelihood(self.emission_log_likelihood(x), lengths)

    def forward(self, x: ArrayLike, lengths: Optional[ArrayLike] = None) -> Tensor:
        """``model(x, lengths)``: the log-likelihood ``[B]``, as :meth:`score` (a module's
        forward, so DDP, checkpointing and ``torch.compile`` wrap a model like any other)."""
        return self.score(x, lengths)

    @cpu_single_thread
    def forward_backward(self, x: ArrayLike, lengths: Optional[ArrayLike] = None) -> Posteriors:
        """:class:`~hmm_engine.inference.results.Posteriors`: ``posteriors [B, T, K]`` (0 past
        each length) and ``log_likelihood [B]``. ``x`` is ``[T, D]`` or ``[B, T, D]``; the
        outputs always carry the batch dimension.

        Raises:
            InvalidInputError: a sequence the model cannot produce (it has no posterior).
        """
        x, lengths, _ = self.prepare(x, lengths)
        with torch.no_grad():
            post, ll = self._posteriors(self.emission_log_likelihood(x), lengths)
        self._raise_impossible(ll, lengths)
        return Posteriors(post, ll)

    def predict_proba(self, x: ArrayLike, lengths: Optional[ArrayLike] = None) -> Tensor:
        """hmmlearn's name for the posteriors."""
        return self.forward_backward(x, lengths).posteriors

    @cpu_single_thread
    def viterbi_decode(self, x: ArrayLike, lengths: Optional[ArrayLike] = None) -> ViterbiResult:
        """:class:`~hmm_engine.inference.results.ViterbiResult`: best paths ``[B, T]`` (int64,
        -1 past each length) and their joint log-probabilities ``[B]``.

        Raises:
            InvalidInputError: a sequence the model cannot produce (it has no path).
        """
        res = self._decode(x, lengths)
        return ViterbiResult(res.path, res.score)

    def _decode(self, x, lengths):
        x, lengths, _ = self.prepare(x, lengths)
        with torch.no_grad():
            res = self._viterbi(self.emission_log_likelihood(x), lengths)
        self._raise_impossible(res.score, lengths)
        return res

    def predict(self, x: ArrayLike, lengths: Optional[ArrayLike] = None) -> Tensor:
        """hmmlearn's name: the Viterbi paths ``[B, T]``."""
        return self.viterbi_decode(x, lengths).path

    def _generator(self, seed: Optional[int]) -> Optional[torch.Generator]:
        """A seeded generator on the model's device (draws then stay on that device)."""
        return torch.Generator(device=self.device).manual_seed(int(seed)) if seed is not None else None

    # ------------------------------------------------------------------ training
    @cpu_single_thread
    def fit(
        self,
        x: ArrayLike,
        lengths: Optional[ArrayLike] = None,
        max_iter: int = 20,
        tol: float = 1e-4,
        seed: int = 0,
        init: bool = True,
        callback: Optional[Callable[[int, float], None]] = None,
    ) -> List[float]:
        """EM (Baum-Welch); returns the total log-likelihood before each M-step.

        Stops when the gain per frame falls below ``tol`` or after ``max_iter`` iterations.
        Deterministic given ``seed``. See :func:`hmm_engine.training.em.fit_em`.
        """
        if not all(hasattr(self.emission, name) for name in ("accumulate", "m_step", "initialize")):
            raise InvalidParameterError(
                f"{type(self.emission).__name__} has no closed-form M-step (accumulate/m_step/initialize): "
                "train it with hmm_engine.fit_gradient instead"
            )
        if self.dtype not in (torch.float32, torch.float64):
            raise InvalidParameterError(
                f"EM needs float32 or float64 parameters, the model is {self.dtype}: "
                "train in float32 (model.float()) and convert after"
            )
        return fit_em(self, x, lengths, max_iter=max_iter, tol=tol, seed=seed, init=init, callback=callback)

    @cpu_single_thread
    def bic(self, x: ArrayLike, lengths: Optional[ArrayLike] = None) -> float:
        """Bayesian information criterion: -2 log L + p log N (N = frames). Lower is better."""
        return selection.bic(self, x, lengths)

    @cpu_single_thread
    def aic(self, x: ArrayLike, lengths: Optional[ArrayLike] = None) -> float:
        """Akaike information criterion: -2 log L + 2 p. Lower is better."""
        return selection.aic(self, x, lengths)


class HMM(BaseHMM):
    """Hidden Markov model with any emission module.

    Args:
        emission: an :class:`~hmm_engine.emissions.Emission` (or any module returning
            ``[B, T, K]`` log-likelihoods; EM then needs ``accumulate``/``m_step``).
        topology: "ergodic", "left-to-right", "bakis" or a ``[K, K]`` bool mask.
        max_skip: forward jump allowed by "bakis".
        startprob, transmat: optional initial values.
        start_pseudocount, trans_pseudocount: Dirichlet pseudo-counts added to the expected
            counts of each allowed start/transition entry in the M-step (0 = maximum likelihood).
        init: "auto" (k-means for ergodic, uniform segmentation along each sequence for
            chains), "kmeans", "uniform" (uniform segmentation), or "none".
    """

    def __init__(
        self,
        emission: nn.Module,
        topology: Topology = "ergodic",
        max_skip: int = 2,
        startprob: Optional[ArrayLike] = None,
        transmat: Optional[ArrayLike] = None,
        start_pseudocount: float = 0.0,
        trans_pseudocount: float = 0.0,
        init: str = "auto",
    ):
        super().__init__()
        self.emission = emission
        K = int(emission.num_states)
        self.num_states = K
        self.topology = topology if isinstance(topology, str) else "custom"
        self.max_skip = int(max_skip)
        if start_pseudocount < 0 or trans_pseudocount < 0:
            raise InvalidParameterError("pseudo-counts must be >= 0")
        if init not in ("auto", "kmeans", "uniform", "none"):
            raise InvalidParameterError(f"init must be auto, kmeans, uniform or none, got {init!r}")
        self.start_pseudocount, self.trans_pseudocount, self.init = float(start_pseudocount), float(trans_pseudocount), init
        self.register_buffer("transition_mask", transition_mask(topology, K, max_skip))
        self.register_buffer("start_mask", start_mask(topology, K))
        dtype = next(emission.parameters()).dtype if any(True for _ in emission.parameters()) else torch.float32
        self.start_logits = nn.Parameter(torch.zeros(K, dtype=dtype).masked_fill(~self.start_mask, -math.inf))
        self.trans_logits = nn.Parameter(self._default_transmat(dtype).log())
        if startprob is not None:
            self.startprob = startprob
        if transmat is not None:
            self.transmat = transmat

    def _default_transmat(self, dtype, stay: float = 0.5) -> Tensor:
        """Uniform over allowed moves for ergodic models; for chains, ``stay`` on the self-loop
        and the rest spread over the allowed forward moves."""
        mask = self.transition_mask.to(dtype)
        if self.topology == "ergodic":
            return mask / mask.sum(-1, keepdim=True)
        eye = torch.eye(self.num_states, dtype=dtype, device=mask.device) * mask
        fwd = mask - eye
        nfwd = fwd.sum(-1, keepdim=True)
        has_fwd = nfwd > 0
        rows = torch.where(has_fwd, eye * stay + fwd * (1 - stay) / nfwd.clamp_min(1), mask / mask.sum(-1, keepdim=True))
        return rows

    def num_free_parameters(self) -> int:
        """Free parameters: start (allowed - 1), each transition row (allowed - 1), emissions."""
        start = int(self.start_mask.sum()) - 1
        trans = int((self.transition_mask.sum(-1) - 1).sum())
        return start + trans + int(self.emission.num_free_parameters())

    # ------------------------------------------------------------------ inference (prepared inputs)
    def _log_likelihood(self, log_obs: Tensor, lengths: Tensor) -> Tensor:
        return inference.log_likelihood(self.log_startprob(), self.log_transmat(), log_obs, lengths)

    def _posteriors(self, log_obs: Tensor, lengths: Tensor) -> Tuple[Tensor, Tensor]:
        res = inference.forward_backward(self.log_startprob(), self.log_transmat(), log_obs, lengths)
        return res.posteriors, res.log_likelihood

    def _viterbi(self, log_obs: Tensor, lengths: Tensor):
        return inference.viterbi(self.log_startprob(), self.log_transmat(), log_obs, lengths)

    def stream(self, lag: Optional[int] = None):
        """Online decoding of one stream: ``dec.push(x)`` per ``[t, D]`` chunk gives filtered
        posteriors and newly committed Viterbi states; see :mod:`hmm_engine.inference.streaming`."""
        from .stream import stream_model

        return stream_model(self, lag)

    @cpu_single_thread
    def sample(self, num_sequences: int = 1, length: int = 100, seed: Optional[int] = None) -> Tuple[Tensor, Tensor]:
        """Draw ``(observations [N, L, ...], states [N, L])`` on the model's device."""
        gen = self._generator(seed)
        with torch.no_grad():
            states = inference.sample_states(self.startprob, self.transmat, num_sequences, length, gen)
            obs = self.emission.sample(states.reshape(-1), gen)
        return obs.reshape(num_sequences, length, *obs.shape[1:]), states

    # ------------------------------------------------------------------ EM pieces
    def initial_groups(self, x: Tensor, lengths: Tensor) -> Optional[Tensor]:
        """Per-frame state groups ``[N]`` for a uniform segmentation of each sequence
        (the flat start of chain topologies), or None for k-means."""
        mode = self.init
        if mode == "auto":
            mode = "kmeans" if self.topology in ("ergodic", "custom") else "uniform"
        if mode != "uniform":
            return None
        T = x.shape[1]
        t = torch.arange(T, device=x.device, dtype=torch.float64)
        groups = (t[None, :] * self.num_states / lengths[:, None].double()).floor().long().clamp_max(self.num_states - 1)
        _, mask = real_frames(x, lengths)
        return groups[mask]

    def initialize(self, x: Tensor, lengths: Tensor, generator: torch.Generator) -> None:
        """Data-driven start: k-means clusters (ergodic) or a uniform segmentation of every
        sequence (chains, whose self-loops then match the average frames per state)."""
        if self.init == "none":
            return
        frames, _ = real_frames(x, lengths)
        if frames.shape[0] < self.num_states:
            raise InvalidInputError(
                f"more states ({self.num_states}) than frames ({frames.shape[0]}): use fewer states or more audio"
            )
        groups = self.initial_groups(x, lengths)
        if groups is not None:
            self.initialize_from_stats(self.initial_stats(x, lengths), generator)
            return
        self.emission.initialize(frames, generator, None)
        with torch.no_grad():
            self.start_logits.copy_(torch.zeros_like(self.start_logits).masked_fill(~self.start_mask, -math.inf))
            self.trans_logits.copy_(self._default_transmat(self.dtype).log())

    def initial_stats(self, x: Tensor, lengths: Tensor) -> Stats:
        """Summable statistics of the uniform segmentation (the flat start), so that a corpus
        split over batches or processes starts exactly as it would in one piece."""
        frames, _ = real_frames(x, lengths)
        if frames.shape[0] < self.num_states:
            raise InvalidInputError(
                f"more states ({self.num_states}) than frames ({frames.shape[0]}): use fewer states or more audio"
            )
        groups = self.initial_groups(x, lengths)
        weights = torch.nn.functional.one_hot(groups, self.num_states).to(frames.dtype)
        stats = self.emission.grouped_stats(frames, weights)
        stats["num_frames"] = lengths.double().sum()
        stats["num_sequences"] = torch.tensor(float(lengths.numel()), dtype=torch.float64, device=lengths.device)
        return stats

    def initialize_from_stats(self, stats: Stats, generator: Optional[torch.Generator] = None) -> None:
        emission_stats = {k: v for k, v in stats.items() if k not in ("num_frames", "num_sequences")}
        self.emission.initialize_from_stats(emission_stats, generator)
        per_state = float(stats["num_frames"]) / float(stats["num_sequences"]) / self.num_states
        stay = min(max(1.0 - 1.0 / max(per_state, 1.0), 0.0), 0.99)
        with torch.no_grad():
            self.start_logits.copy_(torch.zeros_like(self.start_logits).masked_fill(~self.start_mask, -math.inf))
            self.trans_logits.copy_(self._default_transmat(self.dtype, stay).log())

    def accumulate(self, x: Tensor, lengths: Tensor) -> Stats:
        """E-step on a prepared batch: summable expected counts and emission statistics.

        Keys: ``start [K]``, ``trans [K, K]``, the emission's keys, ``log_likelihood`` and
        ``num_frames`` (0-d float64).
        """
        with torch.no_grad():
            log_obs = self.emission_log_likelihood(x)
            post, ll, la, lb = inference.forward_backward(self.log_startprob(), self.log_transmat(), log_obs, lengths)
            if not torch.isfinite(ll).all():
                bad = (~torch.isfinite(ll)).nonzero().flatten().tolist()
                raise InvalidInputError(
                    f"sequences {bad} have zero probability under the model (too short for the topology?)"
                )
            trans = inference.transition_counts(self.log_transmat(), log_obs, la, lb, lengths).sum(0)
            frames, mask = real_frames(x, lengths)
            stats = self.emission.accumulate(frames, post[mask])
            stats["start"] = post[:, 0].sum(0).double()
            stats["trans"] = trans.double()
            stats["log_likelihood"] = ll.double().sum()
            stats["num_frames"] = lengths.double().sum()
        return stats

    def m_step(self, stats: Stats) -> None:
        """Maximise given summed statistics; rows without counts keep their old values."""
        self.emission.m_step(stats)
        with torch.no_grad():
            start = stats["start"] + self.start_pseudocount * self.start_mask
            if start.sum() > 1e-10:
                self.start_logits.copy_((start / start.sum()).log().to(self.dtype))
            trans = (stats["trans"] + self.trans_pseudocount * self.transition_mask) * self.transition_mask
            rows = trans.sum(-1, keepdim=True)
            new = torch.where(rows > 1e-10, trans / rows.clamp_min(1e-10), self.transmat.to(trans.dtype))
            self.trans_logits.copy_(new.log().to(self.dtype))

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict:
        return dict(
            emission=emission_config(self.emission),
            topology=self.topology if self.topology != "custom" else self.transition_mask.int().tolist(),
            max_skip=self.max_skip,
            start_pseudocount=self.start_pseudocount,
            trans_pseudocount=self.trans_pseudocount,
            init=self.init,
        )

    @classmethod
    def from_config(cls, config: dict, emission=None) -> "HMM":
        """Rebuild from :meth:`get_config`. ``emission``: for a user's emission module, its
        class (rebuilt from the saved config) or an instance (used as is; its weights are
        then loaded); without it the class must have been registered with
        :func:`hmm_engine.register_emission`."""
        topology = config["topology"]
        if not isinstance(topology, str):
            topology = torch.tensor(topology, dtype=torch.bool)
        module = build_emission(config["emission"], emission)
        return cls(
            module, topology, max_skip=config["max_skip"], start_pseudocount=config["start_pseudocount"],
            trans_pseudocount=config["trans_pseudocount"], init=config["init"],
        )


_ENGINE_EMISSIONS = ("gaussian", "mixture", "categorical")


def emission_config(emission: nn.Module) -> dict:
    """An emission's config for saving: the engine's own describe themselves; a user's module
    is saved by class name, with its ``get_config()`` if it has one (plain data only)."""
    config = emission.get_config() if hasattr(emission, "get_config") else None
    if isinstance(config, dict) and config.get("type") in _ENGINE_EMISSIONS:
        return config
    cls = type(emission)
    return dict(type="custom", cls=f"{cls.__module__}.{cls.__qualname__}", num_states=int(emission.num_states), config=config)


def build_emission(config: dict, emission=None, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The emission module of a saved model (see :func:`emission_config`)."""
    if config.get("type") != "custom":
        return emission_from_config(config, dtype)
    if isinstance(emission, nn.Module):
        if int(getattr(emission, "num_states", -1)) != int(config["num_states"]):
            raise InvalidParameterError(
                f"the emission given has {getattr(emission, 'num_states', '?')} states, the file {config['num_states']}"
            )
        return emission
    cls = emission if isinstance(emission, type) else emission_class(config["cls"])
    if cls is None:
        raise InvalidParameterError(
            f"the model uses the custom emission {config['cls']}: pass it to load (emission={config['cls'].rsplit('.', 1)[-1]}) "
            "or register it with hmm_engine.register_emission"
        )
    saved = config.get("config")
    if hasattr(cls, "from_config"):
        return cls.from_config(saved)
    return cls(**saved) if isinstance(saved, dict) else cls()
