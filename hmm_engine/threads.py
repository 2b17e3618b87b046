"""The CPU thread policy: where the engine runs with one intra-op torch thread, and why."""

from __future__ import annotations

import contextlib
import functools

import torch


@contextlib.contextmanager
def single_thread():
    """Run a block with one intra-op torch thread on the CPU.

    A time loop of small ops on 2 cores measured 10x faster with one thread, and with
    other work on the machine torch's spinning OpenMP pool turned a 1 ms Viterbi call
    into 110 ms; the setting is restored after. (Batches still use both cores: the
    compiled kernels split them over their own threads.)
    """
    previous = torch.get_num_threads()
    if previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def cpu_single_thread(method):
    """Run a model method with one intra-op torch thread when the model is on the CPU
    (see :func:`single_thread` for the measurements)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if self.device.type != "cpu":
            return method(self, *args, **kwargs)
        with single_thread():
            return method(self, *args, **kwargs)

    return wrapper
