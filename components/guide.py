"""What the Analyze page says while and after it works: progress weighted by the real work
of each stage with a time estimate, and help text for every control. No Gradio here."""

from __future__ import annotations

import time
from typing import Callable

from components.results import AnalysisSettings

Report = Callable[[float, str], None]


def _grid(text: str) -> list[int]:
    out = []
    for part in str(text or "").replace(";", ",").split(","):
        part = part.strip()
        if part.isdigit():
            out.append(int(part))
    return out


def model_cost(s: AnalysisSettings, num_states: int, num_mixtures: int = 1) -> float:
    """Relative cost of one EM iteration: emissions ~ K·M·D, transitions ~ K² (HMM) or
    K·(K + Dmax) (semi-Markov, whose duration sums dominate). A unit for weighting the
    stages of one run, not a time."""
    dim = s.num_ceps * (1 + s.deltas) if s.feature_kind == "mfcc" else s.num_mels * (1 + s.deltas)
    k = float(num_states)
    m = float(num_mixtures if s.model_type == "gmm" else 1)
    chain = k * (k + 4.0 * s.max_duration) if s.model_type == "semi-markov" else k * k
    return k * m * dim + chain


def stage_weights(s: AnalysisSettings) -> tuple[float, float]:
    """Fractions of the work (training, sweep) for these settings; they sum to 1."""
    train = model_cost(s, s.num_states, s.num_mixtures)
    mixes = _grid(s.sweep_mixtures) if s.model_type == "gmm" else []
    mixes = mixes or [s.num_mixtures if s.model_type == "gmm" else 1]
    sweep = sum(model_cost(s, k, m) for k in _grid(s.sweep_states) for m in mixes)
    total = train + sweep
    return train / total, sweep / total


class WorkProgress:
    """Re-maps the pipeline's stage fractions (training 0.1–0.8, decoding 0.85, sweep
    0.88–0.98) onto the share of work each stage really has for these settings, and adds
    the elapsed time and an estimate of the time left to the message."""

    def __init__(self, settings: AnalysisSettings, report: Report, clock: Callable[[], float] = time.perf_counter):
        self.train_w, self.sweep_w = stage_weights(settings)
        self.sweeping = self.sweep_w > 0
        self.report, self.clock = report, clock
        self.t0 = clock()

    def fraction(self, f: float) -> float:
        lo, span = 0.04, 0.93  # loading + features before, exports after
        if f < 0.1:
            return lo * f / 0.1
        if f <= 0.8:
            return lo + span * self.train_w * (f - 0.1) / 0.7
        if f < 0.88:
            return lo + span * self.train_w
        return lo + span * (self.train_w + self.sweep_w * min(1.0, (f - 0.88) / 0.1))

    def __call__(self, f: float, message: str) -> None:
        g = self.fraction(float(f))
        elapsed = self.clock() - self.t0
        text = message
        if "sweep" in message:
            text += " (the sweep is {:.0f}% of this run: empty 'Sweep state counts' to skip it)".format(
                100 * self.sweep_w)
        if g >= 0.08 and elapsed >= 0.5:
            left = elapsed * (1.0 - g) / g
            text += f" · {elapsed:.0f} s, about {left:.0f} s left"
        self.report(g, text)


# Help text shown under each control (info=). Plain words; what it does and what it costs.
HELP = {
    "audio": "Upload or record up to the length limit; the bundled sample is already analysed.",
    "model_type": "Gaussian: one Gaussian per state (fastest). Gaussian mixture: several per state "
                  "(richer sounds). Semi-Markov: explicit state durations (slower; see durations).",
    "num_states": "How many hidden states (sound classes) the model may use. More states: finer "
                  "segments, higher likelihood, but BIC/AIC charge for the extra parameters.",
    "num_mixtures": "Gaussians per state for the Gaussian-mixture model.",
    "covariance_type": "Shape of each Gaussian: diag (per-feature variances, usual), full (correlations, "
                       "many parameters), spherical (one variance), tied (one matrix shared by all states).",
    "topology": "Which moves are allowed. Ergodic: any state to any state. Left-to-right: only forward "
                "(or stay). Bakis: left-to-right, skipping at most two states ahead — the classic word model.",
    "max_duration": "Semi-Markov only: the longest a state may last, in 10 ms frames. Cost grows with it.",
    "duration_dist": "Semi-Markov only: the law of how long a state lasts (Poisson, gamma, Gaussian, or "
                     "free-form nonparametric).",
    "max_iter": "EM stops here even if it has not converged (the EM curve then says NOT converged).",
    "tol": "tol: EM stops when the log-likelihood gains less than this per frame in one iteration.",
    "seed": "Random start of k-means/EM; the same seed gives the same result.",
    "device": "Where the model runs: auto uses a GPU when there is one.",
    "feature_kind": "MFCC: compact cepstra (usual for speech). Log-mel: the mel spectrum itself.",
    "num_mels": "Mel filter bands computed from the spectrum.",
    "num_ceps": "MFCC coefficients kept per frame.",
    "deltas": "Adds how each feature changes: Δ (velocity), ΔΔ (acceleration too). Triples the "
              "feature size at 2.",
    "sweep_states": "Train one extra model per count for the BIC/AIC chart. This is most of the run "
                    "time when set: empty it for a faster run.",
    "sweep_mixtures": "Mixture counts to sweep too (Gaussian mixture only).",
    "decoder": "Viterbi: the single best state sequence. Posterior: each frame's most likely state. "
               "Switching re-decodes with the cached model (no retraining).",
}
