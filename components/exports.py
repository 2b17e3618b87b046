"""Files a request leaves for download (TextGrid, CSV, JSON, model, summary), each request
in its own folder under :data:`OUTPUT_DIR` (folders older than :data:`OUTPUT_MAX_AGE_S` are
removed), and segment playback."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import hmm_engine
from components.results import AnalysisResult
from components.validation import DashboardError

OUTPUT_DIR = Path(tempfile.gettempdir()) / "hmm_studio_outputs"
OUTPUT_MAX_AGE_S = 2 * 3600


def _output_dir(tag: str) -> Path:
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in OUTPUT_DIR.iterdir():  # cheap cleanup of old request folders
        try:
            if now - old.stat().st_mtime > OUTPUT_MAX_AGE_S:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    d = Path(tempfile.mkdtemp(prefix=f"{tag}-", dir=OUTPUT_DIR))
    return d


def write_exports(result: AnalysisResult, model: Any = None) -> dict:
    """TextGrid of the state segmentation, per-frame CSV/JSON (path + posteriors), model file."""
    from hmm_engine.alignment.exports import frames_to_csv, frames_to_json
    from hmm_engine.alignment.textgrids import write_textgrid

    d = _output_dir(result.training_key[:10] or "analysis")
    names = [f"s{k}" for k in range(result.num_states)]
    files = {}
    segs = result.segments()  # the same segments summary.json lists
    files["textgrid"] = str(d / "states.TextGrid")
    write_textgrid(files["textgrid"], {"states": segs}, result.duration)
    post = np.round(result.posteriors.astype(np.float64), 6)  # 6 decimals: half the file size
    files["csv"] = str(d / "frames.csv")
    frames_to_csv(result.path, post, result.frame_shift, names, path=files["csv"])
    files["json"] = str(d / "frames.json")
    frames_to_json(result.path, post, result.frame_shift, names, path=files["json"])
    if model is not None:
        hmm_engine.save(model, d / "model.pt")
        files["model"] = str(d / "model.pt")
    files["summary"] = str(d / "summary.json")
    Path(files["summary"]).write_text(json.dumps(result.summary(), indent=1))
    return files


def segment_audio(samples: np.ndarray, sample_rate: int, start: float, end: float) -> tuple[int, np.ndarray]:
    """The ``[start, end)`` slice of a clip as a Gradio ``(sr, int16 array)`` value."""
    a = max(0, int(round(start * sample_rate)))
    b = min(samples.shape[0], int(round(end * sample_rate)))
    if b <= a:
        raise DashboardError(f"segment {start:.3f}-{end:.3f} s is empty")
    pcm = np.clip(samples[a:b], -1.0, 1.0)
    return sample_rate, (pcm * 32767).astype(np.int16)
