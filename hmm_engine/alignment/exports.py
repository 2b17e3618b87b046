"""Exporting alignments (segment tiers) and per-frame decoding results to TextGrid, CSV and JSON.

Every ``*_to_*`` function returns the text and, when ``path`` is given, also writes it there.
The matching ``read_*`` functions parse that text back (round trip). Times and posteriors are
written with ``repr`` precision, so reading gives back exactly the same floats.

Formats:
    segments CSV: header ``tier,label,start,end,score``; one row per segment; empty score = None.
    segments JSON: ``{"duration": float|null, "tiers": {name: [{"label", "start", "end", "score"}]}}``.
    frames CSV: header ``frame,time,state,p_<name>...``; ``time`` is the start of the frame's
        interval ``[i*shift, (i+1)*shift)``; one posterior column per state.
    frames JSON: ``{"frame_shift", "state_names", "times", "states", "posteriors": [[...], ...]}``.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from hmm_engine.segments import Segment, validate_tier
from hmm_engine.alignment.textgrids import textgrid_to_string
from hmm_engine.errors import HMMStudioError, InvalidInputError

SEGMENT_COLUMNS = ("tier", "label", "start", "end", "score")


def _write(text: str, path: str | os.PathLike | None) -> str:
    if path is not None:
        try:
            Path(path).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise InvalidInputError(f"could not write '{os.fspath(path)}': {exc}") from None
    return text


def _names_a_file(text: str) -> bool:
    if "\n" in text or len(text) > 4096:
        return False
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # e.g. a one-line JSON export too long to be a file name
        return False


def _read_source(source: str | os.PathLike) -> str:
    """``source`` is the exported text itself, or a path to it (a Path, or a str naming a file)."""
    if isinstance(source, os.PathLike) or (isinstance(source, str) and _names_a_file(source)):
        try:
            return Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInputError(f"could not read '{os.fspath(source)}': {exc}") from None
    if not isinstance(source, str):
        raise InvalidInputError(f"expected exported text or a path, got {type(source).__name__}")
    return source


def _check_tiers(tiers: Mapping[str, Sequence[Segment]], duration: float | None = None) -> None:
    if not isinstance(tiers, Mapping) or not tiers:
        raise InvalidInputError("expected a non-empty mapping {tier_name: [Segment, ...]}")
    for name, segments in tiers.items():
        validate_tier(segments, name=f"tier {name!r}", duration=duration)


def segments_to_textgrid(
    tiers: Mapping[str, Sequence[Segment]], duration: float, path: str | os.PathLike | None = None
) -> str:
    """TextGrid text (long format) of the tiers over ``[0, duration]``; scores are not kept."""
    return _write(textgrid_to_string(tiers, duration), path)


def segments_to_csv(tiers: Mapping[str, Sequence[Segment]], path: str | os.PathLike | None = None) -> str:
    """CSV with columns ``tier,label,start,end,score`` (seconds; empty score when None)."""
    _check_tiers(tiers)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SEGMENT_COLUMNS)
    for name, segments in tiers.items():
        for s in segments:
            writer.writerow([name, s.label, repr(s.start), repr(s.end), "" if s.score is None else repr(s.score)])
    return _write(buffer.getvalue(), path)


def read_segments_csv(source: str | os.PathLike) -> dict[str, list[Segment]]:
    """Parse :func:`segments_to_csv` output (text or path) back into ``{tier: [Segment]}``."""
    rows = list(csv.reader(io.StringIO(_read_source(source))))
    if not rows or tuple(rows[0]) != SEGMENT_COLUMNS:
        raise InvalidInputError(f"segment CSV must start with the header {','.join(SEGMENT_COLUMNS)}")
    tiers: dict[str, list[Segment]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(SEGMENT_COLUMNS):
            raise InvalidInputError(f"segment CSV line {line}: expected 5 fields, got {len(row)}")
        name, label, start, end, score = row
        try:
            segment = Segment(label, float(start), float(end), float(score) if score else None)
        except ValueError as exc:
            raise InvalidInputError(f"segment CSV line {line}: {exc}") from None
        tiers.setdefault(name, []).append(segment)
    return tiers


def segments_to_json(
    tiers: Mapping[str, Sequence[Segment]],
    duration: float | None = None,
    path: str | os.PathLike | None = None,
) -> str:
    """JSON ``{"duration": ..., "tiers": {name: [{"label", "start", "end", "score"}, ...]}}``."""
    _check_tiers(tiers, duration)
    payload = {
        "duration": duration,
        "tiers": {
            name: [{"label": s.label, "start": s.start, "end": s.end, "score": s.score} for s in segments]
            for name, segments in tiers.items()
        },
    }
    return _write(json.dumps(payload, ensure_ascii=False, indent=1), path)


def read_segments_json(source: str | os.PathLike) -> tuple[dict[str, list[Segment]], float | None]:
    """Parse :func:`segments_to_json` output (text or path); returns ``(tiers, duration)``."""
    try:
        payload = json.loads(_read_source(source))
        tiers = {
            name: [Segment(item["label"], item["start"], item["end"], item.get("score")) for item in items]
            for name, items in payload["tiers"].items()
        }
        return tiers, payload.get("duration")
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidInputError(f"not a segments JSON export: {exc}") from None


def _frame_arrays(
    states: Sequence[int] | np.ndarray | torch.Tensor,
    posteriors: np.ndarray | torch.Tensor | None,
    frame_shift: float,
    state_names: Sequence[str] | None,
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Validate ``states [T]`` and ``posteriors [T, K]``; returns numpy arrays and K names."""
    if isinstance(states, torch.Tensor):
        states = states.detach().cpu().numpy()
    states = np.asarray(states)
    if states.ndim != 1 or states.size == 0 or not np.issubdtype(states.dtype, np.integer):
        raise InvalidInputError(f"states must be a non-empty 1-D integer array [T], got shape {states.shape} {states.dtype}")
    if not (frame_shift > 0):
        raise InvalidInputError(f"frame_shift must be positive seconds, got {frame_shift!r}")
    num_states = int(states.max()) + 1
    if posteriors is not None:
        if isinstance(posteriors, torch.Tensor):
            posteriors = posteriors.detach().cpu().numpy()
        posteriors = np.asarray(posteriors, dtype=np.float64)
        if posteriors.ndim != 2 or posteriors.shape[0] != states.shape[0]:
            raise InvalidInputError(
                f"posteriors must be [T, K] with T = {states.shape[0]} frames, got shape {posteriors.shape}"
            )
        num_states = posteriors.shape[1]
    if states.min() < 0 or states.max() >= num_states:
        raise InvalidInputError(f"state ids must lie in [0, {num_states}), got {states.min()}..{states.max()}")
    if state_names is None:
        state_names = [str(k) for k in range(num_states)]
    elif len(state_names) != num_states:
        raise InvalidInputError(f"got {len(state_names)} state names for {num_states} states")
    return states.astype(np.int64), posteriors, [str(n) for n in state_names]


