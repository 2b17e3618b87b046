"""Helpers for scripts/make_corpus.py (synthesizer back ends, output writing)."""
