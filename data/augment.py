"""Event augmentations: pure functions with an explicit random generator, and configured wrappers.

Every function takes N canonical events (sorted by time, inside the sensor; tonic arrays are
converted) and returns a new canonical array, sorted by time and inside the sensor; the input is
never modified. Random ones take ``rng: numpy.random.Generator``: the same generator state gives
the same output. The frozen dataclasses wrap them with a common call,
``aug(events, sensor_size, rng) -> events``, so ``Compose`` can chain them, and each is registered
by name so that a config can ask for a chain as plain values:
``create_augmentation({"translate": {"max_shift": 2}, "drop_events": {"fraction": 0.1}})``
(applied in the order given; ``list_augmentations()`` names them).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from data.errors import DataError
from data.events import EVENT_DTYPE, Events, as_events, check_events

MAX_ADDED_EVENTS = 100_000_000  # noise beyond this in one window is a wrong unit, not an augmentation

# --------------------------------------------------------------------------------------------
# Checks and helpers.


def _prepare(func: str, events, sensor_size) -> tuple[Events, int, int]:
    try:
        width, height = (int(v) for v in tuple(sensor_size)[:2])
    except (TypeError, ValueError):
        width = height = 0
    if width < 1 or height < 1:
        raise DataError(f"{func}: sensor_size must be (width, height) with positive integers; got {sensor_size!r}")
    events = as_events(events, name=f"{func}: events")
    return check_events(events, (width, height), name=f"{func}: events"), width, height


def _events_only(func: str, events) -> Events:
    return check_events(as_events(events, name=f"{func}: events"), name=f"{func}: events")


def _check_rng(func: str, rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise DataError(f"{func}: rng must be a numpy.random.Generator (numpy.random.default_rng(seed)); got {rng!r}")
    return rng


def _check_range(func: str, name: str, value, low: float, high: float = np.inf) -> float:
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not number or not low <= value <= high:  # also refuses NaN
        bounds = f"[{low}, {high}]" if np.isfinite(high) else f">= {low}"
        raise DataError(f"{func}: {name} must be a number {bounds}; got {value!r}")
    return float(value)


def _time_span(events: Events, t_start, t_end) -> tuple[int, int] | None:
    """[t_start, t_end] in microseconds; default the first and last event; None when unknown."""
    if t_start is None and t_end is None and events.size == 0:
        return None
    t0 = int(events["t"][0]) if t_start is None else int(t_start)
    t1 = int(events["t"][-1]) if t_end is None else int(t_end)
    if t1 < t0:
        raise DataError(f"augment: t_end ({t1} us) is before t_start ({t0} us)")
    return t0, t1


def _merge_sorted(events: Events, extra: Events) -> Events:
    """Merge two time-sorted arrays; at equal times the original events come first. O(N + M log N)."""
    slots = np.searchsorted(events["t"], extra["t"], side="right") + np.arange(extra.size)
    out = np.empty(events.size + extra.size, EVENT_DTYPE)
    original = np.ones(out.size, bool)
    original[slots] = False
    out[slots] = extra
    out[original] = events
    return out


def _random_events(rng: np.random.Generator, x, y, t0: int, t1: int) -> Events:
    """Events at the given pixels with uniform integer times in [t0, t1], random polarity, sorted."""
    n = len(x)
    extra = np.empty(n, EVENT_DTYPE)
    extra["x"], extra["y"] = x, y
    extra["t"] = rng.integers(t0, t1, size=n, endpoint=True)
    extra["p"] = rng.integers(0, 2, size=n)
    return extra[np.argsort(extra["t"], kind="stable")]


# --------------------------------------------------------------------------------------------
# The augmentations.


def flip_x(events: Events, sensor_size: tuple[int, int]) -> Events:
    """Mirror left-right: x -> W - 1 - x."""
    events, width, _ = _prepare("flip_x", events, sensor_size)
    out = events.copy()
    out["x"] = width - 1 - events["x"].astype(np.int64)
    return out


def flip_y(events: Events, sensor_size: tuple[int, int]) -> Events:
    """Mirror top-bottom: y -> H - 1 - y."""
    events, _, height = _prepare("flip_y", events, sensor_size)
    out = events.copy()
    out["y"] = height - 1 - events["y"].astype(np.int64)
    return out


def flip_polarity(events: Events, rng: np.random.Generator, p: float = 0.5) -> Events:
    """Turn each event's polarity (ON <-> OFF) with probability ``p``, independently."""
    func = "flip_polarity"
    events, rng, p = _events_only(func, events), _check_rng(func, rng), _check_range(func, "p", p, 0.0, 1.0)
    out = events.copy()
    flip = rng.random(events.size) < p
    out["p"] = np.where(flip, events["p"] <= 0, events["p"] > 0)
    return out


