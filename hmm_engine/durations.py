"""State-duration distributions for explicit-duration (semi-Markov) HMMs.

Every distribution is an ``nn.Module`` over ``K`` states and the durations ``d = 1..Dmax``
(frames), truncated to the support ``[min_duration, Dmax]`` and renormalised there:

- ``log_pmf() -> [K, Dmax]``: ``log p_k(d)`` at column ``d - 1``, exactly ``-inf`` off the support;
- ``m_step(counts [K, Dmax])``: maximise ``sum_d counts[k, d] log p_k(d)`` given expected duration
  counts (from :func:`hmm_engine.inference.hsmm.hsmm_forward_backward`); a state without counts
  keeps its parameters;
- ``num_free_parameters()``, ``mean()``, ``get_config()``.

The parametric families are exponential families *on the truncated support*, so their M-step
is the exact maximum-likelihood fit of the truncated, discretised distribution (Newton's method
on a concave objective, started from the current parameters and never accepting a worse
step — EM stays monotone even when a lot of mass sits near ``Dmax``):

- :class:`PoissonDuration`: ``d - min_duration ~ Poisson(rate)``;
- :class:`GammaDuration`: ``p(d) ∝ u^(shape-1) exp(-rate u)`` with ``u = d - min_duration + 1``,
  i.e. the gamma density evaluated at the integers (a discretised gamma);
- :class:`GaussianDuration`: ``p(d) ∝ exp(-(d - mean)^2 / (2 std^2))`` on the integers;
- :class:`NonparametricDuration`: a free histogram with Dirichlet pseudo-count smoothing.
"""

from __future__ import annotations

import math
from typing import Dict, Type

import torch
from torch import Tensor, nn

from .errors import InvalidParameterError
from .threads import single_thread

__all__ = [
    "DurationDistribution",
    "PoissonDuration",
    "GammaDuration",
    "GaussianDuration",
    "NonparametricDuration",
    "DURATION_TYPES",
    "make_duration",
]

# A state whose expected number of segments is below this keeps its parameters in the M-step.
_MIN_COUNT = 1e-8


def _expected_log_lik(counts: Tensor, log_pmf: Tensor) -> Tensor:
    """``sum_d counts * log_pmf`` per state, with ``0 * -inf = 0`` (durations never seen)."""
    return torch.where(counts > 0, counts * log_pmf, torch.zeros_like(log_pmf)).sum(-1)


def _solve_small(matrix: Tensor, rhs: Tensor) -> Tensor:
    """Batched ``matrix [A, P, P] @ x = rhs [A, P]`` for P <= 2 in closed form (a LAPACK call
    per Newton step costs more than the whole fit for these sizes)."""
    if matrix.shape[-1] == 1:
        return rhs / matrix[:, 0]
    if matrix.shape[-1] == 2:
        a, b, c, d = matrix[:, 0, 0], matrix[:, 0, 1], matrix[:, 1, 0], matrix[:, 1, 1]
        det = a * d - b * c
        x0 = (d * rhs[:, 0] - b * rhs[:, 1]) / det
        x1 = (a * rhs[:, 1] - c * rhs[:, 0]) / det
        return torch.stack([x0, x1], -1)
    return torch.linalg.solve(matrix, rhs[..., None])[..., 0]


