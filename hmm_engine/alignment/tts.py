"""Per-phone durations in mel frames, for FastSpeech-style text-to-speech training.

A TTS model predicts, for each phone, how many spectrogram frames it lasts; the durations of
an utterance must sum *exactly* to the number of frames of its mel spectrogram, which depends
on the sample rate, the hop length, the STFT frame length and whether frames are centred.

Frame counts (``n`` samples, hop ``h``, frame length ``w`` = ``n_fft`` of the STFT):

* ``center=True`` (``librosa.stft`` / ``torch.stft`` default, the signal padded by ``w // 2``
  on each side): ``F = 1 + n // h``; frame ``i`` is centred on sample ``i * h``.
* ``center=False``: ``F = 1 + (n - w) // h`` frames (none when ``n < w``); frame ``i`` covers
  samples ``[i h, i h + w)`` and is centred on sample ``i h + w / 2``.

A frame belongs to the phone whose interval contains the frame's centre. So each phone
*boundary* (not each duration) is rounded to the frame grid: boundary ``b`` seconds becomes
``k(b)`` = the number of frame centres before ``b * sr`` (clamped to ``[0, F]``), the first
boundary is 0 and the last is ``F``, and a phone's duration is the difference of its two
boundaries. The sum is then ``F`` by construction, and the error of any boundary is at most
half a hop. (Rounding each duration separately instead drifts: the errors add up along the
utterance.) With ``min_frames`` > 0 boundaries are moved the least needed so that every
phone keeps that many frames (when ``F`` allows it).

Silence at the edges: ``trim=True`` drops a leading / trailing silence segment; the
durations then describe the audio between ``trim_start_sample`` and ``trim_end_sample``
(report fields of :class:`UtteranceDurations`) and sum to the frame count of *that* span, so
the training pipeline must cut its audio there before computing the mel spectrogram.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from hmm_engine.errors import InvalidInputError, InvalidParameterError
from hmm_engine.segments import TIME_TOLERANCE, Segment

# Labels counted as silence when trimming (the aligner's "sil", MFA's "sp"/"", festival's "pau").
SILENCE_LABELS = frozenset({"sil", "sp", "spn", "pau", "_", ""})
# The label given to gaps in a phone tier (TextGrid empty intervals).
GAP_LABEL = "sil"
DURATIONS_TABLE = "durations.tsv"
DURATIONS_SUFFIX = ".durations.npy"
TABLE_COLUMNS = ("name", "num_frames", "phones", "durations", "sample_rate", "hop_length", "win_length", "center",
                 "trim_start_s", "trim_end_s", "trim_start_sample", "trim_end_sample")

__all__ = ["MelGrid", "UtteranceDurations", "num_mel_frames", "boundary_frames", "phone_durations",
           "write_durations", "DURATIONS_TABLE", "DURATIONS_SUFFIX", "TABLE_COLUMNS"]


@dataclass(frozen=True)
class MelGrid:
    """The mel-spectrogram frame grid of a TTS recipe.

    Attributes:
        sample_rate: Hz of the audio the mel spectrogram is computed from.
        hop_length: samples between frames.
        win_length: samples per STFT frame (``n_fft``: what ``center=False`` frames span).
        center: frames centred on ``i * hop_length`` (padded STFT) or starting there.
    """

    sample_rate: int = 22050
    hop_length: int = 256
    win_length: int = 1024
    center: bool = True

    def __post_init__(self) -> None:
        for name in ("sample_rate", "hop_length", "win_length"):
            value = getattr(self, name)
            if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0):
                raise InvalidParameterError(f"{name} must be a positive whole number of samples/Hz, got {value!r}")
        if self.sample_rate > 384_000:
            raise InvalidParameterError(f"sample_rate {self.sample_rate} Hz is above 384 kHz")
        if self.hop_length > self.win_length and not self.center:
            raise InvalidParameterError(f"hop_length {self.hop_length} is longer than win_length {self.win_length}: "
                                        f"samples between frames would belong to no frame")

    def num_samples(self, seconds: float) -> int:
        """Samples of ``seconds`` of audio at this rate (what a resampler gives: rounded)."""
        return int(round(seconds * self.sample_rate))

    def num_frames(self, num_samples: int) -> int:
        """Frames of ``num_samples`` samples (module docstring)."""
        return num_mel_frames(num_samples, self.hop_length, self.win_length, self.center)


def num_mel_frames(num_samples: int, hop_length: int, win_length: int = 1024, center: bool = True) -> int:
    """Mel frames of ``num_samples``: ``1 + n // hop`` centred, ``1 + (n - win) // hop`` (0 if
    ``n < win``) not centred - exactly what ``torch.stft`` / ``librosa.stft`` return."""
    if num_samples < 0:
        raise InvalidInputError(f"num_samples must be >= 0, got {num_samples}")
    if center:
        return 1 + num_samples // hop_length
    return 0 if num_samples < win_length else 1 + (num_samples - win_length) // hop_length


def boundary_frames(times: Sequence[float], num_samples: int, grid: MelGrid) -> np.ndarray:
    """Frame index of each boundary time (seconds, relative to sample 0 of ``num_samples``).

    ``k(b)`` = number of frame centres strictly before ``b * sample_rate``, clamped to
    ``[0, F]``; the first and last boundaries are forced to 0 and ``F``. Returns ``[B]`` int64,
    non-decreasing.
    """
    F = grid.num_frames(num_samples)
    offset = 0.0 if grid.center else grid.win_length / 2.0
    out = np.empty(len(times), dtype=np.int64)
    for i, t in enumerate(times):
        position = (t * grid.sample_rate - offset) / grid.hop_length
        # ceil with a tolerance: a boundary exactly on a centre (up to float error) sends that frame right.
        out[i] = min(F, max(0, math.ceil(position - 1e-7)))
    if len(out):
        out[0], out[-1] = 0, F
    return np.maximum.accumulate(out)


@dataclass
class UtteranceDurations:
    """Durations of one utterance on a :class:`MelGrid`.

    Attributes:
        phones: ``[P]`` labels (edge silences removed when trimmed; gaps labelled ``sil``).
        durations: ``[P]`` int64 frames, summing to ``num_frames``.
        num_frames: frames of the mel spectrogram of the (trimmed) audio.
        grid: the grid.
        trim_start_s, trim_end_s: the span of the original audio the durations describe
            (``0`` and the duration when not trimmed).
        trim_start_sample, trim_end_sample: the same span in samples at ``grid.sample_rate``.
    """

    phones: list[str]
    durations: np.ndarray
    num_frames: int
    grid: MelGrid
    trim_start_s: float
    trim_end_s: float
    trim_start_sample: int
    trim_end_sample: int

    def row(self, name: str) -> list:
        """One line of :data:`DURATIONS_TABLE` (columns :data:`TABLE_COLUMNS`)."""
        g = self.grid
        return [name, self.num_frames, " ".join(self.phones), " ".join(str(int(d)) for d in self.durations),
                g.sample_rate, g.hop_length, g.win_length, int(g.center), f"{self.trim_start_s:.6f}",
                f"{self.trim_end_s:.6f}", self.trim_start_sample, self.trim_end_sample]


def _tile(phones: Sequence[Segment], duration: float) -> list[Segment]:
    """The phone tier covering ``[0, duration]``: gaps become :data:`GAP_LABEL` segments."""
    tiled: list[Segment] = []
    cursor = 0.0
    for seg in sorted(phones, key=lambda s: s.start):
        if seg.start > cursor + TIME_TOLERANCE:
            tiled.append(Segment(GAP_LABEL, cursor, seg.start))
        start = max(seg.start, cursor)
        end = min(seg.end, duration)
        if end - start > TIME_TOLERANCE:
            tiled.append(Segment(seg.label, start, end, seg.score))
            cursor = end
    if duration - cursor > TIME_TOLERANCE:
        tiled.append(Segment(GAP_LABEL, cursor, duration))
    return tiled


def _enforce_minimum(bounds: np.ndarray, minimum: int) -> np.ndarray:
    """Move boundaries the least needed so each difference is >= ``minimum`` (ends fixed)."""
    b = bounds.copy()
    count = len(b) - 1
    if minimum <= 0 or count <= 0:
        return b
    if b[-1] - b[0] < minimum * count:
        raise InvalidInputError(f"{b[-1] - b[0]} frames cannot give {count} phones {minimum} frame(s) each: "
                                f"use a shorter hop or min_frames=0")
    for i in range(1, count):  # push right what is too close to its left neighbour...
        b[i] = max(b[i], b[i - 1] + minimum)
    for i in range(count - 1, 0, -1):  # ...then pull left what now crowds the fixed end
        b[i] = min(b[i], b[i + 1] - minimum)
    return b


def phone_durations(
    phones: Sequence[Segment], duration: float, grid: MelGrid, trim: bool = False, min_frames: int = 0,
    num_samples: int | None = None,
) -> UtteranceDurations:
    """Per-phone frame counts of an aligned utterance (module docstring).

    Args:
        phones: the phone tier (gaps are filled with :data:`GAP_LABEL`).
        duration: the utterance's duration in seconds.
        grid: sample rate, hop, frame length, centring.
        trim: drop a leading / trailing silence segment (the span kept is reported).
        min_frames: every phone gets at least this many frames (0: a phone shorter than
            half a hop may get 0).
        num_samples: the audio's length at ``grid.sample_rate`` when known exactly (else
            ``round(duration * sample_rate)``).
    Raises:
        InvalidInputError: no phone, or nothing left after trimming, or ``min_frames`` not
            reachable.
    """
    if not (duration > 0):
        raise InvalidInputError(f"duration must be positive seconds, got {duration!r}")
    if not (isinstance(min_frames, int) and min_frames >= 0):
        raise InvalidParameterError(f"min_frames must be a whole number >= 0, got {min_frames!r}")
    total = grid.num_samples(duration) if num_samples is None else int(num_samples)
    tiled = _tile(phones, duration)
    if not tiled:
        raise InvalidInputError("the phone tier is empty")
    start_s, end_s = 0.0, duration
    if trim:
        if tiled[0].label in SILENCE_LABELS and len(tiled) > 1:
            start_s = tiled[0].end
            tiled = tiled[1:]
        if tiled[-1].label in SILENCE_LABELS and len(tiled) > 1:
            end_s = tiled[-1].start
            tiled = tiled[:-1]
    start_sample = min(total, grid.num_samples(start_s))
    end_sample = total if end_s >= duration else min(total, grid.num_samples(end_s))
    n = end_sample - start_sample
    times = [start_s] + [seg.end for seg in tiled[:-1]] + [end_s]
    # Boundaries relative to the kept span's first sample.
    relative = [t - start_sample / grid.sample_rate for t in times]
    bounds = _enforce_minimum(boundary_frames(relative, n, grid), min_frames)
    F = grid.num_frames(n)
    durations = np.diff(bounds).astype(np.int64)
    assert int(durations.sum()) == F  # by construction: first boundary 0, last F
    return UtteranceDurations([s.label for s in tiled], durations, F, grid, start_s, end_s, start_sample, end_sample)


def write_durations(out_dir: str | os.PathLike, items: Sequence[tuple[str, UtteranceDurations]]) -> Path:
    """Write ``OUT_DIR/name.durations.npy`` (int64 ``[P]``) per utterance and one line per
    utterance in ``OUT_DIR/durations.tsv`` (tab-separated, columns :data:`TABLE_COLUMNS`,
    phones and durations space-separated). Returns the table's path."""
    out = Path(out_dir)
    lines = ["\t".join(TABLE_COLUMNS)]
    for name, item in items:
        path = out / f"{name}{DURATIONS_SUFFIX}"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, item.durations.astype(np.int64))
        lines.append("\t".join(str(v) for v in item.row(name)))
    table = out / DURATIONS_TABLE
    try:
        table.write_text("\n".join(lines) + "\n", encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"could not write '{table}': {exc}") from None
    return table


def read_durations_table(path: str | os.PathLike) -> dict[str, dict]:
    """Parse :data:`DURATIONS_TABLE`: ``{name: {"phones": [...], "durations": int64 [P], "num_frames": F, ...}}``."""
    rows = Path(path).read_text(encoding="utf-8").splitlines()
    if not rows or tuple(rows[0].split("\t")) != TABLE_COLUMNS:
        raise InvalidInputError(f"'{path}' is not a durations table (header {' '.join(TABLE_COLUMNS)})")
    out = {}
    for line in rows[1:]:
        values = dict(zip(TABLE_COLUMNS, line.split("\t")))
        values["phones"] = values["phones"].split()
        values["durations"] = np.array([int(v) for v in values["durations"].split()], dtype=np.int64)
        for key in ("num_frames", "sample_rate", "hop_length", "win_length", "center", "trim_start_sample",
                    "trim_end_sample"):
            values[key] = int(values[key])
        out[values.pop("name")] = values
    return out


__all__ += ["read_durations_table", "SILENCE_LABELS"]