def drop_events(events: Events, rng: np.random.Generator, fraction: float) -> Events:
    """Drop each event with probability ``fraction`` (so about that fraction of them)."""
    func = "drop_events"
    events, rng = _events_only(func, events), _check_rng(func, rng)
    fraction = _check_range(func, "fraction", fraction, 0.0, 1.0)
    return events[rng.random(events.size) >= fraction]


def drop_time_span(events: Events, rng: np.random.Generator, fraction: float) -> Events:
    """Drop the events of one random time interval, ``fraction`` of the events' time span long."""
    func = "drop_time_span"
    events, rng = _events_only(func, events), _check_rng(func, rng)
    fraction = _check_range(func, "fraction", fraction, 0.0, 1.0)
    if events.size == 0 or fraction == 0:
        return events.copy()
    t0, t1 = int(events["t"][0]), int(events["t"][-1])
    length = fraction * (t1 - t0 + 1)
    start = t0 + rng.random() * (t1 - t0 + 1 - length)
    t = events["t"]
    return events[(t < start) | (t >= start + length)]


def drop_area(events: Events, sensor_size: tuple[int, int], rng: np.random.Generator, fraction: float) -> Events:
    """Drop the events of one random box, ``fraction`` of the sensor's width and of its height."""
    func = "drop_area"
    events, width, height = _prepare(func, events, sensor_size)
    rng, fraction = _check_rng(func, rng), _check_range(func, "fraction", fraction, 0.0, 1.0)
    box_w, box_h = round(fraction * width), round(fraction * height)
    x0 = int(rng.integers(0, width - box_w, endpoint=True))
    y0 = int(rng.integers(0, height - box_h, endpoint=True))
    x, y = events["x"], events["y"]
    inside = (x >= x0) & (x < x0 + box_w) & (y >= y0) & (y < y0 + box_h)
    return events[~inside]


def spatial_jitter(events: Events, sensor_size: tuple[int, int], rng: np.random.Generator, sigma: float) -> Events:
    """Move each event by a rounded normal offset (std ``sigma`` pixels) in x and y, clipped to the sensor."""
    func = "spatial_jitter"
    events, width, height = _prepare(func, events, sensor_size)
    rng, sigma = _check_rng(func, rng), _check_range(func, "sigma", sigma, 0.0)
    out = events.copy()
    for field, size in (("x", width), ("y", height)):
        shift = np.rint(rng.normal(0.0, sigma, events.size)).astype(np.int64)
        out[field] = np.clip(events[field].astype(np.int64) + shift, 0, size - 1)
    return out


def temporal_jitter(events: Events, rng: np.random.Generator, sigma_us: float) -> Events:
    """Shift each event's time by a rounded normal offset (std ``sigma_us``), then re-sort (stable).

    Times are clipped to the input's [first, last] time, so the window does not grow.
    """
    func = "temporal_jitter"
    events, rng = _events_only(func, events), _check_rng(func, rng)
    sigma_us = _check_range(func, "sigma_us", sigma_us, 0.0)
    if events.size == 0:
        return events.copy()
    shift = np.rint(rng.normal(0.0, sigma_us, events.size)).astype(np.int64)
    t = np.clip(events["t"] + shift, events["t"][0], events["t"][-1])
    order = np.argsort(t, kind="stable")
    out = events[order]
    out["t"] = t[order]
    return out


