"""Loading local weights files into backbones, adapting a 3-channel stem to any channel count.

Weights are only ever read from a local file, with ``torch.load(weights_only=True)`` so a file can
never run code. Nothing is downloaded.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from backbones.base import Backbone, BackboneError

_MAX_KEYS_SHOWN = 3


def adapt_stem_weight(weight: Tensor, in_channels: int) -> Tensor:
    """Turn an RGB first-conv kernel into one for ``in_channels`` inputs.

    Every new input channel gets the mean of the RGB kernels, scaled by ``3 / in_channels``. The
    kernels then sum to the same total as the RGB ones, so an input with the same image in every
    channel gives the same response as that image in grey did on the RGB model, and activation
    magnitudes (which the following batch norm statistics were fitted to) are kept.

    Args:
        weight: (D, 3, kH, kW), the RGB stem.
        in_channels: C, channels of the new stem.

    Returns:
        (D, C, kH, kW).
    """
    assert weight.ndim == 4 and weight.shape[1] == 3, tuple(weight.shape)
    mean = weight.mean(dim=1, keepdim=True)
    return mean.repeat(1, in_channels, 1, 1) * (3.0 / in_channels)


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a state dict saved with ``torch.save`` (CPU tensors, no code run).

    Raises:
        BackboneError: the file is missing, unreadable, or not a mapping of names to tensors.
    """
    path = Path(path)
    if not path.is_file():
        problem = "is a directory" if path.is_dir() else "does not exist"
        raise BackboneError(f"weights file {str(path)!r} {problem}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files: all mean "unreadable"
        detail = str(exc).strip().split("\n")[0][:200]
        raise BackboneError(
            f"weights file {str(path)!r} is not a readable torch state dict "
            f"({type(exc).__name__}: {detail})"
        ) from None
    if not isinstance(state, Mapping):
        raise BackboneError(
            f"weights file {str(path)!r} holds a {type(state).__name__}, expected a state dict "
            "(a mapping of parameter names to tensors)"
        )
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise BackboneError(
            f"weights file {str(path)!r} is not a state dict: entries {_show(map(str, bad))} "
            "are not named tensors"
        )
    return dict(state)


def load_backbone_weights(model: Backbone, path: str | os.PathLike) -> Backbone:
    """Load the state dict in the file at ``path`` into ``model``, in place.

    The file may be a state dict of the same backbone (``torch.save(model.state_dict(), path)``)
    or the state dict of the original torchvision model (its classifier is dropped). When the
    file's first conv takes 3 channels and the model takes another number, the stem is adapted:
    RGB kernels averaged, repeated over the channels and scaled by ``3 / in_channels`` (see
    ``adapt_stem_weight``).

    Returns:
        ``model``, for chaining.

    Raises:
        BackboneError: the file is missing or corrupt, or its keys or shapes do not match the
            model (the message names the file and the first offending keys).
    """
    state = read_state_dict(path)
    name = repr(str(path))
    expected = model.state_dict()
    state = {
        k: v
        for k, v in state.items()
        if k in expected or not k.startswith(model.ignored_weight_prefixes)
    }

    stem_key = f"{model.stem_name}.weight"
    stem = state.get(stem_key)
    if stem is not None and stem.ndim == 4 and stem.shape[1] == 3 and model.in_channels != 3:
        state[stem_key] = adapt_stem_weight(stem, model.in_channels)

    # Batch norm fills a missing counter itself (older torchvision files lack it).
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {_show(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_show(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes (file != model) {_show(wrong)}")
    if problems:
        raise BackboneError(
            f"weights file {name} does not fit backbone {type(model).__name__} "
            f"(in_channels={model.in_channels}): {'; '.join(problems)}"
        )
    model.load_state_dict(state, strict=True)  # cannot fail now: the checks above explain misfits
    return model


def _show(keys) -> str:
    """The first few keys, and how many more there are."""
    keys = list(keys)
    shown = ", ".join(keys[:_MAX_KEYS_SHOWN])
    more = len(keys) - _MAX_KEYS_SHOWN
    return f"[{shown}{f', ... {more} more' if more > 0 else ''}]"
