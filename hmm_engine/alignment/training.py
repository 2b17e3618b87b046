"""Training phone models: flat start, embedded Baum-Welch EM on tied states, mixture
splitting, explicit durations, and :func:`train_corpus` (the whole recipe on a corpus share).

Flat start (:func:`flat_start_stats`), then ``iterations`` of embedded EM (each utterance's
chain run forward-backward, statistics pooled on tied states, one M-step), the first ones
optionally annealed (:func:`annealing_schedule`); mixtures split after the single-Gaussian
iterations; models with explicit durations get semi-Markov iterations last
(:func:`train_explicit_durations`). Every summed statistics dict goes through ``reduce``
(:func:`hmm_engine.training.em.all_reduce_stats` under torch.distributed). Why the defaults
are what they are: docs/alignment-tuning.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import numpy as np
import torch
from torch import Tensor

from hmm_engine.alignment.distributed import gather, rank_and_world
from hmm_engine.alignment.phone_models import PhoneModels
from hmm_engine.alignment.transcripts import PreparedTranscript
from hmm_engine.errors import InvalidInputError, InvalidParameterError
from hmm_engine.frontend.features import FeatureConfig, Features
from hmm_engine.inference.chain import (
    chain_forward_backward,
    chain_segment_forward_backward,
    chain_viterbi,
    homogeneous_segmentation,
)
from hmm_engine.segments import label_runs
from hmm_engine.training.em import add_stats, all_reduce_stats

InitOption = Literal["uniform", "segmental", "global"]
# Longest run a non-silence phone may get in the segmental start (seconds).
MAX_PHONE_SECONDS = 0.5
# Strength of the segmental start's duration prior, per feature dimension (see flat_start_stats).
DURATION_WEIGHT = 0.5


def flat_start_stats(
    models: PhoneModels, x: Tensor, transcript: PreparedTranscript, init: InitOption = "uniform"
) -> dict[str, Tensor]:
    """Statistics of an initial hard segmentation of one utterance.

    ``init="uniform"`` (the classic flat start): frame t goes to chain state ``floor(t S / T)``
    over all ``S = P N`` states (optional silences included when there are enough frames,
    else only the mandatory phones).
    ``init="segmental"``: the frames are first split into P phone runs of nearly constant
    features (:func:`homogeneous_segmentation`; optional phones may get no frame, a mandatory
    phone gets at least N), then each run is cut uniformly among its phone's N states. On a
    single utterance this matters: from a uniform start, EM with ~3 frames per state stays
    stuck next to its initial segmentation.
    ``init="global"`` (HTK HCompV style): every state starts from the mean and variance of
    all frames of the utterances it occurs in; the first E-step's posteriors then follow
    the topology alone (smooth), and EM separates the states from there.

    Args:
        x: ``[T, D]`` features.
    Returns:
        Summable group statistics for ``models.emission.initialize_from_stats``.
    """
    N = models.states_per_phone
    T = x.shape[0]
    if init == "segmental":
        phones = transcript.phones
        min_len = [0 if o else N for o in transcript.optional]
        max_len = [T if (o or p == models.silence) else max(N, int(round(MAX_PHONE_SECONDS / _shift(models))))
                   for p, o in zip(phones, transcript.optional)]
        if sum(max_len) < T:
            max_len = [T] * len(phones)
        # Duration prior: speech phones near the mean speech-phone length (silences free).
        speech = [not o and p != models.silence for p, o in zip(phones, transcript.optional)]
        mean = max(float(N), 0.8 * T / max(1, sum(speech)))
        weight = [DURATION_WEIGHT * x.shape[1] / mean**2 if sp else 0.0 for sp in speech]
        bounds = homogeneous_segmentation(x, min_len, max_len, [mean] * len(phones), weight)
        groups_np = np.empty(T, np.int64)
        for i, phone in enumerate(phones):
            a, b = int(bounds[i]), int(bounds[i + 1])
            if b > a:
                ids = np.asarray(models.state_ids(phone))
                groups_np[a:b] = ids[(np.arange(b - a) * N) // (b - a)]
    elif init == "uniform":
        phones = transcript.phones
        if T < len(phones) * N:
            phones = [p for p, o in zip(transcript.phones, transcript.optional) if not o]
        _, state_ids, _ = models.build_chain(phones)
        S = state_ids.shape[0]
        groups_np = state_ids[(np.arange(T) * S) // T]
    elif init == "global":
        # HTK HCompV style: every state of the utterance starts from all of its frames.
        weights = torch.zeros(T, models.num_states, dtype=x.dtype, device=x.device)
        used = sorted({sid for p in transcript.phones for sid in models.state_ids(p)})
        weights[:, used] = 1.0
        if models.speech_prior > 0:
            # Speech edges first: silence starts from the clip's non-speech stretches, speech
            # phones from the rest (when the clip shows both).
            quiet = torch.from_numpy(models.nonspeech_frames(x)).to(x.device)
            if quiet.any() and not quiet.all():
                silence_ids = sorted(set(models.state_ids(models.silence)) & set(used)) \
                    if models.silence in models.phone_index else []
                speech_ids = [k for k in used if k not in silence_ids]
                if silence_ids:
                    weights[:, silence_ids] = quiet.to(x.dtype)[:, None]
                    weights[:, speech_ids] = (~quiet).to(x.dtype)[:, None]
        return models.emission.grouped_stats(x, weights)
    else:
        raise InvalidParameterError(f"init must be 'uniform', 'segmental' or 'global', got {init!r}")
    groups = torch.from_numpy(groups_np).to(x.device)
    weights = torch.nn.functional.one_hot(groups, models.num_states).to(x.dtype)
    return models.emission.grouped_stats(x, weights)


def _shift(models: PhoneModels) -> float:
    return models.feature_config.frame_shift_ms / 1000.0


def utterance_posteriors(
    models: PhoneModels, x: Tensor, transcript: PreparedTranscript, acoustic_scale: float = 1.0,
    explicit: bool = False,
) -> tuple[Tensor, dict[str, Tensor]]:
    """E-step of one utterance without the emission statistics.

    ``acoustic_scale`` < 1 multiplies the emission log-likelihoods in the posteriors
    (deterministic annealing: softer posteriors let EM move away from its start); the
    reported ``log_likelihood`` is then that of the scaled model. ``explicit`` runs the
    semi-Markov chain with the models' explicit durations instead of the self-loops.

    Returns:
        ``(weights [T, K] float64 tied-state posteriors, stats)`` with ``trans_stay`` /
        ``trans_leave`` ``[K]``, ``log_likelihood`` and ``num_frames`` (0-d float64), and
        with ``explicit`` also ``dur_count`` (see :meth:`PhoneModels.duration_stats`).
    """
    chain, state_ids, _ = models.build_chain(transcript.phones, transcript.optional, explicit=explicit)
    log_obs = models.chain_log_obs(x, state_ids)
    if acoustic_scale != 1.0:
        log_obs = log_obs * acoustic_scale
    if explicit:
        post = chain_segment_forward_backward(chain, *models.chain_durations(state_ids), log_obs)
        stats = models.duration_stats(state_ids, post.duration_count, post.stay_count, post.leave_count)
    else:
        post = chain_forward_backward(chain, log_obs)
        stats = models.transition_stats(state_ids, post.stay_count, post.next_count, chain.skip_src,
                                        post.skip_count)
    weights = torch.zeros(x.shape[0], models.num_states, dtype=torch.float64)
    weights.index_add_(1, torch.from_numpy(state_ids), torch.from_numpy(post.gamma))
    stats["log_likelihood"] = torch.tensor(post.log_likelihood, dtype=torch.float64)
    stats["num_frames"] = torch.tensor(float(x.shape[0]), dtype=torch.float64)
    return weights, stats


def utterance_stats(
    models: PhoneModels, x: Tensor, transcript: PreparedTranscript, acoustic_scale: float = 1.0,
    explicit: bool = False,
) -> dict[str, Tensor]:
    """E-step on one utterance: emission + transition statistics on tied states.

    Returns a summable dict: the emission's keys (``n``, ``x``, ``xx``, ...),
    ``trans_stay``/``trans_leave`` ``[K]``, ``log_likelihood`` and ``num_frames``; see
    :func:`utterance_posteriors` for ``acoustic_scale``.
    """
    weights, stats = utterance_posteriors(models, x, transcript, acoustic_scale, explicit)
    with torch.no_grad():
        emission = models.emission.accumulate(x, weights.to(x.device))
    stats.update({k: v.cpu() for k, v in emission.items()})
    return stats


# Frames per batched emission accumulation: one big [N, K] @ [N, D] product per chunk costs
# far less than one small call per utterance.
ACCUMULATE_FRAMES = 8000


def _corpus_stats(models: PhoneModels, data, acoustic_scale: float, explicit: bool = False) -> dict[str, Tensor]:
    """Sum of :func:`utterance_stats` over ``data``, emission statistics accumulated in chunks."""
    total: dict[str, Tensor] | None = None
    emission: dict[str, Tensor] | None = None
    xs, ws, frames = [], [], 0

    def flush():
        nonlocal emission, xs, ws, frames
        if xs:
            with torch.no_grad():
                part = models.emission.accumulate(torch.cat(xs), torch.cat(ws))
            emission = add_stats(emission, {k: v.cpu() for k, v in part.items()})
        xs, ws, frames = [], [], 0

    for x, transcript in data:
        weights, stats = utterance_posteriors(models, x, transcript, acoustic_scale, explicit)
        total = add_stats(total, stats)
        xs.append(x)
        ws.append(weights.to(x.device))
        frames += x.shape[0]
        if frames >= ACCUMULATE_FRAMES:
            flush()
    flush()
    total.update(emission)
    return total


def _m_step(models: PhoneModels, stats: dict[str, Tensor]) -> None:
    device = models.log_stay.device
    emission_stats = {k: v.to(device) for k, v in stats.items()
                      if not k.startswith("trans_") and k not in ("log_likelihood", "num_frames", "dur_count")}
    models.emission_m_step(emission_stats)
    if "dur_count" in stats:
        models.duration_m_step(stats)
    else:
        models.transition_m_step(stats)


def _viterbi_duration_stats(models: PhoneModels, data) -> dict[str, Tensor]:
    """Visit lengths of the plain-HMM Viterbi paths, pooled like :meth:`PhoneModels.duration_stats`
    (the starting point of explicit-duration training)."""
    total = None
    for x, transcript in data:
        chain, state_ids, _ = models.build_chain(transcript.phones, transcript.optional)
        path, _ = chain_viterbi(chain, models.chain_log_obs(x, state_ids))
        S = state_ids.shape[0]
        runs = label_runs(path)
        visited = np.array([state for state, _, _ in runs], dtype=np.int64)
        lengths = np.array([stop - first for _, first, stop in runs], dtype=np.int64)
        counts = np.zeros((S, models.max_duration))
        short = lengths <= models.max_duration  # longer visits: beyond the explicit support
        np.add.at(counts, (visited[short], lengths[short] - 1), 1.0)
        stay = np.bincount(visited, weights=lengths - 1.0, minlength=S)
        leave = np.bincount(visited, minlength=S).astype(np.float64)
        total = add_stats(total, models.duration_stats(state_ids, counts, stay, leave))
    return total


def annealing_schedule(anneal: float | None, iterations: int) -> list[float] | None:
    """Acoustic scales rising geometrically from ``anneal`` to 1 over ``iterations`` (None: no annealing)."""
    if anneal is None or iterations < 2:
        return None
    if not 0.0 < anneal <= 1.0:
        raise InvalidParameterError(f"anneal must be in (0, 1], got {anneal!r}")
    return [float(anneal ** (1.0 - i / (iterations - 1))) for i in range(iterations)]


def train_on_utterances(
    models: PhoneModels,
    data: Sequence[tuple[Tensor, PreparedTranscript]],
    iterations: int,
    mixup_iterations: int = 3,
    seed: int = 0,
    reduce=None,
    progress=None,
    init: InitOption = "uniform",
    acoustic_scales: Sequence[float] | None = None,
    duration_iterations: int = 0,
    min_frames_per_gaussian: float = 0.0,
) -> list[float]:
    """Flat start then embedded Baum-Welch EM over utterances (one or a corpus share).

    Args:
        models: fresh :class:`PhoneModels` whose ``num_mixtures`` is the *target*; training
            starts with one Gaussian per state and splits up to the target (doubling, with
            ``mixup_iterations`` EM iterations after each split).
        data: ``(x [T, D], transcript)`` pairs.
        iterations: EM iterations with single Gaussians (0 keeps the flat start).
        reduce: ``stats -> stats`` applied to every summed statistics dict before it is used
            (``hmm_engine.training.em.all_reduce_stats`` for torch.distributed); identity if None.
        progress: optional ``callback(iteration, log_lik_per_frame)``.
        init: initial segmentation, see :func:`flat_start_stats`.
        acoustic_scales: per single-Gaussian iteration, the annealing scale passed to
            :func:`utterance_stats` (default all 1).
        duration_iterations: for models with explicit durations, semi-Markov EM iterations
            at the end (:func:`train_explicit_durations`).
        min_frames_per_gaussian: a state splits its mixture only while the last E-step gave
            it at least this many frames per Gaussian (:meth:`PhoneModels.split_mixtures`);
            0 splits every state to the target.
    Returns:
        Log-likelihood per frame of each EM iteration (before its M-step).
    """
    if not data:
        raise InvalidInputError("no utterances to train on")
    reduce = reduce or (lambda s: s)
    target = models.num_mixtures
    if target > 1:
        # Train single Gaussians first, then split (the parameters are replaced by the split).
        single = PhoneModels(models.phones, models.states_per_phone, models.obs_dim, 1, models.covariance_type,
                             models.min_covar, models.feature_config, models.silence, models.skip_prob,
                             emitting_states=models.emitting_states)
        models.emission = single.emission.to(models.log_stay.device)
        models.num_mixtures = 1
    init_stats = None
    for x, transcript in data:
        init_stats = add_stats(init_stats, flat_start_stats(models, x, transcript, init))
    init_stats = reduce({k: v.double().cpu() for k, v in init_stats.items()})  # CPU: gloo-summable
    generator = torch.Generator().manual_seed(int(seed))
    models.emission.initialize_from_stats({k: v.to(models.log_stay.device) for k, v in init_stats.items()}, generator)

    schedule = [1] * iterations
    m = 1
    while m < target:
        m = min(2 * m, target)
        schedule += [m] * max(1, mixup_iterations)
    history: list[float] = []
    total = None
    for iteration, mixtures in enumerate(schedule):
        if mixtures > models.num_mixtures:
            occupancy = None if total is None else (total["mix"].sum(-1) if "mix" in total else total["n"])
            models.split_mixtures(mixtures, occupancy=occupancy, min_frames_per_gaussian=min_frames_per_gaussian)
        scale = acoustic_scales[iteration] if acoustic_scales is not None and iteration < len(acoustic_scales) else 1.0
        total = _em_iteration(models, data, reduce, scale)
        history.append(_report_iteration(total, progress, iteration))
        _m_step(models, total)
    if duration_iterations and models.durations is not None:
        history += train_explicit_durations(models, data, duration_iterations, reduce, progress, len(history))
    return history


def train_explicit_durations(
    models: PhoneModels,
    data: Sequence[tuple[Tensor, PreparedTranscript]],
    iterations: int,
    reduce=None,
    progress=None,
    first_iteration: int = 0,
) -> list[float]:
    """Semi-Markov refinement of HMM-trained models with explicit durations.

    The duration distributions start from the visit lengths of the current (plain HMM)
    Viterbi paths; then ``iterations`` EM iterations run forward-backward on the
    semi-Markov chains and re-estimate emissions, durations and the silence self-loops
    together. ``reduce`` / ``progress`` as in :func:`train_on_utterances` (``progress``
    numbers the iterations from ``first_iteration``). Returns the log-likelihood per frame
    of each iteration.
    """
    if models.durations is None:
        raise InvalidParameterError("the phone models have no explicit durations (duration_type=None)")
    reduce = reduce or (lambda s: s)
    start = reduce(_viterbi_duration_stats(models, data))
    models.durations.m_step(start["dur_count"].double())
    return reestimate(models, data, iterations, reduce, progress, first_iteration, explicit=True)


def reestimate(
    models: PhoneModels,
    data: Sequence[tuple[Tensor, PreparedTranscript]],
    iterations: int,
    reduce=None,
    progress=None,
    first_iteration: int = 0,
    explicit: bool = False,
) -> list[float]:
    """``iterations`` embedded Baum-Welch iterations from the models as they are (no flat start).

    ``explicit`` runs the semi-Markov chains (models with explicit durations). ``reduce`` /
    ``progress`` as in :func:`train_on_utterances`, iterations numbered from
    ``first_iteration``. Returns the log-likelihood per frame of each iteration (before its M-step).
    """
    reduce = reduce or (lambda s: s)
    history: list[float] = []
    for iteration in range(iterations):
        total = _em_iteration(models, data, reduce, 1.0, explicit)
        history.append(_report_iteration(total, progress, first_iteration + iteration))
        _m_step(models, total)
    return history


def map_adapt_means(
    models: PhoneModels,
    data: Sequence[tuple[Tensor, PreparedTranscript]],
    iterations: int,
    tau: float = 20.0,
    reduce=None,
    progress=None,
    explicit: bool = False,
) -> list[float]:
    """MAP adaptation of single-Gaussian means to ``data``, from the models as they are.

    Each of ``iterations`` E-steps gives every tied state ``k`` its occupancy ``n_k`` and
    frame sum ``x_k``; its mean becomes ``(x_k + tau mu0_k) / (n_k + tau)`` with ``mu0`` the
    means before adaptation (a fixed prior, as in Gauvain & Lee 1994 / HTK HMAP). Variances,
    transitions and durations are kept: plain EM from pretrained models re-estimates them all
    and lowered the agreement with the peer on real speech (docs/real-recordings.md).
    ``reduce`` / ``progress`` as in :func:`train_on_utterances`. Returns the log-likelihood
    per frame of each iteration (before its update).
    """
    if not (isinstance(iterations, int) and iterations >= 0):
        raise InvalidParameterError(f"iterations must be a whole number >= 0, got {iterations!r}")
    if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0):
        raise InvalidParameterError(f"tau must be a finite number > 0, got {tau!r}")
    if models.num_mixtures != 1:
        raise InvalidParameterError(f"MAP mean adaptation needs single-Gaussian models, these have "
                                    f"{models.num_mixtures} Gaussians per state")
    reduce = reduce or (lambda s: s)
    prior = models.emission.means.double().cpu()
    history: list[float] = []
    for iteration in range(iterations):
        total = _em_iteration(models, data, reduce, 1.0, explicit)
        history.append(_report_iteration(total, progress, iteration))
        n, sx = total["n"].double().cpu(), total["x"].double().cpu()
        adapted = (sx + tau * prior) / (n + tau)[:, None]
        with torch.no_grad():
            models.emission.means = adapted.to(models.emission.means_param.dtype).to(models.log_stay.device)
    return history


def _em_iteration(models: PhoneModels, data, reduce, acoustic_scale: float, explicit: bool = False) -> dict[str, Tensor]:
    """One E-step over ``data``, summed (and reduced over processes)."""
    return reduce(_corpus_stats(models, data, acoustic_scale, explicit=explicit))


def _report_iteration(total: dict[str, Tensor], progress, iteration: int) -> float:
    """Log-likelihood per frame of an E-step (checked finite), passed to ``progress``."""
    from hmm_engine.cancellation import check_cancelled

    check_cancelled()  # a cancelled request stops between EM iterations
    per_frame = float(total["log_likelihood"] / total["num_frames"])
    if not math.isfinite(per_frame):
        raise InvalidInputError("EM log-likelihood is not finite")
    if progress is not None:
        progress(iteration, per_frame)
    return per_frame



@dataclass(frozen=True)
class TrainingConfig:
    """Settings of flat-start (or labelled) phone-model training on a corpus (:func:`train_corpus`).

    Attributes:
        states_per_phone: left-to-right states per phone.
        num_mixtures: target Gaussians per state (split 1 -> 2 -> 4 ... after ``iterations``).
        iterations: single-Gaussian EM iterations.
        mixup_iterations: EM iterations after each mixture split.
        covariance_type, min_covar: emission covariances and their floor.
        silence: silence symbol.
        device: where emission scores and statistics are computed.
        seed: seeds the mixture initialisation.
        init: flat start, see :func:`flat_start_stats`.
        anneal: first acoustic scale of annealing (:func:`annealing_schedule`); None: off.
        context_min_count, context_iterations: a (phone, neighbour) pair seen at least this
            often gets its own boundary state, then ``context_iterations`` more EM iterations.
        duration_type, duration_iterations: explicit (semi-Markov) state durations, trained
            last by that many semi-Markov EM iterations.
        class_prior: pull of single-Gaussian means towards their broad phonetic class.
        acoustic_prior: scale of the loudness / tilt prior by broad class.
        min_frames_per_gaussian: see :func:`train_on_utterances`.
        speech_prior: what a speech phone pays per frame of a long non-speech stretch
            (:class:`PhoneModels`); also starts silence from those stretches.
    """

    states_per_phone: int = 3
    num_mixtures: int = 1
    iterations: int = 10
    mixup_iterations: int = 3
    covariance_type: str = "diag"
    min_covar: float = 0.01
    silence: str = "sil"
    device: str = "cpu"
    seed: int = 0
    init: InitOption = "uniform"
    anneal: float | None = None
    context_min_count: int | None = None
    context_iterations: int = 4
    duration_type: str | None = None
    duration_iterations: int = 4
    class_prior: float = 0.0
    acoustic_prior: float = 1.0
    min_frames_per_gaussian: float = 0.0
    speech_prior: float = 0.0

    def progress_steps(self) -> int:
        """EM iterations a training run reports (a progress bar's length)."""
        steps = self.iterations + (self.context_iterations if self.context_min_count else 0) + \
            (self.duration_iterations if self.duration_type else 0)
        m = 1
        while m < self.num_mixtures:
            m = min(2 * m, self.num_mixtures)
            steps += max(1, self.mixup_iterations)
        return steps


def train_corpus(
    data: Sequence[tuple[Features, PreparedTranscript]],
    config: TrainingConfig = TrainingConfig(),
    progress: Callable[[int, float], None] | None = None,
) -> tuple[PhoneModels, list[float]]:
    """Train shared phone models on ``(features, transcript)`` pairs (this rank's share).

    Under torch.distributed, the phone inventory is united over ranks and all statistics are
    all-reduced, so every rank returns the same models. With ``config.duration_type`` (e.g.
    "gamma") the models get explicit state durations, trained last (:func:`train_explicit_durations`).
    Returns ``(models, history)``.
    """
    c = config
    local = sorted({p for _, t in data for p in t.phones})
    inventory = sorted({p for part in gather(local) for p in part})
    if not inventory:
        raise InvalidInputError("no usable utterance in the corpus")
    dims = {f.values.shape[1] for f, _ in data}
    dim = sorted({d for part in gather(sorted(dims)) for d in part})
    if len(dim) != 1:
        raise InvalidInputError(f"utterances have different feature dimensions {dim}")
    features_config = data[0][0].config if data else FeatureConfig()
    models = PhoneModels(inventory, c.states_per_phone, dim[0], c.num_mixtures, c.covariance_type, c.min_covar,
                         features_config, c.silence, duration_type=c.duration_type, class_prior=c.class_prior,
                         acoustic_prior=c.acoustic_prior, speech_prior=c.speech_prior).to(c.device)
    pairs = [(f.values.to(c.device), t) for f, t in data]
    if not pairs and rank_and_world()[1] == 1:
        raise InvalidInputError("no usable utterance in the corpus")
    if not pairs:
        raise InvalidInputError("this rank has no usable utterance; use fewer processes than files")
    history = train_on_utterances(models, pairs, c.iterations, c.mixup_iterations, c.seed, all_reduce_stats, progress,
                                  init=c.init, acoustic_scales=annealing_schedule(c.anneal, c.iterations),
                                  min_frames_per_gaussian=c.min_frames_per_gaussian)
    if c.context_min_count:
        # Context-dependent boundary states: a (phone, neighbour) pair seen often enough
        # (over all ranks) gets its own first / last state, then EM goes on.
        counts: dict[str, int] = {}
        for _, t in pairs:
            for key in models.context_keys(t.phones):
                counts[key] = counts.get(key, 0) + 1
        merged: dict[str, int] = {}
        for part in gather(counts):
            for key, value in part.items():
                merged[key] = merged.get(key, 0) + value
        models.add_context_states(sorted(k for k, count in merged.items() if count >= c.context_min_count))
        history += reestimate(models, pairs, c.context_iterations, all_reduce_stats, progress, len(history))
    if models.durations is not None:
        history += train_explicit_durations(models, pairs, c.duration_iterations, all_reduce_stats, progress,
                                            len(history))
    return models, history

