"""Shipped phone models (hmm_engine.alignment.shipped): the single-utterance starting point."""
from pathlib import Path

import pytest

from hmm_engine.alignment import align_utterance, shipped_phone_models
from hmm_engine.alignment.metrics import compare_tiers
from hmm_engine.alignment.shipped import SHIPPED_FESTIVAL_MODELS_PATH, SHIPPED_MODELS_PATH
from hmm_engine.alignment.textgrids import read_textgrid

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def test_files_are_small_and_cover_cmudict():
    for path in (SHIPPED_MODELS_PATH, SHIPPED_FESTIVAL_MODELS_PATH):
        assert path.stat().st_size < 200_000
    upper = shipped_phone_models(["sil", "AH", "ZH", "OY"])
    lower = shipped_phone_models(["sil", "ax", "zh", "oy"])
    assert upper is not None and lower is not None
    assert len(upper.phones) == 40 and len(lower.phones) == 41  # 39 ARPAbet (+ festival's ax) + sil
    assert upper.states_per_phone == 3


def test_other_symbol_sets_train_on_the_clip():
    assert shipped_phone_models(["sil", "@", "oU"]) is None  # espeak-ng
    assert shipped_phone_models(["sil", "AH", "ax"]) is None  # mixed sets
    a, b = shipped_phone_models(["AH"]), shipped_phone_models(["AH"])
    a.speech_prior = 9.0
    assert b.speech_prior == 0.0  # each caller gets its own copy


def test_arctic_clip_from_shipped_models():
    """ARCTIC a0009 (bundled, with its distributed labels), words through the default lexicon:
    77.4% of the label boundaries within 20 ms from the shipped models, 66.7% trained on the
    clip alone (measured). The models come from synthetic slt voices, i.e. this speaker's voice
    rebuilt by TTS, so this is a check that they are used and work, not a held-out figure."""
    ref = read_textgrid(ASSETS / "arctic_slt_a0009.TextGrid", tier="phones")["phones"]
    words = (ASSETS / "arctic_slt_a0009.lab").read_text()
    shipped = align_utterance(ASSETS / "arctic_slt_a0009.wav", words=words)
    if shipped.models.states_per_phone != 3:
        pytest.skip("the default lexicon here does not give CMUdict phones")
    own = align_utterance(ASSETS / "arctic_slt_a0009.wav", words=words, shipped=False)
    assert own.models.states_per_phone == 1
    ours = compare_tiers(ref, shipped.phones, silence="merge").percent_within(20)
    assert ours >= 75.0
    assert ours > compare_tiers(ref, own.phones, silence="merge").percent_within(20)


def test_cli_models_shipped_needs_a_cmudict_dictionary(tmp_path, capsys):
    import numpy as np
    import soundfile as sf

    from hmm_engine.cli import _load_models
    from hmm_engine.cli import main as cli_main

    (tmp_path / "dict.txt").write_text("HELLO HH AH L OW\nWORLD W ER L D\n")
    assert _load_models("shipped", tmp_path / "dict.txt", False).phone_index.keys() >= {"HH", "AH", "sil"}
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    sf.write(corpus / "a.wav", np.zeros(16000, dtype=np.float32), 16000)
    (corpus / "a.lab").write_text("hello world\n")
    code = cli_main(["align", str(corpus), str(tmp_path / "out"), "--models", "shipped", "--no-progress"])
    assert code == 1 and "CMUdict-style --dictionary" in capsys.readouterr().out
