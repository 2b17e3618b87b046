"""Forced alignment for the dashboard: audio + transcript (+ reference TextGrid) -> results.

The alignment is ``hmm_engine.alignment.align_utterance`` (tied left-to-right phone
HMMs trained on the utterance by flat start + EM, then Viterbi); this module adds the
dashboard's caches, timings, memory, scoring against a reference TextGrid with
``hmm_engine.alignment.metrics.compare_tiers`` and the downloads.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from components import lanes
from components import pipeline as P
from hmm_engine.segments import Segment
from components.results import AlignView, AnalysisSettings
from hmm_engine import limits
from hmm_engine.durations import DURATION_TYPES
from hmm_engine.errors import HMMStudioError, TextGridError, TranscriptError

SILENCE_MODE = "merge"
SILENCES = ("sil", "sp", "pau", "_")
# "hmm": durations from self-loops; otherwise an explicit (semi-Markov) phone-duration family.
DURATION_CHOICES = ("hmm", *DURATION_TYPES)
# Clips longer than this (up to the dashboard's audio cap) are aligned in pieces between anchors
# (hmm_engine.alignment.long_form): one chain over minutes of speech needs GBs of DP memory.
LONG_CLIP_SECONDS = 60.0
# The mel grid of the Align tab's TTS durations download (a common 22.05 kHz recipe).
TTS_GRID = dict(sample_rate=22050, hop_length=256, win_length=1024, center=True)


# ------------------------------------------------------------------------------ transcript


# The Align tab's intro: what to expect, honestly (figures: benchmarks/real_speech.py and
# benchmarks/bench_alignment.py; docs/real-recordings.md).
ALIGN_INTRO = (
    "Forced alignment of one recording. Words go through CMUdict (espeak-ng for words it lacks); when every "
    "phone is CMUdict's, phone models shipped with HMM Studio (trained on exact labels of synthetic voices) place "
    "them with Viterbi, otherwise phone models are trained on this clip alone (the states and EM knobs apply "
    "then). Background noise before, after and between words is kept off the phones. What to expect: on real "
    "read speech about 84% of phone boundaries fall within 20 ms of pocketsphinx's (an aligner trained on real "
    "speech) with the shipped models, about 60% with models trained on the clip alone (about 80% on clean "
    "synthetic speech). A phone's confidence is low where it lies over background noise or is squeezed to its "
    "shortest duration, and a warning says so in words when the transcript seems not to fit the audio. Same "
    "defaults on the command line: `hmm-engine align-one AUDIO TRANSCRIPT OUT.TextGrid`."
)


def aligner_defaults() -> dict:
    """The aligner's own defaults (its authors measured them): states per phone, EM iterations."""
    import inspect

    from hmm_engine.alignment import align_utterance

    params = inspect.signature(align_utterance).parameters
    def default(name, fallback):
        p = params.get(name)
        return fallback if p is None or p.default is inspect.Parameter.empty else p.default
    return {"states_per_phone": int(default("states_per_phone", 3)), "iterations": int(default("iterations", 10))}


def check_transcript(transcript: Any, kind: str) -> str:
    """Cheap checks before any audio work (length bounds, control characters); the aligner
    does the rest."""
    if transcript is None or not str(transcript).strip():
        raise TranscriptError("the transcript is empty: type the words (or phones) spoken in the clip")
    kind = (kind or "text").strip().lower()
    if kind not in ("text", "phones"):
        raise P.DashboardError(f"transcript kind must be 'text' or 'phones', got {kind!r}")
    text = str(transcript)
    limits.check_text_size(text)
    if kind == "phones":
        tokens = text.split()
        limits.check_token_count(len(tokens), "phone transcript", "phones")
        limits.check_labels(tokens)
    else:
        from hmm_engine.alignment.transcripts import tokenize_words

        limits.check_token_count(len(tokenize_words(text)))
    return kind


