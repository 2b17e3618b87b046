"""The bundled sample's results, computed once and loaded at start-up.

``assets/precomputed/`` holds, for the sample clip and :func:`sample_settings`:

* ``<name>.npz`` — the :class:`AnalysisResult` arrays and metadata;
* ``<name>.model.pt`` — the trained model (so re-decoding the sample skips training);
* ``<name>.json`` — the cache key and provenance.

The key hashes the audio, the settings, the result schema and the source of the engine
parts an analysis uses, so a result made by other code or other settings is *stale*: it is
then recomputed at start-up and cached under ``~/.cache/hmm_studio`` (never written into
the repository by the app). Refresh the committed copy with
``python -m components.precomputed`` and commit ``assets/precomputed/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
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


def _compute(audio: Path, settings: AnalysisSettings) -> AnalysisResult:
    """Analyse after a small warm-up run (which compiles the CPU kernels), so the stored
    latency panel shows a warm server's times, not one-off compilation."""
    P.analyze(audio, AnalysisSettings(num_states=3, max_iter=2, seed=1), write_files=False)
    P.FEATURE_CACHE.clear()  # time the real run's features too
    return P.analyze(audio, settings)


def user_cache_dir() -> Path:
    return Path(os.environ.get("HMM_STUDIO_CACHE_DIR", Path.home() / ".cache" / "hmm_studio")) / "precomputed"


def _try_load(audio: Path, settings: AnalysisSettings, folder: Path, key: str) -> AnalysisResult | None:
    npz, model_path, meta_path = _paths(audio, folder)
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    if meta.get("key") != key:
        log.info("precomputed results in %s are stale", folder)
        return None
    try:
        t0 = time.perf_counter()
        result = AnalysisResult.load(npz)
        model = P.load_model(model_path)
        _prime_caches(result, model, audio, settings)
        result.files = P.write_exports(result, model)
        log.info("loaded precomputed sample results from %s in %.2f s", folder, time.perf_counter() - t0)
        return result
    except Exception as exc:  # noqa: BLE001 - e.g. a model file from another engine version
        log.warning("precomputed results in %s unreadable (%s)", folder, exc)
        return None


def save(result: AnalysisResult, audio: Path, settings: AnalysisSettings, folder: Path) -> None:
    npz, model_path, meta_path = _paths(audio, folder)
    folder.mkdir(parents=True, exist_ok=True)
    result.save(npz)
    P.save_model(P.MODEL_CACHE.get(result.training_key).model, model_path)
    meta_path.write_text(json.dumps({
        "key": cache_key(audio, settings), "audio": audio.name, "settings": asdict(settings),
        "schema": SCHEMA_VERSION, "engine_hash": P.engine_hash(), "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "log_likelihood": result.log_likelihood,
    }, indent=1) + "\n")


def load_or_compute(audio: Path | None = None, settings: AnalysisSettings | None = None,
                    folders: list[Path] | None = None, write_to: Path | None = None) -> AnalysisResult | None:
    """The sample's result from the first folder holding a fresh copy (the repository's
    ``assets/precomputed``, then the user cache), else computed now and saved to
    ``write_to`` (default: the user cache, so starting the app never edits tracked files)."""
    audio = Path(audio or P.SAMPLE_AUDIO)
    settings = P.validate_settings(settings or sample_settings())
    if not audio.exists():
        log.warning("sample clip %s not found: the dashboard opens without precomputed results", audio)
        return None
    key = cache_key(audio, settings)
    for folder in folders or [P.PRECOMPUTED_DIR, user_cache_dir()]:
        result = _try_load(audio, settings, Path(folder), key)
        if result is not None:
            return result
    log.info("computing the sample's results (no fresh precomputed copy)")
    result = _compute(audio, settings)
    try:
        save(result, audio, settings, Path(write_to or user_cache_dir()))
    except OSError as exc:
        log.warning("could not cache the sample's results: %s", exc)
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
    P.PUBLIC_AUDIO.add(result.audio_hash)
    result.cached = ["precomputed"]


def main(argv=None) -> None:
    """``python -m components.precomputed``: (re)compute the sample's results into
    ``assets/precomputed/`` (run after engine changes, then commit the three files)."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--folder", type=Path, default=P.PRECOMPUTED_DIR)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    import torch

    torch.set_num_threads(1)  # as app.py runs it
    audio, settings = P.SAMPLE_AUDIO, P.validate_settings(sample_settings())
    result = _compute(audio, settings)
    save(result, audio, settings, args.folder)
    print(f"wrote {args.folder} (log L = {result.log_likelihood:.3f}, key {cache_key(audio, settings)[:12]})")


if __name__ == "__main__":
    main()
