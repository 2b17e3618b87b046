#!/usr/bin/env python
"""Long recordings: held-out synthetic utterances chained into 10- to 60-minute files.

    python benchmarks/long_recordings.py [--minutes 10 30 60] [--corpus data/long_corpus --num 600 --seed 7]
        [--synth festival] [--max-train-minutes 20] [--skip-models] [--skip-train] [--librivox ROUNDS]

1. Generates (or reuses) a held-out corpus with ``scripts/make_corpus.py`` (seed 7, never
   used for tuning; espeak-ng, flite and festival voices with exact phone boundaries).
2. *Per utterance* (the reference figure): ``align_corpus`` on the utterances one file each
   (what ``python -m hmm_engine align`` does with a corpus of short files), phones given.
3. For each length: the utterances in a fixed shuffled order (cycled when the corpus is
   shorter than the recording), back to back (each keeps its own leading and trailing silence:
   an inserted gap of other noise would be a sound the utterances never have), become one wav with
   one phone transcript; ``align_corpus_long`` aligns it (``align`` on a corpus holding it):
   *trained* (bootstrap, anchors, training on at most ``--max-train-minutes`` of pieces, all
   pieces aligned) and, unless ``--skip-models``, *with models* (the per-utterance run's
   ``phone_models.pt``: anchors and pieces only). Each run is a fresh process, so its peak
   resident memory (``ru_maxrss``) is its own.
4. Scores the stitched phone tier cut back at the utterance offsets against each utterance's
   reference (% of boundaries within 20 ms, the metrics of ``hmm_engine.alignment.metrics``),
   next to the per-utterance alignment of the same utterances (same multiset).

Wall times depend on the machine's load (printed); CPU seconds of the run's process (user +
system, all threads) are printed beside them, as they depend less on other jobs. The figures are
the run's, never tuned on the references.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402


def ensure_corpus(folder: Path, num: int, seed: int) -> list[str]:
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        print(f"generating {num} utterances into {folder} ...", flush=True)
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_corpus.py"), str(folder), "--num", str(num),
                        "--seed", str(seed)], check=True)
    return sorted(p.stem for p in folder.glob("*.wav"))


def build_recording(corpus: Path, names: list[str], minutes: float, out: Path, seed: int = 0) -> list[tuple]:
    """Chain utterances into ``out/long.wav`` + ``long.phones.lab``; returns
    ``[(name, offset_s, duration_s)]`` of each occurrence."""
    rng = np.random.default_rng(seed)
    order = [names[i] for i in rng.permutation(len(names))]
    out.mkdir(parents=True, exist_ok=True)
    placed, phones, total = [], [], 0.0
    with sf.SoundFile(out / "long.wav", "w", samplerate=16000, channels=1, subtype="PCM_16") as handle:
        i = 0
        while total < minutes * 60:
            name = order[i % len(order)]
            i += 1
            x, sr = sf.read(corpus / f"{name}.wav", dtype="float32")
            assert sr == 16000, sr
            placed.append((name, total, len(x) / sr))
            handle.write(x)
            total += len(x) / sr
            phones.append((corpus / f"{name}.phones.lab").read_text().strip())
    (out / "long.phones.lab").write_text(" ".join(phones) + "\n")
    (out / "placement.json").write_text(json.dumps(placed))
    return placed


def child(args) -> None:
    """One alignment run in this process; prints a JSON line."""
    import torch

    from hmm_engine.alignment.long_form import align_corpus_long
    from hmm_engine.alignment.phone_models import PhoneModels

    torch.set_num_threads(1)
    models = PhoneModels.load(args.models) if args.models else None
    t0 = time.perf_counter()
    report, results = align_corpus_long(
        args.child, args.out, phones=True, transcript_suffix=".phones.lab", formats=("textgrid", "json"),
        models=models, max_train_minutes=args.max_train_minutes, show_progress=False,
        report=lambda line: None, device="cpu",
    )
    wall = time.perf_counter() - t0
    r = results[0]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "timings": report.timings, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "pieces": len(r.pieces), "unaligned": [p.index for p in r.unaligned], "duration": r.duration,
        "anchors": {k: sum(p.anchor == k for p in r.pieces) for k in ("pause", "word", "end")},
        "longest_piece_s": max((p.end_frame - p.start_frame) * r.frame_shift for p in r.pieces),
    }))


def score_long(corpus: Path, hyp_tg: Path, placed: list[tuple]):
    from hmm_engine.alignment.metrics import compare_tiers, pool_comparisons
    from hmm_engine.alignment.textgrids import read_textgrid
    from hmm_engine.segments import Segment

    hyp = read_textgrid(hyp_tg, tier="phones")["phones"]
    starts = np.array([s.start for s in hyp])
    out = []
    for name, offset, dur in placed:
        ref = read_textgrid(corpus / f"{name}.TextGrid", tier="phones")["phones"]
        lo = max(0, int(np.searchsorted(starts, offset)) - 1)
        piece = []
        for s in hyp[lo:]:
            if s.start >= offset + dur:
                break
            a, b = max(s.start, offset) - offset, min(s.end, offset + dur) - offset
            if b - a > 1e-6:
                piece.append(Segment(s.label, a, b))
        out.append(compare_tiers(ref, piece))
    return pool_comparisons(out)


def score_utterances(corpus: Path, hyp_dir: Path, placed: list[tuple]):
    from hmm_engine.alignment.metrics import compare_tiers, pool_comparisons
    from hmm_engine.alignment.textgrids import read_textgrid

    cache = {}
    out = []
    for name, _, _ in placed:
        if name not in cache:
            ref = read_textgrid(corpus / f"{name}.TextGrid", tier="phones")["phones"]
            hyp = read_textgrid(hyp_dir / f"{name}.TextGrid", tier="phones")["phones"]
            cache[name] = compare_tiers(ref, hyp)
        out.append(cache[name])
    return pool_comparisons(out)


LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def librivox(work: Path, rounds: int) -> None:
    """Real read speech: the five LibriVox clips of Debian's pocketsphinx-testdata chained
    ``rounds`` times (back to back) with one word transcript, aligned as one long recording,
    against the same clips aligned one file each (the same multiset, the same recipe, words
    through espeak-ng): % of the per-clip phone boundaries the long alignment puts within
    20 ms, and the per-clip alignment's agreement with itself is 100% by definition."""
    import shutil

    from hmm_engine.alignment.recipes import align_corpus
    from hmm_engine.alignment.long_form import align_corpus_long
    from hmm_engine.alignment.metrics import compare_tiers, pool_comparisons
    from hmm_engine.alignment.textgrids import read_textgrid
    from hmm_engine.segments import Segment

    lines = (LIBRIVOX / "transcription").read_text().splitlines()
    clips = []
    for line in lines:
        text, fileid = line.rsplit("(", 1)
        clips.append((fileid.strip(" )"), text.replace("<s>", "").replace("</s>", "").strip()))
    base = work / "librivox"
    shutil.rmtree(base, ignore_errors=True)
    per, rec = base / "clips", base / "rec"
    per.mkdir(parents=True)
    rec.mkdir()
    placed, audio, words = [], [], []
    t = 0.0
    for r in range(rounds):
        for fileid, text in clips:
            x, sr = sf.read(LIBRIVOX / f"{fileid}.wav", dtype="float32")
            name = f"{fileid}_{r}"
            shutil.copy(LIBRIVOX / f"{fileid}.wav", per / f"{name}.wav")
            (per / f"{name}.lab").write_text(text + "\n")
            placed.append((name, t, len(x) / sr))
            audio.append(x)
            words.append(text)
            t += len(x) / sr
    sf.write(rec / "long.wav", np.concatenate(audio), sr)
    (rec / "long.lab").write_text(" ".join(words) + "\n")
    t0 = time.perf_counter()
    align_corpus(per, base / "clips_out", device="cpu", show_progress=False, report=lambda line: None)
    t_per = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, results = align_corpus_long(rec, base / "long_out", long_seconds=20.0, device="cpu", show_progress=False,
                                   report=lambda line: None)
    t_long = time.perf_counter() - t0
    hyp = read_textgrid(base / "long_out" / "long.TextGrid", tier="phones")["phones"]
    comparisons = []
    for name, offset, dur in placed:
        ref = read_textgrid(base / "clips_out" / f"{name}.TextGrid", tier="phones")["phones"]
        piece = [Segment(s.label, max(s.start, offset) - offset, min(s.end, offset + dur) - offset) for s in hyp
                 if min(s.end, offset + dur) - max(s.start, offset) > 1e-6]
        comparisons.append(compare_tiers(ref, piece, silence="merge"))
    pooled = pool_comparisons(comparisons)
    r = results[0]
    print(f"\nLibriVox: {len(clips)} clips x {rounds} = {t:.0f} s of real read speech; long alignment vs per-clip "
          f"alignment: {pooled.percent_within(20):.1f}% of boundaries within 20 ms ({pooled.percent_within(10):.1f}% "
          f"within 10 ms, {pooled.mismatches} phone mismatches, {pooled.num_scored_boundaries} boundaries); "
          f"{len(r.pieces)} pieces, {len(r.unaligned)} unaligned; per-clip run {t_per:.0f} s, long run {t_long:.0f} s")


