"""Broad phonetic classes and the class pull on single-Gaussian phone means."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hmm_engine.alignment.phone_classes import detect_symbol_set, phone_class, phone_classes
from hmm_engine.alignment.phone_models import PhoneModels
from hmm_engine.errors import InvalidParameterError


def test_symbol_sets_are_detected_and_classified():
    arpa = phone_classes(["sil", "AA1", "D", "T", "V", "HH", "ng", "jh", "y"])
    assert arpa == {"sil": "silence", "AA1": "vowel", "D": "stop", "T": "stop", "V": "fricative",
                    "HH": "fricative", "ng": "nasal", "jh": "affricate", "y": "approximant"}
    # The same letters are different phones in espeak-ng's mnemonics: D = ð, T = θ, V = ʌ.
    esp = phone_classes(["sil", "D", "T", "V", "@", "aI", "tS", "N", "j", "3:", "i@3", "t#"])
    assert detect_symbol_set(esp) == "espeak"
    assert esp == {"sil": "silence", "D": "fricative", "T": "fricative", "V": "vowel", "@": "vowel",
                   "aI": "vowel", "tS": "affricate", "N": "nasal", "j": "approximant", "3:": "vowel",
                   "i@3": "vowel", "t#": "stop"}
    ipa = phone_classes(["ə", "ʃ", "tʰ", "ŋ", "eɪ", "d", "ɹ"])
    assert ipa == {"ə": "vowel", "ʃ": "fricative", "tʰ": "stop", "ŋ": "nasal", "eɪ": "vowel", "d": "stop",
                   "ɹ": "approximant"}
    assert phone_classes(["sil", "aa", "qqq"])["qqq"] is None
    assert phone_class("pau", symbol_set="arpabet") == "silence"
    with pytest.raises(ValueError, match="symbol_set"):
        phone_class("a", symbol_set="sampa")


def test_class_prior_m_step_is_the_closed_form():
    """mean_k = (sum_x_k + tau m_c) / (n_k + tau), m_c pooled over the class; silence is its
    own class, an unknown symbol and an unseen state keep their maximum-likelihood / old means."""
    phones = ["aa", "iy", "t", "k", "sil", "qqq"]
    tau = 4.0
    models = PhoneModels(phones, states_per_phone=1, obs_dim=2, covariance_type="diag", class_prior=tau)
    order = models.phones  # sorted inventory
    rng = np.random.default_rng(0)
    n = torch.tensor(rng.uniform(1, 10, len(order)), dtype=torch.float64)
    n[order.index("k")] = 0.0  # never seen
    sx = torch.tensor(rng.normal(0, 5, (len(order), 2)), dtype=torch.float64) * n[:, None]
    sxx = (sx * sx) / n.clamp_min(1e-10)[:, None] + n[:, None]
    old = models.emission.means.double()
    models.emission_m_step({"n": n, "x": sx, "xx": sxx})
    got = models.emission.means.double()
    idx = {p: order.index(p) for p in phones}
    vowel_mean = (sx[idx["aa"]] + sx[idx["iy"]]) / (n[idx["aa"]] + n[idx["iy"]])
    for p in ("aa", "iy"):
        k = idx[p]
        torch.testing.assert_close(got[k], (sx[k] + tau * vowel_mean) / (n[k] + tau), rtol=1e-5, atol=1e-5)
    # The stop class holds only t (k unseen): t's pull is towards its own mean, i.e. none.
    torch.testing.assert_close(got[idx["t"]], sx[idx["t"]] / n[idx["t"]], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[idx["k"]], old[idx["k"]], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[idx["qqq"]], sx[idx["qqq"]] / n[idx["qqq"]], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[idx["sil"]], sx[idx["sil"]] / n[idx["sil"]], rtol=1e-5, atol=1e-5)
    with pytest.raises(InvalidParameterError, match="class_prior"):
        PhoneModels(phones, class_prior=-1.0)
    with pytest.raises(InvalidParameterError, match="acoustic_prior"):
        PhoneModels(phones, acoustic_prior=float("nan"))


def test_class_prior_survives_save_load(tmp_path):
    models = PhoneModels(["aa", "t", "sil"], states_per_phone=2, obs_dim=3, class_prior=2.5, acoustic_prior=1.5)
    models.save(tmp_path / "m.pt")
    loaded = PhoneModels.load(tmp_path / "m.pt")
    assert loaded.acoustic_prior == 1.5
    assert loaded.class_prior == 2.5 and loaded.phone_class == {"aa": "vowel", "sil": "silence", "t": "stop"}


@pytest.mark.slow
def test_class_knowledge_improves_single_utterance_alignment_on_sample():
    """Single-utterance mode on the six committed utterances (117 boundaries), phones given,
    % of boundaries within 20 ms as measured: no class knowledge 59.0; class pull on the
    means (tau 4) 64.1; loudness / tilt prior alone 79.5; both 82.9; both with gamma
    durations (the defaults) 85.5. The thresholds leave a few points of margin."""
    from pathlib import Path

    from hmm_engine.alignment import align_utterance
    from hmm_engine.alignment.metrics import compare_tiers, pool_comparisons
    from hmm_engine.alignment.textgrids import read_textgrid

    synth = Path(__file__).parent / "data" / "synth"

    def score(**kwargs):
        comparisons = []
        for wav in sorted(synth.glob("*.wav")):
            result = align_utterance(wav, phones=wav.with_suffix(".phones.lab").read_text(), confidence=False,
                                     **kwargs)
            ref = read_textgrid(wav.with_suffix(".TextGrid"), tier="phones")["phones"]
            comparisons.append(compare_tiers(ref, result.phones))
        return pool_comparisons(comparisons).percent_within(20)

    # The class knowledge alone, without the speech prior (which lifts "plain" to 65.8).
    plain = score(class_prior=0.0, acoustic_prior=0.0, speech_prior=0.0)
    pulled = score(class_prior=4.0, acoustic_prior=0.0, speech_prior=0.0)
    defaults = score()
    assert 54.0 <= plain <= 64.0
    assert pulled >= plain + 3.0
    assert defaults >= 78.0 and defaults >= pulled + 10.0


def test_acoustic_prior_scores_are_the_closed_form():
    """prior[t, s] = scale * (LOUDNESS[c_s] z_energy[t] + TILT[c_s] z_tilt[t]); for MFCCs the
    cues are c0 and c1, smoothed over 5 frames and standardised; unknown classes get 0."""
    from hmm_engine.alignment.acoustic_prior import LOUDNESS, TILT, acoustic_cues, prior_scores
    from hmm_engine.frontend.features import FeatureConfig

    rng = np.random.default_rng(1)
    x = torch.tensor(rng.normal(size=(40, 20)))
    cues = acoustic_cues(x, FeatureConfig(num_ceps=20, deltas=0))
    for column in (0, 1):
        v = x[:, column].numpy()
        smooth = np.array([v[max(0, t - 2): t + 3].mean() for t in range(40)])
        np.testing.assert_allclose(cues[:, column], (smooth - smooth.mean()) / smooth.std(), atol=1e-12)
    scores = prior_scores(cues, ["vowel", "stop", None], 2.0)
    np.testing.assert_allclose(scores[:, 0], 2.0 * (LOUDNESS["vowel"] * cues[:, 0] + TILT["vowel"] * cues[:, 1]))
    np.testing.assert_allclose(scores[:, 1], 2.0 * (LOUDNESS["stop"] * cues[:, 0] + TILT["stop"] * cues[:, 1]))
    np.testing.assert_array_equal(scores[:, 2], 0.0)
    # Log-mel cues are the same two DCT projections of the bands.
    mel = torch.tensor(rng.normal(size=(30, 8)))
    cues_mel = acoustic_cues(mel, FeatureConfig(kind="logmel", num_mels=8, deltas=0))
    energy = mel.numpy().mean(1)
    smooth = np.array([energy[max(0, t - 2): t + 3].mean() for t in range(30)])
    np.testing.assert_allclose(cues_mel[:, 0], (smooth - smooth.mean()) / smooth.std(), atol=1e-12)
    # The models add exactly these scores to the emission scores of a chain.
    models = PhoneModels(["aa", "t", "sil"], states_per_phone=1, obs_dim=20,
                         feature_config=FeatureConfig(num_ceps=20, deltas=0), acoustic_prior=2.0)
    ids = np.array([models.state_ids(p)[0] for p in ("sil", "t", "aa", "sil")])
    x32 = x.float()
    diff = (models.chain_log_obs(x32, ids) - models.log_likelihood(x32, ids)).double().numpy()
    expected = prior_scores(acoustic_cues(x32, models.feature_config), ["silence", "stop", "vowel", "silence"], 2.0)
    np.testing.assert_allclose(diff, expected, atol=1e-4)
