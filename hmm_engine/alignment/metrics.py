"""Alignment accuracy: boundary errors, frame accuracy and phone-sequence mismatches.

How a reference tier and a hypothesis tier are compared (:func:`compare_tiers`):

1. *Silence handling* (``silence=``): ``"keep"`` compares labels as they are (gaps stay
   gaps); ``"merge"`` maps every silence label (:data:`SILENCE_LABELS`) and every gap inside
   the tier to one ``"sil"`` and merges touching silences, so ``sp`` vs ``sil`` or a pause
   split in two is no error; ``"ignore"`` removes silence segments altogether.
2. *Label alignment*: the two label sequences are aligned by Levenshtein edit distance
   (unit costs); this gives the substitutions, insertions and deletions, and the *matched*
   segment pairs (equal labels aligned to each other).
3. *Boundaries*: the boundaries of the reference are its segment edges except the outer
   edges of the whole tier (its first start and last end, taken before silence removal);
   two touching segments share one boundary. A boundary between reference segments ``a|b``
   is scored when ``a`` and ``b`` are matched to hypothesis segments that touch each other
   (error = their shared edge minus the reference time); a boundary with a gap on one side
   (possible with gaps or ``"ignore"``) is scored when the segment on its other side is
   matched (error = that hypothesis segment's corresponding edge). Other boundaries are
   counted as unmatched.
4. *Frame accuracy*: 10 ms frames (``frame_shift``) whose centre lies inside the reference's
   extent; each frame takes the label of the segment containing its centre (gaps: ``""``,
   or ``"sil"`` when merging); a frame is correct when both labels agree. With ``"ignore"``
   frames whose reference label is silence or a gap are left out.

"Within X ms" uses ``|error| <= X ms`` (with a 1e-6 ms tolerance for float rounding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Literal, NamedTuple, Sequence

import numpy as np

from hmm_engine.segments import TIME_TOLERANCE, Segment, frame_labels_from_segments, validate_tier
from hmm_engine.errors import InvalidInputError

SILENCE_LABELS: frozenset[str] = frozenset({"sil", "sp", "pau", "_", ""})
MERGED_SILENCE = "sil"
DEFAULT_THRESHOLDS_MS: tuple[float, ...] = (10.0, 20.0, 25.0, 50.0)
SilenceMode = Literal["keep", "merge", "ignore"]


class BoundaryPair(NamedTuple):
    """One scored boundary: the reference time, the hypothesis time it was matched to (both in
    seconds) and the reference labels on its left and right (``""`` for a gap or the tier's edge)."""

    reference: float
    hypothesis: float
    left: str
    right: str

    @property
    def error(self) -> float:
        """Signed error in seconds, hypothesis - reference."""
        return self.hypothesis - self.reference

    @property
    def label(self) -> str:
        return f"{self.left}|{self.right}"


@dataclass(frozen=True)
class AlignmentComparison:
    """Raw counts of one comparison (a file) or of pooled comparisons (a corpus).

    Attributes:
        boundary_errors: ``[B]`` signed errors in seconds (hypothesis - reference) of the
            scored boundaries.
        num_ref_boundaries: reference boundaries, scored or not.
        frames_correct, frames_total: frame-accuracy counts.
        substitutions, insertions, deletions: label alignment counts.
        num_ref_segments, num_hyp_segments: segments compared (after silence handling).
        num_files: how many comparisons were pooled (1 for one file).
        boundary_labels: ``[B]`` the reference labels ``(left, right)`` on either side of each
            scored boundary (``""`` for a gap or the tier's edge), for :func:`boundary_classes`.
        boundary_pairs: ``[B]`` the scored boundaries themselves (:class:`BoundaryPair`: reference
            time, matched hypothesis time, labels), in the order of ``boundary_errors``: what
            figures and the dashboard draw, so they show exactly what was scored.
    """

    boundary_errors: np.ndarray
    num_ref_boundaries: int
    frames_correct: int
    frames_total: int
    substitutions: int
    insertions: int
    deletions: int
    num_ref_segments: int
    num_hyp_segments: int
    num_files: int = 1
    thresholds_ms: tuple[float, ...] = field(default=DEFAULT_THRESHOLDS_MS)
    boundary_labels: tuple[tuple[str, str], ...] = ()
    boundary_pairs: tuple[BoundaryPair, ...] = ()

    @property
    def abs_errors_ms(self) -> np.ndarray:
        return np.abs(self.boundary_errors) * 1000.0

    @property
    def num_scored_boundaries(self) -> int:
        return int(self.boundary_errors.shape[0])

    @property
    def num_unmatched_boundaries(self) -> int:
        return self.num_ref_boundaries - self.num_scored_boundaries

    @property
    def mean_abs_error_ms(self) -> float:
        return float(np.mean(self.abs_errors_ms)) if self.num_scored_boundaries else math.nan

    @property
    def median_abs_error_ms(self) -> float:
        return float(np.median(self.abs_errors_ms)) if self.num_scored_boundaries else math.nan

    def percent_within(self, threshold_ms: float) -> float:
        """Percentage of scored boundaries with ``|error| <= threshold_ms`` (NaN if none scored)."""
        if not self.num_scored_boundaries:
            return math.nan
        return 100.0 * float(np.mean(self.abs_errors_ms <= threshold_ms + 1e-6))

    @property
    def frame_accuracy(self) -> float:
        return self.frames_correct / self.frames_total if self.frames_total else math.nan

    @property
    def mismatches(self) -> int:
        """Phone-sequence mismatches: substitutions + insertions + deletions."""
        return self.substitutions + self.insertions + self.deletions

    def summary(self) -> dict[str, float | int]:
        """Flat dict of every metric, e.g. for a table row or CSV."""
        row: dict[str, float | int] = {
            "files": self.num_files,
            "ref_segments": self.num_ref_segments,
            "hyp_segments": self.num_hyp_segments,
            "boundaries": self.num_ref_boundaries,
            "scored_boundaries": self.num_scored_boundaries,
            "unmatched_boundaries": self.num_unmatched_boundaries,
        }
        for threshold in self.thresholds_ms:
            row[f"within_{threshold:g}ms_pct"] = self.percent_within(threshold)
        row.update(
            mean_abs_error_ms=self.mean_abs_error_ms,
            median_abs_error_ms=self.median_abs_error_ms,
            frame_accuracy=self.frame_accuracy,
            substitutions=self.substitutions,
            insertions=self.insertions,
            deletions=self.deletions,
            mismatches=self.mismatches,
        )
        return row


def align_labels(reference: Sequence[str], hypothesis: Sequence[str]) -> list[tuple[str, int | None, int | None]]:
    """Levenshtein alignment of two label sequences (unit costs).

    Among the alignments with the fewest edits it picks one with the most matches (so
    ``sil a b sil`` vs ``pau a sp b`` aligns both ``a`` and ``b``), then prefers, from the
    end, diagonal moves, then deletions, then insertions.

    Returns:
        Operations in order, each ``(op, i, j)``: ``("match", i, j)``, ``("sub", i, j)``,
        ``("del", i, None)`` (reference item missing from the hypothesis) or ``("ins", None, j)``.
    """
    n, m = len(reference), len(hypothesis)
    # Lexicographic cost (edits, -matches) packed in one integer: matches < edit_cost always.
    edit_cost = n + m + 1
    cost = np.zeros((n + 1, m + 1), dtype=np.int64)
    cost[:, 0] = np.arange(n + 1) * edit_cost
    cost[0, :] = np.arange(m + 1) * edit_cost
    hyp_array = np.asarray(list(hypothesis), dtype=object)
    for i in range(1, n + 1):
        step = np.where(hyp_array == reference[i - 1], -1, edit_cost) if m else np.zeros(0, np.int64)
        # Diagonal and "up" moves are vectorised over j; the "left" move needs a scan.
        row = np.minimum(cost[i - 1, :-1] + step, cost[i - 1, 1:] + edit_cost)
        current = cost[i]
        for j in range(1, m + 1):
            current[j] = min(row[j - 1], current[j - 1] + edit_cost)
    operations = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0:
            same = reference[i - 1] == hypothesis[j - 1]
            if cost[i, j] == cost[i - 1, j - 1] + (-1 if same else edit_cost):
                operations.append(("match" if same else "sub", i - 1, j - 1))
                i, j = i - 1, j - 1
                continue
        if i > 0 and cost[i, j] == cost[i - 1, j] + edit_cost:
            operations.append(("del", i - 1, None))
            i -= 1
        else:
            operations.append(("ins", None, j - 1))
            j -= 1
    operations.reverse()
    return operations


def _prepare(segments: Sequence[Segment], mode: SilenceMode, silence_labels: frozenset[str]) -> list[Segment]:
    """Apply the silence mode to one (validated, sorted) tier."""
    if mode == "keep":
        return list(segments)
    if mode == "ignore":
        return [s for s in segments if s.label not in silence_labels]
    # merge: silences and interior gaps become one "sil" run.
    result: list[Segment] = []
    for s in segments:
        if result and s.start - result[-1].end > TIME_TOLERANCE:
            gap = Segment(MERGED_SILENCE, result[-1].end, s.start)
            result.append(gap)
        if s.label in silence_labels:
            s = Segment(MERGED_SILENCE, s.start, s.end, s.score)
        if result and result[-1].label == MERGED_SILENCE and s.label == MERGED_SILENCE:
            result[-1] = Segment(MERGED_SILENCE, result[-1].start, s.end)
        else:
            result.append(s)
    return result


def _touch(a: Segment, b: Segment) -> bool:
    return abs(b.start - a.end) <= TIME_TOLERANCE


def _boundaries(segments: Sequence[Segment], extent: tuple[float, float]) -> list[tuple[float, int | None, int | None]]:
    """``(time, left index | None, right index | None)`` for every edge not on the tier's extent."""
    first, last = extent
    result = []
    for k, s in enumerate(segments):
        if k > 0 and _touch(segments[k - 1], s):
            result.append((s.start, k - 1, k))
        elif abs(s.start - first) > TIME_TOLERANCE:
            result.append((s.start, None, k))
        is_last = k == len(segments) - 1
        if (is_last or not _touch(s, segments[k + 1])) and abs(s.end - last) > TIME_TOLERANCE:
            result.append((s.end, k, None))
    return result


def compare_tiers(
    reference: Sequence[Segment],
    hypothesis: Sequence[Segment],
    silence: SilenceMode = "keep",
    silence_labels: Iterable[str] = SILENCE_LABELS,
    frame_shift: float = 0.01,
    thresholds_ms: Sequence[float] = DEFAULT_THRESHOLDS_MS,
) -> AlignmentComparison:
    """Compare a hypothesis phone tier with a reference one (see the module docstring).

    Args:
        reference, hypothesis: tiers (sorted, non-overlapping lists of :class:`Segment`).
        silence: ``"keep"``, ``"merge"`` or ``"ignore"`` silence labels and gaps.
        silence_labels: labels treated as silence.
        frame_shift: frame length in seconds for frame accuracy.
        thresholds_ms: thresholds reported by :meth:`AlignmentComparison.summary`.

    Returns:
        :class:`AlignmentComparison` with the raw counts; its properties give the metrics.
    """
    if silence not in ("keep", "merge", "ignore"):
        raise InvalidInputError(f"silence must be 'keep', 'merge' or 'ignore', got {silence!r}")
    if not frame_shift > 0:
        raise InvalidInputError(f"frame_shift must be positive seconds, got {frame_shift!r}")
    validate_tier(reference, name="reference tier")
    validate_tier(hypothesis, name="hypothesis tier")
    if not reference:
        raise InvalidInputError("reference tier is empty: nothing to compare against")
    silence_set = frozenset(silence_labels)
    extent = (reference[0].start, reference[-1].end)
    ref = _prepare(reference, silence, silence_set)
    hyp = _prepare(hypothesis, silence, silence_set)

    operations = align_labels([s.label for s in ref], [s.label for s in hyp])
    matched = {i: j for op, i, j in operations if op == "match"}
    counts = {op: sum(1 for o, _, _ in operations if o == op) for op in ("sub", "ins", "del")}

    scored: list[BoundaryPair] = []
    boundaries = _boundaries(ref, extent)
    for time, left, right in boundaries:
        matched_time = None
        if left is not None and right is not None:
            if left in matched and right in matched:
                jl, jr = matched[left], matched[right]
                if jr == jl + 1 and _touch(hyp[jl], hyp[jr]):
                    matched_time = hyp[jr].start
        elif right is not None:
            if right in matched:
                matched_time = hyp[matched[right]].start
        elif left in matched:
            matched_time = hyp[matched[left]].end
        if matched_time is not None:
            scored.append(BoundaryPair(time, matched_time, ref[left].label if left is not None else "",
                                      ref[right].label if right is not None else ""))

    # Frame accuracy over frames whose centre lies in the reference extent.
    fill = MERGED_SILENCE if silence == "merge" else ""
    num_frames = max(0, math.ceil(extent[1] / frame_shift - 0.5 - 1e-9))
    first_frame = max(0, math.ceil(extent[0] / frame_shift - 0.5 - 1e-9))
    ref_frames = frame_labels_from_segments(ref, frame_shift, num_frames, fill)[first_frame:]
    hyp_frames = frame_labels_from_segments(hyp, frame_shift, num_frames, fill)[first_frame:]
    if silence == "ignore":
        pairs = [(r, h) for r, h in zip(ref_frames, hyp_frames) if r not in silence_set]
    else:
        pairs = list(zip(ref_frames, hyp_frames))
    frames_correct = sum(1 for r, h in pairs if r == h)

    return AlignmentComparison(
        boundary_errors=np.asarray([pair.error for pair in scored], dtype=np.float64),
        num_ref_boundaries=len(boundaries),
        frames_correct=frames_correct,
        frames_total=len(pairs),
        substitutions=counts["sub"],
        insertions=counts["ins"],
        deletions=counts["del"],
        num_ref_segments=len(ref),
        num_hyp_segments=len(hyp),
        thresholds_ms=tuple(float(t) for t in thresholds_ms),
        boundary_labels=tuple((pair.left, pair.right) for pair in scored),
        boundary_pairs=tuple(scored),
    )


def pool_comparisons(comparisons: Sequence[AlignmentComparison]) -> AlignmentComparison:
    """Corpus-level result: all boundary errors pooled, all counts summed."""
    comparisons = list(comparisons)
    if not comparisons:
        raise InvalidInputError("no comparisons to pool")
    return AlignmentComparison(
        boundary_errors=np.concatenate([c.boundary_errors for c in comparisons]),
        num_ref_boundaries=sum(c.num_ref_boundaries for c in comparisons),
        frames_correct=sum(c.frames_correct for c in comparisons),
        frames_total=sum(c.frames_total for c in comparisons),
        substitutions=sum(c.substitutions for c in comparisons),
        insertions=sum(c.insertions for c in comparisons),
        deletions=sum(c.deletions for c in comparisons),
        num_ref_segments=sum(c.num_ref_segments for c in comparisons),
        num_hyp_segments=sum(c.num_hyp_segments for c in comparisons),
        num_files=sum(c.num_files for c in comparisons),
        thresholds_ms=comparisons[0].thresholds_ms,
        boundary_labels=tuple(label for c in comparisons for label in c.boundary_labels),
        boundary_pairs=tuple(pair for c in comparisons for pair in c.boundary_pairs),
    )


@dataclass(frozen=True)
class BoundaryClass:
    """The scored boundaries that go into (``"into X"``) or out of (``"out of X"``) reference
    label X: how many, how many within the threshold, their signed mean error (hypothesis -
    reference: a large one means a consistent offset, such as a labelling convention, not
    noise) and their mean absolute error, in ms."""

    name: str
    count: int
    within: int
    signed_mean_ms: float
    mean_abs_ms: float

    @property
    def misses(self) -> int:
        return self.count - self.within


def boundary_classes(comparison: AlignmentComparison, threshold_ms: float = 20.0) -> list[BoundaryClass]:
    """Every scored boundary counted twice, under ``"into <right label>"`` and ``"out of <left
    label>"`` (a gap or the tier's edge gives no class); the classes with the most misses over
    ``threshold_ms`` first (then by name)."""
    groups: dict[str, list[float]] = {}
    for error, (left, right) in zip(comparison.boundary_errors * 1000.0, comparison.boundary_labels):
        if right:
            groups.setdefault(f"into {right}", []).append(float(error))
        if left:
            groups.setdefault(f"out of {left}", []).append(float(error))
    classes = [
        BoundaryClass(name, len(errors), sum(abs(e) <= threshold_ms + 1e-6 for e in errors),
                      sum(errors) / len(errors), sum(abs(e) for e in errors) / len(errors))
        for name, errors in groups.items()
    ]
    return sorted(classes, key=lambda c: (-c.misses, c.name))
