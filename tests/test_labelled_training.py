"""Phone models trained on labelled boundaries (``train_labelled``, ``train-labelled``) and
corpus alignment with given models (``align_corpus(models=...)``, ``align --models``)."""

from __future__ import annotations

import shutil
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
import torch

from hmm_engine.alignment import compute_features
from hmm_engine.alignment import MODEL_FILE, align_corpus, train_labelled
from hmm_engine.alignment.metrics import SILENCE_LABELS, compare_tiers, pool_comparisons
from hmm_engine.alignment.phone_models import PhoneModels
from hmm_engine.segments import frame_labels_from_segments
from hmm_engine.alignment.textgrids import read_textgrid
from hmm_engine.cli import build_parser
from hmm_engine.errors import InvalidInputError

SYNTH = Path(__file__).parent / "data" / "synth"
NAMES = sorted(p.stem for p in SYNTH.glob("*.wav"))


def _labelled_corpus(folder: Path, names=NAMES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(SYNTH / f"{name}.wav", folder / f"{name}.wav")
        shutil.copy(SYNTH / f"{name}.TextGrid", folder / f"{name}.TextGrid")
    return folder


def test_one_state_models_are_the_labelled_frames_means_and_variances(tmp_path):
    """With one state per phone and one Gaussian, training inside fixed segments has a closed
    form: each phone's mean and variance are those of the frames whose centre lies in its
    intervals (over every file), independently of the start."""
    corpus = _labelled_corpus(tmp_path / "c")
    report = train_labelled(corpus, tmp_path / "m", states_per_phone=1, num_mixtures=1, iterations=2,
                            show_progress=False, report=lambda line: None)
    models = PhoneModels.load(report.models_path)
    frames: dict[str, list[np.ndarray]] = {}
    for name in NAMES:
        features = compute_features(SYNTH / f"{name}.wav", models.feature_config)
        tier = read_textgrid(SYNTH / f"{name}.TextGrid", tier="phones", keep_empty=True)["phones"]
        labels = frame_labels_from_segments(tier, features.frame_shift, features.num_frames, fill="\0")
        values = features.values.double().numpy()
        for t, label in enumerate(labels):
            if label != "\0":
                frames.setdefault("sil" if label in SILENCE_LABELS else label, []).append(values[t])
    assert models.phones == sorted(frames)
    assert report.num_train_files == len(NAMES)
    means, covars = models.emission.means.double(), models.emission.covars.double()
    for phone, rows in frames.items():
        x = np.stack(rows)
        k = models.state_ids(phone)[0]
        np.testing.assert_allclose(means[k].numpy(), x.mean(0), rtol=1e-4, atol=1e-4, err_msg=phone)
        np.testing.assert_allclose(covars[k].numpy(), np.maximum(x.var(0), models.min_covar), rtol=1e-3, atol=1e-4,
                                   err_msg=phone)


def test_labelled_models_align_their_corpus_from_the_cli(tmp_path):
    corpus = _labelled_corpus(tmp_path / "c")
    buffer = StringIO()
    args = build_parser().parse_args(["train-labelled", str(corpus), str(tmp_path / "m"), "--mixtures", "1",
                                      "--no-progress"])
    assert args.run(args, out=buffer) == 0
    text = buffer.getvalue()
    assert f"trained on {len(NAMES)} labelled file(s)" in text
    assert "shorter than 3 frames and were not trained on" in text  # the sample has a few 10-20 ms phones
    models_path = tmp_path / "m" / MODEL_FILE
    args = build_parser().parse_args(["align", str(SYNTH), str(tmp_path / "a"), "--phones", "--transcript-suffix",
                                      ".phones.lab", "--models", str(models_path), "--no-progress"])
    buffer = StringIO()
    assert args.run(args, out=buffer) == 0
    assert f"with the given models; aligned {len(NAMES)} file(s)" in buffer.getvalue()
    assert not (tmp_path / "a" / MODEL_FILE).exists()  # the models were given, not trained
    pooled = pool_comparisons([
        compare_tiers(read_textgrid(SYNTH / f"{n}.TextGrid", tier="phones")["phones"],
                      read_textgrid(tmp_path / "a" / f"{n}.TextGrid", tier="phones")["phones"]) for n in NAMES])
    # Measured 100% (38 of 39 within 10 ms); flat-start corpus mode on the same sample: about 90%.
    assert pooled.mismatches == 0
    assert pooled.percent_within(20) >= 97.0


def test_models_from_labels_follow_the_labels_convention(tmp_path):
    """Labels moved 30 ms later at every speech-to-speech boundary teach models that put the
    boundaries there: trained on shifted labels, alignment errors against the true references
    are centred on +30 ms."""
    from hmm_engine.segments import Segment
    from hmm_engine.alignment.textgrids import write_textgrid

    corpus = tmp_path / "shifted"
    corpus.mkdir()
    for name in NAMES:
        shutil.copy(SYNTH / f"{name}.wav", corpus / f"{name}.wav")
        tier = read_textgrid(SYNTH / f"{name}.TextGrid", tier="phones")["phones"]
        edges = [tier[0].start] + [s.start + (0.03 if tier[i - 1].label != "sil" and s.label != "sil" else 0.0)
                                   for i, s in enumerate(tier) if i > 0] + [tier[-1].end]
        moved = [Segment(s.label, edges[i], edges[i + 1]) for i, s in enumerate(tier)]
        write_textgrid(corpus / f"{name}.TextGrid", {"phones": moved}, moved[-1].end)
    report = train_labelled(corpus, tmp_path / "m", num_mixtures=1, show_progress=False, report=lambda line: None)
    models = PhoneModels.load(report.models_path)
    align_corpus(SYNTH, tmp_path / "a", phones=True, transcript_suffix=".phones.lab", models=models,
                 show_progress=False, report=lambda line: None)
    errors = []
    for name in NAMES:
        ref = read_textgrid(SYNTH / f"{name}.TextGrid", tier="phones")["phones"]
        hyp = read_textgrid(tmp_path / "a" / f"{name}.TextGrid", tier="phones")["phones"]
        assert [s.label for s in hyp] == [s.label for s in ref]
        errors += [(h.start - r.start) * 1000 for i, (r, h) in enumerate(zip(ref, hyp))
                   if i > 0 and ref[i - 1].label != "sil" and r.label != "sil"]
    assert 20.0 <= float(np.median(errors)) <= 40.0


def test_bad_labelled_files_are_reported_and_skipped(tmp_path):
    corpus = _labelled_corpus(tmp_path / "c", ["flite_0001", "festival_0001"])
    shutil.copy(SYNTH / "flite_0002.wav", corpus / "notier.wav")
    (corpus / "notier.TextGrid").write_text(
        (SYNTH / "flite_0002.TextGrid").read_text().replace('name = "phones"', 'name = "segments"'))
    shutil.copy(SYNTH / "flite_0002.wav", corpus / "twosymbols.wav")
    (corpus / "twosymbols.TextGrid").write_text(
        (SYNTH / "flite_0002.TextGrid").read_text().replace('text = "w"', 'text = "w ah"', 1))
    shutil.copy(SYNTH / "flite_0002.wav", corpus / "garbage.wav")
    (corpus / "garbage.TextGrid").write_text("File type = nonsense\n")
    shutil.copy(SYNTH / "flite_0002.wav", corpus / "unlabelled.wav")
    lines: list[str] = []
    report = train_labelled(corpus, tmp_path / "m", num_mixtures=1, iterations=2, show_progress=False,
                            report=lines.append)
    assert report.num_train_files == 2
    reasons = {line.split(":")[1].strip(): line for line in lines if line.startswith("report: ") and ":" in line[8:]}
    assert set(reasons) >= {"notier", "twosymbols", "garbage", "unlabelled"}
    assert "no tier named 'phones'" in reasons["notier"]
    assert "'w ah'" in reasons["twosymbols"] and "not one phone symbol" in reasons["twosymbols"]
    assert "not a valid TextGrid" in reasons["garbage"]
    assert "no transcript 'unlabelled.TextGrid'" in reasons["unlabelled"]

    nothing = tmp_path / "nothing"
    nothing.mkdir()
    shutil.copy(SYNTH / "flite_0002.wav", nothing / "a.wav")
    with pytest.raises(InvalidInputError, match="no usable labelled file"):
        train_labelled(nothing, tmp_path / "m2", show_progress=False, report=lambda line: None)


def test_aligning_with_models_that_miss_a_phone_skips_that_file(tmp_path):
    # Trained on flite only (ARPAbet); espeak-ng's transcripts use other symbols.
    corpus = _labelled_corpus(tmp_path / "c", ["flite_0001", "flite_0002"])
    models = PhoneModels.load(train_labelled(corpus, tmp_path / "m", num_mixtures=1, iterations=2,
                                             show_progress=False, report=lambda line: None).models_path)
    lines: list[str] = []
    report = align_corpus(SYNTH, tmp_path / "a", phones=True, transcript_suffix=".phones.lab", models=models,
                          show_progress=False, report=lines.append)
    assert {"flite_0001", "flite_0002"} <= set(report.aligned)
    assert not any(name.startswith("espeak") for name in report.aligned)
    assert any(line.startswith("report: espeak_0001: skipped: phones not in the trained inventory") for line in lines)
    buffer = StringIO()
    args = build_parser().parse_args(["align", str(SYNTH), str(tmp_path / "b"), "--models", str(tmp_path / "none.pt")])
    assert args.run(args, out=buffer) == 1
    assert "no phone-model file" in buffer.getvalue()


def test_acoustic_cues_of_utterances_shorter_than_the_smoothing_window():
    """Labelled segments can be 3 frames long: the smoothed cues keep one value per frame."""
    from hmm_engine.alignment.acoustic_prior import SMOOTH_FRAMES, acoustic_cues
    from hmm_engine.frontend.features import FeatureConfig

    for T in range(1, SMOOTH_FRAMES + 2):
        x = torch.arange(T * 39, dtype=torch.float32).reshape(T, 39).sin()
        cues = acoustic_cues(x, FeatureConfig())
        assert cues.shape == (T, 2) and np.isfinite(cues).all()
    # T = 4: frame t averages frames max(0, t-2) .. min(3, t+2), then the run is standardised.
    energy = np.array([0.0, 4.0, 1.0, 3.0])
    x = torch.zeros(4, 39, dtype=torch.float64)
    x[:, 0] = torch.from_numpy(energy)
    smooth = np.array([energy[:3].mean(), energy.mean(), energy.mean(), energy[1:].mean()])
    expected = (smooth - smooth.mean()) / smooth.std()
    np.testing.assert_allclose(acoustic_cues(x, FeatureConfig())[:, 0], expected, rtol=1e-12, atol=1e-12)