def check_fits_audio(transcript: str, kind: str, seconds: float) -> None:
    """A transcript longer than the clip can hold is refused before espeak-ng or EM run."""
    if kind == "phones":
        limits.check_fits_audio(len(str(transcript).split()), seconds, "phones")
    else:
        from hmm_engine.alignment.transcripts import tokenize_words

        limits.check_fits_audio(len(tokenize_words(str(transcript))), seconds, "words")


# Punctuation never appears in the phone symbols of ARPAbet, espeak-ng or IPA; and none of
# their symbols is longer than four characters (ARPAbet "AXR0").
_NOT_A_PHONE = re.compile(r"[,.;!?\"()\[\]{}]|^.{5,}$")


def unknown_phones(tokens: list[str], inventory: set[str] | None = None) -> tuple[list[str], str]:
    """Tokens of a "phones" transcript that are not phones of the selected set: the given
    models' (or reference's) inventory, else the symbol set (ARPAbet, espeak-ng, IPA) that
    recognises most of them. Returns the unknown tokens (each once) and the set's name."""
    from hmm_engine.alignment.phone_classes import detect_symbol_set, phone_class

    if inventory:
        return list(dict.fromkeys(t for t in tokens if t not in inventory)), "the given inventory"
    symbol_set = detect_symbol_set(tokens)
    bad = [t for t in tokens if _NOT_A_PHONE.search(t) or phone_class(t, symbol_set=symbol_set) is None]
    return list(dict.fromkeys(bad)), f"{symbol_set} phones"


def phone_warning(transcript: str, inventory: set[str] | None, where: str) -> str | None:
    tokens = str(transcript).split()
    bad, name = unknown_phones(tokens, inventory)
    if not bad:
        return None
    shown = ", ".join(repr(t) for t in bad[:8]) + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
    hint = " Is it text? Set 'Transcript is' to text." if any(_NOT_A_PHONE.search(t) for t in bad) else ""
    return f"{len(bad)} of the transcript's 'phones' are not {name} ({where}): {shown}.{hint}"


def read_reference(path: Any, tier: str = "") -> tuple[list, str]:
    """The reference phone tier of a TextGrid: ``tier`` by name, else one named like
    "phones", else the tier with the most intervals."""
    from hmm_engine.alignment.textgrids import read_textgrid

    if isinstance(path, dict):
        path = path.get("path")
    p = Path(str(path))
    if p.suffix.lower() != ".textgrid":
        raise TextGridError(f"reference '{p.name}' is not a .TextGrid file")
    tiers = read_textgrid(p, tier=tier.strip() or None)
    if not tiers:
        raise TextGridError(f"reference '{p.name}' has no interval tiers")
    if tier.strip():
        name = tier.strip()
    else:
        names = list(tiers)
        phoneish = [n for n in names if "phone" in n.lower()]
        name = phoneish[0] if phoneish else max(names, key=lambda n: len(tiers[n]))
    segs = tiers[name]
    if not segs:
        raise TextGridError(f"reference tier {name!r} has no labelled intervals")
    return segs, name


# ------------------------------------------------------------------------------ aligners


def _as_like(segs) -> list[Segment]:
    out = []
    for s in segs:
        score = getattr(s, "score", None)
        out.append(Segment(str(s.label), float(s.start), float(s.end), None if score is None else float(score)))
    return out


# ------------------------------------------------------------------------------ scoring


def score(reference, hypothesis, frame_shift: float) -> tuple[dict, list]:
    from hmm_engine.alignment.metrics import compare_tiers
    from hmm_engine.segments import Segment

    ref = [Segment(s.label, s.start, s.end) for s in reference]
    hyp = [Segment(s.label, s.start, s.end) for s in hypothesis]
    cmp = compare_tiers(ref, hyp, silence=SILENCE_MODE, frame_shift=frame_shift)
    metrics = {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in cmp.summary().items()}
    metrics["silence_mode"] = SILENCE_MODE
    # (ref_time, hyp_time, "a|b"): exactly the boundaries compare_tiers scored.
    points = [(p.reference, p.hypothesis, p.label) for p in cmp.boundary_pairs]
    return metrics, points


