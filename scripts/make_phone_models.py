#!/usr/bin/env python
"""Rebuild the shipped phone models, hmm_engine/alignment/shipped/arpabet_synthetic.pt.

    python scripts/make_phone_models.py [--work data/pre_corpus] [--num 80] [--seed 23]

1. ``scripts/make_corpus.py WORK --num 80 --seed 23 --synths flite,festival`` (flite's slt,
   awb and rms voices, festival's slt HTS voice; exact phone boundaries; ~25 s here).
   Seed 23 is neither bench_alignment.py's held-out corpus nor the tests' corpus.
2. Their lowercase CMU labels mapped to CMUdict's ARPAbet (``ax`` -> ``AH``, ``pau`` -> ``sil``;
   benchmarks/peer_pocketsphinx.py's ``flite_to_arpabet``) into WORK_arpabet/.
3. ``train_labelled(WORK_arpabet, ..., states_per_phone=3, num_mixtures=1)`` with the default
   front end (13 MFCCs + deltas + CMVN), copied to the package (~41 KB).
What was compared before choosing these settings: benchmarks/pretrained_single.py.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from pretrained_single import to_arpabet  # noqa: E402

from hmm_engine.alignment.recipes import train_labelled  # noqa: E402
from hmm_engine.alignment.shipped import SHIPPED_MODELS_PATH  # noqa: E402
from hmm_engine.frontend.features import FeatureConfig  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=ROOT / "data" / "pre_corpus")
    parser.add_argument("--num", type=int, default=80)
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--out", type=Path, default=SHIPPED_MODELS_PATH)
    args = parser.parse_args(argv)
    if not (args.work / "manifest.csv").exists():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_corpus.py"), str(args.work), "--num",
                        str(args.num), "--seed", str(args.seed), "--synths", "flite,festival"], check=True)
    mapped = args.work.with_name(args.work.name + "_arpabet")
    print(f"{to_arpabet(args.work, mapped)} labelled files -> {mapped}")
    trained = args.work.with_name(args.work.name + "_models")
    train_labelled(mapped, trained, states_per_phone=3, num_mixtures=1, feature_config=FeatureConfig(),
                   device="cpu", show_progress=False)
    shutil.copy(trained / "phone_models.pt", args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
