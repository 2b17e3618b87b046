"""Feature frames (MFCC or log-mel) on an exact, documented frame grid.

Frame/time convention
---------------------
With ``shift = frame_shift_ms / 1000`` seconds and ``hop = shift * sample_rate`` samples
(which must be a whole number), frame ``i`` stands for the time interval
``[i * shift, (i + 1) * shift)``. An utterance of ``N`` samples (``duration = N / sr``) has
``T = ceil(N / hop) = ceil(duration / shift)`` frames; the last interval may run past the end
of the audio. Each analysis window (``frame_length_ms`` long, ``win`` samples) is centred on
the middle of its frame's interval: it covers samples ``[i*hop - (win-hop)//2, ... + win)``,
with the signal reflected at both ends where the window reaches outside it.
A run of frames ``[a, b)`` maps to the time span ``[a * shift, min(b * shift, duration))``.

The spectra are computed by explicit framing + ``torch.fft.rfft`` (so the grid above holds
exactly), with the mel filterbank, DCT and deltas from ``torchaudio.functional``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Hashable, Literal, Sequence

import numpy as np
import torch
import torchaudio.functional as AF

from hmm_engine.segments import Segment, num_frames_for, segments_from_frame_labels
from hmm_engine.errors import AudioError, InvalidInputError
from hmm_engine.frontend.audio import Audio

LOG_FLOOR = 1e-10  # power floor before log: keeps digital silence finite (log -> -23)


@dataclass(frozen=True)
class FeatureConfig:
    """How to turn audio into feature frames.

    Attributes:
        kind: ``"mfcc"`` (DCT-II of log-mel, ``num_ceps`` coefficients incl. c0) or ``"logmel"``.
        num_mels: mel filters (HTK mel scale, unnormalised triangles).
        num_ceps: cepstral coefficients kept for MFCC.
        deltas: 0 (static only), 1 (+ delta) or 2 (+ delta + delta-delta).
        delta_window: N in the regression delta ``sum_n n (c[t+n] - c[t-n]) / (2 sum_n n^2)``.
        frame_shift_ms, frame_length_ms: hop and analysis window length.
        cmvn: per-utterance mean and variance normalisation of every dimension.
        fmin, fmax: filterbank range in Hz (``fmax=None`` means Nyquist).
        preemphasis: coefficient of ``x[n] - a x[n-1]`` applied per frame (0 disables).
        min_frames: fewer frames than this is an error (deltas need context).
    """

    kind: Literal["mfcc", "logmel"] = "mfcc"
    num_mels: int = 40
    num_ceps: int = 13
    deltas: int = 2
    delta_window: int = 2
    frame_shift_ms: float = 10.0
    frame_length_ms: float = 25.0
    cmvn: bool = True
    fmin: float = 20.0
    fmax: float | None = None
    preemphasis: float = 0.97
    min_frames: int = 5

    def __post_init__(self) -> None:
        if self.kind not in ("mfcc", "logmel"):
            raise InvalidInputError(f"FeatureConfig.kind must be 'mfcc' or 'logmel', got {self.kind!r}")
        if not (isinstance(self.num_mels, int) and self.num_mels >= 1):
            raise InvalidInputError(f"num_mels must be a positive integer, got {self.num_mels!r}")
        if self.kind == "mfcc" and not (isinstance(self.num_ceps, int) and 1 <= self.num_ceps <= self.num_mels):
            raise InvalidInputError(f"num_ceps must be between 1 and num_mels={self.num_mels}, got {self.num_ceps!r}")
        if self.deltas not in (0, 1, 2):
            raise InvalidInputError(f"deltas must be 0, 1 or 2, got {self.deltas!r}")
        if not (isinstance(self.delta_window, int) and self.delta_window >= 1):
            raise InvalidInputError(f"delta_window must be a positive integer, got {self.delta_window!r}")
        if not (self.frame_shift_ms > 0 and math.isfinite(self.frame_shift_ms)):
            raise InvalidInputError(f"frame_shift_ms must be positive, got {self.frame_shift_ms!r}")
        if not (self.frame_length_ms >= self.frame_shift_ms and math.isfinite(self.frame_length_ms)):
            raise InvalidInputError(
                f"frame_length_ms ({self.frame_length_ms}) must be at least frame_shift_ms ({self.frame_shift_ms})"
            )
        if not (self.fmin >= 0 and (self.fmax is None or self.fmax > self.fmin)):
            raise InvalidInputError(f"need 0 <= fmin < fmax, got fmin={self.fmin}, fmax={self.fmax}")
        if not 0.0 <= self.preemphasis < 1.0:
            raise InvalidInputError(f"preemphasis must be in [0, 1), got {self.preemphasis!r}")

    @property
    def dim(self) -> int:
        """Feature dimension D = base dimension * (1 + deltas)."""
        base = self.num_ceps if self.kind == "mfcc" else self.num_mels
        return base * (1 + self.deltas)


@dataclass(frozen=True)
class Features:
    """Feature frames of one utterance.

    Attributes:
        values: ``[T, D]`` float32, ``T = ceil(duration / frame_shift)``.
        frame_shift: seconds per frame.
        config: the :class:`FeatureConfig` used.
        duration: audio duration in seconds.
        sample_rate: audio rate in Hz.
    """

    values: torch.Tensor
    frame_shift: float
    config: FeatureConfig
    duration: float
    sample_rate: int = field(default=16000)

    @property
    def num_frames(self) -> int:
        return int(self.values.shape[0])

    def frame_to_time(self, i: int) -> float:
        """Start time of frame ``i``: ``min(i * shift, duration)``; ``i = T`` gives ``duration``."""
        if not 0 <= i <= self.num_frames:
            raise InvalidInputError(f"frame index {i} outside [0, {self.num_frames}]")
        return min(i * self.frame_shift, self.duration)

    def time_to_frame(self, t: float) -> int:
        """Index of the frame whose interval ``[i*shift, (i+1)*shift)`` contains ``t``.

        ``t = duration`` maps to the last frame. Times outside ``[0, duration]`` raise.
        """
        if not (-1e-9 <= t <= self.duration + 1e-9):
            raise InvalidInputError(f"time {t} s outside the utterance [0, {self.duration}]")
        # The epsilon keeps exact multiples (e.g. 0.03 / 0.01 = 2.9999999999999996) in their frame.
        return min(max(0, math.floor(t / self.frame_shift + 1e-9)), self.num_frames - 1)

    def frame_times(self) -> np.ndarray:
        """``[T]`` start time of every frame in seconds."""
        return np.arange(self.num_frames) * self.frame_shift

    def frames_to_segments(
        self, labels_per_frame: Sequence[Hashable], scores: Sequence[float] | None = None
    ) -> list[Segment]:
        """Merge runs of per-frame labels (``[T]``) into segments, per the frame convention."""
        if len(labels_per_frame) != self.num_frames:
            raise InvalidInputError(f"got {len(labels_per_frame)} frame labels for {self.num_frames} frames")
        return segments_from_frame_labels(labels_per_frame, self.frame_shift, self.duration, scores)


def _grid(audio: Audio, config: FeatureConfig) -> tuple[int, int, int]:
    """Return ``(hop, win, T)`` in samples/frames, checking the hop is a whole number of samples."""
    if not isinstance(audio, Audio):
        raise InvalidInputError(f"expected an Audio (see load_audio), got {type(audio).__name__}")
    sr = audio.sample_rate
    hop_exact = config.frame_shift_ms * sr / 1000.0
    hop = round(hop_exact)
    if hop < 1 or abs(hop - hop_exact) > 1e-6:
        raise InvalidInputError(
            f"frame_shift_ms={config.frame_shift_ms} is {hop_exact:g} samples at {sr} Hz; "
            "it must be a whole number of samples (choose another shift or analysis rate)"
        )
    win = max(hop, round(config.frame_length_ms * sr / 1000.0))
    num_frames = math.ceil(audio.num_samples / hop)
    if num_frames < config.min_frames:
        raise AudioError(
            f"audio of {audio.duration:.3f} s gives {num_frames} frames of {config.frame_shift_ms:g} ms; "
            f"at least {config.min_frames} are needed"
        )
    return hop, win, num_frames


def _frames(audio: Audio, hop: int, win: int, num_frames: int) -> torch.Tensor:
    """Cut ``[T, win]`` analysis windows, window i centred on the middle of frame i's interval."""
    x = audio.samples.to(torch.float32)
    n = x.shape[0]
    left = (win - hop) // 2
    right = (num_frames - 1) * hop + win - left - n  # >= left >= 0 because T = ceil(n / hop)
    mode = "reflect" if max(left, right) < n else "constant"  # reflect needs pad < length
    padded = torch.nn.functional.pad(x[None, None, :], (left, right), mode=mode)[0, 0]
    frames = padded.unfold(0, win, hop)
    assert frames.shape[0] == num_frames, (frames.shape, num_frames)
    return frames


