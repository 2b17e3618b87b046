"""align_corpus takes its training settings as one TrainingConfig (config=) or as keywords:
both give the same models and TextGrids, and mixing the two is refused."""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path

import pytest

from hmm_engine.alignment import TrainingConfig, align_corpus
from hmm_engine.alignment.textgrids import read_textgrid
from hmm_engine.errors import InvalidParameterError

SYNTH = Path(__file__).parent / "data" / "synth"
NAMES = ("festival_0002", "flite_0001")


def _corpus(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in NAMES:
        for suffix in (".wav", ".phones.lab"):
            shutil.copy(SYNTH / f"{name}{suffix}", corpus / f"{name}{suffix}")
    return corpus


def _default(name: str):
    return inspect.signature(align_corpus).parameters[name].default


def test_config_and_keywords_give_the_same_alignment(tmp_path):
    corpus = _corpus(tmp_path)
    common = dict(phones=True, transcript_suffix=".phones.lab", show_progress=False, report=lambda line: None)
    by_keywords = align_corpus(corpus, tmp_path / "kw", iterations=2, num_mixtures=1, device="cpu", **common)
    # align_corpus's own keyword defaults, as a config (TrainingConfig's defaults differ)
    config = TrainingConfig(iterations=2, num_mixtures=1, device="cpu", init="global", anneal=0.1,
                            min_frames_per_gaussian=_default("min_frames_per_gaussian"),
                            speech_prior=_default("speech_prior"))
    by_config = align_corpus(corpus, tmp_path / "cfg", config=config, **common)
    assert by_config.aligned == by_keywords.aligned == sorted(NAMES)
    assert by_config.history == pytest.approx(by_keywords.history, abs=0.0)
    for name in NAMES:
        a = read_textgrid(tmp_path / "kw" / f"{name}.TextGrid")["phones"]
        b = read_textgrid(tmp_path / "cfg" / f"{name}.TextGrid")["phones"]
        assert [(s.label, s.start, s.end) for s in a] == [(s.label, s.start, s.end) for s in b]


def test_config_with_a_training_keyword_is_refused(tmp_path):
    with pytest.raises(InvalidParameterError, match="not both: iterations, seed"):
        align_corpus(tmp_path, tmp_path / "out", config=TrainingConfig(), iterations=3, seed=1)
    with pytest.raises(InvalidParameterError, match="must be a TrainingConfig"):
        align_corpus(tmp_path, tmp_path / "out", config={"iterations": 3})
