"""Save and load models: one file holding the configuration and the parameters.

The file is a ``torch.save`` archive of plain data only (strings, numbers, tensors),
written to a temporary file and renamed into place (atomic), and read back with
``torch.load(weights_only=True)``, which refuses to run pickled code.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Dict, Union

import torch

from .errors import ModelFileError

FORMAT = "hmm-studio-model"
VERSION = 1
_REGISTRY: Dict[str, Callable[[dict], torch.nn.Module]] = {}


def register_model(name: str, from_config: Callable[[dict], torch.nn.Module]) -> None:
    """Make ``load`` able to rebuild models saved under ``name`` (the class name)."""
    _REGISTRY[name] = from_config


def save(model: torch.nn.Module, path: Union[str, Path]) -> Path:
    """Write ``model`` (config + state dict) to ``path`` atomically; returns the path."""
    name = type(model).__name__
    if name not in _REGISTRY:
        raise ModelFileError(f"{name} is not a registered model class; call register_model first")
    path = Path(path)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "class": name,
        "config": _config_json(model),
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _config_json(model: torch.nn.Module) -> str:
    try:
        return json.dumps(model.get_config())
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"{type(model).__name__}'s config is not plain data (numbers, strings, lists): {err}") from None


def load(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu", emission=None) -> torch.nn.Module:
    """Rebuild a model saved by :func:`save`.

    ``emission``: for ``HMM(emission=<your module>)``, your emission class or an instance
    (or register the class once with :func:`hmm_engine.register_emission`). Only its weights
    come from the file, which holds no code.

    Raises:
        ModelFileError: missing, corrupt or foreign file, unknown version or class.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"no model file at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupt archive, pickled code refused, ...
        raise ModelFileError(f"{path} is not a readable HMM Studio model file ({type(err).__name__}: {err})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not an HMM Studio model file")
    if payload.get("version") != VERSION:
        raise ModelFileError(f"{path} has format version {payload.get('version')}, this engine reads {VERSION}")
    name = payload.get("class")
    if name not in _REGISTRY:
        raise ModelFileError(f"{path} holds an unknown model class {name!r}")
    try:
        config = json.loads(payload["config"])
        model = _REGISTRY[name](config) if emission is None else _REGISTRY[name](config, emission=emission)
        model = model.to(getattr(torch, payload["dtype"]))
        model.load_state_dict(payload["state"], strict=True)
    except (KeyError, TypeError, RuntimeError, json.JSONDecodeError, AttributeError) as err:
        raise ModelFileError(f"{path} does not match its model class {name}: {err}") from None
    return model.to(map_location)
