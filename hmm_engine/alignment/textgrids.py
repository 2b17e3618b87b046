"""Praat TextGrid reading and writing (interval tiers) through praatio.

A TextGrid label holds text only: scores travel in CSV/JSON (:mod:`hmm_engine.alignment.exports`),
or, with :func:`confidence_tiers`, as extra interval tiers labelled with each phone's and word's
confidence, beside a ``check`` tier flagging implausible segments (:func:`read_confidences`
reads them back).
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


# --------------------------------------------------------------------------- confidence and check tiers

PHONE_CONFIDENCE_TIER = "phone_confidence"
WORD_CONFIDENCE_TIER = "word_confidence"
CHECK_TIER = "check"
# Labels that are silence in the check rules.
_SILENCE = frozenset({"sil", "sp", "spn", "pau", "_", ""})
# A speech phone lasting longer than this (seconds) is flagged: sentence-final vowels of read
# speech reach about 0.4 s; a phone of 0.6 s has usually swallowed a pause or a noise.
MAX_PHONE_SECONDS = 0.6
# A word longer than ``WORD_SLACK_SECONDS`` + this much per phone is flagged ("far longer than
# its phones allow": 0.4 s a phone is slow speech already).
WORD_SECONDS_PER_PHONE = 0.4
WORD_SLACK_SECONDS = 0.3
# A speech phone is "over non-speech" when this share of its frames is quiet (see quiet_frames).
NON_SPEECH_SHARE = 0.8


def quiet_frames(energy):
    """``[T]`` True where a loudness track (e.g. log frame energy) is in the quiet range of its
    recording: below 25% of the way from its 5th to its 95th percentile."""
    import numpy as np

    energy = np.asarray(energy, dtype=np.float64)
    lo, hi = np.percentile(energy, [5, 95])
    return energy < lo + 0.25 * (hi - lo)


def confidence_tiers(
    tiers: Mapping[str, Sequence[Segment]], energy=None, frame_shift: float | None = None,
) -> dict[str, list[Segment]]:
    """Extra tiers for a TextGrid: each phone's and each word's confidence, and a check tier.

    ``phone_confidence``: the phones' intervals labelled with their confidence (``score``, 3
    decimals; unlabelled when unknown). ``word_confidence``: the words' intervals labelled with
    the duration-weighted mean confidence of the phones inside. ``check``: intervals of
    implausible segments, labelled with the reason: a word longer than
    ``WORD_SLACK_SECONDS + WORD_SECONDS_PER_PHONE`` per phone ("long word"), a speech phone
    over ``MAX_PHONE_SECONDS`` ("long phone"), and, when a loudness track ``energy [T]`` on
    ``frame_shift`` is given, a speech phone whose frames are mostly quiet ("phone over
    non-speech"). Overlapping flags are merged into one interval with both reasons.
    """
    import numpy as np

    phones = list(tiers.get("phones", []))
    words = list(tiers.get("words", []) or [])
    out: dict[str, list[Segment]] = {
        PHONE_CONFIDENCE_TIER: [Segment("" if s.score is None else f"{s.score:.3f}", s.start, s.end) for s in phones]
    }
    flags: list[tuple[float, float, str]] = []
    if words:
        out[WORD_CONFIDENCE_TIER] = []
        for w in words:
            inside = [p for p in phones if p.start >= w.start - TIME_TOLERANCE and p.end <= w.end + TIME_TOLERANCE]
            scored = [p for p in inside if p.score is not None]
            label = ""
            if scored:
                label = f"{np.average([p.score for p in scored], weights=[p.duration for p in scored]):.3f}"
            out[WORD_CONFIDENCE_TIER].append(Segment(label, w.start, w.end))
            speech = [p for p in inside if p.label not in _SILENCE]
            if w.duration > WORD_SLACK_SECONDS + WORD_SECONDS_PER_PHONE * max(1, len(speech)):
                flags.append((w.start, w.end, f"long word: {w.duration:.2f} s for {len(speech)} phones"))
    quiet = None
    if energy is not None:
        if not (frame_shift and frame_shift > 0):
            raise InvalidInputError("confidence_tiers: energy needs a positive frame_shift")
        quiet = quiet_frames(energy)
    for p in phones:
        if p.label in _SILENCE:
            continue
        if p.duration > MAX_PHONE_SECONDS:
            flags.append((p.start, p.end, f"long phone: {p.label} {p.duration:.2f} s"))
        if quiet is not None:
            a = min(len(quiet) - 1, int(round(p.start / frame_shift)))
            b = max(a + 1, min(len(quiet), int(round(p.end / frame_shift))))
            if quiet[a:b].mean() >= NON_SPEECH_SHARE:
                flags.append((p.start, p.end, f"phone over non-speech: {p.label}"))
    merged: list[list] = []
    for a, b, why in sorted(flags):
        if merged and a < merged[-1][1] - TIME_TOLERANCE:
            merged[-1][1] = max(merged[-1][1], b)
            merged[-1][2] += f"; {why}"
        else:
            merged.append([a, b, why])
    out[CHECK_TIER] = [Segment(why, a, b) for a, b, why in merged]
    return out


def read_confidences(path: str | os.PathLike) -> dict[str, list[tuple[str, float, float, float | None]]]:
    """The confidence tiers of a TextGrid written with :func:`confidence_tiers`:
    ``{"phones": [(label, start, end, confidence or None)], "words": [...]}``; the labels come
    from the ``phones`` / ``words`` tiers, the confidences from the tiers beside them."""
    tiers = read_textgrid(path)
    out = {}
    for base, conf_name in (("phones", PHONE_CONFIDENCE_TIER), ("words", WORD_CONFIDENCE_TIER)):
        if base not in tiers or conf_name not in tiers:
            continue
        confidences = {(round(s.start, 6), round(s.end, 6)): s.label for s in tiers[conf_name]}
        rows = []
        for s in tiers[base]:
            label = confidences.get((round(s.start, 6), round(s.end, 6)), "")
            try:
                value = float(label) if label else None
            except ValueError:
                raise TextGridError(f"'{path}': tier {conf_name!r} holds {label!r}, not a number") from None
            rows.append((s.label, s.start, s.end, value))
        out[base] = rows
    return out
