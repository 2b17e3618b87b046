"""The Lab: define a hidden Markov model (or take a preset), sample from it, fit a model to the
samples with EM one iteration at a time, and compare learned with true parameters after
matching the states (Hungarian assignment). Plus the trellis: forward variables and Viterbi
backpointers of the first frames, step by step. No Gradio here (see components/lab_ui.py).

A model is a plain JSON-able spec, so the UI edits it as text:

* ``kind``: "gaussian" (1-D or 2-D, diagonal variances), "categorical" or "semi-markov"
  (Gaussian emissions, Poisson durations: why explicit durations exist);
* ``states`` (names), ``startprob [K]``, ``transmat [K, K]``;
* gaussian / semi-markov: ``means [K][D]``, ``stds [K][D]``;
* categorical: ``symbols`` (names), ``emissionprob [K, S]``;
* semi-markov: ``mean_durations [K]`` in frames (``transmat`` diagonal must be 0).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from hmm_engine import CategoricalHMM, GaussianHMM, SemiMarkovHMM
from hmm_engine.errors import InvalidInputError, InvalidParameterError

# Cost bounds, checked before sampling or fitting.
MAX_STATES = 8
MAX_DIM = 2
MAX_SYMBOLS = 12
MAX_FRAMES = 100_000          # sequences x length
MAX_LENGTH = 5_000
MAX_ITER = 100
MAX_DURATION = 60             # semi-Markov: longest duration modelled, frames

PRESETS: dict[str, dict] = {
    "weather (categorical)": {
        "kind": "categorical",
        "states": ["sunny", "cloudy", "rainy"],
        "symbols": ["walk", "shop", "clean"],
        "startprob": [0.6, 0.3, 0.1],
        "transmat": [[0.8, 0.15, 0.05], [0.3, 0.4, 0.3], [0.1, 0.3, 0.6]],
        "emissionprob": [[0.7, 0.2, 0.1], [0.3, 0.5, 0.2], [0.05, 0.25, 0.7]],
    },
    "left-to-right word model (2-D Gaussian)": {
        "kind": "gaussian",
        "states": ["onset", "vowel", "glide", "coda"],
        "startprob": [1.0, 0.0, 0.0, 0.0],
        "transmat": [[0.8, 0.2, 0.0, 0.0], [0.0, 0.85, 0.15, 0.0], [0.0, 0.0, 0.8, 0.2], [0.0, 0.0, 0.0, 1.0]],
        "means": [[-3.0, 0.0], [0.0, 3.0], [3.0, 0.0], [0.0, -3.0]],
        "stds": [[0.8, 0.8], [0.8, 0.8], [0.8, 0.8], [0.8, 0.8]],
    },
    "noisy two-state switch (1-D Gaussian)": {
        "kind": "gaussian",
        "states": ["off", "on"],
        "startprob": [0.5, 0.5],
        "transmat": [[0.95, 0.05], [0.05, 0.95]],
        "means": [[-1.0], [1.0]],
        "stds": [[1.0], [1.0]],
    },
    "durations: why semi-Markov (1-D)": {
        "kind": "semi-markov",
        "states": ["short", "long", "medium"],
        "startprob": [1.0, 0.0, 0.0],
        "transmat": [[0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]],
        "means": [[-2.0], [0.0], [2.0]],
        "stds": [[0.7], [0.7], [0.7]],
        "mean_durations": [4.0, 20.0, 10.0],
    },
}


def preset(name: str) -> dict:
    if name not in PRESETS:
        raise InvalidParameterError(f"unknown preset {name!r}; choose one of {list(PRESETS)}")
    return copy.deepcopy(PRESETS[name])


# --------------------------------------------------------------------------- the spec


def _matrix(spec: dict, key: str, rows: int, cols: int | None = None) -> np.ndarray:
    try:
        a = np.asarray(spec[key], dtype=np.float64)
    except KeyError:
        raise InvalidParameterError(f"the model needs {key!r}") from None
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{key!r} must be numbers") from None
    want = (rows,) if cols is None else (rows, cols)
    if a.shape != want:
        raise InvalidParameterError(f"{key!r} must have shape {list(want)}, got {list(a.shape)}")
    if not np.all(np.isfinite(a)):
        raise InvalidParameterError(f"{key!r} must be finite")
    return a


def _stochastic(a: np.ndarray, key: str) -> np.ndarray:
    if np.any(a < 0):
        raise InvalidParameterError(f"{key!r} has negative probabilities")
    sums = a.sum(-1)
    if not np.allclose(sums, 1.0, atol=1e-3):
        raise InvalidParameterError(f"every row of {key!r} must sum to 1 (got {np.round(sums, 4).tolist()})")
    return a / sums[..., None]


@dataclass
class ModelSpec:
    kind: str
    states: list
    startprob: np.ndarray
    transmat: np.ndarray
    means: np.ndarray | None = None           # [K, D]
    stds: np.ndarray | None = None            # [K, D]
    symbols: list | None = None
    emissionprob: np.ndarray | None = None    # [K, S]
    mean_durations: np.ndarray | None = None  # [K] frames

    @property
    def num_states(self) -> int:
        return len(self.states)

    @property
    def obs_dim(self) -> int:
        return 1 if self.means is None else int(self.means.shape[1])

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"kind": self.kind, "states": list(self.states),
                               "startprob": self.startprob.tolist(), "transmat": self.transmat.tolist()}
        for k in ("means", "stds", "emissionprob", "mean_durations"):
            v = getattr(self, k)
            if v is not None:
                out[k] = np.asarray(v).tolist()
        if self.symbols is not None:
            out["symbols"] = list(self.symbols)
        return out


def parse_spec(spec: dict | str) -> ModelSpec:
    """Validate a model spec (dict or JSON text); raises InvalidParameterError saying what to fix."""
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise InvalidParameterError(f"the model is not valid JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise InvalidParameterError("the model must be a JSON object")
    kind = spec.get("kind")
    if kind not in ("gaussian", "categorical", "semi-markov"):
        raise InvalidParameterError("kind must be 'gaussian', 'categorical' or 'semi-markov'")
    start = np.asarray(spec.get("startprob", []), dtype=np.float64)
    K = int(start.size)
    if not 1 <= K <= MAX_STATES:
        raise InvalidParameterError(f"the Lab takes 1 to {MAX_STATES} states, got {K}")
    states = [str(s) for s in spec.get("states") or [f"s{k}" for k in range(K)]]
    if len(states) != K:
        raise InvalidParameterError(f"'states' names {len(states)} states but startprob has {K}")
    start = _stochastic(_matrix(spec, "startprob", K), "startprob")
    A = _stochastic(_matrix(spec, "transmat", K, K), "transmat")
    out = ModelSpec(kind, states, start, A)
    if kind == "categorical":
        E = np.asarray(spec.get("emissionprob", []), dtype=np.float64)
        S = int(E.shape[1]) if E.ndim == 2 else 0
        if not 2 <= S <= MAX_SYMBOLS:
            raise InvalidParameterError(f"emissionprob needs 2 to {MAX_SYMBOLS} symbols per state")
        out.emissionprob = _stochastic(_matrix(spec, "emissionprob", K, S), "emissionprob")
        out.symbols = [str(s) for s in spec.get("symbols") or [f"o{j}" for j in range(S)]]
        if len(out.symbols) != S:
            raise InvalidParameterError(f"'symbols' names {len(out.symbols)} symbols but emissionprob has {S}")
    else:
        M = np.asarray(spec.get("means", []), dtype=np.float64)
        D = int(M.shape[1]) if M.ndim == 2 else 0
        if not 1 <= D <= MAX_DIM:
            raise InvalidParameterError(f"means must be [K][D] with D = 1 or 2, got shape {list(M.shape)}")
        out.means = _matrix(spec, "means", K, D)
        out.stds = _matrix(spec, "stds", K, D)
        if np.any(out.stds <= 0):
            raise InvalidParameterError("every std must be > 0")
    if kind == "semi-markov":
        if K < 2:
            raise InvalidParameterError("a semi-Markov model needs at least 2 states (a state cannot follow itself)")
        if np.any(np.diag(A) > 0):
            raise InvalidParameterError("semi-Markov transmat must have a zero diagonal: a state's stay is its duration")
        d = _matrix(spec, "mean_durations", K)
        if np.any(d < 1) or np.any(d > MAX_DURATION / 2):
            raise InvalidParameterError(f"mean_durations must be between 1 and {MAX_DURATION // 2} frames")
        out.mean_durations = d
    return out


def check_sampling(num_sequences: int, length: int) -> None:
    n, t = int(num_sequences), int(length)
    if n < 1 or t < 2:
        raise InvalidInputError("draw at least 1 sequence of at least 2 frames")
    if t > MAX_LENGTH:
        raise InvalidInputError(f"sequences of at most {MAX_LENGTH} frames, got {t}")
    if n * t > MAX_FRAMES:
        raise InvalidInputError(f"at most {MAX_FRAMES} frames in all (sequences × length), got {n * t}: "
                                "draw fewer or shorter sequences")


# --------------------------------------------------------------------------- engine models


def _topology(A: np.ndarray) -> str:
    return "left-to-right" if np.allclose(np.tril(A, -1), 0.0) and A.shape[0] > 1 else "ergodic"


def true_model(spec: ModelSpec):
    """The engine model with exactly the spec's parameters (float64)."""
    K = spec.num_states
    dt = torch.float64
    if spec.kind == "categorical":
        m = CategoricalHMM(K, spec.emissionprob.shape[1], dtype=dt)
        m.emissionprob = torch.tensor(spec.emissionprob)
    elif spec.kind == "gaussian":
        m = GaussianHMM(K, spec.obs_dim, "diag", dtype=dt, min_covar=1e-6)
        m.means = torch.tensor(spec.means)
        m.covars = torch.tensor(spec.stds ** 2)
    else:
        m = SemiMarkovHMM(K, spec.obs_dim, max_duration=MAX_DURATION, duration="poisson", dtype=dt, min_covar=1e-6)
        m.means = torch.tensor(spec.means)
        m.covars = torch.tensor(spec.stds ** 2)
        m.duration.rate = torch.tensor(spec.mean_durations - 1.0)  # shifted Poisson: mean = 1 + rate
    m.startprob = torch.tensor(spec.startprob)
    m.transmat = torch.tensor(spec.transmat)
    return m


