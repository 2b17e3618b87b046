"""Where the dashboard listens: flags, then HMM_STUDIO_HOST/PORT, then Gradio's own
GRADIO_SERVER_NAME/PORT (set by Hugging Face Spaces and container recipes), then 127.0.0.1:7860."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # app.py sits at the repository root
import app  # noqa: E402

VARIABLES = ("HMM_STUDIO_HOST", "HMM_STUDIO_PORT", "GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT")


@pytest.fixture
def environ(monkeypatch):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_default_is_loopback_7860(environ):
    args = app.parse_args([])
    assert (args.host, args.port) == ("127.0.0.1", 7860)


def test_gradio_variables_are_honoured(environ):
    environ.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    environ.setenv("GRADIO_SERVER_PORT", "8123")
    args = app.parse_args([])
    assert (args.host, args.port) == ("0.0.0.0", 8123)


def test_our_variables_beat_gradio_ones_and_flags_beat_both(environ):
    environ.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    environ.setenv("GRADIO_SERVER_PORT", "8123")
    environ.setenv("HMM_STUDIO_HOST", "127.0.0.2")
    environ.setenv("HMM_STUDIO_PORT", "9001")
    args = app.parse_args([])
    assert (args.host, args.port) == ("127.0.0.2", 9001)
    args = app.parse_args(["--host", "127.0.0.1", "--port", "9100"])
    assert (args.host, args.port) == ("127.0.0.1", 9100)


@pytest.mark.parametrize("value", ["http", "0", "70000"])
def test_a_bad_port_is_a_clear_error(environ, capsys, value):
    environ.setenv("GRADIO_SERVER_PORT", value)
    with pytest.raises(SystemExit) as exc:
        app.parse_args([])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert ("GRADIO_SERVER_PORT='http'" in err) if value == "http" else ("outside 1..65535" in err)


@pytest.mark.slow
def test_the_app_serves_on_the_address_gradio_variables_give(tmp_path):
    """Started as a Space starts it: no flags, only GRADIO_SERVER_NAME/PORT."""
    import urllib.request

    from app_server import running_app

    with running_app(tmp_path, "--no-precomputed", address_from_env=True) as url:
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
