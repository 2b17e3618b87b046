"""Tied phone-state inventory: shared left-to-right phone HMMs for forced alignment.

Every phone symbol ``p`` (index ``i`` in :attr:`PhoneModels.phones`) owns ``N`` emitting
states with *tied state ids* ``i * N + j`` (``j = 0 .. N-1``). Every occurrence of a phone,
in any utterance, uses those same ids, hence the same Gaussian parameters and the same
self-loop probability: statistics of all occurrences pool into them.

An utterance's alignment HMM is the chain of its phones' states (:meth:`build_chain`). A
phone marked *optional* (e.g. a silence we added at an edge or between words) can be
skipped: the chain gets a skip arc over it with probability :attr:`skip_prob`.

Explicit durations (``duration_type``, e.g. ``"gamma"``): every speech state also owns a
duration distribution over ``1 .. max_duration`` frames (tied like the self-loops: per tied
state, or per state position for all speech phones with ``tie_transitions``), and the chain
becomes semi-Markov (:meth:`build_chain` with ``explicit=True``,
:func:`hmm_engine.inference.chain.chain_segment_forward_backward`). Silence keeps a geometric
duration from its self-loop: its length is arbitrary, up to the whole utterance.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from hmm_engine.alignment.acoustic_prior import acoustic_cues, prior_scores
from hmm_engine.alignment.phone_classes import phone_classes
from hmm_engine.durations import DURATION_TYPES, make_duration
from hmm_engine.emissions import GaussianEmission, MixtureGaussianEmission
from hmm_engine.errors import InvalidInputError, InvalidParameterError, ModelFileError
from hmm_engine.frontend.features import FeatureConfig
from hmm_engine.frontend.speech import nonspeech_stretches, speech_activity
from hmm_engine.serialization import write_atomically
from hmm_engine.inference.chain import Chain, Loop

FORMAT = "hmm_studio.phone_models"
# Shortest run of non-speech frames (10 ms) that speech phones are kept off (speech_prior):
# longer than a stop closure, shorter than the pauses the issue counts (150 ms).
NONSPEECH_MIN_FRAMES = 12
VERSION = 1
MIN_STAY, MAX_STAY = 0.05, 0.95  # keep every state able to both stay and leave
MAX_PHONE_SECONDS = 0.8  # default longest speech phone with explicit durations


class PhoneModels(nn.Module):
    """Shared phone models: ``K = len(phones) * emitting_states`` tied states.

    Args:
        phones: the phone inventory (unique symbols; sorted order is used for determinism).
        states_per_phone: N, 1 to 5 chain states per phone, left to right (a phone lasts at
            least N frames).
        emitting_states: E (1 to N, default N), distinct parameter sets per phone: chain
            state ``j`` uses tied state ``floor(j E / N)``. ``E < N`` keeps the minimum
            duration of N states with fewer parameters (for a single utterance).
        obs_dim: feature dimension D.
        num_mixtures: Gaussians per state (1 uses :class:`GaussianEmission`).
        covariance_type: "diag", "full", "spherical" or "tied".
        min_covar: variance floor (features are CMVN-normalised, so this is relative to the
            utterance variance of each dimension).
        feature_config: how features were computed (saved with the models, reused to align).
        silence: the silence symbol.
        skip_prob: probability of skipping an optional phone.
        initial_stay: self-loop probability before training.
        tie_transitions: one self-loop probability per state position (``j`` of ``N``)
            shared by all non-silence phones (one duration model for every speech phone)
            instead of one per tied state; see :meth:`transition_m_step`.
        duration_type: None (geometric durations from the self-loops, a plain HMM) or an
            explicit duration family for speech states: "gamma", "poisson", "gaussian" or
            "nonparametric" (:mod:`hmm_engine.durations`), tied like the self-loops.
        max_duration: longest visit to one speech state, in frames (default: 0.8 s per
            phone on the feature frame grid, divided among its ``states_per_phone`` states).
        class_prior: tau >= 0; with tau > 0 every M-step of single-Gaussian emissions pulls
            each state's mean towards the mean of the same state position in all phones of
            its broad phonetic class (:mod:`hmm_engine.alignment.phone_classes`), like tau
            extra frames at the class mean; see :meth:`emission_m_step`. 0 (default): plain
            maximum likelihood.
        acoustic_prior: scale >= 0 of the loudness / spectral-tilt prior by broad class
            (:mod:`hmm_engine.alignment.acoustic_prior`) added to the chain's emission scores
            by :meth:`chain_log_obs`; 0 (default) off.
        speech_prior: log-score >= 0 a speech phone pays per frame inside a long stretch of
            the clip's own noise floor (:meth:`nonspeech_frames`), added by
            :meth:`chain_log_obs`; silence pays nothing there. 0 (default) off.
    """

    def __init__(
        self,
        phones: Sequence[str],
        states_per_phone: int = 3,
        obs_dim: int = 39,
        num_mixtures: int = 1,
        covariance_type: str = "diag",
        min_covar: float = 0.01,
        feature_config: FeatureConfig | None = None,
        silence: str = "sil",
        skip_prob: float = 0.5,
        initial_stay: float = 0.6,
        emitting_states: int | None = None,
        context_states: dict[str, int] | None = None,
        tie_transitions: bool = False,
        duration_type: str | None = None,
        max_duration: int | None = None,
        class_prior: float = 0.0,
        acoustic_prior: float = 0.0,
        speech_prior: float = 0.0,
    ):
        super().__init__()
        phones = sorted(set(phones))
        if not phones:
            raise InvalidParameterError("the phone inventory is empty")
        if not (isinstance(states_per_phone, int) and 1 <= states_per_phone <= 5):
            raise InvalidParameterError(f"states_per_phone must be an integer from 1 to 5, got {states_per_phone!r}")
        if not (isinstance(num_mixtures, int) and num_mixtures >= 1):
            raise InvalidParameterError(f"num_mixtures must be a positive integer, got {num_mixtures!r}")
        if not 0.0 < skip_prob < 1.0:
            raise InvalidParameterError(f"skip_prob must be in (0, 1), got {skip_prob!r}")
        self.phones = list(phones)
        self.phone_index = {p: i for i, p in enumerate(self.phones)}
        self.states_per_phone = int(states_per_phone)
        emitting_states = self.states_per_phone if emitting_states is None else emitting_states
        if not (isinstance(emitting_states, int) and 1 <= emitting_states <= self.states_per_phone):
            raise InvalidParameterError(
                f"emitting_states must be an integer from 1 to states_per_phone={states_per_phone}, got {emitting_states!r}")
        self.emitting_states = int(emitting_states)
        # "p<l" (first state of p after l) / "p>r" (last state of p before r) -> tied id >= base K.
        self.context_states = dict(context_states or {})
        self.obs_dim = int(obs_dim)
        self.covariance_type = covariance_type
        self.min_covar = float(min_covar)
        self.feature_config = feature_config or FeatureConfig()
        self.silence = silence
        self.skip_prob = float(skip_prob)
        self.tie_transitions = bool(tie_transitions)
        self.num_mixtures = int(num_mixtures)
        self.emission = self._make_emission(self.num_mixtures)
        stay = min(max(initial_stay, MIN_STAY), MAX_STAY)
        self.register_buffer("log_stay", torch.full((self.num_states,), math.log(stay), dtype=torch.float64))
        if not (isinstance(class_prior, (int, float)) and math.isfinite(class_prior) and class_prior >= 0):
            raise InvalidParameterError(f"class_prior must be a finite number >= 0, got {class_prior!r}")
        self.class_prior = float(class_prior)
        if not (isinstance(acoustic_prior, (int, float)) and math.isfinite(acoustic_prior) and acoustic_prior >= 0):
            raise InvalidParameterError(f"acoustic_prior must be a finite number >= 0, got {acoustic_prior!r}")
        self.acoustic_prior = float(acoustic_prior)
        if not (isinstance(speech_prior, (int, float)) and math.isfinite(speech_prior) and speech_prior >= 0):
            raise InvalidParameterError(f"speech_prior must be a finite number >= 0, got {speech_prior!r}")
        self.speech_prior = float(speech_prior)
        self.phone_class = phone_classes(self.phones, silence)
        self.duration_type = None if duration_type is None else str(duration_type).lower()
        if self.duration_type is not None and self.duration_type not in DURATION_TYPES:
            raise InvalidParameterError(
                f"duration_type must be None or one of {sorted(DURATION_TYPES)}, got {duration_type!r}")
        if max_duration is None:
            # A phone of up to MAX_PHONE_SECONDS, shared among its states.
            frames = MAX_PHONE_SECONDS / (self.feature_config.frame_shift_ms / 1000.0)
            max_duration = max(2, int(math.ceil(frames / self.states_per_phone)))
        if not (isinstance(max_duration, int) and max_duration >= 1):
            raise InvalidParameterError(f"max_duration must be a positive integer (frames), got {max_duration!r}")
        self.max_duration = int(max_duration)
        self._table = None  # see _state_table
        self.durations = None
        if self.duration_type is not None:
            groups = self._duration_groups()
            self.durations = make_duration(self.duration_type, int(groups.max()) + 1, self.max_duration,
                                           dtype=torch.float64)

    def _make_emission(self, num_mixtures: int) -> nn.Module:
        if num_mixtures == 1:
            return GaussianEmission(self.num_states, self.obs_dim, self.covariance_type, self.min_covar)
        return MixtureGaussianEmission(self.num_states, self.obs_dim, num_mixtures, self.covariance_type, self.min_covar)

    # ------------------------------------------------------------------ inventory
    @property
    def num_states(self) -> int:
        """K, the number of tied states."""
        return len(self.phones) * self.emitting_states + len(self.context_states)

    def state_ids(self, phone: str) -> list[int]:
        """The tied state ids of ``phone``'s N chain states (repeats when E < N)."""
        if phone not in self.phone_index:
            raise InvalidInputError(f"phone {phone!r} is not in the model inventory ({len(self.phones)} phones)")
        N, E = self.states_per_phone, self.emitting_states
        base = self.phone_index[phone] * E
        return [base + (j * E) // N for j in range(N)]

    def check_phones(self, phones: Sequence[str]) -> None:
        """Raise :class:`InvalidInputError` naming every phone the models do not know."""
        unknown = sorted({p for p in phones if p not in self.phone_index})
        if unknown:
            raise InvalidInputError(f"phones not in the trained inventory: {' '.join(unknown)}")

    # ------------------------------------------------------------------ chain
    def build_chain(self, phones: Sequence[str], optional: Sequence[bool] | None = None,
                    explicit: bool = False) -> tuple[Chain, np.ndarray, np.ndarray]:
        """The alignment chain of a phone sequence.

        Args:
            phones: ``[P]`` phone symbols.
            optional: ``[P]`` True for phones that may be skipped (two optional phones must
                not be adjacent, and at least one phone must be mandatory).
            explicit: the semi-Markov chain for :meth:`chain_durations`: no self-loops, and
                leaving a position is certain (only the skip choice remains).
        Returns:
            ``(chain, state_ids [S], phone_of [S])``: ``S = P * N`` positions; ``state_ids``
            the tied id of each position, ``phone_of`` its index in ``phones``.
        """
        P, N = len(phones), self.states_per_phone
        if P == 0:
            raise InvalidInputError("the phone sequence is empty: nothing to align")
        optional = [False] * P if optional is None else [bool(o) for o in optional]
        if len(optional) != P:
            raise InvalidInputError(f"got {len(optional)} optional flags for {P} phones")
        if all(optional):
            raise InvalidInputError("every phone is optional: at least one must be aligned")
        if any(optional[i] and optional[i + 1] for i in range(P - 1)):
            raise InvalidInputError("two adjacent phones are both optional")
        self.check_phones(phones)
        state_ids = np.asarray([sid for p in phones for sid in self.state_ids(p)], dtype=np.int64)
        if self.context_states and N >= 2:
            for i, p in enumerate(phones):
                if i > 0:
                    state_ids[i * N] = self.context_states.get(f"{p}<{phones[i - 1]}", state_ids[i * N])
                if i < P - 1:
                    last = i * N + N - 1
                    state_ids[last] = self.context_states.get(f"{p}>{phones[i + 1]}", state_ids[last])
        phone_of = np.repeat(np.arange(P, dtype=np.int64), N)
        S = P * N
        log_stay = self.log_stay.detach().cpu().numpy()[state_ids].astype(np.float64)
        log_leave = np.log1p(-np.exp(log_stay))
        if explicit:
            log_stay = np.full(S, -np.inf)
            log_leave = np.zeros(S)
        log_next = log_leave.copy()
        log_next[-1] = -np.inf
        src, dst, skip = [], [], []
        log_q, log_1q = math.log(self.skip_prob), math.log1p(-self.skip_prob)
        for i in range(1, P - 1):
            if optional[i]:
                s = i * N - 1  # last state of the phone before
                src.append(s)
                dst.append((i + 1) * N)  # first state of the phone after
                skip.append(log_leave[s] + log_q)
                log_next[s] = log_leave[s] + log_1q
        log_start = np.full(S, -np.inf)
        log_final = np.full(S, -np.inf)
        if optional[0]:
            log_start[0], log_start[N] = log_1q, log_q
        else:
            log_start[0] = 0.0
        log_final[S - 1] = 0.0
        if optional[-1]:
            log_final[S - N - 1] = 0.0
        chain = Chain.from_arrays(log_start, log_final, log_stay, log_next, src, dst, skip)
        return chain, state_ids, phone_of

    def min_frames(self, optional: Sequence[bool]) -> int:
        """Fewest frames a chain with these optional flags can explain (one per mandatory state)."""
        return sum(1 for o in optional if not o) * self.states_per_phone

    # ------------------------------------------------------------------ M-step
    def emission_m_step(self, stats: dict[str, Tensor]) -> None:
        """Emission M-step, then (``class_prior`` tau > 0, single Gaussians) class shrinkage.

        Each tied state ``k`` of phone ``p`` at position ``j`` gets
        ``mean_k = (sum_x_k + tau m_c) / (n_k + tau)``, where ``m_c`` is the pooled mean of
        position ``j`` over every phone of ``p``'s broad class (silence is a class of its
        own; phones of unknown class and states never seen keep their maximum-likelihood
        mean). On one utterance most phones occur once or twice: without the pull a phone's
        Gaussian can drift towards its neighbours' frames and the whole alignment slides;
        measured in docs/alignment-tuning.md. The covariances stay the maximum-
        likelihood ones given the statistics (an empirical-Bayes step, not exact EM).
        """
        self.emission.m_step(stats)
        if self.class_prior <= 0 or self.num_mixtures != 1 or "x" not in stats:
            return
        groups = self._class_groups()
        known = groups >= 0
        if not known.any():
            return
        n, sx = stats["n"].double().cpu(), stats["x"].double().cpu()
        G = int(groups.max()) + 1
        idx = groups.clamp_min(0)
        w = known.double()
        n_g = torch.zeros(G, dtype=torch.float64).index_add_(0, idx, n * w)
        x_g = torch.zeros(G, sx.shape[1], dtype=torch.float64).index_add_(0, idx, sx * w[:, None])
        class_mean = x_g / n_g.clamp_min(1e-10)[:, None]
        tau = self.class_prior
        shrunk = (sx + tau * class_mean[idx]) / (n + tau)[:, None]
        use = known & (n > 1e-10) & (n_g[idx] > 1e-10)
        with torch.no_grad():
            means = self.emission.means.double().cpu()
            means[use] = shrunk[use]
            self.emission.means = means.to(self.emission.means_param.dtype).to(self.log_stay.device)

    def _state_table(self) -> tuple[list[str], list[int]]:
        """``(phone [K], position [K])`` of every tied state: its phone symbol and its index
        among the phone's E distinct states (a context state takes the position of the
        state it copies). Cached; :meth:`add_context_states` clears the cache."""
        if self._table is None:
            E = self.emitting_states
            phones = [p for p in self.phones for _ in range(E)]
            positions = [j for _ in self.phones for j in range(E)]
            for key, _ in sorted(self.context_states.items(), key=lambda kv: kv[1]):
                side = "<" if "<" in key else ">"
                phones.append(key.split(side)[0])
                positions.append(0 if side == "<" else E - 1)
            self._table = (phones, positions)
        return self._table

    def _class_groups(self) -> Tensor:
        """``[K]`` index of (broad class, state position) per tied state; -1 for unknown class."""
        names: dict[tuple[str, int], int] = {}
        out = []
        for phone, position in zip(*self._state_table()):
            cls = self.phone_class.get(phone)
            out.append(-1 if cls is None else names.setdefault((cls, position), len(names)))
        return torch.as_tensor(out, dtype=torch.long)

    # ------------------------------------------------------------------ explicit durations
    def _duration_groups(self) -> Tensor:
        """``[K]`` duration-distribution index of each tied state (context states share their
        source state's); silence states have a group too, unused (they stay geometric)."""
        if self.tie_transitions:
            return self._transition_groups()
        E = self.emitting_states
        return torch.as_tensor([self.phone_index[p] * E + j for p, j in zip(*self._state_table())], dtype=torch.long)

    def _silence_mask(self, state_ids: np.ndarray) -> np.ndarray:
        phones = self._state_table()[0]
        return np.array([phones[k] == self.silence for k in np.asarray(state_ids)], dtype=bool)

    def chain_durations(self, state_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Durations of a chain's positions, for
        :func:`~hmm_engine.inference.chain.chain_segment_forward_backward`.

        Returns ``(log_durations [S, max_duration], log_geometric [S])``: speech states use
        their explicit distribution; silence states are geometric (their self-loop, finite
        in ``log_geometric``, NaN elsewhere), so a pause may last any number of frames.
        """
        if self.durations is None:
            raise InvalidParameterError("these phone models have no explicit durations (duration_type=None)")
        silence = self._silence_mask(state_ids)
        with torch.no_grad():
            pmf = self.durations.log_pmf().detach().to("cpu", torch.float64).numpy()
        groups = self._duration_groups().numpy()[state_ids]
        log_dur = pmf[groups]
        log_geo = np.where(silence, self.log_stay.detach().cpu().numpy()[state_ids].astype(np.float64), np.nan)
        return log_dur, log_geo

    def duration_stats(self, state_ids: np.ndarray, duration_count: np.ndarray, stay_count: np.ndarray,
                       leave_count: np.ndarray) -> dict[str, Tensor]:
        """Pool a chain's expected visit lengths onto the models.

        Args:
            state_ids: ``[S]`` tied state of each chain position.
            duration_count: ``[S, Dmax]`` expected visits of each length (speech positions).
            stay_count, leave_count: ``[S]`` expected frames that continue a visit and
                expected visits (every position, silence included).
        Returns:
            ``dur_count`` ``[G, max_duration]`` (speech positions pooled by duration group)
            and ``trans_stay`` / ``trans_leave`` ``[K]`` (train the silence self-loops).
        """
        K = self.num_states
        stay_k = np.bincount(state_ids, weights=stay_count, minlength=K)
        leave_k = np.bincount(state_ids, weights=leave_count, minlength=K)
        groups = self._duration_groups().numpy()
        counts = np.zeros((int(groups.max()) + 1, self.max_duration))
        speech = ~self._silence_mask(state_ids)
        width = min(self.max_duration, duration_count.shape[1])
        np.add.at(counts[:, :width], groups[state_ids[speech]], duration_count[speech, :width])
        return {"dur_count": torch.from_numpy(counts), "trans_stay": torch.from_numpy(stay_k),
                "trans_leave": torch.from_numpy(leave_k)}

    def duration_m_step(self, stats: dict[str, Tensor]) -> None:
        """Explicit durations from pooled ``dur_count`` (groups never seen keep theirs), and
        the self-loops (silence's durations) from ``trans_stay`` / ``trans_leave``."""
        if self.durations is None:
            raise InvalidParameterError("these phone models have no explicit durations (duration_type=None)")
        self.durations.m_step(stats["dur_count"].double().cpu())
        self.transition_m_step(stats)

    # ------------------------------------------------------------------ scores
    def log_likelihood(self, x: Tensor, states: Tensor | np.ndarray | None = None) -> Tensor:
        """``x [T, D] -> [T, K]`` log p(x_t | tied state k), or ``[T, S]`` for ``states [S]``.

        With ``states`` (an utterance's chain) only its distinct states are scored: an
        utterance uses a few dozen of the K states, and scoring all K * M Gaussians per frame
        dominated alignment time. Diagonal covariances are scored here in float64 (same
        numbers as ``emission.log_likelihood``, tested); other types go through the emission.
        """
        if states is None:
            return self.emission.log_likelihood(x)
        states = torch.as_tensor(states, device=x.device).long()
        if self.covariance_type != "diag":
            return self.emission.log_likelihood(x)[:, states]
        unique, inverse = torch.unique(states, return_inverse=True)
        D = self.obs_dim
        with torch.no_grad():
            if self.num_mixtures == 1:
                mu = self.emission.means[unique].double().unsqueeze(1)  # [U, 1, D]
                var = self.emission.covars[unique].double().unsqueeze(1)
                log_w = torch.zeros(mu.shape[:2], dtype=torch.float64, device=x.device)
            else:
                mu = self.emission.means[unique].double()  # [U, M, D]
                var = self.emission.covars[unique].double()
                log_w = self.emission.weights[unique].double().clamp_min(1e-300).log()
            U, M = mu.shape[:2]
            mu, var = mu.reshape(U * M, D), var.reshape(U * M, D)
            xd = x.double()
            centre = mu.mean(0)  # keeps the expanded quadratic form well conditioned
            xd, mu = xd - centre, mu - centre
            prec = 1.0 / var
            quad = (xd * xd) @ prec.T - 2.0 * xd @ (mu * prec).T + (mu * mu * prec).sum(-1)
            comp = -0.5 * (D * math.log(2 * math.pi) + var.log().sum(-1) + quad) + log_w.reshape(-1)
            scores = comp.reshape(-1, U, M)
            scores = scores[..., 0] if M == 1 else torch.logsumexp(scores, dim=-1)
        return scores[:, inverse]

    def phone_loop(self) -> tuple[Loop, np.ndarray]:
        """A free phone loop (:class:`~hmm_engine.inference.chain.Loop`): every phone's states
        left to right with their self-loops, and from each phone's last state into any phone
        with equal probability. Returns ``(loop, state_ids [S])``, the tied state of each of the
        ``S = P * states_per_phone`` positions (scores: :meth:`chain_log_obs` with them). It is
        what the audio scores with no transcript, the yardstick of
        :func:`~hmm_engine.alignment.analysis.transcript_fit`."""
        state_ids = np.array([k for phone in self.phones for k in self.state_ids(phone)])
        log_stay = self.log_stay.detach().cpu().numpy()[state_ids].astype(np.float64)
        return Loop.from_units([self.states_per_phone] * len(self.phones), log_stay), state_ids

    def chain_log_obs(self, x: Tensor, state_ids: np.ndarray, exact: bool = True) -> Tensor:
        """``[T, S]`` scores of a chain's positions: :meth:`log_likelihood` plus, with
        ``acoustic_prior > 0``, the loudness / tilt prior of each position's broad class
        (computed from ``x`` with the models' ``feature_config``). ``exact=False`` scores every
        tied state with the emission module in its own precision (float32) and gathers the
        positions: about 2.5x faster for many positions (a phone loop), good for diagnostics."""
        if exact:
            scores = self.log_likelihood(x, state_ids)
        else:
            scores = self.emission.log_likelihood(x).detach()[:, torch.as_tensor(state_ids, device=x.device).long()]
        phones = self._state_table()[0]
        if self.speech_prior > 0:
            # Non-speech as a model: a speech phone over a long stretch of the clip's own noise
            # floor pays speech_prior per frame (hmm_engine.frontend.speech); silence does not.
            stretches = self.nonspeech_frames(x)
            if stretches.any():
                speech = np.array([phones[k] != self.silence for k in np.asarray(state_ids)])
                penalty = -self.speech_prior * np.outer(stretches, speech)
                scores = scores + torch.from_numpy(penalty).to(device=scores.device, dtype=scores.dtype)
        if self.acoustic_prior <= 0:
            return scores
        cues = acoustic_cues(x, self.feature_config)
        if cues is None:
            return scores
        classes = [self.phone_class.get(phones[k]) for k in np.asarray(state_ids)]
        prior = prior_scores(cues, classes, self.acoustic_prior)
        return scores + torch.from_numpy(prior).to(device=scores.device, dtype=scores.dtype)

    def nonspeech_frames(self, x: Tensor) -> np.ndarray:
        """``[T]`` bool: frames of ``x`` in long stretches that look like the clip's own noise
        floor (:func:`hmm_engine.frontend.speech.nonspeech_stretches`)."""
        activity = speech_activity(x.detach().to("cpu", torch.float64).numpy(), self.feature_config)
        return nonspeech_stretches(activity, NONSPEECH_MIN_FRAMES)

    def transition_stats(self, state_ids: np.ndarray, stay_count: np.ndarray, next_count: np.ndarray,
                         skip_src: np.ndarray, skip_count: np.ndarray) -> dict[str, Tensor]:
        """Chain transition counts pooled onto tied states: ``trans_stay``/``trans_leave`` ``[K]``."""
        K = self.num_states
        leave = next_count.copy()
        np.add.at(leave, skip_src, skip_count)
        stay_k = np.bincount(state_ids, weights=stay_count, minlength=K)
        leave_k = np.bincount(state_ids, weights=leave, minlength=K)
        return {"trans_stay": torch.from_numpy(stay_k), "trans_leave": torch.from_numpy(leave_k)}

    def transition_m_step(self, stats: dict[str, Tensor]) -> None:
        """Self-loop probabilities from pooled counts; states never visited keep theirs.

        With ``tie_transitions`` the counts of every non-silence state at the same position
        ``j`` (context states included, by the position of the state they copy) are summed
        first, so all speech phones share one duration model: on a single utterance, where
        most phones occur once, a per-phone self-loop lets a phone shrink to a frame or
        swallow its neighbours' frames. Still an exact (constrained) M-step.
        """
        stay, leave = stats["trans_stay"].double().cpu(), stats["trans_leave"].double().cpu()
        if self.tie_transitions:
            groups = self._transition_groups()
            stay = torch.zeros(int(groups.max()) + 1, dtype=torch.float64).index_add_(0, groups, stay)[groups]
            leave = torch.zeros(int(groups.max()) + 1, dtype=torch.float64).index_add_(0, groups, leave)[groups]
        total = stay + leave
        seen = total > 1e-8
        new = (stay / total.clamp_min(1e-8)).clamp(MIN_STAY, MAX_STAY).log()
        with torch.no_grad():
            self.log_stay.copy_(torch.where(seen, new, self.log_stay.cpu()).to(self.log_stay.device))

    def _transition_groups(self) -> Tensor:
        """``[K]`` group of each tied state for tied self-loops: one per state position for
        speech phones; silence states keep their own (context states share their source's)."""
        E = self.emitting_states
        groups = [E + self.phone_index[p] * E + j if p == self.silence else j for p, j in zip(*self._state_table())]
        return torch.as_tensor(groups, dtype=torch.long)

    # ------------------------------------------------------------------ mixtures
    def split_mixtures(self, num_mixtures: int, perturb: float = 0.2, occupancy: Tensor | None = None,
                       min_frames_per_gaussian: float = 0.0) -> None:
        """Grow every state's mixture to ``num_mixtures`` Gaussians (diag covariances).

        HTK-style splitting: the heaviest component is copied, the two copies' means are
        moved ``+-perturb`` standard deviations apart and its weight is halved; repeated
        until each state has ``num_mixtures`` components.

        With ``occupancy`` (``[K]`` frames per state, e.g. the last E-step's) and
        ``min_frames_per_gaussian`` > 0, a state only splits while it keeps at least that many
        frames per active Gaussian; its other components are zero-weight copies that never
        score or train (a rare phone keeps fewer, better-estimated Gaussians).
        """
        if self.covariance_type != "diag":
            raise InvalidParameterError("mixture splitting is implemented for diagonal covariances")
        if num_mixtures <= self.num_mixtures:
            return
        K, D, M = self.num_states, self.obs_dim, self.num_mixtures
        with torch.no_grad():
            if M == 1:
                means = self.emission.means.double().unsqueeze(1)
                var = self.emission.covars.double().unsqueeze(1)
                weights = torch.ones(K, 1, dtype=torch.float64, device=means.device)
            else:
                means = self.emission.means.double()
                var = self.emission.covars.double()
                weights = self.emission.weights.double()
            rows = torch.arange(K, device=means.device)
            allowed = torch.full((K,), num_mixtures, device=means.device)
            if occupancy is not None and min_frames_per_gaussian > 0:
                frames = occupancy.to(device=means.device, dtype=torch.float64).reshape(K)
                allowed = (frames / min_frames_per_gaussian).floor().clamp(1, num_mixtures)
            while means.shape[1] < num_mixtures:
                heavy = weights.argmax(1)  # [K]
                grow = (weights > 0).sum(1) < allowed  # [K]: states that may split once more
                m, v = means[rows, heavy], var[rows, heavy]
                w = torch.where(grow, weights[rows, heavy] / 2, torch.zeros_like(weights[:, 0]))
                offset = perturb * v.sqrt() * grow.unsqueeze(1)
                means[rows, heavy] = m + offset
                weights[rows, heavy] = torch.where(grow, w, weights[rows, heavy])
                means = torch.cat([means, (m - offset).unsqueeze(1)], 1)
                var = torch.cat([var, v.unsqueeze(1)], 1)
                weights = torch.cat([weights, w.unsqueeze(1)], 1)
            emission = MixtureGaussianEmission(K, D, num_mixtures, "diag", self.min_covar).to(self.log_stay.device)
            emission.means = means
            emission.covars = var
            emission.weights = weights
        self.emission = emission
        self.num_mixtures = num_mixtures

    # ------------------------------------------------------------------ context states
    def context_keys(self, phones: Sequence[str]) -> list[str]:
        """Context keys a phone sequence would use: ``"p<l"`` and ``"p>r"`` per neighbour pair."""
        keys = []
        for i in range(len(phones) - 1):
            keys.append(f"{phones[i + 1]}<{phones[i]}")
            keys.append(f"{phones[i]}>{phones[i + 1]}")
        return keys

    def add_context_states(self, keys: Sequence[str]) -> None:
        """Give each ``"p<l"`` / ``"p>r"`` key its own copy of p's first / last state.

        The copy starts with the parameters (Gaussians, self-loop) of the monophone state it
        replaces in that context; EM then specialises it. Needs ``states_per_phone >= 2``.
        """
        if self.states_per_phone < 2:
            raise InvalidParameterError("context states need states_per_phone >= 2")
        if self.covariance_type not in ("diag", "spherical", "full"):
            raise InvalidParameterError("context states need per-state covariances (not 'tied')")
        new = [k for k in dict.fromkeys(keys) if k not in self.context_states]
        if not new:
            return
        sources = []
        for key in new:
            side = "<" if "<" in key else ">"
            phone = key.split(side)[0]
            ids = self.state_ids(phone)
            sources.append(ids[0] if side == "<" else ids[-1])
        src = torch.as_tensor(sources, device=self.log_stay.device)
        K, M = self.num_states, self.num_mixtures
        with torch.no_grad():
            means = torch.cat([self.emission.means, self.emission.means[src]])
            covars = torch.cat([self.emission.covars, self.emission.covars[src]])
            if M > 1:
                weights = torch.cat([self.emission.weights, self.emission.weights[src]])
            log_stay = torch.cat([self.log_stay, self.log_stay[src]])
            for offset, key in enumerate(new):
                self.context_states[key] = K + offset
            self._table = None
            emission = self._make_emission(M).to(self.log_stay.device)
            emission.means = means
            emission.covars = covars
            if M > 1:
                emission.weights = weights
        self.emission = emission
        self.log_stay = log_stay

    # ------------------------------------------------------------------ save / load
    def get_config(self) -> dict:
        return dict(
            phones=list(self.phones), states_per_phone=self.states_per_phone, obs_dim=self.obs_dim,
            num_mixtures=self.num_mixtures, covariance_type=self.covariance_type, min_covar=self.min_covar,
            feature_config=asdict(self.feature_config), silence=self.silence, skip_prob=self.skip_prob,
            emitting_states=self.emitting_states, context_states=dict(self.context_states),
            tie_transitions=self.tie_transitions, duration_type=self.duration_type, max_duration=self.max_duration,
            class_prior=self.class_prior, acoustic_prior=self.acoustic_prior, speech_prior=self.speech_prior,
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write config + parameters to ``path`` (``torch.save`` of plain data, atomic and fsynced
        through :func:`hmm_engine.serialization.write_atomically`, like every other model)."""
        payload = {"format": FORMAT, "version": VERSION, "config": self.get_config(),
                   "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()}}
        write_atomically(payload, path)

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> "PhoneModels":
        """Read models written by :meth:`save`.

        Raises:
            ModelFileError: missing, corrupt or foreign file.
        """
        from hmm_engine.serialization import check_config_size, read_archive, require_fields

        what = f"phone-model file '{os.path.basename(os.fspath(path))}'"
        payload = read_archive(path, "phone-model file")  # bounded before torch.load allocates
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ModelFileError(f"'{os.fspath(path)}' is not an HMM Studio phone-model file")
        if payload.get("version") != VERSION:
            raise ModelFileError(f"'{os.fspath(path)}' has version {payload.get('version')}, expected {VERSION}")
        require_fields(payload, {"config": dict, "state_dict": dict}, what)
        check_config_size(payload["config"], payload["state_dict"], what)  # before the models are built
        try:
            config = dict(payload["config"])
            config["feature_config"] = FeatureConfig(**config["feature_config"])
            models = cls(**config)
            models.load_state_dict(payload["state_dict"])
        except (KeyError, TypeError, RuntimeError, ValueError) as exc:
            raise ModelFileError(f"{what} does not describe phone models ({type(exc).__name__}: {exc})") from None
        return models.to(map_location)


__all__ = ["PhoneModels", "FORMAT", "VERSION"]
