"""The dashboard's adapter to ``hmm_engine``: audio and features, model construction,
training, decoding and the BIC/AIC sweep, each cached (see :mod:`components.caches`).

Engine outputs are ``[B, ...]`` tensors; this module turns them into the numpy arrays the
results hold.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import hmm_engine
from components.caches import FEATURE_CACHE, MODEL_CACHE, SWEEP_CACHE, TRAIN_LOCKS, _sha1, sweep_key
from components.results import AnalysisSettings
from components.validation import ANALYSIS_SR, MAX_AUDIO_SECONDS, MIN_AUDIO_SECONDS, parse_grid
from hmm_engine import GaussianHMM, MixtureGaussianHMM, limits
from hmm_engine.errors import AudioError, InvalidInputError
from hmm_engine.models.semimarkov import SemiMarkovHMM

Progress = Callable[[float, str], None]


def _noop_progress(fraction: float, message: str) -> None:
    pass


@dataclass
class LoadedAudio:
    audio: Any                  # hmm_engine.frontend.audio.Audio
    sha1: str
    samples: np.ndarray         # [N] float32 at ANALYSIS_SR (for segment playback)


def load(source: Any, max_seconds: float = MAX_AUDIO_SECONDS) -> LoadedAudio:
    """Read a path or a Gradio ``(sr, array)`` tuple; errors are :class:`AudioError`."""
    from hmm_engine.frontend.audio import load_audio

    if source is None or (isinstance(source, str) and not source.strip()):
        raise AudioError("no audio given: upload or record a clip, or pick an example")
    if isinstance(source, dict) and "path" in source:  # a FileData-like dict
        source = source["path"]
    audio = load_audio(source, target_sr=ANALYSIS_SR, max_seconds=max_seconds, min_seconds=MIN_AUDIO_SECONDS)
    samples = audio.samples.detach().cpu().numpy()
    return LoadedAudio(audio, hashlib.sha1(samples.tobytes()).hexdigest(), samples)


def feature_config(settings: AnalysisSettings):
    from hmm_engine.frontend.features import FeatureConfig

    return FeatureConfig(kind=settings.feature_kind, num_mels=int(settings.num_mels),
                         num_ceps=int(settings.num_ceps), deltas=int(settings.deltas))


@dataclass
class FeatureBundle:
    values: torch.Tensor        # [T, D] float32 (CPU)
    frame_shift: float
    duration: float
    db: np.ndarray              # [T, F]
    freqs: np.ndarray


def features(loaded: LoadedAudio, settings: AnalysisSettings, scope: str = "") -> tuple[FeatureBundle, bool]:
    """Features and display spectrogram, cached by audio and feature settings (within ``scope``:
    one session's cache hits never reveal another session's work)."""
    from hmm_engine.frontend.features import display_spectrogram, extract_features

    cfg = feature_config(settings)
    key = _sha1(scope, loaded.sha1, repr(cfg))
    hit = FEATURE_CACHE.get(key)
    if hit is not None:
        return hit, True
    feats = extract_features(loaded.audio, cfg)
    db, freqs = display_spectrogram(loaded.audio, cfg)
    bundle = FeatureBundle(feats.values, float(feats.frame_shift), float(feats.duration),
                           np.asarray(db, dtype=np.float32), np.asarray(freqs, dtype=np.float32))
    FEATURE_CACHE.put(key, bundle)
    return bundle, False


def build_model(s: AnalysisSettings, obs_dim: int, num_states: int | None = None,
                num_mixtures: int | None = None):
    """The engine model for these settings (on the CPU; move it with ``.to``)."""
    K = int(num_states if num_states is not None else s.num_states)
    M = int(num_mixtures if num_mixtures is not None else s.num_mixtures)
    if s.model_type == "gaussian":
        return GaussianHMM(K, obs_dim, covariance_type=s.covariance_type, topology=s.topology)
    if s.model_type == "gmm":
        return MixtureGaussianHMM(K, obs_dim, M, covariance_type=s.covariance_type, topology=s.topology)
    return SemiMarkovHMM(K, obs_dim, int(s.max_duration), duration=s.duration_dist, topology=s.topology,
                         covariance_type=s.covariance_type, num_mixtures=1)


def save_model(model: Any, path: str | Path) -> None:
    hmm_engine.save(model, path)


def load_model(path: str | Path) -> Any:
    return hmm_engine.load(path)


def _np(t: Any) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().numpy()
    return np.asarray(t)


def _first(t: Any) -> Any:
    """Drop a leading batch dimension of 1 (engine outputs are [B, ...])."""
    return t[0] if getattr(t, "ndim", 0) >= 1 and t.shape[0] == 1 else t


def _scalar(t: Any) -> float:
    a = _np(t).reshape(-1)
    return float(a.sum())


@dataclass
class TrainedModel:
    model: Any
    history: list
    train_seconds: float
    bic: float
    aic: float
    log_likelihood: float
    posteriors: np.ndarray     # [T, K] (decoder-independent, cached with the model)
    device: str


def _check_sizes(s: AnalysisSettings, num_frames: int, num_states: int | None = None,
                 frame_shift: float = 0.01) -> None:
    K = num_states or s.num_states
    if K > num_frames:
        raise InvalidInputError(
            f"{K} states but only {num_frames} feature frames ({num_frames * frame_shift:.2f} s): "
            "use fewer states or a longer clip")
    if s.model_type == "semi-markov" and s.topology != "ergodic" and K * s.max_duration < num_frames:
        raise InvalidInputError(
            f"a {s.topology} semi-Markov model visits each of its {K} states once, for at most "
            f"{s.max_duration} frames: {K * s.max_duration} frames cannot cover this clip's {num_frames}. "
            "Raise the maximum duration or the number of states, or use the ergodic topology")


def _model_units(s: AnalysisSettings, num_frames: int, obs_dim: int, num_states: int, num_mixtures: int) -> float:
    """Estimated work of one fit plus its decoding and criteria (about two more passes)."""
    mixtures = num_mixtures if s.model_type == "gmm" else 1
    duration = s.max_duration if s.model_type == "semi-markov" else 1
    return limits.analysis_units(num_frames, num_states, s.max_iter + 2, obs_dim, s.covariance_type, mixtures, duration)


def check_cost(s: AnalysisSettings, num_frames: int, obs_dim: int) -> float:
    """Refuse (before training) a request whose estimated work is above
    :data:`hmm_engine.limits.MAX_COMPUTE_UNITS`, naming the settings that drive it."""
    main = _model_units(s, num_frames, obs_dim, s.num_states, s.num_mixtures)
    states = parse_grid(s.sweep_states)
    mixes = (parse_grid(s.sweep_mixtures, lo=1, hi=16) or [s.num_mixtures]) if s.model_type == "gmm" else [1]
    sweep = sum(_model_units(s, num_frames, obs_dim, k, m) for k in states for m in mixes if k <= num_frames)
    total = main + sweep
    if total > limits.MAX_COMPUTE_UNITS:
        drivers = [f"EM iterations ({s.max_iter})", f"states ({s.num_states})"]
        if s.model_type == "gmm":
            drivers.append(f"mixtures ({s.num_mixtures})")
        if s.covariance_type in ("full", "tied"):
            drivers.append(f"covariance ({s.covariance_type} -> diag)")
        if s.model_type == "semi-markov":
            drivers.append(f"max state duration ({s.max_duration})")
        if sweep > main:
            models = len([k for k in states if k <= num_frames]) * len(mixes)
            hint = (f"the sweep first ({models} models: fewer or smaller sweep state / mixture counts), then "
                    + ", ".join(drivers))
        else:
            hint = ", ".join(drivers) + " or use a shorter clip"
        limits.check_compute(total, hint)
    return total


def train(s: AnalysisSettings, x: torch.Tensor, device: torch.device, key: str,
          progress: Progress = _noop_progress) -> tuple[TrainedModel, bool]:
    """Train (or fetch from cache) the model for these settings on features ``x [T, D]``."""
    hit = MODEL_CACHE.get(key)
    if hit is not None:
        return hit, True
    with TRAIN_LOCKS.hold(key):
        hit = MODEL_CACHE.get(key)
        if hit is not None:
            return hit, True
        _check_sizes(s, x.shape[0])
        t0 = time.perf_counter()
        model = build_model(s, x.shape[1]).to(device)
        xd = x.to(device)

        def callback(iteration, log_likelihood, *rest):
            ll = _scalar(log_likelihood)
            progress(min(1.0, (int(iteration) + 1) / s.max_iter),
                     f"EM iteration {int(iteration) + 1}/{s.max_iter}: log L = {ll:.1f}")

        history = model.fit(xd, max_iter=s.max_iter, tol=s.tol, seed=s.seed, callback=callback)
        history = [_scalar(h) for h in (history or [])]
        with torch.no_grad():
            post, ll = model.forward_backward(xd)
            bic, aic = _scalar(model.bic(xd)), _scalar(model.aic(xd))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        trained = TrainedModel(model, history, time.perf_counter() - t0, bic, aic, _scalar(ll),
                               _np(_first(post)).astype(np.float32), str(device))
        MODEL_CACHE.put(key, trained)
        return trained, False


def decode(trained: TrainedModel, x: torch.Tensor, decoder: str) -> tuple[np.ndarray, float]:
    """Decoded state per frame ``[T]`` and the Viterbi score (log p of the best path)."""
    model = trained.model
    device = next((p.device for p in model.parameters()), torch.device("cpu")) if hasattr(model, "parameters") else None
    xd = x.to(device) if device is not None else x
    with torch.no_grad():
        path, score = model.viterbi_decode(xd)
    path = _np(_first(path)).astype(np.int64)
    if decoder == "posterior":
        path = trained.posteriors.argmax(axis=1).astype(np.int64)
    return path, _scalar(score)


def _duration_pmf(model) -> np.ndarray | None:
    d = getattr(model, "durations", None)
    if d is None:
        return None
    try:
        return _np(d).astype(np.float64)
    except Exception:  # noqa: BLE001 - display extra only
        return None


def run_sweep(s: AnalysisSettings, x: torch.Tensor, device: torch.device, audio_key: str,
              progress: Progress = _noop_progress) -> tuple[list[dict], bool]:
    """BIC/AIC for each state (and mixture) count in the settings' grids (cached). A size that
    cannot be fitted is a row with its ``error`` instead of criteria."""
    states = parse_grid(s.sweep_states)
    mixes = parse_grid(s.sweep_mixtures, lo=1, hi=16) if s.model_type == "gmm" else []
    if not states:
        return [], False
    mixes = mixes or [s.num_mixtures if s.model_type == "gmm" else 1]
    base = s.training_dict()
    base.pop("num_states")
    base.pop("num_mixtures")
    key = sweep_key(audio_key, base, states, mixes)
    hit = SWEEP_CACHE.get(key)
    if hit is not None:
        return hit, True
    from hmm_engine.training.selection import sweep as engine_sweep

    # Sizes that cannot cover this clip are listed with their reason, not dropped.
    skipped, fit = [], []
    for k in states:
        try:
            _check_sizes(s, x.shape[0], num_states=k)
            fit.append(k)
        except InvalidInputError as exc:
            skipped += [{"num_states": k, "num_mixtures": m, "error": str(exc)} for m in mixes]
    xd = x.to(device)
    rows = engine_sweep(
        lambda num_states, num_mixtures: build_model(s, x.shape[1], num_states, num_mixtures).to(device),
        xd, num_states=fit, num_mixtures=mixes, max_iter=s.max_iter, tol=s.tol, seed=s.seed,
        progress=lambda done, total: progress(done / max(total, 1), f"BIC/AIC sweep: {done}/{total} models"),
    ) if fit else []
    rows = [{k: (float(v) if isinstance(v, float) else v) for k, v in r.items()} for r in rows] + skipped
    rows.sort(key=lambda r: (r["num_mixtures"], r["num_states"]))
    SWEEP_CACHE.put(key, rows)
    return rows, False
