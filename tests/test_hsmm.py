"""Explicit-duration HMM: inference checked against brute-force enumeration of segmentations,
durations, the SemiMarkovHMM model, EM and save/load."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hmm_engine.durations import (
    GammaDuration,
    GaussianDuration,
    NonparametricDuration,
    PoissonDuration,
    make_duration,
)
from hmm_engine.emissions import MixtureGaussianEmission
from hmm_engine.errors import InvalidInputError, InvalidParameterError
from hmm_engine.inference.hsmm import (
    StateSegment as Segment,
    hsmm_forward_backward,
    hsmm_log_likelihood,
    hsmm_sample,
    hsmm_viterbi,
    log_survival,
    segments_log_prob,
)
from hmm_engine.models.semimarkov import SemiMarkovHMM

from brute import segmentations

NEG = -math.inf
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


# ----------------------------------------------------------------------------- brute force


def _segmentations(T, K):
    """Every segmentation of T frames over K states (tests/brute.py), as Segment lists."""
    for runs in segmentations(T, K):
        yield [Segment(*run) for run in runs]


def brute_force(log_obs, ls, lt, ld, censored):
    """Enumerate every segmentation of one sequence ``log_obs [T, K]`` (float64)."""
    T, K = log_obs.shape
    Dmax = ld.shape[1]
    scored = []
    for segs in _segmentations(T, K):
        lp = segments_log_prob(ls, lt, ld, log_obs, segs, censored)
        if lp > NEG:
            scored.append((lp, segs))
    out = dict(ll=NEG, post=torch.zeros(T, K, dtype=torch.float64), best=NEG, best_segs=[],
               trans=torch.zeros(K, K, dtype=torch.float64), dur=torch.zeros(K, Dmax, dtype=torch.float64),
               cens=torch.zeros(K, Dmax, dtype=torch.float64), start=torch.zeros(K, dtype=torch.float64))
    if not scored:
        return out
    ll = torch.logsumexp(torch.tensor([lp for lp, _ in scored], dtype=torch.float64), 0).item()
    out["ll"] = ll
    for lp, segs in scored:
        w = math.exp(lp - ll)
        out["start"][segs[0].state] += w
        for n, (k, s, e) in enumerate(segs):
            out["post"][s:e, k] += w
            if n > 0:
                out["trans"][segs[n - 1].state, k] += w
            if censored and n == len(segs) - 1:
                out["cens"][k, e - s - 1] += w
            else:
                out["dur"][k, e - s - 1] += w
        if lp > out["best"]:
            out["best"], out["best_segs"] = lp, segs
    return out


def random_params(draw_or_gen, K, Dmax, min_d, forbid):
    g = draw_or_gen
    ls = torch.log_softmax(torch.randn(K, generator=g, dtype=torch.float64), -1)
    logits = torch.randn(K, K, generator=g, dtype=torch.float64)
    logits.fill_diagonal_(NEG)
    if forbid and K > 2:
        logits[0, K - 1] = NEG  # a topology-style forbidden move
    lt = torch.log_softmax(logits, -1) if K > 1 else torch.full((1, 1), NEG, dtype=torch.float64)
    dl = torch.randn(K, Dmax, generator=g, dtype=torch.float64)
    dl[:, : min_d - 1] = NEG
    ld = torch.log_softmax(dl, -1)
    return ls, lt, ld


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    K=st.integers(1, 3),
    Dmax=st.integers(1, 4),
    T=st.integers(1, 6),
    min_d=st.integers(1, 2),
    censored=st.booleans(),
    forbid=st.booleans(),
    blocked=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_matches_brute_force(K, Dmax, T, min_d, censored, forbid, blocked, seed):
    min_d = min(min_d, Dmax)
    g = torch.Generator().manual_seed(seed)
    ls, lt, ld = random_params(g, K, Dmax, min_d, forbid)
    B = 2
    lengths = torch.tensor([T, int(torch.randint(1, T + 1, (1,), generator=g))])
    log_obs = torch.randn(B, T, K, generator=g, dtype=torch.float64) * 2
    if blocked:  # impossible emissions must be handled exactly too
        log_obs[0, T // 2, 0] = NEG
    log_obs[1, lengths[1]:] = float("nan")  # padding is never read

    fb = hsmm_forward_backward(ls, lt, ld, log_obs, lengths, censored)
    vit = hsmm_viterbi(ls, lt, ld, log_obs, lengths, censored)
    ll_only = hsmm_log_likelihood(ls, lt, ld, log_obs, lengths, censored)
    totals = {k: 0 for k in ("trans", "dur", "cens", "start")}
    for b in range(B):
        L = int(lengths[b])
        ref = brute_force(log_obs[b, :L], ls, lt, ld, censored)
        for key in totals:
            totals[key] = totals[key] + ref[key]
        if ref["ll"] == NEG:
            assert fb.log_likelihood[b] == NEG and ll_only[b] == NEG and vit.score[b] == NEG
            assert (fb.posteriors[b] == 0).all() and (vit.path[b] == -1).all() and vit.segments[b] == []
            continue
        assert fb.log_likelihood[b].item() == pytest.approx(ref["ll"], abs=1e-9)
        assert ll_only[b].item() == pytest.approx(ref["ll"], abs=1e-9)
        torch.testing.assert_close(fb.posteriors[b, :L], ref["post"], atol=1e-9, rtol=0)
        assert (fb.posteriors[b, L:] == 0).all()
        assert vit.score[b].item() == pytest.approx(ref["best"], abs=1e-9)
        segs = vit.segments[b]
        assert segments_log_prob(ls, lt, ld, log_obs[b, :L], segs, censored) == pytest.approx(ref["best"], abs=1e-9)
        expected_path = torch.full((T,), -1, dtype=torch.long)
        for k, s, e in segs:
            expected_path[s:e] = k
        assert torch.equal(vit.path[b], expected_path)
    torch.testing.assert_close(fb.expected_transitions, totals["trans"], atol=1e-9, rtol=0)
    torch.testing.assert_close(fb.expected_starts, totals["start"], atol=1e-9, rtol=0)
    torch.testing.assert_close(fb.censored_durations, totals["cens"], atol=1e-9, rtol=0)
    # Censored segments are imputed: observed for d frames -> true d' >= d with p(d') / S(d).
    surv = log_survival(ld).exp()
    imputed = totals["dur"].clone()
    for k in range(K):
        for d in range(Dmax):
            if totals["cens"][k, d] > 0:
                imputed[k, d:] += totals["cens"][k, d] * ld[k, d:].exp() / surv[k, d]
    torch.testing.assert_close(fb.expected_durations, imputed, atol=1e-9, rtol=0)
    # Exact zeros for impossible durations and forbidden transitions.
    assert (fb.expected_durations[:, : min_d - 1] == 0).all()
    assert (fb.expected_transitions[lt == NEG] == 0).all()


def _tiny_model(seed=0, K=3, Dmax=4, min_d=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return random_params(g, K, Dmax, min_d, forbid=True)


def test_sampling_matches_enumerated_distribution():
    """FFBS draws each segmentation of a fixed length with its exact probability."""
    ls, lt, ld = _tiny_model(seed=3, K=2, Dmax=3)
    T, N = 4, 6000
    log_obs = torch.zeros(1, T, 2, dtype=torch.float64)
    probs = {}
    for segs in _segmentations(T, 2):
        lp = segments_log_prob(ls, lt, ld, log_obs[0], segs)
        if lp > NEG:
            probs[tuple(segs)] = lp
    norm = torch.logsumexp(torch.tensor(list(probs.values())), 0).item()
    drawn = hsmm_sample(ls, lt, ld, [T] * N, generator=torch.Generator().manual_seed(0))
    freq = {}
    for segs in drawn.segments:
        freq[tuple(segs)] = freq.get(tuple(segs), 0) + 1
    assert set(freq) <= set(probs)
    for segs, lp in probs.items():
        p = math.exp(lp - norm)
        assert freq.get(segs, 0) / N == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / N) + 1e-3)
    for b in range(3):
        path = torch.full((T,), -1, dtype=torch.long)
        for k, s, e in drawn.segments[b]:
            path[s:e] = k
        assert torch.equal(drawn.states[b], path)


def test_posterior_sampling_respects_observations():
    ls, lt, ld = random_params(torch.Generator().manual_seed(1), 3, 5, 2, forbid=False)
    log_obs = torch.full((4, 12, 3), -50.0, dtype=torch.float64)
    log_obs[:, :5, 1] = 0.0
    log_obs[:, 5:10, 0] = 0.0
    log_obs[:, 10:, 2] = 0.0
    drawn = hsmm_sample(ls, lt, ld, [12, 12, 9, 7], log_obs=log_obs, right_censored=True,
                        generator=torch.Generator().manual_seed(1))
    for b, L in enumerate([12, 12, 9, 7]):
        assert (drawn.states[b, L:] == -1).all()
        segs = drawn.segments[b]
        assert segs[0] == (1, 0, 5)  # the observations pin the first segment down
        assert all(2 <= e - s <= 5 for _, s, e in segs[:-1])
        assert 1 <= segs[-1].end - segs[-1].start <= 5  # the censored last one may be cut short


def test_ragged_batch_equals_one_by_one():
    g = torch.Generator().manual_seed(5)
    K, Dmax = 4, 8
    ls, lt, ld = random_params(g, K, Dmax, 2, forbid=True)
    lengths = torch.tensor([50, 17, 33])
    log_obs = torch.randn(3, 50, K, generator=g, dtype=torch.float64) * 3
    for censored in (False, True):
        fb = hsmm_forward_backward(ls, lt, ld, log_obs, lengths, censored)
        vit = hsmm_viterbi(ls, lt, ld, log_obs, lengths, censored)
        stats = [0, 0, 0]
        for b in range(3):
            L = int(lengths[b])
            one = hsmm_forward_backward(ls, lt, ld, log_obs[b : b + 1, :L], None, censored)
            v1 = hsmm_viterbi(ls, lt, ld, log_obs[b : b + 1, :L], None, censored)
            torch.testing.assert_close(fb.posteriors[b, :L], one.posteriors[0])
            torch.testing.assert_close(fb.log_likelihood[b], one.log_likelihood[0])
            assert vit.segments[b] == v1.segments[0]
            torch.testing.assert_close(vit.score[b], v1.score[0])
            stats = [s + t for s, t in zip(stats, (one.expected_transitions, one.expected_durations, one.expected_starts))]
        torch.testing.assert_close(fb.expected_transitions, stats[0])
        torch.testing.assert_close(fb.expected_durations, stats[1])
        torch.testing.assert_close(fb.expected_starts, stats[2])


@pytest.mark.slow
def test_long_sequence_float32_matches_float64():
    """T = 20,000: the float32 run stays finite and agrees with float64 (scaled recursions)."""
    g = torch.Generator().manual_seed(7)
    K, Dmax = 3, 20
    ls, lt, ld = random_params(g, K, Dmax, 1, forbid=False)
    log_obs = torch.randn(1, 20000, K, generator=g, dtype=torch.float64) * 3 - 40.0
    r64 = hsmm_forward_backward(ls, lt, ld, log_obs)
    r32 = hsmm_forward_backward(ls.float(), lt.float(), ld.float(), log_obs.float())
    assert torch.isfinite(r32.log_likelihood).all() and torch.isfinite(r32.posteriors).all()
    rel = ((r32.log_likelihood.double() - r64.log_likelihood) / r64.log_likelihood).abs()
    assert rel.item() < 1e-6
    assert (r32.posteriors.double() - r64.posteriors).abs().max() < 1e-3
    torch.testing.assert_close(r32.expected_durations.double(), r64.expected_durations, rtol=1e-3, atol=1e-2)
    v64 = hsmm_viterbi(ls, lt, ld, log_obs)
    v32 = hsmm_viterbi(ls.float(), lt.float(), ld.float(), log_obs.float())
    assert (v32.score.double() - v64.score).abs().item() < 1e-6 * v64.score.abs().item()
    assert (v32.path != v64.path).float().mean() < 1e-3


@pytest.mark.parametrize("device", DEVICES)
def test_device_and_dtype_agreement(device):
    g = torch.Generator().manual_seed(11)
    K, Dmax = 3, 6
    ls, lt, ld = random_params(g, K, Dmax, 1, forbid=True)
    log_obs = torch.randn(2, 30, K, generator=g, dtype=torch.float64)
    lengths = torch.tensor([30, 21])
    ref = hsmm_forward_backward(ls, lt, ld, log_obs, lengths, True)
    args = [t.to(device).float() for t in (ls, lt, ld, log_obs)]
    got = hsmm_forward_backward(*args, lengths.to(device), True)
    assert got.posteriors.device.type == device and got.posteriors.dtype == torch.float32
    torch.testing.assert_close(got.posteriors.cpu().double(), ref.posteriors, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.log_likelihood.cpu().double(), ref.log_likelihood, atol=1e-4, rtol=1e-6)
    v = hsmm_viterbi(*args, lengths.to(device), True)
    assert v.path.device.type == device
    assert v.segments == hsmm_viterbi(ls, lt, ld, log_obs, lengths, True).segments


def test_input_validation():
    ls, lt, ld = _tiny_model()
    x = torch.zeros(1, 5, 3, dtype=torch.float64)
    with pytest.raises(InvalidInputError):
        hsmm_forward_backward(ls, lt, ld, x[0])
    with pytest.raises(InvalidInputError):
        hsmm_forward_backward(ls, lt, ld, x, torch.tensor([6]))
    with pytest.raises(InvalidParameterError):
        hsmm_forward_backward(ls, lt, ld[:2], x)
    bad = x.clone()
    bad[0, 2, 1] = float("nan")
    with pytest.raises(InvalidInputError):
        hsmm_viterbi(ls, lt, ld, bad)
    with pytest.raises(InvalidInputError):  # min duration 5 cannot fill 3 frames
        dl = torch.full((3, 6), NEG, dtype=torch.float64)
        dl[:, 4:] = math.log(0.5)
        hsmm_sample(ls, lt, dl, [3])


# ----------------------------------------------------------------------------- durations


@pytest.mark.parametrize("kind", ["poisson", "gamma", "gaussian", "nonparametric"])
def test_duration_support_and_mstep(kind):
    true = make_duration(kind, 3, 40, 3, dtype=torch.float64)
    if kind == "poisson":
        true.rate = torch.tensor([2.0, 8.0, 20.0])
    elif kind == "gamma":
        true.set_parameters(torch.tensor([2.0, 5.0, 1.5]), torch.tensor([0.5, 0.4, 0.15]))
    elif kind == "gaussian":
        true.set_parameters(torch.tensor([5.0, 20.0, 30.0]), torch.tensor([1.0, 4.0, 6.0]))
    else:
        raw = torch.rand(3, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * (torch.arange(1, 41) >= 3)
        true.set_probs(raw / raw.sum(-1, keepdim=True))
    pmf = true.pmf()
    assert pmf.shape == (3, 40)
    assert (pmf[:, :2] == 0).all() and torch.allclose(pmf.sum(-1), torch.ones(3, dtype=torch.float64))
    g = torch.Generator().manual_seed(0)
    draws = torch.multinomial(pmf, 5000, replacement=True, generator=g)
    counts = torch.zeros(3, 40, dtype=torch.float64).scatter_add_(1, draws, torch.ones_like(draws, dtype=torch.float64))
    est = make_duration(kind, 3, 40, 3)
    est.m_step(counts)
    torch.testing.assert_close(est.mean().double(), true.mean(), rtol=0.03, atol=0.1)
    assert (est.pmf()[:, :2] == 0).all()
    free = {"poisson": 3, "gamma": 6, "gaussian": 6, "nonparametric": 3 * 37}[kind]
    assert est.num_free_parameters() == free


def test_duration_mstep_never_decreases_objective():
    torch.manual_seed(0)
    for cls in (PoissonDuration, GammaDuration, GaussianDuration):
        dist = cls(2, 12, 2, dtype=torch.float64)
        for _ in range(5):
            counts = torch.rand(2, 12, dtype=torch.float64) * (torch.arange(1, 13) >= 2)
            counts[:, -1] *= 20  # lots of mass at Dmax (truncation matters)
            before = (counts * dist.log_pmf().nan_to_num(neginf=0.0)).sum()
            dist.m_step(counts)
            after = (counts * dist.log_pmf().nan_to_num(neginf=0.0)).sum()
            assert after >= before - 1e-9


def test_duration_validation():
    with pytest.raises(InvalidParameterError):
        PoissonDuration(2, 3, 5)
    with pytest.raises(InvalidParameterError):
        make_duration("weibull", 2, 10)
    with pytest.raises(InvalidParameterError):
        NonparametricDuration(2, 4, 2, probs=torch.full((2, 4), 0.25))


# ----------------------------------------------------------------------------- model


def _true_model(duration="poisson", censored=False, topology="ergodic", dtype=torch.float32):
    model = SemiMarkovHMM(3, 2, max_duration=30, duration=duration, min_duration=2, topology=topology,
                          right_censored=censored, dtype=dtype)
    model.means = torch.tensor([[0.0, 0.0], [3.0, 3.0], [-3.0, 3.0]])
    model.covars = torch.full((3, 2), 0.5)
    if duration == "poisson":
        model.duration.rate = torch.tensor([4.0, 8.0, 12.0])
    if topology == "ergodic":
        model.transmat = torch.tensor([[0.0, 0.5, 0.5], [0.7, 0.0, 0.3], [0.4, 0.6, 0.0]])
    return model


def test_model_recovers_known_durations():
    truth = _true_model()
    x, states, segments = truth.sample_segments(30, 200, seed=1)
    assert x.shape == (30, 200, 2) and states.shape == (30, 200)
    for segs in segments:
        assert segs[0].start == 0 and segs[-1].end == 200
        assert all(2 <= e - s <= 30 for _, s, e in segs)
    model = SemiMarkovHMM(3, 2, max_duration=30, duration="poisson", min_duration=2)
    history = model.fit(x, max_iter=30, seed=0)
    # Match learnt states to true ones by their means.
    order = torch.cdist(truth.means, model.means).argmin(-1)
    true_mean = truth.mean_durations
    learnt = model.mean_durations[order]
    torch.testing.assert_close(learnt, true_mean, rtol=0.1, atol=0.0)
    torch.testing.assert_close(model.transmat[order][:, order], truth.transmat, atol=0.1, rtol=0)
    assert (torch.diagonal(model.transmat) == 0).all()
    assert all(b >= a - 1e-4 * abs(a) for a, b in zip(history, history[1:]))
    path, score = model.viterbi_decode(x[:2])
    assert (path != -1).all() and torch.isfinite(score).all()
    acc = (path == order[states[:2]]).float().mean()
    assert acc > 0.9


@pytest.mark.parametrize("duration", ["poisson", "gamma", "gaussian", "nonparametric"])
@pytest.mark.parametrize("censored", [False, True])
def test_em_log_likelihood_non_decreasing(duration, censored):
    truth = _true_model(censored=censored)
    x, _ = truth.sample(6, 120, seed=2)
    kwargs = {"pseudocount": 0.0} if duration == "nonparametric" else {}
    model = SemiMarkovHMM(3, 2, max_duration=30, duration=duration, min_duration=2, right_censored=censored,
                          duration_kwargs=kwargs, dtype=torch.float64)
    history = model.fit(x.double(), max_iter=8, tol=0.0, seed=0)
    assert len(history) >= 3
    for a, b in zip(history, history[1:]):
        assert b >= a - 1e-6 * abs(a)


def test_left_to_right_forbidden_transitions_stay_zero():
    model = SemiMarkovHMM(4, 2, max_duration=15, duration="gamma", topology="left-to-right")
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(10, 8, 2, generator=g) + 3 * k for k in range(4)], dim=1)  # [10, 32, 2]
    model.fit(x, max_iter=5, seed=0)
    allowed = torch.zeros(4, 4, dtype=torch.bool)
    allowed[0, 1] = allowed[1, 2] = allowed[2, 3] = True
    assert (model.transmat[~allowed] == 0).all()
    assert torch.allclose(model.transmat[:3].sum(-1), torch.ones(3))
    assert (model.transmat[3] == 0).all()  # final state: no way out
    assert torch.equal(model.startprob, torch.tensor([1.0, 0.0, 0.0, 0.0]))
    segs = model.viterbi_segments(x[:1])[0]
    assert [k for k, _, _ in segs] == [0, 1, 2, 3]
    assert [s for _, s, _ in segs] == [0, 8, 16, 24]
    # 4 states x 15 frames cannot cover 70 frames without censoring.
    with pytest.raises(InvalidInputError, match="cannot be segmented"):
        model.forward_backward(torch.zeros(70, 2))
    assert model.score(torch.zeros(70, 2)).item() == NEG


def test_model_validation():
    with pytest.raises(InvalidParameterError):
        SemiMarkovHMM(3, 2, max_duration=2, min_duration=3)
    with pytest.raises(InvalidParameterError):
        SemiMarkovHMM(3, 2, max_duration=5, duration="lognormal")
    model = SemiMarkovHMM(3, 2, max_duration=10, min_duration=4)
    with pytest.raises(InvalidInputError, match="shorter than min_duration"):
        model.forward_backward(torch.zeros(3, 2))
    model.right_censored = True  # then 3 frames are one segment cut by the end
    post, ll = model.forward_backward(torch.zeros(3, 2))
    assert torch.isfinite(ll).all() and torch.allclose(post.sum(-1), torch.ones(1, 3))
    model.right_censored = False
    with pytest.raises(InvalidParameterError, match="self-loops"):
        model.transmat = torch.full((3, 3), 1 / 3)
    with pytest.raises(InvalidInputError):
        model.score(torch.full((8, 2), float("nan")))


def test_model_with_mixture_emission_and_summable_stats():
    emission = MixtureGaussianEmission(2, 2, 2)
    model = SemiMarkovHMM(2, max_duration=10, duration="nonparametric", emission=emission)
    truth = _true_model()
    x, _ = truth.sample(4, 60, seed=4)
    model.fit(x, max_iter=2, seed=0)
    xb, lb, _ = model.prepare(x)
    whole = model.accumulate(xb, lb)
    halves = [model.accumulate(xb[i : i + 2], lb[i : i + 2]) for i in (0, 2)]
    for key, value in whole.items():
        torch.testing.assert_close(value, halves[0][key] + halves[1][key], rtol=1e-5, atol=1e-4)
    # start: 2 - 1; transitions: one allowed move per row -> 0; durations: 2 x (10 - 1)
    assert model.num_free_parameters() == 1 + 0 + 2 * 9 + emission.num_free_parameters()


def test_save_load_round_trip(tmp_path):
    from hmm_engine.serialization import load, save

    model = _true_model(duration="gamma", censored=True)
    model.fit(model.sample(3, 50, seed=0)[0], max_iter=2)
    path = save(model, tmp_path / "hsmm.pt")
    again = load(path)
    assert isinstance(again, SemiMarkovHMM) and again.right_censored
    x, _ = model.sample(2, 40, seed=1)
    torch.testing.assert_close(again.score(x), model.score(x))
    torch.testing.assert_close(again.durations, model.durations)
    assert again.get_config() == model.get_config()


def test_bic_aic_and_parameter_count():
    model = _true_model()
    x, _ = model.sample(2, 50, seed=0)
    p = model.num_free_parameters()
    assert p == 2 + 3 * 1 + 3 + 3 * 2 * 2  # start, rows (2 allowed - 1), Poisson rates, diag Gaussians
    ll = float(model.score(x).double().sum())
    assert model.bic(x) == pytest.approx(-2 * ll + p * math.log(100), rel=1e-6)
    assert model.aic(x) == pytest.approx(-2 * ll + 2 * p, rel=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_model_on_device_matches_cpu(device):
    import copy

    model = _true_model(censored=True)
    x, _ = model.sample(3, 60, seed=0)
    post, ll = model.forward_backward(x, torch.tensor([60, 45, 31]))
    segs = model.viterbi_segments(x, torch.tensor([60, 45, 31]))
    moved = copy.deepcopy(model).to(device)
    post_d, ll_d = moved.forward_backward(x.to(device), torch.tensor([60, 45, 31]))
    assert post_d.device.type == device
    torch.testing.assert_close(post_d.cpu(), post, atol=1e-4, rtol=0)
    torch.testing.assert_close(ll_d.cpu(), ll, atol=1e-3, rtol=1e-5)
    assert moved.viterbi_segments(x.to(device), torch.tensor([60, 45, 31])) == segs
    obs, states = moved.sample(2, 20, seed=3)
    assert obs.device.type == device and states.shape == (2, 20)


def test_fit_em_on_batches_equals_one_batch():
    from hmm_engine.training.em import fit_em

    truth = _true_model()
    x, _ = truth.sample(4, 50, seed=6)
    lengths = torch.tensor([50, 41, 50, 33])
    one = SemiMarkovHMM(3, 2, max_duration=30, duration="gamma", min_duration=2, topology="left-to-right", dtype=torch.float64)
    two = SemiMarkovHMM(3, 2, max_duration=30, duration="gamma", min_duration=2, topology="left-to-right", dtype=torch.float64)
    xb = x.double()
    h1 = fit_em(one, xb, lengths, max_iter=4, tol=0.0)
    h2 = fit_em(two, batches=[(xb[:2], lengths[:2]), (xb[2:], lengths[2:])], max_iter=4, tol=0.0)
    assert h1 == pytest.approx(h2, rel=1e-9)
    torch.testing.assert_close(one.durations, two.durations)
    torch.testing.assert_close(one.means, two.means)
