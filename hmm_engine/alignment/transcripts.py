"""Transcripts: phone strings, text -> phones through espeak-ng or a pronunciation dictionary,
and the phone sequence to align (:func:`prepare_transcript`: phones, optional silences, word spans).

``text_to_phones`` runs the ``espeak-ng`` program once per word (``-q -x --sep=' '``), so each
word keeps its own phones even where espeak-ng would merge or re-split words in running
text (numbers such as "2024" become several spoken words and stay under their one token).
Output tokens are espeak-ng's ASCII phoneme mnemonics (Kirshenbaum-like: ``h @ l oU``);
stress marks are stripped by default and pause tokens (``_``, ``_:``) are dropped.

``read_dictionary`` reads a pronunciation dictionary in the text format of CMUdict and the
Montreal Forced Aligner (``WORD  PH1 PH2 ...``; ``WORD(2)`` variants; MFA's probability columns
skipped), so words can be aligned in the user's own phone set (ARPAbet with stress, say);
``dictionary_to_words`` looks a transcript up in it, keeping every listed pronunciation.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Mapping, Sequence

from hmm_engine import limits
from hmm_engine.errors import TranscriptError

ESPEAK = "espeak-ng"
# Every phone espeak-ng 1.51's English voices (en-us, en, en-gb-x-rp) emit for the 117k words
# of CMUdict, stress stripped (the marks ; _ _: _! _| dropped); tests/test_real_recordings.py
# checks a word list against it.
ESPEAK_ENGLISH_PHONES = frozenset(
    "n s t l k r @ d m z I b p a E 3 i f I2 g a# v N 0 S h eI w dZ V oU i: u: @L j aI 3: tS A@ t# "
    "I# r- A: O: T O@ aU i@ aa o@ e@ i@3 U OI D Z O2 aI@ U@ @- t2 aI3 x n- ? e l# A~ O~ o i:: @2 @5".split())
# CMU Pronouncing Dictionary files this machine may have (read, never bundled): the copy inside
# the pocketsphinx wheel (ARPAbet without stress), then Debian festlex-cmu's (festival format).
POCKETSPHINX_CMUDICT = ("model", "en-us", "cmudict-en-us.dict")
FESTLEX_CMUDICT = Path("/usr/share/festival/dicts/cmu/cmudict-0.4.out")
# Letters/digits, with inner apostrophes, hyphens or dots ("don't", "well-known", "3.5").
_WORD_RE = re.compile(r"[^\W_]+(?:['\u2019\-.][^\W_]+)*")
# Stress and syllable marks espeak-ng puts before or after phonemes in -x output.
_STRESS_MARKS = "'," + "%="
# Language-switch markers such as "(fr)" appear when a word is read with another voice.
_LANG_SWITCH_RE = re.compile(r"\([a-z\-]+\)")
# CMUdict numbers a word's further pronunciations: "READ(2)".
_VARIANT_RE = re.compile(r"\(\d+\)$")
# MFA dictionaries may put up to four probabilities between the word and its phones.
_MAX_PROBABILITY_COLUMNS = 4

Dictionary = Mapping[str, tuple[tuple[str, ...], ...]]


@dataclass(frozen=True)
class Word:
    """A written word and its phones; ``variants``: every pronunciation a dictionary lists for
    it when there are several (``phones`` is one of them), else empty."""

    text: str
    phones: tuple[str, ...]
    variants: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class WordSpan:
    """Word ``text`` covers ``phones[start:end]`` of a built phone sequence."""

    text: str
    start: int
    end: int


def parse_phones(text: str) -> list[str]:
    """Split a space-separated phone string (any symbol set): ``"h @ l oU" -> ["h", "@", "l", "oU"]``."""
    if not isinstance(text, str):
        raise TranscriptError(f"phone transcript must be a string, got {type(text).__name__}")
    limits.check_text_size(text, "phone transcript")
    phones = text.split()
    if not phones:
        raise TranscriptError("phone transcript is empty: give phones separated by spaces, e.g. 'h @ l oU'")
    limits.check_token_count(len(phones), "phone transcript", "phones")
    limits.check_labels(phones)
    return phones


def tokenize_words(text: str) -> list[str]:
    """Words of ``text``: runs of letters/digits with inner ``' - .``; punctuation is dropped."""
    return _WORD_RE.findall(text)


