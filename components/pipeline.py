"""Audio -> features -> model -> results, with per-stage timings, peak memory and caches.

This is the only dashboard module that talks to ``hmm_engine``; everything engine-specific
(model construction, device handling, how outputs are shaped) is adapted here.

Caches (process-wide, thread-safe, bounded LRU):

* features: keyed by the audio content hash and the feature settings;
* trained models: keyed by the audio hash and every *training* setting (see
  :meth:`AnalysisSettings.training_dict`), so a change of a decoding setting only re-decodes;
  concurrent identical requests wait for one training run instead of repeating it;
* BIC/AIC sweeps: keyed by audio, training settings less the state/mixture counts, and grid.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from components.results import SCHEMA_VERSION, AnalysisResult, AnalysisSettings
from hmm_engine.errors import AudioError, HMMStudioError, InvalidInputError

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_AUDIO = Path(os.environ.get("HMM_STUDIO_SAMPLE", ROOT / "assets" / "sample_synth.wav"))
PRECOMPUTED_DIR = ROOT / "assets" / "precomputed"

MAX_AUDIO_SECONDS = float(os.environ.get("HMM_STUDIO_MAX_SECONDS", "60"))
MIN_AUDIO_SECONDS = 0.2
ANALYSIS_SR = 16000
MODEL_TYPES = ("gaussian", "gmm", "semi-markov")
DURATION_DISTS = ("poisson", "gamma", "gaussian", "nonparametric")
OUTPUT_DIR = Path(tempfile.gettempdir()) / "hmm_studio_outputs"
OUTPUT_MAX_AGE_S = 2 * 3600

Progress = Callable[[float, str], None]


class DashboardError(HMMStudioError):
    """A bad dashboard input (unknown option, missing device...) - shown to the user as is."""


# ------------------------------------------------------------------------------ utilities


class LRU:
    """A small thread-safe LRU map."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._d: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
        return None

    def put(self, key, value) -> None:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.capacity:
                self._d.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()

    def __len__(self) -> int:
        return len(self._d)


class KeyedLocks:
    """One lock per key, so identical concurrent requests train once (locks are dropped
    when nobody holds or waits for them)."""

    def __init__(self):
        self._locks: dict[str, list] = {}  # key -> [lock, users]
        self._guard = threading.Lock()

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            entry = self._locks.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._guard:
                entry[1] -= 1
                if entry[1] == 0:
                    self._locks.pop(key, None)

    def __len__(self) -> int:
        return len(self._locks)


FEATURE_CACHE = LRU(16)
MODEL_CACHE = LRU(16)
SWEEP_CACHE = LRU(16)
_TRAIN_LOCKS = KeyedLocks()


def _sha1(*parts: Any) -> str:
    h = hashlib.sha1()
    for p in parts:
        if isinstance(p, (bytes, bytearray, memoryview)):
            h.update(bytes(p))
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()


_ENGINE_HASH: str | None = None


# The engine parts an analysis runs through (the aligner, CLI, corpus tools are not).
_ANALYSIS_SOURCES = ("__init__.py", "emissions.py", "topology.py", "durations.py", "serialization.py",
                     "errors.py", "frontend", "inference", "models", "training")


def engine_hash() -> str:
    """Hash of the engine source an analysis depends on: a precomputed result made by other
    code is stale."""
    global _ENGINE_HASH
    if _ENGINE_HASH is None:
        h = hashlib.sha1()
        base = ROOT / "hmm_engine"
        files = []
        for name in _ANALYSIS_SOURCES:
            p = base / name
            files += sorted(p.rglob("*.py")) if p.is_dir() else ([p] if p.exists() else [])
        for p in files:
            h.update(p.relative_to(ROOT).as_posix().encode())
            h.update(p.read_bytes())
        _ENGINE_HASH = h.hexdigest()
    return _ENGINE_HASH


