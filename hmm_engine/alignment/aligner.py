"""Forced alignment of one utterance with left-to-right phone HMMs.

:func:`align_utterance` takes audio (or features) and its phones or words and returns
phone (and word) segments. Without trained models it trains them on the utterance itself:

1. the phone sequence gets silences (by default an *optional* ``sil`` at each edge, and for
   words an optional ``sil`` between words: the chain can skip them, see
   :meth:`PhoneModels.build_chain`);
2. every phone gets ``states_per_phone`` left-to-right states, *tied* across occurrences
   (two ``t`` in the utterance share one set of Gaussians and self-loops);
3. flat start (``init``): by default every state starts from the utterance's global
   mean/variance (HTK HCompV style); ``"uniform"`` cuts the frames into equal runs, one per
   chain state; ``"segmental"`` first splits them into phone runs of homogeneous features;
4. ``iterations`` of Baum-Welch EM on the utterance (chain forward-backward, statistics
   pooled on tied states), the first ones annealed (emission scores scaled by ``anneal``
   rising to 1, so that early posteriors stay soft);
5. Viterbi through the chain gives the segmentation.

With ``models=`` (e.g. trained on a corpus by :mod:`hmm_engine.alignment.corpus`) steps
3-4 are skipped.

Explicit durations (``duration_type="gamma"`` etc.): after step 4 the speech states get
explicit duration distributions, started from the visit lengths of the HMM's Viterbi paths,
and ``duration_iterations`` more EM iterations run on the semi-Markov chain
(:func:`train_explicit_durations`, :func:`~hmm_engine.inference.chain.chain_segment_forward_backward`);
step 5 is then a semi-Markov Viterbi. Silence keeps geometric durations (any length).

Confidence of a phone segment: the mean, over its frames, of the posterior probability
(forward-backward, same models) of the chain state that Viterbi chose for the frame. It is
in [0, 1]; near 1 means the models leave little doubt about the boundaries around that
frame run, low values flag segments whose extent is uncertain.

Defaults of single-utterance mode (chosen on 48 utterances of a synthetic tuning corpus,
% of phone boundaries within 20 ms): a uniform flat start with 3 states/phone, variance
floor 0.01 and 10 plain EM iterations stays next to its start (~16%); starting every state
from the utterance's global statistics, 1 state per phone, variance floor 1.0 (features are
CMVN-normalised) and 30 annealed iterations (acoustic scale 0.01 -> 1) reached ~50% (47.5%
on the 150 held-out utterances of benchmarks/bench_alignment.py). One self-loop probability
shared by all speech phones (``tie_transitions``, one duration model instead of one per
phone seen once or twice) with annealing from 0.001 added ~3 points on two tuning corpora
(seeds other than the benchmark's: 45.4 -> 48.4% and 43.9 -> 46.8%); these are the defaults.
The front end matters too: with one Gaussian per phone fitted to a few frames, the 39
MFCC+D+DD dimensions overfit; 20 static MFCCs without deltas (``SINGLE_UTTERANCE_FEATURES``,
the default when neither ``feature_config`` nor ``models`` is given) reached 52.5% and 50.0%
on the same corpora (13 static: 50.2 / 48.0; 30: 50.1; log-mel: 40.4). One full covariance
shared by all states (``covariance_type="tied"``: the states differ by their means only)
and 50 iterations instead of 30 gave 54.8% and 51.9% (defaults since; variance floor 0.3 or
0.1, 2 states per phone, 2 Gaussians, 5 ms frames: no gain).
The largest gain came from pulling each phone's mean towards the mean of its broad phonetic
class in the same utterance (``class_prior``, :meth:`PhoneModels.emission_m_step`): most
phones occur once, and without the pull the alignment often slid by a phone or more. On the
first 150 utterances of two tuning corpora (seeds other than the benchmark's 7): tau 0 -> 5 -> 8 -> 10 -> 15 gave
52.7 -> 63.6 -> 64.9 -> 64.5 -> 60.4% and 56.6 (tau 0, 90 utterances) -> 62.8 -> 63.7 -> 63.7
-> 60.5%. Seven broad classes beat twelve finer ones (61.6%) and
coarser groupings (60.7-63.4%); a tau decreasing from 50-1000 to 5, class-tied self-loops,
deltas (54.5-57.9%), diagonal covariances, 80 iterations and posterior boundaries did not
help; explicit gamma durations (``duration_type="gamma"``) add about 0.5-0.7 points at twice
the time.
Then phonetic knowledge of what each class sounds like: a loudness / spectral-tilt prior by
broad class (``acoustic_prior``, :mod:`hmm_engine.alignment.acoustic_prior`; fixed weights
from the sonority order, one scale). With it the best pull is smaller: scale 1 with tau 4
gave 77.4 and 78.0% on the same corpora (scale 0.7: 76.4 / 78.4; 1.5: 77.1 / 77.0; tau 3:
77.3 / 78.3; tau 6: 76.3 / 77.1; annealing from 0.01, 80 iterations, separate weights for
voiced / voiceless and sibilant obstruents: within 0.5). Gamma durations on top: 78.9 and
79.4%. These are the defaults: tau 4, scale 1, gamma durations.
All figures above were scored against references from before the corpus generator gave
espeak-ng's stop closures back to the stops (``scripts/corpus/synths.py``,
``attach_prepauses``); they rank settings against each other. Against today's references
the same defaults score 80.7% on the 150 held-out utterances (README).
Training phone models on a whole corpus (:mod:`hmm_engine.alignment.corpus`) is far more
accurate; pass such ``models=`` for single files whenever they exist.

The helpers below (:func:`prepare_transcript`, :func:`flat_start_stats`,
:func:`utterance_stats`, :func:`viterbi_segments`) are shared with corpus training.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace
from typing import Literal, Sequence

import numpy as np
import torch
from torch import Tensor

from hmm_engine.alignment.phone_models import PhoneModels
from hmm_engine.segments import Segment
from hmm_engine.alignment.transcripts import (
    Dictionary,
    Word,
    WordSpan,
    build_phone_sequence,
    dictionary_to_words,
    parse_phones,
    text_to_phones,
)
from hmm_engine.errors import InvalidInputError, InvalidParameterError, TranscriptError
from hmm_engine.frontend.audio import Audio, load_audio
from hmm_engine.frontend.features import FeatureConfig, Features, extract_features
from hmm_engine.inference.chain import (
    chain_forward_backward,
    chain_segment_forward_backward,
    chain_segment_viterbi,
    chain_viterbi,
    homogeneous_segmentation,
    loop_viterbi,
)
from hmm_engine.training.em import add_stats

SilenceOption = Literal["optional", "always", "never"]
InitOption = Literal["uniform", "segmental", "global"]
BoundaryOption = Literal["viterbi", "posterior"]
# Longest run a non-silence phone may get in the segmental start (seconds).
MAX_PHONE_SECONDS = 0.5
# Strength of the segmental start's duration prior, per feature dimension (see flat_start_stats).
DURATION_WEIGHT = 0.5
# Front end of single-utterance training when no feature_config is given: 20 static MFCCs
# (c0 included), CMVN, 10 ms, no deltas (see the module docstring for the measurements).
SINGLE_UTTERANCE_FEATURES = FeatureConfig(num_ceps=20, deltas=0)

__all__ = [
    "AlignmentResult",
    "PreparedTranscript",
    "align_utterance",
    "align_features",
    "prepare_transcript",
    "compute_features",
    "flat_start_stats",
    "utterance_stats",
    "utterance_posteriors",
    "train_on_utterances",
    "train_explicit_durations",
    "reestimate",
    "viterbi_segments",
    "posterior_boundaries",
    "choose_pronunciations",
    "transcript_fit",
    "check_chain_size",
    "MAX_CHAIN_CELLS",
]


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class PreparedTranscript:
    """The phone sequence to align.

    Attributes:
        phones: ``[P]`` symbols, silences included.
        optional: ``[P]`` True where the phone may be skipped (silences we added).
        spans: one :class:`WordSpan` per word (empty for bare phones).
        words: the words it was built from (empty for bare phones), with any dictionary
            variants (:func:`choose_pronunciations`).
    """

    phones: list[str]
    optional: list[bool]
    spans: list[WordSpan]
    words: list[Word] = field(default_factory=list)


def prepare_transcript(
    phones: str | Sequence[str] | None = None,
    words: str | Sequence[Word] | None = None,
    silence: str = "sil",
    edge_silence: SilenceOption = "optional",
    word_silence: SilenceOption = "optional",
    voice: str = "en-us",
    dictionary: Dictionary | None = None,
) -> PreparedTranscript:
    """Build the phone sequence of a transcript, with silences.

    Args:
        phones: space-separated phones or a list of phones (any symbol set).
        words: orthographic text (converted with espeak-ng, or looked up in ``dictionary``)
            or a list of :class:`Word`.
        silence: silence symbol.
        edge_silence: ``"optional"`` (skippable ``silence`` at each edge), ``"always"`` or
            ``"never"``. No silence is added at an edge that already has one.
        word_silence: the same between words (words only).
        voice: espeak-ng voice for ``words`` text.
        dictionary: a pronunciation dictionary (:func:`~hmm_engine.alignment.transcripts.read_dictionary`)
            for ``words`` text instead of espeak-ng; each word starts with its first pronunciation.

    Raises:
        TranscriptError: neither or both of phones/words given, empty transcript, bad option,
            a word missing from ``dictionary``.
    """
    for name, value in (("edge_silence", edge_silence), ("word_silence", word_silence)):
        if value not in ("optional", "always", "never"):
            raise TranscriptError(f"{name} must be 'optional', 'always' or 'never', got {value!r}")
    if (phones is None) == (words is None):
        raise TranscriptError("give exactly one of phones= or words=")
    if phones is not None:
        items: list = parse_phones(phones) if isinstance(phones, str) else list(phones)
    elif isinstance(words, str):
        items = dictionary_to_words(words, dictionary) if dictionary is not None else text_to_phones(words, voice=voice)
    else:
        items = list(words)
    if not items:
        raise TranscriptError("transcript is empty: nothing to align")
    seq, spans = build_phone_sequence(items, silence=silence, edge_silence=False,
                                      word_silence=word_silence != "never")
    optional = [False] * len(seq)
    if word_silence == "optional":
        # build_phone_sequence puts a silence between words: mark exactly those optional.
        inner = {span.start - 1 for span in spans[1:]}
        optional = [i in inner and p == silence for i, p in enumerate(seq)]
    if edge_silence != "never":
        flag = edge_silence == "optional"
        if seq[0] != silence:
            seq.insert(0, silence)
            optional.insert(0, flag)
            spans = [WordSpan(s.text, s.start + 1, s.end + 1) for s in spans]
        if seq[-1] != silence:
            seq.append(silence)
            optional.append(flag)
    if all(p == silence for p in seq):
        raise TranscriptError("the transcript holds only silence: nothing to align")
    return PreparedTranscript(seq, optional, spans, [w for w in items if isinstance(w, Word)])


def compute_features(source, feature_config: FeatureConfig | None = None, frame_shift: float | None = None) -> Features:
    """Features of ``source``: a path, an :class:`Audio`, :class:`Features`, or a ``[T, D]`` tensor.

    A bare tensor needs ``frame_shift`` (seconds; default the config's); its duration is
    taken as ``T * frame_shift``.
    """
    config = feature_config or FeatureConfig()
    if isinstance(source, Features):
        return source
    if isinstance(source, (str, os.PathLike)):
        source = load_audio(source)
    if isinstance(source, Audio):
        return extract_features(source, config)
    if isinstance(source, (Tensor, np.ndarray)):
        values = torch.as_tensor(source, dtype=torch.float32)
        if values.dim() != 2 or values.shape[0] == 0:
            raise InvalidInputError(f"features must be a [T, D] array with T >= 1, got shape {tuple(values.shape)}")
        if not torch.isfinite(values).all():
            raise InvalidInputError("features contain NaN or infinite values")
        shift = frame_shift if frame_shift is not None else config.frame_shift_ms / 1000.0
        return Features(values.contiguous(), shift, config, values.shape[0] * shift)
    raise InvalidInputError(f"cannot align a {type(source).__name__}: give a path, Audio, Features or a [T, D] tensor")


# --------------------------------------------------------------------------- EM pieces


# The chain DPs keep a few [frames x chain positions] float64 / int64 arrays (Viterbi, forward-
# backward, confidences): about 40 bytes a cell, measured (a 63 s utterance, 6330 frames x 2067
# positions = 13M cells, took 0.5 GB more). A whole 10-minute recording in one piece would need
# tens of GB; above this many cells an utterance is refused with a clear message instead.
MAX_CHAIN_CELLS = 100_000_000
BYTES_PER_CHAIN_CELL = 40


def check_chain_size(num_frames: int, num_positions: int) -> None:
    """Raise InvalidInputError when aligning ``num_frames`` against a chain of
    ``num_positions`` would take more than :data:`MAX_CHAIN_CELLS` cells of DP memory."""
    cells = num_frames * num_positions
    if cells > MAX_CHAIN_CELLS:
        raise InvalidInputError(
            f"{num_frames} frames x {num_positions} HMM states is {cells / 1e6:.0f}M cells, about "
            f"{cells * BYTES_PER_CHAIN_CELL / 1e9:.1f} GB to align in one piece (limit {MAX_CHAIN_CELLS / 1e6:.0f}M "
            f"cells): split the recording into utterances of a minute or two"
        )


def _check_length(models: PhoneModels, transcript: PreparedTranscript, num_frames: int, frame_shift: float) -> None:
    need = models.min_frames(transcript.optional)
    if num_frames < need:
        raise InvalidInputError(
            f"the transcript has {need} mandatory HMM states ({need // models.states_per_phone} phones x "
            f"{models.states_per_phone} states) but the audio has only {num_frames} frames; at least {need} "
            f"frames ({need * frame_shift:.3f} s) are needed: use fewer states per phone or check the transcript"
        )
    check_chain_size(num_frames, len(transcript.phones) * models.states_per_phone)


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
        post = chain_segment_forward_backward(chain, log_obs, *models.chain_durations(state_ids))
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
        change = np.flatnonzero(np.diff(path)) + 1
        starts = np.concatenate([[0], change])
        lengths = np.concatenate([change, [path.shape[0]]]) - starts
        visited = path[starts]
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


# --------------------------------------------------------------------------- decoding


def posterior_boundaries(gamma: np.ndarray, num_phones: int) -> np.ndarray:
    """Expected phone boundaries under the model, in (fractional) frames.

    Args:
        gamma: ``[T, P * N]`` chain-state posteriors (positions grouped by phone).
        num_phones: P.
    Returns:
        ``b [P]``: ``b[i] = E[number of frames whose phone index is <= i]`` (``b[P-1] = T``),
        the minimum-mean-squared-error estimate of the end of phone i (frames, sub-frame
        resolution).
    """
    T = gamma.shape[0]
    phone_post = gamma.reshape(T, num_phones, -1).sum(2)  # [T, P]
    return np.cumsum(phone_post, axis=1).sum(0)


def viterbi_segments(
    models: PhoneModels, features: Features, transcript: PreparedTranscript, confidence: bool = True,
    boundaries: BoundaryOption = "viterbi",
) -> dict:
    """Viterbi alignment of one utterance with fixed models.

    Models with explicit durations (``models.durations``) are decoded as semi-Markov chains
    (:func:`chain_segment_viterbi`), others with their self-loops.

    ``boundaries="viterbi"`` puts every boundary on the frame grid where the best path
    changes phone; ``"posterior"`` keeps the Viterbi phone sequence (which optional silences
    appear) but moves each boundary to its expected position under the forward-backward
    posteriors (:func:`posterior_boundaries`), which is not tied to the frame grid.

    Returns a dict with ``phones`` (list of :class:`Segment`, score = confidence or None),
    ``words`` (list of :class:`Segment` or None), ``frame_states`` ``[T]`` tied state ids,
    ``frame_phones`` ``[T]`` index into ``transcript.phones`` (Viterbi), ``viterbi_score``,
    ``log_likelihood`` (forward; NaN when neither confidences nor posterior boundaries
    were asked for).
    """
    if boundaries not in ("viterbi", "posterior"):
        raise InvalidParameterError(f"boundaries must be 'viterbi' or 'posterior', got {boundaries!r}")
    x = features.values.to(models.log_stay.device)
    _check_length(models, transcript, x.shape[0], features.frame_shift)
    explicit = models.durations is not None
    chain, state_ids, phone_of = models.build_chain(transcript.phones, transcript.optional, explicit=explicit)
    log_obs = models.chain_log_obs(x, state_ids).detach().to("cpu", torch.float64).numpy()
    if explicit:
        log_dur = models.chain_durations(state_ids)
        path, viterbi_score = chain_segment_viterbi(chain, log_obs, *log_dur)
    else:
        path, viterbi_score = chain_viterbi(chain, log_obs)
    frame_conf = None
    log_lik = math.nan
    post = None
    if confidence or boundaries == "posterior":
        post = chain_segment_forward_backward(chain, log_obs, *log_dur) if explicit else chain_forward_backward(chain, log_obs)
        frame_conf = post.gamma[np.arange(path.shape[0]), path] if confidence else None
        log_lik = post.log_likelihood
    frame_phones = phone_of[path]
    shift, duration = features.frame_shift, features.duration
    T = path.shape[0]
    runs = []  # (phone index, first frame, end frame) of the Viterbi path
    start = 0
    for t in range(1, T + 1):
        if t == T or frame_phones[t] != frame_phones[start]:
            runs.append((int(frame_phones[start]), start, t))
            start = t
    edges = [float(a) for _, a, _ in runs] + [float(T)]  # run edges in frames
    if boundaries == "posterior":
        expected = posterior_boundaries(post.gamma, len(transcript.phones))
        moved = [0.0]
        for (left, _, _), (right, _, _) in zip(runs[:-1], runs[1:]):
            # A skipped optional phone between them: split its expected frames in half.
            moved.append(float(expected[left] + (expected[right - 1] - expected[left]) / 2))
        moved.append(float(T))
        if all(b - a > 1e-3 for a, b in zip(moved[:-1], moved[1:])):
            edges = moved
    segments: list[Segment] = []
    phone_extent: dict[int, tuple[float, float]] = {}
    for k, (index, a, b) in enumerate(runs):
        seg_score = float(frame_conf[a:b].mean()) if frame_conf is not None else None
        seg = Segment(transcript.phones[index], edges[k] * shift, min(edges[k + 1] * shift, duration), seg_score)
        segments.append(seg)
        phone_extent[index] = (seg.start, seg.end)
    words = None
    if transcript.spans:
        words = []
        for span in transcript.spans:
            inside = [phone_extent[i] for i in range(span.start, span.end) if i in phone_extent]
            if inside:
                words.append(Segment(span.text, inside[0][0], inside[-1][1]))
    return dict(phones=segments, words=words, frame_states=state_ids[path], frame_phones=frame_phones,
                viterbi_score=viterbi_score, log_likelihood=log_lik)


def _with_pronunciation(transcript: PreparedTranscript, index: int, phones: Sequence[str]) -> PreparedTranscript:
    """``transcript`` with word ``index`` spoken as ``phones`` (the spans after it shifted)."""
    span = transcript.spans[index]
    delta = len(phones) - (span.end - span.start)
    spans = [s if i < index else WordSpan(s.text, s.start + (delta if i > index else 0), s.end + delta)
             for i, s in enumerate(transcript.spans)]
    words = list(transcript.words)
    words[index] = replace(words[index], phones=tuple(phones))
    return PreparedTranscript(
        transcript.phones[:span.start] + list(phones) + transcript.phones[span.end:],
        transcript.optional[:span.start] + [False] * len(phones) + transcript.optional[span.end:],
        spans, words,
    )


def choose_pronunciations(
    models: PhoneModels, features: Features, transcript: PreparedTranscript,
) -> tuple[PreparedTranscript, int]:
    """Pick each word's pronunciation among its dictionary variants (``Word.variants``) by the
    Viterbi score of the utterance with fixed models: left to right, one word at a time, the
    others held at their current choice (what HTK's HVite does with a multi-pronunciation
    dictionary, greedily instead of over all combinations). Variants with a phone the models
    do not know, or too long for the audio, are passed over.

    Returns:
        ``(transcript, changed)``: the transcript with the chosen pronunciations and how many
        words got another one than they had.
    """
    if not any(word.variants for word in transcript.words):
        return transcript, 0
    best = transcript
    best_score = viterbi_segments(models, features, best, confidence=False)["viterbi_score"]
    changed = 0
    for index, word in enumerate(transcript.words):
        for variant in word.variants:
            if variant == best.words[index].phones or any(p not in models.phone_index for p in variant):
                continue
            candidate = _with_pronunciation(best, index, variant)
            try:
                score = viterbi_segments(models, features, candidate, confidence=False)["viterbi_score"]
            except InvalidInputError:  # more mandatory states than frames
                continue
            if score > best_score:
                best, best_score = candidate, score
        changed += best.words[index].phones != word.phones
    return best, changed


# --------------------------------------------------------------------------- public API


@dataclass
class AlignmentResult:
    """One utterance's alignment.

    Attributes:
        phones: phone tier; each segment's ``score`` is its confidence (module docstring).
        words: word tier (None when only phones were given).
        frame_states: ``[T]`` tied state id of each frame (``models.phones[id // N]``, state ``id % N``).
        frame_phones: ``[T]`` index of each frame's phone in ``transcript.phones``.
        transcript: the aligned phone sequence (silences included).
        log_likelihood: forward log p(x | transcript, models) (all paths).
        viterbi_score: log-probability of the best path.
        history: log-likelihood per frame of each EM iteration (empty with given models).
        timings: seconds spent in ``features``, ``training``, ``alignment`` and ``total``.
        frame_shift, duration: seconds.
        models: the phone models used (trained here, or given).
    """

    phones: list[Segment]
    words: list[Segment] | None
    frame_states: np.ndarray
    frame_phones: np.ndarray
    transcript: PreparedTranscript
    log_likelihood: float
    viterbi_score: float
    history: list[float]
    timings: dict[str, float]
    frame_shift: float
    duration: float
    models: PhoneModels = field(repr=False)

    @property
    def num_frames(self) -> int:
        return int(self.frame_states.shape[0])

    def tiers(self) -> dict[str, list[Segment]]:
        """``{"phones": ..., "words": ...}`` for :func:`hmm_engine.alignment.textgrids.write_textgrid`."""
        tiers = {"phones": self.phones}
        if self.words:
            tiers["words"] = self.words
        return tiers


def align_features(
    features: Features, transcript: PreparedTranscript, models: PhoneModels, confidence: bool = True,
    boundaries: BoundaryOption = "viterbi",
) -> AlignmentResult:
    """Align prepared features with fixed (trained) models; see :func:`align_utterance`."""
    t0 = time.perf_counter()
    out = viterbi_segments(models, features, transcript, confidence, boundaries)
    elapsed = time.perf_counter() - t0
    return AlignmentResult(
        out["phones"], out["words"], out["frame_states"], out["frame_phones"], transcript,
        out["log_likelihood"], out["viterbi_score"], [], {"features": 0.0, "training": 0.0, "alignment": elapsed,
                                                          "total": elapsed},
        features.frame_shift, features.duration, models,
    )


def transcript_fit(models: PhoneModels, features: Features, result: AlignmentResult,
                   phone_loop: tuple | None = None) -> dict:
    """How well an alignment's transcript fits the audio, against a free phone loop
    (:meth:`PhoneModels.phone_loop`: the same models, no transcript), both by Viterbi.

    Returns a dict:
        ``transcript_fit_per_frame``: (forced Viterbi score - phone-loop Viterbi score) per frame;
        ``worst_phone``, ``worst_phone_start_s``, ``worst_phone_fit``: the speech phone whose
            frames score worst against the phone loop's best path (the mean, over its frames,
            of forced-path minus loop-path emission scores) - where a wrong, missing or extra
            phone usually shows.
    Files of one corpus cluster near each other and a wrong transcript falls below them;
    measured by ``benchmarks/transcript_errors.py``. ``phone_loop``: ``models.phone_loop()``
    when the caller scores many files with the same models (built once, not per file).
    """
    loop, loop_ids = phone_loop if phone_loop is not None else models.phone_loop()
    x = features.values.to(models.log_stay.device)
    # Every tied state scored once (context states too, which only the forced path may use).
    scores = models.chain_log_obs(x, np.arange(models.num_states), exact=False)
    scores = scores.detach().to("cpu", torch.float64).numpy()
    path, score = loop_viterbi(loop, scores[:, loop_ids])
    frames = np.arange(scores.shape[0])
    gap = scores[frames, result.frame_states] - scores[frames, loop_ids[path]]
    worst, worst_fit = None, math.inf
    for seg in result.phones:
        a, b = round(seg.start / result.frame_shift), round(seg.end / result.frame_shift)
        if seg.label != models.silence and b > a and gap[a:b].mean() < worst_fit:
            worst, worst_fit = seg, float(gap[a:b].mean())
    return {
        "transcript_fit_per_frame": (result.viterbi_score - score) / max(result.num_frames, 1),
        "worst_phone": worst.label if worst else "",
        "worst_phone_start_s": worst.start if worst else math.nan,
        "worst_phone_fit": worst_fit if worst else math.nan,
    }


def align_utterance(
    source,
    phones: str | Sequence[str] | None = None,
    words: str | Sequence[Word] | None = None,
    *,
    states_per_phone: int = 1,
    emitting_states: int | None = None,
    num_mixtures: int = 1,
    covariance_type: str | None = None,
    min_covar: float = 1.0,
    feature_config: FeatureConfig | None = None,
    frame_shift: float | None = None,
    iterations: int = 50,
    init: InitOption = "global",
    anneal: float | None = 0.001,
    silence: str = "sil",
    edge_silence: SilenceOption = "optional",
    word_silence: SilenceOption = "optional",
    voice: str = "en-us",
    models: PhoneModels | None = None,
    confidence: bool = True,
    boundaries: BoundaryOption = "viterbi",
    seed: int = 0,
    device: str | torch.device = "cpu",
    tie_transitions: bool = True,
    duration_type: str | None = "gamma",
    duration_iterations: int = 5,
    max_duration: int | None = None,
    class_prior: float = 4.0,
    acoustic_prior: float = 1.0,
    dictionary: Dictionary | None = None,
) -> AlignmentResult:
    """Force-align one utterance.

    Args:
        source: audio path, :class:`Audio`, :class:`Features`, or ``[T, D]`` feature tensor.
        phones: space-separated phones or a list (any symbol set), or
        words: text (espeak-ng gives the phones) or a list of :class:`Word`.
        states_per_phone: 1 to 5 left-to-right states per phone (default 1: on one utterance
            more states mean more parameters than the frames support; see the defaults note).
        emitting_states: distinct Gaussians per phone (default ``states_per_phone``), see
            :class:`PhoneModels`.
        num_mixtures: Gaussians per state (>1 splits after the single-Gaussian iterations).
        covariance_type: "diag", "full", "spherical" or "tied" (one full covariance shared by
            all states); default (None): "tied" with one Gaussian per state, else "diag"
            (mixture splitting needs diagonal covariances).
        min_covar: variance floor (features are CMVN-normalised, so the default 1.0 keeps
            every variance at least the utterance's own: robust with a few frames per state).
        feature_config: front end; default ``SINGLE_UTTERANCE_FEATURES`` (20 static MFCCs,
            CMVN, 10 ms) when training here, the models' own with ``models``; ignored for
            Features input.
        frame_shift: seconds per frame for a bare tensor.
        iterations: EM iterations on this utterance (ignored with ``models``).
        init: "global" (default: every state from the utterance's mean/variance, HTK
            HCompV style), "uniform" (equal runs per state) or "segmental" (phone runs of
            homogeneous features); see :func:`flat_start_stats`.
        anneal: first acoustic scale of deterministic annealing (rising geometrically to 1
            over the iterations, :func:`annealing_schedule`); None disables it. The
            history's early values are then log-likelihoods of the scaled model.
        silence, edge_silence, word_silence, voice: see :func:`prepare_transcript`.
        models: trained :class:`PhoneModels` to align with instead of training here.
        confidence: compute per-segment confidences (one extra forward-backward).
        boundaries: "viterbi" (frame grid) or "posterior" (expected boundary positions),
            see :func:`viterbi_segments`.
        seed: seeds the mixture initialisation.
        device: where emission scores are computed ("cpu" or "cuda").
        tie_transitions: train one self-loop probability shared by all speech phones (per
            state position; silence keeps its own) instead of one per phone, see
            :meth:`PhoneModels.transition_m_step` (ignored with ``models``).
        duration_type: an explicit duration family for speech phones ("gamma", the
            default, "poisson", "gaussian", "nonparametric"): after the HMM iterations,
            ``duration_iterations`` semi-Markov EM iterations (:func:`train_explicit_durations`),
            and semi-Markov Viterbi; None keeps the durations of the self-loops (a plain HMM,
            about 1.5 points lower and 1.5x faster). Ignored with ``models``.
        max_duration: longest speech-state visit in frames (default 0.8 s per phone).
        class_prior: tau of the pull of each phone's mean towards its broad phonetic class's
            (:meth:`PhoneModels.emission_m_step`; 0 disables it). Ignored with ``models``.
        acoustic_prior: scale of the loudness / spectral-tilt prior by broad phone class
            (:mod:`hmm_engine.alignment.acoustic_prior`; 0 disables it). Ignored with ``models``.
        dictionary: a pronunciation dictionary for ``words`` text instead of espeak-ng
            (:func:`~hmm_engine.alignment.transcripts.read_dictionary`); training uses each
            word's first pronunciation, then every word with several is aligned with the one
            that scores best (:func:`choose_pronunciations`; ``result.transcript.words``).

    Returns:
        :class:`AlignmentResult`.

    Raises:
        TranscriptError: empty or unusable transcript.
        InvalidInputError: fewer frames than mandatory states (the message says how many
            are needed), phones unknown to ``models``, bad features.
        InvalidParameterError: states_per_phone outside 1..5, bad mixtures or iterations.
        AudioError: unreadable or too short audio.
    """
    t_start = time.perf_counter()
    if not (isinstance(iterations, int) and iterations >= 0):
        raise InvalidParameterError(f"iterations must be a non-negative integer, got {iterations!r}")
    if not (isinstance(states_per_phone, int) and 1 <= states_per_phone <= 5):
        raise InvalidParameterError(f"states_per_phone must be an integer from 1 to 5, got {states_per_phone!r}")
    transcript = prepare_transcript(phones, words, silence, edge_silence, word_silence, voice, dictionary)
    if models is not None:
        feature_config = models.feature_config
    elif feature_config is None:
        feature_config = SINGLE_UTTERANCE_FEATURES
    features = compute_features(source, feature_config, frame_shift)
    t_features = time.perf_counter()
    history: list[float] = []
    if models is None:
        if covariance_type is None:
            covariance_type = "tied" if num_mixtures == 1 else "diag"
        models = PhoneModels(
            transcript.phones, states_per_phone, features.values.shape[1], num_mixtures, covariance_type,
            min_covar, features.config, silence, emitting_states=emitting_states,
            tie_transitions=tie_transitions, duration_type=duration_type, max_duration=max_duration,
            class_prior=class_prior, acoustic_prior=acoustic_prior,
        ).to(device)
        _check_length(models, transcript, features.num_frames, features.frame_shift)
        x = features.values.to(device)
        scales = annealing_schedule(anneal, iterations)
        history = train_on_utterances(models, [(x, transcript)], iterations, seed=seed, init=init,
                                      acoustic_scales=scales, duration_iterations=duration_iterations)
    else:
        models = models.to(device)
        if features.values.shape[1] != models.obs_dim:
            raise InvalidInputError(f"features have dimension {features.values.shape[1]}, the models expect {models.obs_dim}")
    t_train = time.perf_counter()
    transcript, _ = choose_pronunciations(models, features, transcript)
    out = viterbi_segments(models, features, transcript, confidence, boundaries)
    t_end = time.perf_counter()
    timings = {"features": t_features - t_start, "training": t_train - t_features,
               "alignment": t_end - t_train, "total": t_end - t_start}
    return AlignmentResult(
        out["phones"], out["words"], out["frame_states"], out["frame_phones"], transcript,
        out["log_likelihood"], out["viterbi_score"], history, timings, features.frame_shift, features.duration,
        models,
    )
