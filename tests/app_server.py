"""Start ``python app.py`` on a free loopback port for the API and browser tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "assets" / "sample_synth.wav"
FALLBACK = ROOT / "tests" / "data" / "synth" / "festival_0001.wav"
SAMPLE = BUNDLED if BUNDLED.exists() else FALLBACK


def sample_phone_models(folder: Path) -> Path:
    """``phone_models.pt`` trained (``train_labelled``, one Gaussian a state) on the sample's
    own reference boundaries, in ``folder``: models that align the sample without training."""
    from hmm_engine.alignment.recipes import train_labelled

    labelled = folder / "labelled"
    labelled.mkdir()
    shutil.copy(SAMPLE, labelled / SAMPLE.name)
    shutil.copy(SAMPLE.with_suffix(".TextGrid"), labelled / SAMPLE.with_suffix(".TextGrid").name)
    return train_labelled(labelled, folder / "models", num_mixtures=1, show_progress=False,
                          report=lambda line: None).models_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(log_dir: Path, *extra_args: str, address_from_env: bool = False, **env_overrides: str):
    """Yield the URL of a freshly started app; stop it afterwards. Fails the test with the
    app's log if it exits or does not answer within 120 s. ``address_from_env``: give the
    address as a hosting platform does (GRADIO_SERVER_NAME/PORT), not as flags."""
    port = free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HMM_STUDIO_SAMPLE=str(SAMPLE), **env_overrides)
    for name in ("HMM_STUDIO_HOST", "HMM_STUDIO_PORT", "GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT"):
        env.pop(name, None)
    if address_from_env:
        address: list[str] = []
        env.update(GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port))
    else:
        address = ["--host", "127.0.0.1", "--port", str(port)]
    log = log_dir / "app.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "app.py", *address, *extra_args],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"app exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail(f"app did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
