"""Registry of temporal heads: variants register a constructor by name.

Configs and checkpoints name heads (``"cfc"``), never import paths. ``create_head`` builds one.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


class HeadError(ValueError):
    """A head was asked for with a bad name or bad options (the message names them)."""


@dataclass(frozen=True)
class HeadEntry:
    """What the registry knows about one head variant.

    Attributes:
        name: registry name.
        factory: ``factory(in_features, **kwargs) -> TemporalHead``.
        time_aware: whether the head uses ``dt``; heads that ignore it still accept it.
        description: one line for ``--help`` and reports.
    """

    name: str
    factory: Callable[..., nn.Module]
    time_aware: bool
    description: str


_HEADS: dict[str, HeadEntry] = {}


def register_head(name: str, *, time_aware: bool, description: str = "") -> Callable:
    """Class or function decorator that registers a head constructor under ``name``.

    Refuses duplicate names, so two modules can never silently fight over one name.
    """

    def decorate(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _HEADS:
            raise HeadError(f"head {name!r} is already registered")
        doc = description or (factory.__doc__ or "").strip().split("\n")[0]
        _HEADS[name] = HeadEntry(name, factory, time_aware, doc)
        return factory

    return decorate


def list_heads() -> list[str]:
    """Names of every registered head, sorted."""
    return sorted(_HEADS)


def head_entry(name: str) -> HeadEntry:
    """The registry entry for ``name``; raises HeadError naming the allowed values."""
    try:
        return _HEADS[name]
    except KeyError:
        raise HeadError(f"unknown head {name!r}; choose one of: {', '.join(list_heads())}") from None


def create_head(name: str, in_features: int, **kwargs) -> nn.Module:
    """Build the head registered as ``name`` for inputs of ``in_features`` (D) features.

    Raises:
        HeadError: unknown name, or options the head does not take.
    """
    entry = head_entry(name)
    if not isinstance(in_features, int) or in_features <= 0:
        raise HeadError(f"head {name!r}: in_features must be a positive integer, got {in_features!r}")
    try:
        return entry.factory(in_features, **kwargs)
    except TypeError as exc:  # unexpected keyword: say which head refused it
        raise HeadError(f"head {name!r}: {exc}") from None
