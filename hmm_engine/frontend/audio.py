"""Reading audio from files, bytes or Gradio microphone tuples into mono float32 at one rate.

Everything goes through ``soundfile`` (wav, flac, ogg/vorbis, mp3, ... whatever the bundled
libsndfile reads); ``torchaudio.load`` is not used because it needs torchcodec.
Channels are averaged to mono, then resampled with ``torchaudio.functional.resample`` when its
filter bank is small (rates sharing a large factor: 44100, 48000, 22050, 8000 Hz...), else with
``soxr``: torchaudio's bank has (target/g) x (source/g) taps for g = gcd(rates), 4 GB at 16001 Hz,
while soxr's memory does not depend on the ratio (:func:`resample`).
"""

from __future__ import annotations

import io
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Union

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from hmm_engine import limits
from hmm_engine.errors import AudioError

# Peak amplitude (full scale = 1.0) below which audio is considered silent: about -80 dBFS,
# i.e. below 16-bit dither; such a recording cannot be aligned meaningfully.
SILENCE_PEAK = 1e-4
# A channel count this large in a 2-D array almost surely means [C, N] was passed for [N, C].
MAX_CHANNELS = 32
# File suffixes read as audio where a folder is searched (corpora, the bundled samples); in
# order of preference when one name has several.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")

AudioSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, tuple, "Audio"]


@dataclass(frozen=True)
class Audio:
    """Mono audio ready for analysis.

    Attributes:
        samples: ``[N]`` float32 tensor, nominally in [-1, 1].
        sample_rate: rate of ``samples`` in Hz (the analysis rate).
        source_sample_rate: rate of the original recording in Hz.
        source_channels: channel count of the original recording.
    """

    samples: torch.Tensor
    sample_rate: int
    source_sample_rate: int
    source_channels: int

    @property
    def duration(self) -> float:
        """Length in seconds, ``N / sample_rate``."""
        return self.samples.shape[0] / self.sample_rate

    @property
    def num_samples(self) -> int:
        return int(self.samples.shape[0])


def _describe(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return f"'{os.fspath(source)}'"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"audio bytes ({len(source)} bytes)"
    if isinstance(source, tuple):
        return "audio array"
    name = getattr(source, "name", None)
    return f"'{name}'" if isinstance(name, str) else "audio stream"


def _check_rate(rate: Any, what: str) -> int:
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer, float, np.floating)):
        raise AudioError(f"{what}: sample rate must be a positive integer, got {rate!r}")
    if not math.isfinite(float(rate)) or float(rate) <= 0 or float(rate) != int(rate):
        raise AudioError(f"{what}: sample rate must be a positive integer, got {rate!r}")
    limits.check_sample_rate(int(rate), what)
    return int(rate)


def resample(samples: torch.Tensor, orig_sr: int, target_sr: int) -> torch.Tensor:
    """``[N]`` float32 at ``orig_sr`` -> ``[ceil(N target_sr / orig_sr)]`` float32 at ``target_sr``.

    torchaudio's windowed sinc where its filter bank stays under
    :data:`hmm_engine.limits.MAX_RESAMPLE_KERNEL` taps (unchanged results for the usual rates),
    otherwise soxr (its "HQ" polyphase filter), whose memory is independent of the ratio.
    """
    if orig_sr == target_sr:
        return samples
    if limits.resample_kernel_taps(orig_sr, target_sr) <= limits.MAX_RESAMPLE_KERNEL:
        return AF.resample(samples, orig_sr, target_sr).to(torch.float32)
    import soxr

    out = soxr.resample(samples.detach().cpu().numpy().astype(np.float32), orig_sr, target_sr, quality="HQ")
    expected = math.ceil(samples.shape[0] * target_sr / orig_sr)
    out = np.pad(out, (0, max(0, expected - out.shape[0])))[:expected]  # torchaudio's length convention
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))


def _array_to_float(array: np.ndarray, what: str) -> np.ndarray:
    """Integer PCM to float in [-1, 1]; floats are kept. Returns ``[N, C]`` float64."""
    if array.ndim == 1:
        array = array[:, None]
    elif array.ndim != 2:
        raise AudioError(f"{what}: expected a 1-D [N] or 2-D [N, C] array, got shape {tuple(array.shape)}")
    if array.shape[1] > MAX_CHANNELS:
        raise AudioError(
            f"{what}: array of shape {tuple(array.shape)} has {array.shape[1]} channels; "
            "expected [N, C] (samples first) - transpose a [C, N] array"
        )
    if array.dtype == np.uint8:  # 8-bit PCM is unsigned with a 128 offset
        return (array.astype(np.float64) - 128.0) / 128.0
    if np.issubdtype(array.dtype, np.signedinteger):
        return array.astype(np.float64) / float(2 ** (8 * array.dtype.itemsize - 1))
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float64)
    raise AudioError(f"{what}: unsupported sample type {array.dtype}; use int16, int32 or float arrays")