class MemoryMeter:
    """Peak resident memory of this process during a block (Linux ``VmHWM``, reset through
    ``/proc/self/clear_refs``; falls back to ``getrusage`` max RSS), and peak CUDA memory.

    The process is shared by concurrent requests, so under load the CPU figure is the
    process peak while the request ran, not the request's own allocation.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_rss_mb: float | None = None
        self.peak_gpu_mb: float | None = None

    def __enter__(self):
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc):
        self.peak_rss_mb = _peak_rss_mb()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_gpu_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        return False


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class StageTimer:
    def __init__(self, device: torch.device | None = None):
        self.timings: dict[str, float] = {}
        self.device = device

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.device is not None and self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0


def resolve_device(name: str | None) -> torch.device:
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DashboardError("device 'cuda' was requested but no CUDA GPU is available here; choose 'auto' or 'cpu'")
        return torch.device(name)
    raise DashboardError(f"unknown device {name!r}: choose auto, cpu or cuda")


def _noop_progress(fraction: float, message: str) -> None:
    pass


# ------------------------------------------------------------------------------ audio and features


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


def features(loaded: LoadedAudio, settings: AnalysisSettings) -> tuple[FeatureBundle, bool]:
    """Features and display spectrogram, cached by audio and feature settings."""
    from hmm_engine.frontend.features import display_spectrogram, extract_features

    cfg = feature_config(settings)
    key = _sha1(loaded.sha1, repr(cfg))
    hit = FEATURE_CACHE.get(key)
    if hit is not None:
        return hit, True
    feats = extract_features(loaded.audio, cfg)
    db, freqs = display_spectrogram(loaded.audio, cfg)
    bundle = FeatureBundle(feats.values, float(feats.frame_shift), float(feats.duration),
                           np.asarray(db, dtype=np.float32), np.asarray(freqs, dtype=np.float32))
    FEATURE_CACHE.put(key, bundle)
    return bundle, False


# ------------------------------------------------------------------------------ models


def validate_settings(s: AnalysisSettings) -> AnalysisSettings:
    """Coerce numbers and reject bad options with clear messages."""
    def as_int(name, lo, hi):
        v = getattr(s, name)
        try:
            iv = int(v)
        except (TypeError, ValueError):
            raise DashboardError(f"{name} must be an integer, got {v!r}") from None
        if float(v) != iv or not lo <= iv <= hi:
            raise DashboardError(f"{name} must be an integer between {lo} and {hi}, got {v!r}")
        return iv

    model_type = str(s.model_type).strip().lower().replace("_", "-")
    aliases = {"gaussian hmm": "gaussian", "gaussian": "gaussian", "gmm": "gmm", "gmm-hmm": "gmm",
               "gaussian mixture": "gmm", "mixture": "gmm", "semi-markov": "semi-markov",
               "semimarkov": "semi-markov", "hsmm": "semi-markov"}
    if model_type not in aliases:
        raise DashboardError(f"unknown model type {s.model_type!r}: choose gaussian, gmm or semi-markov")
    topology = str(s.topology).strip().lower()
    if topology not in ("ergodic", "left-to-right", "bakis"):
        raise DashboardError(f"unknown topology {s.topology!r}: choose ergodic, left-to-right or bakis")
    cov = str(s.covariance_type).strip().lower()
    if cov not in ("diag", "full", "spherical", "tied"):
        raise DashboardError(f"unknown covariance type {s.covariance_type!r}: choose diag, full, spherical or tied")
    kind = str(s.feature_kind).strip().lower().replace("-", "")
    if kind not in ("mfcc", "logmel"):
        raise DashboardError(f"unknown features {s.feature_kind!r}: choose mfcc or logmel")
    decoder = str(s.decoder).strip().lower()
    if decoder not in ("viterbi", "posterior"):
        raise DashboardError(f"unknown decoder {s.decoder!r}: choose viterbi or posterior")
    dur = str(s.duration_dist).strip().lower()
    if dur not in DURATION_DISTS:
        raise DashboardError(f"unknown duration distribution {s.duration_dist!r}: choose {', '.join(DURATION_DISTS)}")
    try:
        tol = float(s.tol)
    except (TypeError, ValueError):
        raise DashboardError(f"tolerance must be a number, got {s.tol!r}") from None
    if not (tol >= 0 and np.isfinite(tol)):
        raise DashboardError(f"tolerance must be a non-negative number, got {s.tol!r}")
    num_mels = as_int("num_mels", 4, 128)
    out = replace(
        s, model_type=aliases[model_type], topology=topology, covariance_type=cov, feature_kind=kind,
        decoder=decoder, duration_dist=dur, tol=tol,
        num_states=as_int("num_states", 1, 128), num_mixtures=as_int("num_mixtures", 1, 16),
        max_iter=as_int("max_iter", 1, 500), num_mels=num_mels, num_ceps=as_int("num_ceps", 1, num_mels),
        deltas=as_int("deltas", 0, 2), max_duration=as_int("max_duration", 2, 500),
        seed=as_int("seed", 0, 2**31 - 1), device=str(s.device or "auto").strip().lower(),
        sweep_states=_grid_text(s.sweep_states, "sweep states", 1, 128),
        sweep_mixtures=_grid_text(s.sweep_mixtures, "sweep mixtures", 1, 16),
    )
    return out


def _grid_text(text: Any, what: str, lo: int, hi: int) -> str:
    vals = parse_grid(text, what, lo, hi)
    return ",".join(str(v) for v in vals)


def parse_grid(text: Any, what: str = "grid", lo: int = 1, hi: int = 128) -> list[int]:
    if text is None:
        return []
    if isinstance(text, (list, tuple)):
        items = [str(v) for v in text]
    else:
        items = str(text).replace(";", ",").replace(" ", ",").split(",")
    out = []
    for it in items:
        it = it.strip()
        if not it:
            continue
        try:
            v = int(it)
        except ValueError:
            raise DashboardError(f"{what}: {it!r} is not an integer (give e.g. 2,4,8)") from None
        if not lo <= v <= hi:
            raise DashboardError(f"{what}: {v} is outside {lo}..{hi}")
        out.append(v)
    return sorted(set(out))


def _engine_models():
    """GaussianHMM / MixtureGaussianHMM from the package root, or from hmm_engine.models."""
    try:
        import hmm_engine

        return hmm_engine.GaussianHMM, hmm_engine.MixtureGaussianHMM
    except AttributeError:
        from hmm_engine.models import GaussianHMM, MixtureGaussianHMM

        return GaussianHMM, MixtureGaussianHMM


def build_model(s: AnalysisSettings, obs_dim: int, num_states: int | None = None,
                num_mixtures: int | None = None):
    """The engine model for these settings (on the CPU; move it with ``.to``)."""
    K = int(num_states if num_states is not None else s.num_states)
    M = int(num_mixtures if num_mixtures is not None else s.num_mixtures)
    GaussianHMM, MixtureGaussianHMM = _engine_models()
    if s.model_type == "gaussian":
        return GaussianHMM(K, obs_dim, covariance_type=s.covariance_type, topology=s.topology)
    if s.model_type == "gmm":
        return MixtureGaussianHMM(K, obs_dim, M, covariance_type=s.covariance_type, topology=s.topology)
    try:
        from hmm_engine.models.semimarkov import SemiMarkovHMM
    except ImportError:
        raise DashboardError("the semi-Markov model is not available in this build of hmm_engine") from None
    return SemiMarkovHMM(K, obs_dim, int(s.max_duration), duration=s.duration_dist, topology=s.topology,
                         covariance_type=s.covariance_type, num_mixtures=1)


def save_model(model: Any, path: str | Path) -> None:
    import hmm_engine

    saver = getattr(hmm_engine, "save", None)
    if saver is None:
        from hmm_engine import serialization  # noqa: F401 - raises a clear ImportError if absent

        saver = serialization.save
    saver(model, path)


def load_model(path: str | Path) -> Any:
    import hmm_engine

    loader = getattr(hmm_engine, "load", None)
    if loader is None:
        from hmm_engine import serialization

        loader = serialization.load
    return loader(path)


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


def train(s: AnalysisSettings, x: torch.Tensor, device: torch.device, key: str,
          progress: Progress = _noop_progress) -> tuple[TrainedModel, bool]:
    """Train (or fetch from cache) the model for these settings on features ``x [T, D]``."""
    hit = MODEL_CACHE.get(key)
    if hit is not None:
        return hit, True
    with _TRAIN_LOCKS.hold(key):
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
    """BIC/AIC for each state (and mixture) count in the settings' grids (cached)."""
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

    xd = x.to(device)
    rows = engine_sweep(
        lambda num_states, num_mixtures: build_model(s, x.shape[1], num_states, num_mixtures).to(device),
        xd, num_states=[k for k in states if k <= x.shape[0]], num_mixtures=mixes,
        max_iter=s.max_iter, tol=s.tol, seed=s.seed,
        progress=lambda done, total: progress(done / max(total, 1), f"BIC/AIC sweep: {done}/{total} models"),
    )
    rows = [{k: (float(v) if isinstance(v, float) else v) for k, v in r.items()} for r in rows if "bic" in r]
    SWEEP_CACHE.put(key, rows)
    return rows, False


