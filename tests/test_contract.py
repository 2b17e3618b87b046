"""The engine's one inference contract: argument order, named results, one base class for the
models, the impossible-sequence policy, dtypes and devices, saving a user's emission module."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import hmm_engine as he
from hmm_engine.inference import chain, hmm, hsmm
from hmm_engine.inference.results import (
    ChainPosteriors,
    ForwardBackwardResult,
    ForwardResult,
    HSMMPosteriors,
    HSMMViterbiResult,
    Posteriors,
    SegmentChainPosteriors,
    StateSegment,
    ViterbiResult,
)

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]
NEG = -math.inf


def _params(K=3, dmax=4, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    ls = torch.log_softmax(torch.randn(K, generator=g, dtype=dtype), -1)
    lt = torch.log_softmax(torch.randn(K, K, generator=g, dtype=dtype), -1)
    lt_semi = torch.log_softmax(torch.randn(K, K, generator=g, dtype=dtype).fill_diagonal_(NEG), -1)
    ld = torch.log_softmax(torch.randn(K, dmax, generator=g, dtype=dtype), -1)
    obs = torch.randn(2, 9, K, generator=g, dtype=dtype)
    return ls, lt, lt_semi, ld, obs


# --------------------------------------------------------------------------- named results


def test_results_are_named_and_still_unpack():
    ls, lt, lt_semi, ld, obs = _params()
    lengths = torch.tensor([9, 6])
    fwd = hmm.forward(ls, lt, obs, lengths)
    assert isinstance(fwd, ForwardResult)
    log_alpha, ll = fwd
    assert log_alpha is fwd.log_alpha and ll is fwd.log_likelihood
    fb = hmm.forward_backward(ls, lt, obs, lengths)
    assert isinstance(fb, ForwardBackwardResult) and fb.posteriors.shape == obs.shape
    torch.testing.assert_close(fb.log_likelihood, ll)
    vit = hmm.viterbi(ls, lt, obs, lengths)
    assert isinstance(vit, ViterbiResult) and vit.path.shape == (2, 9)
    # The semi-Markov functions take the same order: parameters, log_obs, lengths, options.
    res = hsmm.hsmm_forward_backward(ls, lt_semi, ld, obs, lengths)
    assert isinstance(res, HSMMPosteriors)
    torch.testing.assert_close(hsmm.hsmm_log_likelihood(ls, lt_semi, ld, obs, lengths), res.log_likelihood)
    best = hsmm.hsmm_viterbi(ls, lt_semi, ld, obs, lengths)
    assert isinstance(best, HSMMViterbiResult)
    assert all(isinstance(s, StateSegment) for segs in best.segments for s in segs)
    assert best.segments[1][-1].end == 6


def test_chain_results_are_named():
    c = chain.Chain.from_arrays([0.0, NEG], [NEG, 0.0], np.log([0.5, 1.0]), [np.log(0.5), NEG])
    obs = np.random.default_rng(0).normal(size=(5, 2))
    post = chain.chain_forward_backward(c, obs)
    assert isinstance(post, ChainPosteriors) and post.gamma is post.posteriors
    path, score = chain.chain_viterbi(c, obs)
    assert isinstance(chain.chain_viterbi(c, obs), ViterbiResult) and path[0] == 0 and path[-1] == 1
    ls, lt = chain.chain_to_dense(c)
    dense = hmm.forward_backward(ls, lt, torch.from_numpy(obs)[None] + torch.from_numpy(np.where(
        np.arange(5)[:, None] == 4, c.log_final[None, :], 0.0))[None])
    np.testing.assert_allclose(post.posteriors, dense.posteriors[0].numpy(), atol=1e-12)
    assert score <= post.log_likelihood


def test_segment_chain_takes_parameters_then_log_obs():
    c = chain.Chain.from_arrays([0.0, NEG], [NEG, 0.0], [NEG, NEG], [0.0, NEG])
    obs = np.random.default_rng(1).normal(size=(5, 2))
    log_dur = np.log(np.full((2, 4), 0.25))
    post = chain.chain_segment_forward_backward(c, log_dur, None, obs)
    assert isinstance(post, SegmentChainPosteriors) and post.gamma is post.posteriors
    # brute force: position 0 lasts d in 1..4 frames, position 1 the remaining 5 - d (also <= 4)
    terms = [obs[:d, 0].sum() + obs[d:, 1].sum() + 2 * np.log(0.25) for d in (1, 2, 3, 4)]
    assert post.log_likelihood == pytest.approx(np.logaddexp.reduce(terms), abs=1e-12)
    best = chain.chain_segment_viterbi(c, log_dur, None, obs)
    assert isinstance(best, ViterbiResult) and best.score == pytest.approx(max(terms), abs=1e-12)
    with pytest.raises(he.InvalidInputError):  # the old order (log_obs first) fails on shapes
        chain.chain_segment_forward_backward(c, obs, log_dur, None)


def test_models_share_one_base_and_return_named_results():
    x = torch.randn(2, 10, 2, dtype=torch.float64)
    for model in (he.GaussianHMM(3, 2, dtype=torch.float64), he.SemiMarkovHMM(3, 2, max_duration=5, dtype=torch.float64)):
        assert isinstance(model, he.BaseHMM)
        post = model.forward_backward(x)
        assert isinstance(post, Posteriors) and post.posteriors.shape == (2, 10, 3)
        vit = model.viterbi_decode(x)
        assert isinstance(vit, ViterbiResult)
        torch.testing.assert_close(model.predict(x), vit.path)


# --------------------------------------------------------------------------- impossible sequences


def test_impossible_policy_is_the_same_for_both_models():
    """score: -inf (the log-likelihood of an impossible sequence); posteriors, paths and EM:
    an InvalidInputError naming the sequence."""
    cat = he.CategoricalHMM(2, 3, dtype=torch.float64)
    cat.emissionprob = [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]]
    x = torch.tensor([[0, 1, 2, 0], [0, 1, 1, 0]])
    semi = he.SemiMarkovHMM(2, 2, max_duration=3, topology="left-to-right", dtype=torch.float64)
    y = torch.zeros(2, 8, 2, dtype=torch.float64)
    lengths = torch.tensor([8, 5])  # 8 frames cannot be covered by 2 segments of <= 3 frames
    for model, data, kw in ((cat, x, {}), (semi, y, {"lengths": lengths})):
        ll = model.score(data, **kw)
        assert ll[0].item() == NEG and math.isfinite(ll[1].item())
        with pytest.raises(he.InvalidInputError, match=r"sequences \[0\]"):
            model.forward_backward(data, **kw)
        with pytest.raises(he.InvalidInputError, match=r"sequences \[0\]"):
            model.viterbi_decode(data, **kw)
        with pytest.raises(he.InvalidInputError):
            model.fit(data, init=False, max_iter=1, **kw)


# --------------------------------------------------------------------------- dtypes and devices


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_outputs_keep_the_input_dtype_and_device(dtype, device):
    ls, lt, lt_semi, ld, obs = (t.to(device, dtype) for t in _params())
    lengths = torch.tensor([9, 6], device=device)
    for backend in (["kernel", "torch"] if device == "cpu" else ["torch"]):
        outs = [*hmm.forward(ls, lt, obs, lengths, backend), *hmm.forward_backward(ls, lt, obs, lengths, backend),
                hmm.log_likelihood(ls, lt, obs, lengths, backend), hmm.viterbi(ls, lt, obs, lengths, backend).score,
                hmm.backward(lt, obs, lengths, backend)]
        assert all(o.dtype == dtype and o.device.type == device for o in outs), [o.dtype for o in outs]
    res = hsmm.hsmm_forward_backward(ls, lt_semi, ld, obs, lengths)
    assert all(t.dtype == dtype and t.device.type == device for t in res)
    assert hsmm.hsmm_viterbi(ls, lt_semi, ld, obs, lengths).score.dtype == dtype
    assert hsmm.hsmm_log_likelihood(ls, lt_semi, ld, obs, lengths).dtype == dtype
    for model in (he.GaussianHMM(3, 2, dtype=dtype), he.SemiMarkovHMM(3, 2, max_duration=4, dtype=dtype)):
        model = model.to(device)
        x = torch.randn(2, 9, 2, dtype=dtype, device=device)
        post, ll = model.forward_backward(x)
        assert post.dtype == ll.dtype == model.score(x).dtype == model.viterbi_decode(x).score.dtype == dtype
        obs_s, states = model.sample(2, 6, seed=0)
        assert obs_s.device.type == states.device.type == device and obs_s.dtype == dtype


@pytest.mark.parametrize("device", DEVICES)
def test_sampling_with_a_seed_stays_on_the_model_device(device):
    model = he.MixtureGaussianHMM(3, 2, num_mixtures=2).to(device)
    obs, states = model.sample(3, 8, seed=1)
    assert obs.device.type == states.device.type == device
    again, _ = model.sample(3, 8, seed=1)
    torch.testing.assert_close(obs, again)
    cat = he.CategoricalHMM(2, 4).to(device)
    assert cat.sample(2, 5, seed=0)[0].device.type == device


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_precision_gives_float32_results_or_a_clear_error(half):
    torch.manual_seed(0)
    ref = he.GaussianHMM(4, 3, dtype=torch.float32)
    with torch.no_grad():
        ref.emission.means_param.normal_()
    x = torch.randn(2, 200, 3)
    low = he.GaussianHMM(4, 3).to(half)
    low.load_state_dict(ref.state_dict())
    ll = low.score(x)
    assert ll.dtype == torch.float32
    # The emission scores are computed in half precision (3-4 significant digits); the
    # recursions accumulate in float32/float64, so the error is that of the scores alone.
    per_frame = ((ll - ref.score(x)).abs() / 200).max().item()
    assert per_frame < (0.02 if half == torch.float16 else 0.1)
    assert low.forward_backward(x).posteriors.dtype == torch.float32
    assert (low.viterbi_decode(x).path >= 0).all()
    ll.sum().backward()
    assert low.emission.means_param.grad.dtype == half
    # Half-precision scores straight into the pure functions: promoted, not a numba error.
    ls, lt, lt_semi, ld, obs = _params(dtype=torch.float32)
    for backend in ("kernel", "torch"):
        torch.testing.assert_close(hmm.log_likelihood(ls, lt, obs.to(half), backend=backend),
                                   hmm.log_likelihood(ls, lt, obs.to(half).float(), backend=backend))
    assert hsmm.hsmm_log_likelihood(ls, lt_semi, ld, obs.to(half)).dtype == torch.float32
    with pytest.raises(he.InvalidParameterError, match="EM needs float32 or float64"):
        low.fit(x, max_iter=1)
    with pytest.raises(he.InvalidInputError, match="floating-point"):
        hmm.log_likelihood(ls, lt, obs.long())


# --------------------------------------------------------------------------- saving a user's module


class TinyNet(nn.Module):
    """A user's neural emission: a linear layer and a log-softmax over 3 states."""

    num_states = 3

    def __init__(self, obs_dim: int = 2, hidden: int = 5):
        super().__init__()
        self.obs_dim, self.hidden = obs_dim, hidden
        self.net = nn.Sequential(nn.Linear(obs_dim, hidden), nn.Tanh(), nn.Linear(hidden, 3))

    def forward(self, x):
        return torch.log_softmax(self.net(x), -1)

    def get_config(self):
        return {"obs_dim": self.obs_dim, "hidden": self.hidden}


