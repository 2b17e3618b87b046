"""Time-stamped labelled segments (one tier of an alignment) and helpers on them.

All times are in seconds. A *tier* is a list of :class:`Segment` sorted by time,
non-overlapping, each with ``start < end``; gaps between segments are allowed.

Frame convention (shared with :mod:`hmm_engine.frontend.features`): frame ``i`` stands
for the interval ``[i * shift, (i + 1) * shift)``; a run of frames ``[a, b)`` maps to
``[a * shift, min(b * shift, duration))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np

from hmm_engine.errors import InvalidInputError

# Two times closer than this (seconds) are treated as the same instant: TextGrid files
# and float arithmetic (e.g. 3 * 0.01) leave differences far below it.
TIME_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Segment:
    """One labelled interval ``[start, end)`` in seconds, with an optional score."""

    label: str
    start: float
    end: float
    score: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.label, str):
            raise InvalidInputError(f"segment label must be a string, got {type(self.label).__name__}")
        # Coerce numpy / torch scalars to plain floats so segments compare and serialise simply.
        for name in ("start", "end"):
            value = getattr(self, name)
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise InvalidInputError(f"segment {self.label!r}: {name} must be a number, got {value!r}") from None
            if isinstance(value, (str, bytes)) or not math.isfinite(number):
                raise InvalidInputError(f"segment {self.label!r}: {name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, number)
        if not self.start < self.end:
            raise InvalidInputError(
                f"segment {self.label!r}: start ({self.start}) must be before end ({self.end})"
            )
        if self.score is not None:
            try:
                object.__setattr__(self, "score", float(self.score))
            except (TypeError, ValueError):
                raise InvalidInputError(f"segment {self.label!r}: score must be a number or None, got {self.score!r}") from None

    @property
    def duration(self) -> float:
        return self.end - self.start


def validate_tier(segments: Sequence[Segment], name: str = "tier", duration: float | None = None) -> None:
    """Check that ``segments`` is a valid tier, else raise :class:`InvalidInputError`.

    Valid means: every item is a :class:`Segment`, sorted by start, non-overlapping
    (``prev.end <= next.start`` up to :data:`TIME_TOLERANCE`), and, when ``duration`` is
    given, inside ``[0, duration]``. The message names the tier and the offending segments.
    """
    previous: Segment | None = None
    for index, segment in enumerate(segments):
        if not isinstance(segment, Segment):
            raise InvalidInputError(f"{name}: item {index} is a {type(segment).__name__}, not a Segment")
        if duration is not None and (segment.start < -TIME_TOLERANCE or segment.end > duration + TIME_TOLERANCE):
            raise InvalidInputError(
                f"{name}: segment {index} {segment.label!r} [{segment.start}, {segment.end}] "
                f"lies outside [0, {duration}]"
            )
        if previous is not None:
            if segment.start < previous.start:
                raise InvalidInputError(
                    f"{name}: segments are not sorted: {index - 1} {previous.label!r} starts at "
                    f"{previous.start}, {index} {segment.label!r} at {segment.start}"
                )
            if previous.end > segment.start + TIME_TOLERANCE:
                raise InvalidInputError(
                    f"{name}: segments overlap: {index - 1} {previous.label!r} [{previous.start}, "
                    f"{previous.end}] and {index} {segment.label!r} [{segment.start}, {segment.end}]"
                )
        previous = segment


def num_frames_for(duration: float, frame_shift: float) -> int:
    """Number of frames ``T = ceil(duration / frame_shift)`` covering ``duration`` seconds.

    A tiny tolerance keeps e.g. ``ceil(0.3 / 0.1)`` at 3 despite float rounding.
    """
    if not (frame_shift > 0 and math.isfinite(frame_shift)):
        raise InvalidInputError(f"frame_shift must be a positive number of seconds, got {frame_shift!r}")
    if not (duration > 0 and math.isfinite(duration)):
        raise InvalidInputError(f"duration must be a positive number of seconds, got {duration!r}")
    return max(1, math.ceil(duration / frame_shift - 1e-9))


def label_runs(labels: Sequence[Hashable] | np.ndarray) -> list[tuple[Hashable, int, int]]:
    """Cut a label path into runs of equal consecutive labels: THE helper for it.

    Args:
        labels: ``[T]`` per-frame labels: a list of hashables (strings, ints), or a 1-D numpy
            array / torch tensor of state ids (a Viterbi path).

    Returns:
        ``[(label, first, stop), ...]`` in time order, ``stop`` exclusive, so run ``k`` covers
        frames ``[first, stop)``; labels from an array come back as Python scalars. ``[]`` for
        an empty path.
    """
    if hasattr(labels, "detach"):  # a torch tensor, without importing torch here
        labels = labels.detach().cpu().numpy()
    if isinstance(labels, np.ndarray):
        path = labels.reshape(-1)
        if path.size == 0:
            return []
        change = np.flatnonzero(path[1:] != path[:-1]) + 1
        starts = np.concatenate([[0], change]).tolist()
        stops = np.concatenate([change, [path.size]]).tolist()
        values = path[starts].tolist()
        return list(zip(values, starts, stops))
    labels = list(labels)
    runs: list[tuple[Hashable, int, int]] = []
    start = 0
    for index in range(1, len(labels) + 1):
        if index == len(labels) or labels[index] != labels[start]:
            runs.append((labels[start], start, index))
            start = index
    return runs


def segments_from_frame_labels(
    labels: Sequence[Hashable] | np.ndarray,
    frame_shift: float,
    duration: float | None = None,
    scores: Sequence[float] | None = None,
    names: Sequence[str] | None = None,
) -> list[Segment]:
    """Merge runs of equal per-frame labels into segments (the one "label path -> segments").

    Args:
        labels: ``[T]`` label of each frame (strings, or ints such as state ids; a numpy
            array or torch tensor of state ids is fine).
        frame_shift: seconds per frame.
        duration: audio duration in seconds; must satisfy ``(T-1)*shift < duration <= T*shift``
            (the frame convention). The last segment ends at ``duration``. ``None`` means
            ``T * shift``.
        scores: optional ``[T]`` per-frame scores; a segment's score is the mean over its frames.
        names: optional segment label per state id (``names[k]`` for label ``k``); without it
            a label is turned into a string with ``str``.

    Returns:
        The tier: run ``[a, b)`` becomes ``Segment(label, a*shift, min(b*shift, duration))``.
    """
    runs = label_runs(labels)
    num_frames = runs[-1][2] if runs else 0
    if num_frames == 0:
        raise InvalidInputError("segments_from_frame_labels: no frames given")
    if not (frame_shift > 0 and math.isfinite(frame_shift)):
        raise InvalidInputError(f"frame_shift must be a positive number of seconds, got {frame_shift!r}")
    if duration is None:
        duration = num_frames * frame_shift
    elif num_frames_for(duration, frame_shift) != num_frames:
        raise InvalidInputError(
            f"{num_frames} frames of {frame_shift} s do not match a duration of {duration} s "
            f"(expected ceil(duration / shift) = {num_frames_for(duration, frame_shift)} frames)"
        )
    if scores is not None and len(scores) != num_frames:
        raise InvalidInputError(f"got {len(scores)} scores for {num_frames} frames")
    if names is not None:
        bad = [label for label, _, _ in runs if not (isinstance(label, int) and 0 <= label < len(names))]
        if bad:
            raise InvalidInputError(f"label {bad[0]!r} has no name among {len(names)} names")

    segments: list[Segment] = []
    for label, first, stop in runs:
        score = None
        if scores is not None:
            score = float(sum(float(s) for s in scores[first:stop]) / (stop - first))
        name = names[label] if names is not None else str(label)
        segments.append(Segment(name, first * frame_shift, min(stop * frame_shift, duration), score))
    return segments


def frame_labels_from_segments(
    segments: Sequence[Segment], frame_shift: float, num_frames: int, fill: str = ""
) -> list[str]:
    """Label each frame with the segment containing its centre ``(i + 0.5) * shift``.

    Returns ``[num_frames]`` labels; frames whose centre falls in no segment get ``fill``.
    """
    labels = [fill] * num_frames
    for segment in segments:
        first, stop = segment_frames(segment, frame_shift, num_frames)
        for i in range(first, stop):
            labels[i] = segment.label
    return labels


def segment_frames(segment: Segment, frame_shift: float, num_frames: int) -> tuple[int, int]:
    """``(first, stop)``: the frames ``[first, stop)`` whose centre ``(i + 0.5) * shift`` lies in
    ``[segment.start, segment.end)``, clipped to ``[0, num_frames)`` (empty when ``stop <= first``)."""
    first = max(0, math.ceil(segment.start / frame_shift - 0.5 - 1e-9))
    stop = min(num_frames, math.ceil(segment.end / frame_shift - 0.5 - 1e-9))
    return first, stop


def merge_adjacent(segments: Sequence[Segment]) -> list[Segment]:
    """Merge touching segments that carry the same label (scores are dropped on merge)."""
    merged: list[Segment] = []
    for segment in segments:
        last = merged[-1] if merged else None
        if last is not None and last.label == segment.label and abs(last.end - segment.start) <= TIME_TOLERANCE:
            merged[-1] = Segment(last.label, last.start, segment.end, None)
        else:
            merged.append(segment)
    return merged
