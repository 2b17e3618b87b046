"""The bundled sample's results, computed once and loaded at start-up.

``assets/precomputed/`` holds, for the sample clip and :func:`sample_settings`:

* ``<name>.npz`` — the :class:`AnalysisResult` arrays and metadata;
* ``<name>.model.pt`` — the trained model (so re-decoding the sample skips training);
* ``<name>.json`` — the cache key and provenance.

The key hashes the audio, the settings, the result schema and the engine's source, so a
result made by other code or other settings is *stale* and is recomputed (and rewritten
when the folder is writable).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from components import pipeline as P
from components.results import SCHEMA_VERSION, AnalysisResult, AnalysisSettings

log = logging.getLogger("hmm_studio")


def sample_settings() -> AnalysisSettings:
    """What the dashboard opens with (and what the precomputed sample used)."""
    return AnalysisSettings(num_states=8, max_iter=20, sweep_states="2,4,6,8,12,16")


def _paths(audio: Path, folder: Path) -> tuple[Path, Path, Path]:
    stem = audio.stem
    return folder / f"{stem}.npz", folder / f"{stem}.model.pt", folder / f"{stem}.json"


def cache_key(audio: Path, settings: AnalysisSettings) -> str:
    return P._sha1("precomputed", audio.read_bytes(), settings.to_dict(), SCHEMA_VERSION, P.engine_hash())


def load_or_compute(audio: Path | None = None, settings: AnalysisSettings | None = None,
                    folder: Path | None = None, write: bool = True) -> AnalysisResult | None:
    """The sample's result: from the cache when fresh, else computed (and cached)."""
    audio = Path(audio or P.SAMPLE_AUDIO)
    settings = P.validate_settings(settings or sample_settings())
    folder = Path(folder or P.PRECOMPUTED_DIR)
    if not audio.exists():
        log.warning("sample clip %s not found: the dashboard opens without precomputed results", audio)
        return None
    npz, model_path, meta_path = _paths(audio, folder)
    key = cache_key(audio, settings)
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("key") == key:
            t0 = time.perf_counter()
            result = AnalysisResult.load(npz)
            model = P.load_model(model_path)
            _prime_caches(result, model, audio, settings)
            result.files = P.write_exports(result, model)
            log.info("loaded precomputed sample results in %.2f s", time.perf_counter() - t0)
            return result
        log.info("precomputed sample results are stale: recomputing")
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        log.info("no usable precomputed sample results (%s): computing", exc)
    except Exception as exc:  # noqa: BLE001 - e.g. a model file from another engine version
        log.warning("precomputed sample unreadable (%s): recomputing", exc)
    result = P.analyze(audio, settings)
    if write:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            result.save(npz)
            trained = P.MODEL_CACHE.get(result.training_key)
            P.save_model(trained.model, model_path)
            meta_path.write_text(json.dumps({
                "key": key, "audio": audio.name, "settings": asdict(settings), "schema": SCHEMA_VERSION,
                "engine_hash": P.engine_hash(), "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                "log_likelihood": result.log_likelihood,
            }, indent=1))
        except OSError as exc:
            log.warning("could not write precomputed results to %s: %s", folder, exc)
    return result


def _prime_caches(result: AnalysisResult, model, audio: Path, settings: AnalysisSettings) -> None:
    """Put the precomputed model (and sweep) where a re-decode of the sample finds them."""
    device = P.resolve_device(settings.device)
    if result.device != str(device):
        return  # trained elsewhere: a request on this device retrains
    model = model.to(device)
    P.MODEL_CACHE.put(result.training_key, P.TrainedModel(
        model=model, history=list(result.history), train_seconds=result.timings.get("training", 0.0),
        bic=result.bic, aic=result.aic, log_likelihood=result.log_likelihood,
        posteriors=np.asarray(result.posteriors, dtype=np.float32), device=result.device))
    if result.sweep:
        states = P.parse_grid(settings.sweep_states)
        mixes = P.parse_grid(settings.sweep_mixtures, lo=1, hi=16) if settings.model_type == "gmm" else []
        mixes = mixes or [settings.num_mixtures if settings.model_type == "gmm" else 1]
        base = settings.training_dict()
        base.pop("num_states")
        base.pop("num_mixtures")
        P.SWEEP_CACHE.put(P.sweep_key(result.audio_hash, base, states, mixes), result.sweep)
    result.cached = ["precomputed"]
