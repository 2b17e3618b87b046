"""TextGrid I/O, exports (round trips), segments, alignment metrics and the evaluate CLI."""

import csv
import io
import math

import numpy as np
import pytest

from hmm_engine.alignment.exports import (
    frames_to_csv,
    frames_to_json,
    read_frames_csv,
    read_frames_json,
    read_segments_csv,
    read_segments_json,
    segments_to_csv,
    segments_to_json,
    segments_to_textgrid,
)
from hmm_engine.alignment.metrics import align_labels, compare_tiers, pool_comparisons
from hmm_engine.segments import (
    Segment,
    frame_labels_from_segments,
    merge_adjacent,
    segments_from_frame_labels,
    validate_tier,
)
from hmm_engine.alignment.textgrids import read_textgrid, write_textgrid
from hmm_engine.cli import main
from hmm_engine.errors import InvalidInputError, TextGridError

S = Segment
PHONES = [S("sil", 0.0, 0.1), S("h", 0.1, 0.17), S("@", 0.17, 0.23), S("l", 0.23, 0.31), S("oU", 0.31, 0.45), S("sil", 0.45, 0.6)]
WORDS = [S("hello", 0.1, 0.45, 0.5)]


def shifted(tier, delta):
    """Move every interior boundary by ``delta`` seconds (outer edges stay)."""
    edges = [tier[0].start] + [s.end for s in tier]
    moved = [edges[0]] + [e + delta for e in edges[1:-1]] + [edges[-1]]
    return [S(s.label, moved[k], moved[k + 1]) for k, s in enumerate(tier)]


# ---------------------------------------------------------------- segments


def test_segment_validation():
    with pytest.raises(InvalidInputError, match="before end"):
        S("a", 0.2, 0.2)
    with pytest.raises(InvalidInputError, match="finite"):
        S("a", 0.0, math.nan)
    assert S("a", np.float32(0.5), np.int64(1)).end == 1.0
    with pytest.raises(InvalidInputError, match="overlap"):
        validate_tier([S("a", 0, 0.2), S("b", 0.1, 0.3)])
    with pytest.raises(InvalidInputError, match="not sorted"):
        validate_tier([S("a", 0.5, 0.6), S("b", 0.1, 0.3)])
    with pytest.raises(InvalidInputError, match="outside"):
        validate_tier([S("a", 0, 0.7)], duration=0.6)


def test_segments_from_frame_labels_and_back():
    labels = ["sil"] * 3 + ["a"] * 4 + ["sil"] * 3
    segments = segments_from_frame_labels(labels, 0.01, duration=0.095, scores=[1.0] * 3 + [0.5] * 4 + [0.0] * 3)
    assert segments == [S("sil", 0.0, 0.03, 1.0), S("a", 0.03, 0.07, 0.5), S("sil", 0.07, 0.095, 0.0)]
    # Frame 9's centre (0.095 s) is at the end of the audio, so no segment contains it.
    assert frame_labels_from_segments(segments, 0.01, 10) == labels[:9] + [""]
    assert frame_labels_from_segments(segments_from_frame_labels(labels, 0.01), 0.01, 10) == labels
    assert segments_from_frame_labels([0, 0, 1], 0.02)[-1] == S("1", 0.04, 0.06)
    with pytest.raises(InvalidInputError, match="do not match"):
        segments_from_frame_labels(labels, 0.01, duration=0.2)
    assert merge_adjacent([S("a", 0, 1), S("a", 1, 2), S("b", 2, 3)]) == [S("a", 0, 2), S("b", 2, 3)]


# ---------------------------------------------------------------- TextGrid


def test_textgrid_round_trip_keeps_exact_times(tmp_path):
    path = tmp_path / "utt.TextGrid"
    tiers = {"phones": PHONES, "words": WORDS}
    write_textgrid(path, tiers, duration=0.6)
    back = read_textgrid(path)
    assert list(back) == ["phones", "words"]
    assert back["phones"] == PHONES  # exact float equality
    assert back["words"] == [S("hello", 0.1, 0.45)]  # scores are not stored in TextGrids
    # Gaps come back as empty intervals when asked for.
    with_gaps = read_textgrid(path, tier="words", keep_empty=True)["words"]
    assert [(s.label, s.start, s.end) for s in with_gaps] == [("", 0.0, 0.1), ("hello", 0.1, 0.45), ("", 0.45, 0.6)]