def sweep_key(audio_sha1: str, base_settings: dict, states: list, mixes: list) -> str:
    return _sha1("sweep", audio_sha1, base_settings, list(states), list(mixes), SCHEMA_VERSION)


def training_key(s: AnalysisSettings, audio_sha1: str, device: torch.device) -> str:
    return _sha1("train", audio_sha1, s.training_dict(), str(device.type), SCHEMA_VERSION)


def analyze(source: Any, settings: AnalysisSettings | None = None, progress: Progress = _noop_progress,
            write_files: bool = True) -> AnalysisResult:
    """Run the whole analysis of one clip. Raises :class:`HMMStudioError` on bad input."""
    s = validate_settings(settings or AnalysisSettings())
    device = resolve_device(s.device)
    timer = StageTimer(device)
    cached: list[str] = []
    with MemoryMeter(device) as mem:
        progress(0.0, "loading audio")
        with timer.stage("load"):
            loaded = load(source)
        progress(0.05, "features")
        with timer.stage("features"):
            feats, hit = features(loaded, s)
        if hit:
            cached.append("features")
        x = feats.values
        _check_sizes(s, x.shape[0], frame_shift=feats.frame_shift)
        key = training_key(s, loaded.sha1, device)
        with timer.stage("training"):
            trained, hit = train(s, x, device, key,
                                 progress=lambda f, m: progress(0.1 + 0.7 * f, m))
        if hit:
            cached.append("training")
        progress(0.85, "decoding")
        with timer.stage("decoding"):
            path, vscore = decode(trained, x, s.decoder)
        if parse_grid(s.sweep_states):
            with timer.stage("sweep"):
                sweep, hit = run_sweep(s, x, device, loaded.sha1,
                                       progress=lambda f, m: progress(0.88 + 0.1 * f, m))
            if hit:
                cached.append("sweep")
        else:
            sweep = []
    result = AnalysisResult(
        settings=s.to_dict(), sample_rate=loaded.audio.sample_rate, duration=feats.duration,
        frame_shift=feats.frame_shift, num_frames=int(x.shape[0]), obs_dim=int(x.shape[1]),
        spectrogram_db=feats.db, freqs=feats.freqs, posteriors=trained.posteriors, path=path,
        viterbi_score=vscore, log_likelihood=trained.log_likelihood, history=trained.history,
        startprob=_np(trained.model.startprob).astype(np.float64),
        transmat=_np(trained.model.transmat).astype(np.float64),
        duration_pmf=_duration_pmf(trained.model), bic=trained.bic, aic=trained.aic, sweep=sweep,
        timings=dict(timer.timings), cached=cached, peak_rss_mb=mem.peak_rss_mb, peak_gpu_mb=mem.peak_gpu_mb,
        device=trained.device, audio_hash=loaded.sha1, training_key=key,
    )
    compute = sum(v for k, v in timer.timings.items() if k != "load")
    result.rtf = compute / max(result.duration, 1e-9)
    if write_files:
        with timer.stage("exports"):
            result.files = write_exports(result, trained.model)
        result.timings = dict(timer.timings)
    return result


