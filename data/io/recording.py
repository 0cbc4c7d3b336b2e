"""Reading and writing event recordings: ``read_events``, ``iter_events``, ``probe_events``, ``write_events``.

The sensor size comes from the file where the file states it; else from the ``sensor_size``
argument; else from a format-specific fallback (Prophesee RAW: the camera plugin named in the
header); else the largest coordinate + 1 (stated in ``Recording.sensor_size_source``). A file that
states a size different from the argument is an error. Every problem with a file is a DataError that
names it; errors raised inside the decoding libraries are wrapped the same way.

Time order: events come out sorted by t. Prophesee RAW repairs small backward steps by clamping to
the running maximum (see ``data.io.prophesee``); every other format rejects a backward step.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from data.errors import DataError
from data.events import Events, SensorSize, as_events, check_events
from data.files import AtomicFile
from data.io._base import EventReader, check_readable, concat, parse_sensor_size, read_head
from data.io._scan import first_backward, first_outside
from data.io._registry import SNIFF_BYTES, FormatSpec, detect_format, get_format, writer_for

DEFAULT_CHUNK_SIZE = 1 << 20  # events per chunk from iter_events: 13 MB of canonical events

PathLike = str | os.PathLike


@dataclasses.dataclass(frozen=True, eq=False)
class Recording:
    """A whole recording in memory.

    Attributes:
        events: canonical events sorted by t (microseconds), shape (N,).
        sensor_size: (width, height).
        path: the file read.
        format: the registered format name.
        sensor_size_source: where the size came from ("file", "argument", a fallback, or
            "largest coordinate + 1").
    """

    events: Events
    sensor_size: SensorSize
    path: Path
    format: str
    sensor_size_source: str = "file"

    def __len__(self) -> int:
        return len(self.events)


@dataclasses.dataclass(frozen=True)
class EventFileInfo:
    """What ``probe_events`` finds out about a file without keeping its events."""

    path: Path
    format: str
    sensor_size: SensorSize
    sensor_size_source: str
    num_events: int


@contextlib.contextmanager
def _wrapped(path: Path, spec: FormatSpec, action: str = "read") -> Iterator[None]:
    """Turn any library exception into a DataError naming the file (DataErrors pass through)."""
    try:
        yield
    except (DataError, KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as error:  # noqa: BLE001 - libraries raise anything, and a Rust panic in
        # faery arrives as pyo3's PanicException, a BaseException.
        detail = f"{type(error).__name__}: {error}".strip()
        raise DataError(f"{path}: cannot {action} it as {spec.description}: {detail}") from error


def _open(
    path: PathLike, sensor_size: object, format: str | None
) -> tuple[FormatSpec, EventReader, SensorSize | None, str]:
    """Check the path, pick the format, parse the header, and resolve the sensor size if known."""
    path = as_path(path)
    requested = None if sensor_size is None else parse_sensor_size(sensor_size)
    spec = get_format(format, path) if format is not None else None
    check_readable(path)
    if spec is None:
        spec = detect_format(path, read_head(path, SNIFF_BYTES))
    with _wrapped(path, spec):
        reader = spec.reader(path)
    declared = reader.declared_size
    if declared is not None:
        # A corrupt header can state a 0 x 48 or a 100000 x 48 sensor: refuse what no event fits.
        declared = parse_sensor_size(declared, f"{path}: the sensor size the file states")
        if requested is not None and tuple(requested) != tuple(declared):
            raise DataError(
                f"{path}: the file states a {declared[0]} x {declared[1]} sensor but sensor_size="
                f"{requested} was given"
            )
        return spec, reader, declared, "file"
    if requested is not None:
        return spec, reader, requested, "argument"
    if reader.fallback_size is not None:
        return spec, reader, reader.fallback_size, reader.fallback_note or "format fallback"
    return spec, reader, None, "largest coordinate + 1"


def as_path(path: object, what: str = "path") -> Path:
    """``path`` (a str or an os.PathLike naming a str) as a Path; a DataError for anything else
    (bytes, None, a number): a path of the wrong type is a user's mistake, not a TypeError."""
    name = os.fspath(path) if isinstance(path, (str, os.PathLike)) else path
    if not isinstance(name, str) or not name:
        raise DataError(f"{what}: expected a file path (str or os.PathLike), got {path!r:.80}")
    return Path(name)


def _in_order(path: Path, chunks: Iterable[Events], repair: bool) -> Iterator[Events]:
    """Check (or, when ``repair``, enforce by clamping) non-decreasing t across all chunks."""
    last: int | None = None
    seen = 0
    for events in chunks:
        if not len(events):
            continue
        t = events["t"]
        i = first_backward(events, last)
        if i >= 0 and repair:
            if not t.flags.writeable:
                events = events.copy()
                t = events["t"]
            if last is not None and t[0] < last:
                t[0] = last
            np.maximum.accumulate(t, out=t)
        elif i >= 0:
            before = last if i == 0 else t[i - 1]
            raise DataError(f"{path}: timestamps go backwards at event {seen + i} ({before} -> {t[i]} us)")
        last = int(t[-1])
        seen += len(events)
        yield events


def _inside(path: Path, chunks: Iterable[Events], size: SensorSize, source: str) -> Iterator[Events]:
    """Check every event lies inside the sensor."""
    width, height = size
    seen = 0
    for events in chunks:
        i = first_outside(events, width, height)
        if i >= 0:
            raise DataError(
                f"{path}: event {seen + i} at x={events['x'][i]}, y={events['y'][i]} lies outside the "
                f"{width} x {height} sensor (size from {source})"
            )
        seen += len(events)
        yield events


