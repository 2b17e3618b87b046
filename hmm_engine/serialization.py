"""Save and load models: one file holding the configuration and the parameters.

The file is a ``torch.save`` archive of plain data only (strings, numbers, tensors),
written to a temporary file and renamed into place (atomic), and read back with
``torch.load(weights_only=True)``, which refuses to run pickled code.

Reading is bounded before anything is allocated (:mod:`hmm_engine.limits`): the archive's
size, member count and decompressed size come from its zip directory before ``torch.load``,
and the size of the model its configuration asks for is estimated, and compared with the
parameters the file holds, before the model is built.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Union

import torch

from . import limits
from .errors import HMMStudioError, ModelFileError

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
    return write_atomically(payload, path)


def write_atomically(payload: dict, path: Union[str, Path]) -> Path:
    """``torch.save(payload)`` to a temporary file beside ``path``, fsync, then rename it into
    place: a crash leaves the old file or the new one, never half of one. Returns the path."""
    path = Path(path)
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


def read_archive(path: Union[str, Path], what: str = "model file",
                 map_location: Union[str, torch.device] = "cpu") -> Any:
    """``torch.load(weights_only=True)`` of ``path`` after :func:`hmm_engine.limits.check_model_archive`;
    every failure is a :class:`ModelFileError` naming the file."""
    limits.check_model_archive(path, what)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupt archive, pickled code refused, ...
        reason = " ".join(str(err).split())[:300]
        raise ModelFileError(f"'{Path(path).name}' is not a readable {what} ({type(err).__name__}: {reason})") from None


def require_fields(payload: Any, fields: Dict[str, type], what: str) -> None:
    """Each field present with its type, else a :class:`ModelFileError` saying which is wrong."""
    if not isinstance(payload, dict):
        raise ModelFileError(f"{what} holds a {type(payload).__name__}, not a model record")
    for name, kind in fields.items():
        if name not in payload:
            raise ModelFileError(f"{what} has no '{name}' entry: it is damaged or was not written by HMM Studio")
        if not isinstance(payload[name], kind):
            raise ModelFileError(f"{what}: its '{name}' entry is a {type(payload[name]).__name__}, "
                                 f"expected {getattr(kind, '__name__', kind)}")


def _walk(config: Any) -> Iterable[dict]:
    if isinstance(config, dict):
        yield config
        for v in config.values():
            yield from _walk(v)
    elif isinstance(config, (list, tuple)):
        for v in config:
            yield from _walk(v)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    if value != value or value in (float("inf"), float("-inf")):
        return 0
    return int(abs(value))


def config_parameter_estimate(config: Any) -> int:
    """About how many numbers a model built from ``config`` holds (upper estimate): for the
    engine's HMMs ``K^2 + K M (D + c) + K S + K Dmax``, c = D^2 for full/tied covariances,
    with K states (``len(phones) x states_per_phone`` for phone models), M mixtures, D the
    observation dimension, S symbols, Dmax the longest duration."""
    Kn = Kp = D = S = Dmax = 0
    M = 1
    full = False
    for d in _walk(config):
        Kn = max(Kn, _int(d.get("num_states", 0)))
        if isinstance(d.get("phones"), list):  # phone models: chains, a few transitions a state
            per = max(_int(d.get("states_per_phone", 1)), _int(d.get("emitting_states", 0)), 1)
            Kp = max(Kp, len(d["phones"]) * per + 2 * len(d.get("context_states") or {}))
        D = max(D, _int(d.get("obs_dim", 0)))
        M = max(M, _int(d.get("num_mixtures", 1)))
        S = max(S, _int(d.get("num_symbols", 0)))
        Dmax = max(Dmax, _int(d.get("max_duration", 0)))
        full = full or str(d.get("covariance_type", "")) in ("full", "tied")
    K = max(Kn, Kp)
    cov = D * D if full else D
    return Kn * Kn + 4 * Kp + K * M * (D + cov + 1) + K * S + K * Dmax


def check_config_size(config: Any, state: Any, what: str) -> None:
    """Refuse a configuration asking for more than :data:`~hmm_engine.limits.MAX_MODEL_PARAMETERS`
    numbers, or for far more than the file's parameters hold (a file whose configuration and
    parameters disagree cannot load, and building it first would allocate what it asks)."""
    wanted = config_parameter_estimate(config)
    limits.check_model_parameters(wanted, what)
    held = sum(t.numel() for t in state.values() if isinstance(t, torch.Tensor)) if isinstance(state, dict) else 0
    if wanted > 8 * held + 100_000:
        raise ModelFileError(f"{what}: its configuration asks for about {wanted:,} parameters but the file holds "
                             f"{held:,}: the file is damaged or was edited")


def load(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu", emission=None) -> torch.nn.Module:
    """Rebuild a model saved by :func:`save`.

    ``emission``: for ``HMM(emission=<your module>)``, your emission class or an instance
    (or register the class once with :func:`hmm_engine.register_emission`). Only its weights
    come from the file, which holds no code.

    Raises:
        ModelFileError: missing, corrupt, oversized or foreign file, unknown version or class,
            a configuration that does not match the parameters.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"no model file at {path}")
    what = f"model file '{path.name}'"
    payload = read_archive(path, "model file", map_location="cpu")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not an HMM Studio model file")
    if payload.get("version") != VERSION:
        raise ModelFileError(f"{path} has format version {payload.get('version')}, this engine reads {VERSION}")
    require_fields(payload, {"class": str, "config": str, "dtype": str, "state": dict}, what)
    name = payload.get("class")
    if name not in _REGISTRY:
        raise ModelFileError(f"{path} holds an unknown model class {name!r}")
    try:
        config = json.loads(payload["config"])
    except (json.JSONDecodeError, RecursionError) as err:
        raise ModelFileError(f"{what}: its configuration is not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise ModelFileError(f"{what}: its configuration is a {type(config).__name__}, not a mapping")
    check_config_size(config, payload["state"], what)
    dtype = getattr(torch, payload["dtype"], None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ModelFileError(f"{what}: unknown parameter type {payload['dtype']!r}")
    try:
        model = _REGISTRY[name](config) if emission is None else _REGISTRY[name](config, emission=emission)
        model = model.to(dtype)
        model.load_state_dict(payload["state"], strict=True)
    except HMMStudioError:
        raise  # the engine's own errors say what to do (e.g. name the custom emission class)
    except (KeyError, TypeError, RuntimeError, ValueError, AttributeError) as err:
        raise ModelFileError(f"{path} does not match its model class {name}: {err}") from None
    return model.to(map_location)
