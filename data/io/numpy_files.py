""".npy and .npz files holding a structured event array (fields x, y, t, p; tonic's arrays included).

.npy: the array alone (any integer or bool field types; t in microseconds). .npz: written by us, it
holds ``events`` and ``sensor_size`` (width, height); an .npz from elsewhere must have an ``events``
member (``sensor_size`` optional, tonic's (W, H, P) accepted). Both stream: the array header is parsed
and the data read block by block, from the file or from inside the zip member (compressed or not).
Object arrays are refused (no pickles are ever loaded).
"""
from __future__ import annotations

import contextlib
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npformat

from data.errors import DataError
from data.events import Events, SensorSize, as_events
from data.io._base import EventReader, concat, parse_sensor_size
from data.io._registry import register_format, register_writer

NPY_MAGIC = b"\x93NUMPY"
EVENTS_MEMBER = "events.npy"
SIZE_MEMBER = "sensor_size.npy"
_HEADER_READERS = {(1, 0): npformat.read_array_header_1_0, (2, 0): npformat.read_array_header_2_0}


def _read_header(path: Path, stream: BinaryIO, what: str) -> tuple[np.dtype, int]:
    """Parse an .npy header; returns the dtype and the number of records (1-D structured only)."""
    try:
        version = npformat.read_magic(stream)
        if version not in _HEADER_READERS:
            raise ValueError(f".npy format version {version} is not supported")
        shape, _, dtype = _HEADER_READERS[version](stream)
    except (ValueError, OSError, EOFError, SyntaxError) as error:
        raise DataError(f"{path}: {what} is not a valid .npy array ({error})") from None
    if dtype.hasobject:
        raise DataError(f"{path}: {what} holds Python objects; only plain structured arrays are read")
    missing = {"x", "y", "t", "p"} - set(dtype.names or ())
    if missing:
        raise DataError(f"{path}: {what} needs fields x, y, t, p (missing {sorted(missing)}; dtype {dtype})")
    if len(shape) != 1:
        raise DataError(f"{path}: {what} must be 1-D, got shape {shape}")
    return dtype, int(shape[0])


def _read_into(stream: BinaryIO, buffer: bytearray) -> int:
    """Fill ``buffer`` from ``stream`` (a read may return less than asked); returns the bytes read."""
    view, filled = memoryview(buffer), 0
    while filled < len(buffer):
        got = stream.readinto(view[filled:])  # type: ignore[attr-defined]
        if not got:
            break
        filled += got
    return filled


class _NumpyReader(EventReader):
    """Shared block reader over an .npy stream; subclasses say how to open it."""

    def _open(self) -> contextlib.AbstractContextManager[BinaryIO]:
        raise NotImplementedError

    what = "the array"

    def _data_bytes(self, stream: BinaryIO) -> int:
        """Bytes left in ``stream`` after the array header."""
        raise NotImplementedError

    def _inspect(self) -> None:
        with self._open() as stream:
            self.dtype, self.count = _read_header(self.path, stream, self.what)
            available = self._data_bytes(stream)
        # Check before allocating: a corrupt shape in the header would otherwise make read_all
        # allocate (and zero) count * itemsize bytes, gigabytes for a few flipped digits.
        if self.count * self.dtype.itemsize > available:
            raise DataError(
                f"{self.path}: truncated {self.what}: the header says {self.count} events, "
                f"the data ends inside event {available // max(self.dtype.itemsize, 1)}"
            )

    def chunks(self, chunk_size: int) -> Iterator[Events]:
        with self._open() as stream:
            _read_header(self.path, stream, self.what)
            for start in range(0, self.count, chunk_size):
                n = min(chunk_size, self.count - start)
                block = bytearray(n * self.dtype.itemsize)  # bytearray: the array stays writable
                got = _read_into(stream, block)
                if got != len(block):
                    raise DataError(
                        f"{self.path}: truncated {self.what}: the header says {self.count} events, "
                        f"the data ends inside event {start + got // self.dtype.itemsize}"
                    )
                events = as_events(np.frombuffer(block, dtype=self.dtype), f"{self.path}")
                p = events["p"]
                if ((p != 0) & (p != 1)).any():  # as_events passes canonical arrays through as they are
                    events["p"] = p > 0  # its rule for other dtypes: > 0 is ON, anything else OFF
                yield events

    def read_all(self) -> Events:
        return concat(list(self.chunks(max(self.count, 1))))  # one block: no concatenation copy


@register_format(
    "npy", suffixes=(".npy",), sniff=lambda head: head.startswith(NPY_MAGIC), description="numpy .npy structured array"
)
class NpyReader(_NumpyReader):
    """A structured .npy array; no sensor size in the file."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._inspect()

    def _open(self) -> contextlib.AbstractContextManager[BinaryIO]:
        return open(self.path, "rb")

    def _data_bytes(self, stream: BinaryIO) -> int:
        return self.path.stat().st_size - stream.tell()


@register_format("npz", suffixes=(".npz",), description="numpy .npz with events and sensor_size")
class NpzReader(_NumpyReader):
    """An .npz archive with an ``events`` member and, when we wrote it, ``sensor_size``."""

    what = "the member 'events'"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
                if EVENTS_MEMBER not in names:
                    members = ", ".join(name.removesuffix(".npy") for name in names)
                    raise DataError(f"{path}: the .npz has no 'events' array (members: {members})")
                if SIZE_MEMBER in names:
                    with archive.open(SIZE_MEMBER) as stream:
                        raw = stream.read(4096)
                    size = np.load(io.BytesIO(raw), allow_pickle=False)
                    self.declared_size = parse_sensor_size(size.ravel().tolist(), f"{path}: sensor_size")
        except zipfile.BadZipFile as error:
            raise DataError(f"{path}: not a valid .npz (zip) file ({error})") from None
        self._inspect()

    @contextlib.contextmanager
    def _open(self) -> Iterator[BinaryIO]:
        with zipfile.ZipFile(self.path) as archive, archive.open(EVENTS_MEMBER) as stream:
            yield stream  # type: ignore[misc]

    def _data_bytes(self, stream: BinaryIO) -> int:
        with zipfile.ZipFile(self.path) as archive:
            return archive.getinfo(EVENTS_MEMBER).file_size - stream.tell()


@register_writer("npz")
def write_npz(path: Path, events: Events, sensor_size: SensorSize) -> None:
    """Uncompressed .npz with ``events`` (canonical dtype) and ``sensor_size`` (width, height)."""
    with open(path, "wb") as file:  # a file object: np.savez would append '.npz' to a name
        np.savez(file, events=events, sensor_size=np.asarray(sensor_size, dtype=np.int64))


@register_writer("npy")
def write_npy(path: Path, events: Events, sensor_size: SensorSize) -> None:
    """The canonical array alone (.npy has no place for the sensor size)."""
    with open(path, "wb") as file:
        np.save(file, events, allow_pickle=False)