@dataclass
class Sample:
    obs: np.ndarray      # [N, T] symbols or [N, T, D]
    states: np.ndarray   # [N, T]


def sample(spec: ModelSpec, num_sequences: int, length: int, seed: int = 0) -> Sample:
    check_sampling(num_sequences, length)
    obs, states = true_model(spec).sample(int(num_sequences), int(length), seed=int(seed))
    return Sample(obs.detach().cpu().numpy(), states.detach().cpu().numpy().astype(np.int64))


def _fit_model(spec: ModelSpec, kind: str | None = None):
    """An untrained model of the spec's shape (``kind`` may ask for a plain HMM on semi-Markov data)."""
    kind = kind or spec.kind
    K = spec.num_states
    topo = _topology(spec.transmat)
    if kind == "categorical":
        return CategoricalHMM(K, spec.emissionprob.shape[1], topology=topo, emission_pseudocount=1e-3,
                              dtype=torch.float64, init="none" if topo == "ergodic" else "auto")
    if kind == "gaussian":
        return GaussianHMM(K, spec.obs_dim, "diag", topology=topo, dtype=torch.float64)
    return SemiMarkovHMM(K, spec.obs_dim, max_duration=MAX_DURATION, duration="poisson", topology=topo,
                         dtype=torch.float64)


