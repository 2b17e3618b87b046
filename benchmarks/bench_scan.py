"""Parallel-in-time (associative scan) forward and Viterbi against the sequential recursions.

Run: ``python benchmarks/bench_scan.py`` (``--quick``: fewer sizes and repetitions;
``--device cuda`` on a machine with a GPU).

One sequence (B=1) of T frames, K states, float64 on the CPU (float32 on CUDA). Columns:
the sequential torch recursion (``backend="torch"``, what runs on a GPU and under autograd),
the compiled CPU kernel (``backend="kernel"``, what ``auto`` picks on the CPU), and the scan
(:mod:`hmm_engine.inference.scan`). Each cell is the minimum wall time over repetitions (ms);
the line under each K lists the T of the grid at which the scan beats the sequential torch
recursion (the crossover). The scan does O(T K^3) work in O(log T) depth, the recursions O(T K^2) in T steps.
One torch thread by default, as app.py runs (``--threads 2`` lets the scan's batched products
use both cores; the sequential recursions run single-threaded either way).
Prints tables; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from hmm_engine.inference import hmm as inf  # noqa: E402
from hmm_engine.inference.scan import scan_forward, scan_viterbi  # noqa: E402


def timed(fn, reps, device):
    best = float("inf")
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def problem(K, T, device, dtype):
    g = torch.Generator().manual_seed(K * 7919 + T)
    ls = torch.log_softmax(torch.randn(K, generator=g, dtype=torch.float64), 0)
    lt = torch.log_softmax(torch.randn(K, K, generator=g, dtype=torch.float64), 1)
    obs = torch.randn(1, T, K, generator=g, dtype=torch.float64) * 3
    return ls.to(device, dtype), lt.to(device, dtype), obs.to(device, dtype)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (app.py: 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.float64 if device.type == "cpu" else torch.float32
    Ks = [2, 8, 16, 32] if not args.quick else [2, 16]
    Ts = [10, 30, 100, 1000, 10000] if not args.quick else [10, 100, 1000]
    reps = 2 if args.quick else 3
    print(f"device={device} dtype={dtype} torch threads={torch.get_num_threads()} B=1, min of {reps} runs, ms")
    for name, seq, scan in (("forward", inf.forward, scan_forward), ("viterbi", inf.viterbi, scan_viterbi)):
        print(f"\n{name}")
        print(f"{'K':>4} {'T':>7} {'sequential torch':>17} {'CPU kernel':>11} {'scan':>10} {'scan/torch':>11}")
        for K in Ks:
            wins = []
            for T in Ts:
                if T * K ** 3 > 4e9:
                    print(f"{K:>4} {T:>7}   skipped (T K^3 = {T * K ** 3:.1e})")
                    continue
                ls, lt, obs = problem(K, T, device, dtype)
                t_seq = timed(lambda: seq(ls, lt, obs, backend="torch"), reps, device)
                t_ker = timed(lambda: seq(ls, lt, obs, backend="kernel"), reps, device) if device.type == "cpu" else float("nan")
                t_scan = timed(lambda: scan(ls, lt, obs), reps, device)
                if t_scan < t_seq:
                    wins.append(T)
                print(f"{K:>4} {T:>7} {t_seq:>17.2f} {t_ker:>11.2f} {t_scan:>10.2f} {t_scan / t_seq:>11.2f}")
            print(f"{'':>4} scan faster than sequential torch at T = {wins if wins else 'none of the grid'}")


if __name__ == "__main__":
    main()