def test_textgrid_errors(tmp_path):
    path = tmp_path / "utt.TextGrid"
    write_textgrid(path, {"phones": PHONES}, duration=0.6)
    with pytest.raises(TextGridError, match="no tier named 'words'.*phones"):
        read_textgrid(path, tier="words")
    with pytest.raises(TextGridError, match="not found"):
        read_textgrid(tmp_path / "missing.TextGrid")
    bad = tmp_path / "bad.TextGrid"
    bad.write_text("this is not a textgrid\n")
    with pytest.raises(TextGridError, match="bad.TextGrid.*not a valid TextGrid"):
        read_textgrid(bad)
    overlapping = tmp_path / "overlap.TextGrid"
    overlapping.write_text(path.read_text().replace("xmin = 0.17", "xmin = 0.15"))
    with pytest.raises(TextGridError, match="overlap"):
        read_textgrid(overlapping)
    with pytest.raises(TextGridError, match="outside"):
        write_textgrid(path, {"phones": PHONES}, duration=0.5)
    with pytest.raises(TextGridError, match="overlap"):
        write_textgrid(path, {"phones": [S("a", 0, 0.3), S("b", 0.2, 0.4)]}, duration=0.5)


# ---------------------------------------------------------------- exports


def test_segment_exports_round_trip(tmp_path):
    tiers = {"phones": [S("a", 0.0, 0.125, 0.25), S("b,\"q\"", 0.125, 0.3, None)], "words": WORDS}
    text = segments_to_csv(tiers, path=tmp_path / "s.csv")
    assert text.splitlines()[0] == "tier,label,start,end,score"
    assert text.splitlines()[1] == "phones,a,0.0,0.125,0.25"
    assert read_segments_csv(text) == tiers
    assert read_segments_csv(tmp_path / "s.csv") == tiers
    json_text = segments_to_json(tiers, duration=0.6, path=tmp_path / "s.json")
    assert read_segments_json(json_text) == (tiers, 0.6)
    assert read_segments_json(tmp_path / "s.json") == (tiers, 0.6)
    grid = segments_to_textgrid({"phones": PHONES}, 0.6, path=tmp_path / "s.TextGrid")
    assert 'name = "phones"' in grid
    assert read_textgrid(tmp_path / "s.TextGrid")["phones"] == PHONES
    with pytest.raises(InvalidInputError, match="header"):
        read_segments_csv("a,b\n1,2\n")


def test_frame_exports_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    posteriors = rng.dirichlet(np.ones(3), size=7).astype(np.float32)
    states = posteriors.argmax(axis=1)
    names = ["sil", "a", "b"]
    text = frames_to_csv(states, posteriors, 0.01, names, path=tmp_path / "f.csv")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["frame", "time", "state", "p_sil", "p_a", "p_b"]
    assert rows[3][:3] == ["2", "0.02", names[states[2]]]
    got_states, got_post, got_names, times = read_frames_csv(tmp_path / "f.csv")
    np.testing.assert_array_equal(got_states, states)
    np.testing.assert_array_equal(got_post.astype(np.float32), posteriors)  # exact
    assert got_names == names
    np.testing.assert_allclose(times, np.arange(7) * 0.01)
    payload = read_frames_json(frames_to_json(states, posteriors, 0.01, names, path=tmp_path / "f.json"))
    np.testing.assert_array_equal(payload["states"], states)
    np.testing.assert_array_equal(payload["posteriors"].astype(np.float32), posteriors)
    assert payload["state_names"] == names and payload["frame_shift"] == 0.01
    # Without posteriors.
    states_only = read_frames_csv(frames_to_csv([0, 0, 1], None, 0.02))
    np.testing.assert_array_equal(states_only[0], [0, 0, 1])
    assert states_only[1] is None
    with pytest.raises(InvalidInputError, match="T = 3"):
        frames_to_csv([0, 1, 2], np.ones((4, 3)), 0.01)
    with pytest.raises(InvalidInputError, match="state names"):
        frames_to_json([0, 1], None, 0.01, ["only-one"])


# ---------------------------------------------------------------- metrics


def test_identical_tiers_are_perfect():
    result = compare_tiers(PHONES, PHONES)
    assert result.num_ref_boundaries == 5 and result.num_scored_boundaries == 5
    assert result.mean_abs_error_ms == 0 and result.frame_accuracy == 1.0 and result.mismatches == 0


def test_every_boundary_shifted_by_15ms():
    result = compare_tiers(PHONES, shifted(PHONES, 0.015))
    np.testing.assert_allclose(result.boundary_errors, [0.015] * 5, atol=1e-12)
    assert result.percent_within(10) == 0.0
    assert result.percent_within(20) == 100.0 and result.percent_within(25) == 100.0 and result.percent_within(50) == 100.0
    assert result.mean_abs_error_ms == pytest.approx(15.0) and result.median_abs_error_ms == pytest.approx(15.0)
    # Each boundary mislabels the one 10 ms frame whose centre (x.x05 s) falls in the 15 ms shift.
    assert result.frames_total == 60 and result.frames_correct == 55
    # Exactly on the threshold counts as within.
    assert compare_tiers(PHONES, shifted(PHONES, -0.02)).percent_within(20) == 100.0


