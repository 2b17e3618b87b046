"""Forced alignment: transcripts, phone HMMs, corpus training, TextGrids and metrics."""
