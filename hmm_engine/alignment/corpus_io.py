"""Corpus files in and out: finding ``name.wav`` + transcript pairs (Montreal Forced Aligner
layout, one subfolder per speaker allowed), loading features and transcripts, labelled phone
segments from TextGrids, and writing each file's alignment (TextGrid / CSV / JSON).

A file that cannot be used (unreadable audio, missing or bad transcript, too short for its
phones, ...) becomes a report line; the caller goes on with the others.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from hmm_engine.alignment.exports import segments_to_csv, segments_to_json
from hmm_engine.alignment.inputs import check_chain_size, compute_features
from hmm_engine.alignment.layout import EXPORT_SUFFIXES, files_by_name
from hmm_engine.alignment.metrics import SILENCE_LABELS
from hmm_engine.alignment.textgrids import read_textgrid, write_textgrid
from hmm_engine.alignment.transcripts import Dictionary, PreparedTranscript, prepare_transcript
from hmm_engine.errors import HMMStudioError, InvalidInputError, InvalidParameterError
from hmm_engine.frontend.audio import AUDIO_SUFFIXES
from hmm_engine.frontend.features import FeatureConfig, Features
from hmm_engine.segments import segment_frames


@dataclass(frozen=True)
class CorpusFile:
    """One utterance of a corpus: ``name``, its audio and transcript paths."""

    name: str
    audio: Path
    transcript: Path



def find_corpus_files(corpus_dir: str | os.PathLike, transcript_suffix: str = ".lab") -> tuple[list[CorpusFile], list[str]]:
    """``(files, problems)``: every audio file under ``corpus_dir`` (sorted by name) with its
    transcript ``name<suffix>`` beside it.

    Audio is any of :data:`~hmm_engine.frontend.audio.AUDIO_SUFFIXES`, directly in the folder or
    in subfolders (MFA's one folder per speaker); a file's ``name`` is its path relative to
    ``corpus_dir`` without the suffix (``"speaker1/utt1"``), so outputs mirror the layout.
    Hidden folders are not searched. A file without a transcript, or a second audio file of the
    same name (``a.wav`` and ``a.flac``: the first suffix in that list is kept), is a problem
    line, not a file.

    Raises:
        InvalidInputError: the folder does not exist or holds no audio file.
    """
    folder = Path(corpus_dir)
    if not folder.is_dir():
        raise InvalidInputError(f"corpus folder '{folder}' does not exist or is not a folder")
    by_name = files_by_name(folder, AUDIO_SUFFIXES)
    if not by_name:
        raise InvalidInputError(f"corpus folder '{folder}' holds no audio files ({', '.join(AUDIO_SUFFIXES)})")
    preference = {suffix: rank for rank, suffix in enumerate(AUDIO_SUFFIXES)}
    files, problems = [], []
    for name in sorted(by_name):
        audio, *others = sorted(by_name[name], key=lambda p: (preference[p.suffix.lower()], p.name))
        for other in others:
            problems.append(f"{name}: skipped '{other.name}': '{audio.name}' has the same name")
        transcript = audio.with_name(audio.stem + transcript_suffix)
        if transcript.is_file():
            files.append(CorpusFile(name, audio, transcript))
        else:
            problems.append(f"{name}: skipped: no transcript '{transcript.name}'")
    return files, problems


def _load_one(item: CorpusFile, phones: bool, feature_config: FeatureConfig, silence: str,
              states_per_phone: int, dictionary: Dictionary | None) -> tuple[Features, PreparedTranscript]:
    try:
        text = item.transcript.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read transcript '{item.transcript.name}': {exc}") from None
    transcript = prepare_transcript(phones=text, silence=silence) if phones else \
        prepare_transcript(words=text, silence=silence, dictionary=dictionary)
    features = compute_features(item.audio, feature_config)
    need = sum(1 for o in transcript.optional if not o) * states_per_phone
    if features.num_frames < need:
        raise InvalidInputError(f"{features.num_frames} frames are fewer than its {need} mandatory HMM states")
    check_chain_size(features.num_frames, len(transcript.phones) * states_per_phone)
    return features, transcript


def load_corpus(
    files: Sequence[CorpusFile], phones: bool, feature_config: FeatureConfig, silence: str = "sil",
    states_per_phone: int = 3, dictionary: Dictionary | None = None,
) -> tuple[list[tuple[CorpusFile, Features, PreparedTranscript]], list[str]]:
    """Features and transcripts of ``files``; ``(loaded, problems)`` where failures are report lines.
    Word transcripts go through ``dictionary`` when one is given, else espeak-ng."""
    loaded, problems = [], []
    for item in files:
        try:
            features, transcript = _load_one(item, phones, feature_config, silence, states_per_phone, dictionary)
        except HMMStudioError as exc:
            problems.append(f"{item.name}: skipped: {exc}")
            continue
        loaded.append((item, features, transcript))
    return loaded, problems


def load_labelled_segments(
    files: Sequence[CorpusFile], feature_config: FeatureConfig, silence: str = "sil", states_per_phone: int = 3,
    tier: str = "phones",
) -> tuple[list[tuple[Features, PreparedTranscript]], list[str], int, int]:
    """Labelled phone segments of ``files`` (each ``transcript`` a TextGrid):
    ``(segments, problems, num_short, num_files)``.

    Features are computed (and CMVN-normalised) over the whole file, as alignment computes
    them; each interval of ``tier`` then becomes a one-phone utterance made of the frames whose
    centre lies inside it. Empty intervals and silence labels (:data:`SILENCE_LABELS`) become
    ``silence``. An interval shorter than ``states_per_phone`` frames cannot hold its chain and
    is left out, counted in ``num_short``. A file that cannot be read, has a label that is not
    one symbol, or has no phone long enough, is a problem line; ``num_files`` counts the others.
    """
    segments: list[tuple[Features, PreparedTranscript]] = []
    problems: list[str] = []
    num_short = num_files = 0
    for item in files:
        try:
            intervals = read_textgrid(item.transcript, tier=tier, keep_empty=True)[tier]
            features = compute_features(item.audio, feature_config)
        except HMMStudioError as exc:
            problems.append(f"{item.name}: skipped: {exc}")
            continue
        own, short, bad = [], 0, None
        for interval in intervals:
            first, stop = segment_frames(interval, features.frame_shift, features.num_frames)
            if stop - first < states_per_phone:
                short += 1
                continue
            label = interval.label.strip()
            label = silence if label in SILENCE_LABELS else label
            if len(label.split()) != 1:
                bad = f"label {interval.label!r} at {interval.start:.3f} s is not one phone symbol"
                break
            part = replace(features, values=features.values[first:stop], duration=(stop - first) * features.frame_shift)
            own.append((part, PreparedTranscript([label], [False], [])))
        if bad is None and all(t.phones[0] == silence for _, t in own):
            bad = f"no phone of {states_per_phone} frames or more in tier {tier!r}"
        if bad is not None:
            problems.append(f"{item.name}: skipped: {bad}")
            continue
        segments.extend(own)
        num_short += short
        num_files += 1
    return segments, problems, num_short, num_files



def write_alignment(out_dir: Path, name: str, tiers: dict, duration: float,
                    formats: Sequence[str] = ("textgrid",)) -> None:
    """Write one utterance's tiers as ``out_dir/name.TextGrid`` / ``.csv`` / ``.json`` (the
    ``formats``; CSV and JSON keep each phone's confidence, which a TextGrid cannot); a
    speaker's subfolder is created as needed."""
    base = out_dir / name
    base.parent.mkdir(parents=True, exist_ok=True)
    for kind in formats:
        path = base.parent / f"{base.name}{EXPORT_SUFFIXES[kind]}"
        if kind == "textgrid":
            write_textgrid(path, tiers, duration)
        elif kind == "csv":
            segments_to_csv(tiers, path)
        else:
            segments_to_json(tiers, duration, path)


def check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """``formats`` as a tuple, or InvalidParameterError naming an unknown one (or none at all)."""
    formats = tuple(formats)
    unknown = [f for f in formats if f not in EXPORT_SUFFIXES]
    if unknown or not formats:
        raise InvalidParameterError(f"output formats must be some of {sorted(EXPORT_SUFFIXES)}, got {list(formats)}")
    return formats