def _params(model, spec: ModelSpec, kind: str) -> dict:
    out = {"startprob": model.startprob.detach().cpu().numpy().astype(np.float64),
           "transmat": model.transmat.detach().cpu().numpy().astype(np.float64)}
    if kind == "categorical":
        out["emissionprob"] = model.emissionprob.detach().cpu().numpy().astype(np.float64)
    else:
        out["means"] = model.means.detach().cpu().numpy().astype(np.float64)
        out["stds"] = np.sqrt(model.covars.detach().cpu().numpy().astype(np.float64))
    if kind == "semi-markov":
        out["mean_durations"] = model.mean_durations.detach().cpu().numpy().astype(np.float64)
        out["duration_pmf"] = model.durations.cpu().numpy().astype(np.float64)
    return out


@dataclass
class Fit:
    kind: str
    history: list                         # total log-likelihood before each M-step
    snapshots: list                       # parameters after each iteration (index i: after i + 1)
    converged: bool
    permutation: np.ndarray               # learned state perm[k] plays true state k
    frames: int
    params: dict = field(default_factory=dict)   # final parameters, in the TRUE state order

    def at(self, iteration: int) -> dict:
        """Parameters after ``iteration`` (1-based) EM iterations, in the true state order."""
        i = int(min(max(iteration, 1), len(self.snapshots))) - 1
        return permute(self.snapshots[i], self.permutation)


