"""HMM Studio dashboard: ``python app.py`` serves it on http://127.0.0.1:7860.

Flags: ``--host``, ``--port``, ``--share`` (env ``HMM_STUDIO_HOST`` / ``HMM_STUDIO_PORT``).
The bundled sample opens with its results already computed (``assets/precomputed/``,
recomputed at start-up when missing or stale) and aligned (half a second at start-up).
Logic lives in ``components/``.
"""

from __future__ import annotations

import argparse
import logging
import os

import gradio as gr
import torch

from components import precomputed
from components.pipeline import MAX_AUDIO_SECONDS, SAMPLE_AUDIO
from components.ui import CSS, build_demo, sample_alignment

CONCURRENCY = int(os.environ.get("HMM_STUDIO_CONCURRENCY", "2"))
QUEUE_SIZE = int(os.environ.get("HMM_STUDIO_QUEUE_SIZE", "64"))
MAX_FILE_SIZE = os.environ.get("HMM_STUDIO_MAX_FILE_SIZE", "25mb")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="HMM Studio dashboard")
    p.add_argument("--host", default=os.environ.get("HMM_STUDIO_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("HMM_STUDIO_PORT", "7860")))
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    p.add_argument("--no-precomputed", action="store_true", help="open without the sample's results")
    return p.parse_args(argv)


def create_demo(with_sample: bool = True) -> gr.Blocks:
    initial = precomputed.load_or_compute() if with_sample else None
    settings = precomputed.sample_settings()
    audio = str(SAMPLE_AUDIO) if SAMPLE_AUDIO.exists() else None
    alignment = sample_alignment() if with_sample else None
    demo = build_demo(initial=initial, initial_audio=audio, initial_settings=settings, initial_alignment=alignment)
    return demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Small per-frame ops on few cores: one intra-op thread per request, requests in parallel.
    torch.set_num_threads(int(os.environ.get("HMM_STUDIO_TORCH_THREADS", "1")))
    demo = create_demo(with_sample=not args.no_precomputed)
    logging.getLogger("hmm_studio").info("audio cap %.0f s, upload cap %s, %d concurrent jobs",
                                         MAX_AUDIO_SECONDS, MAX_FILE_SIZE, CONCURRENCY)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_FILE_SIZE,
                show_error=True, theme=gr.themes.Soft(), css=CSS, footer_links=["api"])


if __name__ == "__main__":
    main()
