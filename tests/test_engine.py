"""Engine core, checked value by value: hmmlearn, brute-force enumeration, closed forms, round trips."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hmm_engine as he
from hmm_engine.inference import hmm as inf

from brute import enumerate_paths

hmmlearn_hmm = pytest.importorskip("hmmlearn.hmm")

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]
COV_TYPES = ["diag", "full", "spherical", "tied"]


def _ragged(rng, lengths, dim):
    return rng.normal(size=(sum(lengths), dim))


def _mask(lengths):
    return np.arange(max(lengths))[None, :] < np.asarray(lengths)[:, None]


def _fit_reference(cls, seed, X, lengths, **kw):
    ref = cls(random_state=seed, n_iter=5, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.fit(X, lengths)
    return ref


def _copy_gaussian(ref, ct, dim, device="cpu"):
    K = ref.n_components
    model = he.GaussianHMM(K, dim, ct, dtype=torch.float64).to(device)
    model.startprob, model.transmat, model.means = ref.startprob_, ref.transmat_, ref.means_
    cov = ref.covars_  # hmmlearn returns full matrices here
    model.covars = {
        "diag": lambda: np.diagonal(cov, 0, 1, 2),
        "spherical": lambda: np.asarray(ref._covars_).reshape(K, -1)[:, 0],
        "full": lambda: cov,
        "tied": lambda: cov[0],
    }[ct]()
    return model


# --------------------------------------------------------------------------- hmmlearn


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("ct", COV_TYPES)
@pytest.mark.parametrize("dim", [3, 80])
def test_gaussian_matches_hmmlearn(ct, dim, device):
    rng = np.random.default_rng(dim)
    lengths = [60, 45, 30]
    X = _ragged(rng, lengths, dim)
    ref = _fit_reference(hmmlearn_hmm.GaussianHMM, 0, X, lengths, n_components=4, covariance_type=ct)
    if ct == "full":  # EM on few frames per dimension leaves near-singular matrices: use well-posed ones
        A = rng.normal(size=(4, dim, dim))
        ref.covars_ = A @ A.transpose(0, 2, 1) / dim + 0.5 * np.eye(dim)
    model = _copy_gaussian(ref, ct, dim, device)
    post, ll = model.forward_backward(X, lengths)
    path, score = model.viterbi_decode(X, lengths)
    mask = _mask(lengths)
    assert float(ll.sum()) == pytest.approx(ref.score(X, lengths), rel=1e-9, abs=1e-6)
    np.testing.assert_allclose(post.cpu().numpy()[mask], ref.predict_proba(X, lengths), atol=1e-8)
    np.testing.assert_array_equal(path.cpu().numpy()[mask], ref.predict(X, lengths))
    assert (path.cpu().numpy()[~mask] == -1).all()
    ref_scores = [ref.decode(X[s : s + n])[0] for s, n in zip(np.cumsum([0] + lengths[:-1]), lengths)]
    np.testing.assert_allclose(score.cpu().numpy(), ref_scores, rtol=1e-9)


@pytest.mark.parametrize("ct", COV_TYPES)
def test_mixture_matches_hmmlearn(ct):
    rng = np.random.default_rng(1)
    lengths, dim = [50, 35, 20], 4
    X = _ragged(rng, lengths, dim)
    ref = _fit_reference(hmmlearn_hmm.GMMHMM, 0, X, lengths, n_components=3, n_mix=2, covariance_type=ct)
    model = he.MixtureGaussianHMM(3, dim, 2, ct, dtype=torch.float64)
    model.startprob, model.transmat = ref.startprob_, ref.transmat_
    model.means, model.weights, model.covars = ref.means_, ref.weights_, ref.covars_
    post, ll = model.forward_backward(X, lengths)
    mask = _mask(lengths)
    assert float(ll.sum()) == pytest.approx(ref.score(X, lengths), rel=1e-9)
    np.testing.assert_allclose(post.numpy()[mask], ref.predict_proba(X, lengths), atol=1e-8)
    np.testing.assert_array_equal(model.viterbi_decode(X, lengths)[0].numpy()[mask], ref.predict(X, lengths))


def test_mixture_80_dims_matches_hmmlearn():
    rng = np.random.default_rng(2)
    lengths, dim = [40, 25], 80
    X = _ragged(rng, lengths, dim)
    ref = _fit_reference(hmmlearn_hmm.GMMHMM, 0, X, lengths, n_components=3, n_mix=2, covariance_type="diag")
    model = he.MixtureGaussianHMM(3, dim, 2, "diag", dtype=torch.float64)
    model.startprob, model.transmat = ref.startprob_, ref.transmat_
    model.means, model.weights, model.covars = ref.means_, ref.weights_, ref.covars_
    post, ll = model.forward_backward(X, lengths)
    assert float(ll.sum()) == pytest.approx(ref.score(X, lengths), rel=1e-9)
    np.testing.assert_allclose(post.numpy()[_mask(lengths)], ref.predict_proba(X, lengths), atol=1e-8)


def test_categorical_matches_hmmlearn():
    rng = np.random.default_rng(3)
    lengths = [30, 22]
    X = rng.integers(0, 5, size=(sum(lengths), 1))
    ref = _fit_reference(hmmlearn_hmm.CategoricalHMM, 0, X, lengths, n_components=3, n_features=5)
    model = he.CategoricalHMM(3, 5, dtype=torch.float64)
    model.startprob, model.transmat, model.emissionprob = ref.startprob_, ref.transmat_, ref.emissionprob_
    post, ll = model.forward_backward(X[:, 0], lengths)
    assert float(ll.sum()) == pytest.approx(ref.score(X, lengths), rel=1e-9)
    np.testing.assert_allclose(post.numpy()[_mask(lengths)], ref.predict_proba(X, lengths), atol=1e-9)


# --------------------------------------------------------------------------- brute force


def _enumerate(log_start, log_A, log_obs):
    """Every state path of one sequence (tests/brute.py), as float64 tensors:
    (log-likelihood, posteriors, best path, best score, expected transition counts)."""
    e = enumerate_paths(log_start, log_A, log_obs)
    return (torch.tensor(e.log_likelihood, dtype=torch.float64), torch.from_numpy(e.posteriors), e.best_path,
            torch.tensor(e.best_score, dtype=torch.float64), torch.from_numpy(e.pair_counts))


@st.composite
def _tiny_problem(draw):
    K = draw(st.integers(1, 3))
    B = draw(st.integers(1, 3))
    T = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**31 - 1))
    lengths = draw(st.lists(st.integers(1, T), min_size=B, max_size=B))
    lengths[0] = T
    sparse = draw(st.booleans())
    scale = draw(st.sampled_from([1.0, 5.0, 60.0]))
    return K, B, T, seed, lengths, sparse, scale


@settings(max_examples=40, deadline=None)
@given(_tiny_problem(), st.sampled_from(["kernel", "torch"]))
def test_dynamic_programs_equal_enumeration(problem, backend):
    K, B, T, seed, lengths, sparse, scale = problem
    g = torch.Generator().manual_seed(seed)
    log_start = torch.log_softmax(torch.randn(K, generator=g, dtype=torch.float64), 0)
    logits = torch.randn(K, K, generator=g, dtype=torch.float64)
    if sparse and K > 1:  # a left-to-right chain: forbidden moves are -inf
        logits = logits.masked_fill(~he.transition_mask("left-to-right", K), -math.inf)
    log_A = torch.log_softmax(logits, 1)
    log_obs = torch.randn(B, T, K, generator=g, dtype=torch.float64) * scale
    lengths_t = torch.tensor(lengths)
    post, ll, la, lb = inf.forward_backward(log_start, log_A, log_obs, lengths_t, backend=backend)
    path, score = inf.viterbi(log_start, log_A, log_obs, lengths_t, backend=backend)
    counts = inf.transition_counts(log_A, log_obs, la, lb, lengths_t)
    for b, n in enumerate(lengths):
        e_ll, e_post, e_path, e_score, e_pair = _enumerate(log_start, log_A, log_obs[b, :n])
        assert float(ll[b]) == pytest.approx(float(e_ll), rel=1e-10, abs=1e-10)
        torch.testing.assert_close(post[b, :n], e_post, atol=1e-10, rtol=0)
        assert (post[b, n:] == 0).all()
        assert float(score[b]) == pytest.approx(float(e_score), rel=1e-10, abs=1e-10)
        # A tie in the best score can pick either path: compare scores of the paths instead.
        got = path[b, :n].tolist()
        got_score = log_start[got[0]] + log_obs[b, 0, got[0]] + sum(
            float(log_A[got[t - 1], got[t]] + log_obs[b, t, got[t]]) for t in range(1, n)
        )
        assert float(got_score) == pytest.approx(float(e_score), rel=1e-10, abs=1e-10)
        assert (path[b, n:] == -1).all()
        torch.testing.assert_close(counts[b], e_pair, atol=1e-9, rtol=0)


def test_sparse_chain_with_extreme_emissions_stays_exact():
    """A left-to-right chain that must end in its last state, with 80-dim-like emission gaps
    (hundreds of nats): the shifted-product shortcut must fall back to exact columns."""
    K, T = 6, 40
    log_A = torch.log_softmax(torch.zeros(K, K, dtype=torch.float64).masked_fill(
        ~he.transition_mask("left-to-right", K), -math.inf), 1)
    log_start = torch.full((K,), -math.inf, dtype=torch.float64)
    log_start[0] = 0.0
    g = torch.Generator().manual_seed(0)
    log_obs = torch.randn(1, T, K, generator=g, dtype=torch.float64) * 400.0
    log_obs[0, -1, :-1] = -math.inf  # the last frame can only be the last state
    for dtype in (torch.float64, torch.float32):
        a = inf.forward_backward(log_start.to(dtype), log_A.to(dtype), log_obs.to(dtype), backend="kernel")
        b = inf.forward_backward(log_start, log_A, log_obs, backend="torch")
        assert torch.isfinite(a[1]).all()
        assert float(a[1]) == pytest.approx(float(b[1]), rel=1e-6)
        # float32 log-values of ~1e4 carry ~1e-3 absolute rounding, hence the looser bound
        torch.testing.assert_close(a[0].double(), b[0], atol=1e-10 if dtype == torch.float64 else 2e-2, rtol=0)


def test_ragged_batch_equals_one_by_one():
    model = he.GaussianHMM(5, 7, "full", dtype=torch.float64)
    x, _ = model.sample(1, 10, seed=0)
    model.fit(x, max_iter=2)
    rng = np.random.default_rng(4)
    seqs = [torch.as_tensor(rng.normal(size=(n, 7))) for n in (31, 7, 19, 1)]
    batch, lengths = he.pad_sequences(seqs)
    batch[1, 7:] = 1e6  # padding content must not matter
    post, ll = model.forward_backward(batch, lengths)
    path, score = model.viterbi_decode(batch, lengths)
    for i, s in enumerate(seqs):
        p1, l1 = model.forward_backward(s)
        v1, s1 = model.viterbi_decode(s)
        n = s.shape[0]
        torch.testing.assert_close(post[i, :n], p1[0], atol=1e-12, rtol=0)
        torch.testing.assert_close(ll[i], l1[0])
        assert torch.equal(path[i, :n], v1[0])
        torch.testing.assert_close(score[i], s1[0])


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_hundred_thousand_frames_stay_finite(device):
    model = he.GaussianHMM(4, 3, dtype=torch.float32).to(device)
    x, _ = model.sample(1, 100_000, seed=1)
    post, ll = model.forward_backward(x)
    path, score = model.viterbi_decode(x)
    assert torch.isfinite(ll).all() and torch.isfinite(score).all()
    torch.testing.assert_close(post[0].sum(-1), torch.ones(100_000, device=device), atol=1e-4, rtol=0)
    # float32 agrees with float64 on the same data
    ll64 = model.to(torch.float64).score(x.double())
    assert float(ll[0]) == pytest.approx(float(ll64[0].detach()), rel=1e-5)


def test_float32_matches_float64():
    m64 = he.GaussianHMM(6, 10, "diag", dtype=torch.float64)
    x, _ = m64.sample(3, 200, seed=2)
    m64.fit(x, max_iter=3)
    m32 = he.GaussianHMM(6, 10, "diag")
    m32.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in m64.state_dict().items()})
    p64, l64 = m64.forward_backward(x)
    p32, l32 = m32.forward_backward(x.float())
    torch.testing.assert_close(l32.double(), l64, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(p32.double(), p64, atol=1e-3, rtol=0)


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("make", [
    lambda: he.GaussianHMM(3, 2, "diag", dtype=torch.float64),
    lambda: he.GaussianHMM(3, 2, "full", dtype=torch.float64, min_covar=1e-6),
    lambda: he.MixtureGaussianHMM(3, 2, 2, "diag", dtype=torch.float64),
    lambda: he.GaussianHMM(4, 2, "diag", topology="bakis", dtype=torch.float64),
    lambda: he.CategoricalHMM(3, 4, dtype=torch.float64),
])
def test_em_log_likelihood_never_decreases(make):
    truth = make()
    x, _ = truth.sample(5, 150, seed=3)
    history = make().fit(x, max_iter=25, tol=0.0, seed=0)
    assert len(history) == 25
    assert np.all(np.diff(history) >= -1e-7 * abs(history[-1]))
    assert history[-1] > history[0]


def test_em_recovers_a_known_model():
    truth = he.GaussianHMM(3, 2, "diag", dtype=torch.float64)
    truth.means = [[-5.0, 0.0], [0.0, 5.0], [5.0, 0.0]]
    truth.covars = [[0.5, 0.5]] * 3
    truth.transmat = [[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]
    x, _ = truth.sample(20, 200, seed=4)
    model = he.GaussianHMM(3, 2, "diag", dtype=torch.float64)
    model.fit(x, max_iter=50, seed=0)
    order = model.means[:, 0].argsort()
    torch.testing.assert_close(model.means[order], truth.means, atol=0.1, rtol=0)
    torch.testing.assert_close(model.transmat[order][:, order], truth.transmat, atol=0.04, rtol=0)
    torch.testing.assert_close(model.covars[order], truth.covars, atol=0.06, rtol=0)


def test_forbidden_transitions_stay_zero_and_unvisited_states_stay_finite():
    model = he.GaussianHMM(6, 2, topology="left-to-right", dtype=torch.float64)
    x = torch.randn(2, 40, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model.fit(x, max_iter=10)
    mask = he.transition_mask("left-to-right", 6)
    assert (model.transmat[~mask] == 0).all()
    assert torch.isfinite(model.means).all() and torch.isfinite(model.covars).all()
    # a state no frame can reach (an 8-state chain on 5 frames never gets to its end) keeps finite parameters
    model = he.GaussianHMM(8, 2, topology="left-to-right", dtype=torch.float64)
    model.fit(torch.randn(1, 10, 2, dtype=torch.float64), max_iter=5)
    assert torch.isfinite(model.means).all() and torch.isfinite(model.transmat).all()


def test_pseudocounts_fill_allowed_entries_only():
    model = he.GaussianHMM(4, 2, topology="bakis", trans_pseudocount=1.0, dtype=torch.float64)
    x, _ = he.GaussianHMM(4, 2, topology="bakis").sample(2, 50, seed=0)
    model.fit(x, max_iter=5)
    mask = he.transition_mask("bakis", 4)
    assert (model.transmat[mask] > 0).all() and (model.transmat[~mask] == 0).all()


def test_fit_is_deterministic_given_seed():
    x, _ = he.GaussianHMM(4, 3).sample(3, 100, seed=5)
    runs = [he.GaussianHMM(4, 3, "full").fit(x, max_iter=5, seed=7) for _ in range(2)]
    assert runs[0] == runs[1]


def test_gradients_through_score_are_finite_and_nonzero():
    x, _ = he.MixtureGaussianHMM(3, 4, 2, "full").sample(2, 50, seed=0)
    model = he.MixtureGaussianHMM(3, 4, 2, "full")
    model.fit(x, max_iter=2)  # an untrained mixture is symmetric: its weight gradient is exactly 0
    model.score(x).sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(g.abs().sum() > 0 for g in grads)
    history = he.fit_gradient(he.GaussianHMM(3, 4), x, steps=30, lr=0.05)
    assert history[-1] > history[0]


class _NeuralEmission(torch.nn.Module):
    """A small network scoring each frame for each state (unnormalised log-likelihoods)."""

    num_states = 3

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))

    def forward(self, x):
        return torch.log_softmax(self.net(x), dim=-1)


def test_neural_emission_decodes_and_trains_by_gradient():
    torch.manual_seed(0)
    truth = he.GaussianHMM(3, 2)
    truth.means = [[-4.0, 0.0], [0.0, 4.0], [4.0, 0.0]]
    x, states = truth.sample(4, 100, seed=0)
    model = he.HMM(emission=_NeuralEmission(), topology="ergodic")
    post, ll = model.forward_backward(x)
    torch.testing.assert_close(post.sum(-1), torch.ones(4, 100))
    history = he.fit_gradient(model, x, steps=60, lr=0.05)
    assert history[-1] > history[0]
    path, score = model.viterbi_decode(x)
    # Viterbi on the kernel path agrees with the differentiable forward pass's bound: score <= log p(x)
    assert (score <= model.score(x).detach() + 1e-4).all()
    with pytest.raises(he.InvalidParameterError, match="fit_gradient"):
        model.fit(x)


def test_gradient_of_log_likelihood_is_the_posterior():
    """d log p(x) / d log b_t(k) = p(z_t = k | x): autograd through the torch path equals the
    posteriors of the compiled kernel."""
    g = torch.Generator().manual_seed(0)
    log_obs = torch.randn(2, 30, 4, generator=g, dtype=torch.float64, requires_grad=True)
    log_A = torch.log_softmax(torch.randn(4, 4, generator=g, dtype=torch.float64), 1)
    log_s = torch.log_softmax(torch.randn(4, generator=g, dtype=torch.float64), 0)
    lengths = torch.tensor([30, 17])
    inf.log_likelihood(log_s, log_A, log_obs, lengths).sum().backward()
    post = inf.forward_backward(log_s, log_A, log_obs.detach(), lengths, backend="kernel")[0]
    torch.testing.assert_close(log_obs.grad, post, atol=1e-10, rtol=0)


def test_more_states_than_frames_is_a_clear_error():
    with pytest.raises(he.InvalidInputError, match="more states"):
        he.GaussianHMM(10, 2).fit(torch.randn(5, 2))


# --------------------------------------------------------------------------- selection


def test_free_parameter_counts_closed_form():
    K, D, M = 4, 3, 2
    assert he.GaussianHMM(K, D, "diag").num_free_parameters() == (K - 1) + K * (K - 1) + K * D + K * D
    assert he.GaussianHMM(K, D, "full").num_free_parameters() == (K - 1) + K * (K - 1) + K * D + K * D * (D + 1) // 2
    assert he.GaussianHMM(K, D, "spherical").num_free_parameters() == (K - 1) + K * (K - 1) + K * D + K
    assert he.GaussianHMM(K, D, "tied").num_free_parameters() == (K - 1) + K * (K - 1) + K * D + D * (D + 1) // 2
    assert he.MixtureGaussianHMM(K, D, M, "diag").num_free_parameters() == (K - 1) + K * (K - 1) + 2 * K * M * D + K * (M - 1)
    # a left-to-right chain: start fixed, each row has (stay, next) but the last row only stays
    assert he.GaussianHMM(K, D, "diag", topology="left-to-right").num_free_parameters() == (K - 1) + 2 * K * D
    assert he.CategoricalHMM(K, 5).num_free_parameters() == (K - 1) + K * (K - 1) + K * 4


def test_bic_aic_values_and_sweep_picks_the_true_size():
    truth = he.GaussianHMM(3, 2, dtype=torch.float64)
    truth.means = [[-6.0, 0.0], [0.0, 6.0], [6.0, 0.0]]
    truth.covars = [[0.5, 0.5]] * 3
    x, _ = truth.sample(10, 100, seed=6)
    ll = float(truth.score(x).sum().detach())
    p = truth.num_free_parameters()
    assert truth.bic(x) == pytest.approx(-2 * ll + p * math.log(1000))
    assert truth.aic(x) == pytest.approx(-2 * ll + 2 * p)
    rows = he.sweep(lambda num_states, num_mixtures: he.GaussianHMM(num_states, 2, dtype=torch.float64), x,
                    num_states=[1, 2, 3, 5], max_iter=30)
    best = [r for r in rows if r.get("best_bic")][0]
    assert best["num_states"] == 3
    too_many = he.sweep(lambda num_states, num_mixtures: he.GaussianHMM(num_states, 2), x[0, :4], num_states=[2, 8])
    assert "error" in too_many[1] and "more states" in too_many[1]["error"]


# --------------------------------------------------------------------------- parameters and files


def test_invalid_parameters_are_rejected():
    m = he.GaussianHMM(3, 2)
    with pytest.raises(he.InvalidParameterError, match="sum to 1"):
        m.transmat = [[0.5, 0.5, 0.5]] * 3
    with pytest.raises(he.InvalidParameterError):
        m.startprob = [0.5, 0.5]
    with pytest.raises(he.InvalidParameterError, match="positive"):
        m.covars = [[1.0, -1.0]] * 3
    with pytest.raises(he.InvalidParameterError, match="positive definite"):
        he.GaussianHMM(2, 2, "full").covars = [[[1.0, 2.0], [2.0, 1.0]]] * 2
    with pytest.raises(he.InvalidParameterError, match="forbids"):
        he.GaussianHMM(3, 2, topology="left-to-right").transmat = np.full((3, 3), 1 / 3)
    with pytest.raises(he.InvalidInputError, match="NaN"):
        m.score(torch.tensor([[0.0, float("nan")]] * 4))
    with pytest.raises(he.InvalidInputError, match="dimension"):
        m.score(torch.zeros(4, 5))


@pytest.mark.parametrize("make", [
    lambda: he.GaussianHMM(3, 4, "full", topology="bakis"),
    lambda: he.MixtureGaussianHMM(3, 4, 2, "tied", dtype=torch.float64),
    lambda: he.CategoricalHMM(3, 6),
])
def test_save_load_round_trip(tmp_path, make):
    model = make()
    x, _ = model.sample(2, 60, seed=0)
    model.fit(x, max_iter=3)
    path = he.save(model, tmp_path / "m.pt")
    loaded = he.load(path)
    assert type(loaded) is type(model)
    for (k, v), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    assert torch.equal(model.score(x), loaded.score(x))
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write leaves no temporary behind


def test_load_rejects_corrupt_and_foreign_files(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(he.ModelFileError, match="not a readable"):
        he.load(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(he.ModelFileError, match="not an HMM Studio model"):
        he.load(foreign)
    with pytest.raises(he.ModelFileError, match="no model file"):
        he.load(tmp_path / "missing.pt")


def test_sampling_follows_the_chain():
    model = he.GaussianHMM(2, 1, dtype=torch.float64)
    model.transmat = [[0.9, 0.1], [0.3, 0.7]]
    model.startprob = [1.0, 0.0]
    _, states = model.sample(50, 400, seed=0)
    assert (states[:, 0] == 0).all()
    prev, nxt = states[:, :-1].reshape(-1), states[:, 1:].reshape(-1)
    freq = torch.zeros(2, 2, dtype=torch.float64).index_put_((prev, nxt), torch.ones_like(prev, dtype=torch.float64), accumulate=True)
    torch.testing.assert_close(freq / freq.sum(1, keepdim=True), model.transmat, atol=0.02, rtol=0)