def _clean_phone(token: str, keep_stress: bool) -> str:
    """One espeak-ng output token as a phone, or "" when it is a mark and not a phone: ``;``
    (palatalisation), ``|`` / ``_`` (pauses, syllable breaks), stress marks alone."""
    token = _LANG_SWITCH_RE.sub("", token)
    if not keep_stress:
        token = token.strip(_STRESS_MARKS)
    token = token.replace(";", "").replace("|", "")
    if not any(ch.isalnum() or ch in "@?" for ch in token):
        return ""
    return token


@functools.lru_cache(maxsize=4096)
def _espeak_word(word: str, voice: str, keep_stress: bool) -> tuple[str, ...]:
    try:
        result = subprocess.run(
            [ESPEAK, "-q", "-x", "--sep= ", "-v", voice, "--", word],
            capture_output=True, text=True, timeout=30, check=False,
        )
    except FileNotFoundError:
        raise TranscriptError(f"{ESPEAK} is not installed (apt-get install espeak-ng)") from None
    except subprocess.TimeoutExpired:
        raise TranscriptError(f"{ESPEAK} did not answer within 30 s for the word {word!r}") from None
    if result.returncode != 0 or "Error" in result.stderr:
        reason = result.stderr.strip() or f"exit status {result.returncode}"
        raise TranscriptError(f"{ESPEAK} failed for the word {word!r} with voice {voice!r}: {reason}")
    phones = []
    for token in result.stdout.split():
        phone = _clean_phone(token, keep_stress)
        if phone and not phone.startswith("_"):
            phones.append(phone)
    return tuple(phones)


def text_to_phones(text: str, voice: str = "en-us", keep_stress: bool = False) -> list[Word]:
    """Convert orthographic text to phones with espeak-ng, one :class:`Word` per written word.

    Args:
        text: e.g. ``"Hello, world!"``; punctuation is ignored.
        voice: espeak-ng voice / language (``espeak-ng --voices`` lists them).
        keep_stress: keep espeak-ng's stress marks (``'oU``) instead of stripping them.

    Returns:
        ``[Word("Hello", ("h", "@", "l", "oU")), Word("world", ("w", "3:", "l", "d"))]``.

    Raises:
        TranscriptError: espeak-ng is missing, the voice is unknown, the text has no words,
            or a word yields no phones.
    """
    if not isinstance(text, str):
        raise TranscriptError(f"transcript must be a string, got {type(text).__name__}")
    limits.check_text_size(text)  # bounds before espeak-ng runs once per word
    if shutil.which(ESPEAK) is None:
        raise TranscriptError(f"{ESPEAK} is not installed (apt-get install espeak-ng); give phones instead")
    tokens = tokenize_words(text)
    if not tokens:
        raise TranscriptError(f"transcript {text!r} contains no words")
    limits.check_token_count(len(tokens))
    words = []
    for token in tokens:
        phones = _espeak_word(token, voice, keep_stress)
        if not phones:
            raise TranscriptError(f"{ESPEAK} produced no phones for the word {token!r} (voice {voice!r})")
        words.append(Word(token, phones))
    return words


@functools.lru_cache(maxsize=1)
def default_dictionary() -> Dictionary | None:
    """CMUdict, the default English lexicon, from what is installed here: pocketsphinx's copy
    (:data:`POCKETSPHINX_CMUDICT`) or Debian ``festlex-cmu`` (:data:`FESTLEX_CMUDICT`); None when
    neither is (words then go through espeak-ng). Words CMUdict lacks go through espeak-ng
    (:func:`words_from_text`)."""
    import importlib.util

    spec = importlib.util.find_spec("pocketsphinx")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder).joinpath(*POCKETSPHINX_CMUDICT)
        if path.is_file():
            # Lower-case ARPAbet, the symbols flite and festival use (phone_classes knows them;
            # upper-case "T" would read as espeak-ng's theta).
            return {word: tuple(tuple(p.lower() for p in v) for v in variants)
                    for word, variants in read_dictionary(path).items()}
    if FESTLEX_CMUDICT.is_file():
        return _read_festival_lexicon(FESTLEX_CMUDICT)
    return None


