"""Praat TextGrid reading and writing (interval tiers) through praatio.

Scores are not stored in TextGrids; use :mod:`hmm_engine.alignment.exports` (CSV/JSON) to keep them.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

from praatio import textgrid as praat_textgrid
from praatio.utilities import errors as praat_errors

from hmm_engine import limits
from hmm_engine.segments import TIME_TOLERANCE, Segment, validate_tier
from hmm_engine.errors import InvalidInputError, TextGridError

_INTERVAL_TIER = "IntervalTier"


def read_textgrid(
    path: str | os.PathLike, tier: str | None = None, keep_empty: bool = False
) -> dict[str, list[Segment]]:
    """Read the interval tiers of a TextGrid (long, short or praatio JSON format).

    Args:
        path: the ``.TextGrid`` file (UTF-8 or UTF-16).
        tier: read only this tier; ``None`` reads every interval tier (point tiers are skipped).
        keep_empty: keep intervals with an empty label (``""``) as segments; by default they
            are gaps (absent from the returned list).

    Returns:
        ``{tier_name: [Segment, ...]}`` in file order, each tier sorted and validated.

    Raises:
        TextGridError: missing or malformed file, missing tier (the message lists the tiers
            present), a point tier requested by name, or overlapping/reversed intervals.
    """
    name = os.fspath(path)
    if not Path(name).is_file():
        raise TextGridError(f"'{name}': TextGrid file not found")
    limits.check_textgrid_file(name)  # size, interval count, JSON nesting: before praatio parses
    try:
        grid = praat_textgrid.openTextgrid(name, includeEmptyIntervals=keep_empty, reportingMode="silence")
    except praat_errors.DuplicateTierName as exc:
        raise TextGridError(f"'{name}': {exc}") from None
    except (praat_errors.PraatioException, ValueError, IndexError, KeyError, TypeError, UnicodeError, OSError,
            RecursionError) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise TextGridError(f"'{name}': not a valid TextGrid ({detail})") from None

    if tier is not None:
        if tier not in grid.tierNames:
            raise TextGridError(f"'{name}': no tier named {tier!r}; tiers present: {list(grid.tierNames)}")
        names = [tier]
    else:
        names = list(grid.tierNames)

    tiers: dict[str, list[Segment]] = {}
    for tier_name in names:
        praat_tier = grid.getTier(tier_name)
        if praat_tier.tierType != _INTERVAL_TIER:
            if tier is not None:
                raise TextGridError(f"'{name}': tier {tier_name!r} is a point tier, not an interval tier")
            continue
        try:
            segments = [Segment(entry.label, entry.start, entry.end) for entry in praat_tier.entries]
            segments.sort(key=lambda s: (s.start, s.end))
            validate_tier(segments, name=f"tier {tier_name!r}")
        except InvalidInputError as exc:
            raise TextGridError(f"'{name}': {exc}") from None
        tiers[tier_name] = segments
    return tiers


def _build_textgrid(tiers: Mapping[str, Sequence[Segment]], duration: float) -> praat_textgrid.Textgrid:
    if not (isinstance(duration, (int, float)) and duration > 0):
        raise TextGridError(f"TextGrid duration must be a positive number of seconds, got {duration!r}")
    if not tiers:
        raise TextGridError("no tiers to write")
    grid = praat_textgrid.Textgrid(0.0, float(duration))
    for tier_name, segments in tiers.items():
        if not isinstance(tier_name, str) or not tier_name:
            raise TextGridError(f"tier names must be non-empty strings, got {tier_name!r}")
        try:
            validate_tier(segments, name=f"tier {tier_name!r}", duration=duration)
        except InvalidInputError as exc:
            raise TextGridError(str(exc)) from None
        entries = [
            # Clamp to [0, duration]: validate_tier allowed a TIME_TOLERANCE overshoot.
            (max(0.0, s.start), min(float(duration), s.end), s.label)
            for s in segments
            if min(float(duration), s.end) - max(0.0, s.start) > TIME_TOLERANCE / 10
        ]
        try:
            grid.addTier(praat_textgrid.IntervalTier(tier_name, entries, 0.0, float(duration)))
        except praat_errors.PraatioException as exc:
            raise TextGridError(f"tier {tier_name!r}: {exc}") from None
    return grid


def write_textgrid(
    path: str | os.PathLike, tiers: Mapping[str, Sequence[Segment]], duration: float
) -> None:
    """Write interval tiers to a long-format TextGrid spanning ``[0, duration]``.

    Gaps between segments are written as empty intervals (as Praat expects). Times are
    written with full float precision, so :func:`read_textgrid` gives back the same segments
    (without scores).

    Raises:
        TextGridError: invalid tier (unsorted, overlapping, outside ``[0, duration]``), bad
            duration or tier name, or the file cannot be written.
    """
    grid = _build_textgrid(tiers, duration)
    try:
        # minimumIntervalLength=None: never silently drop short intervals.
        grid.save(os.fspath(path), format="long_textgrid", includeBlankSpaces=True,
                  minimumIntervalLength=None, reportingMode="silence")
    except OSError as exc:
        raise TextGridError(f"could not write '{os.fspath(path)}': {exc}") from None


def textgrid_to_string(tiers: Mapping[str, Sequence[Segment]], duration: float) -> str:
    """The long-format TextGrid text that :func:`write_textgrid` would write."""
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "out.TextGrid"
        write_textgrid(target, tiers, duration)
        return target.read_text(encoding="utf-8")