class DurationDistribution(nn.Module):
    """Base class: ``num_states`` K, durations ``1..max_duration`` with support from ``min_duration``."""

    kind = "base"

    def __init__(self, num_states: int, max_duration: int, min_duration: int = 1, dtype: torch.dtype = torch.float32):
        super().__init__()
        if int(num_states) < 1:
            raise InvalidParameterError(f"num_states must be >= 1, got {num_states}")
        if int(min_duration) < 1:
            raise InvalidParameterError(f"min_duration must be >= 1, got {min_duration}")
        if int(max_duration) < int(min_duration):
            raise InvalidParameterError(
                f"max_duration ({max_duration}) must be >= min_duration ({min_duration})"
            )
        self.num_states, self.max_duration, self.min_duration = int(num_states), int(max_duration), int(min_duration)
        self._dtype = dtype

    # ------------------------------------------------------------------ helpers
    @property
    def support_size(self) -> int:
        return self.max_duration - self.min_duration + 1

    def durations(self, device=None, dtype=torch.float64) -> Tensor:
        """``[Dmax]``: 1, 2, ..., Dmax."""
        return torch.arange(1, self.max_duration + 1, device=device, dtype=dtype)

    def _support(self, device=None) -> Tensor:
        return torch.arange(1, self.max_duration + 1, device=device) >= self.min_duration

    def _check_counts(self, counts: Tensor) -> Tensor:
        counts = torch.as_tensor(counts)
        if counts.shape != (self.num_states, self.max_duration):
            raise InvalidParameterError(
                f"duration counts must be [{self.num_states}, {self.max_duration}], got {list(counts.shape)}"
            )
        if not torch.isfinite(counts).all() or (counts < 0).any():
            raise InvalidParameterError("duration counts must be finite and non-negative")
        # Counts off the support come only from rounding; they carry no information.
        return counts.to(torch.float64) * self._support(counts.device)

    # ------------------------------------------------------------------ interface
    def log_pmf(self) -> Tensor:  # pragma: no cover - abstract
        """``[K, Dmax]`` log-probabilities of durations 1..Dmax (``-inf`` off the support)."""
        raise NotImplementedError

    def m_step(self, counts: Tensor) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def num_free_parameters(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def pmf(self) -> Tensor:
        """``[K, Dmax]`` probabilities."""
        return self.log_pmf().exp()

    def mean(self) -> Tensor:
        """``[K]`` expected duration in frames."""
        pmf = self.log_pmf().to(torch.float64).exp()
        return (pmf * self.durations(pmf.device)).sum(-1).to(self._param_dtype())

    def log_survival(self) -> Tensor:
        """``[K, Dmax]``: ``log P(D >= d)``."""
        return torch.logcumsumexp(self.log_pmf().flip(-1), -1).flip(-1)

    def get_config(self) -> dict:
        return dict(
            type=self.kind,
            num_states=self.num_states,
            max_duration=self.max_duration,
            min_duration=self.min_duration,
        )

    def _param_dtype(self) -> torch.dtype:
        for buf in self.buffers():
            return buf.dtype
        return self._dtype

    def extra_repr(self) -> str:
        return f"num_states={self.num_states}, min_duration={self.min_duration}, max_duration={self.max_duration}"


class _ExponentialFamilyDuration(DurationDistribution):
    """``log p_k(d) = natural[k] . features(d) + base(d) - log Z_k`` on the support.

    Subclasses define ``_features(d) -> [Dmax, P]`` and ``_base(d) -> [Dmax]``; the parameters
    are the natural parameters ``natural [K, P]`` (a buffer), from which the familiar
    parameters are derived.
    """

    num_natural = 1

    def __init__(self, num_states, max_duration, min_duration=1, dtype=torch.float32):
        super().__init__(num_states, max_duration, min_duration, dtype)
        self.register_buffer("natural", torch.zeros(self.num_states, self.num_natural, dtype=dtype))

    def _features(self, d: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _base(self, d: Tensor) -> Tensor:
        return torch.zeros_like(d)

    def _design(self, device):
        d = self.durations(device)
        support = self._support(device)
        feats = self._features(d)  # [Dmax, P] float64
        base = self._base(d).masked_fill(~support, -math.inf)
        return feats, base, support

    def _log_pmf64(self, natural: Tensor) -> Tensor:
        feats, base, _ = self._design(natural.device)
        logits = natural.to(torch.float64) @ feats.T + base  # [K, Dmax]
        return logits - torch.logsumexp(logits, -1, keepdim=True)

    def log_pmf(self) -> Tensor:
        return self._log_pmf64(self.natural).to(self.natural.dtype)

    def num_free_parameters(self) -> int:
        # A one-point support leaves nothing to estimate.
        return self.num_states * min(self.num_natural, self.support_size - 1)

    def m_step(self, counts: Tensor, max_iter: int = 50, tol: float = 1e-10) -> None:
        """Exact truncated maximum likelihood by damped Newton ascent, per state in parallel.

        The objective ``sum_d c_d log p(d)`` is concave in the natural parameters with
        gradient ``N (mean_data(phi) - E_model[phi])`` and Hessian ``-N Cov_model(phi)``.
        Steps that do not increase the objective are halved (at most 30 times), so the
        result is never worse than the current parameters (a valid generalised EM step).
        Stops when the Newton decrement (predicted gain per segment) falls below 1e-12.
        """
        with single_thread():
            self._newton(self._check_counts(counts).to(self.natural.device), max_iter, tol)

    def _newton(self, counts: Tensor, max_iter: int, tol: float) -> None:
        total = counts.sum(-1)
        active = total > _MIN_COUNT
        if not active.any():
            return
        feats, base, _ = self._design(counts.device)
        theta = self.natural.to(torch.float64)[active].clone()
        c = counts[active]
        n = total[active][:, None]
        target = (c @ feats) / n  # [A, P] data means of the features
        eye = torch.eye(self.num_natural, dtype=torch.float64, device=counts.device)

        def objective(th):
            return _expected_log_lik(c, self._log_pmf_from(th, feats, base)) / n[:, 0]

        current = objective(theta)
        done = torch.zeros_like(current, dtype=torch.bool)
        for _ in range(max_iter):
            logp = self._log_pmf_from(theta, feats, base)
            p = logp.exp()
            mean = p @ feats  # [A, P]
            centred = feats[None] - mean[:, None, :]  # [A, Dmax, P]
            cov = torch.einsum("ad,adp,adq->apq", p, centred, centred)
            grad = target - mean
            done |= (grad.abs() <= tol * (1.0 + target.abs())).all(-1)
            if done.all():
                break
            # A tiny ridge keeps the system solvable when the support is too short for P
            # parameters (e.g. two durations for a Gaussian).
            ridge = 1e-9 * (cov.diagonal(dim1=-2, dim2=-1).sum(-1) + 1e-12)
            step = _solve_small(cov + ridge[:, None, None] * eye, grad)
            # Newton decrement: the predicted gain per segment; below 1e-12 we are done.
            done |= (grad * step).sum(-1) < 1e-12
            if done.all():
                break
            scale = torch.ones_like(current)
            accepted = done.clone()
            for _ in range(30):
                trial = theta + scale[:, None] * step
                value = objective(trial)
                good = (value > current) & ~accepted & torch.isfinite(value)
                theta = torch.where(good[:, None], trial, theta)
                current = torch.where(good, value, current)
                accepted |= good
                if accepted.all():
                    break
                scale = scale * 0.5
            # No improving step along Newton's direction: at the optimum up to rounding.
            done |= ~accepted
        with torch.no_grad():
            natural = self.natural.clone()
            natural[active] = theta.to(natural.dtype)
            self.natural.copy_(natural)

    def _log_pmf_from(self, theta, feats, base):
        logits = theta @ feats.T + base
        return logits - torch.logsumexp(logits, -1, keepdim=True)

    def set_from_counts(self, counts: Tensor) -> None:
        """Alias of :meth:`m_step` used for data-driven initialisation."""
        self.m_step(counts)


class PoissonDuration(_ExponentialFamilyDuration):
    """Shifted Poisson: ``d - min_duration ~ Poisson(rate_k)``, truncated at ``max_duration``.

    ``rate`` ``[K]``; the mean duration is about ``min_duration + rate`` when ``Dmax`` is well
    above it. The M-step's first Newton step from ``rate`` is the closed-form update
    ``rate = mean(d) - min_duration`` corrected for truncation; it converges in a few steps.
    """

    kind = "poisson"
    num_natural = 1

    def __init__(self, num_states, max_duration, min_duration=1, rate=None, dtype=torch.float32):
        super().__init__(num_states, max_duration, min_duration, dtype)
        if rate is None:
            rate = max((self.max_duration - self.min_duration) / 2.0, 0.5)
        self.rate = rate

    def _features(self, d):
        return (d - self.min_duration).clamp_min(0)[:, None]

    def _base(self, d):
        return -torch.lgamma((d - self.min_duration).clamp_min(0) + 1)

    @property
    def rate(self) -> Tensor:
        """``[K]`` Poisson rate of ``d - min_duration``."""
        return self.natural[:, 0].exp()

    @rate.setter
    def rate(self, value) -> None:
        value = torch.as_tensor(value, dtype=torch.float64).expand(self.num_states)
        if not torch.isfinite(value).all() or (value <= 0).any():
            raise InvalidParameterError("Poisson rates must be positive and finite")
        with torch.no_grad():
            self.natural.copy_(value.log()[:, None].to(self.natural.dtype))

    def m_step(self, counts: Tensor, max_iter: int = 50, tol: float = 1e-10) -> None:
        counts = self._check_counts(counts).to(self.natural.device)
        total = counts.sum(-1)
        # Closed-form (untruncated) start: rate = mean excess duration. Exact when the
        # truncation at Dmax is negligible; Newton then removes the truncation bias.
        excess = (counts * self._features(self.durations(counts.device))[:, 0]).sum(-1)
        start = (excess / total.clamp_min(_MIN_COUNT)).clamp_min(1e-6)
        before = self.natural.clone()
        closed_form = torch.where((total > _MIN_COUNT)[:, None], start.log()[:, None], before.to(torch.float64))
        with torch.no_grad():
            self.natural.copy_(closed_form.to(before.dtype))
        # Keep the closed form only where it is at least as good as the old parameters (GEM).
        old_ll = _expected_log_lik(counts, self._log_pmf64(before))
        new_ll = _expected_log_lik(counts, self._log_pmf64(self.natural))
        with torch.no_grad():
            self.natural.copy_(torch.where((new_ll >= old_ll)[:, None], self.natural, before))
        super().m_step(counts, max_iter, tol)


class GammaDuration(_ExponentialFamilyDuration):
    """Discretised gamma: ``p(d) ∝ u^(shape-1) exp(-rate u)``, ``u = d - min_duration + 1``.

    ``shape`` and ``rate`` ``[K]`` are the natural parameters of that family on the truncated
    support (``shape - 1`` and ``-rate``); the M-step is the exact maximum-likelihood fit by
    Newton's method. Because the support is finite, a fitted ``rate`` may come out ``<= 0``
    (mass piling up at ``Dmax``): a sign that ``max_duration`` is too small.
    """

    kind = "gamma"
    num_natural = 2

    def __init__(self, num_states, max_duration, min_duration=1, shape=None, rate=None, dtype=torch.float32):
        super().__init__(num_states, max_duration, min_duration, dtype)
        if shape is None:
            shape = 2.0
        if rate is None:
            # Mean shape / rate at the middle of the support.
            rate = 2.0 / max((self.support_size + 1) / 2.0, 1.0)
        self.set_parameters(shape, rate)

    def _features(self, d):
        u = (d - self.min_duration + 1).clamp_min(1)
        return torch.stack([u.log(), u], -1)

    def set_parameters(self, shape, rate) -> None:
        shape = torch.as_tensor(shape, dtype=torch.float64).expand(self.num_states)
        rate = torch.as_tensor(rate, dtype=torch.float64).expand(self.num_states)
        if not (torch.isfinite(shape).all() and torch.isfinite(rate).all()) or (shape <= 0).any():
            raise InvalidParameterError("gamma shape must be positive and rate finite")
        with torch.no_grad():
            self.natural.copy_(torch.stack([shape - 1, -rate], -1).to(self.natural.dtype))

    @property
    def shape(self) -> Tensor:
        """``[K]`` gamma shape."""
        return self.natural[:, 0] + 1

    @property
    def rate(self) -> Tensor:
        """``[K]`` gamma rate (per frame)."""
        return -self.natural[:, 1]


class GaussianDuration(_ExponentialFamilyDuration):
    """Discretised Gaussian: ``p(d) ∝ exp(-(d - loc)^2 / (2 scale^2))`` on the truncated support.

    ``loc`` and ``scale`` ``[K]`` (frames) are derived from the natural parameters; the
    M-step is the exact truncated maximum-likelihood fit.
    """

    kind = "gaussian"
    num_natural = 2

    def __init__(self, num_states, max_duration, min_duration=1, loc=None, scale=None, dtype=torch.float32):
        super().__init__(num_states, max_duration, min_duration, dtype)
        if loc is None:
            loc = (self.min_duration + self.max_duration) / 2.0
        if scale is None:
            scale = max(self.support_size / 4.0, 1.0)
        self.set_parameters(loc, scale)

    def _features(self, d):
        # Centred and scaled so the Newton system stays well conditioned for long durations.
        centre, half = self._centre()
        z = (d - centre) / half
        return torch.stack([z, z * z], -1)

    def _centre(self):
        return (self.min_duration + self.max_duration) / 2.0, max(self.support_size / 2.0, 1.0)

    def set_parameters(self, loc, scale) -> None:
        loc = torch.as_tensor(loc, dtype=torch.float64).expand(self.num_states)
        scale = torch.as_tensor(scale, dtype=torch.float64).expand(self.num_states)
        if not (torch.isfinite(loc).all() and torch.isfinite(scale).all()) or (scale <= 0).any():
            raise InvalidParameterError("Gaussian duration loc must be finite and scale positive")
        centre, half = self._centre()
        mu, sd = (loc - centre) / half, scale / half
        with torch.no_grad():
            self.natural.copy_(torch.stack([mu / sd**2, -0.5 / sd**2], -1).to(self.natural.dtype))

    @property
    def loc(self) -> Tensor:
        """``[K]`` centre of the (untruncated) Gaussian, in frames."""
        centre, half = self._centre()
        a, b = self.natural[:, 0].double(), self.natural[:, 1].double()
        return (centre + half * (-a / (2 * b))).to(self.natural.dtype)

    @property
    def scale(self) -> Tensor:
        """``[K]`` standard deviation (frames); ``inf`` if the fit is flat or U-shaped."""
        _, half = self._centre()
        b = self.natural[:, 1].double()
        sd = torch.where(b < 0, half * (-0.5 / b.clamp_max(-1e-300)).sqrt(), torch.full_like(b, math.inf))
        return sd.to(self.natural.dtype)


class NonparametricDuration(DurationDistribution):
    """A free duration histogram per state; M-step ``p(d) ∝ counts(d) + pseudocount``.

    ``pseudocount`` (default 0.1 per support point) keeps unseen durations possible, which
    matters early in EM; with ``pseudocount = 0`` the M-step is exact maximum likelihood.
    """

    kind = "nonparametric"

    def __init__(self, num_states, max_duration, min_duration=1, pseudocount: float = 0.1, probs=None, dtype=torch.float32):
        super().__init__(num_states, max_duration, min_duration, dtype)
        if pseudocount < 0:
            raise InvalidParameterError("pseudocount must be >= 0")
        self.pseudocount = float(pseudocount)
        support = self._support()
        uniform = support.to(dtype) / support.sum()
        self.register_buffer("probs", uniform.expand(self.num_states, -1).clone())
        if probs is not None:
            self.set_probs(probs)

    def set_probs(self, probs) -> None:
        probs = torch.as_tensor(probs, dtype=torch.float64)
        if probs.shape != (self.num_states, self.max_duration):
            raise InvalidParameterError(f"probs must be [{self.num_states}, {self.max_duration}]")
        if not torch.isfinite(probs).all() or (probs < 0).any():
            raise InvalidParameterError("duration probabilities must be finite and non-negative")
        if (probs[:, ~self._support()] > 0).any():
            raise InvalidParameterError(f"durations below min_duration={self.min_duration} must have probability 0")
        if not torch.allclose(probs.sum(-1), torch.ones(self.num_states, dtype=torch.float64), atol=1e-5):
            raise InvalidParameterError("every row of duration probabilities must sum to 1")
        with torch.no_grad():
            self.probs.copy_((probs / probs.sum(-1, keepdim=True)).to(self.probs.dtype))

    def log_pmf(self) -> Tensor:
        return self.probs.log()

    def num_free_parameters(self) -> int:
        return self.num_states * (self.support_size - 1)

    def m_step(self, counts: Tensor) -> None:
        counts = self._check_counts(counts).to(self.probs.device)
        smoothed = counts + self.pseudocount * self._support(counts.device)
        total = smoothed.sum(-1, keepdim=True)
        keep = (counts.sum(-1, keepdim=True) <= _MIN_COUNT) | (total <= 0)
        new = torch.where(keep, self.probs.to(torch.float64), smoothed / total.clamp_min(1e-300))
        with torch.no_grad():
            self.probs.copy_(new.to(self.probs.dtype))

    def set_from_counts(self, counts: Tensor) -> None:
        self.m_step(counts)

    def get_config(self) -> dict:
        return dict(super().get_config(), pseudocount=self.pseudocount)


DURATION_TYPES: Dict[str, Type[DurationDistribution]] = {
    "poisson": PoissonDuration,
    "gamma": GammaDuration,
    "gaussian": GaussianDuration,
    "nonparametric": NonparametricDuration,
}


def make_duration(
    kind: str, num_states: int, max_duration: int, min_duration: int = 1, dtype: torch.dtype = torch.float32, **kwargs
) -> DurationDistribution:
    """Build a duration module by name ("poisson", "gamma", "gaussian", "nonparametric")."""
    kind = str(kind).strip().lower()
    if kind not in DURATION_TYPES:
        raise InvalidParameterError(f"duration must be one of {sorted(DURATION_TYPES)}, got {kind!r}")
    return DURATION_TYPES[kind](num_states, max_duration, min_duration, dtype=dtype, **kwargs)


def duration_from_config(config: dict, dtype: torch.dtype = torch.float32) -> DurationDistribution:
    """Inverse of ``get_config`` (parameters come from the state dict)."""
    config = dict(config)
    kind = config.pop("type")
    return make_duration(kind, dtype=dtype, **config)