def _read_festival_lexicon(path: Path) -> dict[str, tuple[tuple[str, ...], ...]]:
    """A festival compiled lexicon (``("word" pos (((ph ph) stress) ...))`` per line) as a
    dictionary; parts of speech become pronunciation variants."""
    entries: dict[str, list[tuple[str, ...]]] = {}
    line_re = re.compile(r'^\("((?:[^"\\]|\\.)*)"\s+\S+\s+(.*)\)\s*$')
    with open(path, encoding="latin-1") as handle:
        for line in handle:
            match = line_re.match(line)
            if not match:
                continue
            word = match.group(1).casefold()
            phones = tuple(re.findall(r"[a-z]+", match.group(2)))
            if phones and phones not in entries.setdefault(word, []):
                entries[word].append(phones)
    return {word: tuple(variants) for word, variants in entries.items()}


def words_from_text(text: str, dictionary: Dictionary | None, voice: str = "en-us") -> list[Word]:
    """Words of ``text`` from ``dictionary`` where it lists them, from espeak-ng otherwise
    (the default lexicon's behaviour; a user's own dictionary is strict: dictionary_to_words)."""
    if dictionary is None:
        return text_to_phones(text, voice=voice)
    tokens = tokenize_words(text)
    if not tokens:
        raise TranscriptError(f"transcript {text!r} contains no words")
    words = []
    for token in tokens:
        try:
            words.extend(dictionary_to_words(token, dictionary))
        except TranscriptError:
            words.extend(text_to_phones(token, voice=voice))
    return words


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def read_dictionary(source: str | os.PathLike) -> dict[str, tuple[tuple[str, ...], ...]]:
    """Read a pronunciation dictionary: ``{word (case-folded): (pronunciation, ...)}``.

    One entry per line, ``WORD PH1 PH2 ...`` separated by spaces or tabs (CMUdict, MFA). A
    ``WORD(2)`` entry is another pronunciation of ``WORD``; numbers right after the word (MFA's
    pronunciation and silence probabilities) are skipped; blank lines and lines starting with
    ``;;;`` or ``#`` are comments. Pronunciations keep the file's order (the first is the
    default), duplicates dropped.

    The text is UTF-8, or Latin-1 when it is not valid UTF-8 (CMUdict 0.7b).

    Raises:
        TranscriptError: the file cannot be read, holds no entry, or an entry has no phones
            (the line number is given).
    """
    path = Path(source)
    limits.check_dictionary_file(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TranscriptError(f"cannot read the pronunciation dictionary '{path.name}': {exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # CMUdict 0.7b and other older lexicons
    entries: dict[str, list[tuple[str, ...]]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith((";;;", "#")):
            continue
        word = _VARIANT_RE.sub("", fields[0]).casefold()
        rest = fields[1:]
        skip = 0
        while skip < min(_MAX_PROBABILITY_COLUMNS, len(rest) - 1) and _is_number(rest[skip]):
            skip += 1
        phones = tuple(rest[skip:])
        if not phones:
            raise TranscriptError(f"pronunciation dictionary '{path.name}', line {number}: "
                                  f"the word {fields[0]!r} has no phones")
        try:
            limits.check_labels(phones)
        except TranscriptError as exc:
            raise TranscriptError(f"pronunciation dictionary '{path.name}', line {number}: {exc}") from None
        variants = entries.setdefault(word, [])
        if phones not in variants:
            variants.append(phones)
            limits.check_dictionary_counts(path.name, number, word, len(variants))
    if not entries:
        raise TranscriptError(f"the pronunciation dictionary '{path.name}' holds no entry")
    return {word: tuple(variants) for word, variants in entries.items()}


def dictionary_to_words(text: str, dictionary: Dictionary) -> list[Word]:
    """Look every word of ``text`` (:func:`tokenize_words`) up in ``dictionary``
    (:func:`read_dictionary`), case-insensitively. A hyphenated word that is not listed takes
    its listed parts' phones in turn ("well-known" -> "well" + "known"; first pronunciations).

    Raises:
        TranscriptError: no words, or words that are not in the dictionary (named).
    """
    if not isinstance(text, str):
        raise TranscriptError(f"transcript must be a string, got {type(text).__name__}")
    limits.check_text_size(text)
    tokens = tokenize_words(text)
    if not tokens:
        raise TranscriptError(f"transcript {text!r} contains no words")
    limits.check_token_count(len(tokens))
    words, missing = [], []
    for token in tokens:
        key = token.casefold()
        parts = [p for p in key.split("-") if p]
        if key in dictionary:
            variants = dictionary[key]
            words.append(Word(token, variants[0], variants if len(variants) > 1 else ()))
        elif len(parts) > 1 and all(p in dictionary for p in parts):
            words.append(Word(token, tuple(phone for p in parts for phone in dictionary[p][0])))
        elif token not in missing:
            missing.append(token)
    if missing:
        shown = ", ".join(repr(w) for w in missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise TranscriptError(f"not in the pronunciation dictionary: {shown}")
    return words


def build_phone_sequence(
    words_or_phones: str | Sequence[Word] | Sequence[str],
    silence: str = "sil",
    edge_silence: bool = True,
    word_silence: bool = False,
) -> tuple[list[str], list[WordSpan]]:
    """Build the phone sequence to align, with optional silences.

    Args:
        words_or_phones: a list of :class:`Word`; a list of phone strings; or a space-separated
            phone string (see :func:`parse_phones`).
        silence: the silence phone label.
        edge_silence: put ``silence`` at the start and end.
        word_silence: put ``silence`` between words (needs words; ignored for bare phones).

    Returns:
        ``(phones, spans)``: phones ``[P]``; ``spans`` one :class:`WordSpan` per word, its
        ``[start, end)`` indexing ``phones`` (empty when bare phones were given).

    Example:
        ``build_phone_sequence([Word("hi", ("h", "aI")), Word("yo", ("j", "oU"))])`` gives
        ``(["sil", "h", "aI", "j", "oU", "sil"], [WordSpan("hi", 1, 3), WordSpan("yo", 3, 5)])``.
    """
    if isinstance(words_or_phones, str):
        words_or_phones = parse_phones(words_or_phones)
    items = list(words_or_phones)
    if not items:
        raise TranscriptError("transcript is empty: nothing to align")
    if not isinstance(silence, str) or not silence or silence.split() != [silence]:
        raise TranscriptError(f"silence label must be a non-empty string without spaces, got {silence!r}")

    phones: list[str] = [silence] if edge_silence else []
    spans: list[WordSpan] = []
    if all(isinstance(item, Word) for item in items):
        for index, word in enumerate(items):
            if not word.phones:
                raise TranscriptError(f"word {word.text!r} has no phones")
            if word_silence and index > 0:
                phones.append(silence)
            start = len(phones)
            phones.extend(word.phones)
            spans.append(WordSpan(word.text, start, len(phones)))
    elif all(isinstance(item, str) for item in items):
        for phone in items:
            if not phone or phone.split() != [phone]:
                raise TranscriptError(f"invalid phone {phone!r}: phones must be non-empty and contain no spaces")
            limits.check_label(phone)
        phones.extend(items)
    else:
        kinds = sorted({type(item).__name__ for item in items})
        raise TranscriptError(f"expected a list of Word or a list of phone strings, got a mix of {kinds}")
    if edge_silence:
        phones.append(silence)
    return phones, spans


# --------------------------------------------------------------------------- the sequence to align

SilenceOption = Literal["optional", "always", "never"]
# prepare_transcript(dictionary=DEFAULT_LEXICON): CMUdict where installed, espeak-ng for the rest.
DEFAULT_LEXICON = "default"

@dataclass(frozen=True)
class PreparedTranscript:
    """The phone sequence to align.

    Attributes:
        phones: ``[P]`` symbols, silences included.
        optional: ``[P]`` True where the phone may be skipped (silences we added).
        spans: one :class:`WordSpan` per word (empty for bare phones).
        words: the words it was built from (empty for bare phones), with any dictionary
            variants (:func:`~hmm_engine.alignment.pronunciations.choose_pronunciations`).
    """

    phones: list[str]
    optional: list[bool]
    spans: list[WordSpan]
    words: list[Word] = field(default_factory=list)


def prepare_transcript(
    phones: str | Sequence[str] | None = None,
    words: str | Sequence[Word] | None = None,
    silence: str = "sil",
    edge_silence: SilenceOption = "optional",
    word_silence: SilenceOption = "optional",
    voice: str = "en-us",
    dictionary: Dictionary | str | None = None,
) -> PreparedTranscript:
    """Build the phone sequence of a transcript, with silences.

    Args:
        phones: space-separated phones or a list of phones (any symbol set).
        words: orthographic text (converted with espeak-ng, or looked up in ``dictionary``)
            or a list of :class:`Word`.
        silence: silence symbol.
        edge_silence: ``"optional"`` (skippable ``silence`` at each edge), ``"always"`` or
            ``"never"``. No silence is added at an edge that already has one.
        word_silence: the same between words (words only).
        voice: espeak-ng voice for ``words`` text.
        dictionary: a pronunciation dictionary (:func:`~hmm_engine.alignment.transcripts.read_dictionary`)
            for ``words`` text instead of espeak-ng (each word starts with its first
            pronunciation; a word it lacks is an error), or :data:`DEFAULT_LEXICON` (CMUdict
            where installed, :func:`default_dictionary`, espeak-ng for the words it lacks).

    Raises:
        TranscriptError: neither or both of phones/words given, empty transcript, bad option,
            a word missing from ``dictionary``.
    """
    for name, value in (("edge_silence", edge_silence), ("word_silence", word_silence)):
        if value not in ("optional", "always", "never"):
            raise TranscriptError(f"{name} must be 'optional', 'always' or 'never', got {value!r}")
    if (phones is None) == (words is None):
        raise TranscriptError("give exactly one of phones= or words=")
    if phones is not None:
        items: list = parse_phones(phones) if isinstance(phones, str) else list(phones)
    elif isinstance(words, str):
        if isinstance(dictionary, str) and dictionary == DEFAULT_LEXICON:
            lexicon = default_dictionary() if voice.casefold().startswith("en") else None
            items = words_from_text(words, lexicon, voice)
        elif dictionary is not None:
            items = dictionary_to_words(words, dictionary)
        else:
            items = text_to_phones(words, voice=voice)
    else:
        items = list(words)
    if not items:
        raise TranscriptError("transcript is empty: nothing to align")
    seq, spans = build_phone_sequence(items, silence=silence, edge_silence=False,
                                      word_silence=word_silence != "never")
    optional = [False] * len(seq)
    if word_silence == "optional":
        # build_phone_sequence puts a silence between words: mark exactly those optional.
        inner = {span.start - 1 for span in spans[1:]}
        optional = [i in inner and p == silence for i, p in enumerate(seq)]
    if edge_silence != "never":
        flag = edge_silence == "optional"
        if seq[0] != silence:
            seq.insert(0, silence)
            optional.insert(0, flag)
            spans = [WordSpan(s.text, s.start + 1, s.end + 1) for s in spans]
        if seq[-1] != silence:
            seq.append(silence)
            optional.append(flag)
    if all(p == silence for p in seq):
        raise TranscriptError("the transcript holds only silence: nothing to align")
    return PreparedTranscript(seq, optional, spans, [w for w in items if isinstance(w, Word)])



def with_pronunciation(transcript: PreparedTranscript, index: int, phones: Sequence[str]) -> PreparedTranscript:
    """``transcript`` with word ``index`` spoken as ``phones`` (the spans after it shifted)."""
    span = transcript.spans[index]
    delta = len(phones) - (span.end - span.start)
    spans = [s if i < index else WordSpan(s.text, s.start + (delta if i > index else 0), s.end + delta)
             for i, s in enumerate(transcript.spans)]
    words = list(transcript.words)
    words[index] = replace(words[index], phones=tuple(phones))
    return PreparedTranscript(
        transcript.phones[:span.start] + list(phones) + transcript.phones[span.end:],
        transcript.optional[:span.start] + [False] * len(phones) + transcript.optional[span.end:],
        spans, words,
    )
