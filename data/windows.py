"""Cutting an event stream into windows: by duration, by event count, or between frames.

A ``WindowSpec`` says how (and is plain data a checkpoint can record); ``slice_windows`` cuts an
in-memory array, ``iter_windows`` an iterator of chunks (what the streaming readers yield), and
``WindowCutter`` is the push-style engine under both and under every other cut in the project (the
built-in dataset's, the streaming sources'; ``data.timing``). The windows are the same whether the
events arrive all at once or in chunks of any size.

Rules, for a stream whose first window starts at t0 = ``t_start_us`` (default: the first event's time):

- duration: window k covers the half-open time range [t0 + k * stride, t0 + k * stride + size).
  A window with no events is still yielded (with an empty array), so time keeps advancing through
  a short silence. A long silence, one that would make more than ``LONG_GAP_WINDOWS`` empty windows
  in a row, makes none: the next window is the first one that holds an event again, and its dt
  (its end minus the previous window's end) spans the silence. One step with a large dt is what a
  continuous-time head integrates exactly, and a silence of days (a paused recording, a corrupt
  timestamp) then costs one step, not millions.
- count: window k holds events [k * stride, k * stride + size). Its time range is
  [t of its first event, t of its last event + 1), so t_start_us <= t < t_end_us holds in both
  modes, and the time between consecutive windows' ends is the real, variable dt.
- frames: the stream comes with a frame clock (a camera read out at each frame, as the event
  simulator is: ``WindowCutter.tick``), and window k covers [frame k, frame k + 1): the events
  between two consecutive frames, an event stamped exactly at a frame going to the window that
  frame starts. The first frame (or ``t_start_us``) starts the first window; a frame at the time of
  the one before it ends no window. A stream without a frame clock (a recording, an event camera)
  has no frames to cut at, and is cut into duration windows of ``size`` microseconds, the nominal
  frame period, instead (``WindowSpec.without_frame_clock``).
- The last window is the first one that contains the stream's last event: later windows would
  only repeat part of it. It may be partial (shorter in count, or cut off by the end of the
  stream); ``drop_last=True`` drops it when it is (count: fewer than ``size`` events; duration:
  its end lies after the last event's time + 1). frames: events after the last frame make a
  partial window [last frame, last event + 1) that no frame ends; ``drop_last`` drops it.

No window holds more than ``MAX_WINDOW_EVENTS`` events: a stream that piles more than that into one
window (a file of zeros: every event at t = 0) is refused with a DataError naming the window, before
the cutter's buffer grows past it; a count spec of more events is refused when it is made.

Window events are read-only views into the input (or into the cutter's own buffer of the events
carried over between chunks): nothing is copied per window, and nobody can modify the caller's
array through a window. A window of a chunk is valid while that chunk is; the events carried over
to later windows are copied, so a reader may reuse its chunk buffer once it has the windows.
"""
from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

import numpy as np

from data.errors import DataError
from data.events import EVENT_DTYPE, Events, as_events, check_events, concat_events, copy_events

WINDOW_MODES = ("duration", "count", "frames")
LONG_GAP_WINDOWS = 100  # a silence worth more empty duration windows in a row is one step (module docstring)
MAX_WINDOW_EVENTS = 10_000_000  # events in one window: 130 MB of canonical events


