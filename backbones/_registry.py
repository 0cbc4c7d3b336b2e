"""Registry of backbones: variants register a constructor by name.

Configs and checkpoints name backbones (``"small"``), never import paths. ``create_backbone`` builds
one and, given ``weights=PATH``, loads a local state dict into it. Nothing is ever downloaded.
"""
from __future__ import annotations

import inspect
import numbers
import os
from collections.abc import Callable
from dataclasses import dataclass

from backbones.base import Backbone, BackboneError
from backbones.weights import load_backbone_weights

DEFAULT_BACKBONE = "small"
"""The backbone to use when nothing else is asked for: fast on a few CPU cores."""


@dataclass(frozen=True)
class BackboneEntry:
    """What the registry knows about one backbone.

    Attributes:
        name: registry name.
        factory: ``factory(in_channels, **kwargs) -> Backbone``.
        description: one line for ``--help`` and reports.
    """

    name: str
    factory: Callable[..., Backbone]
    description: str


_BACKBONES: dict[str, BackboneEntry] = {}


def register_backbone(name: str, *, description: str = "") -> Callable:
    """Class or function decorator that registers a backbone constructor under ``name``.

    The constructor takes ``in_channels`` first, then keyword options. Duplicate names are refused,
    so two modules can never silently fight over one name.
    """

    def decorate(factory: Callable[..., Backbone]) -> Callable[..., Backbone]:
        if name in _BACKBONES:
            raise BackboneError(f"backbone {name!r} is already registered")
        doc = description or (factory.__doc__ or "").strip().split("\n")[0]
        _BACKBONES[name] = BackboneEntry(name, factory, doc)
        return factory

    return decorate


def list_backbones() -> list[str]:
    """Names of every registered backbone, sorted."""
    return sorted(_BACKBONES)


def backbone_entry(name: str) -> BackboneEntry:
    """The registry entry for ``name``; raises BackboneError naming the allowed values."""
    try:
        return _BACKBONES[name]
    except (KeyError, TypeError):  # TypeError: an unhashable name
        raise BackboneError(
            f"unknown backbone {name!r}; choose one of: {', '.join(list_backbones())}"
        ) from None


def create_backbone(
    name: str,
    in_channels: int,
    weights: str | os.PathLike | None = None,
    **kwargs,
) -> Backbone:
    """Build the backbone registered as ``name`` for inputs of ``in_channels`` (C) channels.

    Args:
        name: a name from ``list_backbones()``.
        in_channels: C, channels of the input: 1 or 3 for frames, the number of time bins (x2 with
            polarities kept apart) for event voxel grids.
        weights: optional path of a local state dict to load (see ``load_backbone_weights``: a
            3-channel stem is adapted to ``in_channels``).
        **kwargs: options of that backbone (its constructor's keyword arguments).

    Raises:
        BackboneError: unknown name, bad ``in_channels``, an option the backbone does not take,
            ``pretrained=`` (nothing is downloaded: pass ``weights=PATH``), or a bad weights file.
    """
    entry = backbone_entry(name)
    if "pretrained" in kwargs:
        raise BackboneError(
            f"backbone {name!r}: 'pretrained' is not supported, nothing is downloaded; "
            "pass weights=PATH with a local state dict instead"
        )
    if (
        not isinstance(in_channels, numbers.Integral)
        or isinstance(in_channels, bool)
        or in_channels < 1
    ):
        raise BackboneError(
            f"backbone {name!r}: in_channels must be a positive integer, got {in_channels!r}"
        )
    # Bind first so an unknown option is reported as such, not confused with a TypeError raised
    # inside the constructor.
    try:
        inspect.signature(entry.factory).bind(int(in_channels), **kwargs)
    except TypeError as exc:
        raise BackboneError(
            f"backbone {name!r}: {exc}; it takes: {', '.join(_options(entry.factory)) or 'no options'}"
        ) from None
    model = entry.factory(int(in_channels), **kwargs)
    if weights is not None:
        load_backbone_weights(model, weights)
    return model


def _options(factory: Callable) -> list[str]:
    """Keyword options a constructor takes (everything after ``in_channels``)."""
    params = list(inspect.signature(factory).parameters.values())[1:]
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
