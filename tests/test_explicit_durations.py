"""Explicit-duration (semi-Markov) chains for alignment: checked against brute-force
enumeration of every segmentation and against the HMM chain they generalise."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from brute import segmentations
from hmm_engine.alignment import MODEL_FILE, align_corpus, align_utterance, prepare_transcript, viterbi_segments
from hmm_engine.alignment.phone_models import PhoneModels
from hmm_engine.errors import InvalidInputError, InvalidParameterError
from hmm_engine.frontend.features import FeatureConfig, Features
from hmm_engine.inference.chain import (
    Chain,
    chain_forward_backward,
    chain_segment_forward_backward,
    chain_segment_viterbi,
    chain_viterbi,
)

SYNTH = Path(__file__).parent / "data" / "synth"


def _segment_chain(rng, S, skips, optional_start):
    """A semi-Markov chain: certain steps except the skip choices; random log_final."""
    nxt = np.zeros(S)
    nxt[-1] = -np.inf
    src, dst, w = [], [], []
    for s, d in skips:
        q = rng.uniform(0.2, 0.8)
        src.append(s)
        dst.append(d)
        w.append(math.log(q))
        nxt[s] = math.log1p(-q)
    start = np.full(S, -np.inf)
    start[0] = 0.0
    if optional_start:
        start[0], start[1] = math.log(0.6), math.log(0.4)
    final = np.full(S, -np.inf)
    final[-1], final[-2] = 0.0, math.log(0.5)
    return Chain.from_arrays(start, final, np.full(S, -np.inf), nxt, src, dst, w)


def _enumerate(chain, log_obs, log_dur, geo):
    """Every (position path, score) the semi-Markov chain allows: the segmentations of
    tests/brute.py along the chain's arcs, scored here."""
    T, S = log_obs.shape
    arcs = {s: {s + 1: chain.log_next[s]} if s + 1 < S and np.isfinite(chain.log_next[s]) else {} for s in range(S)}
    for s, d, w in zip(chain.skip_src, chain.skip_dst, chain.log_skip):
        arcs[int(s)][int(d)] = float(w)

    def dur(s, d):
        if not np.isnan(geo[s]):
            return (d - 1) * geo[s] + math.log1p(-math.exp(geo[s]))
        return log_dur[s, d - 1] if d <= log_dur.shape[1] else -np.inf

    out = []
    first = [s for s in range(S) if np.isfinite(chain.log_start[s])]
    for runs in segmentations(T, S, first=first, successors={s: list(arcs[s]) for s in range(S)}):
        score = chain.log_start[runs[0][0]] + chain.log_final[runs[-1][0]]
        score += sum(dur(s, e - a) + log_obs[a:e, s].sum() for s, a, e in runs)
        score += sum(arcs[s][nxt] for (s, _, _), (nxt, _, _) in zip(runs[:-1], runs[1:]))
        if np.isfinite(score):
            out.append(([s for s, a, e in runs for _ in range(a, e)], score))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_segment_chain_matches_brute_force(seed):
    """Log-likelihood, frame posteriors, expected visit lengths, stay/leave counts, step and
    skip counts and the Viterbi path all equal brute-force enumeration, with explicit
    (truncated, random) duration pmfs on some positions and geometric ones on others."""
    rng = np.random.default_rng(seed)
    S, T, Dmax = 5, 9, 4
    chain = _segment_chain(rng, S, [(1, 3)], optional_start=bool(seed % 2))
    log_obs = rng.normal(0, 1.5, (T, S))
    pmf = rng.dirichlet(np.ones(Dmax), S)
    pmf[:, 3] = 0.0 if seed == 0 else pmf[:, 3]  # a shorter support on some runs
    with np.errstate(divide="ignore"):
        log_dur = np.log(pmf / pmf.sum(1, keepdims=True))
    geo = np.where(np.arange(S) == 2 * (seed % 2), math.log(0.7), np.nan)  # position 0 or 2 geometric
    paths = _enumerate(chain, log_obs, log_dur, geo)
    scores = np.array([sc for _, sc in paths])
    log_z = np.logaddexp.reduce(scores)
    probs = np.exp(scores - log_z)
    gamma = np.zeros((T, S))
    dur_count = np.zeros((S, Dmax))
    stay = np.zeros(S)
    leave = np.zeros(S)
    skip = 0.0
    for (path, _), p in zip(paths, probs):
        gamma[np.arange(T), path] += p
        runs = [(k, len(list(g))) for k, g in itertools.groupby(path)]
        for k, n in runs:
            if np.isnan(geo[k]):
                dur_count[k, n - 1] += p
            stay[k] += (n - 1) * p
            leave[k] += p
        skip += p * sum(1 for (a, _), (b, _) in zip(runs[:-1], runs[1:]) if (a, b) == (1, 3))
    post = chain_segment_forward_backward(chain, log_dur, geo, log_obs)
    assert post.log_likelihood == pytest.approx(log_z, abs=1e-10)
    np.testing.assert_allclose(post.gamma, gamma, atol=1e-10)
    np.testing.assert_allclose(post.duration_count, dur_count, atol=1e-10)
    np.testing.assert_allclose(post.stay_count, stay, atol=1e-10)
    np.testing.assert_allclose(post.leave_count, leave, atol=1e-10)
    np.testing.assert_allclose(post.skip_count, [skip], atol=1e-10)
    best_path, best_score = paths[int(np.argmax(scores))]
    path, score = chain_segment_viterbi(chain, log_dur, geo, log_obs)
    assert score == pytest.approx(best_score, abs=1e-10)
    np.testing.assert_array_equal(path, best_path)


