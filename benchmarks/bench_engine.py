"""Engine vs hmmlearn, side by side in one run, on the same parameters and data.

    python benchmarks/bench_engine.py [--batch 32] [--frames 1000] [--states 32] [--dim 80] [--repeats 5]

Times (median of ``--repeats``) for posteriors (forward-backward from raw features),
Viterbi, and one EM iteration, for a batch of B sequences and for one sequence.
Both libraries start from identical parameters; hmmlearn gets the concatenated
sequences with ``lengths`` (its batch form). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hmm_engine as he  # noqa: E402


def timed(fn, repeats):
    fn()  # warm-up (compilation, caches)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--states", type=int, default=32)
    ap.add_argument("--dim", type=int, default=80)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    from hmmlearn import hmm as hl

    B, T, K, D = args.batch, args.frames, args.states, args.dim
    rng = np.random.default_rng(0)
    truth = he.GaussianHMM(K, D, "diag", dtype=torch.float64)
    truth.means = rng.normal(size=(K, D)) * 0.5
    truth.covars = rng.uniform(0.5, 1.5, size=(K, D))
    truth.transmat = rng.dirichlet(np.ones(K) * 0.5 + np.eye(K)[0] * 0, size=K) * 0.5 + np.eye(K) * 0.5
    X, _ = truth.sample(B, T, seed=0)
    X_np = X.reshape(B * T, D).numpy()
    lengths = [T] * B

    ref = hl.GaussianHMM(K, "diag", init_params="", params="stmc", n_iter=1, tol=-1)
    ref.startprob_, ref.transmat_ = truth.startprob.numpy(), truth.transmat.numpy()
    ref.means_, ref.covars_ = truth.means.numpy(), truth.covars.numpy()

    dev = torch.device(args.device)
    ours = {dt: he.GaussianHMM(K, D, "diag", dtype=dt).to(dev) for dt in (torch.float32, torch.float64)}
    for m in ours.values():
        m.load_state_dict({k: v.to(m.start_logits.dtype) if v.is_floating_point() else v for k, v in truth.state_dict().items()})

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    rows = []
    for label, b in (("batch", B), ("single", 1)):
        xs = {dt: X[:b].to(dt).to(dev) for dt in ours}
        xn, ln = X_np[: b * T], lengths[:b]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_ref = {
                "posteriors": timed(lambda: ref.predict_proba(xn, ln), args.repeats),
                "viterbi": timed(lambda: ref.decode(xn, ln), args.repeats),
            }

            def ref_em():
                r = hl.GaussianHMM(K, "diag", init_params="", params="stmc", n_iter=1, tol=-1)
                r.startprob_, r.transmat_, r.means_, r.covars_ = ref.startprob_, ref.transmat_, ref.means_, truth.covars.numpy()
                r.fit(xn, ln)

            t_ref["EM iteration"] = timed(ref_em, max(1, args.repeats // 2))
        for dt, model in ours.items():
            x = xs[dt]

            def post():
                model.forward_backward(x)
                sync()

            def vit():
                model.viterbi_decode(x)
                sync()

            def em():
                xb, lb, _ = model.prepare(x)
                model.m_step(model.accumulate(xb, lb))
                sync()

            backup = {k: v.clone() for k, v in model.state_dict().items()}
            t_ours = {"posteriors": timed(post, args.repeats), "viterbi": timed(vit, args.repeats)}
            t_ours["EM iteration"] = timed(em, max(1, args.repeats // 2))
            model.load_state_dict(backup)
            for task in ("posteriors", "viterbi", "EM iteration"):
                rows.append((label, b, task, str(dt).replace("torch.", ""), t_ours[task], t_ref[task]))

    print(f"# hmm_engine vs hmmlearn: B={B} x T={T} frames, K={K} diag-Gaussian states, D={D}")
    from hmm_engine.inference import hmm as inference

    print(f"device: {dev} | torch {torch.__version__} | kernel threads {inference._KERNEL_THREADS} | "
          f"cpu cores {os.cpu_count()} | {platform.processor() or platform.machine()} | "
          f"load average before the run {load_before:.2f}, after {os.getloadavg()[0]:.2f}")
    print()
    print("| sequences | task | dtype | hmm_engine (ms) | hmmlearn (ms) | speed-up |")
    print("|---|---|---|---:|---:|---:|")
    for label, b, task, dt, ours_t, ref_t in rows:
        print(f"| {b} | {task} | {dt} | {ours_t * 1e3:.1f} | {ref_t * 1e3:.1f} | {ref_t / ours_t:.1f}x |")


if __name__ == "__main__":
    main()