@dataclass(frozen=True)
class WindowSpec:
    """How a stream is cut into windows.

    Attributes:
        mode: ``"duration"`` (size and overlap in microseconds), ``"count"`` (in events) or
            ``"frames"`` (between the frames of the stream's frame clock; size: the nominal frame
            period in microseconds, the duration windows of a stream without one; overlap 0).
        size: window length, >= 1.
        overlap: how much consecutive windows share, 0 <= overlap < size; stride = size - overlap.
        drop_last: drop the final window when the stream ends inside it (module docstring).
    """

    mode: str = "duration"
    size: int = 50_000
    overlap: int = 0
    drop_last: bool = False

    def __post_init__(self):
        if self.mode not in WINDOW_MODES:
            raise DataError(f"WindowSpec: mode must be one of {', '.join(map(repr, WINDOW_MODES))}; got {self.mode!r}")
        unit = "events" if self.mode == "count" else "microseconds"
        for name in ("size", "overlap"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise DataError(f"WindowSpec: {name} must be an integer number of {unit}; got {value!r}")
        if self.size < 1:
            raise DataError(f"WindowSpec: size must be at least 1 ({unit}); got {self.size}")
        if not 0 <= self.overlap < self.size:
            raise DataError(
                f"WindowSpec: overlap must be in [0, size) = [0, {self.size}) {unit}; got {self.overlap}"
            )
        if self.mode == "count" and self.size > MAX_WINDOW_EVENTS:
            raise DataError(f"WindowSpec: a count window holds at most {MAX_WINDOW_EVENTS:,} events; got {self.size:,}")
        if self.mode == "frames" and self.overlap != 0:
            raise DataError(f"WindowSpec: frames windows do not overlap (overlap 0); got {self.overlap}")
        if not isinstance(self.drop_last, bool):
            raise DataError(f"WindowSpec: drop_last must be True or False; got {self.drop_last!r}")
        object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "overlap", int(self.overlap))

    @property
    def stride(self) -> int:
        """Distance between consecutive window starts (microseconds or events)."""
        return self.size - self.overlap

    @classmethod
    def duration(
        cls, window_us: int, overlap_us: int = 0, *, stride_us: int | None = None, drop_last: bool = False
    ) -> "WindowSpec":
        """Windows of ``window_us`` microseconds, overlapping by ``overlap_us`` (or every ``stride_us``)."""
        return cls("duration", window_us, _overlap(window_us, overlap_us, stride_us), drop_last)

    @classmethod
    def count(
        cls, count: int, overlap: int = 0, *, stride: int | None = None, drop_last: bool = False
    ) -> "WindowSpec":
        """Windows of ``count`` events, overlapping by ``overlap`` events (or every ``stride``)."""
        return cls("count", count, _overlap(count, overlap, stride), drop_last)

    @classmethod
    def frames(cls, period_us: int, *, drop_last: bool = False) -> "WindowSpec":
        """Windows between consecutive frames; a stream without frames is cut every ``period_us``."""
        return cls("frames", period_us, 0, drop_last)

    def without_frame_clock(self) -> "WindowSpec":
        """The spec a stream without a frame clock is cut with: duration windows of ``size`` for
        ``"frames"``, this spec itself otherwise."""
        return WindowSpec("duration", self.size, 0, self.drop_last) if self.mode == "frames" else self

    def to_config(self) -> dict:
        """Plain values; ``WindowSpec.from_config(spec.to_config()) == spec``."""
        return asdict(self)

    @classmethod
    def from_config(cls, config: dict) -> "WindowSpec":
        """Rebuild from ``to_config`` output, refusing unknown keys."""
        unknown = sorted(set(config) - set(cls.__dataclass_fields__))
        if unknown:
            raise DataError(f"WindowSpec: unknown keys {unknown}; allowed: {', '.join(cls.__dataclass_fields__)}")
        return cls(**config)


def _overlap(size, overlap, stride) -> int:
    if stride is None:
        return overlap
    if overlap:
        raise DataError("WindowSpec: give either an overlap or a stride, not both")
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or not 1 <= stride <= size:
        raise DataError(f"WindowSpec: stride must be an integer in [1, size] = [1, {size}]; got {stride!r}")
    return size - stride


@dataclass(frozen=True, eq=False)
class Window:
    """One window of a stream.

    Attributes:
        events: its N events (read-only view, canonical dtype, sorted), possibly N = 0.
        t_start_us: start of the window's half-open time range [t_start_us, t_end_us).
        t_end_us: end of that range: the time the window is complete, to compute dt from.
    """

    events: Events
    t_start_us: int
    t_end_us: int

    @property
    def duration_us(self) -> int:
        return self.t_end_us - self.t_start_us

    def __len__(self) -> int:
        return len(self.events)


def _read_only(events: Events) -> Events:
    view = events.view()
    view.flags.writeable = False
    return view


_EMPTY = np.empty(0, EVENT_DTYPE)


