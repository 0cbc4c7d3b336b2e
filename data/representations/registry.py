"""Configured representations (``Representation``) and their registry: configs and checkpoints name them."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import ClassVar

import numpy as np

from data.errors import DataError
from data.events import Events
from data.representations.functions import to_event_histogram, to_time_surface, to_voxel_grid
from data.representations.options import (
    NORMALIZATIONS,
    TIME_SURFACE_POLARITY,
    binned_channels,
    check_binned,
    check_choice,
)


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


@dataclass(frozen=True)
class _Binned(Representation):
    """What the representations in time bins share: the options' checks and C."""

    bins: int
    polarity: str
    normalize: str | None = None

    def __post_init__(self):
        check_binned(type(self).__name__, self.bins, self.polarity, self.normalize)

    @property
    def channels(self) -> int:
        return binned_channels(self.bins, self.polarity)


@register_representation("voxel_grid")
@dataclass(frozen=True)
class VoxelGrid(_Binned):
    """``to_voxel_grid`` with fixed options; C = bins (x2 when split)."""

    bins: int = 5
    polarity: str = "signed"

    def __call__(self, events, sensor_size, *, t_start=None, t_end=None) -> np.ndarray:
        return to_voxel_grid(
            events, sensor_size, self.bins, polarity=self.polarity, normalize=self.normalize,
            t_start=t_start, t_end=t_end,
        )


@register_representation("histogram")
@dataclass(frozen=True)
class EventHistogram(_Binned):
    """``to_event_histogram`` with fixed options; C = bins (x2 when split)."""

    bins: int = 1
    polarity: str = "split"

    def __call__(self, events, sensor_size, *, t_start=None, t_end=None) -> np.ndarray:
        return to_event_histogram(
            events, sensor_size, bins=self.bins, polarity=self.polarity, normalize=self.normalize,
            t_start=t_start, t_end=t_end,
        )


@register_representation("time_surface")
@dataclass(frozen=True)
class TimeSurface(Representation):
    """``to_time_surface`` with fixed options, read at the window's end; C = 2 when split, else 1."""

    tau: float = 50_000.0
    polarity: str = "split"
    normalize: str | None = None

    def __post_init__(self):
        if not (isinstance(self.tau, (int, float, np.integer, np.floating)) and self.tau > 0):
            raise DataError(f"TimeSurface: tau must be a positive time in microseconds; got {self.tau!r}")
        check_choice("TimeSurface", "polarity", self.polarity, TIME_SURFACE_POLARITY)
        check_choice("TimeSurface", "normalize", self.normalize, NORMALIZATIONS)

    @property
    def channels(self) -> int:
        return 2 if self.polarity == "split" else 1

    def __call__(self, events, sensor_size, *, t_start=None, t_end=None) -> np.ndarray:
        """The surface at t_end (the window's end) when given, else at the latest event."""
        return to_time_surface(
            events, sensor_size, tau=self.tau, polarity=self.polarity, t_ref=t_end, normalize=self.normalize
        )