def test_mixed_errors_mean_median_and_within():
    ref = [S("a", 0, 0.1), S("b", 0.1, 0.2), S("c", 0.2, 0.3), S("d", 0.3, 0.4)]
    hyp = [S("a", 0, 0.105), S("b", 0.105, 0.17), S("c", 0.17, 0.35), S("d", 0.35, 0.4)]
    result = compare_tiers(ref, hyp)
    np.testing.assert_allclose(result.abs_errors_ms, [5, 30, 50], atol=1e-9)
    assert result.mean_abs_error_ms == pytest.approx(85 / 3) and result.median_abs_error_ms == pytest.approx(30)
    assert result.percent_within(10) == pytest.approx(100 / 3) and result.percent_within(25) == pytest.approx(100 / 3)
    assert result.percent_within(50) == 100.0


def test_label_alignment_and_mismatch_counts():
    assert [op for op, _, _ in align_labels(list("kitten"), list("sitting"))] == [
        "sub", "match", "match", "match", "sub", "match", "ins"
    ]
    ref = [S("a", 0, 0.1), S("b", 0.1, 0.2), S("c", 0.2, 0.3), S("d", 0.3, 0.4)]
    # "c" deleted (b stretched over it), "x" inserted inside d.
    hyp = [S("a", 0, 0.1), S("b", 0.1, 0.3), S("d", 0.3, 0.35), S("x", 0.35, 0.38), S("d", 0.38, 0.4)]
    result = compare_tiers(ref, hyp)
    # Cheapest: c -> d substituted, x inserted, d matched to the last d.
    assert (result.substitutions, result.insertions, result.deletions) == (1, 1, 0)
    assert result.mismatches == 2
    # Boundaries: a|b scored (0 error); b|c and c|d touch the substituted c -> unmatched.
    assert result.num_ref_boundaries == 3 and result.num_scored_boundaries == 1
    assert result.boundary_errors.tolist() == [0.0]
    # Wrong frames: the 10 frames of c, and the 3 frames of x inside d.
    assert result.frames_total == 40 and result.frames_correct == 40 - 10 - 3


def test_silence_modes():
    ref = [S("sil", 0, 0.1), S("a", 0.1, 0.2), S("b", 0.2, 0.3), S("sil", 0.3, 0.4)]
    # Different silence labels, a short pause between a and b, and a gap at the end.
    hyp = [S("pau", 0, 0.11), S("a", 0.11, 0.2), S("sp", 0.2, 0.22), S("b", 0.22, 0.3)]
    keep = compare_tiers(ref, hyp, silence="keep")
    # sil/pau substituted, sp inserted, final sil deleted; a and b matched.
    assert (keep.substitutions, keep.insertions, keep.deletions) == (1, 1, 1)
    merge = compare_tiers(ref, hyp, silence="merge")
    assert (merge.substitutions, merge.insertions, merge.deletions) == (0, 1, 1)
    ignore = compare_tiers(ref, hyp, silence="ignore")
    assert ignore.mismatches == 0
    # ignore: a's start (+10 ms), a|b -> a's end (0) and b's start (+20 ms) are separate hyp
    # edges, so a|b is unmatched; b's end (0) is scored.
    assert ignore.num_ref_boundaries == 3
    np.testing.assert_allclose(sorted(ignore.abs_errors_ms), [0.0, 10.0], atol=1e-9)
    # Frame accuracy over the 20 non-silence reference frames: a at 0.105 and b at 0.205, 0.215 wrong.
    assert ignore.frames_total == 20 and ignore.frames_correct == 17


def test_corpus_pooling():
    first = compare_tiers(PHONES, shifted(PHONES, 0.015))  # 5 boundaries at 15 ms
    second = compare_tiers(PHONES, shifted(PHONES, -0.005))  # 5 boundaries at 5 ms
    total = pool_comparisons([first, second])
    assert total.num_files == 2 and total.num_scored_boundaries == 10
    assert total.mean_abs_error_ms == pytest.approx(10.0)
    assert total.percent_within(10) == 50.0
    assert total.frames_total == 120
    summary = total.summary()
    assert summary["within_20ms_pct"] == 100.0 and summary["files"] == 2
    with pytest.raises(InvalidInputError):
        pool_comparisons([])


# ---------------------------------------------------------------- CLI


