"""Checkpoints: plain config plus state dicts, never code.

A checkpoint is the file Lightning writes during training (optimizer and loop state included, so a
run can resume) with one more entry, ``"perception"``: the model's config (registry names, kwargs,
time_scale), the class names and the preprocessing (``data.Preprocessing.to_dict()``: modality,
frame size, channels, representation, windows, time scale). ``load_checkpoint`` rebuilds the model
and its preprocessing from that file alone, reading it with ``torch.load(weights_only=True)``: a
file crafted to run code when unpickled is refused. The preprocessing is checked before the model
is built, so a malformed one fails with one line before anything large is allocated; one written
before it had a version is converted, with the model's time scale.

Nothing in a checkpoint is trusted before it is checked, and nothing is allocated from its config
before the config agrees with its weights (each failure is one PerceptionError line naming the file):

- the zip's CRCs (a damaged copy loads silently otherwise: torch does not check them);
- ``state_dict``: a dict of tensors, every floating one finite (NaN weights would make every
  prediction NaN);
- the model config: its keys and their types, every size in it no larger than the number of values
  the weights hold (a layer of n units has at least n weights), then the model it describes built on
  torch's ``meta`` device (shapes only, no memory) and every weight's shape compared with it;
- ``classes``: a list of strings.

Only then is the real model built and the weights loaded into it.
"""
from __future__ import annotations

import os
import pickle
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from data import DataError, Preprocessing
from perception.errors import USER_ERRORS, PerceptionError
from perception.model import PerceptionModel

KEY = "perception"
FORMAT = 1
_PREFIX = "model."  # the LightningModule holds the PerceptionModel as ``self.model``
# The model config's keys and the types each may hold (PerceptionModel's arguments).
_MODEL_KEYS: dict[str, tuple[type, ...]] = {
    "in_channels": (int,), "num_classes": (int,), "backbone": (str,), "head": (str,),
    "backbone_kwargs": (dict, type(None)), "head_kwargs": (dict, type(None)), "time_scale": (int, float),
    "dropout": (int, float), "feature_norm": (bool,), "dt_transform": (str,),
    "output_integrator": (bool,),
}


def checkpoint_payload(model: PerceptionModel, classes: list[str],
                       preprocessing: Preprocessing | None) -> dict[str, Any]:
    """The entry that makes a checkpoint self-describing: ``{"perception": {...}}``, plain values only.
    A model trained without a data module's preprocessing (None) makes a checkpoint that does not load."""
    return {KEY: {"format": FORMAT, "model": model.config(), "classes": list(classes),
                  "preprocessing": None if preprocessing is None else preprocessing.to_dict()}}


