"""Forced alignment of one utterance with left-to-right phone HMMs (the Align tab's recipe).

:func:`align_utterance` takes audio (or features) and its phones or words and returns
phone (and word) segments. Without trained models it trains them on the utterance itself:

1. the phone sequence gets silences (by default an *optional* ``sil`` at each edge, and for
   words an optional ``sil`` between words: the chain can skip them, see
   :meth:`PhoneModels.build_chain`);
2. every phone gets ``states_per_phone`` left-to-right states, *tied* across occurrences
   (two ``t`` in the utterance share one set of Gaussians and self-loops);
3. flat start (``init``, :func:`~hmm_engine.alignment.training.flat_start_stats`): by default
   every state starts from the utterance's global mean/variance (HTK HCompV style);
4. ``iterations`` of Baum-Welch EM on the utterance, the first ones annealed, then
   ``duration_iterations`` semi-Markov iterations with explicit (gamma) durations;
5. Viterbi through the chain gives the segmentation
   (:func:`~hmm_engine.alignment.decoding.viterbi_segments`).

With ``models=`` (e.g. trained on a corpus by :func:`~hmm_engine.alignment.recipes.align_corpus`)
steps 3-4 are skipped; that is far more accurate whenever such models exist.

The defaults (one state per phone, 20 static MFCCs, one tied full covariance, global flat
start, 50 iterations annealed from 0.001, a class prior of tau 4 and an acoustic prior of
scale 1, gamma durations) were chosen on synthetic tuning corpora; the measurements behind
each choice are in docs/alignment-tuning.md.
"""

from __future__ import annotations

import time
from typing import Sequence

import torch

from hmm_engine.alignment.decoding import AlignmentResult, BoundaryOption, viterbi_segments
from hmm_engine.alignment.inputs import check_length, compute_features
from hmm_engine.alignment.phone_models import PhoneModels
from hmm_engine.alignment.pronunciations import choose_pronunciations
from hmm_engine.alignment.shipped import shipped_phone_models
from hmm_engine.alignment.training import InitOption, annealing_schedule, train_on_utterances
from hmm_engine.alignment.transcripts import DEFAULT_LEXICON, Dictionary, SilenceOption, Word, prepare_transcript
from hmm_engine.errors import InvalidInputError, InvalidParameterError
from hmm_engine.frontend.features import FeatureConfig, Features

# Front end of single-utterance training when no feature_config is given: 20 static MFCCs
# (c0 included), CMVN, 10 ms, no deltas (docs/alignment-tuning.md).
SINGLE_UTTERANCE_FEATURES = FeatureConfig(num_ceps=20, deltas=0)
# Log-score a speech phone pays per frame of a long non-speech stretch (PhoneModels.speech_prior):
# 3 keeps the clean synthetic benchmark at 80.7% (5: 80.5%), recording-conditions corpus 25.0 -> 61.9%,
# real clips 56.1 -> 61.0% of the peer's boundaries within 20 ms (docs/real-recordings.md).
SPEECH_PRIOR = 3.0


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
    speech_prior: float = SPEECH_PRIOR,
    dictionary: Dictionary | str | None = DEFAULT_LEXICON,
    shipped: bool = True,
) -> AlignmentResult:
    """Force-align one utterance.

    Args:
        source: audio path, :class:`Audio`, :class:`Features`, or ``[T, D]`` feature tensor.
        phones: space-separated phones or a list (any symbol set), or
        words: text (espeak-ng gives the phones) or a list of :class:`Word`.
        states_per_phone: 1 to 5 left-to-right states per phone (default 1: on one utterance
            more states mean more parameters than the frames support; docs/alignment-tuning.md).
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
        speech_prior: keeps speech phones off long stretches of the clip's own noise floor
            and starts silence from them (:class:`PhoneModels` ``speech_prior``,
            :mod:`hmm_engine.frontend.speech`); 0 disables it. Ignored with ``models``.
        dictionary: for ``words`` text: :data:`~hmm_engine.alignment.transcripts.DEFAULT_LEXICON`
            (default: CMUdict where installed, espeak-ng for the words it lacks), None
            (espeak-ng only), or a pronunciation dictionary
            (:func:`~hmm_engine.alignment.transcripts.read_dictionary`); training uses each
            word's first pronunciation, then every word with several is aligned with the one
            that scores best (:func:`choose_pronunciations`; ``result.transcript.words``).
        shipped: without ``models``, with every training option at its default, on audio (a
            path or :class:`Audio`) whose ``words`` come out all CMUdict phones (pocketsphinx's
            ARPAbet or festival's set), align with the shipped phone models
            (:func:`~hmm_engine.alignment.shipped.shipped_phone_models`: real clips 61.0 ->
            83.6% of the peer's boundaries within 20 ms) instead of training on the clip.
            Giving any training option (states, mixtures, iterations, durations, front end)
            or ``phones`` trains on the clip, as does False.

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
    # Only for words (a phones transcript in festival's set is the synthetic benchmark's own
    # input) and only when no training option was asked for: those mean "train on this clip".
    trains_here = (feature_config is not None or iterations != 50 or states_per_phone != 1 or num_mixtures != 1
                   or emitting_states is not None or covariance_type is not None or duration_type != "gamma")
    if (models is None and shipped and phones is None and not trains_here
            and not isinstance(source, (Features, torch.Tensor))):
        models = shipped_phone_models(transcript.phones)  # None unless every phone is ARPAbet
        if models is not None:
            models.speech_prior = speech_prior
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
            class_prior=class_prior, acoustic_prior=acoustic_prior, speech_prior=speech_prior,
        ).to(device)
        check_length(models, transcript, features.num_frames, features.frame_shift)
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
    return AlignmentResult.from_decoded(out, transcript, history, timings, features, models)
