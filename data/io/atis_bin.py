"""The N-MNIST / N-Caltech101 ATIS binary format (5 bytes per event), decoded with numpy.

Each record: byte 0 x, byte 1 y, byte 2 bit 7 polarity, then a 23-bit big-endian timestamp in
microseconds (byte 2 bits 6..0, bytes 3 and 4). A record with y == 240 is not an event: it marks a
timestamp overflow and adds 2**13 us to every later event (the datasets' own MATLAB reader does
this, and so does tonic). The file has no header: the sensor size comes from the caller, else the
largest coordinate + 1 (N-MNIST is 34 x 34; N-Caltech101 images vary, about 240 x 180).

Decoding is compiled with numba when it is installed (a few ns an event, so a 2 GB file is read
in seconds, not minutes), else done in numpy; both give the same events (tests compare them).
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from data.errors import DataError
from data.events import EVENT_DTYPE, Events, SensorSize
from data.io._base import EventReader, check_body_length, empty_events
from data.io._registry import register_format, register_writer

try:
    import numba
except ImportError:  # the numpy decoder serves, slower
    numba = None

RECORD = 5
OVERFLOW_Y = 240
OVERFLOW_STEP = 1 << 13
TS_BITS = 23


@register_format("atis_bin", suffixes=(".bin",), description="N-MNIST / N-Caltech101 ATIS binary")
class AtisBinReader(EventReader):
    """Fixed 5-byte records; overflow markers (y == 240) decoded with a cumulative sum."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.size = path.stat().st_size
        check_body_length(path, self.size, RECORD, "ATIS binary (N-MNIST) file")

    @staticmethod
    def _decode(raw: np.ndarray, overflows_before: int) -> tuple[Events, int]:
        """Decode (N, 5) uint8 records; returns the events and the overflow count so far."""
        if numba is not None:
            events = np.empty(len(raw), dtype=EVENT_DTYPE)
            kept, total = _decode_compiled(raw, overflows_before, events)
            return events[:kept], int(total)
        return decode_numpy(raw, overflows_before)

    def chunks(self, chunk_size: int) -> Iterator[Events]:
        overflows = 0
        with open(self.path, "rb") as file:
            while True:
                block = file.read(chunk_size * RECORD)
                if not block:
                    return
                events, overflows = self._decode(np.frombuffer(block, np.uint8).reshape(-1, RECORD), overflows)
                yield events

    def read_all(self) -> Events:
        raw = np.fromfile(self.path, dtype=np.uint8)
        if len(raw) != self.size:
            raise DataError(f"{self.path}: the file changed while being read")
        return self._decode(raw.reshape(-1, RECORD), 0)[0] if len(raw) else empty_events()


def decode_numpy(raw: np.ndarray, overflows_before: int) -> tuple[Events, int]:
    """``AtisBinReader._decode`` in numpy (about 150 ns an event; compiled: a few)."""
    y = raw[:, 1]
    marker = y == OVERFLOW_Y
    overflows = np.cumsum(marker) + overflows_before
    keep = ~marker
    rows = raw[keep]
    t = (
        ((rows[:, 2].astype(np.int64) & 0x7F) << 16)
        | (rows[:, 3].astype(np.int64) << 8)
        | rows[:, 4].astype(np.int64)
    )
    events = np.empty(len(rows), dtype=EVENT_DTYPE)
    events["x"] = rows[:, 0]
    events["y"] = rows[:, 1]
    events["t"] = t + overflows[keep] * OVERFLOW_STEP
    events["p"] = rows[:, 2] >> 7
    total = int(overflows[-1]) if len(overflows) else overflows_before
    return events, total


def _decode_py(raw, overflows_before, out):  # pragma: no cover (numba)
    """Compiled decode: the events of ``raw`` (N, 5) into ``out``; returns (events kept, overflows)."""
    overflows = overflows_before
    kept = 0
    for i in range(raw.shape[0]):
        y = raw[i, 1]
        if y == OVERFLOW_Y:
            overflows += 1
            continue
        b2 = raw[i, 2]
        e = out[kept]
        e.x = raw[i, 0]
        e.y = y
        e.t = ((np.int64(b2) & 0x7F) << 16 | np.int64(raw[i, 3]) << 8 | np.int64(raw[i, 4])) \
            + overflows * OVERFLOW_STEP
        e.p = b2 >> 7
        kept += 1
    return kept, overflows


if numba is not None:
    _decode_compiled = numba.njit(cache=True, nogil=True)(_decode_py)


@register_writer("atis_bin")
def write_atis_bin(path: Path, events: Events, sensor_size: SensorSize) -> None:
    """Write the ATIS binary, inserting overflow markers so every stored time fits 23 bits."""
    width, height = sensor_size
    if width > 256 or height > OVERFLOW_Y:
        raise DataError(f"{path}: the ATIS binary holds x < 256 and y < 240, not a {width} x {height} sensor")
    t = events["t"]
    if not len(t):
        # No header: zero events would be an empty file, which every reader refuses as broken.
        raise DataError(f"{path}: the ATIS binary cannot hold an empty recording (it has no header)")
    if t[0] < 0:
        raise DataError(f"{path}: the ATIS binary cannot store negative times (first t {t[0]} us)")
    # Markers before event i: the fewest that bring its time below 2**23 (non-decreasing since t is).
    limit = (1 << TS_BITS) - 1
    markers = np.maximum(0, -((limit - t) // OVERFLOW_STEP))
    new_markers = np.diff(markers, prepend=0)
    stored = t - markers * OVERFLOW_STEP
    # Each event takes 1 + (markers inserted just before it) rows.
    rows_per_event = 1 + new_markers
    out = np.zeros((int(rows_per_event.sum()), RECORD), dtype=np.uint8)
    event_rows = np.cumsum(rows_per_event) - 1
    marker_rows = np.ones(len(out), dtype=bool)
    marker_rows[event_rows] = False
    out[marker_rows, 1] = OVERFLOW_Y
    out[event_rows, 0] = events["x"]
    out[event_rows, 1] = events["y"]
    out[event_rows, 2] = ((events["p"] > 0).astype(np.uint8) << 7) | ((stored >> 16) & 0x7F).astype(np.uint8)
    out[event_rows, 3] = (stored >> 8) & 0xFF
    out[event_rows, 4] = stored & 0xFF
    out.tofile(path)
