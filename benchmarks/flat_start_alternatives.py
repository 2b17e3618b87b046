#!/usr/bin/env python
"""Ideas tried to bring flat-start corpus alignment closer to the references, each measured.

    python benchmarks/flat_start_alternatives.py [--corpus data/align_bench] [--num 150] [--seed 1]
        [--only lda,refine,hybrid,cmvn,per-synth,per-voice,voice-map,map]

On a *tuning* corpus (by default the 150-utterance one, seed 1; never the held-out seed 7):

0. **flat start**: corpus training and alignment as ``python -m hmm_engine align`` runs it
   (3 states, 4 Gaussians, 20 iterations, loudness/tilt prior).
1. **lda**: the 13 static MFCCs spliced over +-4 frames, projected by LDA onto the 40 most
   discriminative directions of the flat-start *state* alignment (the usual Kaldi recipe), then
   flat-start training again on those features (the loudness/tilt prior still reads the MFCCs).
2. **refine**: every flat-start boundary moved to the largest spectral change within +-15 ms
   (distance between static MFCCs 10 ms either side, on a 2.5 ms grid, 20 ms windows).
3. **hybrid**: a frame classifier (MLP on the features spliced over +-5 frames; two folds, each
   file scored by the model trained on the other half) learns the flat-start state alignment;
   its scaled likelihoods (log posterior - log state prior) replace, or are added to, the
   Gaussian scores, and the corpus is re-aligned; two rounds of self-training.
4. **cmvn**: mean and variance normalisation per voice (the corpus manifest's synthesizer +
   voice; what MFA does per speaker folder) instead of per utterance, then flat-start training.
5. **per-synth**, **per-voice**: each synthesizer's (each voice's) utterances trained (flat
   start) and aligned on their own;
6. **voice-map**: the shared flat-start means MAP-adapted (tau 20, one pass, no labels) to
   each voice's own utterances, what speaker adaptation does;
7. **map**: with N labelled utterances of the same voices (the labelled tuning corpus, seed 2),
   the flat-start means are MAP-adapted towards the labelled intervals (tau 20, one pass) and
   compared with ``train_labelled`` on the same N utterances.

Prints the % of boundaries within 20 ms, overall and per synthesizer, and the change from the
flat start. The README's "tried" list quotes this table.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import copy
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from bench_alignment import ensure_corpus, score  # noqa: E402
from hmm_engine.alignment import phone_models as phone_models_module  # noqa: E402
from hmm_engine.alignment import align_features, utterance_stats  # noqa: E402
from hmm_engine.alignment import (  # noqa: E402
    align_corpus, find_corpus_files, load_corpus, load_labelled_segments, train_corpus, train_labelled, TrainingConfig,
)
from hmm_engine.alignment.phone_models import PhoneModels  # noqa: E402
from hmm_engine.segments import Segment  # noqa: E402
from hmm_engine.alignment.textgrids import read_textgrid, write_textgrid  # noqa: E402
from hmm_engine.frontend.audio import load_audio  # noqa: E402
from hmm_engine.frontend.features import FeatureConfig, extract_features  # noqa: E402

# The CLI's defaults (align_corpus): global flat start annealed from 0.1, 4 Gaussians, 20 iterations.
CORPUS_TRAINING = TrainingConfig(num_mixtures=4, iterations=20, init="global", anneal=0.1,
                                 min_frames_per_gaussian=50.0)
QUIET = dict(show_progress=False, report=lambda line: None)
METHODS = ("lda", "refine", "hybrid", "cmvn", "per-synth", "per-voice", "voice-map", "map")


class Scorer:
    """Writes one TextGrid per utterance and prints a row of the table."""

    def __init__(self, corpus: Path, names: list[str], work: Path):
        self.corpus, self.names, self.work = corpus, names, work
        self.base: float | None = None

    def row(self, title: str, hyp_dir: Path, seconds: float, names: list[str] | None = None) -> float:
        pooled = score(self.corpus, hyp_dir, names or self.names)
        overall = pooled["overall"].percent_within(20)
        self.base = overall if self.base is None else self.base
        synths = " / ".join(f"{c.percent_within(20):.1f}" for k, c in pooled.items() if k != "overall")
        print(f"{title:<58}{overall:>8.1f}{overall - self.base:>+8.1f}   {synths:<20}{seconds:>7.0f}", flush=True)
        return overall

    def write(self, tag: str, loaded, segments_of) -> Path:
        out = self.work / tag
        out.mkdir(parents=True, exist_ok=True)
        for item, features, transcript in loaded:
            write_textgrid(out / f"{item.name}.TextGrid", {"phones": segments_of(features, transcript)},
                           features.duration)
        return out


def splice(values: torch.Tensor, context: int) -> torch.Tensor:
    """``[T, D] -> [T, (2 context + 1) D]``: each frame with its neighbours (edges repeated)."""
    T = values.shape[0]
    index = (torch.arange(T)[:, None] + torch.arange(-context, context + 1)[None, :]).clamp(0, T - 1)
    return values[index].reshape(T, -1)


def state_alignment(models: PhoneModels, loaded) -> list[torch.Tensor]:
    return [torch.as_tensor(align_features(f, t, models, False).frame_states).long() for _, f, t in loaded]


@contextlib.contextmanager
def cues_from(originals: dict[int, np.ndarray]):
    """The loudness/tilt prior reads MFCC c0/c1 from the scored features; for transformed
    features, give it the cues of the original MFCCs instead (looked up by tensor storage)."""
    compute = phone_models_module.acoustic_cues
    phone_models_module.acoustic_cues = lambda x, config: originals.get(x.data_ptr()) if x.data_ptr() in originals \
        else compute(x, config)
    try:
        yield
    finally:
        phone_models_module.acoustic_cues = compute


def lda(models: PhoneModels, loaded, scorer: Scorer, context: int = 4, dims: int = 40) -> None:
    t0 = time.perf_counter()
    statics = [splice(f.values[:, :13].double(), context) for _, f, _ in loaded]
    X, y = torch.cat(statics), torch.cat(state_alignment(models, loaded))
    mean = X.mean(0)
    counts = torch.bincount(y).double()
    used = counts > 0
    sums = torch.zeros(len(counts), X.shape[1], dtype=torch.float64).index_add_(0, y, X)
    class_means = sums[used] / counts[used, None] - mean
    total = (X - mean).T @ (X - mean)
    between = (class_means.T * counts[used]) @ class_means
    within = total - between
    # Generalised eigenproblem between v = w within v through the Cholesky factor of within.
    L = torch.linalg.cholesky(within)
    L_inv = torch.linalg.inv(L)
    eigenvalues, U = torch.linalg.eigh(L_inv @ between @ L_inv.T)
    transform = L_inv.T @ U[:, eigenvalues.argsort(descending=True)[:dims]]
    projected, originals = [], {}
    for (item, features, transcript), s in zip(loaded, statics):
        z = s @ transform
        z = ((z - z.mean(0)) / z.std(0).clamp_min(1e-6)).float()
        originals[z.data_ptr()] = phone_models_module.acoustic_cues(features.values, features.config)
        projected.append((item, dataclasses.replace(features, values=z), transcript))
    with cues_from(originals):
        lda_models, _ = train_corpus([(f, t) for _, f, t in projected], CORPUS_TRAINING)
        out = scorer.write("lda", projected, lambda f, t: align_features(f, t, lda_models, False).phones)
    scorer.row(f"lda: spliced +-{context} statics -> {dims} dims, trained again", out, time.perf_counter() - t0)


def refine(flat_dir: Path, scorer: Scorer, search_ms: float = 15.0, lag_ms: float = 10.0) -> None:
    t0 = time.perf_counter()
    shift = 2.5
    config = FeatureConfig(frame_shift_ms=shift, frame_length_ms=20.0, deltas=0)
    out = scorer.work / "refine"
    out.mkdir()
    for name in scorer.names:
        audio = load_audio(scorer.corpus / f"{name}.wav")
        c = extract_features(audio, config).values.double()
        T, k = c.shape[0], int(round(lag_ms / shift))
        change = torch.zeros(T, dtype=torch.float64)
        change[k:T - k] = (c[2 * k:] - c[:T - 2 * k]).norm(dim=1)
        segments = read_textgrid(flat_dir / f"{name}.TextGrid", tier="phones")["phones"]
        bounds = [segments[0].start]
        for seg in segments[1:]:
            centre = seg.start / (shift / 1000) - 0.5  # the frame centred on the boundary
            lo = max(int(np.floor(centre - search_ms / shift)), 1)
            hi = min(int(np.ceil(centre + search_ms / shift)), T - 2)
            bounds.append((lo + int(change[lo:hi + 1].argmax()) + 0.5) * shift / 1000 if hi >= lo else seg.start)
        bounds.append(segments[-1].end)
        if any(b <= a for a, b in zip(bounds[:-1], bounds[1:])):  # a phone squeezed out: keep the file as it was
            bounds = [segments[0].start] + [s.start for s in segments[1:]] + [segments[-1].end]
        write_textgrid(out / f"{name}.TextGrid",
                       {"phones": [Segment(s.label, bounds[i], bounds[i + 1], s.score) for i, s in enumerate(segments)]},
                       audio.duration)
    scorer.row(f"refine: boundary to the largest spectral change, +-{search_ms:.0f} ms", out, time.perf_counter() - t0)


def hybrid(models: PhoneModels, loaded, scorer: Scorer, rounds: int = 2, context: int = 5, folds: int = 2) -> None:
    for gmm_weight in (0.0, 1.0):
        t0 = time.perf_counter()
        states = state_alignment(models, loaded)
        X = [splice(f.values.float(), context) for _, f, _ in loaded]
        scores: dict[int, torch.Tensor] = {}
        log_likelihood = PhoneModels.log_likelihood

        def patched(self, x, chain_states=None):
            # Scaled likelihoods of the classifier (+ the Gaussians' when gmm_weight > 0).
            if x.data_ptr() not in scores:
                return log_likelihood(self, x, chain_states)
            out = scores[x.data_ptr()]
            out = out if chain_states is None else out[:, torch.as_tensor(chain_states).long()]
            return out + gmm_weight * log_likelihood(self, x, chain_states) if gmm_weight else out

        for _ in range(rounds):
            scores.clear()
            for fold in range(folds):
                train = [i for i in range(len(loaded)) if i % folds != fold]
                net, log_prior = _train_classifier(torch.cat([X[i] for i in train]),
                                                   torch.cat([states[i] for i in train]), models.num_states)
                with torch.no_grad():
                    for i in range(fold, len(loaded), folds):
                        scores[loaded[i][1].values.data_ptr()] = torch.log_softmax(net(X[i]), -1).double() - log_prior
            PhoneModels.log_likelihood = patched
            try:
                results = [align_features(f, t, models, False) for _, f, t in loaded]
            finally:
                PhoneModels.log_likelihood = log_likelihood
            states = [torch.as_tensor(r.frame_states).long() for r in results]
        by_name = {item.name: r.phones for (item, _, _), r in zip(loaded, results)}
        out = scorer.work / f"hybrid_{gmm_weight:g}"
        out.mkdir()
        for item, features, _ in loaded:
            write_textgrid(out / f"{item.name}.TextGrid", {"phones": by_name[item.name]}, features.duration)
        what = "MLP + Gaussian scores" if gmm_weight else "MLP scores alone"
        scorer.row(f"hybrid: {what}, {rounds} rounds of self-training", out, time.perf_counter() - t0)


def _train_classifier(X: torch.Tensor, y: torch.Tensor, num_states: int, hidden: int = 512, epochs: int = 6):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(X.shape[1], hidden), nn.ReLU(), nn.Dropout(0.2),
                        nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(0.2), nn.Linear(hidden, num_states))
    optimiser = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(epochs):
        for batch in torch.randperm(X.shape[0]).split(256):
            loss = nn.functional.cross_entropy(net(X[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    counts = torch.bincount(y, minlength=num_states).double() + 1
    return net.eval(), (counts / counts.sum()).log()


def voice_cmvn(loaded, scorer: Scorer) -> None:
    t0 = time.perf_counter()
    voice = voices(scorer.corpus)
    raw_config = dataclasses.replace(loaded[0][1].config, cmvn=False)
    raw, _ = load_corpus([item for item, _, _ in loaded], True, raw_config)
    frames: dict[tuple[str, str], list[torch.Tensor]] = {}
    for item, features, _ in raw:
        frames.setdefault(voice[item.name], []).append(features.values.double())
    stats = {key: (torch.cat(v).mean(0), torch.cat(v).std(0).clamp_min(1e-6)) for key, v in frames.items()}
    normalised = []
    for item, features, transcript in raw:
        mean, std = stats[voice[item.name]]
        values = ((features.values.double() - mean) / std).float()
        normalised.append((item, dataclasses.replace(features, values=values, config=loaded[0][1].config), transcript))
    models, _ = train_corpus([(f, t) for _, f, t in normalised], CORPUS_TRAINING)
    out = scorer.write("cmvn", normalised, lambda f, t: align_features(f, t, models, False).phones)
    scorer.row(f"cmvn: per voice ({len(stats)} voices) instead of per utterance", out, time.perf_counter() - t0)


def map_means(models: PhoneModels, data, tau: float) -> PhoneModels:
    """A copy of ``models`` whose Gaussian means are MAP-adapted, in one pass, to the E-step
    statistics of ``data`` (``(features, transcript)`` pairs): ``(sum x + tau mu) / (n + tau)``."""
    K, M, D = models.num_states, models.num_mixtures, models.obs_dim
    n = torch.zeros(K, M, dtype=torch.float64)
    sx = torch.zeros(K, M, D, dtype=torch.float64)
    for features, transcript in data:
        stats = utterance_stats(models, features.values, transcript)
        n += stats["n"].double().reshape(K, M)
        sx += stats["x"].double().reshape(K, M, D)
    adapted = copy.deepcopy(models)
    with torch.no_grad():
        prior = models.emission.means.double().reshape(K, M, D)
        adapted.emission.means = ((sx + tau * prior) / (n + tau)[..., None]).to(models.emission.means.dtype)
    return adapted


def voices(corpus: Path) -> dict[str, tuple[str, str]]:
    """``{name: (synthesizer, voice)}`` from the generated corpus's manifest."""
    with open(corpus / "manifest.csv", newline="") as handle:
        return {row["name"]: (row["synthesizer"], row["voice"]) for row in csv.DictReader(handle)}


