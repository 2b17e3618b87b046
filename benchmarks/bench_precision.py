"""Speed and error per dtype: the same Gaussian HMM with float64, float32, bfloat16 and float16
parameters (and float32 under CPU autocast to bfloat16), against the float64 answer.

    python benchmarks/bench_precision.py [--batch 8] [--frames 1000] [--states 32] [--dim 40] [--repeats 3]

Half-precision models compute their emission scores in half precision; the recursions then
accumulate in float32/float64 and the results come back float32 (see docs/gradients.md).
Columns: median seconds of ``score`` (forward), ``score(...).sum().backward()`` and
``viterbi_decode``; the log-likelihood error per frame (mean over sequences, nats); the
largest posterior difference; the share of Viterbi states equal to float64's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hmm_engine as he  # noqa: E402


def timed(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--states", type=int, default=32)
    ap.add_argument("--dim", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    B, T, K, D = args.batch, args.frames, args.states, args.dim
    rng = np.random.default_rng(0)
    truth = he.GaussianHMM(K, D, "diag", dtype=torch.float64)
    # Feature-like scales: an offset (as MFCC c0) and unequal variances.
    truth.means = rng.normal(size=(K, D)) * 0.4 + 10.0  # overlapping states: posteriors not all 0/1
    truth.covars = rng.uniform(0.5, 3.0, size=(K, D))
    truth.transmat = rng.dirichlet(np.ones(K), size=K) * 0.2 + np.eye(K) * 0.8
    x, _ = truth.sample(B, T, seed=0)
    ref_ll = truth.score(x).detach()
    ref_post = truth.forward_backward(x).posteriors
    ref_path = truth.viterbi_decode(x).path

    rows = []
    load_before = os.getloadavg()[0]
    for label, dtype, autocast in (
        ("float64", torch.float64, False),
        ("float32", torch.float32, False),
        ("bfloat16", torch.bfloat16, False),
        ("float16", torch.float16, False),
        ("float32 + autocast(bfloat16)", torch.float32, True),
    ):
        model = he.GaussianHMM(K, D, "diag", dtype=torch.float32).to(dtype)
        model.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in truth.state_dict().items()})
        ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if autocast else contextlib.nullcontext

        def fwd(model=model, ctx=ctx):
            with ctx(), torch.no_grad():
                return model.score(x)

        def grad(model=model, ctx=ctx):
            model.zero_grad()
            with ctx():
                model.score(x).sum().backward()

        def vit(model=model, ctx=ctx):
            with ctx():
                return model.viterbi_decode(x)

        def post(model=model, ctx=ctx):
            with ctx():
                return model.forward_backward(x).posteriors

        t_fwd, t_grad, t_vit = timed(fwd, args.repeats), timed(grad, args.repeats), timed(vit, args.repeats)
        out = fwd()
        ll = out.double()
        err = ((ll - ref_ll).abs() / T).mean().item()
        perr = (post().double() - ref_post).abs().max().item()
        agree = (vit().path == ref_path).double().mean().item()
        rows.append((label, str(out.dtype).replace("torch.", ""), t_fwd, t_grad, t_vit, err, perr, agree))

    print(f"# Precision: GaussianHMM diag, B={B} x T={T}, K={K}, D={D}, CPU; errors against float64")
    print(f"torch {torch.__version__} | cpu cores {os.cpu_count()} | load average before {load_before:.2f}, "
          f"after {os.getloadavg()[0]:.2f}")
    print()
    print("| parameters | result dtype | score (s) | score + backward (s) | Viterbi (s) | "
          "log-lik error / frame (nats) | max posterior error | Viterbi states as float64 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for label, out, a, b, c, err, perr, agree in rows:
        print(f"| {label} | {out} | {a:.3f} | {b:.3f} | {c:.3f} | {err:.2e} | {perr:.2e} | {agree * 100:.2f}% |")


if __name__ == "__main__":
    main()
