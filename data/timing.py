"""Time, written once: units, the dt of a step, the nominal period, and who cuts windows.

Units. Event timestamps and window bounds are integer microseconds (int64, ``data.events``);
observation times, dt and the time scale are float seconds. ``us_to_s`` and ``s_to_us`` are the
only conversions between the two (``x / 1e6``, and ``x * 1e6`` rounded half to even), so a time
that goes one way and back comes back unchanged.

dt. A step's dt is the time since the previous observation of its stream, in seconds. The first
observation has none before it, and gets, by ``first_dt``:

- the time it covers, when that is known: ``t - t_start``. An event window covers its own span
  (its start to its end); a clip's times count from the start of the stream it was cut from
  (``t_start = 0``), so a clip whose first observations were dropped gets ``dt[0] = t[0]``;
- otherwise the nominal period: a frame at the very start of its stream says nothing about how
  long ago the frame before it would have been, so it gets the typical time between observations
  (the time scale, below).

The rule reads the first observation alone, never a later one: a stream, which cannot look ahead,
and a clip in training get the same dt for the same observation. ``clip_dt`` (used by
``data.collate_clips`` for training batches) and the streaming runner (``perception infer``) both
call ``first_dt``; the steps after the first get the plain difference of times.

Time scale. ``nominal_period`` of the training clips' times is the median of their known dts (every
gap between observations, and ``t[0]`` where it is > 0; never a first dt that fell back on the
nominal period itself). It is the model's unit of time (``PerceptionModel.time_scale``), the dt of
a stream's first frame, and the window a frameless stream is cut into for a model trained on
windows between frames (below); the checkpoint records it (``data.preprocessing``).

Windows. Every event stream is cut by one engine, ``data.windows.WindowCutter``, with the
``WindowSpec`` the checkpoint's preprocessing records: a dataset's recordings
(``EventClipDataset``), the built-in dataset's simulated camera (``data.synthetic``: one window
between consecutive frames, the ``"frames"`` mode) and every ``perception infer`` source.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from data.errors import DataError

US_PER_S = 1_000_000
DEFAULT_PERIOD = 1.0 / 30.0  # seconds; the nominal period of a common video frame rate, when none is known
NO_PERIOD = 1.0  # the time scale of clips that hold no positive dt at all (seconds)


def us_to_s(us):
    """Microseconds (an int or an integer array) -> seconds (float or float64 array)."""
    if isinstance(us, np.ndarray):
        return us.astype(np.float64) / US_PER_S
    return int(us) / US_PER_S


def s_to_us(seconds):
    """Seconds (a number or an array) -> microseconds, rounded to the nearest (half to even): an
    int, or an int64 array."""
    us = np.rint(np.asarray(seconds, dtype=np.float64) * US_PER_S).astype(np.int64)
    return int(us) if us.ndim == 0 else us


def first_dt(t: float, t_start: float | None, nominal: float) -> float:
    """dt of a stream's first observation at ``t`` (module docstring), in the unit of its arguments
    (seconds; or integer microseconds, which subtract exactly).

    Args:
        t: the observation's time (an event window's end).
        t_start: the start of the time it covers (an event window's start; 0, the start of the
            stream, for a clip's first observation), or None when nothing says.
        nominal: the nominal period (the time scale).
    """
    if t_start is not None and t > t_start:
        return t - t_start
    return nominal


def step_dt(t: float, previous: float | None, t_start: float | None, nominal: float) -> float:
    """dt of the observation at ``t`` in a stream whose previous one was at ``previous`` (None for the
    first: ``first_dt``), in the unit of its arguments. A time that steps back gives 0, never a
    negative dt."""
    if previous is None:
        return first_dt(t, t_start, nominal)
    return t - previous if t > previous else t - t  # 0 in the arguments' unit (0.0 for seconds)


def clip_dt(t: np.ndarray, nominal: float = DEFAULT_PERIOD) -> np.ndarray:
    """Per-step dt (T,) float64 seconds of one clip's times t (T,), seconds from the start of its
    stream: the gaps, and ``first_dt(t[0], 0, nominal)`` for step 0."""
    dt = np.empty_like(t, dtype=np.float64)
    if len(t) == 0:
        return dt
    dt[1:] = np.diff(t)
    dt[0] = first_dt(float(t[0]), 0.0, float(nominal))
    return dt


def known_dts(t: np.ndarray) -> np.ndarray:
    """The dts (seconds) of a clip that its times alone determine: every gap, and t[0] when > 0."""
    t = np.asarray(t, dtype=np.float64)
    if t.size == 0:
        return t
    head = t[:1] if t[0] > 0 else t[:0]
    return np.concatenate([head, np.diff(t)])


def nominal_period(clip_times: Iterable[np.ndarray]) -> float:
    """The time scale (seconds): the median positive known dt of the clips (module docstring), or
    ``NO_PERIOD`` when they hold none."""
    dts = [known_dts(t) for t in clip_times]
    dts = np.concatenate(dts) if dts else np.zeros(0)
    positive = dts[dts > 0]
    return float(np.median(positive)) if positive.size else NO_PERIOD


def check_period(name: str, seconds) -> float:
    """``seconds`` as a float, if it is a finite number > 0; a DataError naming ``name`` otherwise."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float, np.integer, np.floating)) \
            or not np.isfinite(seconds) or seconds <= 0:
        raise DataError(f"{name}: expected a finite number of seconds > 0; got {seconds!r}")
    return float(seconds)
