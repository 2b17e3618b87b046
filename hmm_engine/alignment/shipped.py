"""Phone models shipped with the package: the single-utterance starting point for ARPAbet.

Trained on one clip, phone models know only that clip (61.0% of pocketsphinx's boundaries
within 20 ms on the real clips of ``benchmarks/real_speech.py``). ``shipped/arpabet_synthetic.pt``
(and ``shipped/cmu_festival_synthetic.pt``, the same in festival's lowercase CMU set) hold
three-state, one-Gaussian phone models of the 39 ARPAbet phones (CMUdict's set, no
stress) and ``sil``, MFCC + deltas, trained by :func:`~hmm_engine.alignment.recipes.train_labelled`
on the exact phone labels of 80 synthetic utterances (flite's slt/awb/rms voices and festival's
slt HTS voice; ``scripts/make_phone_models.py`` rebuilds them, ~1 min). On the real clips
they place 83.6% (docs/real-recordings.md). Licence note: ``shipped/README.md``.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from hmm_engine.alignment.phone_models import PhoneModels

SHIPPED_MODELS_PATH = Path(__file__).with_name("shipped") / "arpabet_synthetic.pt"
# The same training on the corpus's own labels: festival's CMU lexicon set (lowercase, with "ax"),
# which is what DEFAULT_LEXICON gives when it is Debian festlex-cmu's cmudict-0.4.
SHIPPED_FESTIVAL_MODELS_PATH = SHIPPED_MODELS_PATH.with_name("cmu_festival_synthetic.pt")


@lru_cache(maxsize=2)
def _load(path: Path) -> PhoneModels | None:
    return PhoneModels.load(path) if path.is_file() else None


def shipped_phone_models(phones: Iterable[str]) -> PhoneModels | None:
    """A fresh copy of the shipped models whose phone set holds every symbol of ``phones``
    (CMUdict's ARPAbet as pocketsphinx ships it, or festival's lowercase CMU set, and ``sil``),
    else None (espeak-ng symbols, another phone set, missing files): then the caller trains on
    the clip as before."""
    phones = set(phones)
    for path in (SHIPPED_MODELS_PATH, SHIPPED_FESTIVAL_MODELS_PATH):
        models = _load(path)
        if models is not None and all(p in models.phone_index for p in phones):
            return copy.deepcopy(models)
    return None


__all__ = ["SHIPPED_FESTIVAL_MODELS_PATH", "SHIPPED_MODELS_PATH", "shipped_phone_models"]