def _power_spectrum(frames: torch.Tensor, win: int, preemphasis: float) -> tuple[torch.Tensor, int]:
    """``[T, win]`` frames -> ``([T, n_fft//2 + 1]`` power spectrum, ``n_fft)``."""
    frames = frames - frames.mean(dim=1, keepdim=True)  # remove DC per frame
    if preemphasis > 0:
        frames = torch.cat([frames[:, :1] * (1 - preemphasis), frames[:, 1:] - preemphasis * frames[:, :-1]], dim=1)
    window = torch.hamming_window(win, periodic=False, dtype=frames.dtype)
    # Zero-padding to a power of two only interpolates the spectrum; the time grid is unchanged.
    n_fft = 1 << (win - 1).bit_length()
    spectrum = torch.fft.rfft(frames * window, n=n_fft, dim=1)
    return spectrum.real**2 + spectrum.imag**2, n_fft


def _add_deltas(base: torch.Tensor, order: int, window: int) -> torch.Tensor:
    """``[T, B]`` -> ``[T, B * (1 + order)]`` with regression deltas (edges replicated)."""
    parts = [base]
    current = base
    for _ in range(order):
        # compute_deltas works on (..., feature, time).
        current = AF.compute_deltas(current.T.unsqueeze(0), win_length=2 * window + 1, mode="replicate")[0].T
        parts.append(current)
    return torch.cat(parts, dim=1)


