"""Checkpoints: plain config plus state dicts, never code.

A checkpoint is the file Lightning writes during training (optimizer and loop state included, so a
run can resume) with one more entry, ``"perception"``: the model's config (registry names, kwargs,
time_scale), the class names and the preprocessing (``data.Preprocessing.to_dict()``: modality,
frame size, channels, representation, windows, time scale). ``load_checkpoint`` rebuilds the model
and its preprocessing from that file alone, reading it with ``torch.load(weights_only=True)``: a
file crafted to run code when unpickled is refused. The preprocessing is checked before the model
is built, so a malformed one fails with one line before anything large is allocated; one written
before it had a version is converted, with the model's time scale.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from data import DataError, Preprocessing
from perception.errors import PerceptionError
from perception.model import PerceptionModel

KEY = "perception"
FORMAT = 1
_PREFIX = "model."  # the LightningModule holds the PerceptionModel as ``self.model``


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
    return raw


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
    raw = read_checkpoint(path)
    meta = raw[KEY]
    preprocessing = read_preprocessing(raw, path)  # first: nothing is built from a malformed one
    channels = meta["model"].get("in_channels") if isinstance(meta["model"], dict) else None
    if channels != preprocessing.channels:
        raise PerceptionError(f"{path}: the preprocessing makes {preprocessing.channels}-channel inputs, "
                              f"the model takes {channels!r}")
    try:
        model = PerceptionModel(**meta["model"])
    except TypeError as exc:
        raise PerceptionError(f"{path}: the model config does not fit this version ({exc})") from None
    state = {k[len(_PREFIX):]: v for k, v in raw["state_dict"].items() if k.startswith(_PREFIX)}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:240]
        raise PerceptionError(f"{path}: the weights do not match the model its config describes ({detail})") from None
    model.to(device).eval()
    return LoadedCheckpoint(model, list(meta.get("classes", [])), preprocessing, Path(path), raw)


def save_checkpoint(path: str | os.PathLike, model: PerceptionModel, classes: list[str],
                    preprocessing: Preprocessing, extra: dict[str, Any] | None = None) -> Path:
    """Write a model-only checkpoint (no optimizer state) in the same layout, atomically.

    ``extra``: more plain entries, e.g. ``datamodule_hyper_parameters`` as Lightning writes them.
    """
    from perception._files import atomic_write

    payload = {"state_dict": {_PREFIX + k: v for k, v in model.state_dict().items()},
               **checkpoint_payload(model, classes, preprocessing), **(extra or {})}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))