class Bare(nn.Module):
    """No get_config: rebuilt with Bare() or handed over as an instance."""

    num_states = 2

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(2, 2)

    def forward(self, x):
        return torch.log_softmax(self.proj(x), -1)


def test_save_and_load_an_hmm_with_a_user_emission(tmp_path):
    torch.manual_seed(0)
    model = he.HMM(TinyNet(2, 7), topology="left-to-right")
    x = torch.randn(1, 30, 2)
    he.fit_gradient(model, x, steps=3)
    path = he.save(model, tmp_path / "net.pt")
    with pytest.raises(he.InvalidParameterError, match="TinyNet"):
        he.load(path)  # the file holds no code: the class must be named
    for emission in (TinyNet, TinyNet(2, 7)):
        back = he.load(path, emission=emission)
        assert back.emission.hidden == 7 and back.topology == "left-to-right"
        torch.testing.assert_close(back.score(x), model.score(x))
    he.register_emission(TinyNet)
    torch.testing.assert_close(he.load(path).score(x), model.score(x))

    bare = he.HMM(Bare())
    path = he.save(bare, tmp_path / "bare.pt")
    torch.testing.assert_close(he.load(path, emission=Bare).score(x), bare.score(x))
    with pytest.raises(he.InvalidParameterError, match="states"):
        he.load(path, emission=TinyNet())


def test_save_and_load_a_plain_hmm_with_an_engine_emission(tmp_path):
    from hmm_engine.emissions import GaussianEmission

    model = he.HMM(GaussianEmission(3, 2, "full"), topology="bakis")
    back = he.load(he.save(model, tmp_path / "g.pt"))
    x = torch.randn(12, 2)
    torch.testing.assert_close(back.score(x), model.score(x))
    assert type(back) is he.HMM


@pytest.mark.parametrize("ct", ["full", "tied", "spherical"])
def test_half_precision_for_every_covariance_type(ct):
    torch.manual_seed(0)
    x = torch.randn(60, 2)
    ref = he.GaussianHMM(3, 2, ct)
    ref.fit(x, max_iter=3)
    for half in (torch.float16, torch.bfloat16):
        low = he.GaussianHMM(3, 2, ct).to(half)
        low.load_state_dict(ref.state_dict())
        ll = low.score(x)
        assert ll.dtype == torch.float32
        assert abs(ll.item() - ref.score(x).item()) / 60 < 0.02
        ll.sum().backward()
        assert torch.isfinite(low.emission.cov_param.grad.float()).all()
