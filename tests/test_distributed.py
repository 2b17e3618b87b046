"""Corpus training under torch.distributed (2 CPU processes, gloo on 127.0.0.1) gives the same
phone models and alignments as one process; so do training on labelled boundaries and word
transcripts through a pronunciation dictionary (with the alignment analysis gathered)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hmm_engine.alignment import MODEL_FILE, align_corpus, train_labelled
from hmm_engine.alignment.phone_models import PhoneModels
from hmm_engine.alignment.textgrids import read_textgrid

pytestmark = pytest.mark.slow  # two processes

SYNTH = Path(__file__).parent / "data" / "synth"
SETTINGS = dict(phones=True, transcript_suffix=".phones.lab", iterations=3, num_mixtures=2, mixup_iterations=1,
                states_per_phone=2, show_progress=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LABELLED = dict(states_per_phone=2, num_mixtures=2, iterations=3, mixup_iterations=1, duration_type="gamma",
                duration_iterations=1, show_progress=False)


def _worker(rank: int, world: int, port: int, out_dir: str, labelled: bool = False,
            dictionary: str | None = None) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        if labelled:
            train_labelled(SYNTH, out_dir, report=lambda line: None, **LABELLED)
            return
        settings = dict(SETTINGS, phones=False, transcript_suffix=".lab", dictionary=dictionary) if dictionary \
            else SETTINGS
        report = align_corpus(SYNTH, out_dir, report=lambda line: None, **settings)
        Path(out_dir, f"rank{rank}.txt").write_text(" ".join(sorted(report.aligned)))
    finally:
        dist.destroy_process_group()


def _assert_same_models(one: PhoneModels, two: PhoneModels) -> None:
    assert one.phones == two.phones and one.num_mixtures == two.num_mixtures == 2
    state_one, state_two = one.state_dict(), two.state_dict()
    assert state_one.keys() == state_two.keys()
    for key in state_one:
        torch.testing.assert_close(state_two[key], state_one[key], rtol=1e-4, atol=1e-4, msg=key)


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_processes_give_the_same_models_as_one(tmp_path):
    single_dir, multi_dir = tmp_path / "single", tmp_path / "multi"
    single = align_corpus(SYNTH, single_dir, report=lambda line: None, **SETTINGS)
    mp.spawn(_worker, args=(2, _free_port(), str(multi_dir)), nprocs=2, join=True)

    # Each rank aligned its own share; together they cover the corpus.
    shares = [set((multi_dir / f"rank{r}.txt").read_text().split()) for r in range(2)]
    assert not shares[0] & shares[1]
    assert shares[0] | shares[1] == set(single.aligned)

    _assert_same_models(PhoneModels.load(single_dir / MODEL_FILE), PhoneModels.load(multi_dir / MODEL_FILE))
    for name in single.aligned:
        a = read_textgrid(single_dir / f"{name}.TextGrid")["phones"]
        b = read_textgrid(multi_dir / f"{name}.TextGrid")["phones"]
        assert [(s.label, round(s.start, 6), round(s.end, 6)) for s in a] == \
               [(s.label, round(s.start, 6), round(s.end, 6)) for s in b]


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_labelled_training_on_two_processes_gives_the_same_models_as_one(tmp_path):
    single_dir, multi_dir = tmp_path / "single", tmp_path / "multi"
    single = train_labelled(SYNTH, single_dir, report=lambda line: None, **LABELLED)
    mp.spawn(_worker, args=(2, _free_port(), str(multi_dir), True), nprocs=2, join=True)
    one, two = PhoneModels.load(single.models_path), PhoneModels.load(multi_dir / MODEL_FILE)
    assert one.duration_type == two.duration_type == "gamma"
    _assert_same_models(one, two)


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_dictionary_words_on_two_processes_give_the_same_models_and_analysis_as_one(tmp_path):
    """Word transcripts through a dictionary listing, for every word, each pronunciation the
    references give it (espeak-ng's and the ARPAbet voices' when both say it): the rounds of
    choosing pronunciations and re-estimating, and the alignment analysis gathered from both
    ranks, come out as in one process."""
    import csv

    lexicon: dict[str, list[str]] = {}
    for grid in sorted(SYNTH.glob("*.TextGrid")):
        tiers = read_textgrid(grid)
        for word in tiers["words"]:
            phones = " ".join(p.label for p in tiers["phones"]
                              if word.start - 1e-6 <= p.start and p.end <= word.end + 1e-6)
            variants = lexicon.setdefault(word.label.lower(), [])
            if phones not in variants:
                variants.append(phones)
    assert any(len(v) > 1 for v in lexicon.values())
    dictionary = tmp_path / "lexicon.dict"
    dictionary.write_text("".join(f"{w}{'' if i == 0 else f'({i + 1})'} {p}\n"
                                  for w, variants in lexicon.items() for i, p in enumerate(variants)))
    settings = dict(SETTINGS, phones=False, transcript_suffix=".lab", dictionary=dictionary)
    single_dir, multi_dir = tmp_path / "single", tmp_path / "multi"
    single = align_corpus(SYNTH, single_dir, report=lambda line: None, **settings)
    assert single.words_with_variants > 0
    mp.spawn(_worker, args=(2, _free_port(), str(multi_dir), False, str(dictionary)), nprocs=2, join=True)
    _assert_same_models(PhoneModels.load(single_dir / MODEL_FILE), PhoneModels.load(multi_dir / MODEL_FILE))
    for name in single.aligned:
        a = read_textgrid(single_dir / f"{name}.TextGrid")["phones"]
        b = read_textgrid(multi_dir / f"{name}.TextGrid")["phones"]
        assert [s.label for s in a] == [s.label for s in b]
    rows = [{r["name"]: r for r in csv.DictReader(open(d / "alignment_analysis.csv"))} for d in (single_dir, multi_dir)]
    assert rows[0].keys() == rows[1].keys() == set(single.aligned)
    for name, row in rows[0].items():
        assert float(rows[1][name]["worst_phone_fit"]) == pytest.approx(float(row["worst_phone_fit"]), abs=1e-2)