@pytest.mark.parametrize("as_geometric", [False, True])
def test_geometric_durations_reproduce_the_hmm_chain(as_geometric):
    """A chain whose durations are the geometric laws of HMM self-loops (given as full pmfs
    over 1..T or as ``log_geometric``) has the HMM chain's posteriors, counts and Viterbi
    path; log-likelihoods differ by log(1 - a) of the final state (an HMM path ends inside it)."""
    rng = np.random.default_rng(5)
    S, T = 6, 30
    stay = np.log(rng.uniform(0.3, 0.9, S))
    leave = np.log1p(-np.exp(stay))
    q = 0.35
    nxt = leave.copy()
    nxt[-1] = -np.inf
    nxt[1] = leave[1] + math.log1p(-q)
    start = np.full(S, -np.inf)
    start[0] = 0.0
    final = np.full(S, -np.inf)
    final[-1] = 0.0
    hmm_chain = Chain.from_arrays(start, final, stay, nxt, [1], [3], [leave[1] + math.log(q)])
    seg_next = np.zeros(S)
    seg_next[-1] = -np.inf
    seg_next[1] = math.log1p(-q)
    seg_chain = Chain.from_arrays(start, final, np.full(S, -np.inf), seg_next, [1], [3], [math.log(q)])
    log_obs = rng.normal(0, 2, (T, S))
    d = np.arange(1, T + 1)
    log_dur = (d[None] - 1) * stay[:, None] + leave[:, None]
    geo = stay if as_geometric else None
    ref = chain_forward_backward(hmm_chain, log_obs)
    post = chain_segment_forward_backward(seg_chain, log_dur[:, :3] if as_geometric else log_dur, geo, log_obs)
    assert post.log_likelihood == pytest.approx(ref.log_likelihood + leave[-1], abs=1e-9)
    np.testing.assert_allclose(post.gamma, ref.gamma, atol=1e-10)
    np.testing.assert_allclose(post.stay_count, ref.stay_count, atol=1e-9)
    np.testing.assert_allclose(post.next_count[:-1], ref.next_count[:-1], atol=1e-9)
    np.testing.assert_allclose(post.skip_count, ref.skip_count, atol=1e-9)
    path, _ = chain_segment_viterbi(seg_chain, log_dur, geo, log_obs)
    np.testing.assert_array_equal(path, chain_viterbi(hmm_chain, log_obs)[0])


def test_segment_chain_errors():
    chain = _segment_chain(np.random.default_rng(0), 4, [], False)
    with pytest.raises(InvalidInputError, match="no segmentation"):
        chain_segment_viterbi(chain, np.log(np.full((4, 2), 0.5)), None, np.zeros((10, 4)))  # at most 8 frames
    with pytest.raises(InvalidInputError, match="log_durations must be"):
        chain_segment_forward_backward(chain, np.zeros((3, 2)), None, np.zeros((5, 4)))
    with pytest.raises(InvalidInputError, match="log_geometric"):
        chain_segment_forward_backward(chain, np.zeros((4, 2)), [0.0, np.nan, np.nan, np.nan], np.zeros((5, 4)))


