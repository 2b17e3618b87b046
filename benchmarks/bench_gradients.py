"""Gradient of the log-likelihood against the forward-backward it is built from.

    python benchmarks/bench_gradients.py [--states 64] [--frames 1000 10000 100000] [--loop-max 1000]

For each length T (one sequence, K states, float32 scores, CPU), in a fresh process per row so
that the peak memory is the row's own:

- ``forward``: ``log_likelihood`` without gradient (one forward pass);
- ``forward-backward``: posteriors (``forward_backward``);
- ``score + backward``: ``log_likelihood(...).sum().backward()`` w.r.t. the scores, the start
  and the transition parameters, with the analytic backward (posteriors and expected
  transition counts);
- ``autograd through the loop``: the old way (the torch recursion under autograd), only up to
  ``--loop-max`` frames: its graph grows with T (measured 387 s and 3.3 GB at T=1e5, K=64).

The semi-Markov rows (``--hsmm``) do the same for ``hsmm_log_likelihood`` (K=16, Dmax=32).
Prints a markdown table: best-of-``--repeats`` seconds, the ratio to forward-backward, and the peak resident
memory above the process's baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _child(method: str, T: int, K: int, repeats: int) -> dict:
    from hmm_engine.inference import hmm as inf
    from hmm_engine.inference import hsmm

    semi = method.startswith("hsmm")
    dmax = 32

    def make(T):
        torch.manual_seed(0)
        obs = torch.randn(1, T, K) * 2.0
        logits = torch.randn(K, K)
        if semi:
            logits.fill_diagonal_(-float("inf"))
        ls, lt = torch.log_softmax(torch.randn(K), -1), torch.log_softmax(logits, -1)
        ld = torch.log_softmax(torch.randn(K, dmax), -1)

        def run():
            if method == "forward":
                inf.log_likelihood(ls, lt, obs)
            elif method == "forward-backward":
                inf.forward_backward(ls, lt, obs)
            elif method in ("score + backward", "autograd through the loop"):
                a, b, c = (t.clone().requires_grad_() for t in (ls, lt, obs))
                if method == "score + backward":
                    ll = inf.log_likelihood(a, b, c)
                else:
                    ll = inf.forward_normalized(a, b, c, torch.tensor([T]), backend="torch").log_norm.sum(1)
                ll.sum().backward()
            elif method == "hsmm forward":
                hsmm.hsmm_log_likelihood(ls, lt, ld, obs)
            elif method == "hsmm forward-backward":
                hsmm.hsmm_forward_backward(ls, lt, ld, obs)
            elif method == "hsmm score + backward":
                a, b, d, c = (t.clone().requires_grad_() for t in (ls, lt, ld, obs))
                hsmm.hsmm_log_likelihood(a, b, d, c).sum().backward()
            else:
                raise ValueError(method)

        return run

    make(64)()  # warm-up on a short input: numba compilation (cached on disk), allocator
    run = make(T)
    base = _rss_mb()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    # Best of the repeats: on a shared machine the other processes only ever add time.
    return {"seconds": min(times), "peak_mb": _rss_mb() - base}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--states", type=int, default=64)
    ap.add_argument("--frames", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--loop-max", type=int, default=1000, help="longest T for autograd through the loop")
    ap.add_argument("--hsmm", type=int, nargs="*", default=[1000, 10000], help="semi-Markov lengths (K=16)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        method, T, K = args.child
        print(json.dumps(_child(method, int(T), int(K), args.repeats)))
        return

    rows = []
    load_before = os.getloadavg()[0]
    plan = [(m, T, args.states) for T in args.frames
            for m in ("forward", "forward-backward", "score + backward", "autograd through the loop")
            if m != "autograd through the loop" or T <= args.loop_max]
    plan += [(m, T, 16) for T in args.hsmm for m in ("hsmm forward", "hsmm forward-backward", "hsmm score + backward")]
    for method, T, K in plan:
        out = subprocess.run(
            [sys.executable, __file__, "--child", method, str(T), str(K), "--repeats", str(args.repeats)],
            capture_output=True, text=True, check=True,
        )
        rows.append((method, T, K, json.loads(out.stdout.strip().splitlines()[-1])))

    print(f"# Gradient vs forward-backward (CPU, float32 scores, one sequence; best of {args.repeats})")
    print(f"torch {torch.__version__} | cpu cores {os.cpu_count()} | load average before {load_before:.2f}, "
          f"after {os.getloadavg()[0]:.2f}")
    print()
    print("| model | T | K | task | seconds | / forward-backward | peak memory (MB) |")
    print("|---|---:|---:|---|---:|---:|---:|")
    fb = {(("hsmm" in m), T): r["seconds"] for m, T, _, r in rows if m.endswith("forward-backward")}
    for method, T, K, r in rows:
        semi = "hsmm" in method
        ratio = r["seconds"] / fb[(semi, T)]
        print(f"| {'semi-Markov' if semi else 'HMM'} | {T} | {K} | {method.replace('hsmm ', '')} | "
              f"{r['seconds']:.3f} | {ratio:.2f} | {r['peak_mb']:.0f} |")


if __name__ == "__main__":
    main()
