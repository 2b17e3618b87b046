"""Audio -> features -> model -> results: the analysis of one clip, with per-stage timings,
peak memory and caches.

The jobs live in their own modules and are re-exported here, so ``components.pipeline`` stays
the one name the UI, the alignment tab and the tests use:

* :mod:`components.validation` — limits, choices, :func:`validate_settings`, devices;
* :mod:`components.caches` — the LRU caches, per-key training locks and cache keys;
* :mod:`components.meters` — stage timings and peak memory;
* :mod:`components.engine` — the adapter to ``hmm_engine`` (features, models, training,
  decoding, sweep);
* :mod:`components.exports` — download files and segment playback.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from components.caches import (  # noqa: F401 - re-exported
    FEATURE_CACHE,
    LRU,
    MODEL_CACHE,
    PUBLIC_AUDIO,
    SWEEP_CACHE,
    KeyedLocks,
    _sha1,
    engine_hash,
    sweep_key,
    training_key,
)
from components.engine import (  # noqa: F401 - re-exported
    FeatureBundle,
    LoadedAudio,
    Progress,
    TrainedModel,
    _check_sizes,
    check_cost,
    _duration_pmf,
    _noop_progress,
    _np,
    build_model,
    decode,
    feature_config,
    features,
    load,
    load_model,
    run_sweep,
    save_model,
    train,
)
from components.exports import OUTPUT_DIR, OUTPUT_MAX_AGE_S, _output_dir, segment_audio, write_exports  # noqa: F401
from components import lanes
from components.meters import MemoryMeter, StageTimer  # noqa: F401 - re-exported
from components.results import AnalysisResult, AnalysisSettings
from components.validation import (  # noqa: F401 - re-exported
    ANALYSIS_SR,
    DURATION_DISTS,
    MAX_AUDIO_SECONDS,
    MIN_AUDIO_SECONDS,
    MODEL_TYPES,
    PRECOMPUTED_DIR,
    ROOT,
    SAMPLE_AUDIO,
    DashboardError,
    parse_grid,
    resolve_device,
    validate_settings,
)


def analyze(source: Any, settings: AnalysisSettings | None = None, progress: Progress = _noop_progress,
            write_files: bool = True, scope: str = "") -> AnalysisResult:
    """Run the whole analysis of one clip. Raises :class:`HMMStudioError` on bad input (an
    estimated cost above :data:`hmm_engine.limits.MAX_COMPUTE_UNITS` included, before training),
    :class:`hmm_engine.cancellation.Cancelled` when the request's token is set.

    ``scope`` (the dashboard passes the session) keys the caches: a cache hit, and the
    ``cached`` list of the summary, only ever reflect that scope's own earlier work."""
    s = validate_settings(settings or AnalysisSettings())
    device = resolve_device(s.device)
    timer = StageTimer(device)
    cached: list[str] = []
    with MemoryMeter(device) as mem:
        progress(0.0, "loading audio")
        with timer.stage("load"):
            loaded = load(source)
        if loaded.sha1 in PUBLIC_AUDIO:
            scope = ""  # the bundled sample: its results are public (shown at start-up)
        progress(0.05, "features")
        with timer.stage("features"):
            feats, hit = features(loaded, s, scope)
        if hit:
            cached.append("features")
        x = feats.values
        _check_sizes(s, x.shape[0], frame_shift=feats.frame_shift)
        units = check_cost(s, int(x.shape[0]), int(x.shape[1]))
        key = training_key(s, loaded.sha1, device, scope)
        progress(0.08, "waiting for a compute slot")
        with timer.stage("waiting"):
            slot = lanes.acquire(units)  # enormous requests queue in their own lane
        try:
            with timer.stage("training"):
                trained, hit = train(s, x, device, key,
                                     progress=lambda f, m: progress(0.1 + 0.7 * f, m))
            if hit:
                cached.append("training")
            progress(0.85, "decoding")
            with timer.stage("decoding"):
                path, vscore = decode(trained, x, s.decoder)
            if parse_grid(s.sweep_states):
                with timer.stage("sweep"):
                    sweep, hit = run_sweep(s, x, device, _sha1(scope, loaded.sha1) if scope else loaded.sha1,
                                           progress=lambda f, m: progress(0.88 + 0.1 * f, m))
                if hit:
                    cached.append("sweep")
            else:
                sweep = []
        finally:
            slot.release()
    result = AnalysisResult(
        settings=s.to_dict(), sample_rate=loaded.audio.sample_rate, duration=feats.duration,
        frame_shift=feats.frame_shift, num_frames=int(x.shape[0]), obs_dim=int(x.shape[1]),
        spectrogram_db=feats.db, freqs=feats.freqs, posteriors=trained.posteriors, path=path,
        viterbi_score=vscore, log_likelihood=trained.log_likelihood, history=trained.history,
        startprob=_np(trained.model.startprob).astype(np.float64),
        transmat=_np(trained.model.transmat).astype(np.float64),
        duration_pmf=_duration_pmf(trained.model), bic=trained.bic, aic=trained.aic, sweep=sweep,
        timings=dict(timer.timings), cached=cached, peak_rss_mb=mem.peak_rss_mb, peak_gpu_mb=mem.peak_gpu_mb,
        device=trained.device, audio_hash=loaded.sha1, training_key=key,
    )
    compute = sum(v for k, v in timer.timings.items() if k not in ("load", "waiting"))
    result.rtf = compute / max(result.duration, 1e-9)
    if write_files:
        with timer.stage("exports"):
            result.files = write_exports(result, trained.model)
        result.timings = dict(timer.timings)
    return result


__all__ = [
    "AnalysisSettings", "AnalysisResult", "DashboardError", "analyze", "load", "features", "train", "decode",
    "run_sweep", "build_model", "resolve_device", "validate_settings", "parse_grid", "segment_audio",
    "write_exports", "MODEL_CACHE", "FEATURE_CACHE", "SWEEP_CACHE", "engine_hash",
]
