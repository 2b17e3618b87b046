"""Cost bounds on every input, checked before the expensive step.

Each bound is a named constant read once from an environment variable (so people who host
their own copy can raise or lower it) and a check function that raises the engine's error for
that input with a message saying what is too large and what to change. docs/limits.md lists
them all.

The check functions read the module attribute at call time, so tests (and a host process)
may also assign ``hmm_engine.limits.NAME = value``.
"""

from __future__ import annotations

import math
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .errors import AudioError, InvalidInputError, ModelFileError, TextGridError, TranscriptError


@dataclass(frozen=True)
class Bound:
    name: str          # the module attribute
    env: str           # the environment variable that sets it
    default: float
    unit: str
    what: str


BOUNDS: dict[str, Bound] = {}


def _bound(name: str, default: float, unit: str, what: str, integer: bool = True):
    env = f"HMM_STUDIO_{name}"
    BOUNDS[name] = Bound(name, env, default, unit, what)
    raw = os.environ.get(env)
    if raw is None or not raw.strip():
        return int(default) if integer else float(default)
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"environment variable {env}={raw!r} is not a number") from None
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"environment variable {env}={raw!r} must be a positive number")
    return int(value) if integer else value


# --- audio -------------------------------------------------------------------------------------
MAX_SAMPLE_RATE = _bound("MAX_SAMPLE_RATE", 384_000, "Hz", "highest accepted sample rate of an audio input")
# The resampler's filter bank has about (target rate / g) x (source rate / g) x 13 taps for
# g = gcd(rates); above this many taps (rates that share no large factor, such as 16001 Hz) a
# polyphase FIR resampler whose memory grows with the rate, not with its product, is used.
MAX_RESAMPLE_KERNEL = _bound("MAX_RESAMPLE_KERNEL", 4_000_000, "taps",
                             "largest windowed-sinc filter bank built by the direct resampler")

# --- model files --------------------------------------------------------------------------------
MAX_MODEL_FILE_BYTES = _bound("MAX_MODEL_FILE_BYTES", 256 * 2**20, "bytes", "size of a model file on disk")
MAX_MODEL_UNPACKED_BYTES = _bound("MAX_MODEL_UNPACKED_BYTES", 512 * 2**20, "bytes",
                                  "sum of a model archive's members once decompressed")
MAX_MODEL_MEMBERS = _bound("MAX_MODEL_MEMBERS", 10_000, "members", "files inside a model archive")
MAX_MODEL_COMPRESSION = _bound("MAX_MODEL_COMPRESSION", 20, "x",
                               "decompressed / compressed size of one archive member (torch.save stores, "
                               "it does not deflate)")
MAX_MODEL_PARAMETERS = _bound("MAX_MODEL_PARAMETERS", 50_000_000, "numbers",
                              "parameters a model file's configuration asks for")

# --- transcripts, dictionaries, TextGrids -----------------------------------------------------
MAX_TRANSCRIPT_CHARS = _bound("MAX_TRANSCRIPT_CHARS", 20_000, "characters", "length of one transcript")
MAX_TRANSCRIPT_TOKENS = _bound("MAX_TRANSCRIPT_TOKENS", 3_000, "words or phones", "words (or phones) of one transcript")
# Fast read speech is about 15 phones (6 words) a second; twice that cannot be in the audio.
MAX_WORDS_PER_SECOND = _bound("MAX_WORDS_PER_SECOND", 12, "words/s", "words a transcript may put in a second of audio",
                              integer=False)
MAX_PHONES_PER_SECOND = _bound("MAX_PHONES_PER_SECOND", 30, "phones/s", "phones a transcript may put in a second of audio",
                               integer=False)
MAX_LABEL_CHARS = _bound("MAX_LABEL_CHARS", 64, "characters", "length of one phone label")
MAX_DICTIONARY_BYTES = _bound("MAX_DICTIONARY_BYTES", 64 * 2**20, "bytes", "size of a pronunciation dictionary file")
MAX_DICTIONARY_ENTRIES = _bound("MAX_DICTIONARY_ENTRIES", 1_000_000, "lines", "entries of a pronunciation dictionary")
MAX_PRONUNCIATIONS = _bound("MAX_PRONUNCIATIONS", 32, "variants", "pronunciations listed for one word")
MAX_TEXTGRID_BYTES = _bound("MAX_TEXTGRID_BYTES", 8 * 2**20, "bytes", "size of a TextGrid file")
MAX_TEXTGRID_INTERVALS = _bound("MAX_TEXTGRID_INTERVALS", 20_000, "intervals", "intervals in a TextGrid (all tiers)")
MAX_TEXTGRID_NESTING = _bound("MAX_TEXTGRID_NESTING", 16, "levels", "bracket nesting of a JSON TextGrid")

