"""What every format reader shares: the reader base class, path checks, small helpers."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from data.errors import DataError
from data.events import EVENT_DTYPE, Events, SensorSize, concat_events

# Largest coordinate the canonical dtype holds, plus one: the largest sensor side we accept.
MAX_SIDE = 1 << 16


class EventReader:
    """Reads one event file. Subclasses register themselves with ``register_format``.

    The constructor parses the header (raising DataError on a bad one) and sets:
        declared_size: the sensor size the file states, or None.
        fallback_size: a format-specific guess used when neither the file nor the caller gives the
            size (for example a camera model named in the header), or None.
        fallback_note: where ``fallback_size`` came from, for messages.

    ``chunks`` yields canonical event arrays (any lengths) in file order; the caller checks time
    order and coordinates, and re-cuts them into the requested chunk size. Readers never load more
    than about one chunk of the file at a time in ``chunks``; ``read_all`` may read everything at once
    when that is faster.

    Class attributes:
        repair_time: True when small backward time steps are a known property of the format that we
            repair by clamping each t to the running maximum (Prophesee RAW); False to reject them.
    """

    repair_time: bool = False

    def __init__(self, path: Path) -> None:
        self.path = path
        self.declared_size: SensorSize | None = None
        self.fallback_size: SensorSize | None = None
        self.fallback_note: str = ""

    def chunks(self, chunk_size: int) -> Iterator[Events]:
        """Yield the file's events in file order, roughly ``chunk_size`` (N) at a time."""
        raise NotImplementedError

    def read_all(self) -> Events:
        """All events of the file, shape (N,); default: the concatenated chunks."""
        return concat(list(self.chunks(1 << 20)))


def empty_events() -> Events:
    """A canonical event array with no events."""
    return np.empty(0, dtype=EVENT_DTYPE)


def concat(chunks: list[Events]) -> Events:
    """Concatenate canonical chunks (an empty list gives an empty array)."""
    return concat_events(chunks)


def check_readable(path: Path) -> int:
    """Check that ``path`` is a non-empty regular file; return its size in bytes.

    Raises:
        DataError: no such file, a directory, unreadable, or empty.
    """
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as error:
        raise DataError(f"{path}: cannot access the file ({error.strerror or error})") from error
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not an event file")
    if not path.is_file():
        raise DataError(f"{path}: is not a regular file")
    if stat.st_size == 0:
        raise DataError(f"{path}: the file is empty")
    if not os.access(path, os.R_OK):
        raise DataError(f"{path}: permission denied")
    return stat.st_size


def read_head(path: Path, size: int) -> bytes:
    """The first ``size`` bytes of a file (fewer when it is shorter)."""
    try:
        with open(path, "rb") as file:
            return file.read(size)
    except OSError as error:
        raise DataError(f"{path}: cannot read the file ({error.strerror or error})") from error


def parse_sensor_size(value: object, what: str = "sensor_size") -> SensorSize:
    """Validate a user's (width, height); tonic's (W, H, P) is accepted and P dropped.

    Raises:
        DataError: when it is not two positive integers below 65537.
    """
    try:
        items = [int(v) for v in value]  # type: ignore[union-attr]
        if any(float(v) != int(v) for v in value):  # type: ignore[union-attr]
            raise ValueError
    except (TypeError, ValueError):
        raise DataError(f"{what}: expected (width, height) as two integers, got {value!r}") from None
    if len(items) == 3:
        items = items[:2]
    if len(items) != 2 or not all(0 < v <= MAX_SIDE for v in items):
        raise DataError(f"{what}: expected (width, height), each 1..{MAX_SIDE}, got {value!r}")
    return items[0], items[1]


def check_body_length(path: Path, length: int, unit: int, what: str) -> None:
    """Raise DataError when a body of fixed-size records is cut inside a record (a truncated file)."""
    if length % unit:
        raise DataError(
            f"{path}: truncated or corrupt {what}: the data is {length} bytes, not a multiple of the "
            f"{unit}-byte record ({length % unit} bytes left over)"
        )
