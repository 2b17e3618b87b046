"""How well an alignment's transcript fits its audio (against a free phone loop), and the
per-file analysis CSV that corpus alignment writes beside the TextGrids."""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from hmm_engine.alignment.decoding import AlignmentResult
from hmm_engine.alignment.phone_models import PhoneModels
from hmm_engine.frontend.features import Features
from hmm_engine.inference.chain import loop_viterbi

# Per-file alignment quality, the worst-fitting phone first (align_corpus writes it beside the TextGrids).
ANALYSIS_FILE = "alignment_analysis.csv"
ANALYSIS_COLUMNS = ("name", "duration_s", "phones", "worst_phone_fit", "worst_phone", "worst_phone_start_s",
                    "transcript_fit_per_frame", "log_likelihood_per_frame")


@dataclass(frozen=True)
class TranscriptFit:
    """:func:`transcript_fit`'s answer.

    Attributes:
        transcript_fit_per_frame: (forced Viterbi score - phone-loop Viterbi score) per frame.
        worst_phone, worst_phone_start_s, worst_phone_fit: the speech phone whose frames score
            worst against the phone loop's best path ("" / NaN when there is none).
    """

    transcript_fit_per_frame: float
    worst_phone: str
    worst_phone_start_s: float
    worst_phone_fit: float

    def as_dict(self) -> dict:
        return asdict(self)


def transcript_fit(models: PhoneModels, features: Features, result: AlignmentResult,
                   phone_loop: tuple | None = None) -> TranscriptFit:
    """How well an alignment's transcript fits the audio, against a free phone loop
    (:meth:`PhoneModels.phone_loop`: the same models, no transcript), both by Viterbi.

    Returns a :class:`TranscriptFit`:
        ``transcript_fit_per_frame``: (forced Viterbi score - phone-loop Viterbi score) per frame;
        ``worst_phone``, ``worst_phone_start_s``, ``worst_phone_fit``: the speech phone whose
            frames score worst against the phone loop's best path (the mean, over its frames,
            of forced-path minus loop-path emission scores) - where a wrong, missing or extra
            phone usually shows.
    Files of one corpus cluster near each other and a wrong transcript falls below them;
    measured by ``benchmarks/transcript_errors.py``. ``phone_loop``: ``models.phone_loop()``
    when the caller scores many files with the same models (built once, not per file).
    """
    loop, loop_ids = phone_loop if phone_loop is not None else models.phone_loop()
    x = features.values.to(models.log_stay.device)
    # Every tied state scored once (context states too, which only the forced path may use).
    scores = models.chain_log_obs(x, np.arange(models.num_states), exact=False)
    scores = scores.detach().to("cpu", torch.float64).numpy()
    path, score = loop_viterbi(loop, scores[:, loop_ids])
    frames = np.arange(scores.shape[0])
    gap = scores[frames, result.frame_states] - scores[frames, loop_ids[path]]
    worst, worst_fit = None, math.inf
    for seg in result.phones:
        a, b = round(seg.start / result.frame_shift), round(seg.end / result.frame_shift)
        if seg.label != models.silence and b > a and gap[a:b].mean() < worst_fit:
            worst, worst_fit = seg, float(gap[a:b].mean())
    return TranscriptFit(
        float((result.viterbi_score - score) / max(result.num_frames, 1)),
        worst.label if worst else "",
        worst.start if worst else math.nan,
        worst_fit if worst else math.nan,
    )


def analysis_row(name: str, result: AlignmentResult, fit: TranscriptFit) -> dict:
    """One row of :data:`ANALYSIS_FILE` (columns :data:`ANALYSIS_COLUMNS`): the file, its
    :func:`transcript_fit` and its forward log-likelihood per
    frame (NaN without confidences)."""
    return {"name": name, "duration_s": round(result.duration, 3), "phones": len(result.phones),
            "worst_phone_fit": fit.worst_phone_fit, "worst_phone": fit.worst_phone,
            "worst_phone_start_s": fit.worst_phone_start_s,
            "transcript_fit_per_frame": fit.transcript_fit_per_frame,
            "log_likelihood_per_frame": result.log_likelihood / max(result.num_frames, 1)}


def worst_first(rows: Sequence[dict]) -> list[dict]:
    """Analysis rows ordered as :data:`ANALYSIS_FILE` is: the worst-fitting phone first."""
    fit = "worst_phone_fit"
    return sorted(rows, key=lambda r: (math.isnan(r[fit]), r[fit], r["name"]))


def write_analysis(path: Path, rows: Sequence[dict]) -> None:
    """Write :data:`ANALYSIS_FILE`: one row per aligned file, in :func:`worst_first` order."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=ANALYSIS_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in worst_first(rows):
            writer.writerow({key: _cell(value) for key, value in row.items()})


def _cell(value):
    """A CSV cell: floats to 4 decimals, NaN as empty."""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4f}"
    return value