def _init_categorical(model, spec: ModelSpec, seed: int) -> None:
    """Random symmetric-breaking start for categorical models (k-means makes no sense on symbols)."""
    g = np.random.default_rng(seed)
    K, S = spec.emissionprob.shape
    model.emissionprob = torch.tensor(g.dirichlet(np.ones(S) * 5.0, K))
    A = np.full((K, K), 0.2 / max(K - 1, 1)) + np.eye(K) * (0.8 - 0.2 / max(K - 1, 1)) if K > 1 else np.ones((1, 1))
    model.transmat = torch.tensor(A / A.sum(1, keepdims=True))
    model.startprob = torch.full((K,), 1.0 / K, dtype=torch.float64)


def fit(spec: ModelSpec, data: Sample, max_iter: int = 50, tol: float = 1e-4, seed: int = 0,
        kind: str | None = None) -> Fit:
    """EM one iteration at a time (each iteration's parameters are kept for the step-by-step
    view), then states matched to the true ones. ``kind="gaussian"`` fits a plain HMM to
    semi-Markov data (its implied durations are geometric)."""
    max_iter = int(max_iter)
    if not 1 <= max_iter <= MAX_ITER:
        raise InvalidInputError(f"EM iterations must be 1 to {MAX_ITER}, got {max_iter}")
    kind = kind or spec.kind
    x = torch.as_tensor(data.obs)
    if kind == "categorical":
        x = x.long()
    model = _fit_model(spec, kind)
    frames = int(np.prod(data.states.shape))
    history, snapshots, converged = [], [], False
    if kind == "categorical" and model.init == "none":
        _init_categorical(model, spec, seed)
    for it in range(max_iter):
        h = model.fit(x, max_iter=1, tol=0.0, seed=int(seed), init=(it == 0 and getattr(model, "init", "") != "none"))
        history.append(float(h[0]))
        snapshots.append(_params(model, spec, kind))
        if len(history) >= 2 and (history[-1] - history[-2]) / frames < tol:
            converged = True
            break
    perm = match_states(spec, snapshots[-1])
    return Fit(kind, history, snapshots, converged, perm, frames, permute(snapshots[-1], perm))


def match_states(spec: ModelSpec, learned: dict) -> np.ndarray:
    """``perm`` with learned state ``perm[k]`` matched to true state ``k`` (Hungarian assignment on
    emission distances: standardised means, or L1 between symbol distributions)."""
    if spec.emissionprob is not None and "emissionprob" in learned:
        cost = np.abs(spec.emissionprob[:, None, :] - learned["emissionprob"][None, :, :]).sum(-1)
        cost += 0.5 * np.abs(spec.transmat.diagonal()[:, None] - learned["transmat"].diagonal()[None, :])
    else:
        cost = (((spec.means[:, None, :] - learned["means"][None, :, :]) / spec.stds[:, None, :]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    perm = np.empty(spec.num_states, dtype=np.int64)
    perm[rows] = cols
    return perm


def permute(params: dict, perm: np.ndarray) -> dict:
    out = {}
    for k, v in params.items():
        v = np.asarray(v)
        if k == "transmat":
            out[k] = v[np.ix_(perm, perm)]
        else:
            out[k] = v[perm]
    return out


def recovery_rows(spec: ModelSpec, learned: dict) -> list[tuple[str, str, float, float]]:
    """``(group, name, true, learned)`` for every comparable parameter (learned in true order)."""
    S = spec.states
    rows = []
    for i in range(spec.num_states):
        rows.append(("start", f"π[{S[i]}]", float(spec.startprob[i]), float(learned["startprob"][i])))
    for i in range(spec.num_states):
        for j in range(spec.num_states):
            if spec.kind == "semi-markov" and i == j:
                continue
            rows.append(("transition", f"a[{S[i]}→{S[j]}]", float(spec.transmat[i, j]), float(learned["transmat"][i, j])))
    if spec.emissionprob is not None:
        for i in range(spec.num_states):
            for j, sym in enumerate(spec.symbols):
                rows.append(("emission", f"b[{S[i]}]({sym})", float(spec.emissionprob[i, j]),
                             float(learned["emissionprob"][i, j])))
    else:
        for i in range(spec.num_states):
            for d in range(spec.obs_dim):
                rows.append(("mean", f"μ[{S[i]}][{d}]", float(spec.means[i, d]), float(learned["means"][i, d])))
                rows.append(("std", f"σ[{S[i]}][{d}]", float(spec.stds[i, d]), float(learned["stds"][i, d])))
    if spec.mean_durations is not None and "mean_durations" in learned:
        for i in range(spec.num_states):
            rows.append(("duration", f"mean d[{S[i]}]", float(spec.mean_durations[i]),
                         float(learned["mean_durations"][i])))
    return rows


def run_lengths(states: np.ndarray, K: int) -> list[np.ndarray]:
    """Per state, the lengths of its runs in every sequence (the last run of a sequence included)."""
    out: list[list[int]] = [[] for _ in range(K)]
    for row in np.atleast_2d(states):
        change = np.flatnonzero(np.diff(row)) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [row.size]])
        for a, b in zip(starts, ends):
            out[int(row[a])].append(int(b - a))
    return [np.asarray(v, dtype=np.int64) for v in out]