class WindowCutter:
    """Push-style window cutting: ``push(chunk)`` returns the windows it completes, ``tick(t_us)``
    the one a frame ends (frames mode), ``finish()`` the rest. Keeps only the events that later
    windows still need.

    Args:
        spec: how to cut.
        t_start_us: start of the first window (duration and frames modes); default the first
            event's time (duration) or the first frame (frames). Events before it are a DataError.
            Ignored in count mode.
        copy: keep a copy of the events that later windows need. False when the caller never
            reuses or changes a chunk after pushing it (chunks from ``iter_events`` are new arrays):
            copying a dense chunk costs more than cutting it.
        frame_clock: the caller calls ``tick`` at every frame of its stream. Without one, a frames
            spec cuts duration windows of its ``size`` (``WindowSpec.without_frame_clock``).
    """

    def __init__(self, spec: WindowSpec, *, t_start_us: int | None = None, copy: bool = True,
                 frame_clock: bool = False):
        if not isinstance(spec, WindowSpec):
            raise DataError(f"windows: expected a WindowSpec, got {type(spec).__name__}")
        self.spec, self.copy = (spec if frame_clock else spec.without_frame_clock()), bool(copy)
        self._origin = None if t_start_us is None else int(t_start_us)
        self._buffer = _EMPTY  # events not yet behind every future window
        self._next = 0  # duration: index k of the next window
        self._seen = 0  # events received so far
        self._emitted_to = 0  # count: index (in the stream) one past the last emitted window's end
        self._buffer_start = 0  # count: stream index of self._buffer[0]
        self._last_t: int | None = None
        self._finished = False

    def push(self, chunk: Events) -> list[Window]:
        """Add the next chunk (sorted, not earlier than what came before); return completed windows."""
        return list(self.feed(chunk))

    def feed(self, chunk: Events) -> Iterator[Window]:
        """``push`` as a generator: the windows one at a time, as they are cut (a chunk that spans
        many windows never makes a list of them all); exhaust it before feeding the next chunk."""
        if self._finished:
            raise DataError("windows: push() after finish()")
        chunk = as_events(chunk, name="windows: chunk")
        if chunk.size == 0:
            return
        times = chunk["t"]
        if times.size > 1 and bool((times[1:] < times[:-1]).any()):
            check_events(chunk, name="windows: chunk")  # raises, naming the first backward step
        first = int(chunk["t"][0])
        if self._last_t is not None and first < self._last_t:
            raise DataError(
                f"windows: timestamps go backwards between chunks ({self._last_t} -> {first} us, "
                f"after {self._seen} events)"
            )
        if self.spec.mode == "frames":
            if self._origin is not None and first < self._origin:  # a frame after it ended its window already
                raise DataError(f"windows: event at t={first} us is earlier than the frame at {self._origin} us "
                                "that started the current window")
        elif self._origin is None:
            self._origin = first
        elif self._seen == 0 and first < self._origin and self.spec.mode == "duration":
            raise DataError(f"windows: event at t={first} us is before the first window's start {self._origin} us")
        self._last_t = int(chunk["t"][-1])
        self._seen += chunk.size
        self._buffer = chunk if self._buffer.size == 0 else concat_events([self._buffer, chunk])
        if self.spec.mode == "duration":
            yield from self._cut_duration()
        elif self.spec.mode == "count":
            yield from self._cut_count()
        else:
            self._check_pending(self._origin)

    def tick(self, t_us: int) -> list[Window]:
        """The stream's frame clock reached a frame at ``t_us``: every event before it has been pushed.

        Frames mode: returns the window [previous frame, t_us) (none for the first frame, which only
        starts the clock, nor for a frame at the previous one's time). Other modes cut by their own
        rule and ignore frames.
        """
        if self._finished:
            raise DataError("windows: tick() after finish()")
        if self.spec.mode != "frames":
            return []
        t_us = int(t_us)
        if self._origin is None:
            if self._buffer.size and int(self._buffer["t"][0]) < t_us:
                raise DataError(f"windows: event at t={int(self._buffer['t'][0])} us before the stream's first "
                                f"frame at {t_us} us")
            self._origin = t_us
            return []
        if t_us < self._origin:
            raise DataError(f"windows: frame times go backwards ({self._origin} -> {t_us} us)")
        if t_us == self._origin:
            return []
        end = bisect_left(self._buffer["t"], t_us)
        window = Window(_read_only(self._buffer[:end] if end else _EMPTY), self._origin, t_us)
        self._buffer = self._own(self._buffer[end:])
        self._origin = t_us
        return [window]

    def _check_pending(self, start: int | None) -> None:
        """Refuse a window that has gathered more than MAX_WINDOW_EVENTS events (the buffer holds
        only the events of windows not yet complete)."""
        if self._buffer.size > MAX_WINDOW_EVENTS:
            where = "the first window" if start is None else f"the window from t={start} us"
            raise DataError(
                f"windows: more than {MAX_WINDOW_EVENTS:,} events in {where} ({self.spec.mode} "
                f"{self.spec.size}); the recording's times look corrupt (all events at one time?)"
            )

    def finish(self) -> list[Window]:
        """The stream has ended: return the final (possibly partial) window, if any."""
        if self._finished:
            return []
        self._finished = True
        if self._seen == 0:
            return []
        if self.spec.mode == "frames":  # events after the last frame: no frame ends their window
            if self._buffer.size == 0 or self.spec.drop_last:
                return []
            return [Window(_read_only(self._buffer), self._origin, self._last_t + 1)]
        if self.spec.mode == "duration":
            start = self._origin + self._next * self.spec.stride
            end = start + self.spec.size
            if self.spec.drop_last and end > self._last_t + 1:
                return []
            return [self._duration_window(start, end)]
        if self._emitted_to >= self._seen or (self.spec.drop_last and self._buffer.size < self.spec.size):
            return []
        events = self._buffer
        return [Window(_read_only(events), int(events["t"][0]), int(events["t"][-1]) + 1)]

    def _duration_window(self, start: int, end: int) -> Window:
        # bisect reads log2(N) times; np.searchsorted would first copy the whole strided t column
        times = self._buffer["t"]
        lo = bisect_left(times, start)
        hi = bisect_left(times, end, lo)
        events = self._buffer[lo:hi] if hi > lo else _EMPTY
        return Window(_read_only(events), start, end)

    def _own(self, kept: Events) -> Events:
        """What is kept for later windows: a copy (a reader may reuse its chunk) unless told not to."""
        return copy_events(kept) if self.copy else kept

    def _cut_duration(self) -> Iterator[Window]:
        stride, size = self.spec.stride, self.spec.size
        while True:  # a window is complete once an event at or after its end has arrived
            start = self._origin + self._next * stride
            if self._last_t < start + size:
                break
            window = self._duration_window(start, start + size)
            if not len(window):
                self._skip_long_gap(start)
                if self._origin + self._next * stride != start:
                    continue
            elif len(window) > MAX_WINDOW_EVENTS:
                raise DataError(
                    f"windows: {len(window):,} events in the {size} us window from t={start} us, more than "
                    f"{MAX_WINDOW_EVENTS:,}; the recording's times look corrupt (all events at one time?)"
                )
            self._next += 1
            yield window
        next_start = self._origin + self._next * stride
        keep = bisect_left(self._buffer["t"], next_start)
        self._buffer = self._own(self._buffer[keep:])
        self._check_pending(next_start)

    def _skip_long_gap(self, start: int) -> None:
        """At an empty window starting at ``start``: when the silence ahead makes more than
        LONG_GAP_WINDOWS empty windows in a row, move on to the first window that holds an event."""
        stride, size = self.spec.stride, self.spec.size
        times = self._buffer["t"]
        after = bisect_left(times, start)  # an event at or after this window's end is buffered
        t_next = int(times[after])
        # windows k >= self._next with start_k + size <= t_next are empty; the first that is not:
        first_holding = max(self._next, -(-(t_next - size + 1 - self._origin) // stride))
        if first_holding - self._next > LONG_GAP_WINDOWS:
            self._next = first_holding

    def _cut_count(self) -> Iterator[Window]:
        size, stride = self.spec.size, self.spec.stride
        offset = 0  # index into self._buffer of the next window's first event
        while self._buffer.size - offset >= size:
            events = self._buffer[offset : offset + size]
            self._emitted_to = self._buffer_start + offset + size
            offset += stride
            yield Window(_read_only(events), int(events["t"][0]), int(events["t"][-1]) + 1)
        self._buffer = self._own(self._buffer[offset:])
        self._buffer_start += offset


def iter_windows(chunks: Iterable[Events], spec: WindowSpec, *, t_start_us: int | None = None) -> Iterator[Window]:
    """Windows over a stream given as chunks of events (each sorted, in time order).

    Args:
        chunks: iterable of event arrays of any sizes (empty ones are fine).
        spec: how to cut (chunks carry no frame clock: a frames spec cuts duration windows).
        t_start_us: start of the first duration window; default the first event's time.

    Yields:
        Window, as soon as each is complete; the final one after the last chunk.
    """
    cutter = WindowCutter(spec, t_start_us=t_start_us)
    for chunk in chunks:
        yield from cutter.feed(chunk)
    yield from cutter.finish()


def slice_windows(events: Events, spec: WindowSpec, *, t_start_us: int | None = None) -> Iterator[Window]:
    """Windows over an in-memory event array (sorted by time); same result as ``iter_windows``."""
    return iter_windows([events], spec, t_start_us=t_start_us)
