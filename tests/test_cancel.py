"""Cancellation: EM, sweeps, the aligner and the dashboard's worker threads stop when the
request's token is set (hmm_engine.cancellation, components.ui.run_cancellable)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import torch

import hmm_engine as he
from hmm_engine.cancellation import Cancelled, CancelToken, cancellable, check_cancelled
from hmm_engine.training.selection import sweep


def test_no_token_no_effect():
    check_cancelled()
    with cancellable(None):
        check_cancelled()


def test_em_stops_at_the_next_iteration():
    token = CancelToken()
    seen = []

    def callback(iteration, log_likelihood):
        seen.append(iteration)
        if iteration == 1:
            token.cancel()

    with cancellable(token), pytest.raises(Cancelled):
        he.GaussianHMM(3, 2).fit(torch.randn(200, 2), max_iter=50, tol=0, callback=callback)
    assert seen == [0, 1]


def test_token_is_per_context():
    """A token set in one thread does not stop work in another."""
    token = CancelToken()
    token.cancel()
    errors = []

    def other():
        try:
            he.GaussianHMM(2, 2).fit(torch.randn(50, 2), max_iter=3)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    with cancellable(token):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        with pytest.raises(Cancelled):
            check_cancelled()
    assert errors == []


def test_sweep_stops_between_models():
    token = CancelToken()
    fitted = []

    def make(num_states, num_mixtures):
        fitted.append(num_states)
        if len(fitted) == 2:
            token.cancel()
        return he.GaussianHMM(num_states, 2)

    with cancellable(token), pytest.raises(Cancelled):
        sweep(make, torch.randn(100, 2), num_states=[1, 2, 3, 4, 5], max_iter=3)
    assert fitted == [1, 2]


def test_dashboard_analysis_and_alignment_stop_on_a_set_token():
    from components import alignment as A
    from components import pipeline as P
    from components.results import AnalysisSettings

    token = CancelToken()
    token.cancel()
    with cancellable(token):
        with pytest.raises(Cancelled):
            P.analyze(str(P.SAMPLE_AUDIO), AnalysisSettings(num_states=3, max_iter=5, seed=123), write_files=False,
                      scope="test-cancel")
        with pytest.raises(Cancelled):
            A.align(str(P.SAMPLE_AUDIO), "sil a b sil", transcript_kind="phones", max_iter=5)


def _long_fit(record):
    """Minutes of EM unless stopped."""
    try:
        model = he.GaussianHMM(16, 8, covariance_type="full")
        model.fit(torch.randn(4000, 8), max_iter=100_000, tol=0)
        record.append("finished")
    except Cancelled:
        record.append(("cancelled", time.perf_counter()))


def test_cancelled_request_stops_its_worker_thread():
    """Cancelling the request (what Gradio does on Cancel or gradio_client's job.cancel())
    stops the thread itself, and the request ends only once the thread has stopped."""
    from components.ui import run_cancellable

    record: list = []

    async def scenario():
        task = asyncio.ensure_future(run_cancellable(lambda: _long_fit(record)))
        await asyncio.sleep(1.5)
        cancelled_at = time.perf_counter()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return cancelled_at, time.perf_counter()

    cancelled_at, ended_at = asyncio.run(scenario())
    assert record and record[0][0] == "cancelled", record
    assert record[0][1] <= ended_at  # the request ended after its thread stopped
    assert ended_at - cancelled_at < 20  # one EM iteration, loosely
    assert not [t for t in threading.enumerate() if t.name.startswith("hmm-studio-work") and _busy(t)]


def _busy(thread) -> bool:
    import sys

    frame = sys._current_frames().get(thread.ident)
    return frame is not None and "hmm_engine" in "".join(str(f.f_code.co_filename) for f in _stack(frame))


def _stack(frame):
    while frame is not None:
        yield frame
        frame = frame.f_back


def test_work_stops_when_the_client_goes_away(monkeypatch):
    import components.ui as U

    record: list = []
    monkeypatch.setattr(U, "CLIENT_POLL_S", 0.2)
    gone = {"value": False}
    monkeypatch.setattr(U, "_client_gone", lambda request: gone["value"])

    async def scenario():
        task = asyncio.ensure_future(U.run_cancellable(lambda: _long_fit(record), request=object()))
        await asyncio.sleep(1.0)
        gone["value"] = True
        await asyncio.wait_for(task, timeout=30)  # _long_fit records the Cancelled it caught

    asyncio.run(scenario())
    assert record and record[0][0] == "cancelled"
