"""Analytic gradients of the log-likelihood: gradcheck (finite differences) on small float64
models, and agreement with autograd through the time loop on random ones; models as modules
(``model(x, lengths)``, checkpointing, torch.compile, DDP across two processes)."""

from __future__ import annotations

import math
import os

import pytest
import torch
from torch.autograd import gradcheck

import hmm_engine as he
from hmm_engine.inference import hmm as inf
from hmm_engine.inference import hsmm

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


def _random_hmm(K, seed, sparse=False, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    log_start = torch.log_softmax(torch.randn(K, generator=g, dtype=dtype), -1)
    logits = torch.randn(K, K, generator=g, dtype=dtype)
    if sparse:  # left-to-right with a skip: forbidden moves are exactly -inf
        i = torch.arange(K)
        allowed = (i[None, :] >= i[:, None]) & (i[None, :] <= i[:, None] + 2)
        logits = logits.masked_fill(~allowed, -math.inf)
        log_start = torch.full((K,), -math.inf, dtype=dtype)
        log_start[0] = 0.0
    return log_start, torch.log_softmax(logits, -1)


# --------------------------------------------------------------------------- HMM


@pytest.mark.parametrize("backend", ["kernel", "torch"])
@pytest.mark.parametrize("sparse", [False, True])
def test_hmm_gradcheck(backend, sparse):
    K = 3
    ls, lt = _random_hmm(K, 0, sparse)
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(3, 6, K, generator=g, dtype=torch.float64)
    lengths = torch.tensor([6, 4, 1])
    # Differentiate w.r.t. the finite entries only (finite differences of -inf are meaningless).
    lt_mask = torch.isfinite(lt)
    ls_mask = torch.isfinite(ls)

    def f(ls_free, lt_free, obs):
        s = torch.full_like(ls, -math.inf).masked_scatter(ls_mask, ls_free)
        t = torch.full_like(lt, -math.inf).masked_scatter(lt_mask, lt_free)
        return inf.log_likelihood(s, t, obs, lengths, backend=backend)

    args = (ls[ls_mask].clone().requires_grad_(), lt[lt_mask].clone().requires_grad_(), obs.requires_grad_())
    assert gradcheck(f, args, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_hmm_analytic_matches_autograd_through_the_loop(seed):
    # Dense models only: with -inf starts or moves, autograd through the loop's logsumexp
    # gives NaN (exp(-inf - -inf)) where the analytic gradient is exact (gradcheck above).
    K, B, T = 5, 3, 40
    ls, lt = _random_hmm(K, seed)
    g = torch.Generator().manual_seed(100 + seed)
    obs = 3.0 * torch.randn(B, T, K, generator=g, dtype=torch.float64)
    lengths = torch.tensor([T, 17, 3])
    w = torch.randn(B, generator=g, dtype=torch.float64)  # any output gradient, negative too

    def grads(fn):
        a, b, c = (t.clone().requires_grad_() for t in (ls, lt, obs))
        (fn(a, b, c) * w).sum().backward()
        return [t.grad.nan_to_num(0.0) for t in (a, b, c)]

    analytic = grads(lambda a, b, c: inf.log_likelihood(a, b, c, lengths))
    # Autograd through the torch recursion (the old way), as the reference.
    looped = grads(lambda a, b, c: inf.forward_normalized(a, b, c, lengths, backend="torch").log_norm.sum(1))
    for x, y in zip(analytic, looped):
        torch.testing.assert_close(x, y, atol=1e-9, rtol=1e-7)
    # Padding frames get exactly zero gradient.
    assert (analytic[2][1, 17:] == 0).all() and (analytic[2][2, 3:] == 0).all()


def test_hmm_gradient_values_are_the_baum_welch_statistics():
    K = 4
    ls, lt = _random_hmm(K, 3)
    obs = torch.randn(2, 30, K, dtype=torch.float64)
    a, b, c = (t.clone().requires_grad_() for t in (ls, lt, obs))
    inf.log_likelihood(a, b, c).sum().backward()
    fb = inf.forward_backward(ls, lt, obs)
    torch.testing.assert_close(c.grad, fb.posteriors)
    torch.testing.assert_close(a.grad, fb.posteriors[:, 0].sum(0))
    counts = inf.transition_counts(lt, obs, fb.log_alpha_hat, fb.log_beta_hat).sum(0)
    torch.testing.assert_close(b.grad, counts)
    assert b.grad.sum().item() == pytest.approx(2 * 29)  # one transition per frame pair


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_model_gradients_match_autograd_through_the_loop(dtype):
    torch.manual_seed(0)
    model = he.GaussianHMM(4, 3, dtype=dtype)
    with torch.no_grad():
        model.emission.means_param.normal_()
    x = torch.randn(2, 25, 3, dtype=dtype)
    lengths = torch.tensor([25, 11])
    model(x, lengths).sum().backward()
    analytic = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    log_obs = model.emission_log_likelihood(x)
    inf.forward_normalized(model.log_startprob(), model.log_transmat(), log_obs, lengths, backend="torch").log_norm.sum().backward()
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else dict(atol=1e-9, rtol=1e-8)
    for name, p in model.named_parameters():
        torch.testing.assert_close(analytic[name].nan_to_num(0.0), p.grad.nan_to_num(0.0).to(dtype), **tol, msg=name)


def test_impossible_sequence_has_zero_gradient_not_nan():
    model = he.CategoricalHMM(2, 3, dtype=torch.float64)
    model.emissionprob = [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]]  # symbol 2 never emitted
    x = torch.tensor([[0, 1, 2, 0], [0, 1, 1, 0]])
    ll = model(x)
    assert ll[0].item() == -math.inf and math.isfinite(ll[1].item())
    ll[1].backward()
    assert all(torch.isfinite(p.grad.nan_to_num(posinf=1.0, neginf=1.0)).all() for p in model.parameters())
    assert not any(torch.isnan(p.grad).any() for p in model.parameters())


def test_long_sequence_gradient_runs_in_bounded_memory():
    """The old autograd-through-the-loop graph grew with T (3.3 GB at T=1e5, K=64);
    the analytic backward keeps only O(T K) arrays. Timings are in bench_gradients.py."""
    K, T = 16, 20000
    ls, lt = _random_hmm(K, 0, dtype=torch.float32)
    obs = torch.randn(1, T, K).requires_grad_()
    ll = inf.log_likelihood(ls, lt, obs)
    ll.sum().backward()
    torch.testing.assert_close(obs.grad.sum(-1), torch.ones(1, T))


# --------------------------------------------------------------------------- semi-Markov


def _random_hsmm(K, dmax, seed, min_duration=1):
    g = torch.Generator().manual_seed(seed)
    ls = torch.log_softmax(torch.randn(K, generator=g, dtype=torch.float64), -1)
    lt = torch.log_softmax(torch.randn(K, K, generator=g, dtype=torch.float64).fill_diagonal_(-math.inf), -1)
    ld = torch.randn(K, dmax, generator=g, dtype=torch.float64)
    ld[:, : min_duration - 1] = -math.inf
    return ls, lt, torch.log_softmax(ld, -1)


@pytest.mark.parametrize("censored", [False, True])
@pytest.mark.parametrize("min_duration", [1, 2])
def test_hsmm_gradcheck(censored, min_duration):
    K, dmax = 3, 4
    ls, lt, ld = _random_hsmm(K, dmax, 5, min_duration)
    obs = torch.randn(2, 7, K, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    lengths = torch.tensor([7, 5])
    lt_mask, ld_mask = torch.isfinite(lt), torch.isfinite(ld)

    def f(ls, lt_free, ld_free, obs):
        t = torch.full_like(lt, -math.inf).masked_scatter(lt_mask, lt_free)
        d = torch.full_like(ld, -math.inf).masked_scatter(ld_mask, ld_free)
        return hsmm.hsmm_log_likelihood(ls, t, d, obs, lengths, censored)

    args = (ls.clone().requires_grad_(), lt[lt_mask].clone().requires_grad_(),
            ld[ld_mask].clone().requires_grad_(), obs.requires_grad_())
    assert gradcheck(f, args, eps=1e-6, atol=1e-6)


def test_semimarkov_score_is_differentiable_and_trains():
    torch.manual_seed(0)
    model = he.SemiMarkovHMM(3, 2, max_duration=15, topology="left-to-right", dtype=torch.float64)
    x = torch.cat([torch.randn(10, 2) - 2, torch.randn(10, 2), torch.randn(10, 2) + 2]).double()
    before = model(x).item()
    history = he.fit_gradient(model, x, steps=30, lr=0.1)
    assert model(x).item() > before + 10 and history[-1] > history[0]
    # Forbidden moves stay exactly impossible under gradient steps.
    assert (model.transmat[~model.transition_mask] == 0).all()


# --------------------------------------------------------------------------- models are modules


def _gaussian(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    model = he.GaussianHMM(3, 2, dtype=dtype)
    with torch.no_grad():
        model.emission.means_param.normal_()
    return model


def test_model_call_is_the_log_likelihood():
    model = _gaussian()
    x = torch.randn(2, 12, 2, dtype=torch.float64)
    lengths = torch.tensor([12, 7])
    torch.testing.assert_close(model(x, lengths), model.score(x, lengths))
    torch.testing.assert_close(model(x, lengths), model.forward_backward(x, lengths).log_likelihood)
    smm = he.SemiMarkovHMM(3, 2, max_duration=6, dtype=torch.float64)
    torch.testing.assert_close(smm(x, lengths), smm.forward_backward(x, lengths).log_likelihood)


def test_checkpointing_gives_the_same_gradients():
    from torch.utils.checkpoint import checkpoint

    x = torch.randn(2, 15, 2, dtype=torch.float64)
    lengths = torch.tensor([15, 9])
    grads = []
    for wrap in (False, True):
        model = _gaussian()
        ll = checkpoint(model, x, lengths, use_reentrant=False) if wrap else model(x, lengths)
        ll.sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_torch_compile_wraps_a_model():
    model = _gaussian()
    x = torch.randn(1, 10, 2, dtype=torch.float64)
    # "eager" checks the graph capture (the DP is an opaque autograd.Function: a graph break)
    # without paying for a C++ build here.
    compiled = torch.compile(model, backend="eager")
    torch.testing.assert_close(compiled(x), model(x))
    compiled(x).sum().backward()
    assert model.emission.means_param.grad is not None


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = _gaussian(seed=1)
        x = torch.randn(4, 20, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
        lengths = torch.tensor([20, 13, 17, 5])
        mine = slice(rank * 2, rank * 2 + 2)
        history = he.fit_gradient(DistributedDataParallel(model), x[mine], lengths[mine], steps=5, lr=0.05)
        if rank == 0:
            torch.save({"state": model.state_dict(), "history": history}, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_gradient_training_across_two_processes_matches_one(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "ddp.pt")
    mp.spawn(_ddp_worker, args=(2, port, out), nprocs=2, join=True)
    got = torch.load(out, weights_only=True)

    model = _gaussian(seed=1)
    x = torch.randn(4, 20, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    history = he.fit_gradient(model, x, torch.tensor([20, 13, 17, 5]), steps=5, lr=0.05)
    assert got["history"] == pytest.approx(history, rel=1e-9)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(got["state"][key], value, msg=key)


@pytest.mark.parametrize("device", DEVICES)
def test_gradients_agree_across_devices_and_backends(device):
    """The torch recursions (any device) and the CPU kernels give the same analytic gradient."""
    x = torch.randn(2, 30, 2, dtype=torch.float64)
    lengths = torch.tensor([30, 19])
    grads = {}
    for name, backend_device in (("kernel", "cpu"), ("torch", device)):
        for model in (_gaussian(), he.SemiMarkovHMM(3, 2, max_duration=8, dtype=torch.float64)):
            model = model.to(backend_device)
            xb, lb = x.to(backend_device), lengths.to(backend_device)
            if name == "torch" and backend_device == "cpu":
                ll = inf.log_likelihood(model.log_startprob(), model.log_transmat(), model.emission_log_likelihood(xb),
                                        lb, backend="torch") if isinstance(model, he.HMM) else model(xb, lb)
            else:
                ll = model(xb, lb)
            ll.sum().backward()
            grads[(name, type(model).__name__)] = [p.grad.detach().cpu().nan_to_num(0.0) for p in model.parameters()]
    for kind in ("GaussianHMM", "SemiMarkovHMM"):
        for a, b in zip(grads[("kernel", kind)], grads[("torch", kind)]):
            torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-7)


@pytest.mark.slow
def test_torch_compile_with_inductor_in_a_fresh_process():
    """Default backend, in a new interpreter (the numba kernels not yet loaded there: dynamo
    must not trace into them)."""
    import subprocess
    import sys

    code = (
        "import torch, hmm_engine as he\n"
        "x = torch.randn(2, 20, 2, dtype=torch.float64)\n"
        "for m in (he.GaussianHMM(3, 2, dtype=torch.float64), he.SemiMarkovHMM(3, 2, max_duration=5, dtype=torch.float64)):\n"
        "    c = torch.compile(m)\n"
        "    torch.testing.assert_close(c(x), m(x))\n"
        "    c(x).sum().backward()\n"
        "print('ok')\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=900)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]
