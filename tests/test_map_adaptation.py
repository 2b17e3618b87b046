"""MAP adaptation of the shipped models' means to a corpus (map_adapt_means, align --adapt-iterations)."""
import copy
import shutil
from pathlib import Path

import pytest
import torch

from hmm_engine.alignment import (
    align_corpus,
    map_adapt_means,
    prepare_transcript,
    read_dictionary,
    shipped_phone_models,
    utterance_stats,
)
from hmm_engine.alignment.inputs import compute_features
from hmm_engine.alignment.phone_models import PhoneModels
from hmm_engine.errors import InvalidParameterError

ASSETS = Path(__file__).resolve().parents[1] / "assets"
LEXICON = """he HH IY
turned T ER N D
sharply SH AA R P L IY
and AH N D
faced F EY S T
gregson G R EH G S AH N
across AH K R AO S
the DH AH
table T EY B AH L
"""


@pytest.fixture(scope="module")
def arctic(tmp_path_factory):
    root = tmp_path_factory.mktemp("map")
    (root / "dict.txt").write_text(LEXICON)
    lexicon = read_dictionary(root / "dict.txt")
    corpus = root / "corpus"
    corpus.mkdir()
    shutil.copy(ASSETS / "arctic_slt_a0009.wav", corpus / "a.wav")
    shutil.copy(ASSETS / "arctic_slt_a0009.lab", corpus / "a.lab")
    models = shipped_phone_models({p for v in lexicon.values() for var in v for p in var} | {"sil"})
    transcript = prepare_transcript(None, (ASSETS / "arctic_slt_a0009.lab").read_text(), dictionary=lexicon)
    x = compute_features(corpus / "a.wav", models.feature_config).values
    return root, lexicon, models, x, transcript


def test_one_iteration_is_the_closed_form(arctic):
    _, _, models, x, transcript = arctic
    before = models.emission.means.double()
    stats = utterance_stats(models, x, transcript)
    n, sx = stats["n"].double(), stats["x"].double()
    tau = 10.0
    adapted = copy.deepcopy(models)
    history = map_adapt_means(adapted, [(x, transcript)], 1, tau)
    expected = (sx + tau * before) / (n + tau)[:, None]
    assert torch.allclose(adapted.emission.means.double(), expected, atol=1e-5)
    seen = n > 1.0
    assert seen.sum() >= 20
    # every seen state's mean moves towards its frames' mean, by the fraction n / (n + tau)
    data_mean = sx[seen] / n[seen][:, None]
    assert ((adapted.emission.means.double()[seen] - data_mean).norm(dim=1)
            < (before[seen] - data_mean).norm(dim=1)).all()
    assert torch.equal(adapted.emission.means[~(n > 0)], models.emission.means[~(n > 0)])
    assert torch.equal(adapted.emission.cov_param, models.emission.cov_param)  # only the means adapt
    assert len(history) == 1


def test_log_likelihood_rises_and_large_tau_keeps_the_models(arctic):
    _, _, models, x, transcript = arctic
    adapted = copy.deepcopy(models)
    history = map_adapt_means(adapted, [(x, transcript)], 3, 5.0)
    assert history[0] < history[1] <= history[2] + 1e-9
    kept = copy.deepcopy(models)
    map_adapt_means(kept, [(x, transcript)], 1, 1e9)
    assert torch.allclose(kept.emission.means, models.emission.means, atol=1e-5)


def test_bad_options(arctic):
    root, lexicon, models, x, transcript = arctic
    with pytest.raises(InvalidParameterError):
        map_adapt_means(models, [(x, transcript)], 1, 0.0)
    with pytest.raises(InvalidParameterError):
        map_adapt_means(models, [(x, transcript)], -1)
    with pytest.raises(InvalidParameterError):
        align_corpus(root / "corpus", root / "bad", dictionary=lexicon, adapt_iterations=1, show_progress=False)


def test_align_corpus_adapts_and_writes_the_models(arctic, capsys):
    from hmm_engine.cli import main as cli_main

    root, _, models, _, _ = arctic
    out = root / "out"
    code = cli_main(["align", str(root / "corpus"), str(out), "--dictionary", str(root / "dict.txt"),
                     "--models", "shipped", "--adapt-iterations", "2", "--adapt-tau", "20", "--no-progress",
                     "--device", "cpu"])
    assert code == 0, capsys.readouterr().out
    assert (out / "a.TextGrid").is_file()
    adapted = PhoneModels.load(out / "phone_models.pt")
    moved = (adapted.emission.means - models.emission.means).abs().amax(dim=1)
    assert (moved > 1e-3).sum() >= 20  # the states of the clip's phones moved
    assert torch.equal(adapted.log_stay, models.log_stay)
