"""Cost bounds of hmm_engine.limits, checked before the expensive step, through the library.

Memory bounds are asserted loosely in a fresh subprocess (its RSS growth), never timings.
"""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import hmm_engine as he
from hmm_engine import limits
from hmm_engine.alignment import transcripts as T
from hmm_engine.alignment.textgrids import read_textgrid, write_textgrid
from hmm_engine.errors import AudioError, InvalidInputError, ModelFileError, TextGridError, TranscriptError
from hmm_engine.frontend.audio import load_audio, resample
from hmm_engine.segments import Segment

ROOT = Path(__file__).resolve().parents[1]


def _rss_growth_mb(code: str) -> float:
    """Peak RSS growth (MB) of ``code`` run in a fresh interpreter after its imports."""
    body = textwrap.indent(textwrap.dedent(code).strip(), "    ")
    script = "\n".join([
        "import resource, sys",
        f"sys.path.insert(0, {str(ROOT)!r})",
        "import numpy, torch, soundfile, hmm_engine, hmm_engine.frontend.audio, hmm_engine.alignment.phone_models",
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss",
        "try:",
        body,
        "except Exception as exc:",
        "    print('ERROR', type(exc).__name__, exc)",
        "print('GROWTH', (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)",
    ])
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("GROWTH")][-1]
    return float(line.split()[1]), out.stdout


# ------------------------------------------------------------------------------------- audio