def _piecewise_features(lengths, dim=4, noise=0.3, seed=0):
    """Frames of consecutive phones with distinct means (one mean per phone symbol)."""
    rng = np.random.default_rng(seed)
    means = {}
    rows = []
    for label, n in lengths:
        means.setdefault(label, rng.normal(0, 3, dim))
        rows.append(means[label] + rng.normal(0, noise, (n, dim)))
    x = torch.tensor(np.concatenate(rows), dtype=torch.float32)
    return Features(x, 0.01, FeatureConfig(), x.shape[0] * 0.01)


def test_single_utterance_with_gamma_durations_recovers_boundaries():
    """Single-utterance training with explicit gamma durations finds the exact boundaries of
    well-separated synthetic phones (repeated phone 'a' tied), and EM with explicit durations
    never lowers the log-likelihood (no annealing)."""
    lengths = [("sil", 12), ("a", 9), ("b", 14), ("a", 7), ("c", 11), ("sil", 10)]
    feats = _piecewise_features(lengths)
    result = align_utterance(feats, phones="a b a c", duration_type="gamma", anneal=None, iterations=10,
                             duration_iterations=6, covariance_type="diag")
    assert result.models.durations is not None and result.models.duration_type == "gamma"
    edges = np.cumsum([n for _, n in lengths])[:-1] * 0.01
    got = [s.start for s in result.phones[1:]]
    np.testing.assert_allclose(got, edges, atol=1e-9)
    assert [s.label for s in result.phones] == [label for label, _ in lengths]
    explicit = result.history[10:]
    assert len(explicit) == 6
    assert all(b >= a - 1e-6 for a, b in zip(explicit, explicit[1:]))
    # The speech-phone duration law (tied: one per state position) has its mean near the data's.
    mean = float(result.models.durations.mean()[0])
    assert 8.0 < mean < 12.0


def test_explicit_duration_models_survive_save_load(tmp_path):
    lengths = [("sil", 8), ("a", 10), ("b", 12), ("sil", 9)]
    feats = _piecewise_features(lengths, seed=1)
    result = align_utterance(feats, phones="a b", duration_type="poisson", iterations=6, covariance_type="diag")
    path = tmp_path / "m.pt"
    result.models.save(path)
    loaded = PhoneModels.load(path)
    assert loaded.duration_type == "poisson" and loaded.max_duration == result.models.max_duration
    torch.testing.assert_close(loaded.durations.log_pmf(), result.models.durations.log_pmf())
    transcript = prepare_transcript(phones="a b")
    a = viterbi_segments(result.models, feats, transcript)
    b = viterbi_segments(loaded, feats, transcript)
    assert [(s.label, s.start, s.end) for s in a.phones] == [(s.label, s.start, s.end) for s in b.phones]
    assert a.log_likelihood == pytest.approx(b.log_likelihood, abs=1e-9)


def test_duration_option_errors():
    with pytest.raises(InvalidParameterError, match="duration_type"):
        PhoneModels(["a", "sil"], duration_type="weibull")
    with pytest.raises(InvalidParameterError, match="max_duration"):
        PhoneModels(["a", "sil"], duration_type="gamma", max_duration=0)
    # A phone can last at most max_duration frames per state: too long an utterance for the
    # mandatory phones is a clear error, not a silent failure.
    feats = _piecewise_features([("a", 40)])
    with pytest.raises(InvalidInputError, match="no segmentation"):
        align_utterance(feats, phones="a", edge_silence="never", duration_type="gamma", max_duration=10,
                        iterations=2, covariance_type="diag")


def test_corpus_mode_with_explicit_durations(tmp_path):
    """Corpus training with gamma durations on the committed sample: every file aligned,
    the models saved with their durations, accuracy no worse than the sample test's floor."""
    from hmm_engine.alignment.metrics import compare_tiers, pool_comparisons
    from hmm_engine.alignment.textgrids import read_textgrid

    report = align_corpus(SYNTH, tmp_path, phones=True, transcript_suffix=".phones.lab", iterations=20,
                          states_per_phone=3, show_progress=False, report=lambda line: None,
                          duration_type="gamma", duration_iterations=3)
    assert sorted(report.aligned) == sorted(p.stem for p in SYNTH.glob("*.wav"))
    models = PhoneModels.load(tmp_path / MODEL_FILE)
    assert models.duration_type == "gamma" and models.durations is not None
    comparisons = [compare_tiers(read_textgrid(SYNTH / f"{n}.TextGrid", tier="phones")["phones"],
                                 read_textgrid(tmp_path / f"{n}.TextGrid", tier="phones")["phones"])
                   for n in report.aligned]
    pooled = pool_comparisons(comparisons)
    assert pooled.percent_within(50) >= 50.0
