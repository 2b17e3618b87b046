"""Run history of one browser session: every Analyze run with its settings, metrics and the
data behind its figures, a table of runs, and a side-by-side comparison of two of them.

The list lives in a ``gr.State`` (one per browser session, so another session never sees it)
and is replaced, never mutated, on each run. No Gradio here: the UI wires these functions.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from components import figures as F
from components.results import AnalysisResult, _jsonable

# Each run keeps its AnalysisResult (posteriors [T, K], path, matrices; the spectrogram is
# shared between runs on the same clip), so a session's history is capped: the oldest run
# is dropped past this many.
MAX_RUNS = 12

_IDS = itertools.count(1)

# the metrics the table, the comparison and the /history API report for each run
METRIC_KEYS = ("num_states", "num_mixtures", "log_likelihood_per_frame", "bic", "aic", "iterations",
               "converged", "seconds")


@dataclass(frozen=True)
class Run:
    id: int
    when: float                 # unix time the run finished
    audio_name: str
    settings: dict
    metrics: dict
    result: AnalysisResult

    @property
    def label(self) -> str:
        s = self.settings
        return (f"#{self.id} {self.audio_name}: {s.get('model_type')} K={self.metrics['num_states']}"
                + (f" M={s.get('num_mixtures')}" if s.get("model_type") == "gmm" else ""))

    def as_dict(self) -> dict:
        """What the ``/history`` API returns for this run."""
        return _jsonable({"id": self.id, "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.when)),
                          "audio": self.audio_name, "audio_sha1": self.result.audio_hash,
                          "settings": self.settings, **self.metrics})


def run_metrics(r: AnalysisResult) -> dict:
    s = r.settings
    conv = F.em_converged(r.history, s.get("tol"), r.num_frames, s.get("max_iter"))
    return {
        "num_states": r.num_states,
        "num_mixtures": int(s.get("num_mixtures", 1)) if s.get("model_type") == "gmm" else 1,
        "log_likelihood_per_frame": float(r.log_likelihood) / max(1, r.num_frames),
        "bic": float(r.bic),
        "aic": float(r.aic),
        "iterations": len(r.history),
        "converged": conv,
        "seconds": float(sum(r.timings.values())),
        "num_segments": len(r.segments()),
        "num_frames": r.num_frames,
    }


def _audio_name(audio: Any) -> str:
    if isinstance(audio, (str, Path)):
        return Path(audio).name
    if isinstance(audio, dict) and audio.get("path"):
        return Path(str(audio["path"])).name
    return "recording"


def add_run(runs: Sequence[Run] | None, result: AnalysisResult, audio: Any = None,
            max_runs: int = MAX_RUNS) -> list[Run]:
    """A new list: ``runs`` plus this result (newest last), at most ``max_runs`` long."""
    runs = list(runs or [])
    # share the display spectrogram with an earlier run on the same clip (memory, not a copy)
    for old in reversed(runs):
        o = old.result
        if (o.audio_hash == result.audio_hash and o.spectrogram_db.shape == result.spectrogram_db.shape
                and np.allclose(o.spectrogram_db, result.spectrogram_db, atol=0.1)):  # display dB (float16 on disk)
            result = dataclasses.replace(result, spectrogram_db=o.spectrogram_db, freqs=o.freqs)
            break
    run = Run(next(_IDS), time.time(), _audio_name(audio), dict(result.settings), run_metrics(result), result)
    return (runs + [run])[-max_runs:]


def history_json(runs: Sequence[Run] | None) -> list[dict]:
    """The session's runs, newest last, each with ``settings`` and its metrics."""
    return [r.as_dict() for r in runs or []]


TABLE_HEADERS = ["run", "clip", "model", "K", "M", "log L / frame", "BIC", "AIC", "iterations", "converged",
                 "seconds"]


def table_rows(runs: Sequence[Run] | None) -> list[list]:
    rows = []
    for r in runs or []:
        m = r.metrics
        rows.append([r.id, r.audio_name, r.settings.get("model_type"), m["num_states"], m["num_mixtures"],
                     round(m["log_likelihood_per_frame"], 3), round(m["bic"], 1), round(m["aic"], 1),
                     m["iterations"], {True: "yes", False: "NO", None: "?"}[m["converged"]],
                     round(m["seconds"], 2)])
    return rows


