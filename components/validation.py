"""Dashboard settings: the limits and choices an analysis accepts, and their validation
(every bad option becomes a :class:`DashboardError` with a message that says what to change)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from components.results import AnalysisSettings
from hmm_engine.errors import HMMStudioError

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_AUDIO = Path(os.environ.get("HMM_STUDIO_SAMPLE", ROOT / "assets" / "sample_synth.wav"))
PRECOMPUTED_DIR = ROOT / "assets" / "precomputed"

MAX_AUDIO_SECONDS = float(os.environ.get("HMM_STUDIO_MAX_SECONDS", "60"))
MIN_AUDIO_SECONDS = 0.2
ANALYSIS_SR = 16000
MODEL_TYPES = ("gaussian", "gmm", "semi-markov")
DURATION_DISTS = ("poisson", "gamma", "gaussian", "nonparametric")


class DashboardError(HMMStudioError):
    """A bad dashboard input (unknown option, missing device...) - shown to the user as is."""


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