# --- compute -------------------------------------------------------------------------------------
# One unit is about one nanosecond of one core on the 2-core development machine (measured in
# benchmarks/bench_app.py --calibrate): the default is about five minutes of one core.
MAX_COMPUTE_UNITS = _bound("MAX_COMPUTE_UNITS", 3e11, "units", "estimated work of one analysis request", integer=False)
# Per frame and iteration the engine pays a fixed cost (one step of the sequential recursion,
# about 20 microseconds) on top of the K^2 + K M c(D) arithmetic.
FRAME_OVERHEAD_UNITS = 20_000


def _mb(n: float) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{int(n)} bytes"


# ---------------------------------------------------------------------------------------- audio


def check_sample_rate(rate: int, what: str = "audio") -> None:
    if rate > MAX_SAMPLE_RATE:
        raise AudioError(f"{what}: sample rate {rate} Hz is above the limit of {MAX_SAMPLE_RATE} Hz "
                         f"(HMM_STUDIO_MAX_SAMPLE_RATE); resample it first")


def resample_kernel_taps(orig: int, new: int) -> int:
    """Taps of the windowed-sinc filter bank ``torchaudio.functional.resample`` builds
    (``lowpass_filter_width=6``, ``rolloff=0.99``): ``new' x (orig' + 2 width)`` for the rates
    divided by their gcd."""
    g = math.gcd(int(orig), int(new))
    o, n = orig // g, new // g
    width = math.ceil(6 * o / (0.99 * min(o, n)))
    return n * (o + 2 * width)


# ----------------------------------------------------------------------------------- model files


def check_model_archive(path: str | os.PathLike, what: str = "model file") -> None:
    """Refuse a ``torch.save`` archive whose size, members or decompressed size are out of
    bounds, before ``torch.load`` allocates anything (it reads the zip's central directory)."""
    p = Path(path)
    name = f"{what} '{p.name}'"
    if not p.is_file():
        raise ModelFileError(f"no {what} at '{os.fspath(path)}'")
    size = p.stat().st_size
    if size > MAX_MODEL_FILE_BYTES:
        raise ModelFileError(f"{name} is {_mb(size)}, above the limit of {_mb(MAX_MODEL_FILE_BYTES)} "
                             "(HMM_STUDIO_MAX_MODEL_FILE_BYTES)")
    if not zipfile.is_zipfile(p):
        raise ModelFileError(f"{name} is not a readable {what}: not a torch.save zip archive (truncated, or "
                             "written by something else)")
    try:
        with zipfile.ZipFile(p) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ModelFileError(f"{name} is not a readable {what}: a damaged archive ({exc})") from None
    if len(members) > MAX_MODEL_MEMBERS:
        raise ModelFileError(f"{name} holds {len(members)} archive members, above the limit of {MAX_MODEL_MEMBERS}")
    unpacked = sum(m.file_size for m in members)
    if unpacked > MAX_MODEL_UNPACKED_BYTES:
        raise ModelFileError(f"{name} would unpack to {_mb(unpacked)}, above the limit of "
                             f"{_mb(MAX_MODEL_UNPACKED_BYTES)} (HMM_STUDIO_MAX_MODEL_UNPACKED_BYTES)")
    for m in members:
        if m.file_size > 4096 and m.file_size > MAX_MODEL_COMPRESSION * max(m.compress_size, 1):
            raise ModelFileError(f"{name}: member '{m.filename}' expands {m.file_size / max(m.compress_size, 1):.0f}:1 "
                                 f"({_mb(m.compress_size)} -> {_mb(m.file_size)}); torch.save does not compress, "
                                 "so this is not a file it wrote")


