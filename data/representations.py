"""Dense representations of an event window: voxel grid, event histogram, time surface.

Every function takes a canonical event array (``data.events``; tonic arrays are converted) and a
sensor size ``(W, H)`` and returns a new ``float32`` numpy array of shape ``(C, H, W)``; turning it
into a tensor is the caller's business. Inputs are never modified.

Channel layout. ``polarity`` picks how ON and OFF events enter the C channels:

- ``"signed"``: one channel group, ON events count +1 and OFF events -1 (C = bins);
- ``"split"``: two channel groups, OFF first then ON (channel = p * bins + bin, C = 2 * bins);
- ``"merged"``: one channel group, every event counts +1 (C = bins).

Empty input gives zeros of the right shape (an empty duration window is normal in a stream), unless
the caller passes ``allow_empty=False``, which makes it a DataError. Events outside the sensor, or
outside an explicit ``[t_start, t_end]``, are a DataError naming the first offending event.

The scatter kernels are compiled with numba when it is installed (the first call of each kernel
and polarity mode compiles, about a second; ``cache=True`` keeps the machine code in
``__pycache__`` for later processes) and fall back to numpy (``np.add.at``) otherwise. Both
accumulate in float64 and round to float32 once, at the end.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import ClassVar

import numpy as np

from data.errors import DataError
from data.events import Events, as_events

try:
    import numba
except ImportError:  # the numpy kernels below give the same results, slower
    numba = None

POLARITY_MODES = ("signed", "split", "merged")
NORMALIZATIONS = (None, "minmax", "standard", "abs_max")
_MODE_CODE = {"signed": 0, "split": 1, "merged": 2}
_NEVER = np.iinfo(np.int64).min  # "this pixel never fired" in the time-surface kernel


# --------------------------------------------------------------------------------------------
# Kernels. Each returns the index of the first event it did not place (outside the sensor or the
# time range; for the sorted voxel kernel also the first one out of time order) or -1. The voxel
# kernels read the event records themselves (one pointer into the (N,) array instead of four
# strided field views: fewer registers in the loop, 1.25x faster); the others take the fields.
# ``out`` is a flat (C * H * W,) grid: float64 zeros for the scatter kernels (int64,
# sentinel-filled, for last times); for the sorted voxel kernel an uninitialised float32 or
# float64 grid that it writes in full.
# Each ``*_impl`` is inlined into one small kernel per polarity mode, so that the mode is a
# compile-time constant and the polarity a select rather than a branch on random data: that made
# the loops 1.5x faster than one kernel taking the mode as an argument.

def _jit(func=None, *, inline: bool = False):
    if numba is None:
        return func if func is not None else (lambda f: f)
    options = {"inline": "always"} if inline else {"cache": True, "nogil": True}
    decorate = numba.njit(**options)
    return decorate(func) if func is not None else decorate


if numba is not None:
    from llvmlite import ir
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def _prefetch_for_write(typingctx, array, index):
        """``array[index]`` (flat, no bounds or sign check) is fetched into the cache, for writing.

        Only a hint: it changes no result, returns at once, and never faults (an index outside
        the array, from a bad event ahead, is harmless). A scatter over a grid larger than the
        core's L2 cache waits on one cache miss after another; asking for the cache line of the
        event a few dozen events ahead lets the misses overlap: 1.1x on 346 x 260 and 640 x 480
        grids, 2x on 1280 x 720 or while another process evicts our data from the shared L3.
        """
        if not isinstance(array, numba.types.Array) or not isinstance(index, numba.types.Integer):
            return None

        def codegen(context, builder, signature, args):
            array_type = signature.args[0]
            data = context.make_array(array_type)(context, builder, args[0])
            pointer = cgutils.get_item_pointer(context, builder, array_type, data, [args[1]], wraparound=False)
            i32 = ir.IntType(32)
            suffix = "p0" if pointer.type.is_opaque else "p0i8"  # LLVM's name for the pointer type
            prefetch = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [pointer.type, i32, i32, i32]), f"llvm.prefetch.{suffix}"
            )
            # (address, 1 = for writing, 3 = keep in all cache levels, 1 = data)
            builder.call(prefetch, [pointer, ir.Constant(i32, 1), ir.Constant(i32, 3), ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return numba.types.void(array, index), codegen

else:

    def _prefetch_for_write(array, index):  # the numba kernels are not called without numba
        pass


_PREFETCH_AHEAD = 32  # events; 16 to 64 were within a few per cent of each other


@_jit
def _bin_start(b, t0, t1, scale):  # pragma: no cover (numba)
    """The first time (us) whose t* = (t - t0) * scale, computed as the kernels compute it, is at
    least b; t1 + 1 when no time in [t0, t1] is (or scale is 0)."""
    if scale == 0.0 or b / scale > np.float64(t1 - t0) + 1.0:
        return t1 + 1
    d = np.int64(np.ceil(b / scale))  # within a few microseconds of the answer: step to it
    while d > 0 and (d - 1) * scale >= b:
        d -= 1
    while d * scale < b:
        d += 1
    return min(t0 + d, t1 + 1)


@_jit
def _emit_bin(acc, out, b, bins, plane, groups):  # pragma: no cover (numba)
    """Bin b is final: write each group's plane of it from the pairs' first halves into ``out``
    (rounding to out's dtype, the one rounding of the sum), then move the second halves (bin
    b + 1 so far) into the first and zero the second. (Not inlined: it runs once per bin, and
    inlining it and ``_bin_start`` doubled the kernel's compile time to 2 s.)"""
    for g in range(groups):
        src = 2 * g * plane
        dst = (g * bins + b) * plane
        for q in range(plane):
            out[dst + q] = acc[src + 2 * q]
            acc[src + 2 * q] = acc[src + 2 * q + 1]
            acc[src + 2 * q + 1] = 0.0


@_jit(inline=True)
def _voxel_sorted_impl(events, width, height, bins, t0, t1, scale, mode, out):  # pragma: no cover
    # For events sorted by time (dense windows). An event in bin ``cur`` adds to bins cur and
    # cur + 1 only, so the accumulator is one float64 pair per (group, pixel): acc is
    # (groups, plane, 2), [.., 0] = bin cur and [.., 1] = bin cur + 1, and an event touches one
    # 16-byte pair (one cache line) where a scatter into the (C, H, W) planes touches two. When
    # the events move past bin cur it is final: ``_emit_bin`` writes it to ``out`` and shifts
    # the pairs by one bin. So the passes over the sensor are one per bin over acc plus the
    # writing of ``out`` itself, with no float64 (C, H, W) grid to zero and convert afterwards.
    # The hot path is an event of bin cur, tested on the integer time alone (one unsigned
    # compare: t_lo <= t < t_hi, the bin's time range, which lies inside [t0, t1]), with frac =
    # t* - cur and no conversion of t* to an integer. A new bin, the last bin (where frac must be
    # 0) and bad events take the slow path.
    # Returns at the first bad event, or at the first event earlier than bin cur (the events are
    # not sorted; the caller then starts again with ``_voxel_direct``); ``out`` is then unfinished.
    plane = height * width
    last = bins - 1
    groups = 2 if mode == 1 else 1
    w_off = -1.0 if mode == 0 else 1.0
    on_offset = 2 * plane if mode == 1 else 0  # skip the OFF group's pairs
    acc = np.zeros(groups * plane * 2)
    cur = 0
    cur_f = 0.0
    t_lo = t0
    # With scale 0 (bins == 1, or t1 == t0) t* is 0 for every event: all of [t0, t1] is bin 0.
    t_hi = _bin_start(1, t0, t1, scale) if last > 0 or scale == 0.0 else t0
    span = np.uint64(t_hi - t_lo)
    n = events.shape[0]
    for i in range(n):
        ahead = events[min(i + _PREFETCH_AHEAD, n - 1)]  # its pair is fetched while we work on these
        ahead_pixel = np.int64(ahead.y) * width + np.int64(ahead.x)
        _prefetch_for_write(acc, 2 * ahead_pixel + (on_offset if ahead.p > 0 else 0))
        e = events[i]
        xi = np.int64(e.x)
        yi = np.int64(e.y)
        ti = e.t
        if xi >= width or yi >= height:
            return i
        if np.uint64(ti - t_lo) < span:  # t_lo <= ti < t_hi (a ti below t_lo wraps to a large value)
            frac = (ti - t0) * scale - cur_f
        else:
            if ti < t0 or ti > t1:
                return i
            tstar = (ti - t0) * scale
            lo = np.int64(tstar)  # tstar >= 0, so truncation is floor
            frac = tstar - lo
            if lo >= last:  # t == t_end (or one ulp over): all of the weight goes to the last bin
                lo = last
                frac = 0.0
            if lo < cur:
                return i
            if lo > cur:
                while cur < lo:  # bins before lo are final (empty ones included)
                    _emit_bin(acc, out, cur, bins, plane, groups)
                    cur += 1
                cur_f = np.float64(cur)
                t_lo = _bin_start(cur, t0, t1, scale)
                t_hi = _bin_start(cur + 1, t0, t1, scale) if cur < last else t_lo  # scale > 0 here
                span = np.uint64(t_hi - t_lo)
        on = e.p > 0
        weight = 1.0 if on else w_off
        k = 2 * (yi * width + xi) + (on_offset if on else 0)
        acc[k] += weight - weight * frac
        acc[k + 1] += weight * frac  # in the last bin frac is 0: adds 0
    while cur < bins:
        _emit_bin(acc, out, cur, bins, plane, groups)
        cur += 1
    return -1


@_jit(inline=True)
def _voxel_direct_impl(events, width, height, bins, t0, t1, scale, mode, out):  # pragma: no cover
    # Straight into the float64 planes: for sparse windows and for events in any order.
    plane = height * width
    last = bins - 1
    w_off = -1.0 if mode == 0 else 1.0
    on_offset = bins * plane if mode == 1 else 0
    for i in range(events.shape[0]):
        e = events[i]
        xi = np.int64(e.x)
        yi = np.int64(e.y)
        ti = e.t
        if xi >= width or yi >= height or ti < t0 or ti > t1:
            return i
        tstar = (ti - t0) * scale
        lo = np.int64(tstar)
        frac = tstar - lo
        if lo >= last:
            lo = last
            frac = 0.0
        on = e.p > 0
        weight = 1.0 if on else w_off
        idx = lo * plane + yi * width + xi + (on_offset if on else 0)
        out[idx] += weight - weight * frac
        if frac > 0.0:
            out[idx + plane] += weight * frac
    return -1


@_jit(inline=True)
def _histogram_impl(x, y, t, p, width, height, bins, t0, t1, mode, out):  # pragma: no cover
    plane = height * width
    span = t1 - t0
    w_off = -1.0 if mode == 0 else 1.0
    on_offset = bins * plane if mode == 1 else 0
    for i in range(t.shape[0]):
        xi = np.int64(x[i])
        yi = np.int64(y[i])
        ti = t[i]
        if xi >= width or yi >= height or ti < t0 or ti > t1:
            return i
        b = 0
        if span > 0:  # integer arithmetic: bin edges are exact
            b = min(((ti - t0) * bins) // span, bins - 1)
        on = p[i] > 0
        out[b * plane + yi * width + xi + (on_offset if on else 0)] += 1.0 if on else w_off
    return -1


@_jit(inline=True)
def _last_time_impl(x, y, t, p, width, height, t_ref, split, out):  # pragma: no cover
    on_offset = height * width if split else 0
    for i in range(t.shape[0]):
        xi = np.int64(x[i])
        yi = np.int64(y[i])
        if xi >= width or yi >= height:
            return i
        ti = t[i]
        if ti > t_ref:  # has not happened yet at t_ref
            continue
        idx = yi * width + xi + (on_offset if p[i] > 0 else 0)
        if ti > out[idx]:  # max, not last written: the result does not depend on event order
            out[idx] = ti
    return -1


# One compiled kernel per mode (signed 0, split 1, merged 2): an inlined impl with a constant mode.


@_jit
def _voxel_sorted_0(events, width, height, bins, t0, t1, scale, out):  # pragma: no cover
    return _voxel_sorted_impl(events, width, height, bins, t0, t1, scale, 0, out)


@_jit
def _voxel_sorted_1(events, width, height, bins, t0, t1, scale, out):  # pragma: no cover
    return _voxel_sorted_impl(events, width, height, bins, t0, t1, scale, 1, out)


@_jit
def _voxel_sorted_2(events, width, height, bins, t0, t1, scale, out):  # pragma: no cover
    return _voxel_sorted_impl(events, width, height, bins, t0, t1, scale, 2, out)


@_jit
def _voxel_direct_0(events, width, height, bins, t0, t1, scale, out):  # pragma: no cover
    return _voxel_direct_impl(events, width, height, bins, t0, t1, scale, 0, out)


@_jit
def _voxel_direct_1(events, width, height, bins, t0, t1, scale, out):  # pragma: no cover
    return _voxel_direct_impl(events, width, height, bins, t0, t1, scale, 1, out)


@_jit
def _voxel_direct_2(events, width, height, bins, t0, t1, scale, out):  # pragma: no cover
    return _voxel_direct_impl(events, width, height, bins, t0, t1, scale, 2, out)


@_jit
def _histogram_0(x, y, t, p, width, height, bins, t0, t1, out):  # pragma: no cover
    return _histogram_impl(x, y, t, p, width, height, bins, t0, t1, 0, out)


@_jit
def _histogram_1(x, y, t, p, width, height, bins, t0, t1, out):  # pragma: no cover
    return _histogram_impl(x, y, t, p, width, height, bins, t0, t1, 1, out)


@_jit
def _histogram_2(x, y, t, p, width, height, bins, t0, t1, out):  # pragma: no cover
    return _histogram_impl(x, y, t, p, width, height, bins, t0, t1, 2, out)


@_jit
def _last_time_merged(x, y, t, p, width, height, t_ref, out):  # pragma: no cover
    return _last_time_impl(x, y, t, p, width, height, t_ref, False, out)


@_jit
def _last_time_split(x, y, t, p, width, height, t_ref, out):  # pragma: no cover
    return _last_time_impl(x, y, t, p, width, height, t_ref, True, out)


_VOXEL_SORTED = (_voxel_sorted_0, _voxel_sorted_1, _voxel_sorted_2)
_VOXEL_DIRECT = (_voxel_direct_0, _voxel_direct_1, _voxel_direct_2)
_HISTOGRAM = (_histogram_0, _histogram_1, _histogram_2)


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


use_numba = True  # module switch: False forces the numpy kernels (tests compare both)


def numba_available() -> bool:
    """Whether the compiled kernels are used (numba installed and not switched off)."""
    return numba is not None and use_numba


def _compiled(n_events: int) -> bool:
    # A single event goes to numpy: its field views are contiguous, a layout numba would compile
    # separately (about a second) for no gain.
    return numba_available() and n_events >= 2


def _voxel(events: Events, width, height, bins, t0, t1, scale, mode: int, dtype) -> tuple[np.ndarray, int]:
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
        if _VOXEL_SORTED[mode](events, width, height, bins, t0, t1, scale, out) < 0:
            return out, -1
    out = np.zeros(size, np.float64)
    if _compiled(events.size):
        bad = _VOXEL_DIRECT[mode](events, width, height, bins, t0, t1, scale, out)
    else:
        bad = _voxel_numpy(*_fields(events), width, height, bins, t0, t1, scale, mode, out)
    return out, bad


def _scatter_histogram(events: Events, width, height, bins, t0, t1, mode: int, out) -> int:
    if not _compiled(events.size):
        return _histogram_numpy(*_fields(events), width, height, bins, t0, t1, mode, out)
    return _HISTOGRAM[mode](*_fields(events), width, height, bins, t0, t1, out)


def _last_times(events: Events, width, height, t_ref, split: bool, out) -> int:
    if not _compiled(events.size):
        return _last_time_numpy(*_fields(events), width, height, t_ref, split, out)
    return (_last_time_split if split else _last_time_merged)(*_fields(events), width, height, t_ref, out)


# --------------------------------------------------------------------------------------------
# Option checks and shared steps.


def _check_choice(func: str, option: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise DataError(f"{func}: {option} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def _sensor(func: str, sensor_size) -> tuple[int, int]:
    """(W, H) from (W, H) or tonic's (W, H, P)."""
    try:
        dims = tuple(int(v) for v in sensor_size)
    except (TypeError, ValueError):
        dims = ()
    if len(dims) not in (2, 3) or min(dims[:2], default=0) < 1:
        raise DataError(f"{func}: sensor_size must be (width, height) with positive integers; got {sensor_size!r}")
    return dims[0], dims[1]


def _prepare(func: str, events, sensor_size, allow_empty: bool) -> tuple[Events, int, int]:
    events = as_events(events, name=f"{func}: events")
    width, height = _sensor(func, sensor_size)
    if events.size == 0 and not allow_empty:
        raise DataError(f"{func}: the event window is empty (allow_empty=False)")
    return events, width, height


def _time_range(func: str, events: Events, t_start, t_end) -> tuple[int, int]:
    """[t_start, t_end] in microseconds; defaults: the first and last event times."""
    t0 = int(events["t"][0]) if t_start is None else int(t_start)
    t1 = int(events["t"][-1]) if t_end is None else int(t_end)
    if t1 < t0:
        raise DataError(f"{func}: t_end ({t1} us) is before t_start ({t0} us)")
    return t0, t1


def _raise_bad_event(func: str, events: Events, i: int, width: int, height: int, t0: int, t1: int) -> None:
    x, y, t = int(events["x"][i]), int(events["y"][i]), int(events["t"][i])
    if x >= width or y >= height:
        raise DataError(f"{func}: event {i} at (x={x}, y={y}) is outside the {width} x {height} sensor")
    hint = "" if t0 <= t <= t1 else " (without t_start/t_end the events must be sorted by time)"
    raise DataError(f"{func}: event {i} at t={t} us is outside the time range [{t0}, {t1}] us{hint}")


def _fields(events: Events):
    return events["x"], events["y"], events["t"], events["p"]


def normalize_grid(grid: np.ndarray, method: str | None) -> np.ndarray:
    """Normalise a representation over all its cells (a new array; ``grid`` is left alone).

    Args:
        grid: (C, H, W) representation.
        method: None (unchanged); ``"minmax"``: (g - min) / (max - min), into [0, 1];
            ``"abs_max"``: g / max|g|, into [-1, 1], zero stays zero; ``"standard"``: as E2VID,
            the non-zero cells get (g - mean) / std of the non-zero cells and zero cells stay zero.
            A constant grid (no spread) maps to zeros rather than dividing by zero.

    Returns:
        (C, H, W) array of the input's float dtype (float64 for integer input), computed in float64.
    """
    _check_choice("normalize_grid", "method", method, NORMALIZATIONS)
    dtype = np.result_type(grid.dtype, np.float32)
    out = np.array(grid, dtype=np.float64, copy=True)
    if method is None or out.size == 0:
        return out.astype(dtype, copy=False)
    if method == "minmax":
        low, high = out.min(), out.max()
        out = (out - low) / (high - low) if high > low else np.zeros_like(out)
    elif method == "abs_max":
        scale = np.abs(out).max()
        out = out / scale if scale > 0 else out
    else:
        nonzero = out != 0
        if nonzero.any():
            values = out[nonzero]
            std = values.std()
            out[nonzero] = (values - values.mean()) / std if std > 0 else 0.0
    return out.astype(dtype, copy=False)


def _finish(flat: np.ndarray, channels: int, height: int, width: int, method: str | None) -> np.ndarray:
    grid = flat.reshape(channels, height, width)
    if method is not None:
        grid = normalize_grid(grid, method)  # computed in float64
    return grid.astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------
# The representations.


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
    events, width, height = _prepare(func, events, sensor_size, allow_empty)
    bins = _check_bins(func, bins)
    _check_choice(func, "polarity", polarity, POLARITY_MODES)
    _check_choice(func, "normalize", normalize, NORMALIZATIONS)
    channels = bins * (2 if polarity == "split" else 1)
    if not events.size:
        return _finish(np.zeros(channels * height * width, np.float32), channels, height, width, normalize)
    t0, t1 = _time_range(func, events, t_start, t_end)
    scale = (bins - 1) / (t1 - t0) if t1 > t0 else 0.0
    # Normalisation works on the float64 sums, so the grid is rounded to float32 once, after it.
    dtype = np.float32 if normalize is None else np.float64
    flat, bad = _voxel(events, width, height, bins, t0, t1, scale, _MODE_CODE[polarity], dtype)
    if bad >= 0:
        _raise_bad_event(func, events, bad, width, height, t0, t1)
    return _finish(flat, channels, height, width, normalize)


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
    events, width, height = _prepare(func, events, sensor_size, allow_empty)
    bins = _check_bins(func, bins)
    _check_choice(func, "polarity", polarity, POLARITY_MODES)
    _check_choice(func, "normalize", normalize, NORMALIZATIONS)
    channels = bins * (2 if polarity == "split" else 1)
    flat = np.zeros(channels * height * width, np.float64)
    if events.size:
        t0, t1 = _time_range(func, events, t_start, t_end)
        bad = _scatter_histogram(events, width, height, bins, t0, t1, _MODE_CODE[polarity], flat)
        if bad >= 0:
            _raise_bad_event(func, events, bad, width, height, t0, t1)
    return _finish(flat, channels, height, width, normalize)


TIME_SURFACE_POLARITY = ("split", "merged")


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
    events, width, height = _prepare(func, events, sensor_size, allow_empty)
    if not tau > 0:
        raise DataError(f"{func}: tau must be a positive time in microseconds; got {tau!r}")
    _check_choice(func, "polarity", polarity, TIME_SURFACE_POLARITY)
    _check_choice(func, "normalize", normalize, NORMALIZATIONS)
    channels = 2 if polarity == "split" else 1
    last = np.full(channels * height * width, _NEVER, np.int64)
    if events.size:
        ref = int(events["t"].max()) if t_ref is None else int(t_ref)
        bad = _last_times(events, width, height, ref, polarity == "split", last)
        if bad >= 0:
            _raise_bad_event(func, events, bad, width, height, _NEVER, ref)
    fired = last != _NEVER
    flat = np.zeros(last.shape, np.float64)
    if fired.any():
        flat[fired] = np.exp(-(ref - last[fired]) / float(tau))
    return _finish(flat, channels, height, width, normalize)


def _check_bins(func: str, bins) -> int:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise DataError(f"{func}: bins must be a positive integer; got {bins!r}")
    return int(bins)


# --------------------------------------------------------------------------------------------
# Configured representations and their registry (configs and checkpoints name them).

_REGISTRY: dict[str, type["Representation"]] = {}


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


def create_representation(name: str, **kwargs) -> "Representation":
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


def as_representation(representation: "Representation | str | Mapping") -> "Representation":
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


@register_representation("voxel_grid")
@dataclass(frozen=True)
class VoxelGrid(Representation):
    """``to_voxel_grid`` with fixed options; C = bins (x2 when split)."""

    bins: int = 5
    polarity: str = "signed"
    normalize: str | None = None

    def __post_init__(self):
        _check_bins("VoxelGrid", self.bins)
        _check_choice("VoxelGrid", "polarity", self.polarity, POLARITY_MODES)
        _check_choice("VoxelGrid", "normalize", self.normalize, NORMALIZATIONS)

    @property
    def channels(self) -> int:
        return self.bins * (2 if self.polarity == "split" else 1)

    def __call__(self, events, sensor_size, *, t_start=None, t_end=None) -> np.ndarray:
        return to_voxel_grid(
            events, sensor_size, self.bins, polarity=self.polarity, normalize=self.normalize,
            t_start=t_start, t_end=t_end,
        )


@register_representation("histogram")
@dataclass(frozen=True)
class EventHistogram(Representation):
    """``to_event_histogram`` with fixed options; C = bins (x2 when split)."""

    bins: int = 1
    polarity: str = "split"
    normalize: str | None = None

    def __post_init__(self):
        _check_bins("EventHistogram", self.bins)
        _check_choice("EventHistogram", "polarity", self.polarity, POLARITY_MODES)
        _check_choice("EventHistogram", "normalize", self.normalize, NORMALIZATIONS)

    @property
    def channels(self) -> int:
        return self.bins * (2 if self.polarity == "split" else 1)

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
        _check_choice("TimeSurface", "polarity", self.polarity, TIME_SURFACE_POLARITY)
        _check_choice("TimeSurface", "normalize", self.normalize, NORMALIZATIONS)

    @property
    def channels(self) -> int:
        return 2 if self.polarity == "split" else 1

    def __call__(self, events, sensor_size, *, t_start=None, t_end=None) -> np.ndarray:
        """The surface at t_end (the window's end) when given, else at the latest event."""
        return to_time_surface(
            events, sensor_size, tau=self.tau, polarity=self.polarity, t_ref=t_end, normalize=self.normalize
        )
