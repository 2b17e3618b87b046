"""HMM Studio dashboard: ``python app.py`` serves it on http://127.0.0.1:7860.

Flags: ``--host``, ``--port``, ``--share``. Without flags the address comes from
``HMM_STUDIO_HOST`` / ``HMM_STUDIO_PORT``, then Gradio's own ``GRADIO_SERVER_NAME`` /
``GRADIO_SERVER_PORT`` (what Hugging Face Spaces and container set-ups export), then
127.0.0.1:7860 (see docs/deploy.md).
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


# Where the address comes from when no flag gives it, first match wins: ours, then Gradio's.
HOST_VARIABLES = ("HMM_STUDIO_HOST", "GRADIO_SERVER_NAME")
PORT_VARIABLES = ("HMM_STUDIO_PORT", "GRADIO_SERVER_PORT")


def _from_environment(names: tuple[str, ...], default: str) -> tuple[str, str | None]:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value, name
    return default, None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="HMM Studio dashboard",
        epilog=f"Without --host/--port: {' or '.join(HOST_VARIABLES)} / {' or '.join(PORT_VARIABLES)}, "
               "else 127.0.0.1:7860.")
    host, _ = _from_environment(HOST_VARIABLES, "127.0.0.1")
    port, port_variable = _from_environment(PORT_VARIABLES, "7860")
    p.add_argument("--host", default=host, help=f"address to bind (default here: {host})")
    p.add_argument("--port", type=int, default=None, help=f"port (default here: {port})")
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    p.add_argument("--no-precomputed", action="store_true", help="open without the sample's results")
    args = p.parse_args(argv)
    if args.port is None:
        try:
            args.port = int(port)
        except ValueError:
            p.error(f"{port_variable}={port!r} is not a port number: set it to an integer such as 7860")
    if not 0 < args.port < 65536:
        p.error(f"port {args.port} is outside 1..65535")
    return args


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
