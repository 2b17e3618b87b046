"""The Lab: sampling, EM recovery with states matched, the trellis against the engine and brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from components import lab as L


def _spec(name):
    return L.parse_spec(L.preset(name))


@pytest.mark.parametrize("name", ["noisy two-state switch (1-D Gaussian)", "left-to-right word model (2-D Gaussian)"])
def test_means_recovered_within_a_tolerance_that_shrinks_with_the_sample(name):
    spec = _spec(name)
    length = 24 if "word" in name else 200
    errors = []
    for num_sequences in (10, 160):
        data = L.sample(spec, num_sequences, length, seed=3)
        fit = L.fit(spec, data, max_iter=100, seed=0)
        assert fit.converged
        per_state = np.bincount(data.states.ravel(), minlength=spec.num_states)
        err = np.abs(fit.params["means"] - spec.means)                  # [K, D], states matched
        tol = 4.0 * spec.stds / np.sqrt(per_state)[:, None]              # ~4 standard errors
        assert np.all(err <= tol), (num_sequences, err, tol)
        errors.append(err.max())
        # transitions too (same frames): each row within 4 binomial standard errors
        A, Ah = spec.transmat, fit.params["transmat"]
        se = np.sqrt(A * (1 - A) / np.maximum(per_state, 1)[:, None]) + 1e-3
        assert np.all(np.abs(Ah - A) <= 4 * se + 0.01), (Ah, A)
    assert errors[1] < errors[0]  # 16x the frames: the error shrinks


def test_categorical_weather_fit_is_at_least_as_likely_as_the_truth():
    # Three states over three symbols: the likelihood has long flat ridges, so EM's answer may sit
    # away from the true rows (the Lab says so); what EM guarantees is a likelihood no worse
    # than the true model's on the training data, and a sunny state that stays sunny.
    spec = _spec("weather (categorical)")
    data = L.sample(spec, 100, 400, seed=1)
    fit = L.fit(spec, data, max_iter=100, tol=1e-7, seed=0)
    true_ll = float(L.true_model(spec).score(torch.as_tensor(data.obs).long()).detach().sum())
    assert fit.history[-1] >= true_ll - 1.0
    assert np.all(np.diff(fit.history) > -1e-6)  # EM never goes down
    assert sorted(fit.permutation.tolist()) == [0, 1, 2]
    assert abs(fit.params["emissionprob"][0, 0] - 0.7) < 0.05


def test_semi_markov_durations_recovered_and_plain_hmm_cannot():
    spec = _spec("durations: why semi-Markov (1-D)")
    data = L.sample(spec, 40, 300, seed=2)
    fit = L.fit(spec, data, max_iter=50, seed=0)
    np.testing.assert_allclose(fit.params["mean_durations"], spec.mean_durations, rtol=0.15)
    plain = L.fit(spec, data, max_iter=50, seed=0, kind="gaussian")
    # a plain HMM's duration law is geometric: its most likely duration is 1 frame for every state,
    # while the sampled durations of the long state peak near 20
    runs = L.run_lengths(data.states, spec.num_states)
    assert np.argmax(np.bincount(runs[1])) >= 12
    a = np.diag(plain.params["transmat"])
    assert np.all((1 - a) * a ** 0 >= (1 - a) * a ** 1)  # geometric pmf decreases from d = 1


def test_hungarian_matching_undoes_a_permutation():
    spec = _spec("left-to-right word model (2-D Gaussian)")
    truth = {"startprob": spec.startprob, "transmat": spec.transmat, "means": spec.means, "stds": spec.stds}
    shuffle = np.array([2, 0, 3, 1])            # learned state j = true state shuffle[j]
    learned = L.permute(truth, shuffle)
    perm = L.match_states(spec, learned)
    back = L.permute(learned, perm)
    for k in truth:
        np.testing.assert_allclose(back[k], truth[k])


def test_trellis_matches_engine_and_brute_force():
    spec = _spec("noisy two-state switch (1-D Gaussian)")
    model = L.true_model(spec)
    data = L.sample(spec, 1, 6, seed=5)
    x = data.obs[0]
    tr = L.trellis(*L.model_log_probs(model, x))
    # the engine's forward algorithm and Viterbi
    assert tr.log_likelihood == pytest.approx(float(model.score(torch.as_tensor(x))[0].detach()), abs=1e-6)
    path, score = model.viterbi_decode(torch.as_tensor(x))
    np.testing.assert_array_equal(tr.best_paths[-1], path[0].numpy())
    assert tr.log_delta[-1].max() == pytest.approx(float(score[0]), abs=1e-6)
    # brute force over all 2^6 paths: alpha sums them, delta takes the best (at every prefix length)
    ls, lt, ll = L.model_log_probs(model, x)
    for t in range(1, len(x) + 1):
        scores = {}
        for p in itertools.product(range(2), repeat=t):
            scores[p] = ls[p[0]] + ll[0, p[0]] + sum(lt[p[i - 1], p[i]] + ll[i, p[i]] for i in range(1, t))
        for k in range(2):
            ending = [v for p, v in scores.items() if p[-1] == k]
            assert tr.log_alpha[t - 1, k] == pytest.approx(np.logaddexp.reduce(ending), abs=1e-9)
            assert tr.log_delta[t - 1, k] == pytest.approx(max(ending), abs=1e-9)
        best = max(scores, key=scores.get)
        assert tuple(tr.best_paths[t - 1, :t]) == best
    np.testing.assert_allclose(tr.filtered.sum(1), 1.0)


def test_bad_models_and_sizes_are_refused_with_reasons():
    bad = L.preset("noisy two-state switch (1-D Gaussian)")
    bad["transmat"] = [[0.9, 0.2], [0.5, 0.5]]
    with pytest.raises(L.InvalidParameterError, match="sum to 1"):
        L.parse_spec(bad)
    with pytest.raises(L.InvalidParameterError, match="1 to 8 states"):
        L.parse_spec({"kind": "gaussian", "startprob": [0.1] * 10})
    with pytest.raises(L.InvalidParameterError, match="not valid JSON"):
        L.parse_spec("{kind: gaussian")
    hs = L.preset("durations: why semi-Markov (1-D)")
    hs["transmat"][0] = [0.5, 0.25, 0.25]
    with pytest.raises(L.InvalidParameterError, match="zero diagonal"):
        L.parse_spec(hs)
    spec = _spec("noisy two-state switch (1-D Gaussian)")
    with pytest.raises(L.InvalidInputError, match="at most 100000 frames"):
        L.sample(spec, 200, 1000)
    with pytest.raises(L.InvalidInputError, match="EM iterations"):
        L.fit(spec, L.sample(spec, 1, 50), max_iter=0)


def test_trellis_figure_steps():
    from components.trellis import column_table, trellis_figure

    spec = _spec("weather (categorical)")
    data = L.sample(spec, 1, 8, seed=0)
    tr = L.trellis(*L.model_log_probs(L.true_model(spec), data.obs[0]))
    fig = trellis_figure(tr, 3, spec.states)
    edges, nodes, best = fig.data
    assert len(nodes.x) == 4 * 3                        # columns 0..3 filled, 3 states each
    assert sum(v is None for v in edges.x) == 3 * 3     # one backpointer per node after t = 0
    assert list(best.y) == list(tr.best_paths[3, :4])
    assert "ψ" in column_table(tr, 3, spec.states) and "t = 3" in column_table(tr, 3, spec.states)
    big = L.trellis(np.log(np.full(40, 1 / 40)), np.log(np.full((40, 40), 1 / 40)),
                    np.random.default_rng(0).normal(size=(100, 40)))
    assert [t.type for t in trellis_figure(big, 50).data] == ["heatmap", "scatter", "scatter"]


def test_first_second_trellis_of_a_real_clip_matches_the_engine():
    # The Analyze tab's trellis: the precomputed sample's model on the first second of the sample.
    from app_server import SAMPLE
    from components import pipeline as P
    from components import precomputed
    from components.results import AnalysisSettings
    from components.trellis import clip_trellis

    result = precomputed.load_or_compute()
    model_path = result.files.get("model")
    if result.settings.get("model_type") == "semi-markov" or not model_path:
        pytest.skip("the precomputed sample is not a frame HMM with a model file")
    tr, shift = clip_trellis(str(SAMPLE), result.settings, model_path)
    T = tr.filtered.shape[0]
    assert T == round(1.0 / shift)
    model = P.load_model(model_path)
    fields = {k: v for k, v in result.settings.items() if k in AnalysisSettings.__dataclass_fields__}
    x = P.features(P.load(str(SAMPLE)), AnalysisSettings(**fields))[0].values[:T]
    assert tr.log_likelihood == pytest.approx(float(model.score(x)[0].detach()), rel=1e-4)
    path, _ = model.viterbi_decode(x)
    agree = np.mean(tr.best_paths[-1] == path[0].numpy())
    assert agree > 0.99  # float32 model, float64 recursions: ties may differ in a frame
    with pytest.raises(ValueError, match="semi-Markov"):
        clip_trellis(str(SAMPLE), dict(result.settings, model_type="semi-markov"), model_path)