def run_child(recording: Path, out: Path, models: Path | None, max_train: float | None) -> dict:
    cmd = [sys.executable, __file__, "--child", str(recording), "--out", str(out)]
    if models:
        cmd += ["--models", str(models)]
    if max_train is not None:
        cmd += ["--max-train-minutes", str(max_train)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "data" / "long_corpus")
    parser.add_argument("--num", type=int, default=600)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work", type=Path, default=ROOT / "data" / "long_bench")
    parser.add_argument("--minutes", type=float, nargs="*", default=[10, 30, 60])
    parser.add_argument("--synth", default="festival",
                        help="chain the utterances whose name starts with this (festival: one voice, as a real "
                             "long recording has; '' for all three synthesizers and their many voices)")
    parser.add_argument("--max-train-minutes", type=float, default=20.0)
    parser.add_argument("--skip-models", action="store_true", help="leave out the runs with given models")
    parser.add_argument("--skip-train", action="store_true", help="leave out the runs that train")
    parser.add_argument("--librivox", type=int, default=0, metavar="ROUNDS",
                        help="also chain the five LibriVox clips of pocketsphinx-testdata ROUNDS times and compare "
                             "with their per-clip alignment")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--models", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        child(args)
        return 0

    import torch

    from hmm_engine.alignment.recipes import MODEL_FILE, align_corpus

    torch.set_num_threads(1)
    names = [n for n in ensure_corpus(args.corpus, args.num, args.seed) if n.startswith(args.synth)]
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores); corpus {args.corpus}: {len(names)} "
          f"utterances starting with {args.synth!r}")
    # The per-utterance reference: the same utterances, one file each, the same recipe.
    work = args.work / (args.synth or "all")
    per_utt = work / "per_utterance"
    t0 = time.perf_counter()
    if not (per_utt / MODEL_FILE).is_file():
        files = work / "utterances"
        files.mkdir(parents=True, exist_ok=True)
        for n in names:
            for suffix in (".wav", ".phones.lab"):
                if not (files / f"{n}{suffix}").exists():
                    os.symlink((args.corpus / f"{n}{suffix}").resolve(), files / f"{n}{suffix}")
        report = align_corpus(files, per_utt, phones=True, transcript_suffix=".phones.lab", device="cpu",
                              show_progress=False, report=lambda line: None)
        print(f"per-utterance corpus run: {report.audio_seconds:.0f} s of audio in {time.perf_counter() - t0:.0f} s")
    rows = []
    for minutes in args.minutes:
        rec = work / f"rec_{minutes:g}min"
        placed = build_recording(args.corpus, names, minutes, rec)
        reference = score_utterances(args.corpus, per_utt, placed)
        modes = ([] if args.skip_train else [("trained", None)]) + \
            ([] if args.skip_models else [("with models", per_utt / MODEL_FILE)])
        for label, models in modes:
            out = work / f"out_{minutes:g}min_{label.replace(' ', '_')}"
            info = run_child(rec, out, models, args.max_train_minutes)
            pooled = score_long(args.corpus, out / "long.TextGrid", placed)
            rows.append((minutes, label, len(placed), info, pooled, reference))
            t = info["timings"]
            print(f"{minutes:g} min {label}: {pooled.percent_within(20):.1f}% (per utterance {reference.percent_within(20):.1f}%), "
                  f"{info['pieces']} pieces ({info['anchors']}), unaligned {info['unaligned']}, longest piece "
                  f"{info['longest_piece_s']:.1f} s, peak {info['maxrss_mb']:.0f} MB, {info['wall']:.0f} s wall = "
                  f"{info['duration'] / info['wall']:.0f}x real time, {info['cpu']:.0f} CPU s = "
                  f"{info['duration'] / info['cpu']:.0f}x real time per CPU second; stages: "
                  + ", ".join(f"{k} {v:.1f}" for k, v in t.items()), flush=True)
    if args.librivox:
        librivox(args.work, args.librivox)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    print("\n| recording | mode | utterances | ≤20 ms long | ≤20 ms per utterance | ≤10 / 25 / 50 ms long | pieces | "
          "unaligned | peak memory | wall | × real time | CPU s | audio s per CPU s |")
    print("|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for minutes, label, n, info, pooled, reference in rows:
        print(f"| {minutes:g} min | {label} | {n} | {pooled.percent_within(20):.1f} | {reference.percent_within(20):.1f} | "
              f"{pooled.percent_within(10):.1f} / {pooled.percent_within(25):.1f} / {pooled.percent_within(50):.1f} | "
              f"{info['pieces']} | {len(info['unaligned'])} | {info['maxrss_mb'] / 1024:.2f} GB | {info['wall']:.0f} s | "
              f"{info['duration'] / info['wall']:.0f}× | {info['cpu']:.0f} | {info['duration'] / info['cpu']:.0f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
