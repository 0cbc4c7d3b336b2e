"""The compiled scatter kernels (numba), one per representation and polarity mode.

Each returns the index of the first event it did not place (outside the sensor or the time range;
for the sorted voxel kernel also the first one out of time order) or -1. The voxel kernels read the
event records themselves (one pointer into the (N,) array instead of four strided field views:
fewer registers in the loop, 1.25x faster); the others take the fields. ``out`` is a flat
(C * H * W,) grid: float64 zeros for the scatter kernels (int64, sentinel-filled, for last times);
for the sorted voxel kernel an uninitialised float32 or float64 grid that it writes in full.

Each ``*_impl`` is inlined into one small kernel per polarity mode, so that the mode is a
compile-time constant and the polarity a select rather than a branch on random data: that made the
loops 1.5x faster than one kernel taking the mode as an argument. The first call of each kernel
compiles it (about a second); ``cache=True`` keeps the machine code in ``__pycache__`` for later
processes. Without numba the decorators leave plain Python functions, which nothing calls
(``kernels`` then uses its numpy versions).
"""
from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError:  # the numpy kernels in ``kernels`` give the same results, slower
    numba = None


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
def last_time_merged(x, y, t, p, width, height, t_ref, out):  # pragma: no cover
    return _last_time_impl(x, y, t, p, width, height, t_ref, False, out)


@_jit
def last_time_split(x, y, t, p, width, height, t_ref, out):  # pragma: no cover
    return _last_time_impl(x, y, t, p, width, height, t_ref, True, out)


VOXEL_SORTED = (_voxel_sorted_0, _voxel_sorted_1, _voxel_sorted_2)
VOXEL_DIRECT = (_voxel_direct_0, _voxel_direct_1, _voxel_direct_2)
HISTOGRAM = (_histogram_0, _histogram_1, _histogram_2)
