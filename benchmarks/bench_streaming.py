"""Streaming decoder latency and the Live tab's real-time factor.

Run: ``python benchmarks/bench_streaming.py`` (``--quick``: fewer pushes).

1. Per-push latency of ``model.stream(lag)`` for 10-frame chunks (100 ms of 10-ms frames) of a
   diagonal Gaussian HMM at K = 16/64 states and D = 13/40 dimensions, exact (partial
   traceback) and fixed lag 20: median, 90th percentile and max over the pushes after a warm-up,
   the median CPU time of the pushing thread (what the push costs without waits for the CPU
   on a shared machine), the frames left pending at the end, and the offline Viterbi on the
   same frames for scale.
   The decoder runs its time loop with one intra-op thread (hmm_engine.threads.single_thread).
2. The Live tab on the bundled sample streamed as a 48 kHz microphone in 0.5-s chunks (what the
   browser sends): resampling + features + decoding per chunk, and the same plus building the
   figure and summary (the whole ``live_step`` handler); real-time factor = compute time / audio time.

The process runs with one torch thread as app.py does (``--threads 2`` to compare).

3. How long the exact decoder keeps frames undecided on real recordings (bundled LibriVox and
   CMU ARCTIC clips, and the synthetic sample) with models the Analyze tab trains on each clip:
   frames pending after each 0.1-s chunk (median, max). This is the exact mode's latency beyond
   the front end's look-ahead, and its memory (K back-pointers a pending frame).

Prints tables; asserts nothing. Timings on this shared 2-core machine are noisy: compare
rows of one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import hmm_engine as he  # noqa: E402


def push_latency(K, D, lag, pushes, chunk=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    model = he.GaussianHMM(K, D)
    model.means = torch.randn(K, D, generator=g) * 2
    trans = torch.rand(K, K, generator=g) + torch.eye(K) * K
    model.transmat = trans / trans.sum(-1, keepdim=True)
    x, _ = model.sample(1, chunk * (pushes + 20), seed=seed)
    x = x[0]
    dec = model.stream(lag=lag)
    times, cpu = [], []
    for i in range(0, x.shape[0], chunk):
        t0, c0 = time.perf_counter(), time.thread_time()
        dec.push(x[i:i + chunk])
        times.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    times = np.asarray(times[20:]) * 1e3
    cpu = np.asarray(cpu[20:]) * 1e3
    pending = dec.t - dec.committed
    model.viterbi_decode(x[:50])  # compile the CPU kernel outside the timing
    t0 = time.perf_counter()
    model.viterbi_decode(x)
    offline = (time.perf_counter() - t0) * 1e3
    return np.median(times), np.percentile(times, 90), times.max(), np.median(cpu), pending, offline, x.shape[0]


def live_rtf(repeats):
    import soundfile as sf
    import torchaudio.functional as AF

    from components import live as L
    from components import pipeline as P

    x, sr = sf.read(P.ROOT / "assets" / "sample_synth.wav", dtype="float32")
    y = AF.resample(torch.from_numpy(x), sr, 48000).numpy()
    pcm = np.clip(np.round(y * 32767), -32768, 32767).astype(np.int16)
    n = int(48000 * L.STREAM_EVERY)
    chunks = [pcm[i:i + n] for i in range(0, len(pcm), n)]
    audio = len(pcm) / 48000
    rows = []
    for _ in range(repeats):
        session = None
        engine, handler = [], []
        for c in chunks:
            t0 = time.perf_counter()
            _, _, session = L.live_step((48000, c), session, None, "analysis", "exact")
            handler.append(time.perf_counter() - t0)
            engine.append(session.chunk_ms[-1] / 1e3)
        rows.append((sum(engine), sum(handler), np.median(engine) * 1e3, np.median(handler) * 1e3))
    best = min(rows, key=lambda r: r[1])
    return audio, len(chunks), best


def pending_on_recordings():
    import soundfile as sf
    import torchaudio.functional as AF

    from components import live as L
    from components import pipeline as P
    from components.results import AnalysisSettings

    rows = []
    for name in ("librivox_sense_0870.wav", "arctic_slt_a0009.wav", "sample_synth.wav"):
        clip = P.ROOT / "assets" / name
        x, sr = sf.read(clip, dtype="float32")
        x = x.mean(1) if x.ndim > 1 else x
        pcm = np.clip(np.round(AF.resample(torch.from_numpy(x), sr, 48000).numpy() * 32767), -32768, 32767)
        pcm = pcm.astype(np.int16)
        for model_type, K in (("gaussian", 8), ("gaussian", 32), ("semi-markov", 8)):
            settings = AnalysisSettings(num_states=K, model_type=model_type, sweep_states="", max_iter=20)
            result = P.analyze(str(clip), settings, write_files=False)
            analysis = {"training_key": result.training_key, "settings": result.settings}
            session, pending = None, []
            for i in range(0, len(pcm), 4800):
                _, summary, session = L.live_step((48000, pcm[i:i + 4800]), session, analysis, "analysis", "exact")
                pending.append(summary["frames_pending"])
            rows.append((name, model_type, K, len(pcm) / 48000, np.median(pending), max(pending)))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads for the process (app.py: 1)")
    args = ap.parse_args()
    pushes = 100 if args.quick else 400
    # As app.py runs: one intra-op thread for the whole process (the decoder would switch to one
    # thread per push anyway; switching the OpenMP pool back and forth costs milliseconds).
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, torch threads {torch.get_num_threads()}, CPU")
    print("\nper-push latency, 10-frame chunks (100 ms of audio), diagonal Gaussian HMM")
    print(f"{'K':>4} {'D':>4} {'mode':>8} {'median ms':>10} {'p90 ms':>8} {'max ms':>8} {'CPU ms':>7} {'pending':>8} "
          f"{'offline Viterbi ms (all frames)':>32}")
    for K in (16, 64):
        for D in (13, 40):
            for lag in (None, 20):
                med, p90, mx, cpu, pending, offline, T = push_latency(K, D, lag, pushes)
                mode = "exact" if lag is None else f"lag {lag}"
                print(f"{K:>4} {D:>4} {mode:>8} {med:>10.3f} {p90:>8.3f} {mx:>8.2f} {cpu:>7.3f} {pending:>8d} "
                      f"{offline:>20.2f} (T={T})")
    audio, chunks, (engine, handler, med_engine, med_handler) = live_rtf(2 if args.quick else 3)
    print(f"\nLive tab: the sample ({audio:.2f} s) as a 48 kHz microphone in {chunks} chunks of "
          f"{audio / chunks:.2f} s, sample model, exact decoding")
    print(f"{'stage':>40} {'total s':>8} {'median ms/chunk':>16} {'real-time factor':>17}")
    print(f"{'resample + features + decode':>40} {engine:>8.3f} {med_engine:>16.2f} {engine / audio:>17.4f}")
    print(f"{'whole handler (+ figure and summary)':>40} {handler:>8.3f} {med_handler:>16.2f} {handler / audio:>17.4f}")
    print("\nexact decoding of recordings (0.1-s chunks at 48 kHz, a model trained on each clip by the Analyze "
          "pipeline, 20 EM iterations): frames pending after each chunk")
    print(f"{'clip':>26} {'model':>12} {'K':>3} {'seconds':>8} {'median':>7} {'max':>5}")
    for name, model_type, K, seconds, med, mx in pending_on_recordings():
        print(f"{name:>26} {model_type:>12} {K:>3} {seconds:>8.1f} {med:>7.0f} {mx:>5d}")


if __name__ == "__main__":
    main()
