"""Cooperative cancellation of long work (EM, sweeps, alignment).

A server runs each request's work in a worker thread; when the request is cancelled or its
client goes away, the server sets the request's :class:`CancelToken`, and the work stops at
its next check (each EM iteration, each model of a sweep) by raising :class:`Cancelled`.
The token travels in a context variable, so the engine's signatures do not change::

    token = CancelToken()
    with cancellable(token):       # in the worker thread
        model.fit(x)               # raises Cancelled soon after token.cancel()
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from typing import Iterator, Optional


class Cancelled(Exception):
    """The work was cancelled (not an input error: nothing is wrong with the request)."""


class CancelToken:
    """A flag set once from any thread."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = "cancelled"

    def cancel(self, reason: str = "cancelled") -> None:
        self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


_CURRENT: contextvars.ContextVar[Optional[CancelToken]] = contextvars.ContextVar("hmm_engine_cancel", default=None)


@contextlib.contextmanager
def cancellable(token: Optional[CancelToken]) -> Iterator[Optional[CancelToken]]:
    """Make ``token`` the one :func:`check_cancelled` looks at inside the block (this thread/context)."""
    reset = _CURRENT.set(token)
    try:
        yield token
    finally:
        _CURRENT.reset(reset)


def check_cancelled() -> None:
    """Raise :class:`Cancelled` when the current work's token has been set (no-op without one)."""
    token = _CURRENT.get()
    if token is not None and token.cancelled:
        raise Cancelled(f"the request was {token.reason}; its work stopped")


__all__ = ["Cancelled", "CancelToken", "cancellable", "check_cancelled"]