def extract_features(audio: Audio, config: FeatureConfig | None = None) -> Features:
    """Compute MFCC or log-mel features on the frame grid described in the module docstring.

    Args:
        audio: mono audio from :func:`hmm_engine.frontend.audio.load_audio`.
        config: feature settings (default :class:`FeatureConfig`).

    Returns:
        :class:`Features` with ``values`` ``[T, config.dim]`` float32, ``T = ceil(duration / shift)``.

    Raises:
        AudioError: fewer than ``config.min_frames`` frames.
        InvalidInputError: the frame shift is not a whole number of samples, or fmax > Nyquist.
    """
    config = config or FeatureConfig()
    hop, win, num_frames = _grid(audio, config)
    sr = audio.sample_rate
    fmax = config.fmax if config.fmax is not None else sr / 2
    if fmax > sr / 2 + 1e-9:
        raise InvalidInputError(f"fmax={fmax} Hz is above the Nyquist frequency {sr / 2} Hz")

    frames = _frames(audio, hop, win, num_frames).double()
    power, n_fft = _power_spectrum(frames, win, config.preemphasis)
    fbank = AF.melscale_fbanks(
        n_freqs=n_fft // 2 + 1, f_min=config.fmin, f_max=fmax, n_mels=config.num_mels,
        sample_rate=sr, norm=None, mel_scale="htk",
    ).to(power.dtype)  # [F, M]
    base = torch.log(torch.clamp(power @ fbank, min=LOG_FLOOR))  # [T, M]
    if config.kind == "mfcc":
        dct = AF.create_dct(config.num_ceps, config.num_mels, norm="ortho").to(base.dtype)  # [M, C]
        base = base @ dct
    values = _add_deltas(base, config.deltas, config.delta_window)
    if config.cmvn:
        mean = values.mean(dim=0, keepdim=True)
        std = values.std(dim=0, unbiased=False, keepdim=True)
        # A constant dimension (std 0) becomes all zeros rather than NaN.
        values = (values - mean) / torch.clamp(std, min=1e-8)
    return Features(values.to(torch.float32).contiguous(), hop / sr, config, audio.duration, sr)


def display_spectrogram(
    audio: Audio, config: FeatureConfig | None = None, top_db: float = 80.0
) -> tuple[np.ndarray, np.ndarray]:
    """Power spectrogram in dB for display, on the same frame grid as :func:`extract_features`.

    Returns:
        ``(db, freqs_hz)``: ``db`` ``[T, F]`` float32, ``10 log10`` of the power, clipped to
        ``top_db`` below its maximum; ``freqs_hz`` ``[F]`` bin centre frequencies, 0 .. sr/2.
    """
    config = config or FeatureConfig()
    hop, win, num_frames = _grid(audio, config)
    power, n_fft = _power_spectrum(_frames(audio, hop, win, num_frames).double(), win, config.preemphasis)
    db = 10.0 * torch.log10(torch.clamp(power, min=LOG_FLOOR))
    db = torch.clamp(db, min=float(db.max()) - top_db)
    freqs = torch.fft.rfftfreq(n_fft, d=1.0 / audio.sample_rate, dtype=torch.float64)
    return db.to(torch.float32).numpy(), freqs.numpy()


__all__ = ["FeatureConfig", "Features", "extract_features", "display_spectrogram", "num_frames_for"]
