"""From sensor pixels to frame pixels: the frame size a model sees and the mapping of coordinates.

A frame is the sensor divided by an integer ``downsample`` k (sides ceil(W / k) x ceil(H / k),
coordinates x // k), or a given smaller ``size`` (W', H') (coordinates x * W' // W). Training
(``EventClipDataset``) and streaming both map events with ``rescale_events``, so a model sees the
same pixels in both.
"""
from __future__ import annotations

import functools
import math

import numpy as np

try:
    import numba
except ImportError:  # rescale_events maps with numpy instead, to the same coordinates
    numba = None

from data.errors import DataError
from data.events import Events, SensorSize


def as_size(option: str, value) -> SensorSize:
    """``value`` as (W, H) of positive integers; DataError naming ``option`` otherwise."""
    try:
        width, height = (int(v) for v in value)
        ok = (width, height) == tuple(value) and width >= 1 and height >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DataError(f"{option}: expected (width, height) with positive integers; got {value!r}")
    return width, height


def frame_size(native: SensorSize, downsample: int, size) -> SensorSize:
    """(W', H') of the frames: ``size`` when given (no larger than ``native``), else ``native`` / ``downsample``.

    Raises:
        DataError: a ``downsample`` that is not an integer >= 1, both options given, or a bad ``size``.
    """
    if isinstance(downsample, bool) or not isinstance(downsample, (int, np.integer)) or downsample < 1:
        raise DataError(f"downsample: expected an integer >= 1; got {downsample!r}")
    if size is not None:
        if downsample != 1:
            raise DataError("size, downsample: give one of them, not both")
        width, height = as_size("size", size)
        if width > native[0] or height > native[1]:
            raise DataError(f"size: {width} x {height} is larger than the {native[0]} x {native[1]} sensor")
        return width, height
    return math.ceil(native[0] / downsample), math.ceil(native[1] / downsample)


def rescale_events(events: Events, native: SensorSize, frame: SensorSize, downsample: int = 1,
                   out: Events | None = None) -> Events:
    """Map coordinates from the sensor to the (smaller) frame: x // k, or x * W' // W for a size.

    ``out``: an event array of at least N events to write into (a buffer reused from window to
    window spares a fresh allocation per dense window); default a new array. ``events`` is returned
    unchanged when the frame is the sensor.
    """
    if tuple(frame) == tuple(native):
        return events
    out = np.empty_like(events) if out is None else out[: len(events)]
    # One pass over the records with a table per axis (about 2 ns an event against 12 for the numpy
    # passes below); an event outside the sensor (the representation reports it) goes to numpy.
    if numba is not None and len(events) >= 2 and _rescale_records(
            events, out, *_coordinate_tables(tuple(native), tuple(frame), downsample)) < 0:
        return out
    if downsample > 1:
        np.floor_divide(events["x"], downsample, out=out["x"])
        np.floor_divide(events["y"], downsample, out=out["y"])
    else:  # uint32 holds 65535 * 65535
        np.floor_divide(events["x"].astype(np.uint32) * frame[0], native[0], out=out["x"], casting="unsafe")
        np.floor_divide(events["y"].astype(np.uint32) * frame[1], native[1], out=out["y"], casting="unsafe")
    out["t"], out["p"] = events["t"], events["p"]
    return out


@functools.lru_cache(maxsize=16)
def _coordinate_tables(native: SensorSize, frame: SensorSize, downsample: int) -> tuple[np.ndarray, np.ndarray]:
    """The frame coordinate of every sensor column and row, as ``rescale_events`` maps them."""
    tables = []
    for axis in (0, 1):
        sensor = np.arange(native[axis], dtype=np.uint32)
        mapped = sensor // downsample if downsample > 1 else sensor * frame[axis] // native[axis]
        tables.append(mapped.astype(np.uint16))
    return tables[0], tables[1]


def _rescale_records_py(events, out, x_of, y_of):  # pragma: no cover (numba)
    """Write each event with its mapped x, y into ``out``; the index of the first event outside the
    tables (nothing written from it on), or -1."""
    for i in range(events.shape[0]):
        e = events[i]
        if e.x >= x_of.shape[0] or e.y >= y_of.shape[0]:
            return i
        o = out[i]
        o.x = x_of[e.x]
        o.y = y_of[e.y]
        o.t = e.t
        o.p = e.p
    return -1


_rescale_records = numba.njit(cache=True, nogil=True)(_rescale_records_py) if numba is not None else None
