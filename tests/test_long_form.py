"""Long recordings: features block by block, anchors, pieces, stitching, unalignable stretches."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from pathlib import Path

from hmm_engine.alignment.long_form import (
    align_corpus_long,
    coarse_pieces,
    frame_energy,
    long_features,
    read_pieces,
    stitch,
)
from hmm_engine.alignment.metrics import compare_tiers, pool_comparisons
from hmm_engine.alignment.textgrids import read_textgrid
from hmm_engine.cli import main as cli_main
from hmm_engine.frontend.audio import load_audio
from hmm_engine.frontend.features import FeatureConfig, extract_features
from hmm_engine.segments import Segment

SYNTH = Path(__file__).parent / "data" / "synth"
NAMES = ["espeak_0001", "espeak_0002", "festival_0001", "festival_0002", "flite_0001", "flite_0002"]


def _chain(folder: Path, repeats: int, noise_at: int | None = None, seed: int = 0, names=NAMES):
    """Chain the sample utterances ``repeats`` times, back to back, into
    ``folder/long.wav`` + ``long.phones.lab``; occurrence ``noise_at`` is replaced by noise of
    the same length (its phones stay in the transcript). Returns ``[(name, offset, duration)]``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    parts, phones, placed, t = [], [], [], 0.0
    for k in range(repeats * len(names)):
        name = names[k % len(names)]
        x, sr = sf.read(SYNTH / f"{name}.wav", dtype="float32")
        if k == noise_at:
            x = (rng.normal(0, 0.1, len(x)) * np.sin(np.arange(len(x)) / sr * 2 * np.pi * 3) ** 2).astype(np.float32)
        placed.append((name, t, len(x) / sr))
        parts.append(x)  # back to back: each utterance keeps its own edge silences
        t += len(x) / sr
        phones.append((SYNTH / f"{name}.phones.lab").read_text().strip())
    sf.write(folder / "long.wav", np.concatenate(parts), sr)
    (folder / "long.phones.lab").write_text(" ".join(phones) + "\n")
    return placed


def _score(hyp: list[Segment], placed, skip=()):
    out = []
    for k, (name, offset, dur) in enumerate(placed):
        if k in skip:
            continue
        ref = read_textgrid(SYNTH / f"{name}.TextGrid", tier="phones")["phones"]
        piece = [Segment(s.label, max(s.start, offset) - offset, min(s.end, offset + dur) - offset)
                 for s in hyp if s.end > offset + 1e-6 and s.start < offset + dur - 1e-6
                 and min(s.end, offset + dur) - max(s.start, offset) > 1e-6]
        out.append(compare_tiers(ref, piece))
    return pool_comparisons(out)


def test_block_features_equal_whole_file_features(tmp_path):
    _chain(tmp_path, 2)
    config = FeatureConfig()
    whole = extract_features(load_audio(tmp_path / "long.wav"), config).values
    blocks = long_features(tmp_path / "long.wav", config, block_seconds=3.7).values
    assert blocks.shape == whole.shape
    assert float((blocks - whole).abs().max()) < 1e-4
    energy = frame_energy(tmp_path / "long.wav", 0.01)
    assert abs(len(energy) - whole.shape[0]) <= 1


def test_stitch_shifts_and_merges_the_shared_pause():
    a = {"phones": [Segment("sil", 0, 0.2, 0.9), Segment("a", 0.2, 0.5, 0.8), Segment("sil", 0.5, 1.0, 0.6)],
         "words": [Segment("w1", 0.2, 0.5)]}
    b = {"phones": [Segment("sil", 0, 0.3, 1.0), Segment("b", 0.3, 0.9, 0.7)], "words": [Segment("w2", 0.3, 0.9)]}
    out = stitch([(0.0, a), (1.0, b)])
    assert [(s.label, s.start, s.end) for s in out["phones"]] == [
        ("sil", 0, 0.2), ("a", 0.2, 0.5), ("sil", 0.5, 1.3), ("b", 1.3, 1.9)]
    assert out["phones"][2].score == pytest.approx((0.6 * 0.5 + 1.0 * 0.3) / 0.8)
    assert [(s.label, s.start, s.end) for s in out["words"]] == [("w1", 0.2, 0.5), ("w2", 1.3, 1.9)]


def test_stitch_snaps_float_noise_at_joins():
    """Offsets plus piece times do not add up exactly (0.1 + 0.2 != 0.3): joins are made exact,
    so the tier stays valid for praatio."""
    from hmm_engine.alignment.textgrids import textgrid_to_string

    a = {"phones": [Segment("x", 0.0, 0.2)]}
    b = {"phones": [Segment("y", 0.0, 0.5)]}
    c = {"phones": [Segment("z", 0.0, 0.1 + 0.2)]}
    out = stitch([(0.1, a), (0.1 + 0.2 - 3e-14, b), (0.8000000000000003, c)])["phones"]
    assert [s.label for s in out] == ["x", "y", "z"]
    assert all(left.end == right.start for left, right in zip(out[:-1], out[1:]))
    textgrid_to_string({"phones": out}, 1.2)


