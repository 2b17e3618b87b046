"""Process-wide result caches and the keys they are looked up by.

* features: keyed by the audio content hash and the feature settings;
* trained models: keyed by the audio hash and every *training* setting (see
  :meth:`AnalysisSettings.training_dict`), so a change of a decoding setting only re-decodes;
  concurrent identical requests wait for one training run instead of repeating it
  (:class:`KeyedLocks`);
* BIC/AIC sweeps: keyed by audio, training settings less the state/mixture counts, and grid.

Every cache is a bounded, thread-safe LRU.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator

from components.results import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[1]


class LRU:
    """A small thread-safe LRU map."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._d: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
        return None

    def put(self, key, value) -> None:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.capacity:
                self._d.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()

    def __len__(self) -> int:
        return len(self._d)


class KeyedLocks:
    """One lock per key, so identical concurrent requests train once (locks are dropped
    when nobody holds or waits for them)."""

    def __init__(self):
        self._locks: dict[str, list] = {}  # key -> [lock, users]
        self._guard = threading.Lock()

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            entry = self._locks.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._guard:
                entry[1] -= 1
                if entry[1] == 0:
                    self._locks.pop(key, None)

    def __len__(self) -> int:
        return len(self._locks)


FEATURE_CACHE = LRU(16)
MODEL_CACHE = LRU(16)
SWEEP_CACHE = LRU(16)
TRAIN_LOCKS = KeyedLocks()
# Audio hashes whose results anyone may see (the precomputed sample): shared across sessions.
PUBLIC_AUDIO: set[str] = set()


def _sha1(*parts: Any) -> str:
    h = hashlib.sha1()
    for p in parts:
        if isinstance(p, (bytes, bytearray, memoryview)):
            h.update(bytes(p))
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()


def sweep_key(audio_sha1: str, base_settings: dict, states: list, mixes: list) -> str:
    return _sha1("sweep", audio_sha1, base_settings, list(states), list(mixes), SCHEMA_VERSION)


def training_key(s, audio_sha1: str, device, scope: str = "") -> str:
    """``scope`` (a session) keeps one user's cache hits from revealing another's work."""
    args = ("train", audio_sha1, s.training_dict(), str(device.type), SCHEMA_VERSION)
    return _sha1(*args) if not scope else _sha1(*args, "scope", scope)


_ENGINE_HASH: str | None = None

# The engine parts an analysis runs through (the aligner, CLI, corpus tools are not).
_ANALYSIS_SOURCES = ("__init__.py", "emissions.py", "topology.py", "durations.py", "serialization.py",
                     "errors.py", "limits.py", "frontend", "inference", "models", "training")


def engine_hash() -> str:
    """Hash of the engine source an analysis depends on: a precomputed result made by other
    code is stale."""
    global _ENGINE_HASH
    if _ENGINE_HASH is None:
        h = hashlib.sha1()
        base = ROOT / "hmm_engine"
        files = []
        for name in _ANALYSIS_SOURCES:
            p = base / name
            files += sorted(p.rglob("*.py")) if p.is_dir() else ([p] if p.exists() else [])
        for p in files:
            h.update(p.relative_to(ROOT).as_posix().encode())
            h.update(p.read_bytes())
        _ENGINE_HASH = h.hexdigest()
    return _ENGINE_HASH
