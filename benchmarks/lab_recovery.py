"""How well EM recovers a model you defined (the Lab), as the sample grows.

For each Lab preset with Gaussian emissions: draw N sequences, fit with EM, match states
(Hungarian), and print the largest error of the means and of the transition probabilities,
next to the standard error of a mean at that size (std / sqrt(frames per state)).

    .venv/bin/python benchmarks/lab_recovery.py
"""

from __future__ import annotations

import time

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components import lab as L  # noqa: E402

CASES = [("noisy two-state switch (1-D Gaussian)", 200), ("left-to-right word model (2-D Gaussian)", 24),
         ("durations: why semi-Markov (1-D)", 300)]


def main() -> None:
    print(f"{'preset':42s} {'N x T':>10s} {'frames':>7s} {'iters':>5s} {'max|Δμ|':>8s} {'SE(μ)':>7s} "
          f"{'max|ΔA|':>8s} {'seconds':>7s}")
    for name, length in CASES:
        spec = L.parse_spec(L.preset(name))
        for n in (5, 20, 80, 320):
            if n * length > L.MAX_FRAMES:
                continue
            data = L.sample(spec, n, length, seed=11)
            t0 = time.perf_counter()
            fit = L.fit(spec, data, max_iter=100, seed=0)
            dt = time.perf_counter() - t0
            per_state = np.bincount(data.states.ravel(), minlength=spec.num_states)
            se = float(np.max(spec.stds[:, 0] / np.sqrt(np.maximum(per_state, 1))))
            dmu = float(np.abs(fit.params["means"] - spec.means).max())
            mask = ~np.eye(spec.num_states, dtype=bool) if spec.kind == "semi-markov" else np.ones_like(spec.transmat, bool)
            da = float(np.abs(fit.params["transmat"] - spec.transmat)[mask].max())
            print(f"{name[:42]:42s} {f'{n}x{length}':>10s} {n * length:7d} {len(fit.history):5d} {dmu:8.3f} "
                  f"{se:7.3f} {da:8.3f} {dt:7.2f}")


if __name__ == "__main__":
    main()
