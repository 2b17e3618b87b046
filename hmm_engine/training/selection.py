"""Model selection: information criteria and sweeps over state and mixture counts."""

from __future__ import annotations

import math
import time
from typing import Callable, Dict, Iterable, List, Optional

import torch

from ..cancellation import check_cancelled


def _total_log_likelihood(model, x, lengths) -> float:
    with torch.no_grad():
        return float(model.score(x, lengths).double().sum())


def _num_frames(model, x, lengths) -> int:
    _, lens, _ = model.prepare(x, lengths)
    return int(lens.sum())


def bic(model, x, lengths=None) -> float:
    """-2 log L + p log N, with p = ``model.num_free_parameters()`` and N the number of frames."""
    ll = _total_log_likelihood(model, x, lengths)
    return -2.0 * ll + model.num_free_parameters() * math.log(_num_frames(model, x, lengths))


def aic(model, x, lengths=None) -> float:
    """-2 log L + 2 p."""
    return -2.0 * _total_log_likelihood(model, x, lengths) + 2.0 * model.num_free_parameters()


def sweep(
    make_model: Callable[..., torch.nn.Module],
    x,
    lengths=None,
    num_states: Iterable[int] = (2, 4, 8, 16),
    num_mixtures: Iterable[int] = (1,),
    max_iter: int = 20,
    tol: float = 1e-4,
    seed: int = 0,
    progress: Optional[Callable[[int, int], None]] = None,
) -> List[Dict]:
    """Fit one model per (states, mixtures) pair and report its criteria.

    Args:
        make_model: ``make_model(num_states=K, num_mixtures=M)`` returns an untrained model.
        num_states, num_mixtures: the grid.
        progress: called as ``progress(done, total)``.
    Returns:
        one dict per grid point: ``num_states, num_mixtures, log_likelihood, num_parameters,
        bic, aic, iterations, seconds`` (or ``error`` when that size cannot be fitted, e.g.
        more states than frames). The best BIC row has ``best_bic=True``, likewise AIC.
    """
    grid = [(k, m) for k in num_states for m in num_mixtures]
    rows: List[Dict] = []
    for done, (k, m) in enumerate(grid):
        check_cancelled()  # between models; EM checks between iterations
        row: Dict = {"num_states": k, "num_mixtures": m}
        start = time.perf_counter()
        try:
            model = make_model(num_states=k, num_mixtures=m)
            history = model.fit(x, lengths, max_iter=max_iter, tol=tol, seed=seed)
            ll = _total_log_likelihood(model, x, lengths)
            p = model.num_free_parameters()
            n = _num_frames(model, x, lengths)
            row.update(
                log_likelihood=ll, num_parameters=p, bic=-2 * ll + p * math.log(n), aic=-2 * ll + 2 * p,
                iterations=len(history),
            )
        except ValueError as err:  # e.g. more states than frames: report, keep sweeping
            row["error"] = str(err)
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
        if progress is not None:
            progress(done + 1, len(grid))
    for crit in ("bic", "aic"):
        ok = [r for r in rows if crit in r]
        if ok:
            min(ok, key=lambda r: r[crit])[f"best_{crit}"] = True
    return rows
