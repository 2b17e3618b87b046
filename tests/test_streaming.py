"""Streaming inference: filtered posteriors against the offline forward pass, the exact stream's
path against the offline Viterbi score (scores, not paths: ties), the fixed lag, fixed-lag
posteriors against forward-backward on the prefix, chunking invariance, the semi-Markov stream
and the errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hmm_engine as he
from hmm_engine.errors import InvalidInputError, InvalidParameterError
from hmm_engine.inference import hmm as inf
from hmm_engine.inference import hsmm
from hmm_engine.inference.streaming import StreamDecoder, hsmm_expanded_chain

NEG = -math.inf
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]
SETTINGS = dict(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def problems(draw, max_k=5, max_t=40):
    """A random HMM (sparse start and transitions allowed) and log-likelihoods; integer-valued
    scores in half the draws so that ties between paths are common."""
    K = draw(st.integers(1, max_k))
    T = draw(st.integers(1, max_t))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    ties = draw(st.booleans())
    trans = torch.randn(K, K, generator=g, dtype=torch.float64) * 2
    keep = torch.rand(K, K, generator=g) < 0.6
    keep[torch.arange(K), torch.randint(0, K, (K,), generator=g)] = True  # every row has a way out
    start = torch.randn(K, generator=g, dtype=torch.float64)
    smask = torch.rand(K, generator=g) < 0.7
    smask[int(torch.randint(0, K, (1,), generator=g))] = True
    obs = torch.randn(T, K, generator=g, dtype=torch.float64) * 3
    if ties:
        trans, start, obs = trans.round(), start.round(), obs.round()
        trans = torch.where(keep, trans * 0, trans)  # uniform over allowed moves: many ties
    ls = torch.log_softmax(start.masked_fill(~smask, NEG), 0)
    lt = torch.log_softmax(trans.masked_fill(~keep, NEG), 1)
    return ls, lt, obs


@st.composite
def chunkings(draw, T):
    sizes, left = [], T
    while left > 0:
        n = draw(st.integers(1, max(1, min(left, 12))))
        sizes.append(n)
        left -= n
    return sizes


def path_score(ls, lt, obs, path):
    path = [int(s) for s in path]
    score = ls[path[0]] + obs[0, path[0]]
    for t in range(1, len(path)):
        score = score + lt[path[t - 1], path[t]] + obs[t, path[t]]
    return float(score)


def run_stream(dec, obs, sizes):
    """Push ``obs`` in chunks of ``sizes``; return everything the stream said, checked for
    bookkeeping on the way (frame indices, contiguous commits and smoothed frames)."""
    filtered, states, smoothed, steps = [], [], [], []
    i = 0
    for n in sizes:
        step = dec.push(obs[i:i + n])
        assert step.frame == i and step.filtered.shape[0] == n
        assert step.states_start == sum(len(s) for s in states)
        filtered.append(step.filtered)
        states.append(step.states)
        if step.smoothed is not None:
            assert step.smoothed_start == sum(len(s) for s in smoothed)
            smoothed.append(step.smoothed)
        i += n
        steps.append(step)
    last = dec.flush()
    assert last.states_start == sum(len(s) for s in states)
    states.append(last.states)
    if last.smoothed is not None:
        smoothed.append(last.smoothed)
    return dict(filtered=torch.cat(filtered), states=torch.cat(states), steps=steps, last=last,
                smoothed=torch.cat(smoothed) if smoothed else None)


# ----------------------------------------------------------------------------- HMM, log-likelihood inputs


@settings(**SETTINGS)
@given(st.data())
def test_filtered_equals_offline_forward(data):
    ls, lt, obs = data.draw(problems())
    sizes = data.draw(chunkings(obs.shape[0]))
    out = run_stream(StreamDecoder(ls, lt, data.draw(st.sampled_from([None, 0, 2]))), obs, sizes)
    hat, norm = inf.forward_normalized(ls, lt, obs[None], torch.tensor([obs.shape[0]]), backend="torch")
    torch.testing.assert_close(out["filtered"], hat[0].exp(), atol=1e-10, rtol=0)
    assert out["last"].log_likelihood == pytest.approx(float(norm.sum()), abs=1e-8)
    # each running log-likelihood is the prefix's
    ends = np.cumsum(sizes)
    for step, end in zip(out["steps"], ends):
        assert step.log_likelihood == pytest.approx(float(norm[0, :end].sum()), abs=1e-8)


@settings(**SETTINGS)
@given(st.data())
def test_exact_stream_has_offline_viterbi_score(data):
    ls, lt, obs = data.draw(problems())
    T = obs.shape[0]
    sizes = data.draw(chunkings(T))
    out = run_stream(StreamDecoder(ls, lt, None), obs, sizes)
    states = out["states"]
    assert states.dtype == torch.long and states.shape == (T,)
    _, offline = inf.viterbi(ls, lt, obs[None], backend="torch")
    assert path_score(ls, lt, obs, states) == pytest.approx(float(offline[0]), abs=1e-8)
    assert out["last"].score == pytest.approx(float(offline[0]), abs=1e-8)


@settings(**SETTINGS)
@given(st.data())
def test_fixed_lag_keeps_lag_and_smooths_over_it(data):
    ls, lt, obs = data.draw(problems())
    T = obs.shape[0]
    lag = data.draw(st.integers(0, 6))
    sizes = data.draw(chunkings(T))
    dec = StreamDecoder(ls, lt, lag)
    committed = smoothed = seen = 0
    smooth_rows, states = [], []
    for n in sizes:
        step = dec.push(obs[seen:seen + n])
        seen += n
        committed += len(step.states)
        states.append(step.states)
        # every frame is committed, and smoothed, at most `lag` frames after it arrives
        assert committed >= seen - lag
        assert smoothed + len(step.smoothed) == max(0, seen - lag)
        smoothed += len(step.smoothed)
        smooth_rows.append(step.smoothed)
    last = dec.flush()
    states.append(last.states)
    smooth_rows.append(last.smoothed)
    path, smooth = torch.cat(states), torch.cat(smooth_rows)
    assert path.shape == (T,) and smooth.shape == (T, ls.shape[0])
    # the committed states form one valid path, never better than the offline one
    score = path_score(ls, lt, obs, path)
    _, offline = inf.viterbi(ls, lt, obs[None], backend="torch")
    assert math.isfinite(score) and score <= float(offline[0]) + 1e-8
    assert last.score == pytest.approx(score, abs=1e-8)
    # fixed-lag posteriors are forward-backward on the prefix that ends `lag` frames later
    for s in range(T):
        end = min(T, s + lag + 1)
        post = inf.forward_backward(ls, lt, obs[None, :end], backend="torch")[0][0, s]
        torch.testing.assert_close(smooth[s], post, atol=1e-9, rtol=0)


@settings(**SETTINGS)
@given(st.data())
def test_lag_covering_the_stream_is_the_offline_path(data):
    ls, lt, obs = data.draw(problems())
    T = obs.shape[0]
    out = run_stream(StreamDecoder(ls, lt, T), obs, data.draw(chunkings(T)))
    _, offline = inf.viterbi(ls, lt, obs[None], backend="torch")
    assert path_score(ls, lt, obs, out["states"]) == pytest.approx(float(offline[0]), abs=1e-8)


@settings(**SETTINGS)
@given(st.data())
def test_ragged_chunks_equal_one_push(data):
    ls, lt, obs = data.draw(problems())
    T = obs.shape[0]
    lag = data.draw(st.sampled_from([None, 0, 1, 3]))
    ragged = run_stream(StreamDecoder(ls, lt, lag), obs, data.draw(chunkings(T)))
    whole = run_stream(StreamDecoder(ls, lt, lag), obs, [T])
    assert torch.equal(ragged["states"], whole["states"])
    torch.testing.assert_close(ragged["filtered"], whole["filtered"], atol=1e-12, rtol=0)
    if lag is not None:
        torch.testing.assert_close(ragged["smoothed"], whole["smoothed"], atol=1e-12, rtol=0)
    assert ragged["last"].score == pytest.approx(whole["last"].score, abs=1e-9)


def test_reset_starts_over():
    ls, lt = torch.log(torch.tensor([0.6, 0.4])), torch.log(torch.tensor([[0.9, 0.1], [0.2, 0.8]]))
    obs = torch.tensor([[0.0, -3.0], [-3.0, 0.0], [-3.0, 0.0]])
    dec = StreamDecoder(ls, lt)
    first = run_stream(dec, obs, [1, 2])
    dec.reset()
    again = run_stream(dec, obs, [3])
    assert torch.equal(first["states"], again["states"])
    assert first["states"].tolist() == [0, 1, 1]
    assert first["filtered"].dtype == torch.float32  # the parameters' dtype


def test_partial_traceback_commits_during_the_stream():
    """On a model whose states are told apart by their emissions, the exact stream commits
    states as it goes and keeps only a few frames of back-pointers."""
    model = he.GaussianHMM(4, 3, dtype=torch.float64)
    model.means = torch.arange(4, dtype=torch.float64)[:, None].repeat(1, 3) * 4
    model.covars = torch.ones(4, 3, dtype=torch.float64)
    model.transmat = torch.full((4, 4), 0.1, dtype=torch.float64) + torch.eye(4, dtype=torch.float64) * 0.6
    x, _ = model.sample(1, 400, seed=3)
    dec = model.stream()
    committed, pending = 0, []
    for i in range(0, 400, 10):
        step = dec.push(x[0, i:i + 10])
        committed += len(step.states)
        pending.append(dec.t - dec.committed)
    assert committed > 350 and max(pending) < 40
    last = dec.flush()
    assert committed + len(last.states) == 400
    _, score = model.viterbi_decode(x)
    assert last.score == pytest.approx(float(score[0]), abs=1e-8)


# ----------------------------------------------------------------------------- models


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.sampled_from(["ergodic", "left-to-right", "bakis"]), st.integers(1, 60))
def test_gaussian_model_stream_matches_offline(seed, topology, T):
    g = torch.Generator().manual_seed(seed)
    model = he.GaussianHMM(4, 3, topology=topology)
    model.means = torch.randn(4, 3, generator=g) * 2
    x = torch.randn(T, 3, generator=g) * 2
    sizes = [3] * (T // 3) + ([T % 3] if T % 3 else [])
    out = run_stream(model.stream(), x, sizes)
    path, score = model.viterbi_decode(x.double().float())
    assert out["filtered"].dtype == torch.float32 and out["filtered"].shape == (T, 4)
    post64 = inf.forward_normalized(model.log_startprob().detach().double(), model.log_transmat().detach().double(),
                                    model.emission_log_likelihood(x[None]).detach().double(), torch.tensor([T]),
                                    backend="torch")[0][0].exp()
    torch.testing.assert_close(out["filtered"].double(), post64, atol=1e-6, rtol=0)
    lo = model.emission_log_likelihood(x[None]).detach().double()[0]
    ls, lt = model.log_startprob().detach().double(), model.log_transmat().detach().double()
    _, best = inf.viterbi(ls, lt, lo[None], backend="torch")
    assert path_score(ls, lt, lo, out["states"]) == pytest.approx(float(best[0]), abs=1e-6)
    assert float(score[0]) == pytest.approx(float(best[0]), abs=1e-3)


def test_categorical_model_streams_symbols():
    model = he.CategoricalHMM(2, 3)
    model.emissionprob = torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]])
    x = torch.tensor([0, 0, 2, 2, 2, 0, 1])
    out = run_stream(model.stream(), x, [2, 2, 3])
    path, _ = model.viterbi_decode(x)
    assert out["states"].tolist() == path[0].tolist()


@pytest.mark.parametrize("device", DEVICES)
def test_stream_follows_the_model_device(device):
    model = he.GaussianHMM(3, 2).to(device)
    x = torch.randn(12, 2, device=device)
    dec = model.stream(lag=2)
    step = dec.push(x)
    assert step.filtered.device.type == device and step.smoothed.device.type == device
    assert step.states.device.type == "cpu"


# ----------------------------------------------------------------------------- semi-Markov


@st.composite
def hsmm_problems(draw):
    K = draw(st.integers(1, 3))
    Dm = draw(st.integers(1, 5))
    dmin = draw(st.integers(1, Dm))
    T = draw(st.integers(1, 25))
    seed = draw(st.integers(0, 2**31 - 1))
    topology = draw(st.sampled_from(["ergodic", "left-to-right"]))
    censored = draw(st.booleans())
    g = torch.Generator().manual_seed(seed)
    model = he.SemiMarkovHMM(K, 2, max_duration=Dm, min_duration=dmin, duration="nonparametric",
                             topology=topology, right_censored=censored, dtype=torch.float64)
    pmf = torch.rand(K, Dm, generator=g, dtype=torch.float64) * (torch.arange(1, Dm + 1) >= dmin)
    model.duration.m_step(pmf * 10)
    with torch.no_grad():
        model.emission.means = torch.randn(K, 2, generator=g, dtype=torch.float64) * 2
    x = torch.randn(T, 2, generator=g, dtype=torch.float64) * 2
    return model, x


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_semi_markov_stream_matches_offline(data):
    """The (state, frames so far) chain: filtered = right-censored posteriors of the prefix,
    the exact path has the offline semi-Markov Viterbi score."""
    model, x = data.draw(hsmm_problems())
    T = x.shape[0]
    lo = model.emission_log_likelihood(x[None]).detach()
    params = model._params()
    offline = hsmm.hsmm_viterbi(*params, lo, None, model.right_censored)
    dec = model.stream()
    sizes = data.draw(chunkings(T))
    if not math.isfinite(float(offline.score[0])):
        with pytest.raises(InvalidInputError):
            run_stream(dec, x, sizes)
        return
    out = run_stream(dec, x, sizes)
    assert out["last"].score == pytest.approx(float(offline.score[0]), abs=1e-8)
    # the streamed path, scored as a segmentation
    path = out["states"].tolist()
    segs, s = [], 0
    for t in range(1, T + 1):
        if t == T or path[t] != path[s]:
            segs.append(hsmm.StateSegment(path[s], s, t))
            s = t
    # no self-transitions: runs of one state are the segments
    ref = hsmm.segments_log_prob(*params, lo[0], segs, model.right_censored)
    assert float(ref) == pytest.approx(float(offline.score[0]), abs=1e-8)
    for t in sorted({0, T // 2, T - 1}):
        post = hsmm.hsmm_forward_backward(*params, lo[:, :t + 1], None, True).posteriors[0, t]
        torch.testing.assert_close(out["filtered"][t], post, atol=1e-9, rtol=0)


def test_semi_markov_expansion_is_bounded():
    model = he.SemiMarkovHMM(64, 2, max_duration=100)
    with pytest.raises(InvalidParameterError, match="max_duration"):
        model.stream()


def test_expanded_chain_rows_are_stochastic():
    ld = torch.log(torch.tensor([[0.0, 0.5, 0.5], [0.2, 0.3, 0.5]], dtype=torch.float64))
    lt = torch.log(torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64))
    start, trans, final, groups = hsmm_expanded_chain(torch.log(torch.tensor([0.5, 0.5])), lt, ld)
    reachable = torch.isfinite(torch.logsumexp(trans, 0)) | torch.isfinite(start)
    rows = torch.logsumexp(trans, 1).exp()
    torch.testing.assert_close(rows[reachable], torch.ones(int(reachable.sum()), dtype=torch.float64))
    assert groups.tolist() == [0, 0, 0, 1, 1, 1]
    # start in state 0, stay 2 frames (p_0(1) = 0, so continuing is certain), move to state 1:
    # pi_0 * p_0(2) * A_01 = 0.5 * 0.5 * 1
    assert float((start[0] + trans[0, 1] + trans[1, 3]).exp()) == pytest.approx(0.25)
    assert final.tolist()[:3] == pytest.approx([NEG, 0.0, 0.0]) or math.isinf(final[0])


# ----------------------------------------------------------------------------- errors


def test_bad_input_is_a_clear_error():
    ls, lt = torch.log(torch.tensor([0.5, 0.5])), torch.log(torch.full((2, 2), 0.5))
    with pytest.raises(InvalidParameterError, match="lag"):
        StreamDecoder(ls, lt, lag=-1)
    with pytest.raises(InvalidParameterError, match="lag"):
        StreamDecoder(ls, lt, lag=1.5)
    dec = StreamDecoder(ls, lt)
    with pytest.raises(InvalidInputError, match="at least one frame"):
        dec.push(torch.zeros(0, 2))
    with pytest.raises(InvalidInputError, match=r"\[t, 2\]"):
        dec.push(torch.zeros(3, 5))
    with pytest.raises(InvalidInputError, match="NaN"):
        dec.push(torch.tensor([[0.0, math.nan]]))
    dec.push(torch.zeros(2, 2))
    with pytest.raises(InvalidInputError, match="zero probability"):
        dec.push(torch.full((1, 2), NEG))
    dec.reset()
    dec.push(torch.zeros(2, 2))
    dec.flush()
    with pytest.raises(InvalidInputError, match="reset"):
        dec.push(torch.zeros(1, 2))
    model = he.GaussianHMM(2, 3)
    with pytest.raises(InvalidInputError, match="one stream"):
        model.stream().push(torch.zeros(2, 4, 3))
    with pytest.raises(InvalidInputError):
        model.stream().push(torch.zeros(4, 5))


def test_flush_of_an_empty_stream():
    dec = StreamDecoder(torch.zeros(1), torch.zeros(1, 1), lag=3)
    last = dec.flush()
    assert last.states.numel() == 0 and last.smoothed.shape == (0, 1)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_semi_markov_fixed_lag_keeps_its_lag(data):
    """With a lag the committed states form one segmentation no better than the offline one.
    Without right-censoring a forced decision can leave no path that ends with a complete
    segment: flush then says so (a documented limit of fixed-lag semi-Markov decoding)."""
    model, x = data.draw(hsmm_problems())
    T = x.shape[0]
    lag = data.draw(st.integers(0, 4))
    lo = model.emission_log_likelihood(x[None]).detach()
    offline = hsmm.hsmm_viterbi(*model._params(), lo, None, model.right_censored)
    dec = model.stream(lag)
    seen = committed = 0
    try:
        for n in data.draw(chunkings(T)):
            step = dec.push(x[seen:seen + n])
            seen += n
            committed += len(step.states)
            assert committed >= seen - lag
        last = dec.flush()
    except InvalidInputError:
        assert not model.right_censored or not math.isfinite(float(offline.score[0]))
        return
    assert math.isfinite(float(offline.score[0]))
    assert last.score <= float(offline.score[0]) + 1e-8


def test_exact_mode_memory_is_bounded_with_a_clear_error():
    """Two states that never leave themselves and emit alike keep both paths alive: the exact
    mode stops at its bound and says to use a lag; the lag mode decodes the same stream."""
    ls, lt = torch.log(torch.tensor([0.5, 0.5])), torch.log(torch.eye(2))
    obs = torch.zeros(50, 2)
    dec = StreamDecoder(ls, lt, max_pending=20)
    with pytest.raises(InvalidInputError, match="lag"):
        dec.push(obs)
    lagged = StreamDecoder(ls, lt, lag=5, max_pending=20)
    assert len(lagged.push(obs).states) >= 45  # the forced decision at frame 5 pruned the other path
