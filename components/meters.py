"""Per-stage wall-clock timings and peak memory of one request."""

from __future__ import annotations

import contextlib
import resource
import time
from typing import Iterator

import torch


class MemoryMeter:
    """Peak resident memory of this process during a block (Linux ``VmHWM``, reset through
    ``/proc/self/clear_refs``; falls back to ``getrusage`` max RSS), and peak CUDA memory.

    The process is shared by concurrent requests, so under load the CPU figure is the
    process peak while the request ran, not the request's own allocation.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_rss_mb: float | None = None
        self.peak_gpu_mb: float | None = None

    def __enter__(self):
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc):
        self.peak_rss_mb = _peak_rss_mb()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_gpu_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        return False


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


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