def translate(events: Events, sensor_size: tuple[int, int], dx: int, dy: int) -> Events:
    """Shift every event by (dx, dy) whole pixels; events that leave the sensor are dropped."""
    func = "translate"
    events, width, height = _prepare(func, events, sensor_size)
    for name, value in (("dx", dx), ("dy", dy)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise DataError(f"{func}: {name} must be an integer number of pixels; got {value!r}")
    x = events["x"].astype(np.int64) + int(dx)
    y = events["y"].astype(np.int64) + int(dy)
    keep = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    out = events[keep]  # a copy (boolean indexing)
    out["x"], out["y"] = x[keep], y[keep]
    return out


def time_stretch(events: Events, factor: float) -> Events:
    """Scale the time elapsed since the first event by ``factor`` (> 0): t -> t0 + round((t - t0) * factor).

    The order of the events is kept (the map is non-decreasing); a factor above 1 slows the
    recording down, below 1 speeds it up.
    """
    func = "time_stretch"
    events = _events_only(func, events)
    number = isinstance(factor, (int, float, np.integer, np.floating)) and not isinstance(factor, bool)
    if not number or not 0 < factor < np.inf:
        raise DataError(f"{func}: factor must be a positive number; got {factor!r}")
    out = events.copy()
    if events.size:
        t0 = int(events["t"][0])
        out["t"] = t0 + np.rint((events["t"] - t0) * float(factor)).astype(np.int64)
    return out


def add_background_noise(
    events: Events,
    sensor_size: tuple[int, int],
    rng: np.random.Generator,
    rate_hz: float,
    *,
    t_start: int | None = None,
    t_end: int | None = None,
) -> Events:
    """Add uniform random events: ``rate_hz`` per pixel over [t_start, t_end] (µs).

    The count is Poisson(rate_hz * W * H * duration in seconds); pixels, times and polarities are
    uniform. Default time range: the events' first to last time; with no events and no range
    there is no duration, and the events come back unchanged.
    """
    func = "add_background_noise"
    events, width, height = _prepare(func, events, sensor_size)
    rng, rate_hz = _check_rng(func, rng), _check_range(func, "rate_hz", rate_hz, 0.0)
    span = _time_span(events, t_start, t_end)
    if span is None:
        return events.copy()
    expected = rate_hz * width * height * (span[1] - span[0]) * 1e-6
    _check_added(func, expected)
    n = int(rng.poisson(expected))
    x = rng.integers(0, width, n)
    y = rng.integers(0, height, n)
    return _merge_sorted(events, _random_events(rng, x, y, *span))


def add_hot_pixels(
    events: Events,
    sensor_size: tuple[int, int],
    rng: np.random.Generator,
    count: int,
    rate_hz: float,
    *,
    t_start: int | None = None,
    t_end: int | None = None,
) -> Events:
    """Add ``count`` distinct random pixels that fire at ``rate_hz`` each over [t_start, t_end] (µs).

    Each hot pixel fires Poisson(rate_hz * duration in seconds) events at uniform times with random
    polarity. Default time range and empty input as in ``add_background_noise``.
    """
    func = "add_hot_pixels"
    events, width, height = _prepare(func, events, sensor_size)
    rng, rate_hz = _check_rng(func, rng), _check_range(func, "rate_hz", rate_hz, 0.0)
    count = _check_count(func, count, width * height)
    span = _time_span(events, t_start, t_end)
    if span is None or count == 0:
        return events.copy()
    _check_added(func, count * rate_hz * (span[1] - span[0]) * 1e-6)
    pixels = rng.choice(width * height, size=count, replace=False)
    fires = rng.poisson(rate_hz * (span[1] - span[0]) * 1e-6, size=count)
    flat = np.repeat(pixels, fires)
    return _merge_sorted(events, _random_events(rng, flat % width, flat // width, *span))


def _check_added(func: str, expected: float) -> None:
    if expected > MAX_ADDED_EVENTS:
        raise DataError(
            f"{func}: the rate would add about {expected:.3g} events to one window "
            f"(at most {MAX_ADDED_EVENTS:,}); the rate is in Hz per pixel and times in microseconds"
        )


def _check_count(func: str, count, pixels: int) -> int:
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 0 <= count <= pixels:
        raise DataError(f"{func}: count must be an integer in [0, {pixels}] (the sensor's pixels); got {count!r}")
    return int(count)


def _checked(events, sensor_size) -> Events:
    """The wrappers' common check (canonical, sorted, inside the sensor); no copy."""
    return _prepare("augment", events, sensor_size)[0]


def _copy(events, sensor_size) -> Events:
    return _checked(events, sensor_size).copy()


# --------------------------------------------------------------------------------------------
# Configured wrappers: aug(events, sensor_size, rng) -> events, registered by name for configs.

_REGISTRY: dict[str, type] = {}


def register_augmentation(name: str) -> Callable[[type], type]:
    """Class decorator: make a wrapper (a frozen dataclass) available to configs as ``name``."""

    def decorate(cls: type) -> type:
        if name in _REGISTRY:
            raise ValueError(f"augmentation {name!r} is already registered ({_REGISTRY[name].__name__})")
        _REGISTRY[name] = cls
        return cls

    return decorate


@register_augmentation("flip_x")
@dataclass(frozen=True)
class FlipX:
    """Mirror the whole window left-right with probability ``p``."""

    p: float = 0.5

    def __post_init__(self):
        _check_range("FlipX", "p", self.p, 0.0, 1.0)

    def __call__(self, events, sensor_size, rng):
        return flip_x(events, sensor_size) if _check_rng("FlipX", rng).random() < self.p else _copy(events, sensor_size)


@register_augmentation("flip_y")
@dataclass(frozen=True)
class FlipY:
    """Mirror the whole window top-bottom with probability ``p``."""

    p: float = 0.5

    def __post_init__(self):
        _check_range("FlipY", "p", self.p, 0.0, 1.0)

    def __call__(self, events, sensor_size, rng):
        return flip_y(events, sensor_size) if _check_rng("FlipY", rng).random() < self.p else _copy(events, sensor_size)


@register_augmentation("flip_polarity")
@dataclass(frozen=True)
class FlipPolarity:
    """``flip_polarity``: each event's polarity flips with probability ``p``."""

    p: float = 0.5

    def __post_init__(self):
        _check_range("FlipPolarity", "p", self.p, 0.0, 1.0)

    def __call__(self, events, sensor_size, rng):
        return flip_polarity(_checked(events, sensor_size), rng, self.p)


@register_augmentation("drop_events")
@dataclass(frozen=True)
class DropEvents:
    """``drop_events``: each event dropped with probability ``fraction``."""

    fraction: float = 0.1

    def __post_init__(self):
        _check_range("DropEvents", "fraction", self.fraction, 0.0, 1.0)

    def __call__(self, events, sensor_size, rng):
        return drop_events(_checked(events, sensor_size), rng, self.fraction)


@register_augmentation("drop_time_span")
@dataclass(frozen=True)
class DropTimeSpan:
    """``drop_time_span``: drop one random interval, ``fraction`` of the time span long."""

    fraction: float = 0.1

    def __post_init__(self):
        _check_range("DropTimeSpan", "fraction", self.fraction, 0.0, 1.0)

    def __call__(self, events, sensor_size, rng):
        return drop_time_span(_checked(events, sensor_size), rng, self.fraction)


@register_augmentation("drop_area")
@dataclass(frozen=True)
class DropArea:
    """``drop_area``: drop one random box, ``fraction`` of the sensor's width and height."""

    fraction: float = 0.2

    def __post_init__(self):
        _check_range("DropArea", "fraction", self.fraction, 0.0, 1.0)

    def __call__(self, events, sensor_size, rng):
        return drop_area(events, sensor_size, rng, self.fraction)


@register_augmentation("spatial_jitter")
@dataclass(frozen=True)
class SpatialJitter:
    """``spatial_jitter`` with std ``sigma`` pixels."""

    sigma: float = 1.0

    def __post_init__(self):
        _check_range("SpatialJitter", "sigma", self.sigma, 0.0)

    def __call__(self, events, sensor_size, rng):
        return spatial_jitter(events, sensor_size, rng, self.sigma)


@register_augmentation("temporal_jitter")
@dataclass(frozen=True)
class TemporalJitter:
    """``temporal_jitter`` with std ``sigma_us`` microseconds."""

    sigma_us: float = 100.0

    def __post_init__(self):
        _check_range("TemporalJitter", "sigma_us", self.sigma_us, 0.0)

    def __call__(self, events, sensor_size, rng):
        return temporal_jitter(_checked(events, sensor_size), rng, self.sigma_us)


@register_augmentation("background_noise")
@dataclass(frozen=True)
class BackgroundNoise:
    """``add_background_noise`` at ``rate_hz`` events per pixel per second."""

    rate_hz: float = 0.1

    def __post_init__(self):
        _check_range("BackgroundNoise", "rate_hz", self.rate_hz, 0.0)

    def __call__(self, events, sensor_size, rng):
        return add_background_noise(events, sensor_size, rng, self.rate_hz)


@register_augmentation("hot_pixels")
@dataclass(frozen=True)
class HotPixels:
    """``add_hot_pixels``: ``count`` pixels firing at ``rate_hz`` each."""

    count: int = 5
    rate_hz: float = 1_000.0

    def __post_init__(self):
        if isinstance(self.count, bool) or not isinstance(self.count, (int, np.integer)) or self.count < 0:
            raise DataError(f"HotPixels: count must be a non-negative integer; got {self.count!r}")
        _check_range("HotPixels", "rate_hz", self.rate_hz, 0.0)

    def __call__(self, events, sensor_size, rng):
        return add_hot_pixels(events, sensor_size, rng, self.count, self.rate_hz)


@dataclass(frozen=True)
class Compose:
    """Apply augmentations in order, all drawing from the same generator."""

    transforms: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "transforms", tuple(self.transforms))
        for transform in self.transforms:
            if not callable(transform):
                raise DataError(f"Compose: {transform!r} is not callable as aug(events, sensor_size, rng)")

    def __call__(self, events, sensor_size, rng):
        out = _copy(events, sensor_size)  # a new array even when there is nothing to apply
        for transform in self.transforms:
            out = transform(out, sensor_size, rng)
        return out


@register_augmentation("translate")
@dataclass(frozen=True)
class RandomTranslate:
    """``translate`` by whole pixels drawn uniformly from [-max_shift, max_shift] in x and in y (the
    event camera's counterpart of padding and cropping an image); events pushed off the sensor are lost."""

    max_shift: int = 2

    def __post_init__(self):
        if isinstance(self.max_shift, bool) or not isinstance(self.max_shift, (int, np.integer)) or self.max_shift < 0:
            raise DataError(f"RandomTranslate: max_shift must be a non-negative integer; got {self.max_shift!r}")

    def __call__(self, events, sensor_size, rng):
        dx, dy = _check_rng("RandomTranslate", rng).integers(-self.max_shift, self.max_shift, size=2, endpoint=True)
        return translate(events, sensor_size, int(dx), int(dy))


@register_augmentation("time_stretch")
@dataclass(frozen=True)
class TimeStretch:
    """``time_stretch`` by a factor drawn log-uniformly from [1 / max_factor, max_factor]."""

    max_factor: float = 1.2

    def __post_init__(self):
        _check_range("TimeStretch", "max_factor", self.max_factor, 1.0)
        if not np.isfinite(self.max_factor):
            raise DataError(f"TimeStretch: max_factor must be finite; got {self.max_factor!r}")

    def __call__(self, events, sensor_size, rng):
        span = np.log(self.max_factor)
        factor = float(np.exp(_check_rng("TimeStretch", rng).uniform(-span, span)))
        return time_stretch(_checked(events, sensor_size), factor)


# --------------------------------------------------------------------------------------------
# Chains from configs.


def list_augmentations() -> list[str]:
    """Registered augmentation names, sorted."""
    return sorted(_REGISTRY)


def create_augmentation(config: Mapping[str, Mapping[str, Any] | None]) -> Compose:
    """A ``Compose`` of the named augmentations, in the mapping's order, each built with its options.

    Args:
        config: name -> options (keyword arguments of its wrapper; None or {} for the defaults),
            e.g. ``{"translate": {"max_shift": 2}, "time_stretch": {"max_factor": 1.2}}``.

    Raises:
        DataError: an unknown name or option, or a bad value (naming the allowed ones).
    """
    if not isinstance(config, Mapping):
        raise DataError(f"augmentations: expected a mapping of name -> options; got {config!r}")
    transforms = []
    for name, options in config.items():
        if name not in _REGISTRY:
            raise DataError(f"augmentations: unknown {name!r}; choose from {', '.join(list_augmentations())}")
        cls = _REGISTRY[name]
        options = {} if options is None else options
        allowed = [f.name for f in fields(cls)]
        if not isinstance(options, Mapping) or set(options) - set(allowed):
            raise DataError(
                f"augmentations: {name}: options must be a mapping with keys from {', '.join(allowed)}; got {options!r}"
            )
        transforms.append(cls(**options))
    return Compose(tuple(transforms))