def per_group(loaded, scorer: Scorer, by: str) -> None:
    """Each synthesizer's (``by="synth"``) or each voice's (``by="voice"``) utterances trained
    (flat start) and aligned on their own."""
    t0 = time.perf_counter()
    voice = voices(scorer.corpus)
    groups: dict[object, list] = {}
    for entry in loaded:
        name = entry[0].name
        groups.setdefault(name.split("_")[0] if by == "synth" else voice[name], []).append(entry)
    for entries in groups.values():
        models, _ = train_corpus([(f, t) for _, f, t in entries], CORPUS_TRAINING)
        scorer.write(f"per_{by}", entries, lambda f, t: align_features(f, t, models, False).phones)
    title = "each synthesizer" if by == "synth" else f"each voice ({len(groups)})"
    scorer.row(f"per-{by}: {title} trained on its own utterances", scorer.work / f"per_{by}",
               time.perf_counter() - t0)


def voice_map(models: PhoneModels, loaded, scorer: Scorer, tau: float = 20.0) -> None:
    """Speaker adaptation without labels: the shared flat-start means MAP-adapted to each
    voice's own utterances (their forced-alignment statistics, one pass)."""
    t0 = time.perf_counter()
    voice = voices(scorer.corpus)
    by_voice: dict[tuple[str, str], list] = {}
    for entry in loaded:
        by_voice.setdefault(voice[entry[0].name], []).append(entry)
    out = scorer.work / "voice_map"
    for entries in by_voice.values():
        adapted = map_means(models, [(f, t) for _, f, t in entries], tau)
        scorer.write("voice_map", entries, lambda f, t: align_features(f, t, adapted, False).phones)
    scorer.row(f"voice-map: means MAP-adapted per voice ({len(by_voice)}, tau {tau:g})", out,
               time.perf_counter() - t0)