# ------------------------------------------------------------------------------ exports


def _output_dir(tag: str) -> Path:
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in OUTPUT_DIR.iterdir():  # cheap cleanup of old request folders
        try:
            if now - old.stat().st_mtime > OUTPUT_MAX_AGE_S:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    d = Path(tempfile.mkdtemp(prefix=f"{tag}-", dir=OUTPUT_DIR))
    return d


def write_exports(result: AnalysisResult, model: Any = None) -> dict:
    """TextGrid of the state segmentation, per-frame CSV/JSON (path + posteriors), model file."""
    from hmm_engine.alignment.exports import frames_to_csv, frames_to_json
    from hmm_engine.alignment.textgrids import write_textgrid

    d = _output_dir(result.training_key[:10] or "analysis")
    names = [f"s{k}" for k in range(result.num_states)]
    files = {}
    segs = result.segments()  # the same segments summary.json lists
    files["textgrid"] = str(d / "states.TextGrid")
    write_textgrid(files["textgrid"], {"states": segs}, result.duration)
    post = np.round(result.posteriors.astype(np.float64), 6)  # 6 decimals: half the file size
    files["csv"] = str(d / "frames.csv")
    frames_to_csv(result.path, post, result.frame_shift, names, path=files["csv"])
    files["json"] = str(d / "frames.json")
    frames_to_json(result.path, post, result.frame_shift, names, path=files["json"])
    if model is not None:
        try:
            save_model(model, d / "model.pt")
            files["model"] = str(d / "model.pt")
        except ImportError:  # engine without model files yet: the other downloads still work
            pass
    files["summary"] = str(d / "summary.json")
    Path(files["summary"]).write_text(json.dumps(result.summary(), indent=1))
    return files


def segment_audio(samples: np.ndarray, sample_rate: int, start: float, end: float) -> tuple[int, np.ndarray]:
    """The ``[start, end)`` slice of a clip as a Gradio ``(sr, int16 array)`` value."""
    a = max(0, int(round(start * sample_rate)))
    b = min(samples.shape[0], int(round(end * sample_rate)))
    if b <= a:
        raise DashboardError(f"segment {start:.3f}-{end:.3f} s is empty")
    pcm = np.clip(samples[a:b], -1.0, 1.0)
    return sample_rate, (pcm * 32767).astype(np.int16)


__all__ = [
    "AnalysisSettings", "AnalysisResult", "DashboardError", "analyze", "load", "features", "train", "decode",
    "run_sweep", "build_model", "resolve_device", "validate_settings", "parse_grid", "segment_audio",
    "write_exports", "MODEL_CACHE", "FEATURE_CACHE", "SWEEP_CACHE", "engine_hash",
]
