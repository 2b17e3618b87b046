"""Confidence and check tiers in TextGrids: round trip through praatio, check rules."""

from __future__ import annotations

import numpy as np
import pytest
from praatio import textgrid as praat_textgrid

from hmm_engine.alignment.textgrids import (
    CHECK_TIER,
    PHONE_CONFIDENCE_TIER,
    WORD_CONFIDENCE_TIER,
    confidence_tiers,
    read_confidences,
    write_textgrid,
)
from hmm_engine.segments import Segment


def _tiers():
    phones = [Segment("sil", 0.0, 0.3, 0.99), Segment("h", 0.3, 0.38, 0.41234), Segment("ai", 0.38, 0.6, 0.87654),
              Segment("sil", 0.6, 0.7, 0.5), Segment("b", 0.7, 0.75, None), Segment("ai", 0.75, 3.9, 0.2)]
    words = [Segment("hi", 0.3, 0.6), Segment("bye", 0.7, 3.9)]
    return {"phones": phones, "words": words}


def test_confidence_tiers_round_trip_through_praatio(tmp_path):
    tiers = _tiers()
    extra = confidence_tiers(tiers)
    path = tmp_path / "c.TextGrid"
    write_textgrid(path, {**tiers, **extra}, 4.0)
    # praatio itself reads the tiers and labels back.
    grid = praat_textgrid.openTextgrid(str(path), includeEmptyIntervals=False)
    assert set(grid.tierNames) == {"phones", "words", PHONE_CONFIDENCE_TIER, WORD_CONFIDENCE_TIER, CHECK_TIER}
    labels = [e.label for e in grid.getTier(PHONE_CONFIDENCE_TIER).entries]
    assert labels == ["0.990", "0.412", "0.877", "0.500", "0.200"]  # the unscored "b" is an empty interval
    back = read_confidences(path)
    phones = tiers["phones"]
    assert [row[0] for row in back["phones"]] == [p.label for p in phones]
    for (label, start, end, value), p in zip(back["phones"], phones):
        assert (start, end) == pytest.approx((p.start, p.end), abs=1e-9)
        assert value == (None if p.score is None else pytest.approx(p.score, abs=5e-4))
    # Word confidence: duration-weighted mean of its scored phones.
    hi = (0.41234 * 0.08 + 0.87654 * 0.22) / 0.30
    assert back["words"][0][3] == pytest.approx(hi, abs=5e-4)
    assert back["words"][1][3] == pytest.approx(0.2, abs=5e-4)


def test_check_tier_flags_long_words_long_phones_and_phones_over_silence():
    tiers = _tiers()
    checks = confidence_tiers(tiers)[CHECK_TIER]
    # "bye": 3.2 s for 2 phones; its "ai" is 3.15 s long: one merged flag with both reasons.
    assert len(checks) == 1
    assert (checks[0].start, checks[0].end) == (0.7, 3.9)
    assert "long word: 3.20 s for 2 phones" in checks[0].label and "long phone: ai 3.15 s" in checks[0].label
    # A loudness track, quiet everywhere except under "h ai": the "b ai" word lies over non-speech.
    energy = np.full(400, -60.0)
    energy[30:60] = -10.0
    energy[:5] = -70.0
    checks = confidence_tiers({"phones": tiers["phones"][:5] + [Segment("ai", 0.75, 1.0, 0.2)],
                               "words": [Segment("hi", 0.3, 0.6), Segment("bye", 0.7, 1.0)]}, energy, 0.01)[CHECK_TIER]
    assert [c.label for c in checks] == ["phone over non-speech: b", "phone over non-speech: ai"]
    assert not [c for c in checks if c.start < 0.6]  # the spoken word is not flagged


def test_plausible_alignment_has_an_empty_check_tier():
    phones = [Segment("h", 0.0, 0.1, 0.9), Segment("ai", 0.1, 0.3, 0.8)]
    energy = np.full(30, -10.0)
    out = confidence_tiers({"phones": phones, "words": [Segment("hi", 0.0, 0.3)]}, np.r_[energy, -60 * np.ones(10)],
                           0.01)
    assert out[CHECK_TIER] == []