def frames_to_csv(
    states: Sequence[int] | np.ndarray | torch.Tensor,
    posteriors: np.ndarray | torch.Tensor | None,
    frame_shift: float,
    state_names: Sequence[str] | None = None,
    path: str | os.PathLike | None = None,
) -> str:
    """Per-frame CSV of a Viterbi path ``states [T]`` and ``posteriors [T, K]`` (optional).

    Columns: ``frame,time,state`` (state written by name) then ``p_<name>`` per state.
    """
    states, posteriors, names = _frame_arrays(states, posteriors, frame_shift, state_names)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["frame", "time", "state"] + ([f"p_{n}" for n in names] if posteriors is not None else []))
    for i, state in enumerate(states):
        row = [i, repr(i * frame_shift), names[state]]
        if posteriors is not None:
            row.extend(repr(float(p)) for p in posteriors[i])
        writer.writerow(row)
    return _write(buffer.getvalue(), path)


def frames_to_json(
    states: Sequence[int] | np.ndarray | torch.Tensor,
    posteriors: np.ndarray | torch.Tensor | None,
    frame_shift: float,
    state_names: Sequence[str] | None = None,
    path: str | os.PathLike | None = None,
) -> str:
    """Per-frame JSON: ``frame_shift``, ``state_names``, ``times [T]``, ``states [T]`` (ids),
    ``posteriors [T][K]`` (or null)."""
    states, posteriors, names = _frame_arrays(states, posteriors, frame_shift, state_names)
    payload = {
        "frame_shift": frame_shift,
        "state_names": names,
        "times": [i * frame_shift for i in range(len(states))],
        "states": states.tolist(),
        "posteriors": None if posteriors is None else posteriors.tolist(),
    }
    return _write(json.dumps(payload), path)