# ------------------------------------------------------------------------------ entry point


def align(audio: Any, transcript: str, transcript_kind: str = "text", states_per_phone: int | None = None,
          reference_textgrid: Any = None, reference_tier: str = "", feature_kind: str = "mfcc",
          max_iter: int | None = None, device: str = "auto", seed: int = 0, durations: str = "gamma",
          phone_models: Any = None, dictionary: Any = None,
          progress: P.Progress = P._noop_progress) -> AlignView:
    """Align one utterance; with ``phone_models`` (a ``phone_models.pt`` written by ``python -m
    hmm_engine align`` or ``train-labelled``) its models align it and nothing is trained here, so
    states per phone, EM iterations and durations come from the file. With ``dictionary`` (a
    CMUdict / MFA pronunciation dictionary) a text transcript's words are looked up there
    instead of going through espeak-ng."""
    from hmm_engine.alignment import (
        SINGLE_UTTERANCE_FEATURES,
        align_utterance,
        compute_features,
        prepare_transcript,
        shipped_phone_models,
        transcript_fit,
    )
    from hmm_engine.alignment.utterance import SPEECH_PRIOR
    from hmm_engine.alignment.phone_models import PhoneModels
    from hmm_engine.alignment.transcripts import DEFAULT_LEXICON, read_dictionary
    from hmm_engine.frontend.features import Features

    # The aligner's own single-utterance front end (static coefficients, no deltas: with one
    # Gaussian per phone fitted to a few frames, deltas overfit; measured in the aligner).
    s = P.validate_settings(AnalysisSettings(feature_kind=feature_kind, device=device, seed=seed,
                                             num_ceps=SINGLE_UTTERANCE_FEATURES.num_ceps, deltas=0))
    defaults = aligner_defaults()
    states_per_phone = defaults["states_per_phone"] if states_per_phone is None else states_per_phone
    max_iter = defaults["iterations"] if max_iter is None else max_iter
    try:
        spp, iters = int(states_per_phone), int(max_iter)
    except (TypeError, ValueError):
        raise P.DashboardError("states per phone and EM iterations must be integers") from None
    if not 1 <= spp <= 5:
        raise P.DashboardError(f"states per phone must be between 1 and 5, got {spp}")
    if not 0 <= iters <= 100:
        raise P.DashboardError(f"EM iterations must be between 0 and 100, got {iters}")
    durations = str(durations or "hmm").strip().lower()
    if durations not in DURATION_CHOICES:
        raise P.DashboardError(f"durations must be one of {', '.join(DURATION_CHOICES)}, got {durations!r}")
    dev = P.resolve_device(s.device)
    timer = P.StageTimer(dev)
    with P.MemoryMeter(dev) as mem:
        # transcript and reference first: cheap checks before any audio work
        kind = check_transcript(transcript, transcript_kind)
        models, models_name, fit = None, None, None
        if phone_models:
            path = phone_models.get("path") if isinstance(phone_models, dict) else phone_models
            with timer.stage("models"):
                models = PhoneModels.load(str(path), map_location=dev)
            models_name = Path(str(path)).name
        lexicon, lexicon_name = None, None
        if dictionary:
            if kind != "text":
                raise P.DashboardError("a pronunciation dictionary is for text transcripts: set 'Transcript is' "
                                       "to text, or remove the dictionary")
            path = dictionary.get("path") if isinstance(dictionary, dict) else dictionary
            with timer.stage("dictionary"):
                lexicon = read_dictionary(str(path))
            lexicon_name = Path(str(path)).name
        reference, ref_name = ([], None)
        if reference_textgrid:
            with timer.stage("reference"):
                reference, ref_name = read_reference(reference_textgrid, reference_tier or "")
        progress(0.0, "loading audio")
        with timer.stage("load"):
            loaded = P.load(audio)
        seconds = loaded.audio.duration
        # What the clip can hold, before espeak-ng and EM run.
        check_fits_audio(transcript, kind, seconds)
        if reference:
            limits.check_reference_covers(reference, seconds, name=f"reference TextGrid (tier {ref_name!r})")
        warnings = []
        if kind == "phones":
            inventory = set(models.phones) if models is not None else (
                {sg.label for sg in reference} if reference else None)
            where = ("the phone models'" if models is not None else "the reference's labels" if reference
                     else "symbol sets")
            note = phone_warning(transcript, inventory, where)
            if note:
                warnings.append(note)
        with timer.stage("features"):
            feats, _ = P.features(loaded, s)
        text = {"phones": str(transcript)} if kind == "phones" else {"words": str(transcript)}
        with timer.stage("waiting"):
            # alignments are bounded and share the light lane; a long clip (pieces, anchors, a corpus
            # of pieces trained) is heavy work
            slot = lanes.acquire(float("inf") if loaded.audio.duration > LONG_CLIP_SECONDS else 0.0)
        try:
            t0 = time.perf_counter()
            pieces = []
            if loaded.audio.duration > LONG_CLIP_SECONDS:
                progress(0.2, "long clip: anchors, pieces, each piece aligned, stitched")
                out, pieces = _align_long_clip(loaded, kind, str(transcript), models, lexicon, dev)
                if models is not None:
                    spp, iters, durations = models.states_per_phone, 0, models.duration_type or "hmm"
            else:
                # As align_utterance (align-one): words all in ARPAbet (through CMUdict) start from the
                # shipped phone models, not from this clip alone (docs/real-recordings.md: 61.0 -> 83.6%).
                if models is None and kind != "phones":
                    models = shipped_phone_models(prepare_transcript(words=str(transcript), dictionary=(
                        lexicon if lexicon is not None else DEFAULT_LEXICON)).phones)
                    if models is not None:
                        models.speech_prior = SPEECH_PRIOR
                        models_name = "shipped ARPAbet phone models (synthetic voices)"
                if models is not None:
                    # The models' own front end (a corpus model uses deltas; the display features do not).
                    progress(0.2, "Viterbi with the given phone models")
                    model_features = compute_features(loaded.audio, models.feature_config)
                    out = align_utterance(model_features, **text, models=models, device=dev,
                                          dictionary=lexicon if lexicon is not None else DEFAULT_LEXICON)
                    spp, iters = models.states_per_phone, 0
                    durations = models.duration_type or "hmm"
                    # Models trained elsewhere can judge the transcript (models trained on the clip cannot).
                    with timer.stage("transcript fit"):
                        fit = transcript_fit(models, model_features, out)
                else:
                    features = Features(feats.values, feats.frame_shift, P.feature_config(s), feats.duration,
                                        loaded.audio.sample_rate)
                    progress(0.2, f"flat start + {iters} EM iterations on the utterance, then Viterbi")
                    out = align_utterance(features, **text, states_per_phone=spp, iterations=iters, seed=int(s.seed),
                                          device=dev, duration_type=None if durations == "hmm" else durations,
                                          dictionary=lexicon if lexicon is not None else DEFAULT_LEXICON)
        finally:
            slot.release()
        elapsed = time.perf_counter() - t0 - timer.timings.get("transcript fit", 0.0)
        timer.timings["training"] = out.timings.get("training", elapsed)
        timer.timings["decoding"] = max(0.0, elapsed - timer.timings["training"])
        hyp = _as_like(out.phones)
        words = _as_like(out.words or [])
        with timer.stage("scoring"):
            metrics, points = score(reference, hyp, feats.frame_shift) if reference else ({}, [])
    compute = sum(v for k, v in timer.timings.items() if k not in ("load", "waiting"))
    result = AlignView(
        settings={"transcript_kind": kind, "states_per_phone": spp,
                  "feature_kind": models.feature_config.kind if models is not None else s.feature_kind,
                  "max_iter": iters, "device": s.device, "seed": int(s.seed), "durations": durations,
                  "aligner": "hmm_engine.alignment.align_utterance",
                  "phone_models": models_name, "dictionary": lexicon_name},
        duration=feats.duration, frame_shift=feats.frame_shift, spectrogram_db=feats.db, freqs=feats.freqs,
        phones=hyp, words=words, reference=_as_like(reference), reference_tier=ref_name, metrics=metrics,
        boundary_errors=points, log_likelihood=float(out.log_likelihood), phone_sequence=list(out.transcript.phones),
        timings=dict(timer.timings), peak_rss_mb=mem.peak_rss_mb, peak_gpu_mb=mem.peak_gpu_mb, device=str(dev),
        rtf=compute / max(feats.duration, 1e-9),
    )
    result.history = list(out.history)
    result.transcript_fit = fit.as_dict() if fit is not None else None
    result.pieces = pieces
    # a long clip's ``out`` is only shaped like an engine result
    result.alignment = None if loaded.audio.duration > LONG_CLIP_SECONDS else out
    result.warnings = warnings + list(getattr(out, "warnings", []))
    with timer.stage("exports"):
        result.files = write_alignment_exports(result)
    result.timings = dict(timer.timings)
    return result