def _read_with_soundfile(source: Any, what: str, max_seconds: float) -> tuple[np.ndarray, int]:
    """Decode a path / bytes / file object to ``([N, C] float32, rate)``."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise AudioError(f"{what}: file not found")
        if path.is_dir():
            raise AudioError(f"{what}: is a directory, not an audio file")
        handle: Any = os.fspath(path)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise AudioError(f"{what}: no bytes given (empty audio)")
        handle = io.BytesIO(bytes(source))
    else:
        handle = source
    try:
        with sf.SoundFile(handle) as f:
            rate = _check_rate(f.samplerate, what)
            if f.frames > 0 and f.frames / rate > max_seconds:
                raise AudioError(
                    f"{what}: {f.frames / rate:.1f} s is longer than the limit of {max_seconds:g} s"
                )
            data = f.read(dtype="float32", always_2d=True)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, OSError) as exc:
        # libsndfile prefixes "Error opening <object repr>: "; keep only the reason.
        reason = re.sub(r"^Error opening .*?: ", "", str(exc)).strip() or type(exc).__name__
        raise AudioError(
            f"{what}: could not read audio ({reason}); supported are formats libsndfile reads "
            f"(wav, flac, ogg, mp3, aiff, ...)"
        ) from None
    return data, rate


def load_audio(
    source: AudioSource,
    target_sr: int = 16000,
    max_seconds: float = 600.0,
    min_seconds: float = 0.1,
) -> Audio:
    """Read audio and return it as mono float32 at ``target_sr``.

    Args:
        source: a path; ``bytes`` or a binary file object holding an encoded file; a
            ``(sample_rate, array)`` tuple as Gradio's audio component gives (array ``[N]`` or
            ``[N, C]``, int16/int32/uint8 PCM or float in [-1, 1]); or an :class:`Audio`.
        target_sr: analysis rate in Hz; audio at another rate is resampled.
        max_seconds: longest accepted duration (of the source), in seconds.
        min_seconds: shortest accepted duration, in seconds.

    Returns:
        :class:`Audio` with ``samples`` ``[N]`` float32, ``N = round(source_N * target_sr / source_sr)``.

    Raises:
        AudioError: unreadable or unsupported file, invalid sample rate, empty, NaN/Inf
            samples, too short, too long, or silent (peak below :data:`SILENCE_PEAK`).
    """
    what = _describe(source)
    target_sr = _check_rate(target_sr, "target_sr")
    if not (max_seconds > 0 and min_seconds >= 0 and min_seconds <= max_seconds):
        raise AudioError(f"invalid limits: min_seconds={min_seconds}, max_seconds={max_seconds}")

    if isinstance(source, Audio):
        data = source.samples.detach().cpu().double().numpy()[:, None]
        rate, channels, source_rate = source.sample_rate, source.source_channels, source.source_sample_rate
    elif isinstance(source, tuple):
        if len(source) != 2:
            raise AudioError(f"{what}: expected a (sample_rate, array) tuple, got {len(source)} items")
        rate = _check_rate(source[0], what)
        try:
            array = np.asarray(source[1])
        except Exception as exc:  # noqa: BLE001 - anything not array-like is the caller's error
            raise AudioError(f"{what}: second item is not an array ({exc})") from None
        data = _array_to_float(array, what)
        channels, source_rate = data.shape[1], rate
    else:
        data, rate = _read_with_soundfile(source, what, max_seconds)
        channels, source_rate = data.shape[1], rate

    if data.size == 0 or data.shape[0] == 0:
        raise AudioError(f"{what}: contains no samples (empty audio)")
    if not np.all(np.isfinite(data)):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise AudioError(f"{what}: contains {bad} NaN or infinite samples")
    duration = data.shape[0] / rate
    if duration > max_seconds:
        raise AudioError(f"{what}: {duration:.1f} s is longer than the limit of {max_seconds:g} s")
    if duration < min_seconds:
        raise AudioError(f"{what}: {duration:.3f} s is shorter than the minimum of {min_seconds:g} s")

    mono = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1), dtype=np.float32))
    peak = float(mono.abs().max())
    if peak < SILENCE_PEAK:
        raise AudioError(
            f"{what}: is silent (peak amplitude {peak:.2e} is below {SILENCE_PEAK:g} of full scale)"
        )
    if rate != target_sr:
        mono = resample(mono, rate, target_sr)
    return Audio(mono.contiguous(), target_sr, int(source_rate), int(channels))


def save_wav(path: str | os.PathLike, audio: Audio, subtype: str = "PCM_16") -> None:
    """Write ``audio`` as a WAV file (16-bit PCM by default; ``subtype="FLOAT"`` is lossless).

    Samples outside [-1, 1] are clipped for integer subtypes.
    """
    if not isinstance(audio, Audio):
        raise AudioError(f"save_wav expects an Audio, got {type(audio).__name__}")
    samples = audio.samples.detach().cpu().numpy().astype(np.float32)
    if subtype.upper() != "FLOAT" and subtype.upper() != "DOUBLE":
        samples = np.clip(samples, -1.0, 1.0)
    try:
        sf.write(os.fspath(path), samples, audio.sample_rate, subtype=subtype, format="WAV")
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as exc:
        raise AudioError(f"could not write '{os.fspath(path)}': {exc}") from None
