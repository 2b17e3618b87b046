"""Explicit-duration HMM timings: forward-backward, Viterbi and one EM iteration.

Run: ``python benchmarks/bench_hsmm.py`` (``--quick`` for fewer repetitions).

Two sizes: a batch (B=8 x T=1000 frames, K=32 states, max_duration=50, D=40 diagonal
Gaussian) and the inspiring project's (one sequence, T=80, 5 states, max_duration=10).
Each row is the median (and minimum) wall time over repetitions, on whatever device and thread count this
machine gives. The time loops already run single-threaded on CPU; the "loops multi-threaded"
rows switch that off to show why (thread hand-offs dominate on tiny kernels). Prints a table;
asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from hmm_engine.inference import hsmm  # noqa: E402
from hmm_engine.models.semimarkov import SemiMarkovHMM  # noqa: E402


def build(K, D, Dmax, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    model = SemiMarkovHMM(K, D, max_duration=Dmax, duration="gamma", min_duration=1)
    model.means = torch.randn(K, D, generator=g) * 2
    model.covars = torch.rand(K, D, generator=g) + 0.5
    trans = torch.rand(K, K, generator=g)
    trans.fill_diagonal_(0)
    model.transmat = trans / trans.sum(-1, keepdim=True)
    return model.to(device)


def median_time(fn, reps):
    """(median, min) wall seconds over ``reps`` runs after one warm-up."""
    fn()  # warm-up
    times = []
    for _ in range(reps):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


@contextlib.contextmanager
def loops_multithreaded():
    """Temporarily disable the single-thread guard of the time loops."""
    saved = hsmm.single_thread
    hsmm.single_thread = contextlib.nullcontext
    try:
        yield
    finally:
        hsmm.single_thread = saved


def run_size(name, B, T, K, D, Dmax, reps, rows, device):
    model = build(K, D, Dmax, device=device)
    x, _ = model.sample(B, T, seed=1)
    lengths = torch.full((B,), T, dtype=torch.long)
    with torch.no_grad():
        log_obs = model.emission_log_likelihood(x)
    args = (*(p.detach() for p in model._params()), log_obs, lengths)
    rows.append((name, "emission log-likelihood", median_time(lambda: model.emission_log_likelihood(x), reps)))
    fb = median_time(lambda: hsmm.hsmm_forward_backward(*args), reps)
    vit = median_time(lambda: hsmm.hsmm_viterbi(*args), reps)
    rows.append((name, "hsmm_forward_backward (pure)", fb))
    rows.append((name, "hsmm_viterbi (pure)", vit))
    rows.append((name, "forward-backward + Viterbi (pure)", (fb[0] + vit[0], fb[1] + vit[1])))
    rows.append((name, "model.forward_backward", median_time(lambda: model.forward_backward(x), reps)))
    rows.append((name, "model.viterbi_decode", median_time(lambda: model.viterbi_decode(x), reps)))
    rows.append((name, "model.score (forward only)", median_time(lambda: model.score(x), reps)))
    xb, lb, _ = model.prepare(x)
    rows.append((name, "EM iteration (accumulate + m_step)", median_time(lambda: model.m_step(model.accumulate(xb, lb)), reps)))
    with loops_multithreaded():
        mt_fb = median_time(lambda: hsmm.hsmm_forward_backward(*args), max(1, reps // 2))
        mt_vit = median_time(lambda: hsmm.hsmm_viterbi(*args), max(1, reps // 2))
    rows.append((name, f"forward-backward, loops on {torch.get_num_threads()} threads", mt_fb))
    rows.append((name, f"Viterbi, loops on {torch.get_num_threads()} threads", mt_vit))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    reps = 3 if args.quick else 7
    rows = []
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} intra-op threads, "
          f"{os.cpu_count()} CPUs")
    run_size("B=8 T=1000 K=32 Dmax=50 D=40", 8, 1000, 32, 40, 50, reps, rows, args.device)
    run_size("B=1 T=80 K=5 Dmax=10 D=40", 1, 80, 5, 40, 10, reps * 3, rows, args.device)
    width = max(len(r[0]) for r in rows)
    op_width = max(len(r[1]) for r in rows)
    print(f"{'size':<{width}}  {'operation':<{op_width}}  {'median ms':>10}  {'min ms':>8}")
    print("-" * (width + op_width + 24))
    for size, op, (median, best) in rows:
        print(f"{size:<{width}}  {op:<{op_width}}  {median * 1e3:>10.1f}  {best * 1e3:>8.1f}")
    if hasattr(os, "getloadavg"):
        print(f"load average during the run: {os.getloadavg()[0]:.2f} (timings on a shared machine vary)")


if __name__ == "__main__":
    main()