@dataclass
class LoadedCheckpoint:
    """A rebuilt model (in eval mode) with what feeding it needs."""

    model: PerceptionModel
    classes: list[str]
    preprocessing: Preprocessing
    path: Path
    raw: dict[str, Any]


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's contents, loaded without running any code; a PerceptionError for a bad file."""
    path = Path(path)
    if not path.is_file():
        raise PerceptionError(f"{path}: checkpoint not found")
    _check_crcs(path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PerceptionError(
            f"{path}: refused: the file holds objects other than tensors and plain values, and a checkpoint "
            f"is never a way to run code ({first[:160]})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise PerceptionError(f"{path}: not a readable checkpoint (truncated or corrupt: {str(exc)[:160]})") from None
    if not isinstance(raw, dict) or KEY not in raw or "state_dict" not in raw:
        raise PerceptionError(f"{path}: not a liquid-perception checkpoint (no '{KEY}' and 'state_dict' entries)")
    meta = raw[KEY]
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "model" not in meta:
        raise PerceptionError(f"{path}: unsupported checkpoint format {meta.get('format') if isinstance(meta, dict) else meta!r}")
    _check_weights(raw["state_dict"], path)
    return raw


def _check_crcs(path: Path) -> None:
    """Read every member of a zip checkpoint through its CRC (torch.load does not check them)."""
    try:
        if not zipfile.is_zipfile(path):
            return  # torch's legacy format (or not a checkpoint: torch.load says which)
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as exc:
        raise PerceptionError(f"{path}: not a readable checkpoint (corrupt zip: {str(exc)[:160]})") from None
    if bad is not None:
        raise PerceptionError(f"{path}: corrupt checkpoint: {bad} fails its CRC check (a damaged copy?)")


def _check_weights(state: Any, path: Path) -> None:
    """``state_dict`` is a dict of tensors (names: str) and every floating tensor in it is finite."""
    if not isinstance(state, Mapping):
        raise PerceptionError(f"{path}: state_dict: expected a dict of tensors, got {type(state).__name__}")
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise PerceptionError(f"{path}: state_dict: expected tensors named by strings, got {name!r}: "
                                  f"{type(value).__name__}")
        if (value.is_floating_point() or value.is_complex()) and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise PerceptionError(f"{path}: state_dict: {name} holds {bad:,} non-finite values (NaN or inf); "
                                  "the weights are unusable (a diverged run?)")


def _check_model_config(config: Any, state: dict[str, torch.Tensor], path: Path) -> dict[str, Any]:
    """The model config, checked against its weights before any of it is allocated (module docstring)."""
    if not isinstance(config, dict):
        raise PerceptionError(f"{path}: the model config: expected a dict, got {type(config).__name__}")
    unknown = sorted(map(str, set(config) - set(_MODEL_KEYS)))
    missing = [key for key in ("in_channels", "num_classes") if key not in config]
    if unknown or missing:
        raise PerceptionError(f"{path}: the model config does not fit this version (unknown keys {unknown}, "
                              f"missing {missing})")
    for key, value in config.items():
        types = _MODEL_KEYS[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            allowed = " or ".join(t.__name__ for t in types)
            raise PerceptionError(f"{path}: the model config's {key}: expected {allowed}, got {value!r:.80}")
    values = sum(tensor.numel() for tensor in state.values())
    for where, size in _sizes(config):
        if size > values:
            raise PerceptionError(f"{path}: the model config's {where} = {size:,} is more than the {values:,} values "
                                  "its weights hold: no model these weights fit has it")
    try:
        with torch.device("meta"):  # shapes only: nothing is allocated
            skeleton = PerceptionModel(**config)
    except USER_ERRORS as exc:
        raise PerceptionError(f"{path}: the model config: {exc}") from None
    except (TypeError, MemoryError) as exc:
        raise PerceptionError(f"{path}: the model config does not fit this version ({str(exc)[:160]})") from None
    expected = {name: tuple(t.shape) for name, t in skeleton.state_dict().items()}
    got = {name: tuple(t.shape) for name, t in state.items()}
    for name in sorted(set(expected) | set(got)):
        if expected.get(name) != got.get(name):
            what = lambda shape: "missing" if shape is None else " x ".join(map(str, shape)) or "scalar"  # noqa: E731
            raise PerceptionError(f"{path}: the weights do not match the model its config describes ({name}: "
                                  f"{what(got.get(name))} in the file, {what(expected.get(name))} in the config)")
    return config


def _sizes(config: dict[str, Any]):
    """(where, value) of every integer of the config that sizes something: all but seeds."""
    def walk(where: str, value):
        if isinstance(value, bool):
            return
        if isinstance(value, int):
            if "seed" not in where.rsplit(".", 1)[-1]:
                yield where, value
        elif isinstance(value, dict):
            for key, item in value.items():
                yield from walk(f"{where}.{key}", item)
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                yield from walk(f"{where}[{i}]", item)

    for key in ("in_channels", "num_classes", "backbone_kwargs", "head_kwargs"):
        yield from walk(key, config.get(key))


def read_preprocessing(raw: dict[str, Any], path: str | os.PathLike) -> Preprocessing:
    """The preprocessing of a checkpoint read by ``read_checkpoint``, checked (an old layout converted
    with the model's time scale); a one-line PerceptionError naming ``path`` when it is malformed."""
    meta = raw[KEY]
    model = meta["model"] if isinstance(meta["model"], dict) else {}
    try:
        return Preprocessing.from_dict(meta.get("preprocessing"), time_scale=model.get("time_scale"))
    except DataError as exc:
        raise PerceptionError(f"{path}: {exc}") from None


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild the model saved in ``path`` (eval mode, on ``device``) with its classes and preprocessing."""
    device = _device(device)
    raw = read_checkpoint(path)
    path = Path(path)
    meta = raw[KEY]
    if not isinstance(meta["model"], dict):
        raise PerceptionError(f"{path}: the model config: expected a dict, got {type(meta['model']).__name__}")
    preprocessing = read_preprocessing(raw, path)  # first: nothing is built from a malformed one
    channels = meta["model"].get("in_channels")
    if channels != preprocessing.channels:
        raise PerceptionError(f"{path}: the preprocessing makes {preprocessing.channels}-channel inputs, "
                              f"the model takes {channels!r}")
    classes = meta.get("classes", [])
    if not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        raise PerceptionError(f"{path}: classes: expected a list of names, got {classes!r:.80}")
    state = {k[len(_PREFIX):]: v for k, v in raw["state_dict"].items() if k.startswith(_PREFIX)}
    config = _check_model_config(meta["model"], state, path)  # before anything is allocated
    model = PerceptionModel(**config)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:240]
        raise PerceptionError(f"{path}: the weights do not match the model its config describes ({detail})") from None
    model.to(device).eval()
    return LoadedCheckpoint(model, list(classes), preprocessing, path, raw)


def _device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device that exists here; a PerceptionError naming it otherwise."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise PerceptionError(f"--device {device!r}: not a torch device (cpu, cuda, cuda:N, mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise PerceptionError(f"--device {device}: no CUDA GPU is available here (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise PerceptionError(f"--device {device}: there are {torch.cuda.device_count()} CUDA GPUs here")
    elif device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise PerceptionError(f"--device {device}: MPS is not available here (use --device cpu)")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise PerceptionError(f"--device {device}: not supported here (cpu, cuda, cuda:N, mps)")
    return device


def save_checkpoint(path: str | os.PathLike, model: PerceptionModel, classes: list[str],
                    preprocessing: Preprocessing, extra: dict[str, Any] | None = None) -> Path:
    """Write a model-only checkpoint (no optimizer state) in the same layout, atomically.

    ``extra``: more plain entries, e.g. ``datamodule_hyper_parameters`` as Lightning writes them.
    """
    from perception._files import atomic_write

    payload = {"state_dict": {_PREFIX + k: v for k, v in model.state_dict().items()},
               **checkpoint_payload(model, classes, preprocessing), **(extra or {})}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))
