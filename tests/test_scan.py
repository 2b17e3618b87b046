"""Parallel-in-time forward and Viterbi (associative scans) against the sequential recursions:
log-likelihoods and alphas value by value, Viterbi by path score (ties may pick another path)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hmm_engine.errors import InvalidInputError
from hmm_engine.inference import hmm as inf
from hmm_engine.inference.scan import associative_scan, scan_forward, scan_viterbi

NEG = -math.inf
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


@st.composite
def batches(draw):
    K = draw(st.integers(1, 5))
    T = draw(st.integers(1, 70))
    B = draw(st.integers(1, 3))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    ties = draw(st.booleans())
    keep = torch.rand(K, K, generator=g) < 0.6
    keep[torch.arange(K), torch.randint(0, K, (K,), generator=g)] = True
    trans = torch.randn(K, K, generator=g, dtype=torch.float64) * 2
    obs = torch.randn(B, T, K, generator=g, dtype=torch.float64) * draw(st.sampled_from([1.0, 30.0]))
    if ties:
        trans, obs = trans * 0, obs.round()
    ls = torch.log_softmax(torch.randn(K, generator=g, dtype=torch.float64), 0)
    lt = torch.log_softmax(trans.masked_fill(~keep, NEG), 1)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = T
    return ls, lt, obs, lengths


def path_scores(ls, lt, obs, path, lengths):
    out = []
    for b in range(obs.shape[0]):
        p = path[b, : int(lengths[b])].tolist()
        s = ls[p[0]] + obs[b, 0, p[0]]
        for t in range(1, len(p)):
            s = s + lt[p[t - 1], p[t]] + obs[b, t, p[t]]
        out.append(float(s))
    return torch.tensor(out, dtype=torch.float64)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_scan_forward_equals_sequential(problem):
    ls, lt, obs, lengths = problem
    alpha, ll = inf.forward(ls, lt, obs, lengths, backend="torch")
    s_alpha, s_ll = scan_forward(ls, lt, obs, lengths)
    torch.testing.assert_close(s_ll, ll, atol=1e-9, rtol=1e-12)
    assert torch.equal(torch.isinf(s_alpha), torch.isinf(alpha))
    fin = torch.isfinite(alpha)
    torch.testing.assert_close(s_alpha[fin], alpha[fin], atol=1e-9, rtol=1e-12)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_scan_viterbi_has_the_sequential_score(problem):
    ls, lt, obs, lengths = problem
    path, score = inf.viterbi(ls, lt, obs, lengths, backend="torch")
    s_path, s_score = scan_viterbi(ls, lt, obs, lengths)
    torch.testing.assert_close(s_score, score, atol=1e-9, rtol=1e-12)
    torch.testing.assert_close(path_scores(ls, lt, obs, s_path, lengths), score, atol=1e-9, rtol=1e-12)
    T = obs.shape[1]
    pad = torch.arange(T)[None, :] >= lengths[:, None]
    assert (s_path[pad] == -1).all() and (s_path[~pad] >= 0).all()


def test_float32_long_sequence_keeps_its_scale():
    """T = 5000 in float32: the per-element float64 scale keeps the log-likelihood (about -1e5)
    exact to float32 precision of its per-frame terms."""
    g = torch.Generator().manual_seed(0)
    K, T = 4, 5000
    ls = torch.log_softmax(torch.randn(K, generator=g), 0)
    lt = torch.log_softmax(torch.randn(K, K, generator=g), 1)
    obs = torch.randn(1, T, K, generator=g) * 5 - 20
    _, ll64 = inf.forward(ls.double(), lt.double(), obs.double(), backend="torch")
    _, ll = scan_forward(ls, lt, obs)
    assert ll.dtype == torch.float32
    assert float(ll) == pytest.approx(float(ll64), rel=1e-6)
    _, s64 = inf.viterbi(ls.double(), lt.double(), obs.double(), backend="torch")
    _, s = scan_viterbi(ls, lt, obs)
    assert float(s) == pytest.approx(float(s64), rel=1e-6)


def test_associative_scan_is_a_prefix_sum():
    x = torch.arange(1, 38, dtype=torch.float64)
    (out,) = associative_scan(lambda a, b: (a[0] + b[0],), (x,))
    torch.testing.assert_close(out, x.cumsum(0))


def test_cost_is_checked_before_work():
    K = 512
    with pytest.raises(InvalidInputError, match="K\\^3"):
        scan_viterbi(torch.zeros(K), torch.zeros(K, K), torch.zeros(1, 1000, K))


@pytest.mark.parametrize("device", DEVICES)
def test_scan_runs_on_the_input_device(device):
    g = torch.Generator().manual_seed(1)
    ls = torch.log_softmax(torch.randn(3, generator=g), 0).to(device)
    lt = torch.log_softmax(torch.randn(3, 3, generator=g), 1).to(device)
    obs = torch.randn(2, 50, 3, generator=g).to(device)
    path, score = scan_viterbi(ls, lt, obs)
    _, ll = scan_forward(ls, lt, obs)
    assert path.device.type == device and score.device.type == device and ll.device.type == device
    _, ref = inf.viterbi(ls, lt, obs, backend="torch")
    torch.testing.assert_close(score, ref, atol=1e-3, rtol=1e-5)


def test_scan_results_are_the_named_types_of_the_sequential_functions():
    from hmm_engine.inference.results import ForwardResult, ViterbiResult

    ls, lt = torch.log(torch.tensor([0.6, 0.4])), torch.log(torch.tensor([[0.7, 0.3], [0.2, 0.8]]))
    for T in (1, 4):  # T == 1 has its own early return
        obs = torch.randn(2, T, 2, dtype=torch.float32)
        fwd, vit = scan_forward(ls, lt, obs), scan_viterbi(ls, lt, obs)
        assert isinstance(fwd, ForwardResult) and isinstance(vit, ViterbiResult)
        assert fwd.log_alpha.shape == (2, T, 2) and vit.path.shape == (2, T) and vit.score.shape == (2,)
        torch.testing.assert_close(fwd.log_likelihood, inf.forward(ls, lt, obs, backend="torch").log_likelihood)
