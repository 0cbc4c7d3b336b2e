"""What a configured representation is (``Representation``), and the registry of them by name.

Configs and checkpoints name a representation and its options (``to_config()``);
``create_representation`` builds it again from them.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import ClassVar

import numpy as np

from data.errors import DataError
from data.events import Events


_REGISTRY: dict[str, type[Representation]] = {}


def register_representation(name: str):
    """Class decorator adding a Representation to the registry under ``name`` (no duplicates)."""

    def decorate(cls: type[Representation]) -> type[Representation]:
        if name in _REGISTRY:
            raise ValueError(f"representation {name!r} is already registered ({_REGISTRY[name].__name__})")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def list_representations() -> list[str]:
    """Registered representation names, sorted."""
    return sorted(_REGISTRY)


def create_representation(name: str, **kwargs) -> Representation:
    """Build a registered representation, e.g. ``create_representation("voxel_grid", bins=5)``.

    ``create_representation(**rep.to_config())`` rebuilds ``rep``.

    Raises:
        DataError: unknown name or option, naming the allowed ones.
    """
    if name not in _REGISTRY:
        raise DataError(f"representation: unknown name {name!r}; choose one of {', '.join(list_representations())}")
    cls = _REGISTRY[name]
    allowed = [f.name for f in fields(cls)]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise DataError(f"representation {name!r}: unknown options {unknown}; allowed: {', '.join(allowed)}")
    return cls(**kwargs)


def as_representation(representation: Representation | str | Mapping) -> Representation:
    """A Representation from itself, a registered name, or a config dict with "name" (``to_config()``).

    Raises:
        DataError: anything else, or an unknown name or option.
    """
    if isinstance(representation, Representation):
        return representation
    if isinstance(representation, str):
        return create_representation(representation)
    if isinstance(representation, Mapping) and isinstance(representation.get("name"), str):
        options = {k: v for k, v in representation.items() if k != "name"}
        return create_representation(representation["name"], **options)
    raise DataError(
        "representation: expected a Representation, a registered name, or a config dict with 'name'; "
        f"got {representation!r}"
    )


@dataclass(frozen=True)
class Representation(ABC):
    """A configured representation: ``rep(events, sensor_size) -> (C, H, W) float32``."""

    name: ClassVar[str]

    @property
    @abstractmethod
    def channels(self) -> int:
        """C, the number of output channels."""

    @abstractmethod
    def __call__(
        self, events: Events, sensor_size: tuple[int, int], *, t_start: int | None = None, t_end: int | None = None
    ) -> np.ndarray:
        """(C, H, W) float32 for N events; t_start / t_end (microseconds) are the window's bounds."""

    def to_config(self) -> dict:
        """Plain values that ``create_representation(**config)`` turns back into this object."""
        return {"name": self.name, **asdict(self)}
