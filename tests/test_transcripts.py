"""Phone strings, espeak-ng text -> phones, and building the phone sequence to align."""

import shutil

import pytest

from hmm_engine.alignment import transcripts
from hmm_engine.alignment.transcripts import (
    Word,
    WordSpan,
    build_phone_sequence,
    parse_phones,
    text_to_phones,
    tokenize_words,
)
from hmm_engine.errors import TranscriptError

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


def test_parse_phones_any_symbols():
    assert parse_phones("h @ l oU") == ["h", "@", "l", "oU"]
    assert parse_phones("  ʃ  iː\tk\n") == ["ʃ", "iː", "k"]
    for empty in ("", "   \n"):
        with pytest.raises(TranscriptError, match="empty"):
            parse_phones(empty)
    with pytest.raises(TranscriptError, match="string"):
        parse_phones(["h"])


def test_tokenize_words_keeps_inner_apostrophes_and_drops_punctuation():
    assert tokenize_words("Hello, world! It's well-known -- 3.5 ...") == ["Hello", "world", "It's", "well-known", "3.5"]
    assert tokenize_words("?!...") == []


@needs_espeak
def test_text_to_phones_hello_world():
    words = text_to_phones("Hello, world!")
    assert words == [Word("Hello", ("h", "@", "l", "oU")), Word("world", ("w", "3:", "l", "d"))]
    stressed = text_to_phones("hello", keep_stress=True)
    assert stressed[0].phones == ("h", "@", "l", "'oU")


@needs_espeak
def test_text_to_phones_other_voice_and_word_mapping():
    words = text_to_phones("bonjour le monde", voice="fr")
    assert [w.text for w in words] == ["bonjour", "le", "monde"]
    assert words[2].phones == ("m", "O~", "d")
    # A number is read as several words but stays one token.
    number = text_to_phones("12")
    assert len(number) == 1 and number[0].phones == ("t", "w", "E", "l", "v")


@needs_espeak
def test_text_to_phones_errors():
    with pytest.raises(TranscriptError, match="no words"):
        text_to_phones(" ... !? ")
    with pytest.raises(TranscriptError, match="voice"):
        text_to_phones("hello", voice="zzqx")


def test_missing_espeak_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(transcripts.shutil, "which", lambda name: None)
    with pytest.raises(TranscriptError, match="espeak-ng is not installed"):
        text_to_phones("hello")


def test_build_phone_sequence_with_words():
    words = [Word("hi", ("h", "aI")), Word("yo", ("j", "oU"))]
    phones, spans = build_phone_sequence(words)
    assert phones == ["sil", "h", "aI", "j", "oU", "sil"]
    assert spans == [WordSpan("hi", 1, 3), WordSpan("yo", 3, 5)]
    phones, spans = build_phone_sequence(words, silence="sp", edge_silence=False, word_silence=True)
    assert phones == ["h", "aI", "sp", "j", "oU"]
    assert spans == [WordSpan("hi", 0, 2), WordSpan("yo", 3, 5)]
    assert [phones[s.start:s.end] for s in spans] == [["h", "aI"], ["j", "oU"]]


def test_build_phone_sequence_with_bare_phones():
    assert build_phone_sequence("a b") == (["sil", "a", "b", "sil"], [])
    assert build_phone_sequence(["a", "b"], edge_silence=False, word_silence=True) == (["a", "b"], [])


@pytest.mark.parametrize(
    "value,kwargs,message",
    [
        ([], {}, "empty"),
        ("", {}, "empty"),
        ([Word("x", ())], {}, "no phones"),
        (["a", Word("b", ("b",))], {}, "mix"),
        (["a b"], {}, "no spaces"),
        (["a"], {"silence": ""}, "silence label"),
    ],
)
def test_build_phone_sequence_errors(value, kwargs, message):
    with pytest.raises(TranscriptError, match=message):
        build_phone_sequence(value, **kwargs)


# --------------------------------------------------------------------------- pronunciation dictionaries


def test_read_dictionary_cmudict_and_mfa_formats(tmp_path):
    path = tmp_path / "lexicon.dict"
    path.write_text(";;; CMUdict-style comment\n# another comment\n\n"
                    "READ  R IY1 D\nREAD(2)  R EH1 D\n"
                    "read\t0.99\t0.12\t1.0\t0.8\tR IY1 D\n"  # MFA probabilities; a duplicate of the first
                    "Hello HH AH0 L OW1\n2024 T UW1 TH AW1 Z AH0 N D\n", encoding="utf-8")
    assert transcripts.read_dictionary(path) == {
        "read": (("R", "IY1", "D"), ("R", "EH1", "D")),
        "hello": (("HH", "AH0", "L", "OW1"),),
        "2024": (("T", "UW1", "TH", "AW1", "Z", "AH0", "N", "D"),),
    }


def test_read_dictionary_errors(tmp_path):
    cases = {"missing.dict": None, "empty.dict": ";;; nothing\n\n", "nophones.dict": "A AH0\nB\n"}
    messages = {"missing.dict": "cannot read", "empty.dict": "holds no entry", "nophones.dict": "line 2: the word 'B'"}
    for name, content in cases.items():
        if isinstance(content, str):
            (tmp_path / name).write_text(content, encoding="utf-8")
        elif content is not None:
            (tmp_path / name).write_bytes(content)
        with pytest.raises(TranscriptError, match=messages[name]):
            transcripts.read_dictionary(tmp_path / name)
    # Not UTF-8: read as Latin-1, as CMUdict 0.7b is.
    (tmp_path / "latin1.dict").write_bytes("CAFÉ K AE F EY\n".encode("latin-1"))
    assert transcripts.read_dictionary(tmp_path / "latin1.dict") == {"café": (("K", "AE", "F", "EY"),)}


def test_dictionary_to_words_variants_hyphens_and_missing_words():
    lexicon = {"read": (("r", "iy", "d"), ("r", "eh", "d")), "well": (("w", "eh", "l"),),
               "known": (("n", "ow", "n"),), "aloud": (("ax", "l", "aw", "d"),)}
    words = transcripts.dictionary_to_words("READ it well-known, Aloud!", {**lexicon, "it": (("ih", "t"),)})
    assert words == [Word("READ", ("r", "iy", "d"), (("r", "iy", "d"), ("r", "eh", "d"))), Word("it", ("ih", "t")),
                     Word("well-known", ("w", "eh", "l", "n", "ow", "n")), Word("Aloud", ("ax", "l", "aw", "d"))]
    with pytest.raises(TranscriptError, match="not in the pronunciation dictionary: 'it', 'zork'"):
        transcripts.dictionary_to_words("read it zork it", lexicon)
    with pytest.raises(TranscriptError, match="no words"):
        transcripts.dictionary_to_words("?!", lexicon)
