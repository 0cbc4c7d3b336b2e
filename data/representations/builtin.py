"""The built-in representations: voxel grid, event histogram, time surface.

Each is a function (``to_voxel_grid``, ``to_event_histogram``, ``to_time_surface``) that checks its
options, hands the events to a kernel (``kernels``) and finishes the grid (``normalize``), and a
registered ``Representation`` holding its options (``VoxelGrid``, ``EventHistogram``,
``TimeSurface``). The conventions they share are in the package docstring.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data.errors import DataError
from data.events import Events
from data.representations.kernels import last_times, scatter_histogram, voxel
from data.representations.normalize import finish
from data.representations.options import (
    NORMALIZATIONS,
    TIME_SURFACE_POLARITY,
    binned_channels,
    check_binned,
    check_choice,
    prepare,
    raise_bad_event,
    time_range,
)
from data.representations.registry import Representation, register_representation

MODE_CODE = {"signed": 0, "split": 1, "merged": 2}  # the kernels' polarity modes
NEVER = np.iinfo(np.int64).min  # "this pixel never fired" in the time-surface kernel


def to_voxel_grid(
    events: Events,
    sensor_size: tuple[int, int],
    bins: int,
    *,
    polarity: str = "signed",
    normalize: str | None = None,
    t_start: int | None = None,
    t_end: int | None = None,
    allow_empty: bool = True,
) -> np.ndarray:
    """Voxel grid with bilinear interpolation in time (Zhu et al. 2019, E2VID).

    Each event's time maps to t* = (bins - 1) (t - t_start) / (t_end - t_start) in [0, bins - 1],
    and its weight (+1 / -1 when signed, +1 otherwise) is split between bins floor(t*) and
    floor(t*) + 1 as (1 - frac, frac). Nothing is lost: the grid sums to the signed sum of
    polarities (``"signed"``) or to the event count. When t_end == t_start (one timestamp)
    everything lands in bin 0.

    Args:
        events: N events; any order when t_start and t_end are given, else sorted by time.
        sensor_size: (W, H), or tonic's (W, H, P).
        bins: time bins B >= 1.
        polarity: ``"signed"``, ``"split"`` or ``"merged"`` (module docstring).
        normalize: None, ``"minmax"``, ``"standard"`` or ``"abs_max"`` (see ``normalize_grid``).
        t_start, t_end: the time range in microseconds mapped onto the bins; default the first
            and last event times. Events outside it are a DataError.
        allow_empty: False makes an empty input a DataError instead of zeros.

    Returns:
        (C, H, W) float32, C = bins, or 2 * bins when split.
    """
    func = "to_voxel_grid"
    events, width, height = prepare(func, events, sensor_size, allow_empty)
    bins = check_binned(func, bins, polarity, normalize)
    channels = binned_channels(bins, polarity)
    if not events.size:
        return finish(np.zeros(channels * height * width, np.float32), channels, height, width, normalize)
    t0, t1 = time_range(func, events, t_start, t_end)
    scale = (bins - 1) / (t1 - t0) if t1 > t0 else 0.0
    # Normalisation works on the float64 sums, so the grid is rounded to float32 once, after it.
    dtype = np.float32 if normalize is None else np.float64
    flat, bad = voxel(events, width, height, bins, t0, t1, scale, MODE_CODE[polarity], dtype)
    if bad >= 0:
        raise_bad_event(func, events, bad, width, height, t0, t1)
    return finish(flat, channels, height, width, normalize)


def to_event_histogram(
    events: Events,
    sensor_size: tuple[int, int],
    *,
    bins: int = 1,
    polarity: str = "split",
    normalize: str | None = None,
    t_start: int | None = None,
    t_end: int | None = None,
    allow_empty: bool = True,
) -> np.ndarray:
    """Event counts per pixel, per polarity, optionally in time bins (no interpolation).

    An event falls in bin floor(bins (t - t_start) / (t_end - t_start)), computed in integers so
    the bin edges are exact; an event at t_end counts in the last bin.

    Args:
        events: N events (sorted by time unless t_start and t_end are given).
        sensor_size: (W, H), or tonic's (W, H, P).
        bins: time bins B >= 1.
        polarity: ``"split"`` (counts per polarity, C = 2 * bins), ``"merged"`` or ``"signed"``
            (ON minus OFF counts), both C = bins.
        normalize: None, ``"minmax"``, ``"standard"`` or ``"abs_max"``.
        t_start, t_end: time range in microseconds; default the first and last event times.
        allow_empty: False makes an empty input a DataError instead of zeros.

    Returns:
        (C, H, W) float32.
    """
    func = "to_event_histogram"
    events, width, height = prepare(func, events, sensor_size, allow_empty)
    bins = check_binned(func, bins, polarity, normalize)
    channels = binned_channels(bins, polarity)
    flat = np.zeros(channels * height * width, np.float64)
    if events.size:
        t0, t1 = time_range(func, events, t_start, t_end)
        bad = scatter_histogram(events, width, height, bins, t0, t1, MODE_CODE[polarity], flat)
        if bad >= 0:
            raise_bad_event(func, events, bad, width, height, t0, t1)
    return finish(flat, channels, height, width, normalize)


def to_time_surface(
    events: Events,
    sensor_size: tuple[int, int],
    *,
    tau: float = 50_000.0,
    polarity: str = "split",
    t_ref: int | None = None,
    normalize: str | None = None,
    allow_empty: bool = True,
) -> np.ndarray:
    """Exponentially decayed time surface: exp(-(t_ref - t_last) / tau) per pixel and polarity.

    t_last is the latest event of that pixel (and polarity) at or before t_ref; events after t_ref
    have not happened yet and are ignored. Pixels that never fired are 0, the latest pixel is 1.

    Args:
        events: N events, any order.
        sensor_size: (W, H), or tonic's (W, H, P).
        tau: decay time constant in microseconds (> 0).
        polarity: ``"split"`` (C = 2, OFF then ON) or ``"merged"`` (C = 1).
        t_ref: the time the surface is read at, in microseconds; default the latest event time.
        normalize: None, ``"minmax"``, ``"standard"`` or ``"abs_max"``.
        allow_empty: False makes an empty input a DataError instead of zeros.

    Returns:
        (C, H, W) float32 in [0, 1] (before normalisation).
    """
    func = "to_time_surface"
    events, width, height = prepare(func, events, sensor_size, allow_empty)
    if not tau > 0:
        raise DataError(f"{func}: tau must be a positive time in microseconds; got {tau!r}")
    check_choice(func, "polarity", polarity, TIME_SURFACE_POLARITY)
    check_choice(func, "normalize", normalize, NORMALIZATIONS)
    channels = 2 if polarity == "split" else 1
    last = np.full(channels * height * width, NEVER, np.int64)
    if events.size:
        ref = int(events["t"].max()) if t_ref is None else int(t_ref)
        bad = last_times(events, width, height, ref, polarity == "split", last)
        if bad >= 0:
            raise_bad_event(func, events, bad, width, height, NEVER, ref)
    fired = last != NEVER
    flat = np.zeros(last.shape, np.float64)
    if fired.any():
        flat[fired] = np.exp(-(ref - last[fired]) / float(tau))
    return finish(flat, channels, height, width, normalize)


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