def _align_long_clip(loaded, kind: str, transcript: str, models, lexicon, device):
    """A clip over :data:`LONG_CLIP_SECONDS`: ``align_long`` (pieces between anchors, trained on
    the clip's own pieces unless ``models``); returns ``(out, pieces)`` with ``out`` shaped like
    ``align_utterance``'s result where the dashboard reads it."""
    import tempfile
    from types import SimpleNamespace

    import soundfile as sf

    from hmm_engine.alignment.long_form import align_long

    with tempfile.TemporaryDirectory(prefix="hmm_studio_long_") as tmp:
        path = Path(tmp) / "clip.wav"
        sf.write(str(path), loaded.samples, loaded.audio.sample_rate, subtype="FLOAT")
        long = align_long(path, transcript, phones=kind == "phones", models=models, dictionary=lexicon,
                          device=str(device))
    phones = long.tiers.get("phones", [])
    out = SimpleNamespace(phones=phones, words=long.tiers.get("words"), log_likelihood=float("nan"), history=[],
                          transcript=SimpleNamespace(phones=[s.label for s in phones]), timings={})
    pieces = [{"piece": p.index, "start": round(p.start_frame * long.frame_shift, 3),
               "end": round(p.end_frame * long.frame_shift, 3), "anchor": p.anchor, "status": p.status,
               "reason": p.reason, "text": p.text} for p in long.pieces]
    return out, pieces


