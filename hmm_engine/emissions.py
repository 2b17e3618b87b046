"""Emission modules: ``x [B, T, D] -> log p(x_t | z_t = k)  [B, T, K]``.

Each emission is an ``nn.Module`` with the same small interface, which is all the
models and the EM loop need:

- ``log_likelihood(x)``: ``[B, T, ...] -> [B, T, K]`` (also ``forward``);
- ``initialize(x_flat, generator, groups=None)``: data-driven start (k-means, or the
  given per-frame state groups, e.g. a uniform segmentation for left-to-right models);
- ``accumulate(x_flat [N, D], weights [N, K]) -> dict``: sufficient statistics that
  *add up* over batches and processes (so ``torch.distributed.all_reduce`` of each
  entry gives the corpus statistics);
- ``m_step(stats)``: maximise; states with no weight keep their parameters;
- ``num_free_parameters()``, ``sample(states, generator)``, ``get_config()``.

Conventions follow hmmlearn: ``covars`` are variances ``[K, D]`` for "diag",
``[K]`` for "spherical", matrices ``[K, D, D]`` for "full" and ``[D, D]`` for "tied".
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import numpy as np
import torch
from torch import Tensor, nn

from .errors import InvalidInputError, InvalidParameterError

COVARIANCE_TYPES = ("diag", "full", "spherical", "tied")
_LOG_2PI = math.log(2.0 * math.pi)
# Frames per chunk for full-covariance work, which makes [K, chunk, D] temporaries.
_CHUNK = 8192

Stats = Dict[str, Tensor]


def as_tensor(value, like: Tensor) -> Tensor:
    """``value`` (tensor, array, nested lists) as a tensor of ``like``'s dtype and device,
    copied so that read-only numpy inputs (e.g. hmmlearn attributes) are safe."""
    if not isinstance(value, Tensor):
        value = torch.from_numpy(np.array(value, dtype=np.float64))
    return value.to(dtype=like.dtype, device=like.device)


def _draw_device(generator: Optional[torch.Generator], like: Tensor) -> torch.device:
    """Random draws happen where the generator lives (a CPU generator cannot drive CUDA
    sampling); results then move to ``like``'s device."""
    return generator.device if generator is not None else like.device