def choices(runs: Sequence[Run] | None) -> list[tuple[str, int]]:
    return [(r.label, r.id) for r in reversed(list(runs or []))]


def find(runs: Sequence[Run] | None, run_id: Any) -> Run | None:
    try:
        wanted = int(run_id)
    except (TypeError, ValueError):
        return None
    return next((r for r in runs or [] if r.id == wanted), None)


def settings_diff(a: Run, b: Run) -> list[tuple[str, Any, Any]]:
    keys = sorted(set(a.settings) | set(b.settings))
    return [(k, a.settings.get(k), b.settings.get(k)) for k in keys if a.settings.get(k) != b.settings.get(k)]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "—" if v in (None, "") else str(v)


def what_changed(a: Run, b: Run) -> str:
    """Markdown: the settings that differ and what each metric did, in plain words."""
    lines = [f"### Run #{a.id} → run #{b.id}"]
    diff = settings_diff(a, b)
    if a.result.audio_hash != b.result.audio_hash:
        lines.append(f"**Different clips** ({a.audio_name} vs {b.audio_name}): likelihoods and BIC/AIC are not "
                     "comparable across clips.")
    if diff:
        lines.append("**Settings changed:** " + "; ".join(f"`{k}` {_fmt(x)} → {_fmt(y)}" for k, x, y in diff))
    else:
        lines.append("**Same settings** (a re-run: results differ only if the clip differs).")
    ma, mb = a.metrics, b.metrics
    rows = ["| metric | #%d | #%d | change |" % (a.id, b.id), "|---|---|---|---|"]
    for key, name in (("num_states", "states K"), ("num_segments", "segments"),
                      ("log_likelihood_per_frame", "log L / frame"), ("bic", "BIC"), ("aic", "AIC"),
                      ("iterations", "EM iterations"), ("converged", "converged"), ("seconds", "seconds")):
        x, y = ma.get(key), mb.get(key)
        change = ""
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
            change = f"{y - x:+.4g}"
        rows.append(f"| {name} | {_fmt(x)} | {_fmt(y)} | {change} |")
    lines.append("\n".join(rows))
    comparable = a.result.audio_hash == b.result.audio_hash and not any(
        k in ("feature_kind", "num_mels", "num_ceps", "deltas") for k, _, _ in diff)
    if comparable:
        better_bic = a if ma["bic"] < mb["bic"] else b
        better_aic = a if ma["aic"] < mb["aic"] else b
        verdict = f"Lower is better: BIC prefers run #{better_bic.id}, AIC prefers run #{better_aic.id}."
        if better_bic is not better_aic:
            verdict += (" They disagree: BIC charges more per parameter, so it sides with the smaller model; "
                        "trust BIC for how many distinct sound classes there are, AIC for predicting new frames.")
        lines.append(verdict)
    elif a.result.audio_hash == b.result.audio_hash:
        lines.append("The features differ, so the likelihoods (and BIC/AIC) measure different data: "
                     "compare the segmentations, not the numbers.")
    for run in (a, b):
        if run.metrics["converged"] is False:
            lines.append(f"Run #{run.id} stopped at the EM iteration limit without converging.")
    return "\n\n".join(lines)


def compare(runs: Sequence[Run] | None, id_a: Any, id_b: Any) -> dict:
    """Figures and words comparing two runs of this session: ``timeline`` (both segmentations
    over the same spectrogram), ``transitions`` (side by side), ``durations`` (segment
    lengths) and ``changes`` (markdown)."""
    a, b = find(runs, id_a), find(runs, id_b)
    if a is None or b is None:
        have = ", ".join(f"#{r.id}" for r in runs or []) or "none yet: press Analyze first"
        raise ValueError(f"pick two runs of this session to compare (runs: {have})")
    na, nb = f"#{a.id} K={a.metrics['num_states']}", f"#{b.id} K={b.metrics['num_states']}"
    return {
        "timeline": F.comparison_timeline([(na, a.result), (nb, b.result)], title=f"Run {na} vs {nb}"),
        "transitions": F.transition_pair([(na, a.result.transmat), (nb, b.result.transmat)]),
        "durations": F.duration_comparison([(na, a.result.path, a.result.frame_shift),
                                            (nb, b.result.path, b.result.frame_shift)]),
        "changes": what_changed(a, b),
    }
