"""Broad phonetic classes of phone symbols, for class-level sharing in alignment models.

A phone model trained on one utterance sees a phone once or twice: its Gaussian can drift to
explain its neighbours' frames, and the alignment slides. Pulling each phone's mean towards
the mean of its broad class (vowel, stop, fricative, ...) in the same utterance keeps it
anchored (see :meth:`hmm_engine.alignment.phone_models.PhoneModels.emission_m_step`).

:func:`phone_classes` classifies a whole inventory with one of three tables, the one that
recognises most of its symbols (:func:`detect_symbol_set`):

- ARPAbet as in CMUdict, TIMIT, flite and festival (any case, stress digits ignored:
  ``AA1`` = ``aa``), with TIMIT's closures and pauses;
- espeak-ng's English phoneme mnemonics (what ``espeak-ng -x`` and
  :func:`hmm_engine.alignment.transcripts.text_to_phones` give: ``@ aI D tS ...``);
- single IPA consonant letters and any symbol made of IPA vowel letters.

The classes are ``"silence"``, ``"vowel"``, ``"stop"``, ``"affricate"``, ``"fricative"``,
``"nasal"`` and ``"approximant"``. A symbol none of these recognise gets ``None`` (its model
is then shared with no other phone).
"""

from __future__ import annotations

import re
from typing import Iterable, Optional

from hmm_engine.errors import InvalidParameterError

CLASSES = ("silence", "vowel", "stop", "affricate", "fricative", "nasal", "approximant")

_ARPABET = {
    "vowel": "aa ae ah ao aw ax axr ax-h ay eh er ey ih ix iy ow oy uh uw ux",
    "stop": "b d g p t k dx q",
    "affricate": "ch jh",
    "fricative": "f v th dh s z sh zh hh hv",
    "nasal": "m n ng em en eng nx",
    "approximant": "l r w y el",
    "silence": "sil sp spn pau h# epi bcl dcl gcl pcl tcl kcl",
}
_ESPEAK = {
    "stop": "p t k b d g t# ?",
    "affricate": "tS dZ",
    "fricative": "f v T D s z S Z h x",
    "nasal": "m n N n- m-",
    "approximant": "l r w j r- l-",
    "silence": "_ _: _!",
}
# IPA: a single consonant letter, or a string of vowel letters / length and r-colour marks.
_IPA = {
    "stop": "pbtdkgʔɡ",
    "fricative": "fvθðszʃʒhχç",
    "nasal": "mnŋɲ",
    "approximant": "lrwjɹɾɫʍ",
}
_IPA_VOWELS = set("aeiouæɑɒɔəɚɛɜɝɪʊʌyøœɐɨʉɯɤ") | set("ːˑ˞")
_ESPEAK_VOWEL_CHARS = set("aeiouAEIOU@03V")


def _table(spec: dict) -> dict:
    return {sym: cls for cls, syms in spec.items() for sym in syms.split()}


_ARPABET_TABLE = _table(_ARPABET)
_ESPEAK_TABLE = _table(_ESPEAK)


def _arpabet(symbol: str) -> Optional[str]:
    return _ARPABET_TABLE.get(re.sub(r"[012]$", "", symbol.lower()))


def _espeak(symbol: str) -> Optional[str]:
    if symbol in _ESPEAK_TABLE:
        return _ESPEAK_TABLE[symbol]
    # Vowels: mnemonics built from vowel letters, @, 0, 3, V plus marks (aI@, i@3, @L, 3:).
    if symbol and symbol[0] in _ESPEAK_VOWEL_CHARS:
        return "vowel"
    return None


def _ipa(symbol: str) -> Optional[str]:
    if len(symbol) == 1 or (len(symbol) == 2 and symbol[1] in "ʰʲʷ"):
        for cls, letters in _IPA.items():
            if symbol[0] in letters:
                return cls
    if symbol and symbol[0] not in "ːˑ˞" and all(ch in _IPA_VOWELS for ch in symbol):
        return "vowel"
    return None


_SETS = {"arpabet": _arpabet, "espeak": _espeak, "ipa": _ipa}


def detect_symbol_set(phones: Iterable[str], silence: str = "sil") -> str:
    """Which table explains most of an inventory: "arpabet", "espeak" or "ipa" (ties in that
    order). Symbols such as ``D`` mean different phones in ARPAbet (d) and espeak-ng (ð),
    so a whole inventory is classified with one table."""
    symbols = [p for p in set(phones) if p != silence]
    scores = {name: sum(fn(p) is not None for p in symbols) for name, fn in _SETS.items()}
    return max(_SETS, key=lambda name: scores[name])


def phone_classes(phones: Iterable[str], silence: str = "sil") -> dict[str, Optional[str]]:
    """``{symbol: class or None}`` for an inventory, classified with the table that
    :func:`detect_symbol_set` picks (the other tables are not consulted: see there)."""
    phones = list(dict.fromkeys(phones))
    classify = _SETS[detect_symbol_set(phones, silence)]
    return {p: "silence" if p == silence else classify(p) for p in phones}


def phone_class(symbol: str, silence: str = "sil", symbol_set: str = "arpabet") -> Optional[str]:
    """Broad class of one symbol (one of :data:`CLASSES`) in ``symbol_set``, or None."""
    if symbol == silence:
        return "silence"
    if symbol_set not in _SETS:
        raise InvalidParameterError(f"symbol_set must be one of {sorted(_SETS)}, got {symbol_set!r}")
    return _SETS[symbol_set](symbol)


__all__ = ["CLASSES", "detect_symbol_set", "phone_class", "phone_classes"]