def check_model_parameters(count: int, what: str = "model file") -> None:
    if count > MAX_MODEL_PARAMETERS:
        raise ModelFileError(f"{what}: its configuration asks for {count:,} parameters, above the limit of "
                             f"{MAX_MODEL_PARAMETERS:,} (HMM_STUDIO_MAX_MODEL_PARAMETERS)")


# ------------------------------------------------------------------------- transcripts and labels

# C0/C1 control characters (NUL, ESC, ...), DEL, and the Unicode line/paragraph separators.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def check_text_size(text: str, what: str = "transcript") -> None:
    """Length bounds of a transcript, before it is split or converted to phones."""
    if len(text) > MAX_TRANSCRIPT_CHARS:
        raise TranscriptError(f"the {what} has {len(text):,} characters, above the limit of {MAX_TRANSCRIPT_CHARS:,} "
                              "(HMM_STUDIO_MAX_TRANSCRIPT_CHARS): align it in shorter pieces")


def check_token_count(count: int, what: str = "transcript", unit: str = "words") -> None:
    if count > MAX_TRANSCRIPT_TOKENS:
        raise TranscriptError(f"the {what} has {count:,} {unit}, above the limit of {MAX_TRANSCRIPT_TOKENS:,} "
                              "(HMM_STUDIO_MAX_TRANSCRIPT_TOKENS): align it in shorter pieces")


def check_fits_audio(count: int, seconds: float, unit: str = "words") -> None:
    """A transcript the audio cannot hold: more words (phones) than fast speech puts in it."""
    rate = MAX_WORDS_PER_SECOND if unit == "words" else MAX_PHONES_PER_SECOND
    if seconds > 0 and count > rate * seconds + 2:
        raise TranscriptError(
            f"{count} {unit} cannot be spoken in {seconds:.2f} s of audio (at most about {rate * seconds + 2:.0f} at "
            f"{rate:g} {unit} a second, HMM_STUDIO_MAX_{unit.upper()}_PER_SECOND): is this the transcript of this clip?")


def check_label(label: str, what: str = "phone") -> None:
    """A phone label: no control characters (NUL, escape...), no whitespace, bounded length."""
    if _CONTROL_RE.search(label):
        bad = _CONTROL_RE.search(label).group()
        raise TranscriptError(f"{what} {label!r} contains the control character U+{ord(bad):04X}; "
                              "labels must be printable text")
    if len(label) > MAX_LABEL_CHARS:
        raise TranscriptError(f"{what} {label[:20]!r}... has {len(label)} characters, above the limit of "
                              f"{MAX_LABEL_CHARS} (HMM_STUDIO_MAX_LABEL_CHARS)")


def check_labels(labels, what: str = "phone") -> None:
    for label in labels:
        check_label(label, what)


def check_dictionary_file(path: str | os.PathLike) -> None:
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise TranscriptError(f"cannot read the pronunciation dictionary '{p.name}': {exc.strerror or exc}") from None
    if size > MAX_DICTIONARY_BYTES:
        raise TranscriptError(f"the pronunciation dictionary '{p.name}' is {_mb(size)}, above the limit of "
                              f"{_mb(MAX_DICTIONARY_BYTES)} (HMM_STUDIO_MAX_DICTIONARY_BYTES)")


def check_dictionary_counts(name: str, lines: int, word: str | None = None, variants: int = 0) -> None:
    if lines > MAX_DICTIONARY_ENTRIES:
        raise TranscriptError(f"the pronunciation dictionary '{name}' has more than {MAX_DICTIONARY_ENTRIES:,} "
                              "entries (HMM_STUDIO_MAX_DICTIONARY_ENTRIES)")
    if word is not None and variants > MAX_PRONUNCIATIONS:
        raise TranscriptError(f"the pronunciation dictionary '{name}' lists more than {MAX_PRONUNCIATIONS} "
                              f"pronunciations of {word!r} (HMM_STUDIO_MAX_PRONUNCIATIONS)")


# ----------------------------------------------------------------------------------- TextGrids


