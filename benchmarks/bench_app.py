"""Dashboard latency through its public API (gradio_client), on this machine, loopback only.

    python benchmarks/bench_app.py            # starts app.py on a free port, runs, stops it
    python benchmarks/bench_app.py --url http://127.0.0.1:7860/   # against a running app

Measures, for a 10-second speech clip (the two bundled LibriVox clips joined), a Gaussian
HMM with 16 states and 20 EM iterations:

1. *full analysis*: request -> all six figures + summary + downloads returned, with a clip the
   server has not seen (a tiny per-trial dither changes its hash, so nothing is cached);
   target < 1.5 s;
2. *decoding-only change* (Viterbi <-> posterior decoding, same clip and model settings):
   the trained model is reused; target < 0.5 s;
3. *8 and 16 concurrent clients for 60 s*: each client loops over decode-only changes and,
   every 4th request, a new seed (a full training); every failed request is counted (target 0);
4. *8 clients while 4 enormous requests are submitted and cancelled*: the same load, while four
   more clients keep submitting an analysis just under the compute bound (semi-Markov, 48
   states, durations up to 200 frames, 200 EM iterations: minutes of work) and cancel each after
   2 s; targets: 0 failed normal requests, p95 no worse than twice the quiet 8-client p95
   (the cancelled work must really stop and give its slot back).

Times include uploading the clip (about 320 kB) on each request, as a real client does.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gradio_client import Client, handle_file  # noqa: E402

SETTINGS = dict(model_type="gaussian", num_states=16, max_iter=20, sweep_states="")
# Just under HMM_STUDIO_MAX_COMPUTE_UNITS for a 10 s clip: minutes of EM if not cancelled.
ENORMOUS = dict(model_type="semi-markov", num_states=48, max_duration=200, max_iter=200, tol=0.0,
                duration_dist="nonparametric", sweep_states="")


def make_clip(folder: Path, seconds: float = 10.0) -> tuple[np.ndarray, int]:
    parts = []
    sr = None
    for name in ("librivox_sense_0870.wav", "librivox_sense_0880.wav", "sample_synth.wav"):
        p = ROOT / "assets" / name
        if p.exists():
            x, sr_ = sf.read(p, dtype="float32")
            sr = sr or sr_
            if sr_ == sr:
                parts.append(x if x.ndim == 1 else x.mean(1))
    if not parts:
        raise SystemExit("no bundled clips found under assets/")
    x = np.concatenate(parts)
    n = int(seconds * sr)
    x = np.tile(x, int(np.ceil(n / x.size)))[:n]
    return x, sr


def write_variant(x: np.ndarray, sr: int, folder: Path, tag: int) -> str:
    """The clip with a tiny seeded dither: same sound, a different hash (no cache hit)."""
    rng = np.random.default_rng(tag)
    y = x + (1e-4 * rng.standard_normal(x.size)).astype(np.float32)
    path = folder / f"clip_{tag}.wav"
    sf.write(path, y, sr, subtype="PCM_16")
    return str(path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app() -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen([sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"app exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("app did not start in 180 s")


def timed(client: Client, path: str, **kw) -> tuple[float, dict]:
    t0 = time.perf_counter()
    out = client.predict(handle_file(path), **{**SETTINGS, **kw}, api_name="/analyze")
    dt = time.perf_counter() - t0
    assert len(out) == 8 and all(o is not None for o in out[:6]), "missing figures"
    return dt, out[6]


def _p95(xs: list[float]) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]


def stats(xs: list[float]) -> str:
    if not xs:
        return "-"
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]
    return f"{statistics.median(xs):.3f} s (min {xs[0]:.3f}, p95 {p95:.3f}, max {xs[-1]:.3f}, n={len(xs)})"


def load_test(url: str, x, sr, folder: Path, clients: int, seconds: float, attackers: int = 0,
              cancel_after: float = 2.0) -> dict:
    lat: list[float] = []
    failures: list[str] = []
    counts = {"decode": 0, "train": 0, "cancelled": 0, "enormous_failed": 0}
    lock = threading.Lock()
    stop = time.time() + seconds

    def attacker(i: int):
        c = Client(url, verbose=False)
        path = write_variant(x, sr, folder, 5000 + i)
        while time.time() < stop:
            job = c.submit(handle_file(path), **{**SETTINGS, **ENORMOUS, "seed": i}, api_name="/analyze")
            time.sleep(cancel_after)
            job.cancel()
            with lock:
                counts["cancelled"] += 1
            time.sleep(0.2)

    def worker(i: int):
        try:
            c = Client(url, verbose=False)
        except Exception as exc:  # noqa: BLE001
            with lock:
                failures.append(f"client {i}: {exc}")
            return
        path = write_variant(x, sr, folder, 1000 + i)
        n = 0
        while time.time() < stop:
            kind = "train" if n % 4 == 0 else "decode"
            kw = {"seed": 100 * i + n} if kind == "train" else {"seed": 100 * i + (n // 4) * 4,
                                                                  "decoder": ("posterior", "viterbi")[n % 2]}
            try:
                dt, _ = timed(c, path, **kw)
                with lock:
                    lat.append(dt)
                    counts[kind] += 1
            except Exception as exc:  # noqa: BLE001
                with lock:
                    failures.append(f"client {i} request {n}: {exc}")
            n += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    threads += [threading.Thread(target=attacker, args=(i,)) for i in range(attackers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"latencies": lat, "failures": failures, "wall": wall, "counts": counts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="a running dashboard (default: start app.py on a free port)")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--clients", default="8,16", help="client counts of the load runs (comma separated)")
    ap.add_argument("--attackers", type=int, default=4, help="clients submitting and cancelling enormous requests")
    ap.add_argument("--seconds", type=float, default=60.0, help="duration of each load run")
    args = ap.parse_args()

    load_before = os.getloadavg()
    proc = None
    url = args.url
    if url is None:
        t0 = time.perf_counter()
        proc, url = start_app()
        print(f"app started in {time.perf_counter() - t0:.1f} s at {url}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            x, sr = make_clip(folder)
            client = Client(url, verbose=False)
            warm, _ = timed(client, write_variant(x, sr, folder, 0))  # first request: compiles kernels
            full, decode, server_full, server_decode = [], [], [], []
            for k in range(args.trials):
                path = write_variant(x, sr, folder, k + 1)
                dt, summ = timed(client, path)
                assert "training" not in summ["cached"], summ["cached"]
                full.append(dt)
                server_full.append(summ["total_seconds"])
                for dec in ("posterior", "viterbi"):
                    dt, summ = timed(client, path, decoder=dec)
                    assert "training" in summ["cached"], summ["cached"]
                    decode.append(dt)
                    server_decode.append(summ["total_seconds"])
            with_sweep = []
            for k in range(max(1, args.trials // 2)):
                dt, _ = timed(client, write_variant(x, sr, folder, 500 + k), sweep_states="2,4,8,16")
                with_sweep.append(dt)
            loads = []
            counts = [int(c) for c in str(args.clients).split(",") if c.strip()]
            if args.seconds > 0:
                for n_clients in counts:
                    loads.append((f"{n_clients} clients", n_clients, load_test(url, x, sr, folder, n_clients,
                                                                                args.seconds)))
                if args.attackers > 0:
                    loads.append((f"{counts[0]} clients + {args.attackers} enormous requests cancelled after 2 s",
                                  counts[0], load_test(url, x, sr, folder, counts[0], args.seconds,
                                                       attackers=args.attackers)))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=15)

    rows = [
        ("first request after start (kernel compile)", f"{warm:.3f} s", ""),
        ("full analysis, 10 s clip, K=16, 20 EM iters", stats(full), "target < 1.5 s"),
        ("  of which server-side (summary total)", stats(server_full), ""),
        ("decoding-only change (cached model)", stats(decode), "target < 0.5 s"),
        ("  of which server-side (summary total)", stats(server_decode), ""),
        ("full analysis + BIC/AIC sweep K=2,4,8,16", stats(with_sweep), "(extra, not a target)"),
    ]
    quiet_p95 = None
    for name, _, load in loads:
        n = len(load["latencies"])
        p95 = _p95(load["latencies"])
        quiet_p95 = quiet_p95 if quiet_p95 is not None else p95
        rows += [
            (f"{name} x {args.seconds:.0f} s: normal requests ok / failed",
             f"{n} / {len(load['failures'])}", "target 0 failed"),
            ("  mix: decode-only / full training", f"{load['counts']['decode']} / {load['counts']['train']}", ""),
            ("  latency under load", stats(load["latencies"]), ""),
            ("  throughput", f"{n / load['wall']:.2f} req/s", ""),
        ]
        if load["counts"]["cancelled"]:
            rows += [("  enormous requests submitted and cancelled", str(load["counts"]["cancelled"]), ""),
                     ("  p95 / quiet p95", f"{p95 / quiet_p95:.2f}" if p95 and quiet_p95 else "-", "target <= 2")]
    w = max(len(r[0]) for r in rows)
    load_after = os.getloadavg()
    print(f"\nHMM Studio dashboard benchmark ({os.cpu_count()} CPUs, gradio_client over loopback; "
          f"1-min load average {load_before[0]:.1f} before, {load_after[0]:.1f} after - other processes on the "
          "same cores inflate these times)")
    print("-" * (w + 70))
    for name, value, note in rows:
        print(f"{name:<{w}}  {value:<55} {note}")
    failures = [f for _, _, load in loads for f in load["failures"]]
    if failures:
        print("\nfailures:")
        for f in failures[:20]:
            print("  ", f)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