def _tone(rate: int, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.mark.parametrize("rate", [16001, 8001, 44100, 96001])
def test_odd_rates_resample_exactly(rate):
    """A tone comes out at 16 kHz as the same tone, whatever the source rate."""
    buf = io.BytesIO()
    sf.write(buf, _tone(rate), rate, format="WAV", subtype="FLOAT")
    audio = load_audio(buf.getvalue(), target_sr=16000)
    assert audio.num_samples == math.ceil(2.0 * rate * 16000 / rate)
    ref = 0.3 * np.sin(2 * np.pi * 440 * np.arange(audio.num_samples) / 16000)
    np.testing.assert_allclose(audio.samples.numpy()[200:-200], ref[200:-200], atol=2e-3)


def test_usual_rates_keep_torchaudio_results():
    """44.1 kHz (small filter bank) still goes through torchaudio: identical samples."""
    import torchaudio.functional as AF

    x = torch.from_numpy(_tone(44100))
    assert limits.resample_kernel_taps(44100, 16000) <= limits.MAX_RESAMPLE_KERNEL
    assert torch.equal(resample(x, 44100, 16000), AF.resample(x, 44100, 16000).float())
    assert limits.resample_kernel_taps(16001, 16000) > 50 * limits.MAX_RESAMPLE_KERNEL


def test_16001_hz_clip_does_not_grow_memory(tmp_path):
    """Was +4.1 GB (a [16000, 16001] kernel); the bound is loose: under 150 MB."""
    path = tmp_path / "odd.wav"
    sf.write(path, _tone(16001), 16001, subtype="PCM_16")
    growth, out = _rss_growth_mb(f"""
        a = hmm_engine.frontend.audio.load_audio({str(path)!r}, target_sr=16000)
        print("N", a.num_samples)
    """)
    assert "N 32000" in out, out
    assert growth < 150, f"loading a 16001 Hz clip grew the process by {growth:.0f} MB"


def test_sample_rate_bound():
    with pytest.raises(AudioError, match="above the limit"):
        load_audio((limits.MAX_SAMPLE_RATE + 1, np.ones(limits.MAX_SAMPLE_RATE + 1, dtype=np.float32) * 0.1))


# -------------------------------------------------------------------------------- model files


def _small_saved_model(tmp_path) -> Path:
    model = he.GaussianHMM(2, 3)
    model.fit(torch.randn(40, 3), max_iter=2)
    return he.save(model, tmp_path / "small.pt")


def _rewrite(path: Path, out: Path, edit) -> Path:
    payload = torch.load(path, weights_only=True)
    edit(payload)
    torch.save(payload, out)
    return out


def test_model_file_asking_for_huge_sizes_is_refused_before_allocating(tmp_path):
    """A 2 KB file whose configuration asks for 20000 states (K^2 = 4e8 numbers)."""
    small = _small_saved_model(tmp_path)

    def huge(payload):
        config = json.loads(payload["config"])
        config["emission"]["num_states"] = 20000
        payload["config"] = json.dumps(config)

    bad = _rewrite(small, tmp_path / "huge.pt", huge)
    assert bad.stat().st_size < 4096
    with pytest.raises(ModelFileError, match="configuration asks for"):
        he.load(bad)
    growth, out = _rss_growth_mb(f"hmm_engine.load({str(bad)!r})")
    assert "ModelFileError" in out and growth < 50, out


def test_phone_model_file_asking_for_huge_mixtures_is_refused(tmp_path):
    from hmm_engine.alignment.phone_models import PhoneModels

    models = PhoneModels(["sil", "a", "b"], states_per_phone=1, obs_dim=3, num_mixtures=1)
    models.save(tmp_path / "pm.pt")

    def huge(payload):
        payload["config"]["num_mixtures"] = 200_000
        payload["config"]["obs_dim"] = 200

    bad = _rewrite(tmp_path / "pm.pt", tmp_path / "huge_pm.pt", huge)
    with pytest.raises(ModelFileError, match="parameters"):
        PhoneModels.load(bad)
    growth, out = _rss_growth_mb(
        f"hmm_engine.alignment.phone_models.PhoneModels.load({str(bad)!r})")
    assert "ModelFileError" in out and growth < 50, out


def test_malformed_model_files_say_what_is_wrong(tmp_path):
    from hmm_engine.alignment.phone_models import PhoneModels

    small = _small_saved_model(tmp_path)
    no_config = _rewrite(small, tmp_path / "noconfig.pt", lambda p: p.pop("config"))
    with pytest.raises(ModelFileError, match="no 'config' entry"):
        he.load(no_config)
    models = PhoneModels(["sil", "a"], states_per_phone=1, obs_dim=2, num_mixtures=1)
    models.save(tmp_path / "pm.pt")
    pm_no_config = _rewrite(tmp_path / "pm.pt", tmp_path / "pm_noconfig.pt", lambda p: p.pop("config"))
    with pytest.raises(ModelFileError, match="no 'config' entry"):
        PhoneModels.load(pm_no_config)
    bad_type = _rewrite(small, tmp_path / "badtype.pt", lambda p: p.update(state=[1, 2]))
    with pytest.raises(ModelFileError, match="'state' entry is a list"):
        he.load(bad_type)


def test_deflate_bomb_is_refused_from_the_zip_directory(tmp_path):
    """A deflated member expanding ~1000:1 (torch.save never deflates) is refused unopened."""
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        z.writestr("archive/data/0", bytes(64 * 2**20))
    assert bomb.stat().st_size < 200_000
    with pytest.raises(ModelFileError, match="expands"):
        he.load(bomb)
    old = limits.MAX_MODEL_UNPACKED_BYTES
    limits.MAX_MODEL_UNPACKED_BYTES = 2**20
    try:
        with pytest.raises(ModelFileError, match="would unpack to"):
            he.load(bomb)
    finally:
        limits.MAX_MODEL_UNPACKED_BYTES = old


def test_valid_model_files_still_load(tmp_path):
    model = he.MixtureGaussianHMM(3, 2, 2, covariance_type="full")
    model.fit(torch.randn(60, 2), max_iter=2)
    back = he.load(he.save(model, tmp_path / "m.pt"))
    torch.testing.assert_close(back.transmat, model.transmat)


# ------------------------------------------------------------------ transcripts and dictionaries


def test_long_transcript_refused_before_espeak_runs(monkeypatch):
    calls = []
    monkeypatch.setattr(T.subprocess, "run", lambda *a, **k: calls.append(a) or None)
    text = " ".join(f"w{i}" for i in range(10_000))
    with pytest.raises(TranscriptError, match="HMM_STUDIO_MAX_(TRANSCRIPT_TOKENS|TRANSCRIPT_CHARS)"):
        T.text_to_phones(text)
    with pytest.raises(TranscriptError, match="HMM_STUDIO_MAX_TRANSCRIPT"):
        T.dictionary_to_words(text, {"w1": (("a",),)})
    assert calls == []


def test_transcript_that_the_audio_cannot_hold():
    limits.check_fits_audio(20, 2.0, "words")
    with pytest.raises(TranscriptError, match="cannot be spoken in 2.00 s"):
        limits.check_fits_audio(500, 2.0, "words")
    with pytest.raises(TranscriptError, match="phones cannot be spoken"):
        limits.check_fits_audio(200, 2.0, "phones")


@pytest.mark.parametrize("label", ["a\x00b", "x\x1b[31m", "p\x7f"])
def test_control_characters_refused_in_phone_labels(label):
    with pytest.raises(TranscriptError, match="control character"):
        T.parse_phones(f"sil {label} sil")
    with pytest.raises(TranscriptError, match="control character"):
        T.build_phone_sequence(["a", label])


def test_dictionary_bounds(tmp_path):
    many = tmp_path / "variants.dict"
    many.write_text("\n".join(f"READ({i}) R EH{i % 3} D{i}" for i in range(limits.MAX_PRONUNCIATIONS + 5)))
    with pytest.raises(TranscriptError, match="more than .* pronunciations of 'read'"):
        T.read_dictionary(many)
    nul = tmp_path / "nul.dict"
    nul.write_text("HELLO HH AH0 L\x00 OW1\n")
    with pytest.raises(TranscriptError, match="line 1: .*control character"):
        T.read_dictionary(nul)
    old = limits.MAX_DICTIONARY_BYTES
    limits.MAX_DICTIONARY_BYTES = 10
    try:
        with pytest.raises(TranscriptError, match="HMM_STUDIO_MAX_DICTIONARY_BYTES"):
            T.read_dictionary(nul)
    finally:
        limits.MAX_DICTIONARY_BYTES = old
    ok = tmp_path / "ok.dict"
    ok.write_text("READ R IY1 D\nREAD(2) R EH1 D\n")
    assert T.read_dictionary(ok) == {"read": (("R", "IY1", "D"), ("R", "EH1", "D"))}


# ---------------------------------------------------------------------------------- TextGrids


def test_textgrid_with_too_many_intervals_refused_before_parsing(tmp_path):
    n = limits.MAX_TEXTGRID_INTERVALS + 10
    segs = [Segment("a", i * 0.01, (i + 1) * 0.01) for i in range(n)]
    path = tmp_path / "big.TextGrid"
    write_textgrid(path, {"phones": segs}, n * 0.01)
    with pytest.raises(TextGridError, match="HMM_STUDIO_MAX_TEXTGRID_INTERVALS"):
        read_textgrid(path)


def test_nested_json_textgrid_is_a_clear_error(tmp_path):
    path = tmp_path / "nested.TextGrid"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(TextGridError, match="nested deeper"):
        read_textgrid(path)


def test_reference_must_cover_the_clip():
    segs = [Segment("a", 0.0, 1.0), Segment("b", 1.0, 2.9)]
    limits.check_reference_covers(segs, 3.0)
    with pytest.raises(TextGridError, match="ends at 2.90 s but the clip is 1.00 s"):
        limits.check_reference_covers(segs, 1.0)
    with pytest.raises(TextGridError, match="covers 0.00-2.90 s of this 9.00 s clip"):
        limits.check_reference_covers(segs, 9.0)


# ------------------------------------------------------------------------------------ library


@pytest.mark.parametrize("tol", [float("nan"), -1.0, float("inf"), "abc"])
def test_fit_refuses_bad_tol(tol):
    with pytest.raises(InvalidInputError, match="tol must be"):
        he.GaussianHMM(2, 2).fit(torch.randn(30, 2), tol=tol)


def test_wrong_obs_dim_and_integer_tensors_are_clear_errors():
    model = he.GaussianHMM(2, 3)
    with pytest.raises(InvalidInputError, match="dimension 4, the model expects 3"):
        model.fit(torch.randn(30, 4))
    with pytest.raises(InvalidInputError, match="int64.*floating-point"):
        model.fit(torch.randint(0, 5, (30, 3)))
    with pytest.raises(InvalidInputError, match="floating-point"):
        model.forward_backward(torch.randint(0, 5, (30, 3)))


def test_compute_estimate_orders_and_limit():
    small = limits.analysis_units(6000, 8, 22, 39)
    huge = limits.analysis_units(6000, 64, 202, 39, "full", 8)
    assert small < 1e10 < limits.MAX_COMPUTE_UNITS < huge
    assert limits.analysis_units(100, 8, 10, 13, max_duration=30) > limits.analysis_units(100, 8, 10, 13)
    with pytest.raises(InvalidInputError, match="lower EM iterations"):
        limits.check_compute(huge, "EM iterations (200)")


def test_every_bound_has_a_variable_and_is_documented():
    doc = (ROOT / "docs" / "limits.md").read_text()
    for bound in limits.BOUNDS.values():
        assert bound.env.startswith("HMM_STUDIO_") and getattr(limits, bound.name) > 0
        assert bound.env in doc, f"{bound.env} is not in docs/limits.md"


def test_bounds_are_set_by_environment_variables():
    code = "import hmm_engine.limits as L; print(L.MAX_TRANSCRIPT_TOKENS, L.MAX_COMPUTE_UNITS)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={"HMM_STUDIO_MAX_TRANSCRIPT_TOKENS": "7", "HMM_STUDIO_MAX_COMPUTE_UNITS": "1e9",
                              "PATH": "/usr/bin:/bin"})
    assert out.stdout.split() == ["7", "1000000000.0"], out.stderr