def check_textgrid_file(path: str | os.PathLike) -> None:
    """Size, interval count and (JSON) nesting of a TextGrid, before praatio parses it.

    An interval is one ``intervals [i]:`` header in the long text format, three lines in the
    short one, and one ``[start, end, label]`` list in praatio's JSON, so counting these bounds
    the intervals without parsing.
    """
    p = Path(path)
    name = f"'{p.name}'"
    try:
        size = p.stat().st_size
    except OSError:
        return  # the reader says "not found"
    if size > MAX_TEXTGRID_BYTES:
        raise TextGridError(f"{name} is {_mb(size)}, above the TextGrid limit of {_mb(MAX_TEXTGRID_BYTES)} "
                            "(HMM_STUDIO_MAX_TEXTGRID_BYTES)")
    raw = p.read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = raw.decode("utf-16", errors="replace")
    else:
        text = raw.decode("utf-8", errors="replace")
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith(("{", "[")):
        depth = deepest = 0
        for ch in stripped:
            if ch in "{[":
                depth += 1
                deepest = max(deepest, depth)
                if deepest > MAX_TEXTGRID_NESTING:
                    raise TextGridError(f"{name}: JSON nested deeper than {MAX_TEXTGRID_NESTING} levels is not a "
                                        "TextGrid")
            elif ch in "}]":
                depth -= 1
        intervals = max(0, stripped.count("[") - 1)
    elif "intervals [" in text:  # long format: one "intervals [i]:" header per interval
        intervals = text.count("intervals [") + text.count("points [")
    else:  # short format: three lines (start, end, label) per interval
        intervals = text.count("\n") // 3
    if intervals > MAX_TEXTGRID_INTERVALS:
        raise TextGridError(f"{name} has about {intervals:,} intervals, above the limit of {MAX_TEXTGRID_INTERVALS:,} "
                            "(HMM_STUDIO_MAX_TEXTGRID_INTERVALS)")


def check_reference_covers(segments, duration: float, name: str = "reference", tolerance: float = 0.05) -> None:
    """A reference tier must lie inside the clip and cover most of it: one made for another
    clip scores nothing (or nonsense)."""
    if not segments:
        raise TextGridError(f"the {name} has no labelled intervals")
    end = max(s.end for s in segments)
    start = min(s.start for s in segments)
    if end > duration + tolerance:
        raise TextGridError(f"the {name} ends at {end:.2f} s but the clip is {duration:.2f} s long: it belongs to "
                            "another recording; remove it or upload the matching TextGrid")
    slack = max(1.0, 0.25 * duration)
    if start > slack or end < duration - slack:
        raise TextGridError(f"the {name} covers {start:.2f}-{end:.2f} s of this {duration:.2f} s clip: it belongs to "
                            "another recording; remove it or upload the matching TextGrid")


# -------------------------------------------------------------------------------------- compute

# Work per (frame, state, component) of the emission, relative to one transition step.
def _emission_cost(covariance_type: str, obs_dim: int) -> float:
    if covariance_type in ("full", "tied"):
        return float(obs_dim * obs_dim)
    return float(obs_dim)


def analysis_units(num_frames: int, num_states: int, iterations: int, obs_dim: int, covariance_type: str = "diag",
                   num_mixtures: int = 1, max_duration: int = 1) -> float:
    """Estimated work of fitting one model:
    ``iterations x frames x (overhead + Dmax (K^2 + K M c(D)))``, ``c(D)`` = D (diagonal,
    spherical) or D^2 (full, tied), ``Dmax`` the semi-Markov maximum duration (1 for an HMM)."""
    K, M = int(num_states), int(num_mixtures)
    per_frame = max(1, int(max_duration)) * (K * K + K * M * _emission_cost(covariance_type, obs_dim))
    return float(iterations) * float(num_frames) * (FRAME_OVERHEAD_UNITS + per_frame)


def check_compute(units: float, setting_hint: str) -> None:
    if units > MAX_COMPUTE_UNITS:
        raise InvalidInputError(
            f"this request needs about {units:.2g} units of work, above the limit of {MAX_COMPUTE_UNITS:.2g} "
            f"(HMM_STUDIO_MAX_COMPUTE_UNITS, about ten minutes of one core): lower {setting_hint}")


__all__ = [name for name in BOUNDS] + [
    "BOUNDS", "Bound", "check_sample_rate", "resample_kernel_taps", "check_model_archive", "check_model_parameters",
"check_text_size", "check_token_count", "check_fits_audio", "check_label",
    "check_labels", "check_dictionary_file", "check_dictionary_counts", "check_textgrid_file",
    "check_reference_covers", "analysis_units", "check_compute",
]
