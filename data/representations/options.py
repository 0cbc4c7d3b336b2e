"""The options every representation shares, their checks, and the steps every one of them takes.

Each check raises a DataError that names the function (``func``) and the option.
"""
from __future__ import annotations

import numpy as np

from data.errors import DataError
from data.events import Events, as_events

POLARITY_MODES = ("signed", "split", "merged")
TIME_SURFACE_POLARITY = ("split", "merged")
NORMALIZATIONS = (None, "minmax", "standard", "abs_max")


def check_choice(func: str, option: str, value, allowed: tuple) -> None:
    """``value`` is one of ``allowed``."""
    if value not in allowed:
        raise DataError(f"{func}: {option} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def check_sensor(func: str, sensor_size) -> tuple[int, int]:
    """(W, H) from (W, H) or tonic's (W, H, P)."""
    try:
        dims = tuple(int(v) for v in sensor_size)
    except (TypeError, ValueError):
        dims = ()
    if len(dims) not in (2, 3) or min(dims[:2], default=0) < 1:
        raise DataError(f"{func}: sensor_size must be (width, height) with positive integers; got {sensor_size!r}")
    return dims[0], dims[1]


def prepare(func: str, events, sensor_size, allow_empty: bool) -> tuple[Events, int, int]:
    """Canonical events (N,) and the sensor's W, H; an empty input only when ``allow_empty``."""
    events = as_events(events, name=f"{func}: events")
    width, height = check_sensor(func, sensor_size)
    if events.size == 0 and not allow_empty:
        raise DataError(f"{func}: the event window is empty (allow_empty=False)")
    return events, width, height


def time_range(func: str, events: Events, t_start, t_end) -> tuple[int, int]:
    """[t_start, t_end] in microseconds; defaults: the first and last event times."""
    t0 = int(events["t"][0]) if t_start is None else int(t_start)
    t1 = int(events["t"][-1]) if t_end is None else int(t_end)
    if t1 < t0:
        raise DataError(f"{func}: t_end ({t1} us) is before t_start ({t0} us)")
    return t0, t1


def raise_bad_event(func: str, events: Events, i: int, width: int, height: int, t0: int, t1: int) -> None:
    """Raise the DataError for event ``i``, which a kernel could not place (outside the sensor or [t0, t1])."""
    x, y, t = int(events["x"][i]), int(events["y"][i]), int(events["t"][i])
    if x >= width or y >= height:
        raise DataError(f"{func}: event {i} at (x={x}, y={y}) is outside the {width} x {height} sensor")
    hint = "" if t0 <= t <= t1 else " (without t_start/t_end the events must be sorted by time)"
    raise DataError(f"{func}: event {i} at t={t} us is outside the time range [{t0}, {t1}] us{hint}")


def check_bins(func: str, bins) -> int:
    """``bins`` as a positive int."""
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise DataError(f"{func}: bins must be a positive integer; got {bins!r}")
    return int(bins)


def check_binned(func: str, bins, polarity, normalize) -> int:
    """The options of a representation in time bins (voxel grid, histogram); ``bins`` as an int."""
    bins = check_bins(func, bins)
    check_choice(func, "polarity", polarity, POLARITY_MODES)
    check_choice(func, "normalize", normalize, NORMALIZATIONS)
    return bins


def binned_channels(bins: int, polarity: str) -> int:
    """C of a representation in time bins: ``bins``, twice that when split."""
    return bins * (2 if polarity == "split" else 1)
