"""Stream sources: what ``perception infer SOURCE`` reads, as observations with their real times.

SOURCE is one of:
    webcam:N        an OpenCV camera (frames, live)
    sim:webcam:N    events simulated on the fly from that camera (live)
    sim:VIDEO       events simulated on the fly from a video file
    camera:N        a live event camera through dv_processing or metavision_core (event_cameras.py)
    VIDEO           a video file (.mp4, .avi, .mkv, .mov, .webm, ...): frames
    RECORDING       an event recording in any format ``data.read_events`` reads

Event sources are cut into windows exactly as the checkpoint's preprocessing says (duration or
count, overlap, or between frames), by ``data.WindowCutter``: the simulated sources (``sim:``) read
their simulator out at every frame, a frame clock that ends the windows of a frames spec; the
others have no frames and cut a frames spec into windows of its nominal period. Every observation
carries ``t``: the source's own time in seconds (container timestamps for video, the window's end
for events, capture time for webcams; for an event camera, the window's end on the camera's clock,
counted from its first event). Event observations also carry their window's bounds in
microseconds as cut (``span_us``), so preprocessing reads the window's own integer times.

Recorded sources (files) are decoded in a thread a few items ahead of the model (``ReadAhead``):
decoding (numba, PyAV) releases the GIL, so it runs on one core while window cutting,
preprocessing and the model run on another. The observations are the same either way.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from data import (
    EventSimulator,
    Preprocessing,
    SimulatorConfig,
    Window,
    WindowCutter,
    WindowSpec,
    iter_events,
    iter_video,
    iter_webcam,
    probe_events,
    s_to_us,
    stated_sensor_size,
    us_to_s,
)
from data.errors import DataError
from data.events import Events
from perception.errors import PerceptionError
from perception.streaming.event_cameras import open_camera

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".gif")
JOIN_S = 2.0  # how long closing a live source waits for its reader thread to release the device
READ_AHEAD = 4  # items (event chunks, frames) a recorded source decodes ahead of the consumer
POLL_S = 0.05   # how often a read-ahead thread blocked on a full queue checks whether it was stopped


@dataclass
class Observation:
    """One step's input. ``kind`` "frame": ``data`` (H, W, 3) or (H, W) uint8; "events": ``data``
    (N,) events in the sensor's coordinates over [t_start, t] seconds, the window
    ``span_us`` = (start, end) microseconds (``of_window``)."""

    t: float
    kind: str
    data: Any
    t_start: float | None = None
    skipped: int = 0  # observations a live source dropped just before this one (the model was slower)
    span_us: tuple[int, int] | None = None

    @classmethod
    def of_window(cls, window: Window, skipped: int = 0) -> "Observation":
        """The observation of an event window: its events, its end as t, its bounds."""
        return cls(us_to_s(window.t_end_us), "events", window.events, us_to_s(window.t_start_us), skipped,
                   (window.t_start_us, window.t_end_us))


@dataclass
class Source:
    """An iterable of observations plus what the runner needs to know about them."""

    name: str
    kind: str                 # "frame" or "events"
    live: bool
    observations: Iterator[Observation]
    sensor_size: tuple[int, int] | None = None   # events: (W, H) of the coordinates
    closers: list = field(default_factory=list)

    def __iter__(self) -> Iterator[Observation]:
        return self.observations

    def close(self) -> None:
        for close in self.closers:
            close()
        if hasattr(self.observations, "close"):
            self.observations.close()


class ReadAhead:
    """An iterator over ``items`` that a thread runs, at most ``depth`` items ahead of the consumer.

    The same items in the same order; an exception raised by ``items`` is raised by ``__next__``
    after the items before it. The thread starts at the first ``next()``, and ``items`` is closed
    in it when it ends (a generator cannot be closed from another thread while it runs).
    ``close()`` (safe to call twice) stops the thread.
    """

    _END = object()

    def __init__(self, items: Iterator, depth: int = READ_AHEAD) -> None:
        self._items = items
        self._pending: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._done = False

    def __iter__(self) -> "ReadAhead":
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        if self._thread is None:
            self._thread = threading.Thread(target=self._read, name="perception-read-ahead", daemon=True)
            self._thread.start()
        item = self._pending.get()
        if item is self._END or isinstance(item, _Failure):
            self._done = True
            self._thread.join()
            if isinstance(item, _Failure):
                raise item.error
            raise StopIteration
        return item

    def _read(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    return
            self._put(self._END)
        except BaseException as exc:  # noqa: BLE001 - whatever it is, the consumer raises it
            self._put(_Failure(exc))
        finally:
            if hasattr(self._items, "close"):
                self._items.close()

    def _put(self, item) -> bool:
        """Queue ``item``, waiting while the queue is full; False once the consumer stopped us."""
        while not self._stop.is_set():
            try:
                self._pending.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def close(self) -> None:
        self._stop.set()
        self._done = True
        if self._thread is None:
            if hasattr(self._items, "close"):
                self._items.close()  # never started: nobody else runs it
        else:
            self._thread.join(JOIN_S)


@dataclass
class _Failure:
    """An exception raised in a read-ahead thread, on its way to the consumer."""

    error: BaseException


def _read_ahead(name: str, kind: str, items: Iterator, observations: Callable[[Iterator], Iterator[Observation]],
                sensor_size: tuple[int, int] | None = None) -> Source:
    """A recorded Source: ``observations(items)``, with ``items`` (chunks, frames) made by a ReadAhead."""
    ahead = ReadAhead(items)
    return Source(name, kind, False, observations(ahead), sensor_size, [ahead.close])


def _frames(pairs) -> Iterator[Observation]:
    for t, frame in pairs:
        yield Observation(float(t), "frame", frame)


def event_windows(chunks, spec: WindowSpec, *, frame_clock: bool = False, name: str | None = None
                  ) -> Iterator[Observation]:
    """The observations of an event stream's windows, cut by ``spec``.

    Args:
        chunks: event arrays (new ones, never reused by their maker); with ``frame_clock``,
            (events, frame time in microseconds) pairs: the events a camera read out at that frame.
        spec: the checkpoint's windows.
        frame_clock: the chunks come with frames (the simulator's), which end a frames spec's windows.
        name: the source, named in the cutter's errors (a window past ``data.windows.MAX_WINDOW_EVENTS``).
    """
    try:
        yield from _cut(chunks, spec, frame_clock)
    except DataError as exc:
        if name is None or str(exc).startswith(name):
            raise
        raise DataError(f"{name}: {exc}") from None


def _cut(chunks, spec: WindowSpec, frame_clock: bool) -> Iterator[Observation]:
    cutter = WindowCutter(spec, copy=False, frame_clock=frame_clock)
    for chunk in chunks:
        if frame_clock:
            events, frame_us = chunk
            for window in cutter.feed(events):
                yield Observation.of_window(window)
            windows = cutter.tick(frame_us)
        else:
            windows = cutter.feed(chunk)  # one at a time: a chunk may span millions of windows
        for window in windows:
            yield Observation.of_window(window)
    for window in cutter.finish():
        yield Observation.of_window(window)


def _simulated(frames, size: tuple[int, int], seed: int = 0) -> Iterator[tuple[Events, int]]:
    """(events, frame time in us) per (t, frame) pair: each frame resized to ``size`` (W, H), grey,
    through the simulator, which is read out at every frame."""
    simulator = EventSimulator(SimulatorConfig(noise_rate_hz=0.1), np.random.default_rng(seed))
    for t, frame in frames:
        if frame.ndim == 3:
            frame = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if (frame.shape[1], frame.shape[0]) != tuple(size):
            frame = cv2.resize(frame, tuple(size), interpolation=cv2.INTER_AREA)
        yield simulator.feed(frame, float(t)), s_to_us(float(t))


def _camera_index(text: str, spec: str, kind: str = "webcam") -> int:
    try:
        index = int(text)
    except ValueError:
        raise PerceptionError(f"{spec}: expected {kind}:N with N a camera index (0, 1, ...)") from None
    if index < 0:
        raise PerceptionError(f"{spec}: the camera index must be >= 0")
    return index


def _event_camera(spec: str, index: int, window: WindowSpec) -> Source:
    """A live event camera, cut into the checkpoint's windows; merged, never dropped, when the model lags."""
    camera = open_camera(spec, index)
    return live(Source(spec, "events", True, event_windows(camera.chunks, window, name=spec), camera.sensor_size,
                       [camera.stop]))


def open_source(spec: str, preprocessing: Preprocessing) -> Source:
    """The source named by ``spec`` for a model trained with ``preprocessing`` (its modality decides
    whether frames or event windows are needed)."""
    if not isinstance(preprocessing, Preprocessing):
        raise PerceptionError(f"open_source: expected a data.Preprocessing, got {type(preprocessing).__name__}")
    modality, spec_window = preprocessing.modality, preprocessing.window
    simulated = spec.startswith("sim:")
    inner = spec[4:] if simulated else spec

    if inner.startswith("camera:"):
        if simulated:
            raise PerceptionError(f"{spec}: camera:N is an event camera already; drop sim: "
                                  "(sim:webcam:N simulates one from a webcam)")
        index = _camera_index(inner[len("camera:"):], spec, "camera")
        _expect(modality, "events", spec)
        return _event_camera(spec, index, spec_window)
    if inner.startswith("webcam:"):
        index = _camera_index(inner[len("webcam:"):], spec)
        if not simulated:
            _expect(modality, "frames", spec)
            return live(Source(spec, "frame", True, _frames(iter_webcam(index))))
        _expect(modality, "events", spec)
        size = preprocessing.frame_size
        frames = iter_webcam(index)
        observations = event_windows(_simulated(frames, size), spec_window, frame_clock=True, name=spec)
        return live(Source(spec, "events", True, observations, size))

    path = Path(inner)
    if not path.exists():
        raise PerceptionError(f"{spec}: no such file")
    if simulated or path.suffix.lower() in VIDEO_SUFFIXES:
        if simulated:
            _expect(modality, "events", spec)
            size = preprocessing.frame_size
            # Simulating costs more than cutting and the model: it is the part that runs ahead.
            return _read_ahead(spec, "events", _simulated(iter_video(path), size),
                               lambda readouts: event_windows(readouts, spec_window, frame_clock=True, name=spec),
                               size)
        _expect(modality, "frames", spec)
        # The decoder scales and converts in one pass, as the video-folder dataset reads its clips.
        frames = iter_video(path, size=preprocessing.frame_size, grey=preprocessing.channels == 1)
        return _read_ahead(spec, "frame", frames, _frames)
    _expect(modality, "events", spec)
    size = stated_sensor_size(path) or probe_events(path).sensor_size  # probing decodes the whole file
    # The chunks are decoded ahead and the windows cut in the consumer's thread: reading (decoding,
    # order and bounds checks) and cutting + preprocessing + model then cost about the same, so
    # neither thread waits long for the other.
    return _read_ahead(spec, "events", iter_events(path),
                       lambda chunks: event_windows(chunks, spec_window, name=spec), tuple(size))


def _expect(modality: str, needed: str, spec: str) -> None:
    if modality != needed:
        hint = ("use sim:VIDEO or sim:webcam:N to simulate events from frames" if modality == "events"
                else "this checkpoint needs frames (a video file or webcam:N)")
        raise PerceptionError(f"{spec}: the checkpoint's model takes {modality}, this source gives {needed}; {hint}")


# --------------------------------------------------------------------------------------------
# Live sources never fall behind: a reader thread keeps only the newest observation.


def live(source: Source) -> Source:
    """Wrap a live source so that the consumer always gets the newest observation.

    Frames that arrive while the model is busy are skipped (counted in ``skipped``; the next frame's
    dt covers them, since dt comes from the timestamps). Event windows are never dropped: the ones
    that queued up are merged into one longer window, so no event is lost.
    """
    pending: queue.Queue = queue.Queue()
    stop = threading.Event()

    def read() -> None:
        try:
            for obs in source.observations:
                if stop.is_set():
                    break
                pending.put(obs)
        except Exception as exc:  # surfaced in the consumer's thread
            pending.put(exc)
        finally:
            try:
                # Closed here, in the thread that runs it (a generator cannot be closed from another
                # thread while it runs): its ``finally`` releases the camera now, not at garbage collection.
                if hasattr(source.observations, "close"):
                    source.observations.close()
            finally:
                pending.put(None)  # whatever happened, the consumer is told the stream ended

    thread = threading.Thread(target=read, daemon=True)
    thread.start()

    def newest() -> Iterator[Observation]:
        while True:
            item = pending.get()
            batch = [item]
            while item is not None and not isinstance(item, Exception):
                try:
                    item = pending.get_nowait()
                except queue.Empty:
                    break
                batch.append(item)
            ended = batch[-1] is None or isinstance(batch[-1], Exception)
            observations = [b for b in batch if isinstance(b, Observation)]
            if observations:
                yield merge(observations)
            if ended:
                if isinstance(batch[-1], Exception):
                    raise batch[-1]
                return

    def close() -> None:
        stop.set()
        for closer in source.closers:  # e.g. an event camera's poll loop, which ends at its next poll
            closer()
        # Give the reader the time to release the device; a library call blocked for good is not waited on.
        thread.join(JOIN_S)

    return Source(source.name, source.kind, True, newest(), source.sensor_size, [close])


def merge(observations: list[Observation]) -> Observation:
    """One observation standing for several that queued up: the newest frame, or all the events."""
    last = observations[-1]
    if len(observations) == 1:
        return last
    skipped = sum(o.skipped for o in observations) + len(observations) - 1
    if last.kind == "frame":
        return Observation(last.t, "frame", last.data, None, skipped)
    events = np.concatenate([o.data for o in observations])
    span = (observations[0].span_us[0], last.span_us[1])
    return Observation(last.t, "events", events, observations[0].t_start, skipped, span)
