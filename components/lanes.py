"""Two compute lanes, so that enormous requests cannot starve everyone else.

Gradio admits up to :data:`ADMITTED` compute requests at once (the queue still orders them);
inside, a request runs its model work in the *light* lane (:data:`LIGHT_SLOTS` at once,
``HMM_STUDIO_CONCURRENCY``) or, when its estimated work is above :data:`HEAVY_UNITS`, in the
*heavy* lane (:data:`HEAVY_SLOTS` at once). A request waiting for its lane holds only an idle
thread, and waiting stops as soon as the request is cancelled.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator

from hmm_engine.cancellation import check_cancelled

LIGHT_SLOTS = max(1, int(os.environ.get("HMM_STUDIO_CONCURRENCY", "2")))
HEAVY_SLOTS = max(1, int(os.environ.get("HMM_STUDIO_HEAVY_CONCURRENCY", "1")))
# About 30 s of one core (hmm_engine.limits units are about a nanosecond each).
HEAVY_UNITS = float(os.environ.get("HMM_STUDIO_HEAVY_UNITS", "3e10"))
ADMITTED = LIGHT_SLOTS + HEAVY_SLOTS + 8

_LIGHT = threading.BoundedSemaphore(LIGHT_SLOTS)
_HEAVY = threading.BoundedSemaphore(HEAVY_SLOTS)


def acquire(units: float) -> threading.BoundedSemaphore:
    """Wait (cancellably) for a slot of the lane for ``units`` of estimated work; returns the
    semaphore to ``release()``."""
    semaphore = _HEAVY if units > HEAVY_UNITS else _LIGHT
    while not semaphore.acquire(timeout=0.2):
        check_cancelled()
    return semaphore


@contextlib.contextmanager
def lane(units: float) -> Iterator[None]:
    """Hold a slot of the lane for ``units`` of estimated work while the block runs."""
    semaphore = acquire(units)
    try:
        yield
    finally:
        semaphore.release()