def test_coarse_pieces_cover_the_recording_and_the_transcript(tmp_path):
    from hmm_engine.alignment.transcripts import prepare_transcript

    _chain(tmp_path, 4)
    features = long_features(tmp_path / "long.wav", FeatureConfig())
    transcript = prepare_transcript(phones=(tmp_path / "long.phones.lab").read_text())
    pieces = coarse_pieces(features, transcript, target_seconds=6.0)
    assert len(pieces) >= 4
    assert pieces[0].start_frame == 0 and pieces[-1].end_frame == features.num_frames
    assert pieces[0].phone_start == 0 and pieces[-1].phone_end == len(transcript.phones)
    for left, right in zip(pieces[:-1], pieces[1:]):
        assert left.end_frame == right.start_frame and left.phone_end == right.phone_start


@pytest.mark.slow
def test_long_file_with_unalignable_stretch_keeps_the_rest(tmp_path):
    """Twelve rounds of two sample utterances of one voice in one 43 s file, the 12th replaced
    by amplitude-modulated noise (its phones still in the transcript): the piece holding it is
    reported with its span and text and kept out of training, every other piece is aligned,
    about as well as the same utterances one file each (73.5% within 20 ms with these
    settings, measured)."""
    corpus = tmp_path / "corpus"
    noise_at = 11
    placed = _chain(corpus, 12, noise_at=noise_at, names=["festival_0001", "festival_0002"])
    out = tmp_path / "out"
    lines: list[str] = []
    report, results = align_corpus_long(
        corpus, out, phones=True, transcript_suffix=".phones.lab", long_seconds=20.0,
        iterations=10, num_mixtures=1, show_progress=False, report=lines.append, device="cpu",
    )
    result = results[0]
    bad = result.unaligned
    noise_name, noise_start, noise_dur = placed[noise_at]
    assert 1 <= len(bad) <= 2, [(p.index, p.status, p.reason) for p in result.pieces]
    spans = [p.span(result.frame_shift) for p in bad]
    assert any(a <= noise_start + 0.2 and b >= noise_start + noise_dur - 0.2 for a, b in spans)
    noise_phones = (SYNTH / f"{noise_name}.phones.lab").read_text().split()
    assert any(" ".join(p for p in noise_phones if p != "sil") in p.text for p in bad)
    assert any(f"[{spans[0][0]:.2f} s - {spans[0][1]:.2f} s] not aligned" in line for line in lines)
    # The rest is kept: the TextGrid has the other utterances, aligned about as well as alone.
    hyp = read_textgrid(out / "long.TextGrid", tier="phones")["phones"]
    covered = [k for k, (_, off, dur) in enumerate(placed)
               if not any(a - 0.05 <= off and off + dur <= b + 0.05 for a, b in spans)]
    assert len(covered) >= len(placed) - 5
    assert all(not (a < s.end and s.start < b) for s in hyp for a, b in spans)  # nothing placed in the stretch
    pooled = _score(hyp, placed, skip=set(range(len(placed))) - set(covered))
    assert pooled.percent_within(20) > 65.0, pooled.summary()
    rows = read_pieces(out / "long.pieces.csv")
    assert [r["status"] for r in rows].count("unaligned") == len(bad)
    assert rows[0]["start_s"] == 0.0 and rows[-1]["end_s"] == pytest.approx(result.duration, abs=0.011)


@pytest.mark.slow
def test_cli_aligns_a_long_file_with_durations_and_confidence(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    _chain(corpus, 3)
    out = tmp_path / "out"
    code = cli_main(["align", str(corpus), str(out), "--phones", "--transcript-suffix", ".phones.lab",
                     "--long-seconds", "10", "--window-seconds", "20", "--iterations", "8", "--mixtures", "1",
                     "--format", "textgrid", "durations", "--confidence-tier", "--no-progress", "--device", "cpu",
                     "--hop-length", "200", "--sample-rate", "16000"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "pieces" in text and (out / "long.pieces.csv").is_file()
    tiers = read_textgrid(out / "long.TextGrid")
    assert {"phones", "phone_confidence", "check"} <= set(tiers)
    durations = np.load(out / "long.durations.npy")
    n = sf.info(corpus / "long.wav").frames
    assert int(durations.sum()) == 1 + n // 200
    assert not (out / "long.json").exists()  # only kept when asked for
