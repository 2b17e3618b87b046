"""Plain result containers passed from the pipeline to the figures and the UI.

They hold numpy arrays and Python scalars only (no tensors, no models), so they can be
cached, saved to ``.npz`` (the precomputed sample) and turned into a JSON summary.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hmm_engine.segments import Segment, segments_from_frame_labels

if TYPE_CHECKING:  # the engine's result type only; importing it at run time would load torch here
    from hmm_engine.alignment.decoding import AlignmentResult

SCHEMA_VERSION = 3


@dataclass(frozen=True)
class AnalysisSettings:
    """Everything that defines one analysis. ``training_key`` covers what training depends on;
    the rest (``decoder``) only changes decoding, which reuses a cached trained model."""

    model_type: str = "gaussian"          # "gaussian" | "gmm" | "semi-markov"
    num_states: int = 8
    num_mixtures: int = 2                 # gmm (and semi-Markov emissions when > 1 requested)
    covariance_type: str = "diag"         # "diag" | "full" | "spherical" | "tied"
    topology: str = "ergodic"             # "ergodic" | "left-to-right" | "bakis"
    max_iter: int = 20
    tol: float = 1e-3
    feature_kind: str = "mfcc"            # "mfcc" | "logmel"
    num_mels: int = 40
    num_ceps: int = 13
    deltas: int = 2
    max_duration: int = 30                # semi-Markov: longest state duration, in frames
    duration_dist: str = "poisson"        # semi-Markov: "poisson" | "gamma" | "gaussian" | "nonparametric"
    device: str = "auto"                  # "auto" | "cpu" | "cuda"
    seed: int = 0
    sweep_states: str = ""                # e.g. "2,4,8,16": BIC/AIC sweep over these state counts
    sweep_mixtures: str = ""              # e.g. "1,2" (gmm only); empty = the model's own
    decoder: str = "viterbi"              # decoding only: "viterbi" | "posterior" (per-frame argmax)

    DECODING_FIELDS = ("decoder",)
    SWEEP_FIELDS = ("sweep_states", "sweep_mixtures")

    def training_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k in self.DECODING_FIELDS + self.SWEEP_FIELDS:
            d.pop(k)
        return d

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class AnalysisResult:
    """One analysed utterance: the data behind every figure and the JSON summary."""

    settings: dict
    sample_rate: int
    duration: float
    frame_shift: float
    num_frames: int
    obs_dim: int
    spectrogram_db: np.ndarray            # [T, F] dB (display)
    freqs: np.ndarray                     # [F] Hz
    posteriors: np.ndarray                # [T, K]
    path: np.ndarray                      # [T] decoded states
    viterbi_score: float
    log_likelihood: float                 # log p(x | trained model), forward algorithm
    history: list                         # EM log-likelihood per iteration
    startprob: np.ndarray                 # [K]
    transmat: np.ndarray                  # [K, K]
    duration_pmf: np.ndarray | None       # [K, Dmax] (semi-Markov) or None
    bic: float
    aic: float
    sweep: list = field(default_factory=list)   # [{num_states, num_mixtures, bic, aic, log_likelihood}]
    timings: dict = field(default_factory=dict)  # stage -> seconds
    cached: list = field(default_factory=list)   # stages served from cache
    peak_rss_mb: float | None = None
    peak_gpu_mb: float | None = None
    device: str = "cpu"
    rtf: float | None = None
    audio_hash: str = ""
    training_key: str = ""
    model_file: str | None = None
    files: dict = field(default_factory=dict)    # kind -> path (textgrid, csv, json, model)

    @property
    def num_states(self) -> int:
        return int(self.transmat.shape[0])

    def segments(self) -> list[Segment]:
        # Same convention as states.TextGrid: the last segment ends at the audio's duration.
        names = [f"s{k}" for k in range(self.num_states)]
        return segments_from_frame_labels(self.path, self.frame_shift, self.duration, names=names)

    def summary(self, max_segments: int = 2000) -> dict:
        segs = self.segments()
        h = [float(v) for v in self.history]
        return _jsonable({
            "schema": SCHEMA_VERSION,
            "settings": self.settings,
            "audio": {"duration": self.duration, "sample_rate": self.sample_rate, "sha1": self.audio_hash},
            "num_states": self.num_states,
            "num_frames": self.num_frames,
            "obs_dim": self.obs_dim,
            "frame_shift": self.frame_shift,
            "log_likelihood": self.log_likelihood,
            "log_likelihood_per_frame": self.log_likelihood / max(1, self.num_frames),
            "viterbi_score": self.viterbi_score,
            "history": h,
            "iterations": len(h),
            "bic": self.bic,
            "aic": self.aic,
            "startprob": self.startprob,
            "transmat": self.transmat,
            "sweep": self.sweep,
            "num_segments": len(segs),
            "segments": [{"label": s.label, "start": round(s.start, 6), "end": round(s.end, 6)}
                         for s in segs[:max_segments]],
            "timings": self.timings,
            "cached": self.cached,
            "total_seconds": float(sum(self.timings.values())),
            "peak_rss_mb": self.peak_rss_mb,
            "peak_gpu_mb": self.peak_gpu_mb,
            "device": self.device,
            "rtf": self.rtf,
        })

    # ---------------------------------------------------------------- persistence (precomputed)

    _ARRAYS = ("spectrogram_db", "freqs", "posteriors", "path", "startprob", "transmat", "duration_pmf")

    def save(self, path: str | Path) -> None:
        path = Path(path)
        meta = {k: getattr(self, k) for k in (f.name for f in dataclasses.fields(self)) if k not in self._ARRAYS}
        meta.pop("files", None)
        meta.pop("model_file", None)
        meta["schema"] = SCHEMA_VERSION
        arrays = {k: getattr(self, k) for k in self._ARRAYS if getattr(self, k) is not None}
        arrays["spectrogram_db"] = arrays["spectrogram_db"].astype(np.float16)
        np.savez_compressed(path, meta=np.frombuffer(json.dumps(_jsonable(meta)).encode(), dtype=np.uint8), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> "AnalysisResult":
        with np.load(Path(path), allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            if meta.pop("schema", None) != SCHEMA_VERSION:
                raise ValueError("precomputed result has another schema version")
            arrays = {k: np.array(z[k]) for k in cls._ARRAYS if k in z.files}
        arrays["spectrogram_db"] = arrays["spectrogram_db"].astype(np.float32)
        arrays.setdefault("duration_pmf", None)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in meta.items() if k in names}, **arrays)


@dataclass
class AlignView:
    """What the Align tab shows of one forced alignment: the engine's
    :class:`hmm_engine.alignment.AlignmentResult` (``alignment``) plus the display data (spectrogram),
    the evaluation against a reference, meters and downloads.

    ``phones``/``words`` are plain copies of the alignment's tiers (a long clip, aligned piece by
    piece, has tiers but no single engine result, so ``alignment`` is then None)."""

    settings: dict
    duration: float
    frame_shift: float
    spectrogram_db: np.ndarray
    freqs: np.ndarray
    phones: list                          # [Segment] hypothesis phones
    words: list                           # [Segment] hypothesis words (may be empty)
    reference: list                       # [Segment] reference phones (may be empty)
    reference_tier: str | None
    metrics: dict                         # accuracy within tolerances, mean/median error (ms)
    boundary_errors: list                 # [(ref_time, hyp_time, label)]
    log_likelihood: float | None
    phone_sequence: list
    timings: dict = field(default_factory=dict)
    peak_rss_mb: float | None = None
    peak_gpu_mb: float | None = None
    device: str = "cpu"
    rtf: float | None = None
    files: dict = field(default_factory=dict)
    history: list = field(default_factory=list)   # EM log-likelihood per frame, per iteration
    transcript_fit: dict | None = None            # with given phone models: aligner.transcript_fit
    warnings: list = field(default_factory=list)  # [str] what the user should know (e.g. unknown phones)
    pieces: list = field(default_factory=list)    # a long clip's pieces (long_form.Piece as dicts)
    alignment: "AlignmentResult | None" = field(default=None, repr=False)  # the engine's result

    def summary(self) -> dict:
        def segs(lst):
            return [{"label": s.label, "start": round(s.start, 6), "end": round(s.end, 6),
                     "score": s.score} for s in lst]
        return _jsonable({
            "schema": SCHEMA_VERSION,
            "settings": self.settings,
            "duration": self.duration,
            "frame_shift": self.frame_shift,
            "phone_sequence": self.phone_sequence,
            "num_phones": len(self.phones),
            "phones": segs(self.phones),
            "words": segs(self.words),
            "reference_tier": self.reference_tier,
            "num_reference_phones": len(self.reference),
            "metrics": self.metrics,
            "log_likelihood": self.log_likelihood,
            "history": self.history,
            "transcript_fit": self.transcript_fit,
            "warnings": self.warnings,
            "pieces": self.pieces,
            "timings": self.timings,
            "total_seconds": float(sum(self.timings.values())),
            "peak_rss_mb": self.peak_rss_mb,
            "peak_gpu_mb": self.peak_gpu_mb,
            "device": self.device,
            "rtf": self.rtf,
        })


def _jsonable(x: Any) -> Any:
    """numpy/torch scalars and arrays -> plain JSON types; NaN/inf -> None."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        return v if math.isfinite(v) else None
    if hasattr(x, "item") and callable(x.item) and getattr(x, "ndim", 1) == 0:
        return _jsonable(x.item())
    if isinstance(x, Segment):
        return {"label": x.label, "start": x.start, "end": x.end, "score": x.score}
    return x