def map_adaptation(models: PhoneModels, loaded, scorer: Scorer, labelled_corpus: Path, sizes: list[int],
                   tau: float = 20.0) -> None:
    files, _ = find_corpus_files(labelled_corpus, ".TextGrid")
    by_synth: dict[str, list] = {}
    for item in files:
        by_synth.setdefault(item.name.split("_")[0], []).append(item)
    for size in sizes:
        chosen = [item for items in by_synth.values() for item in items[: size // len(by_synth)]]
        t0 = time.perf_counter()
        segments, _, _, _ = load_labelled_segments(chosen, models.feature_config)
        adapted = map_means(models, [(f, t) for f, t in segments if all(p in models.phone_index for p in t.phones)],
                            tau)
        out = scorer.write(f"map_{size}", loaded, lambda f, t: align_features(f, t, adapted, False).phones)
        scorer.row(f"map: flat-start means adapted to {size} labelled utterances", out, time.perf_counter() - t0)

        t0 = time.perf_counter()
        subset = scorer.work / f"labelled_{size}"
        subset.mkdir()
        for item in chosen:
            for path in (item.audio, item.transcript):
                (subset / path.name).symlink_to(path.resolve())
        labelled = PhoneModels.load(train_labelled(subset, subset / "models", **QUIET).models_path)
        known = [(i, f, t) for i, f, t in loaded if all(p in labelled.phone_index for p in t.phones)]
        out = scorer.write(f"labelled_{size}_out", known, lambda f, t: align_features(f, t, labelled, False).phones)
        scorer.row(f"  (train-labelled on the same {size}: {len(known)} of {len(loaded)} files)", out,
                   time.perf_counter() - t0, [i.name for i, _, _ in known])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "data" / "align_bench")
    parser.add_argument("--num", type=int, default=150)
    parser.add_argument("--seed", type=int, default=1, help="corpus seed (1: a tuning corpus)")
    parser.add_argument("--labelled-corpus", type=Path, default=ROOT / "data" / "align_bench450")
    parser.add_argument("--map-sizes", default="30,150", help="labelled utterances for map (multiples of 3)")
    parser.add_argument("--only", default=",".join(METHODS), help=f"comma-separated subset of {METHODS}")
    args = parser.parse_args(argv)
    methods = [m for m in args.only.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown method(s) {unknown}; choose from {METHODS}")
    torch.set_num_threads(1)
    ensure_corpus(args.corpus, args.num, args.seed)
    if "map" in methods:
        ensure_corpus(args.labelled_corpus, 450, 2)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        flat = align_corpus(args.corpus, work / "flat", phones=True, transcript_suffix=".phones.lab",
                            device="cpu", num_mixtures=4, iterations=20, **QUIET)
        models = PhoneModels.load(flat.models_path)
        files, _ = find_corpus_files(args.corpus, ".phones.lab")
        loaded = [entry for entry in load_corpus(files, True, models.feature_config)[0]
                  if entry[0].name in flat.aligned]
        scorer = Scorer(args.corpus, [item.name for item, _, _ in loaded], work)
        print(f"corpus {args.corpus} ({len(loaded)} utterances); % of boundaries within 20 ms\n")
        print(f"{'method':<58}{'<=20 ms':>8}{'change':>8}   {'espeak/festival/flite':<20}{'s':>7}")
        scorer.row("flat start (align, CLI defaults)", work / "flat", time.perf_counter() - t0)
        if "lda" in methods:
            lda(models, loaded, scorer)
        if "refine" in methods:
            refine(work / "flat", scorer)
        if "hybrid" in methods:
            hybrid(models, loaded, scorer)
        if "cmvn" in methods:
            voice_cmvn(loaded, scorer)
        for by in ("synth", "voice"):
            if f"per-{by}" in methods:
                per_group(loaded, scorer, by)
        if "voice-map" in methods:
            voice_map(models, loaded, scorer)
        if "map" in methods:
            map_adaptation(models, loaded, scorer, args.labelled_corpus, [int(v) for v in args.map_sizes.split(",")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