def write_alignment_exports(r: AlignView) -> dict:
    import json

    from hmm_engine.alignment.exports import segments_to_csv, segments_to_json
    from hmm_engine.segments import Segment
    from hmm_engine.alignment.textgrids import write_textgrid

    d = P._output_dir("align")
    tiers = {"phones": [Segment(s.label, s.start, s.end, s.score) for s in r.phones]}
    if r.words:
        tiers["words"] = [Segment(s.label, s.start, s.end, s.score) for s in r.words]
    files = {"textgrid": str(d / "alignment.TextGrid"), "csv": str(d / "alignment.csv"),
             "json": str(d / "alignment.json"), "summary": str(d / "summary.json")}
    write_textgrid(files["textgrid"], tiers, r.duration)
    segments_to_csv(tiers, path=files["csv"])
    segments_to_json(tiers, r.duration, path=files["json"])
    Path(files["summary"]).write_text(json.dumps(r.summary(), indent=1))
    try:  # TTS durations on a common mel grid (python -m hmm_engine align --format durations for others)
        from hmm_engine.alignment.tts import MelGrid, phone_durations, write_durations

        grid = MelGrid(**TTS_GRID)
        table = write_durations(d, [("alignment", phone_durations(tiers["phones"], r.duration, grid))])
        files["durations"] = str(table)
        files["durations_npy"] = str(d / "alignment.durations.npy")
    except HMMStudioError:
        pass  # an empty tier: the other downloads stand
    return files