def _rechunk(chunks: Iterable[Events], chunk_size: int) -> Iterator[Events]:
    """Re-cut a stream of arrays into arrays of exactly ``chunk_size`` events (the last may be shorter)."""
    pending: list[Events] = []
    count = 0
    for events in chunks:
        while len(events):
            if not count and len(events) >= chunk_size:
                yield events[:chunk_size]
                events = events[chunk_size:]
                continue
            take = min(chunk_size - count, len(events))
            pending.append(events[:take])
            count += take
            events = events[take:]
            if count == chunk_size:
                yield concat(pending)
                pending, count = [], 0
    if count:
        yield concat(pending)


def _guarded(path: Path, spec: FormatSpec, chunks: Iterator[Events]) -> Iterator[Events]:
    with _wrapped(path, spec):
        yield from chunks


def _size_from_events(path: Path, max_x: int, max_y: int, count: int) -> SensorSize:
    if count == 0:
        raise DataError(f"{path}: the file holds no events and states no sensor size; pass sensor_size=(width, height)")
    return max_x + 1, max_y + 1


def read_events(path: PathLike, sensor_size: SensorSize | None = None, *, format: str | None = None) -> Recording:
    """Read a whole event file.

    Args:
        path: the file; its format is found from its content and suffix unless ``format`` names it.
        sensor_size: (width, height), used when the file does not state it (and checked against it
            when it does).
        format: a registered format name (see ``available_formats``).

    Returns:
        The events (N,) sorted by t in microseconds, and the sensor size.

    Raises:
        DataError: a missing, empty, truncated or corrupt file, an unknown format, events outside
            the sensor, timestamps going backwards; the message names the file.
    """
    spec, reader, size, source = _open(path, sensor_size, format)
    path = reader.path
    with _wrapped(path, spec):
        events = reader.read_all()
    events = next(_in_order(path, [events], reader.repair_time), events)
    if size is None:
        max_x, max_y = (int(events["x"].max()), int(events["y"].max())) if len(events) else (0, 0)
        size = _size_from_events(path, max_x, max_y, len(events))
    else:
        next(_inside(path, [events], size, source), None)
    return Recording(events=events, sensor_size=size, path=path, format=spec.name, sensor_size_source=source)


def iter_events(
    path: PathLike,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    sensor_size: SensorSize | None = None,
    format: str | None = None,
) -> Iterator[Events]:
    """Stream an event file in chunks of ``chunk_size`` events (the last may be shorter).

    Each chunk is a canonical array (N,) in time order, and their concatenation equals
    ``read_events(path).events``. Only about one chunk of the file is in memory at a time. The file
    is opened and its header checked when this is called; decoding errors surface while iterating.

    Raises:
        DataError: as ``read_events``; also for a chunk_size that is not a positive integer.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size <= 0:
        raise DataError(f"chunk_size: expected a positive integer number of events, got {chunk_size!r}")
    spec, reader, size, source = _open(path, sensor_size, format)
    chunks = _in_order(reader.path, _guarded(reader.path, spec, reader.chunks(int(chunk_size))), reader.repair_time)
    if size is not None:
        chunks = _inside(reader.path, chunks, size, source)
    return _rechunk(chunks, int(chunk_size))


def stated_sensor_size(path: PathLike, *, format: str | None = None) -> SensorSize | None:
    """The sensor size the file's header (or its format) states, without decoding any event; None
    when only the events can tell (then ``probe_events`` finds it)."""
    _, _, size, _ = _open(path, None, format)
    return size


def probe_events(path: PathLike, sensor_size: SensorSize | None = None, *, format: str | None = None) -> EventFileInfo:
    """Format, sensor size and event count of a file, found by streaming it once (little memory)."""
    spec, reader, size, source = _open(path, sensor_size, format)
    path = reader.path
    count, max_x, max_y = 0, 0, 0
    chunks = _in_order(path, _guarded(path, spec, reader.chunks(DEFAULT_CHUNK_SIZE)), reader.repair_time)
    if size is not None:
        chunks = _inside(path, chunks, size, source)
    for events in chunks:
        count += len(events)
        max_x = max(max_x, int(events["x"].max()))
        max_y = max(max_y, int(events["y"].max()))
    if size is None:
        size = _size_from_events(path, max_x, max_y, count)
    return EventFileInfo(path=path, format=spec.name, sensor_size=size, sensor_size_source=source, num_events=count)


def write_events(
    path: PathLike, events: np.ndarray, sensor_size: SensorSize, *, format: str | None = None
) -> Path:
    """Write events to a file, atomically: a temporary file beside it is renamed onto ``path``.

    Args:
        path: the file to write; the format comes from its suffix unless ``format`` names it.
        events: a structured array with fields x, y, t, p (t in microseconds, sorted), shape (N,).
        sensor_size: (width, height); every event must lie inside it.
        format: a registered format name with a writer (see ``writable_formats``).

    Returns:
        The path written.

    Raises:
        DataError: an unwritable format, events out of order or outside the sensor, values the
            format cannot hold, or a folder that does not exist.
    """
    path = as_path(path)
    spec = writer_for(path, format)
    size = parse_sensor_size(sensor_size)
    events = check_events(as_events(events, f"{path}: events"), size, name=f"{path}: events")
    if path.is_dir():
        raise DataError(f"{path}: is a directory")
    assert spec.writer is not None
    with AtomicFile(path) as tmp, _wrapped(path, spec, "write"):
        spec.writer(tmp, events, size)
    return path