# --------------------------------------------------------------------------- the trellis


@dataclass
class Trellis:
    """Forward variables and Viterbi backpointers of the first ``T`` frames (log domain).

    ``log_alpha[t, k] = log p(x_1..x_t, z_t = k)``; ``filtered[t] = softmax(log_alpha[t])``
    (p(z_t | x_1..t)); ``log_delta[t, k]`` = best path score ending in k at t; ``psi[t, k]``
    = its predecessor at t - 1 (-1 at t = 0); ``best_path[t]`` = the Viterbi path of the
    first t + 1 frames traced back from ``argmax log_delta[t]`` (row t of a [T, T] array,
    -1 beyond t).
    """
    log_alpha: np.ndarray
    filtered: np.ndarray
    log_delta: np.ndarray
    psi: np.ndarray
    best_paths: np.ndarray
    log_likelihood: float


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):  # a state no path reaches has log α = -inf, as it should
        return np.squeeze(m, axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def trellis(log_start: np.ndarray, log_trans: np.ndarray, log_lik: np.ndarray) -> Trellis:
    """The forward and Viterbi recursions on ``log_lik [T, K]`` (small T), kept per step."""
    log_start, log_trans, log_lik = (np.asarray(a, dtype=np.float64) for a in (log_start, log_trans, log_lik))
    T, K = log_lik.shape
    la = np.empty((T, K))
    ld = np.empty((T, K))
    psi = np.full((T, K), -1, dtype=np.int64)
    la[0] = log_start + log_lik[0]
    ld[0] = la[0]
    for t in range(1, T):
        la[t] = _logsumexp(la[t - 1][:, None] + log_trans, axis=0) + log_lik[t]
        cand = ld[t - 1][:, None] + log_trans
        psi[t] = np.argmax(cand, axis=0)
        ld[t] = cand[psi[t], np.arange(K)] + log_lik[t]
    filt = np.exp(la - _logsumexp(la, axis=1)[:, None])
    paths = np.full((T, T), -1, dtype=np.int64)
    for t in range(T):
        k = int(np.argmax(ld[t]))
        for s in range(t, -1, -1):
            paths[t, s] = k
            k = int(psi[s, k]) if s > 0 else k
    return Trellis(la, filt, ld, psi, paths, float(_logsumexp(la[-1], axis=0)))


def model_log_probs(model, x: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(log_start [K], log_trans [K, K], log_lik [T, K])`` of an engine HMM on frames ``x``."""
    xt = torch.as_tensor(x)
    if xt.dtype.is_floating_point:
        xt = xt.to(model.dtype)
    with torch.no_grad():
        ll = model.emission_log_likelihood(xt[None])[0]
        return (model.log_startprob().cpu().numpy(), model.log_transmat().cpu().numpy(), ll.cpu().numpy())
