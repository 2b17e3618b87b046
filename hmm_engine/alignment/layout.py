"""Corpus folder layout (Montreal Forced Aligner style): files named by their path under a
folder, so ``speaker1/utt1.wav`` pairs with ``speaker1/utt1.lab`` and, on output, with
``OUT_DIR/speaker1/utt1.TextGrid`` (or ``.csv``, ``.json``). No torch here: ``evaluate`` uses
it too."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

# What ``align`` can write per utterance, and the suffix each gets after the utterance's name.
EXPORT_SUFFIXES = {"textgrid": ".TextGrid", "csv": ".csv", "json": ".json"}


def files_by_name(folder: Path, suffixes: Sequence[str], exclude: Path | None = None) -> dict[str, list[Path]]:
    """``{name: paths}`` of the files under ``folder`` (subfolders included) whose suffix is one
    of ``suffixes`` (lower case; matched case-insensitively). A name is the path relative to
    ``folder`` without the suffix (``"speaker1/utt1"``). Hidden folders and files, and
    ``exclude`` when it lies inside ``folder``, are not searched."""
    skip = Path(exclude).resolve() if exclude is not None else None
    if skip is not None and (skip == folder.resolve() or not skip.is_relative_to(folder.resolve())):
        skip = None  # not strictly inside: nothing to leave out
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.suffix.lower() in suffixes and path.is_file() and not any(p.startswith(".") for p in relative.parts) \
                and not (skip and path.resolve().is_relative_to(skip)):
            found.setdefault(relative.with_suffix("").as_posix(), []).append(path)
    return found


__all__ = ["EXPORT_SUFFIXES", "files_by_name"]