def read_frames_csv(source: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None, list[str], np.ndarray]:
    """Parse :func:`frames_to_csv` output; returns ``(states [T], posteriors [T, K] | None,
    state_names, times [T])``. State names are recovered from the ``p_`` columns or, without
    posteriors, from the states in order of first appearance."""
    rows = list(csv.reader(io.StringIO(_read_source(source))))
    if not rows or rows[0][:3] != ["frame", "time", "state"]:
        raise InvalidInputError("frames CSV must start with the header frame,time,state")
    names = [column[2:] for column in rows[0][3:]]
    body = rows[1:]
    if not names:
        names = list(dict.fromkeys(row[2] for row in body))
    index = {name: k for k, name in enumerate(names)}
    try:
        states = np.array([index[row[2]] for row in body], dtype=np.int64)
        times = np.array([float(row[1]) for row in body])
        posteriors = np.array([[float(v) for v in row[3:]] for row in body]) if rows[0][3:] else None
    except (KeyError, ValueError, IndexError) as exc:
        raise InvalidInputError(f"malformed frames CSV: {exc}") from None
    return states, posteriors, names, times


def read_frames_json(source: str | os.PathLike) -> dict:
    """Parse :func:`frames_to_json` output; ``states`` and ``posteriors`` become numpy arrays."""
    try:
        payload = json.loads(_read_source(source))
        payload["states"] = np.asarray(payload["states"], dtype=np.int64)
        payload["times"] = np.asarray(payload["times"], dtype=np.float64)
        if payload["posteriors"] is not None:
            payload["posteriors"] = np.asarray(payload["posteriors"], dtype=np.float64)
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"not a frames JSON export: {exc}") from None
    return payload


def finish_outputs(
    out_dir: str | os.PathLike,
    items: Sequence[tuple[str, str | os.PathLike]],
    *,
    textgrid: bool = True,
    keep_json: bool = True,
    confidence: bool = False,
    grid=None,
    trim_silence: bool = False,
    min_phone_frames: int = 0,
) -> tuple[list[str], Path | None]:
    """Outputs made from the ``OUT_DIR/name.json`` of aligned files (which keep confidences):
    with ``confidence``, ``name.TextGrid`` rewritten with the confidence and check tiers
    (:func:`~hmm_engine.alignment.textgrids.confidence_tiers`; the check tier's "phone over
    non-speech" rule reads the audio's frame energy); with a ``grid``
    (:class:`~hmm_engine.alignment.tts.MelGrid`), TTS durations
    (:func:`~hmm_engine.alignment.tts.write_durations`). ``items`` are ``(name, audio path)``.
    ``keep_json=False`` removes the JSON files afterwards.

    Returns ``(problems, durations table path or None)``; a file that fails is a problem line.
    """
    import soundfile as sf

    from hmm_engine.alignment.long_form import frame_energy
    from hmm_engine.alignment.textgrids import confidence_tiers, write_textgrid
    from hmm_engine.alignment.tts import phone_durations, write_durations

    out = Path(out_dir)
    problems: list[str] = []
    durations = []
    for name, audio in items:
        source = out / f"{name}.json"
        try:
            tiers, duration = read_segments_json(source)
            if confidence and textgrid:
                energy = frame_energy(audio, 0.01)
                extra = confidence_tiers(tiers, energy, 0.01)
                write_textgrid(out / f"{name}.TextGrid", {**tiers, **extra}, duration)
            if grid is not None:
                info = sf.info(os.fspath(audio))
                samples = round(info.frames * grid.sample_rate / info.samplerate)
                durations.append((name, phone_durations(tiers["phones"], duration, grid, trim_silence,
                                                        min_phone_frames, num_samples=samples)))
        except (HMMStudioError, OSError, KeyError, RuntimeError) as exc:
            problems.append(f"{name}: extra outputs not written: {exc}")
        finally:
            if not keep_json:
                source.unlink(missing_ok=True)
    table = write_durations(out, durations) if grid is not None and durations else None
    return problems, table

