"""Choosing each word's pronunciation among its dictionary variants with fixed models."""

from __future__ import annotations

from hmm_engine.alignment.decoding import viterbi_segments
from hmm_engine.alignment.distributed import gather
from hmm_engine.alignment.phone_models import PhoneModels
from hmm_engine.alignment.transcripts import PreparedTranscript, with_pronunciation
from hmm_engine.errors import InvalidInputError
from hmm_engine.frontend.features import Features

def choose_pronunciations(
    models: PhoneModels, features: Features, transcript: PreparedTranscript,
) -> tuple[PreparedTranscript, int]:
    """Pick each word's pronunciation among its dictionary variants (``Word.variants``) by the
    Viterbi score of the utterance with fixed models: left to right, one word at a time, the
    others held at their current choice (what HTK's HVite does with a multi-pronunciation
    dictionary, greedily instead of over all combinations). Variants with a phone the models
    do not know, or too long for the audio, are passed over.

    Returns:
        ``(transcript, changed)``: the transcript with the chosen pronunciations and how many
        words got another one than they had.
    """
    if not any(word.variants for word in transcript.words):
        return transcript, 0
    best = transcript
    best_score = viterbi_segments(models, features, best, confidence=False).viterbi_score
    changed = 0
    for index, word in enumerate(transcript.words):
        for variant in word.variants:
            if variant == best.words[index].phones or any(p not in models.phone_index for p in variant):
                continue
            candidate = with_pronunciation(best, index, variant)
            try:
                score = viterbi_segments(models, features, candidate, confidence=False).viterbi_score
            except InvalidInputError:  # more mandatory states than frames
                continue
            if score > best_score:
                best, best_score = candidate, score
        changed += best.words[index].phones != word.phones
    return best, changed



def count_variants(loaded) -> tuple[int, int]:
    """Over all ranks: words with several dictionary pronunciations, and how many of them are
    currently spoken with another than the first listed."""
    words = [word for _, _, transcript in loaded for word in transcript.words if word.variants]
    totals = gather((len(words), sum(word.phones != word.variants[0] for word in words)))
    return sum(t[0] for t in totals), sum(t[1] for t in totals)

