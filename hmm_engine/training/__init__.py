"""Training: Baum-Welch EM (batched, distributed-ready), gradient training, model selection."""

from .em import all_reduce_stats, fit_em
from .gradient import fit_gradient
from .selection import aic, bic, sweep

__all__ = ["fit_em", "all_reduce_stats", "fit_gradient", "aic", "bic", "sweep"]
