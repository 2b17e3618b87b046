"""Per-stage wall-clock timings and peak memory of one request."""

from __future__ import annotations

import contextlib
import os
import resource
import threading
import time
from typing import Iterator

import torch


class MemoryMeter:
    """Peak resident memory of this process while a block runs, and peak CUDA memory.

    A sampler thread reads the current RSS (``/proc/self/statm``) every
    :data:`SAMPLE_SECONDS`; nothing process-wide is reset (resetting ``VmHWM`` through
    ``/proc/self/clear_refs`` made concurrent requests' figures wrong), so meters of concurrent
    requests do not disturb each other. ``peak_rss_mb`` is the process's peak while the block
    ran (other requests running at the same time included), ``growth_mb`` that peak less the
    RSS at the start. Without ``/proc`` (not Linux) the lifetime peak from ``getrusage`` is given.
    """

    SAMPLE_SECONDS = 0.01

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_rss_mb: float | None = None
        self.growth_mb: float | None = None
        self.peak_gpu_mb: float | None = None
        self._start = self._peak = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.SAMPLE_SECONDS):
            self._peak = max(self._peak, _rss_mb() or 0.0)

    def __enter__(self):
        start = _rss_mb()
        if start is not None:
            self._start = self._peak = start
            self._thread = threading.Thread(target=self._sample, name="memory-meter", daemon=True)
            self._thread.start()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc):
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, _rss_mb() or 0.0)
            self.peak_rss_mb = self._peak
            self.growth_mb = max(0.0, self._peak - self._start)
        else:
            self.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_gpu_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        return False


_PAGE_MB = (os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096) / 2**20


def _rss_mb() -> float | None:
    """Current resident memory of this process in MB (None where /proc is absent)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE_MB
    except (OSError, ValueError, IndexError):
        return None


class StageTimer:
    def __init__(self, device: torch.device | None = None):
        self.timings: dict[str, float] = {}
        self.device = device

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.device is not None and self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0
