"""One run as one self-contained HTML file: a summary plus every figure, interactive, with
plotly.js inlined so the file opens offline (about 4.7 MB, almost all of it plotly.js)."""

from __future__ import annotations

import html
import tempfile
import time
from pathlib import Path

import plotly.io as pio
from plotly.offline import get_plotlyjs

from components import figures as F
from components.history import Run
from components.render import ANALYSIS_FIGURES, render_analysis

REPORT_DIR = Path(tempfile.gettempdir()) / "hmm_studio_outputs" / "reports"
REPORT_MAX_AGE_S = 2 * 3600

_CSS = """
body {font-family: Inter, Helvetica, Arial, sans-serif; margin: 1.5rem auto; max-width: 1200px; padding: 0 1rem;
      color: #1f2937;}
table {border-collapse: collapse; margin: .5rem 0 1rem;}
td, th {border: 1px solid #d1d5db; padding: .25rem .6rem; text-align: left; font-size: .9rem;}
th {background: #f3f4f6;}
.warn {color: #b91c1c; font-weight: 600;}
.fig {margin: 1rem 0;}
"""  # light only: the figures' text is dark on transparent backgrounds


def _table(rows: list[tuple[str, object]]) -> str:
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if v is None:
        return "—"
    return str(v)


def report_html(run: Run) -> str:
    """The report's HTML text (no external resources)."""
    r = run.result
    m = run.metrics
    figs = render_analysis(r)
    parts = []
    for name in ANALYSIS_FIGURES:
        parts.append('<div class="fig">' + pio.to_html(figs[name], full_html=False, include_plotlyjs=False,
                                                      div_id=f"fig-{name}", config={"responsive": True})
                     + "</div>")
    notes = []
    if m["converged"] is False:
        notes.append(f'<p class="warn">EM stopped at the iteration limit ({r.settings.get("max_iter")}) '
                     "without converging: raise the limit for a trained model.</p>")
    crit = F.criteria_note(r.sweep) if r.sweep else ""
    if crit:
        notes.append(f"<p>{html.escape(crit)}</p>")
    metrics = [("clip", run.audio_name), ("audio sha1", r.audio_hash), ("duration (s)", r.duration),
               ("frames", r.num_frames), ("states K", m["num_states"]), ("mixtures M", m["num_mixtures"]),
               ("log-likelihood per frame", m["log_likelihood_per_frame"]), ("BIC", m["bic"]), ("AIC", m["aic"]),
               ("EM iterations", m["iterations"]), ("converged", m["converged"]), ("segments", m["num_segments"]),
               ("seconds", m["seconds"]), ("device", r.device)]
    title = f"HMM Studio run #{run.id}: {run.audio_name}, {r.settings.get('model_type')} K={m['num_states']}"
    made = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(run.when))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style>"
        f"<script type=\"text/javascript\">{get_plotlyjs()}</script></head><body>"
        f"<h1>{html.escape(title)}</h1><p>Run at {made}. Figures are interactive: zoom, pan, hover.</p>"
        + "".join(notes)
        + "<h2>Metrics</h2>" + _table(metrics)
        + "<h2>Settings</h2>" + _table(sorted(r.settings.items()))
        + "<h2>Figures</h2>" + "".join(parts)
        + "</body></html>"
    )


def export_report(run: Run, folder: Path | None = None) -> Path:
    """Write the report of ``run`` and return its path (old reports in the folder are removed)."""
    folder = Path(folder or REPORT_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in folder.glob("*.html"):
        try:
            if now - old.stat().st_mtime > REPORT_MAX_AGE_S:
                old.unlink()
        except OSError:
            pass
    stem = Path(run.audio_name).stem or "clip"
    path = folder / f"hmm_studio_run{run.id}_{stem}_K{run.metrics['num_states']}_{int(now * 1000) % 10**9}.html"
    path.write_text(report_html(run), encoding="utf-8")
    return path