class Emission(nn.Module):
    """Base class: ``num_states`` K, ``event_shape`` of one observation."""

    num_states: int
    event_dims: int = 1  # 1 for vectors [D], 0 for scalar symbols

    def forward(self, x: Tensor) -> Tensor:
        return self.log_likelihood(x)

    def log_likelihood(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _stat_dtype(self) -> torch.dtype:
        # Sufficient statistics in float64: sums of squares over many frames cancel badly in float32.
        return torch.float64


def _kmeans(
    x: Tensor, k: int, generator: torch.Generator, iters: int = 20
) -> Tensor:
    """k-means++ seeding then Lloyd iterations. ``x [N, D] -> labels [N]``."""
    N = x.shape[0]
    xd = x.double()
    draw = _draw_device(generator, x)
    first = torch.randint(N, (1,), generator=generator, device=draw).item()
    centres = [xd[first]]
    d2 = ((xd - centres[0]) ** 2).sum(-1)
    for _ in range(1, k):
        total = d2.sum()
        if total <= 0:  # fewer distinct points than clusters: take random ones
            idx = torch.randint(N, (1,), generator=generator, device=draw).item()
        else:
            idx = torch.multinomial((d2 / total).to(draw), 1, generator=generator).item()
        centres.append(xd[idx])
        d2 = torch.minimum(d2, ((xd - xd[idx]) ** 2).sum(-1))
    c = torch.stack(centres)
    labels = torch.zeros(N, dtype=torch.long, device=x.device)
    for _ in range(iters):
        dist = (xd * xd).sum(-1, keepdim=True) - 2 * xd @ c.T + (c * c).sum(-1)
        new = dist.argmin(-1)
        if _ > 0 and torch.equal(new, labels):
            break
        labels = new
        counts = torch.bincount(labels, minlength=k).to(xd.dtype)
        sums = torch.zeros_like(c).index_add_(0, labels, xd)
        keep = counts > 0
        c[keep] = sums[keep] / counts[keep].unsqueeze(-1)
    return labels


class GaussianEmission(Emission):
    """One Gaussian per state (or per component, when used inside a mixture).

    Args:
        num_states: K (number of Gaussians).
        obs_dim: D.
        covariance_type: "diag" | "full" | "spherical" | "tied".
        min_covar: floor on variances (diag/spherical) or added to the diagonal (full/tied).
        num_tied_groups: for "tied", how many covariance matrices are shared; Gaussian c uses
            matrix ``c // (K / groups)`` (a mixture ties per state: groups = number of states).
    """

    def __init__(
        self,
        num_states: int,
        obs_dim: int,
        covariance_type: str = "diag",
        min_covar: float = 1e-3,
        num_tied_groups: int = 1,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        if covariance_type not in COVARIANCE_TYPES:
            raise InvalidParameterError(
                f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}"
            )
        if num_states < 1 or obs_dim < 1:
            raise InvalidParameterError("num_states and obs_dim must be >= 1")
        if min_covar < 0:
            raise InvalidParameterError("min_covar must be >= 0")
        if covariance_type == "tied" and num_states % num_tied_groups:
            raise InvalidParameterError("num_states must be a multiple of num_tied_groups")
        self.num_states, self.obs_dim = int(num_states), int(obs_dim)
        self.covariance_type, self.min_covar = covariance_type, float(min_covar)
        self.num_tied_groups = int(num_tied_groups) if covariance_type == "tied" else 1
        K, D = self.num_states, self.obs_dim
        self.means_param = nn.Parameter(torch.zeros(K, D, dtype=dtype))
        # Variances through their log (diag/spherical), covariances through a Cholesky factor
        # (full/tied): any real value is then a valid parameter for gradient training.
        if covariance_type == "diag":
            self.cov_param = nn.Parameter(torch.zeros(K, D, dtype=dtype))
        elif covariance_type == "spherical":
            self.cov_param = nn.Parameter(torch.zeros(K, dtype=dtype))
        elif covariance_type == "full":
            self.cov_param = nn.Parameter(torch.eye(D, dtype=dtype).repeat(K, 1, 1))
        else:
            self.cov_param = nn.Parameter(torch.eye(D, dtype=dtype).repeat(self.num_tied_groups, 1, 1))

    # ------------------------------------------------------------------ parameters
    @property
    def means(self) -> Tensor:
        """``[K, D]``."""
        return self.means_param.detach().clone()

    @means.setter
    def means(self, value) -> None:
        value = as_tensor(value, self.means_param)
        if value.shape != (self.num_states, self.obs_dim):
            raise InvalidParameterError(
                f"means must be [{self.num_states}, {self.obs_dim}], got {tuple(value.shape)}"
            )
        if not torch.isfinite(value).all():
            raise InvalidParameterError("means must be finite")
        with torch.no_grad():
            self.means_param.copy_(value)

    def _tril(self) -> Tensor:
        return torch.tril(self.cov_param)

    @property
    def covars(self) -> Tensor:
        """Variances ``[K, D]`` (diag), ``[K]`` (spherical), ``[K, D, D]`` (full), ``[D, D]`` (tied)."""
        with torch.no_grad():
            if self.covariance_type in ("diag", "spherical"):
                return self.cov_param.exp().clone()
            L = self._tril()
            cov = L @ L.transpose(-1, -2)
            return cov[0] if self.covariance_type == "tied" and self.num_tied_groups == 1 else cov

    @covars.setter
    def covars(self, value) -> None:
        value = as_tensor(value, self.cov_param)
        K, D = self.num_states, self.obs_dim
        expected = {
            "diag": (K, D),
            "spherical": (K,),
            "full": (K, D, D),
            "tied": (D, D) if self.num_tied_groups == 1 else (self.num_tied_groups, D, D),
        }[self.covariance_type]
        if value.shape != expected:
            raise InvalidParameterError(
                f"covars for {self.covariance_type!r} must be {list(expected)}, got {list(value.shape)}"
            )
        if not torch.isfinite(value).all():
            raise InvalidParameterError("covars must be finite")
        with torch.no_grad():
            if self.covariance_type in ("diag", "spherical"):
                if (value <= 0).any():
                    raise InvalidParameterError("variances must be positive")
                self.cov_param.copy_(value.log())
                return
            mats = value.reshape(-1, D, D)
            if not torch.allclose(mats, mats.transpose(-1, -2), rtol=1e-5, atol=1e-6):
                raise InvalidParameterError("covariance matrices must be symmetric")
            L, info = torch.linalg.cholesky_ex(mats.double())
            if (info != 0).any():
                raise InvalidParameterError(
                    f"covariance matrices {(info != 0).nonzero().flatten().tolist()} are not positive definite"
                )
            self.cov_param.copy_(L.to(self.cov_param.dtype))

    def num_free_parameters(self) -> int:
        K, D = self.num_states, self.obs_dim
        cov = {
            "diag": K * D,
            "spherical": K,
            "full": K * D * (D + 1) // 2,
            "tied": self.num_tied_groups * D * (D + 1) // 2,
        }[self.covariance_type]
        return K * D + cov

    def get_config(self) -> dict:
        return dict(
            type="gaussian",
            num_states=self.num_states,
            obs_dim=self.obs_dim,
            covariance_type=self.covariance_type,
            min_covar=self.min_covar,
            num_tied_groups=self.num_tied_groups,
        )

    # ------------------------------------------------------------------ likelihood
    def log_likelihood(self, x: Tensor) -> Tensor:
        """``x [..., D] -> [..., K]`` log N(x; mean_k, cov_k)."""
        if x.shape[-1] != self.obs_dim:
            raise InvalidInputError(f"observations have dimension {x.shape[-1]}, the model expects {self.obs_dim}")
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.obs_dim).to(self.means_param.dtype)
        out = self._log_likelihood_flat(flat)
        return out.reshape(*lead, self.num_states)

    def _log_likelihood_flat(self, x: Tensor) -> Tensor:
        mu = self.means_param
        D = self.obs_dim
        # Centre on the mean of the means: the expanded quadratic form below then
        # subtracts numbers of the size of the spread, not of the offset.
        centre = mu.detach().mean(0)
        x = x - centre
        mu = mu - centre
        if self.covariance_type in ("diag", "spherical"):
            log_var = self.cov_param if self.covariance_type == "diag" else self.cov_param.unsqueeze(-1).expand(-1, D)
            prec = (-log_var).exp()  # [K, D]
            # |x-m|^2/v expanded into two fused multiply-adds (fewer [N, D] temporaries).
            quad = torch.addmm((mu * mu * prec).sum(-1), x, (mu * prec).T, alpha=-2.0)
            quad = torch.addmm(quad, x.square(), prec.T)
            return -0.5 * (D * _LOG_2PI + log_var.sum(-1) + quad)
        L = self._tril()
        low = L.dtype in (torch.float16, torch.bfloat16)
        if low:  # the [G, D, D] factor work in float32 (no half triangular solve on CPU); frames stay half
            L = L.float()
        log_det = 2.0 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1).abs()).sum(-1)  # [G]
        eye = torch.eye(D, dtype=L.dtype, device=L.device)
        # U = L^-T, so (x-m)^T S^-1 (x-m) = |(x-m) U|^2.
        U = torch.linalg.solve_triangular(L, eye.expand_as(L), upper=False).transpose(-1, -2)
        if low:
            U, log_det = U.to(x.dtype), log_det.to(x.dtype)
        if self.covariance_type == "tied":
            group = torch.arange(self.num_states, device=x.device) // (self.num_states // self.num_tied_groups)
            if self.num_tied_groups == 1:
                y = x @ U[0]  # [N, D]
                m = mu @ U[0]  # [K, D]
                quad = (y * y).sum(-1, keepdim=True) - 2.0 * y @ m.T + (m * m).sum(-1)
                return -0.5 * (D * _LOG_2PI + log_det[0] + quad)
            Uk, ld = U[group], log_det[group]
        else:
            Uk, ld = U, log_det
        mk = (mu.unsqueeze(1) @ Uk).squeeze(1)  # [K, D]
        outs = []
        for s in range(0, x.shape[0], _CHUNK):
            y = torch.matmul(x[s : s + _CHUNK].unsqueeze(0), Uk) - mk.unsqueeze(1)  # [K, n, D]
            outs.append((y * y).sum(-1).T)
        quad = torch.cat(outs, 0)
        return -0.5 * (D * _LOG_2PI + ld + quad)

    # ------------------------------------------------------------------ EM
    def accumulate(self, x: Tensor, weights: Tensor) -> Stats:
        """Sufficient statistics of frames ``x [N, D]`` with state weights ``[N, K]``."""
        dt = self._stat_dtype()
        xd, w = x.to(dt), weights.to(dt)
        stats = {"n": w.sum(0), "x": w.T @ xd}
        if self.covariance_type in ("diag", "spherical"):
            stats["xx"] = w.T @ (xd * xd)  # [K, D]
        elif self.covariance_type == "full":
            xx = torch.zeros(self.num_states, self.obs_dim, self.obs_dim, dtype=dt, device=x.device)
            for s in range(0, xd.shape[0], _CHUNK):
                xs, ws = xd[s : s + _CHUNK], w[s : s + _CHUNK]
                xx += torch.einsum("nk,nd,ne->kde", ws, xs, xs)
            stats["xx"] = xx
        else:
            G = self.num_tied_groups
            gw = w.reshape(w.shape[0], G, -1).sum(-1)  # [N, G]
            stats["xx"] = torch.einsum("ng,nd,ne->gde", gw, xd, xd)
        return stats

    def m_step(self, stats: Stats) -> None:
        n, sx, sxx = stats["n"], stats["x"], stats["xx"]
        seen = n > 1e-10
        nz = n.clamp_min(1e-10).unsqueeze(-1)
        mean = sx / nz
        with torch.no_grad():
            dt = self.means_param.dtype
            new_means = torch.where(seen.unsqueeze(-1), mean, self.means_param.to(mean.dtype))
            if self.covariance_type == "diag":
                var = (sxx / nz - mean * mean).clamp_min(self.min_covar)
                old = self.cov_param.exp().to(var.dtype)
                self.cov_param.copy_(torch.where(seen.unsqueeze(-1), var, old).log().to(dt))
            elif self.covariance_type == "spherical":
                var = ((sxx / nz - mean * mean).mean(-1)).clamp_min(self.min_covar)
                old = self.cov_param.exp().to(var.dtype)
                self.cov_param.copy_(torch.where(seen, var, old).log().to(dt))
            elif self.covariance_type == "full":
                D = self.obs_dim
                eye = torch.eye(D, dtype=mean.dtype, device=mean.device)
                cov = sxx / nz.unsqueeze(-1) - mean.unsqueeze(-1) * mean.unsqueeze(-2) + self.min_covar * eye
                L, info = torch.linalg.cholesky_ex(cov)
                ok = seen & (info == 0)
                self.cov_param.copy_(torch.where(ok.view(-1, 1, 1), L, self._tril().to(L.dtype)).to(dt))
            else:
                G, D = self.num_tied_groups, self.obs_dim
                per = self.num_states // G
                ng = n.reshape(G, per).sum(-1)
                outer = (n.view(-1, 1, 1) * mean.unsqueeze(-1) * mean.unsqueeze(-2)).reshape(G, per, D, D).sum(1)
                eye = torch.eye(D, dtype=mean.dtype, device=mean.device)
                cov = (sxx - outer) / ng.clamp_min(1e-10).view(-1, 1, 1) + self.min_covar * eye
                L, info = torch.linalg.cholesky_ex(cov)
                ok = (ng > 1e-10) & (info == 0)
                self.cov_param.copy_(torch.where(ok.view(-1, 1, 1), L, self._tril().to(L.dtype)).to(dt))
            self.means_param.copy_(new_means.to(dt))

    def initialize(self, x: Tensor, generator: torch.Generator, groups: Optional[Tensor] = None) -> None:
        """Start from data: k-means clusters, or the given per-frame groups ``[N]`` in [0, K)."""
        K, N = self.num_states, x.shape[0]
        if N < K:
            raise InvalidInputError(f"cannot initialise {K} states from only {N} frames")
        labels = groups if groups is not None else _kmeans(x, K, generator)
        weights = torch.nn.functional.one_hot(labels, K).to(x.dtype)
        self.initialize_from_stats(self.grouped_stats(x, weights), generator)

    def grouped_stats(self, x: Tensor, weights: Tensor) -> Stats:
        """Statistics of hard (or soft) groups of frames, summable like :meth:`accumulate`;
        ``n_all``/``x_all``/``xx_all`` hold the global statistics for groups left empty."""
        stats = self.accumulate(x, weights)
        ones = torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)
        glob = GaussianEmission(1, self.obs_dim, "full", dtype=x.dtype).to(x.device).accumulate(x, ones)
        stats.update(n_all=glob["n"], x_all=glob["x"], xx_all=glob["xx"])
        return stats

    def initialize_from_stats(self, stats: Stats, generator: Optional[torch.Generator] = None) -> None:
        """M-step on group statistics; a group with (almost) no frames starts from the global ones."""
        stats = {k: v.clone() for k, v in stats.items()}
        n_all = stats.pop("n_all")
        x_all, xx_all = stats.pop("x_all")[0], stats.pop("xx_all")[0]
        empty = stats["n"] < 1
        if empty.any():
            stats["n"][empty] = 1.0
            stats["x"][empty] = x_all / n_all
            cov = xx_all / n_all
            if self.covariance_type in ("diag", "spherical"):
                stats["xx"][empty] = torch.diagonal(cov)
            elif self.covariance_type == "full":
                stats["xx"][empty] = cov
        self.m_step(stats)

    def sample(self, states: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """Draw one observation per entry of ``states [N]`` -> ``[N, D]``."""
        with torch.no_grad():
            mu = self.means_param[states]
            z = torch.randn(states.shape[0], self.obs_dim, generator=generator, dtype=mu.dtype,
                            device=_draw_device(generator, mu)).to(mu.device)
            if self.covariance_type in ("diag", "spherical"):
                std = (0.5 * self.cov_param).exp()
                std = std[states] if self.covariance_type == "diag" else std[states].unsqueeze(-1)
                return mu + z * std
            L = self._tril()
            if self.covariance_type == "tied":
                group = states // (self.num_states // self.num_tied_groups)
                L = L[group]
            else:
                L = L[states]
            return mu + (L @ z.unsqueeze(-1)).squeeze(-1)


class MixtureGaussianEmission(Emission):
    """A mixture of M Gaussians per state: ``log p(x|k) = logsumexp_m log w_km + log N_km(x)``.

    ``covars`` follow hmmlearn's GMMHMM: ``[K, M, D]`` diag, ``[K, M]`` spherical,
    ``[K, M, D, D]`` full, ``[K, D, D]`` tied (one matrix per state).
    """

    def __init__(
        self,
        num_states: int,
        obs_dim: int,
        num_mixtures: int,
        covariance_type: str = "diag",
        min_covar: float = 1e-3,
        weight_pseudocount: float = 0.0,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        if num_mixtures < 1:
            raise InvalidParameterError("num_mixtures must be >= 1")
        self.num_states, self.obs_dim, self.num_mixtures = int(num_states), int(obs_dim), int(num_mixtures)
        self.covariance_type = covariance_type
        self.weight_pseudocount = float(weight_pseudocount)
        self.components = GaussianEmission(
            num_states * num_mixtures, obs_dim, covariance_type, min_covar,
            num_tied_groups=num_states, dtype=dtype,
        )
        self.weight_logits = nn.Parameter(torch.full((num_states, num_mixtures), -math.log(num_mixtures), dtype=dtype))

    @property
    def min_covar(self) -> float:
        return self.components.min_covar

    def _log_weights(self) -> Tensor:
        return torch.log_softmax(self.weight_logits, dim=-1)

    @property
    def weights(self) -> Tensor:
        """``[K, M]`` mixture weights."""
        return self._log_weights().detach().exp()

    @weights.setter
    def weights(self, value) -> None:
        value = as_tensor(value, self.weight_logits)
        if value.shape != (self.num_states, self.num_mixtures):
            raise InvalidParameterError(f"weights must be [{self.num_states}, {self.num_mixtures}]")
        _check_stochastic(value, "weights")
        with torch.no_grad():
            self.weight_logits.copy_(value.log())

    @property
    def means(self) -> Tensor:
        """``[K, M, D]``."""
        return self.components.means.reshape(self.num_states, self.num_mixtures, self.obs_dim)

    @means.setter
    def means(self, value) -> None:
        value = as_tensor(value, self.components.means_param)
        if value.shape != (self.num_states, self.num_mixtures, self.obs_dim):
            raise InvalidParameterError(f"means must be [{self.num_states}, {self.num_mixtures}, {self.obs_dim}]")
        self.components.means = value.reshape(-1, self.obs_dim)

    @property
    def covars(self) -> Tensor:
        cov = self.components.covars
        K, M = self.num_states, self.num_mixtures
        if self.covariance_type == "tied":
            return cov.reshape(K, self.obs_dim, self.obs_dim)
        return cov.reshape(K, M, *cov.shape[1:])

    @covars.setter
    def covars(self, value) -> None:
        value = as_tensor(value, self.components.means_param)
        K, M, D = self.num_states, self.num_mixtures, self.obs_dim
        if self.covariance_type == "tied":
            if value.shape != (K, D, D):
                raise InvalidParameterError(f"tied covars must be [{K}, {D}, {D}]")
            self.components.covars = value
            return
        expected = {"diag": (K, M, D), "spherical": (K, M), "full": (K, M, D, D)}[self.covariance_type]
        if value.shape != expected:
            raise InvalidParameterError(f"covars for {self.covariance_type!r} must be {list(expected)}")
        self.components.covars = value.reshape(K * M, *value.shape[2:])

    def num_free_parameters(self) -> int:
        return self.components.num_free_parameters() + self.num_states * (self.num_mixtures - 1)

    def get_config(self) -> dict:
        return dict(
            type="mixture",
            num_states=self.num_states,
            obs_dim=self.obs_dim,
            num_mixtures=self.num_mixtures,
            covariance_type=self.covariance_type,
            min_covar=self.min_covar,
            weight_pseudocount=self.weight_pseudocount,
        )

    def _component_log_likelihood(self, x: Tensor) -> Tensor:
        """``[..., D] -> [..., K, M]`` log w_km + log N_km(x)."""
        comp = self.components.log_likelihood(x)
        comp = comp.reshape(*comp.shape[:-1], self.num_states, self.num_mixtures)
        return comp + self._log_weights()

    def log_likelihood(self, x: Tensor) -> Tensor:
        return torch.logsumexp(self._component_log_likelihood(x), dim=-1)

    def accumulate(self, x: Tensor, weights: Tensor) -> Stats:
        with torch.no_grad():
            comp = self._component_log_likelihood(x)  # [N, K, M]
            resp = (comp - torch.logsumexp(comp, -1, keepdim=True)).exp()
            r = weights.to(resp.dtype).unsqueeze(-1) * resp  # [N, K, M]
        stats = self.components.accumulate(x, r.reshape(x.shape[0], -1))
        stats["mix"] = r.sum(0).to(self._stat_dtype())
        return stats

    def m_step(self, stats: Stats) -> None:
        self.components.m_step({k: v for k, v in stats.items() if k != "mix"})
        counts = stats["mix"] + self.weight_pseudocount
        total = counts.sum(-1, keepdim=True)
        seen = total > 1e-10
        with torch.no_grad():
            new = torch.where(seen, counts / total.clamp_min(1e-10), self.weights.to(counts.dtype))
            self.weight_logits.copy_(new.log().to(self.weight_logits.dtype))

    def initialize(self, x: Tensor, generator: torch.Generator, groups: Optional[Tensor] = None) -> None:
        """State clusters (k-means or ``groups``), then M components split around each state."""
        if x.shape[0] < self.num_states:
            raise InvalidInputError(f"cannot initialise {self.num_states} states from only {x.shape[0]} frames")
        labels = groups if groups is not None else _kmeans(x, self.num_states, generator)
        weights = torch.nn.functional.one_hot(labels, self.num_states).to(x.dtype)
        self.initialize_from_stats(self.grouped_stats(x, weights), generator)

    def grouped_stats(self, x: Tensor, weights: Tensor) -> Stats:
        """Per-state diagonal statistics of the groups (summable), see :meth:`initialize_from_stats`."""
        return GaussianEmission(self.num_states, self.obs_dim, "diag", dtype=x.dtype).to(x.device).grouped_stats(x, weights)

    def initialize_from_stats(self, stats: Stats, generator: Optional[torch.Generator] = None) -> None:
        """Each state's mean and variance from the statistics; its M components start at the
        mean shifted by +-0.5 standard deviation along random sign patterns (component 0 on
        the mean), with that variance and equal weights."""
        K, M, D = self.num_states, self.num_mixtures, self.obs_dim
        state = GaussianEmission(K, D, "diag", self.min_covar, dtype=torch.float64).to(stats["n"].device)
        state.initialize_from_stats(stats)
        mu, var = state.means, state.covars  # [K, D]
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        signs = (torch.rand(K, M, D, generator=gen, dtype=torch.float64, device=gen.device) < 0.5).double() * 2 - 1
        signs[:, 0] = 0.0
        means = mu.unsqueeze(1) + 0.5 * signs.to(mu.device) * var.sqrt().unsqueeze(1)
        self.means = means
        if self.covariance_type == "diag":
            self.covars = var.unsqueeze(1).expand(K, M, D)
        elif self.covariance_type == "spherical":
            self.covars = var.mean(-1, keepdim=True).expand(K, M)
        elif self.covariance_type == "full":
            self.covars = torch.diag_embed(var).unsqueeze(1).expand(K, M, D, D)
        else:
            self.covars = torch.diag_embed(var)
        with torch.no_grad():
            self.weight_logits.fill_(-math.log(M))

    def sample(self, states: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        with torch.no_grad():
            w = self.weights[states]
            comp = torch.multinomial(w.to(_draw_device(generator, w)), 1, generator=generator).squeeze(-1).to(w.device)
            return self.components.sample(states * self.num_mixtures + comp, generator)


class CategoricalEmission(Emission):
    """Discrete symbols ``x [B, T]`` in [0, S): ``emissionprob [K, S]``."""

    event_dims = 0

    def __init__(self, num_states: int, num_symbols: int, pseudocount: float = 0.0, dtype: torch.dtype = torch.float32):
        super().__init__()
        if num_states < 1 or num_symbols < 1:
            raise InvalidParameterError("num_states and num_symbols must be >= 1")
        self.num_states, self.num_symbols, self.pseudocount = int(num_states), int(num_symbols), float(pseudocount)
        self.obs_dim = 1
        self.logits = nn.Parameter(torch.full((num_states, num_symbols), -math.log(num_symbols), dtype=dtype))

    @property
    def emissionprob(self) -> Tensor:
        return torch.softmax(self.logits, -1).detach()

    @emissionprob.setter
    def emissionprob(self, value) -> None:
        value = as_tensor(value, self.logits)
        if value.shape != (self.num_states, self.num_symbols):
            raise InvalidParameterError(f"emissionprob must be [{self.num_states}, {self.num_symbols}]")
        _check_stochastic(value, "emissionprob")
        with torch.no_grad():
            self.logits.copy_(value.log())

    def num_free_parameters(self) -> int:
        return self.num_states * (self.num_symbols - 1)

    def get_config(self) -> dict:
        return dict(type="categorical", num_states=self.num_states, num_symbols=self.num_symbols, pseudocount=self.pseudocount)

    def _symbols(self, x: Tensor) -> Tensor:
        if x.is_floating_point() and not torch.equal(x, x.round()):
            raise InvalidInputError("categorical observations must be integer symbols")
        x = x.long()
        if (x < 0).any() or (x >= self.num_symbols).any():
            raise InvalidInputError(f"symbols must be in [0, {self.num_symbols})")
        return x

    def log_likelihood(self, x: Tensor) -> Tensor:
        x = self._symbols(x)
        return torch.log_softmax(self.logits, -1).T[x]

    def accumulate(self, x: Tensor, weights: Tensor) -> Stats:
        x = self._symbols(x).reshape(-1)
        counts = torch.zeros(self.num_symbols, self.num_states, dtype=self._stat_dtype(), device=x.device)
        counts.index_add_(0, x, weights.to(counts.dtype))
        return {"symbol_counts": counts.T}

    def m_step(self, stats: Stats) -> None:
        counts = stats["symbol_counts"] + self.pseudocount
        total = counts.sum(-1, keepdim=True)
        with torch.no_grad():
            new = torch.where(total > 1e-10, counts / total.clamp_min(1e-10), self.emissionprob.to(counts.dtype))
            self.logits.copy_(new.log().to(self.logits.dtype))

    def initialize(self, x: Tensor, generator: torch.Generator, groups: Optional[Tensor] = None) -> None:
        """Random rows near the symbols' overall frequencies (symmetry breaking)."""
        x = self._symbols(x).reshape(-1)
        # Small [K, S] work: on the CPU, with the noise drawn where the generator lives.
        freq = torch.bincount(x, minlength=self.num_symbols).to("cpu", torch.float64) + 1.0
        freq = freq / freq.sum()
        noise = torch.rand(self.num_states, self.num_symbols, generator=generator, dtype=torch.float64,
                           device=_draw_device(generator, freq)).cpu() + 0.5
        rows = freq.unsqueeze(0) * noise
        if groups is not None:
            rows = rows + torch.zeros_like(rows).index_add_(
                0, groups.cpu(), torch.nn.functional.one_hot(x.cpu(), self.num_symbols).double()
            )
        self.emissionprob = (rows / rows.sum(-1, keepdim=True)).to(self.logits.dtype)

    def grouped_stats(self, x: Tensor, weights: Tensor) -> Stats:
        return self.accumulate(x, weights)

    def initialize_from_stats(self, stats: Stats, generator: Optional[torch.Generator] = None) -> None:
        """Group symbol frequencies with one pseudo-count per symbol (no zero starts)."""
        counts = stats["symbol_counts"] + 1.0
        self.emissionprob = (counts / counts.sum(-1, keepdim=True)).to(self.logits.dtype)

    def sample(self, states: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        probs = self.emissionprob[states]
        drawn = torch.multinomial(probs.to(_draw_device(generator, probs)), 1, generator=generator)
        return drawn.squeeze(-1).to(states.device)


def _check_stochastic(value: Tensor, name: str, mask: Optional[Tensor] = None) -> None:
    """Raise unless ``value`` is non-negative with rows summing to 1 (and zero where masked out)."""
    if not torch.isfinite(value).all() or (value < 0).any():
        raise InvalidParameterError(f"{name} must be finite and non-negative")
    sums = value.sum(-1)
    tol = 1e-4 if value.dtype == torch.float32 else 1e-8
    if not torch.allclose(sums, torch.ones_like(sums), atol=tol, rtol=0):
        raise InvalidParameterError(f"every row of {name} must sum to 1, got sums {sums.flatten().tolist()[:8]}")
    if mask is not None and (value[~mask.to(value.device)] != 0).any():
        raise InvalidParameterError(f"{name} puts probability on transitions the topology forbids")


def emission_from_config(config: dict, dtype: torch.dtype = torch.float32) -> nn.Module:
    """Rebuild one of the engine's emission modules from its ``get_config()``."""
    kind = config.get("type")
    if kind == "gaussian":
        return GaussianEmission(
            config["num_states"], config["obs_dim"], config["covariance_type"], config["min_covar"],
            num_tied_groups=config.get("num_tied_groups", 1), dtype=dtype,
        )
    if kind == "mixture":
        return MixtureGaussianEmission(
            config["num_states"], config["obs_dim"], config["num_mixtures"], config["covariance_type"],
            config["min_covar"], config.get("weight_pseudocount", 0.0), dtype=dtype,
        )
    if kind == "categorical":
        return CategoricalEmission(config["num_states"], config["num_symbols"], config.get("pseudocount", 0.0), dtype=dtype)
    raise InvalidParameterError(f"cannot rebuild an emission of type {kind!r}")


_EMISSION_CLASSES: Dict[str, type] = {}


def register_emission(cls: type) -> type:
    """Make :func:`hmm_engine.load` able to rebuild ``HMM(emission=cls(...))`` files without
    being handed the class (usable as a class decorator). The class is rebuilt with
    ``cls.from_config(config)`` if it has one, else ``cls(**config)`` from its ``get_config()``,
    else ``cls()``; its weights come from the file (no pickled code is ever loaded)."""
    _EMISSION_CLASSES[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return cls


def emission_class(name: str) -> Optional[type]:
    """A registered emission class by its qualified name, or None."""
    return _EMISSION_CLASSES.get(name)
