"""Which kernel computes a representation: numba's compiled ones, or numpy's with the same results.

The compiled kernels (``numba_kernels``) are used when numba is installed and ``use_numba`` is True;
otherwise, and for single events, the numpy versions below (``np.add.at``). Both accumulate in
float64 and round to float32 once, at the end. Each returns the index of the first event it did
not place (outside the sensor or the time range) or -1.
"""
from __future__ import annotations

import numpy as np

from data.events import Events
from data.representations.numba_kernels import (
    HISTOGRAM,
    VOXEL_DIRECT,
    VOXEL_SORTED,
    last_time_merged,
    last_time_split,
    numba,
)

use_numba = True  # module switch: False forces the numpy kernels (tests compare both)


def numba_available() -> bool:
    """Whether the compiled kernels are used (numba installed and not switched off)."""
    return numba is not None and use_numba


def _compiled(n_events: int) -> bool:
    # A single event goes to numpy: its field views are contiguous, a layout numba would compile
    # separately (about a second) for no gain.
    return numba_available() and n_events >= 2


def voxel(events: Events, width, height, bins, t0, t1, scale, mode: int, dtype) -> tuple[np.ndarray, int]:
    """The flat (C * H * W,) voxel grid of N events and the index of the first bad event (or -1).

    Sorted windows with at least as many events as (group, pixel)s go to the sorted kernel, which
    returns ``dtype`` (float32, or float64 when a normalisation follows); everything else, and
    any window that kernel stops in (a bad event or events out of time order), to the kernel that
    takes any order, which returns float64. A shuffled window is caught within its first few
    events, so starting again costs little (at worst, disorder near the end, the events are read
    twice).
    """
    channels = bins * (2 if mode == 1 else 1)
    size = channels * height * width
    if _compiled(events.size) and events.size >= (2 if mode == 1 else 1) * height * width:
        out = np.empty(size, dtype)
        if VOXEL_SORTED[mode](events, width, height, bins, t0, t1, scale, out) < 0:
            return out, -1
    out = np.zeros(size, np.float64)
    if _compiled(events.size):
        bad = VOXEL_DIRECT[mode](events, width, height, bins, t0, t1, scale, out)
    else:
        bad = _voxel_numpy(*_fields(events), width, height, bins, t0, t1, scale, mode, out)
    return out, bad


def scatter_histogram(events: Events, width, height, bins, t0, t1, mode: int, out) -> int:
    """Add N events' counts into the flat float64 histogram ``out``; the first bad event's index or -1."""
    if not _compiled(events.size):
        return _histogram_numpy(*_fields(events), width, height, bins, t0, t1, mode, out)
    return HISTOGRAM[mode](*_fields(events), width, height, bins, t0, t1, out)


def last_times(events: Events, width, height, t_ref, split: bool, out) -> int:
    """Raise each pixel of the flat int64 ``out`` to its latest event time <= t_ref; the first bad event or -1."""
    if not _compiled(events.size):
        return _last_time_numpy(*_fields(events), width, height, t_ref, split, out)
    return (last_time_split if split else last_time_merged)(*_fields(events), width, height, t_ref, out)


def _fields(events: Events):
    return events["x"], events["y"], events["t"], events["p"]


# numpy fallbacks with the same results (tested against the numba kernels).


def _first_bad(x, y, t, width, height, t0, t1) -> int:
    bad = (x >= width) | (y >= height) | (t < t0) | (t > t1)
    hits = np.flatnonzero(bad)
    return int(hits[0]) if hits.size else -1


def _voxel_numpy(x, y, t, p, width, height, bins, t0, t1, scale, mode, out) -> int:
    bad = _first_bad(x, y, t, width, height, t0, t1)
    if bad >= 0:
        return bad
    plane = height * width
    tstar = (t - t0) * scale
    lo = tstar.astype(np.int64)
    frac = tstar - lo
    at_end = lo >= bins - 1
    lo[at_end] = bins - 1
    frac[at_end] = 0.0
    weight, base = _weights_numpy(p, bins * plane, mode)
    idx = base + lo * plane + y.astype(np.int64) * width + x
    np.add.at(out, idx, weight * (1.0 - frac))
    upper = frac > 0.0
    np.add.at(out, idx[upper] + plane, (weight * frac)[upper])
    return -1


def _histogram_numpy(x, y, t, p, width, height, bins, t0, t1, mode, out) -> int:
    bad = _first_bad(x, y, t, width, height, t0, t1)
    if bad >= 0:
        return bad
    plane = height * width
    span = t1 - t0
    b = np.minimum((t - t0) * bins // span, bins - 1) if span > 0 else np.zeros(len(t), np.int64)
    weight, base = _weights_numpy(p, bins * plane, mode)
    idx = base + b * plane + y.astype(np.int64) * width + x
    np.add.at(out, idx, weight)
    return -1


def _last_time_numpy(x, y, t, p, width, height, t_ref, split, out) -> int:
    bad = np.flatnonzero((x >= width) | (y >= height))
    if bad.size:
        return int(bad[0])
    keep = t <= t_ref
    idx = y[keep].astype(np.int64) * width + x[keep]
    if split:
        idx += (p[keep] > 0) * (height * width)
    np.maximum.at(out, idx, t[keep])
    return -1


def _weights_numpy(p, group_size: int, mode: int) -> tuple[np.ndarray, np.ndarray | int]:
    on = p > 0
    if mode == 0:
        return np.where(on, 1.0, -1.0), 0
    if mode == 1:
        return np.ones(len(p)), on.astype(np.int64) * group_size
    return np.ones(len(p)), 0
