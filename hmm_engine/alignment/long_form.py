"""Long recordings (an hour and more) with one transcript: anchors, pieces, stitching.

One chain over a whole chapter would need frames x states cells of DP memory (an hour at
3 states per phone: 360k frames x 130k positions), so a long recording is cut into *pieces*
of bounded size where the audio and the transcript agree, each piece is aligned alone, and
the pieces are stitched back together:

1. **Features** of the whole file, block by block (:func:`long_features`: the same frames as
   one call would give, CMVN over the whole file); an hour of 16 kHz audio gives 56 MB of
   39-dimensional features, and no block of audio larger than ``block_seconds`` is held.
2. **Models** to find anchors with: the user's (``models=``), or, in a bootstrap, models
   trained on *coarse pieces* (:func:`coarse_pieces`: cut at long low-energy stretches near
   every ``target_seconds``, each given the stretch of transcript its share of the speech
   frames predicts). Their text is only roughly right; the models are only used to find
   anchors.
3. **Anchors** (:func:`anchor_pieces`): a window of ``window_seconds`` of audio starting at
   the last anchor is aligned, with those models, against the next stretch of transcript
   (1.5 times what the speaking rate so far predicts) with a *free end*: the path may end in
   any state, as the window ends mid-speech. Where the path puts a pause of at least
   ``min_pause_seconds``, transcript and audio agree on a silence: an anchor, the pause split
   in its middle, its silence phone given to both pieces. Anchors about ``target_seconds``
   apart are committed up to the window's last ``tail_seconds`` (where the free end leaves the
   alignment uncertain), and the next window starts at the last one. With no pause in a
   window, the word boundary nearest the target is used (``anchor="word"``). A window's DP
   holds about ``window x chunk`` cells: bounded, whatever the recording's length. The same
   pass measures how far each piece's path scores below the best state frame by frame; a
   piece far below the others (a stretch the transcript does not describe) is reported and
   kept out of training and alignment (:func:`flag_outliers`).
4. **Pieces** are aligned like the utterances of a corpus (:func:`align_long` runs
   :func:`~hmm_engine.alignment.recipes.align_corpus` on them: flat-start training on at most
   ``max_train_minutes`` of them, then every piece with those models), and
5. **stitched** (:func:`stitch`): times shifted by each piece's start, the two halves of each
   anchor pause merged into one segment.

A piece that cannot be aligned (the corpus step skipped it, or its transcript fits its audio far
worse than the file's other pieces do: transcript fit per frame below the median by more than
``unaligned_mads`` robust deviations and at least ``min_fit_gap`` nats) is reported with its
time span and text, and left out of the tiers (a gap); every other piece is kept.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from hmm_engine.alignment.exports import read_segments_json, segments_to_csv, segments_to_json
from hmm_engine.alignment.phone_models import PhoneModels
from hmm_engine.alignment.textgrids import write_textgrid
from hmm_engine.errors import AudioError, HMMStudioError, InvalidInputError, InvalidParameterError
from hmm_engine.frontend.audio import Audio
from hmm_engine.frontend.features import FeatureConfig, Features, extract_features
from hmm_engine.inference.chain import chain_segment_viterbi, chain_viterbi
from hmm_engine.segments import TIME_TOLERANCE, Segment

# Longest recording accepted (seconds): 4 hours. The features of 4 h take 225 MB.
MAX_LONG_SECONDS = 4 * 3600.0
# Recordings longer than this (seconds) are aligned in pieces by the CLI's ``align``.
LONG_SECONDS = 60.0
PIECES_FOLDER = "__long_pieces__"
# Training of the anchor-finding models on coarse pieces: single Gaussians, HMM durations, 10
# EM iterations (a third of the cost of the full recipe; they only have to find pauses).
BOOTSTRAP_OPTIONS = {"iterations": 10, "num_mixtures": 1, "duration_type": None, "context_min_count": None}
PIECES_SUFFIX = ".pieces.csv"
PIECE_COLUMNS = ("piece", "start_s", "end_s", "anchor", "status", "fit_per_frame", "reason", "text")

__all__ = ["Piece", "LongAlignment", "long_features", "coarse_pieces", "anchor_pieces", "piece_text", "stitch",
           "align_long", "align_corpus_long", "write_pieces", "read_pieces", "MAX_LONG_SECONDS", "LONG_SECONDS",
           "PIECES_SUFFIX", "PIECE_COLUMNS", "audio_seconds"]


# --------------------------------------------------------------------------- features


def audio_seconds(path: str | os.PathLike) -> float:
    """Duration of an audio file from its header (no decoding)."""
    try:
        info = sf.info(os.fspath(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(f"'{path}': could not read audio ({exc})") from None
    return info.frames / info.samplerate


def _mono_blocks(path: str | os.PathLike, target_sr: int, block_seconds: float):
    """Yield float32 mono blocks of the file at ``target_sr``, in order (each resampled with
    context from its neighbours, so the joins are those of one whole-file resampling)."""
    with sf.SoundFile(os.fspath(path)) as handle:
        rate = handle.samplerate
        g = math.gcd(rate, target_sr)
        unit = rate // g  # whole units of source samples give whole target samples
        block = max(unit, int(block_seconds * rate) // unit * unit)
        context = 0 if rate == target_sr else 64 * unit
        total = handle.frames
        start = 0
        while start < total:
            a, b = max(0, start - context), min(total, start + block + context)
            handle.seek(a)
            data = handle.read(b - a, dtype="float32", always_2d=True).mean(axis=1)
            x = torch.from_numpy(np.ascontiguousarray(data))
            if rate != target_sr:
                x = AF.resample(x, rate, target_sr)
                lead = (start - a) * target_sr // rate
                length = (min(total, start + block) - start) * target_sr // rate
                x = x[lead:lead + length]
            yield x.to(torch.float32)
            start += block


def long_features(
    path: str | os.PathLike, config: FeatureConfig, target_sr: int = 16000, block_seconds: float = 60.0,
    max_seconds: float = MAX_LONG_SECONDS,
) -> Features:
    """Features of a long file, computed block by block; CMVN (when ``config.cmvn``) over the
    whole file. Frames are those of :func:`extract_features` on the whole file (the blocks
    overlap by enough frames for the analysis window and the deltas).

    Raises:
        AudioError: unreadable, silent-free checks aside; longer than ``max_seconds``.
    """
    seconds = audio_seconds(path)
    if seconds > max_seconds:
        raise AudioError(f"'{path}': {seconds:.0f} s is longer than the limit of {max_seconds:.0f} s")
    raw = replace(config, cmvn=False)
    hop = round(config.frame_shift_ms * target_sr / 1000.0)
    margin = 4 + config.deltas * config.delta_window + math.ceil(config.frame_length_ms / config.frame_shift_ms)
    parts: list[torch.Tensor] = []
    carry = torch.zeros(0)  # samples not yet turned into frames (block edges are not on the frame grid)
    consumed = 0  # samples before ``carry``
    done = 0  # frames emitted
    history = torch.zeros(0)  # the last samples before ``carry``, for left context
    blocks = _mono_blocks(path, target_sr, block_seconds)
    finished = False
    while not finished:
        try:
            block = next(blocks)
        except StopIteration:
            finished = True
            block = torch.zeros(0)
        carry = torch.cat([carry, block])
        total = consumed + carry.shape[0]
        if finished:
            end_frame = math.ceil(total / hop)
        else:
            end_frame = max(done, (total // hop) - margin)  # frames whose window and deltas are complete
        if end_frame <= done:
            continue
        context = torch.cat([history, carry])
        first_sample = consumed - history.shape[0]
        a = max(first_sample, (done - margin) * hop)
        b = total if finished else min(total, (end_frame + margin) * hop)
        piece = context[a - first_sample:b - first_sample]
        feats = extract_features(Audio(piece.contiguous(), target_sr, target_sr, 1), raw).values
        first = a // hop  # a is on the grid (or 0)
        parts.append(feats[done - first:end_frame - first])
        done = end_frame
        keep_from = max(first_sample, (done - 2 * margin) * hop)
        new_consumed = done * hop
        history = context[keep_from - first_sample:new_consumed - first_sample]
        carry = context[new_consumed - first_sample:]
        consumed = new_consumed
    values = torch.cat(parts).double()
    if config.cmvn:
        mean = values.mean(dim=0, keepdim=True)
        std = values.std(dim=0, unbiased=False, keepdim=True)
        values = (values - mean) / torch.clamp(std, min=1e-8)
    return Features(values.to(torch.float32).contiguous(), hop / target_sr, config, seconds, target_sr)


# --------------------------------------------------------------------------- pieces


@dataclass
class Piece:
    """A stretch of a long recording aligned on its own.

    Attributes:
        index: its place in the recording (0-based).
        start_frame, end_frame: its frames ``[start, end)`` in the recording's features.
        phone_start, phone_end: its phones ``[start, end)`` in the whole transcript (an anchor
            pause's silence belongs to both pieces around it).
        anchor: how its end was found: "pause", "word", "coarse" or "end".
        status: "pending", "aligned" or "unaligned".
        fit_per_frame: how well its transcript fits its audio, per frame: after the anchor pass
            the gap between the path's state scores and the best state's (<= 0), after
            alignment the transcript fit against a free phone loop
            (:func:`~hmm_engine.alignment.analysis.transcript_fit`); NaN when unknown.
        reason: why it is unaligned.
        text: its words (or phones).
    """

    index: int
    start_frame: int
    end_frame: int
    phone_start: int
    phone_end: int
    anchor: str
    status: str = "pending"
    fit_per_frame: float = math.nan
    reason: str = ""
    text: str = ""

    def span(self, frame_shift: float) -> tuple[float, float]:
        return self.start_frame * frame_shift, self.end_frame * frame_shift


def _cut_positions(transcript, silence: str) -> np.ndarray:
    """Phone indices ``j`` where a piece may start (a new word, or any phone for bare phones)."""
    if transcript.spans:
        starts = {s.start for s in transcript.spans}
        starts |= {j for j, p in enumerate(transcript.phones) if p == silence}
        return np.array(sorted(starts), dtype=np.int64)
    return np.arange(len(transcript.phones), dtype=np.int64)


def piece_text(transcript, phone_start: int, phone_end: int, silence: str = "sil") -> str:
    """The words whose phones lie in ``[phone_start, phone_end)`` (or the phones themselves,
    silences included, for a phone transcript)."""
    if transcript.spans:
        return " ".join(s.text for s in transcript.spans if s.start >= phone_start and s.end <= phone_end)
    return " ".join(transcript.phones[phone_start:phone_end])


def _energy(features: Features) -> np.ndarray:
    """A loudness track: c0 for MFCCs, the mean log-mel band otherwise, smoothed over 50 ms."""
    v = features.values
    track = v[:, 0] if features.config.kind == "mfcc" else v[:, :features.config.num_mels].mean(1)
    track = track.double().numpy()
    kernel = np.ones(5) / 5
    return np.convolve(track, kernel, mode="same")


def _pause_runs(energy: np.ndarray, min_frames: int) -> list[tuple[int, int]]:
    """Runs ``[a, b)`` of at least ``min_frames`` low-energy frames (below 25% of the way
    from the 5th to the 95th percentile)."""
    lo, hi = np.percentile(energy, [5, 95])
    quiet = energy < lo + 0.25 * (hi - lo)
    runs, start = [], None
    for t, q in enumerate(np.append(quiet, False)):
        if q and start is None:
            start = t
        elif not q and start is not None:
            if t - start >= min_frames:
                runs.append((start, t))
            start = None
    return runs


def coarse_pieces(features: Features, transcript, target_seconds: float = 6.0, min_pause_seconds: float = 0.25,
                  silence: str = "sil") -> list[Piece]:
    """Bootstrap pieces: cut at the low-energy stretch nearest every ``target_seconds``, each
    piece given the transcript share its speech frames predict (module docstring, step 2)."""
    shift = features.frame_shift
    T = features.num_frames
    energy = _energy(features)
    runs = _pause_runs(energy, max(1, round(min_pause_seconds / shift)))
    speech = np.ones(T, dtype=bool)
    for a, b in runs:
        speech[a:b] = False
    cum_speech = np.concatenate([[0], np.cumsum(speech)])
    total_speech = max(1, int(cum_speech[-1]))
    mandatory = np.array([not o and p != silence for p, o in zip(transcript.phones, transcript.optional)])
    cum_phones = np.concatenate([[0], np.cumsum(mandatory)])
    cuts = _cut_positions(transcript, silence)
    target = round(target_seconds / shift)
    mids = np.array([(a + b) // 2 for a, b in runs], dtype=np.int64)
    pieces: list[Piece] = []
    t0, p0 = 0, 0
    while T - t0 > 1.5 * target and len(mids):
        near = mids[(mids > t0 + target // 2) & (mids < t0 + 2 * target)]
        if not len(near):
            later = mids[mids > t0 + target // 2]
            if not len(later):
                break
            near = later[:1]
        c = int(near[np.argmin(np.abs(near - (t0 + target)))])
        share = cum_speech[c] / total_speech * cum_phones[-1]
        j = int(np.searchsorted(cum_phones, share))  # phones before j hold ~share mandatory phones
        options = cuts[(cuts > p0) & (cuts < len(transcript.phones) - 1)]
        if not len(options):
            break
        j = int(options[np.argmin(np.abs(options - j))])
        pieces.append(Piece(len(pieces), t0, c, p0, j, "coarse"))
        t0, p0 = c, j
    pieces.append(Piece(len(pieces), t0, T, p0, len(transcript.phones), "end"))
    for piece in pieces:
        piece.text = piece_text(transcript, piece.phone_start, piece.phone_end, silence)
    return pieces


def _window_path(models: PhoneModels, x: torch.Tensor, phones: list[str], optional: list[bool], free_end: bool
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Viterbi of ``x [W, D]`` against a phone chain (free end: any final state).

    Returns ``(frame_phone [W], frame_gap [W])``: the index into ``phones`` of every frame, and
    how much worse the path's state scores the frame than the best of all the models' states
    (<= 0; a transcript that does not fit its audio shows as a run of large gaps).
    """
    explicit = models.durations is not None
    chain, state_ids, phone_of = models.build_chain(phones, optional, explicit=explicit)
    if free_end:
        chain = replace(chain, log_final=np.zeros(chain.num_states))
    with torch.no_grad():  # score each tied state once, then gather the chain's positions
        scores = models.chain_log_obs(x, np.arange(models.num_states)).detach().to("cpu", torch.float64).numpy()
    log_obs = np.ascontiguousarray(scores[:, state_ids])
    if explicit:
        path, _ = chain_segment_viterbi(chain, *models.chain_durations(state_ids), log_obs)
    else:
        path, _ = chain_viterbi(chain, log_obs)
    frames = np.arange(path.shape[0])
    return phone_of[path], log_obs[frames, path] - scores.max(axis=1)


def flag_outliers(pieces: Sequence[Piece], mads: float = 6.0, min_gap: float = 1.5, reason: str = "") -> int:
    """Mark pending / aligned pieces whose ``fit_per_frame`` lies more than ``mads`` robust
    deviations (and ``min_gap``) below the median of the recording's pieces as unaligned;
    returns how many. Needs at least 3 pieces with a fit."""
    values = np.array([p.fit_per_frame for p in pieces if p.status != "unaligned"], dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) < 3:
        return 0
    median = float(np.median(values))
    threshold = median - max(mads * 1.4826 * float(np.median(np.abs(values - median))), min_gap)
    flagged = 0
    for p in pieces:
        if p.status != "unaligned" and p.fit_per_frame < threshold:
            p.status = "unaligned"
            p.reason = f"{reason}transcript fits the audio badly: {p.fit_per_frame:.2f} per frame, the " \
                       f"recording's median {median:.2f}"
            flagged += 1
    return flagged


def _runs(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """``(value, start, end)`` runs of an integer array."""
    change = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [labels.shape[0]]])
    return [(int(labels[a]), int(a), int(b)) for a, b in zip(starts, ends)]