def test_evaluate_cli(tmp_path, capsys):
    ref_dir, hyp_dir = tmp_path / "ref", tmp_path / "hyp"
    ref_dir.mkdir()
    hyp_dir.mkdir()
    write_textgrid(ref_dir / "u1.TextGrid", {"phones": PHONES}, 0.6)
    write_textgrid(hyp_dir / "u1.TextGrid", {"phones": shifted(PHONES, 0.015)}, 0.6)
    write_textgrid(ref_dir / "u2.TextGrid", {"phones": PHONES}, 0.6)
    write_textgrid(hyp_dir / "u2.TextGrid", {"phones": shifted(PHONES, -0.005)}, 0.6)
    write_textgrid(ref_dir / "only_ref.TextGrid", {"phones": PHONES}, 0.6)
    (hyp_dir / "broken.TextGrid").write_text("nonsense")
    (ref_dir / "broken.TextGrid").write_text("nonsense")
    out_csv = tmp_path / "per_file.csv"

    code = main(["evaluate", str(ref_dir), str(hyp_dir), "--csv", str(out_csv)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "only_ref: no hypothesis TextGrid" in printed
    assert "broken: skipped" in printed
    assert "Evaluated 2 file(s)" in printed
    rows = {row["file"]: row for row in csv.DictReader(out_csv.open())}
    assert set(rows) == {"u1", "u2", "TOTAL"}
    assert float(rows["u1"]["mean_abs_error_ms"]) == pytest.approx(15.0)
    assert float(rows["TOTAL"]["mean_abs_error_ms"]) == pytest.approx(10.0)
    assert float(rows["TOTAL"]["within_10ms_pct"]) == 50.0

    # Nothing evaluable -> non-zero exit.
    assert main(["evaluate", str(ref_dir), str(hyp_dir), "--tier", "words"]) == 1
    assert "no file could be evaluated" in capsys.readouterr().out
    assert main(["evaluate", str(ref_dir), str(hyp_dir), "--ignore-silence"]) == 0


def test_boundary_classes_by_hand(tmp_path, capsys):
    """sil|a moved +10 ms, a|b +30 ms, b|sil -5 ms: each boundary counts under "into" its right
    label and "out of" its left one; only a|b misses 20 ms. Pooling two files sums them, and
    evaluate --by-class / --class-csv print and write the same numbers."""
    from hmm_engine.alignment.metrics import boundary_classes

    ref = [S("sil", 0.0, 0.1), S("a", 0.1, 0.2), S("b", 0.2, 0.35), S("sil", 0.35, 0.5)]
    hyp = [S("sil", 0.0, 0.11), S("a", 0.11, 0.23), S("b", 0.23, 0.345), S("sil", 0.345, 0.5)]
    result = compare_tiers(ref, hyp)
    assert result.boundary_labels == (("sil", "a"), ("a", "b"), ("b", "sil"))
    classes = {c.name: c for c in boundary_classes(result)}
    assert [c.name for c in boundary_classes(result)][:2] == ["into b", "out of a"]
    expected = {"into a": 10.0, "out of sil": 10.0, "into b": 30.0, "out of a": 30.0, "into sil": -5.0,
                "out of b": -5.0}
    assert {name: c.signed_mean_ms for name, c in classes.items()} == pytest.approx(expected)
    assert {name: c.misses for name, c in classes.items()} == {n: int(abs(v) > 20) for n, v in expected.items()}
    pooled = boundary_classes(pool_comparisons([result, compare_tiers(ref, ref)]))
    into_b = next(c for c in pooled if c.name == "into b")
    assert (into_b.count, into_b.within, into_b.signed_mean_ms, into_b.mean_abs_ms) == (2, 1, pytest.approx(15.0),
                                                                                      pytest.approx(15.0))

    ref_dir, hyp_dir = tmp_path / "ref", tmp_path / "hyp"
    ref_dir.mkdir()
    hyp_dir.mkdir()
    write_textgrid(ref_dir / "u.TextGrid", {"phones": ref}, 0.5)
    write_textgrid(hyp_dir / "u.TextGrid", {"phones": hyp}, 0.5)
    capsys.readouterr()
    assert main(["evaluate", str(ref_dir), str(hyp_dir), "--by-class", "2", "--class-csv",
                 str(tmp_path / "classes.csv")]) == 0
    printed = capsys.readouterr().out
    assert "into b               1 of 1     missed  signed mean   +30.0 ms" in printed
    assert "out of a" in printed and "into sil" not in printed
    rows = list(csv.DictReader((tmp_path / "classes.csv").open()))
    assert [r["class"] for r in rows][:2] == ["into b", "out of a"] and len(rows) == 6
    assert float(next(r for r in rows if r["class"] == "into sil")["signed_mean_ms"]) == pytest.approx(-5.0)
