"""One boundary pairing: compare_tiers returns the boundaries it scored, and the dashboard's
points and the alignment figure are exactly those."""

from __future__ import annotations

import numpy as np
import pytest

from hmm_engine.alignment.metrics import BoundaryPair, compare_tiers, pool_comparisons
from hmm_engine.segments import Segment as S

REF = [S("sil", 0.0, 0.10), S("a", 0.10, 0.20), S("b", 0.20, 0.35), S("sp", 0.35, 0.40), S("c", 0.40, 0.60),
       S("sil", 0.60, 0.70)]
HYP = [S("sil", 0.0, 0.12), S("a", 0.12, 0.19), S("b", 0.19, 0.33), S("c", 0.38, 0.62), S("pau", 0.62, 0.70)]


def test_pairs_by_hand_merge_mode():
    cmp = compare_tiers(REF, HYP, silence="merge")
    # merged hypothesis: sil a b [gap->sil 0.33-0.38] c sil
    expected = [BoundaryPair(0.10, 0.12, "sil", "a"), BoundaryPair(0.20, 0.19, "a", "b"),
                BoundaryPair(0.35, 0.33, "b", "sil"), BoundaryPair(0.40, 0.38, "sil", "c"),
                BoundaryPair(0.60, 0.62, "c", "sil")]
    assert len(cmp.boundary_pairs) == len(expected)
    for got, want in zip(cmp.boundary_pairs, expected):
        assert (got.left, got.right) == (want.left, want.right)
        assert got.reference == pytest.approx(want.reference) and got.hypothesis == pytest.approx(want.hypothesis)
    np.testing.assert_allclose(cmp.boundary_errors, [p.error for p in cmp.boundary_pairs])
    assert cmp.boundary_labels == tuple((p.left, p.right) for p in cmp.boundary_pairs)


def test_pairs_with_gaps_are_one_sided_in_ignore_mode():
    cmp = compare_tiers(REF, HYP, silence="ignore")
    # a b | gap | c: the edges next to removed silences are scored from one side.
    got = [(p.left, p.right, round(p.reference, 6), round(p.hypothesis, 6)) for p in cmp.boundary_pairs]
    assert got == [("", "a", 0.10, 0.12), ("a", "b", 0.20, 0.19), ("b", "", 0.35, 0.33),
                   ("", "c", 0.40, 0.38), ("c", "", 0.60, 0.62)]
    assert cmp.num_scored_boundaries == len(cmp.boundary_pairs)


def test_pooled_pairs_follow_the_errors():
    a, b = compare_tiers(REF, HYP, silence="merge"), compare_tiers(REF, REF, silence="merge")
    pooled = pool_comparisons([a, b])
    assert pooled.boundary_pairs == a.boundary_pairs + b.boundary_pairs
    np.testing.assert_allclose(pooled.boundary_errors, [p.error for p in pooled.boundary_pairs])


def test_dashboard_points_and_figure_use_the_scored_pairs():
    from components import alignment as A
    from components import figures as F

    metrics, points = A.score(REF, HYP, frame_shift=0.01)
    cmp = compare_tiers(REF, HYP, silence=A.SILENCE_MODE)
    assert points == [(p.reference, p.hypothesis, p.label) for p in cmp.boundary_pairs]
    assert metrics["scored_boundaries"] == len(points)
    assert F.boundary_pairs(HYP, REF) == points
    fig = F.alignment_figure(HYP, REF, duration=0.7)
    err = next(t for t in fig.data if t.name == "boundary error")
    np.testing.assert_allclose(err.x, [p[0] for p in points])
    np.testing.assert_allclose(err.y, [(h - r) * 1000 for r, h, _ in points], atol=1e-9)