def _edge_optional(phones: list[str], optional: list[bool], silence: str) -> tuple[list[str], list[bool]]:
    """A chunk of a transcript as a chain: optional silences at its edges (where it has none)."""
    phones, optional = list(phones), list(optional)
    if phones[0] == silence:
        optional[0] = len(phones) > 1 and not optional[1]
    else:
        phones.insert(0, silence)
        optional.insert(0, True)
    if phones[-1] != silence:
        phones.append(silence)
        optional.append(True)
    elif len(phones) > 1:
        optional[-1] = not optional[-2]
    if all(optional):
        optional[0] = False
    return phones, optional


def _check_cancelled() -> None:
    """The request's cancellation token (``hmm_engine.cancellation``): a cancelled dashboard
    request stops between windows."""
    from hmm_engine.cancellation import check_cancelled

    check_cancelled()


def anchor_pieces(
    models: PhoneModels, features: Features, transcript, window_seconds: float = 20.0,
    target_seconds: float = 6.0, min_piece_seconds: float = 2.0, tail_seconds: float = 5.0,
    min_pause_seconds: float = 0.15, show_progress: bool = False, cancel: Callable[[], bool] | None = None,
) -> list[Piece]:
    """Cut a long recording into pieces at anchors (module docstring, step 3).

    Args:
        models: phone models knowing every phone of ``transcript``.
        features: the whole recording's features (:func:`long_features`, the models' front end).
        transcript: the whole transcript (a ``PreparedTranscript``).
        window_seconds: audio aligned per window (the DP holds window x chunk cells).
        target_seconds: preferred piece length.
        min_piece_seconds, tail_seconds: an anchor lies at least this far from the window's
            start and from its (free) end.
        min_pause_seconds: shortest silence that makes an anchor.
        show_progress: a tqdm bar over the recording's seconds.
        cancel: called between windows; True stops with InvalidInputError.
    """
    from tqdm import tqdm

    if not (window_seconds > tail_seconds + min_piece_seconds and target_seconds > min_piece_seconds):
        raise InvalidParameterError("window_seconds must exceed tail_seconds + min_piece_seconds, and "
                                    "target_seconds must exceed min_piece_seconds")
    silence = models.silence
    shift = features.frame_shift
    T = features.num_frames
    P = len(transcript.phones)
    W = round(window_seconds / shift)
    lo, hi = round(min_piece_seconds / shift), W - round(tail_seconds / shift)
    target = min(hi, round(target_seconds / shift))
    min_pause = max(1, round(min_pause_seconds / shift))
    starts = set(_cut_positions(transcript, silence).tolist())
    x_all = features.values.to(models.log_stay.device)
    rate = T / max(1, P)  # frames per phone, refined as pieces are committed
    pieces: list[Piece] = []
    t0, p0 = 0, 0
    bar = tqdm(total=round(T * shift), desc="anchors", unit="s", disable=not show_progress, file=sys.stderr)
    while True:
        if cancel is not None and cancel():
            bar.close()
            raise InvalidInputError("cancelled")
        _check_cancelled()
        remaining = T - t0
        if remaining <= W or p0 >= P - 1:
            end = T if remaining <= W else t0 + W
            piece = Piece(len(pieces), t0, end, p0, P, "end")
            try:
                phones, optional = _edge_optional(transcript.phones[p0:P], transcript.optional[p0:P], silence)
                piece.fit_per_frame = float(_window_path(models, x_all[t0:end], phones, optional, False)[1].mean())
            except HMMStudioError:
                pass  # too short for its phones: the corpus step says so
            pieces.append(piece)
            if end < T:
                pieces.append(Piece(len(pieces), end, T, P, P, "end", status="unaligned",
                                    reason="audio after the end of the transcript"))
            break
        chunk = int(1.5 * W / rate) + 30
        while True:
            p1 = min(P, p0 + chunk)
            phones, optional = _edge_optional(transcript.phones[p0:p1], transcript.optional[p0:p1], silence)
            lead = 1 if phones[0] == silence and transcript.phones[p0] != silence else 0
            frame_phone, frame_gap = _window_path(models, x_all[t0:t0 + W], phones, optional, free_end=True)
            frame_phone = frame_phone - lead
            if p1 == P or frame_phone[-1] < len(phones) - lead - 10:
                break
            chunk *= 2  # the speech ran past the chunk: give it more transcript
        runs = _runs(frame_phone)
        pauses = []  # (cut frame in the window, index of the silence phone shared by both pieces)
        for local, a, b in runs:
            j = p0 + local
            if 0 <= local and j < P and transcript.phones[j] == silence and b - a >= min_pause:
                pauses.append(((a + b) // 2, j))
        # Every pause anchor before the window's uncertain tail is committed, one piece per
        # anchor near ``target`` frames apart (the window is aligned once for several pieces).
        cuts = []  # (cut frame, first phone of the next piece, end phone of this piece, kind)
        s0 = 0
        while True:
            options = [(abs(mid - s0 - target), mid, j) for mid, j in pauses if s0 + lo <= mid <= hi]
            if not options:
                break
            _, mid, j = min(options)
            cuts.append((mid, j, j + 1, "pause"))
            s0 = mid
        if not cuts:  # no pause: the word boundary nearest the target
            words = []
            for (_, _, _), (right, a, _) in zip(runs[:-1], runs[1:]):
                j = p0 + right
                if lo <= a <= hi and 0 <= right and j in starts and j > p0:
                    words.append((abs(a - target), a, j))
            if words:
                _, a, j = min(words)
            else:  # nothing usable in the window: cut at the target, inside a phone
                a, j = target, max(p0 + 1, p0 + max(0, int(frame_phone[target])))
            cuts.append((a, j, j, "word"))
        previous = 0
        for cut, next_start, end_phone, kind in cuts:
            pieces.append(Piece(len(pieces), t0 + previous, t0 + cut, p0, end_phone, kind,
                                fit_per_frame=float(frame_gap[previous:cut].mean())))
            # Speaking rate from what was committed (frames per phone), smoothed.
            rate = 0.5 * rate + 0.5 * (cut - previous) / max(1, end_phone - p0)
            p0, previous = next_start, cut
        bar.update(round((t0 + previous) * shift) - round(t0 * shift))
        t0 += previous
    bar.update(bar.total - bar.n)
    bar.close()
    for piece in pieces:
        piece.text = piece_text(transcript, piece.phone_start, piece.phone_end, silence)
    return pieces


# --------------------------------------------------------------------------- stitching


def _merge_edge(tier: list[Segment], seg: Segment, silence: str) -> None:
    """Append ``seg``, merging it into the last segment when both are silences that touch."""
    if tier and tier[-1].label == seg.label == silence and seg.start - tier[-1].end < TIME_TOLERANCE:
        last = tier.pop()
        scores = [s for s in (last.score, seg.score) if s is not None]
        weights = [last.duration, seg.duration][:len(scores)]
        score = float(np.average(scores, weights=weights)) if scores else None
        tier.append(Segment(silence, last.start, max(last.end, seg.end), score))
    else:
        tier.append(seg)


def stitch(parts: Sequence[tuple[float, dict[str, list[Segment]]]], silence: str = "sil") -> dict[str, list[Segment]]:
    """One set of tiers from pieces' tiers: ``parts`` is ``(offset seconds, tiers)`` in time
    order; times are shifted by the offset, touching silences merged."""
    out: dict[str, list[Segment]] = {}
    for offset, tiers in parts:
        for name, segments in tiers.items():
            tier = out.setdefault(name, [])
            for s in segments:
                seg = Segment(s.label, s.start + offset, s.end + offset, s.score)
                if tier and seg.start != tier[-1].end and seg.start < tier[-1].end + TIME_TOLERANCE:
                    # A join: the piece's own times plus its offset differ from the previous
                    # piece's end by float rounding (or overlap it); start exactly there.
                    if seg.end <= tier[-1].end + TIME_TOLERANCE:
                        continue
                    seg = Segment(seg.label, tier[-1].end, seg.end, seg.score)
                _merge_edge(tier, seg, silence)
    return out


def write_pieces(path: str | os.PathLike, pieces: Sequence[Piece], frame_shift: float) -> None:
    """``name.pieces.csv``: one row per piece (columns :data:`PIECE_COLUMNS`)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(PIECE_COLUMNS)
        for p in pieces:
            a, b = p.span(frame_shift)
            writer.writerow([p.index, f"{a:.3f}", f"{b:.3f}", p.anchor, p.status,
                             "" if math.isnan(p.fit_per_frame) else f"{p.fit_per_frame:.4f}", p.reason, p.text])


def read_pieces(path: str | os.PathLike) -> list[dict]:
    """Rows of a ``name.pieces.csv`` as dicts (times as floats)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["start_s"], row["end_s"] = float(row["start_s"]), float(row["end_s"])
    return rows


# --------------------------------------------------------------------------- recipes


@dataclass
class LongAlignment:
    """One long recording's alignment.

    Attributes:
        name: its name in the corpus.
        tiers: stitched ``{"phones": ..., "words": ...}`` (segments carry confidences).
        pieces: every :class:`Piece`, with its status.
        duration: seconds.
        frame_shift: seconds per frame of the pieces' grid.
    """

    name: str
    tiers: dict[str, list[Segment]]
    pieces: list[Piece]
    duration: float
    frame_shift: float

    @property
    def unaligned(self) -> list[Piece]:
        return [p for p in self.pieces if p.status != "aligned"]

    def report_lines(self) -> list[str]:
        lines = []
        for p in self.unaligned:
            a, b = p.span(self.frame_shift)
            text = p.text if len(p.text) <= 80 else p.text[:77] + "..."
            lines.append(f"{self.name}: piece {p.index} [{a:.2f} s - {b:.2f} s] not aligned ({p.reason}): '{text}'")
        return lines


@dataclass
class _LongFile:
    name: str
    audio: Path
    transcript_text: str
    features: Features | None = None
    transcript: object = None
    pieces: list[Piece] = field(default_factory=list)


def _prepare(item: _LongFile, phones: bool, config: FeatureConfig, silence: str, dictionary) -> None:
    from hmm_engine.alignment.transcripts import prepare_transcript

    item.transcript = prepare_transcript(phones=item.transcript_text, silence=silence) if phones else \
        prepare_transcript(words=item.transcript_text, silence=silence, dictionary=dictionary)
    item.features = long_features(item.audio, config)


def _speaks(piece: Piece, silence: str = "sil") -> bool:
    """Whether a piece's text holds anything but silence."""
    return any(token != silence for token in piece.text.split())


def _piece_name(item: _LongFile, piece: Piece) -> str:
    return f"{PIECES_FOLDER}/{item.name}/{piece.index:05d}"


def _write_piece_files(folder: Path, item: _LongFile, pieces: Sequence[Piece], suffix: str) -> list[str]:
    """Each pending piece with text as ``folder/<name>/NNNNN.wav`` + transcript; returns their
    corpus names."""
    names = []
    shift = item.features.frame_shift
    with sf.SoundFile(os.fspath(item.audio)) as handle:
        rate = handle.samplerate
        for p in pieces:
            if p.status != "pending" or not _speaks(p):
                continue
            a, b = p.span(shift)
            first, last = round(a * rate), min(handle.frames, round(b * rate))
            handle.seek(first)
            data = handle.read(last - first, dtype="float32", always_2d=True)
            name = _piece_name(item, p)
            target = folder / f"{name}.wav"
            target.parent.mkdir(parents=True, exist_ok=True)
            sf.write(os.fspath(target), data, rate, subtype="FLOAT")
            (folder / f"{name}{suffix}").write_text(p.text + "\n", encoding="utf-8")
            names.append(name)
    return names


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(src.resolve(), dst)
    except OSError:
        shutil.copy(src, dst)


def _subset(names: list[str], seconds: dict[str, float], budget: float,
            phones: dict[str, set] | None = None) -> list[str]:
    """Names spread evenly over the list whose seconds add up to about ``budget``, plus, when
    ``phones`` (name -> its phones) is given, the first name holding each phone the others lack
    (models trained on the subset must know every phone they will be asked to align)."""
    total = sum(seconds[n] for n in names)
    if total <= budget:
        return names
    step = total / budget
    chosen, acc, next_at = [], 0.0, 0.0
    for n in names:
        if acc >= next_at:
            chosen.append(n)
            next_at += step * seconds[n]
        acc += seconds[n]
    if phones:
        known = set().union(*(phones.get(n, set()) for n in chosen))
        extra = set()
        for n in names:
            if n not in extra and n not in chosen and phones.get(n, set()) - known:
                extra.add(n)
                known |= phones[n]
        chosen = [n for n in names if n in extra or n in set(chosen)]
    return chosen


def align_corpus_long(
    corpus_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    phones: bool = False,
    transcript_suffix: str = ".lab",
    formats: Sequence[str] = ("textgrid",),
    models: PhoneModels | None = None,
    long_seconds: float = LONG_SECONDS,
    max_train_minutes: float | None = 20.0,
    bootstrap_minutes: float = 4.0,
    window_seconds: float = 20.0,
    target_seconds: float = 6.0,
    unaligned_mads: float = 6.0,
    min_fit_gap: float = 1.5,
    show_progress: bool = True,
    report: Callable[[str], None] | None = None,
    dictionary=None,
    feature_config: FeatureConfig | None = None,
    bootstrap_options: dict | None = None,
    anchor_options: dict | None = None,
    analysis: bool = True,
    **corpus_options,
):
    """``align`` for a corpus that holds recordings longer than ``long_seconds`` (module
    docstring). Short files are aligned as usual alongside the pieces; every long file gets
    ``OUT_DIR/name.TextGrid`` (and the other ``formats``) stitched from its pieces, and
    ``OUT_DIR/name.pieces.csv``; unaligned pieces are report lines.

    Args:
        corpus_dir, out_dir, phones, transcript_suffix, formats, models, dictionary,
        feature_config, corpus_options: as :func:`~hmm_engine.alignment.recipes.align_corpus`
            (``corpus_options``: its training settings).
        max_train_minutes: train the phone models on at most this many minutes of pieces and
            short files (spread over the corpus), then align everything with them (None: all).
        bootstrap_minutes: minutes of coarse pieces the anchor-finding models train on.
        bootstrap_options: training settings of those models instead of :data:`BOOTSTRAP_OPTIONS`
            (cheap ones: the anchors need pauses and rough phones, not precise boundaries).
        anchor_options: more arguments of :func:`anchor_pieces` (``min_piece_seconds``,
            ``tail_seconds``, ``min_pause_seconds``).
        analysis: keep ``alignment_analysis.csv`` (the pieces' fits are computed either way).
        window_seconds, target_seconds: see :func:`anchor_pieces`.
        unaligned_mads, min_fit_gap: a piece whose transcript fit per frame lies more than
            this many robust deviations (and ``min_fit_gap`` nats) below its file's median is
            reported unaligned.
    Returns:
        ``(report, long_results)``: the :class:`~hmm_engine.alignment.recipes.CorpusReport` of
        the last corpus run (``skipped`` also holding the unaligned pieces) and a
        :class:`LongAlignment` per long file.
    """
    from hmm_engine.alignment.corpus_io import check_formats, find_corpus_files
    from hmm_engine.alignment.recipes import MODEL_FILE, align_corpus
    from hmm_engine.alignment.transcripts import read_dictionary

    formats = check_formats(formats)
    report = report or (lambda line: print(line, file=sys.stderr))
    if dictionary is not None and not isinstance(dictionary, dict):
        dictionary = read_dictionary(dictionary)
    config = models.feature_config if models is not None else (feature_config or FeatureConfig())
    silence = models.silence if models is not None else corpus_options.get("silence", "sil")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files, problems = find_corpus_files(corpus_dir, transcript_suffix)
    longs: list[_LongFile] = []
    shorts = []
    lines: list[str] = []
    for f in files:
        try:
            seconds = audio_seconds(f.audio)
        except HMMStudioError:
            shorts.append(f)  # align_corpus reports it
            continue
        if seconds > long_seconds:
            try:
                text = f.transcript.read_text(encoding="utf-8")
                longs.append(_LongFile(f.name, f.audio, text))
            except (OSError, UnicodeDecodeError) as exc:
                lines.append(f"{f.name}: skipped: cannot read transcript: {exc}")
        else:
            shorts.append(f)
    t0 = time.perf_counter()
    ready: list[_LongFile] = []
    for item in longs:
        try:
            _prepare(item, phones, config, silence, dictionary)
            if models is not None:
                models.check_phones(item.transcript.phones)
        except HMMStudioError as exc:
            lines.append(f"{item.name}: skipped: {exc}")
            continue
        ready.append(item)
    options = dict(phones=phones, transcript_suffix=transcript_suffix, show_progress=show_progress,
                   dictionary=dictionary, **corpus_options)
    if models is None:
        options["feature_config"] = config
    timings: dict[str, float] = {"features": time.perf_counter() - t0}
    with tempfile.TemporaryDirectory(prefix="hmm_long_") as tmp:
        tmp = Path(tmp)
        anchor_models = models
        # ---- bootstrap: models trained on coarse pieces (their text only roughly right)
        if anchor_models is None and ready:
            t = time.perf_counter()
            boot = tmp / "boot"
            secs: dict[str, float] = {}
            for item in ready:
                # Longer than the final pieces: their text is a proportional guess, wrong mostly at the edges.
                item.pieces = coarse_pieces(item.features, item.transcript, max(10.0, 1.5 * target_seconds),
                                            silence=silence)
                for p in item.pieces:
                    if _speaks(p, silence):
                        secs[_piece_name(item, p)] = (p.end_frame - p.start_frame) * item.features.frame_shift
            for f in shorts:
                try:
                    secs[f.name] = audio_seconds(f.audio)
                except HMMStudioError:
                    secs[f.name] = 0.0
            piece_phones = {_piece_name(item, p): set(item.transcript.phones[p.phone_start:p.phone_end])
                            for item in ready for p in item.pieces}
            keep = set(_subset(sorted(secs), secs, bootstrap_minutes * 60.0, piece_phones))
            for f in shorts:
                if f.name in keep and f.transcript.exists():
                    _link(f.audio, boot / f"{f.name}{f.audio.suffix}")
                    _link(f.transcript, boot / f"{f.name}{transcript_suffix}")
            for item in ready:
                chosen = [p for p in item.pieces if _piece_name(item, p) in keep]
                _write_piece_files(boot, item, chosen, transcript_suffix)
            boot_out = tmp / "boot_out"
            boot_options = {**options, **(BOOTSTRAP_OPTIONS if bootstrap_options is None else bootstrap_options)}
            align_corpus(boot, boot_out, formats=("json",), analysis=False, report=lambda line: None, **boot_options)
            anchor_models = PhoneModels.load(boot_out / MODEL_FILE)
            timings["bootstrap"] = time.perf_counter() - t
        # ---- anchors and pieces
        t = time.perf_counter()
        for item in ready:
            x = item.features
            if anchor_models.feature_config != config:
                x = long_features(item.audio, anchor_models.feature_config)
            item.pieces = anchor_pieces(anchor_models, x, item.transcript, window_seconds, target_seconds,
                                        show_progress=show_progress, **(anchor_options or {}))
            # A stretch the transcript does not describe (noise, music, missing text) stays out of
            # training and alignment.
            flag_outliers(item.pieces, unaligned_mads, min_fit_gap, "anchor pass: ")
        timings["anchors"] = time.perf_counter() - t
        # ---- the corpus of pieces and short files
        t = time.perf_counter()
        work = tmp / "pieces"
        work.mkdir()
        secs: dict[str, float] = {}
        names = []
        for f in shorts:
            _link(f.audio, work / f"{f.name}{f.audio.suffix}")
            if f.transcript.exists():
                _link(f.transcript, work / f"{f.name}{transcript_suffix}")
            try:
                secs[f.name] = audio_seconds(f.audio)
            except HMMStudioError:
                secs[f.name] = 0.0
            names.append(f.name)
        for item in ready:
            for n in _write_piece_files(work, item, item.pieces, transcript_suffix):
                p = item.pieces[int(n.rsplit("/", 1)[1])]
                secs[n] = (p.end_frame - p.start_frame) * item.features.frame_shift
                names.append(n)
        run_formats = tuple(dict.fromkeys([*formats, "json"]))
        final_models = models
        train_report = None
        if final_models is None and max_train_minutes is not None and \
                sum(secs.values()) > max_train_minutes * 60.0:
            subset_dir = tmp / "subset"
            piece_phones = {_piece_name(item, p): set(item.transcript.phones[p.phone_start:p.phone_end])
                            for item in ready for p in item.pieces}
            for n in _subset(sorted(names), secs, max_train_minutes * 60.0, piece_phones):
                for path in work.glob(f"{n}.*"):
                    _link(path, subset_dir / path.relative_to(work))
            train_report = align_corpus(subset_dir, tmp / "subset_out", formats=("json",), analysis=False,
                                        report=lambda line: None, **options)
            final_models = PhoneModels.load(tmp / "subset_out" / MODEL_FILE)
            shutil.copy(tmp / "subset_out" / MODEL_FILE, out / MODEL_FILE)
        run_options = dict(options)
        if final_models is not None:
            run_options.pop("feature_config", None)
        corpus_report = align_corpus(work, out, formats=run_formats, analysis=True, models=final_models,
                                     report=lambda line: None, **run_options)
        if train_report is not None:
            corpus_report.history = train_report.history
            corpus_report.num_train_files = train_report.num_train_files
            corpus_report.audio_seconds = train_report.audio_seconds
            corpus_report.timings["training"] = train_report.timings.get("training", 0.0)
            corpus_report.models_path = out / MODEL_FILE
        timings["pieces"] = time.perf_counter() - t
    if not analysis and corpus_report.analysis_path is not None:
        corpus_report.analysis_path.unlink(missing_ok=True)
        corpus_report.analysis_path = None
    # ---- stitch
    fits = {row["name"]: row.get("transcript_fit_per_frame", math.nan) for row in corpus_report.analysis}
    skipped = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in corpus_report.skipped}
    results = []
    for item in ready:
        results.append(_stitch_file(item, out, formats, fits, skipped, unaligned_mads, min_fit_gap, silence))
        lines.extend(results[-1].report_lines())
    pieces_dir = out / PIECES_FOLDER
    if pieces_dir.exists():
        shutil.rmtree(pieces_dir)
    for name in [n for n in corpus_report.aligned if not n.startswith(PIECES_FOLDER)]:
        if "json" not in formats:
            (out / f"{name}.json").unlink(missing_ok=True)
    corpus_report.aligned = [n for n in corpus_report.aligned if not n.startswith(PIECES_FOLDER)] + \
        [r.name for r in results if any(p.status == "aligned" for p in r.pieces)]
    corpus_report.skipped = sorted([line for line in corpus_report.skipped if not line.startswith(PIECES_FOLDER)]
                                   + problems + lines)
    corpus_report.analysis = [row for row in corpus_report.analysis if not row["name"].startswith(PIECES_FOLDER)]
    corpus_report.timings.update({f"long_{k}": v for k, v in timings.items()})
    for line in corpus_report.skipped:
        report(f"report: {line}")
    return corpus_report, results


def _stitch_file(item: _LongFile, out: Path, formats, fits: dict, skipped: dict, mads: float, gap: float,
                 silence: str) -> LongAlignment:
    shift = item.features.frame_shift
    for p in item.pieces:
        name = _piece_name(item, p)
        if p.status == "unaligned":
            continue
        if not _speaks(p, silence):  # nothing to say here: silence
            p.status, p.reason, p.fit_per_frame = "aligned", "no transcript: silence", math.nan
            continue
        if name in skipped or not (out / f"{name}.json").exists():
            p.status, p.reason = "unaligned", skipped.get(name, "no alignment").removeprefix("skipped: ")
            continue
        p.status, p.fit_per_frame = "aligned", float(fits.get(name, math.nan))
    flag_outliers(item.pieces, mads, gap)
    parts = []
    for p in item.pieces:
        if p.status != "aligned":
            continue
        if not _speaks(p, silence):
            tiers = {"phones": [Segment(silence, 0.0, (p.end_frame - p.start_frame) * shift)]}
        else:
            tiers, _ = read_segments_json(out / f"{_piece_name(item, p)}.json")
        parts.append((p.start_frame * shift, tiers))
    tiers = stitch(parts, silence) if parts else {"phones": []}
    result = LongAlignment(item.name, tiers, item.pieces, item.features.duration, shift)
    _write_long(out, result, formats)
    return result


def _write_long(out: Path, result: LongAlignment, formats) -> None:
    base = out / result.name
    base.parent.mkdir(parents=True, exist_ok=True)
    tiers = {k: v for k, v in result.tiers.items() if v}
    if tiers:
        for kind in formats:
            if kind == "textgrid":
                write_textgrid(base.parent / f"{base.name}.TextGrid", tiers, result.duration)
            elif kind == "csv":
                segments_to_csv(tiers, base.parent / f"{base.name}.csv")
            elif kind == "json":
                segments_to_json(tiers, result.duration, base.parent / f"{base.name}.json")
    write_pieces(base.parent / f"{base.name}{PIECES_SUFFIX}", result.pieces, result.frame_shift)


def align_long(
    audio: str | os.PathLike,
    transcript: str,
    *,
    phones: bool = False,
    out_dir: str | os.PathLike | None = None,
    models: PhoneModels | None = None,
    **options,
) -> LongAlignment:
    """Align one recording of any length with its whole transcript (words, or phones with
    ``phones=True``): :func:`align_corpus_long` on a corpus of this one file (trained on its
    own pieces unless ``models`` are given). ``out_dir`` keeps the outputs (TextGrid,
    ``name.pieces.csv``, ``phone_models.pt``); by default a temporary folder is used.

    Raises:
        InvalidInputError: the file could not be aligned at all.
    """
    audio = Path(audio)
    with tempfile.TemporaryDirectory(prefix="hmm_long1_") as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        name = audio.stem
        _link(audio, corpus / f"{name}{audio.suffix.lower()}")
        (corpus / f"{name}.lab").write_text(transcript, encoding="utf-8")
        target = Path(out_dir) if out_dir is not None else Path(tmp) / "out"
        lines: list[str] = []
        options.setdefault("report", lines.append)
        options.setdefault("show_progress", False)
        _, results = align_corpus_long(corpus, target, phones=phones, models=models, long_seconds=0.0, **options)
    if not results:
        raise InvalidInputError(f"'{audio}' could not be aligned: {'; '.join(lines) or 'no result'}")
    return results[0]


def frame_energy(path: str | os.PathLike, frame_shift: float = 0.01, target_sr: int = 16000,
                 block_seconds: float = 60.0) -> np.ndarray:
    """``[T]`` log energy (dB) of each ``frame_shift`` frame of a file of any length, read block by block."""
    hop = round(frame_shift * target_sr)
    out, carry = [], np.zeros(0, dtype=np.float32)
    for block in _mono_blocks(path, target_sr, block_seconds):
        carry = np.concatenate([carry, block.numpy()])
        n = carry.shape[0] // hop
        if n:
            frames = carry[:n * hop].reshape(n, hop).astype(np.float64)
            out.append(10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-10))
            carry = carry[n * hop:]
    if carry.shape[0]:
        out.append(np.array([10 * np.log10(np.mean(carry.astype(np.float64) ** 2) + 1e-10)]))
    return np.concatenate(out) if out else np.zeros(0)


__all__ += ["frame_energy", "BOOTSTRAP_OPTIONS"]
